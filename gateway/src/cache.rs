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
    /// The earliest `exp` among the entries: while `now` is before it nothing has expired, so a full cache is
    /// not swept (a sweep on every insert would make each new token cost a pass over the whole cache).
    earliest_exp: i64,
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
                earliest_exp: i64::MAX,
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
            inner.earliest_exp = i64::MAX;
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

    /// Remembers a verified identity. When full, expired entries are dropped first; if it is still full, one
    /// valid entry makes room.
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
            inner.earliest_exp = i64::MAX;
        }
        if inner.entries.len() >= self.capacity {
            if now >= inner.earliest_exp {
                inner.entries.retain(|_, id| now < id.exp);
                inner.earliest_exp = inner.entries.values().map(|id| id.exp).min().unwrap_or(i64::MAX);
            }
            // Still full of valid entries: one makes room (whichever the hash order yields first, which no
            // client can choose). Only tokens that passed every gate get here, so a full cache keeps serving
            // new sessions instead of verifying them on every request until old ones expire.
            if inner.entries.len() >= self.capacity
                && let Some(victim) = inner.entries.keys().next().copied()
            {
                inner.entries.remove(&victim);
            }
        }
        inner.earliest_exp = inner.earliest_exp.min(identity.exp);
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
    fn bounded_expired_entries_go_first_and_new_tokens_are_always_kept() {
        let c = TokenCache::new(2);
        c.insert([1; 32], id(100), 50, 0);
        c.insert([2; 32], id(60), 50, 0);
        // Full of valid entries: one of them makes room for the new one.
        c.insert([3; 32], id(100), 50, 0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&[3; 32], 55, 0).is_some());
        // Once an entry has expired it is the one that goes.
        let c = TokenCache::new(2);
        c.insert([1; 32], id(100), 50, 0);
        c.insert([2; 32], id(60), 50, 0);
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
