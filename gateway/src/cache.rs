//! The verified-token cache: the identity of a token that passed every token gate, keyed on the SHA-256 of the
//! whole token, kept until the token's `exp`, bounded in size, and flushed whenever any issuer's keys change.
//!
//! A small mutex-guarded map rather than a cache crate: the policy (expire at `exp`, flush on a key generation
//! change, never evict a valid entry for a new one) is the whole point, and it fits in a page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::verify::Identity;

/// A token's cache key: the SHA-256 of the whole token.
pub type TokenHash = [u8; 32];

#[derive(Debug)]
struct Inner {
    generation: u64,
    entries: HashMap<TokenHash, Arc<Identity>>,
}

/// A bounded map from token hash to verified identity.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            inner: Mutex::new(Inner {
                generation: 0,
                entries: HashMap::new(),
            }),
        }
    }

    /// The identity of a token verified under key generation `generation`, if it has not expired at `now`.
    pub fn get(&self, hash: &TokenHash, now: i64, generation: u64) -> Option<Arc<Identity>> {
        if self.capacity == 0 {
            return None;
        }
        let mut inner = self.inner.lock().ok()?;
        if inner.generation != generation {
            inner.entries.clear();
            inner.generation = generation;
            return None;
        }
        match inner.entries.get(hash) {
            Some(identity) if now < identity.exp => Some(identity.clone()),
            Some(_) => {
                inner.entries.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified identity. When full, expired entries are dropped first; if it is still full the new
    /// entry is not kept (valid entries are never pushed out by new, possibly hostile, ones).
    pub fn insert(&self, hash: TokenHash, identity: Arc<Identity>, now: i64, generation: u64) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if generation < inner.generation {
            return; // verified under keys that have changed since: not worth keeping
        }
        if inner.generation != generation {
            inner.entries.clear();
            inner.generation = generation;
        }
        if inner.entries.len() >= self.capacity {
            inner.entries.retain(|_, id| now < id.exp);
            if inner.entries.len() >= self.capacity {
                return;
            }
        }
        inner.entries.insert(hash, identity);
    }

    /// The number of entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(exp: i64) -> Arc<Identity> {
        Arc::new(Identity {
            issuer: "i".into(),
            kid: "k".into(),
            subject: Some("user_1".into()),
            org: "org_a".into(),
            impersonator: None,
            session: None,
            exp,
        })
    }

    #[test]
    fn entries_expire_at_exp() {
        let c = TokenCache::new(10);
        c.insert([1; 32], id(100), 50, 0);
        assert!(c.get(&[1; 32], 99, 0).is_some());
        assert!(c.get(&[1; 32], 100, 0).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn a_key_generation_change_flushes_everything() {
        let c = TokenCache::new(10);
        c.insert([1; 32], id(100), 50, 3);
        c.insert([2; 32], id(100), 50, 3);
        assert!(c.get(&[1; 32], 60, 4).is_none());
        assert!(
            c.get(&[2; 32], 60, 3).is_none(),
            "flushed, not just the one looked up"
        );
        assert!(c.is_empty());
    }

    #[test]
    fn an_identity_verified_under_older_keys_is_not_kept() {
        let c = TokenCache::new(10);
        c.insert([1; 32], id(100), 50, 5);
        c.insert([2; 32], id(100), 50, 4);
        assert!(c.get(&[1; 32], 60, 5).is_some(), "the newer entry survives");
        assert!(c.get(&[2; 32], 60, 5).is_none());
    }

    #[test]
    fn bounded_and_valid_entries_are_not_evicted() {
        let c = TokenCache::new(2);
        c.insert([1; 32], id(100), 50, 0);
        c.insert([2; 32], id(60), 50, 0);
        c.insert([3; 32], id(100), 50, 0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&[3; 32], 55, 0).is_none());
        // Once [2] has expired it makes room.
        c.insert([3; 32], id(100), 70, 0);
        assert!(c.get(&[3; 32], 71, 0).is_some());
        assert!(c.get(&[1; 32], 71, 0).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn capacity_zero_disables() {
        let c = TokenCache::new(0);
        c.insert([1; 32], id(100), 50, 0);
        assert!(c.get(&[1; 32], 60, 0).is_none());
    }
}
