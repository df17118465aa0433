//! The verified-token cache: the identity of a token that passed every token gate, keyed on the SHA-256 of the
//! whole token, kept until the token's `exp`, bounded in size, and flushed whenever any issuer's keys change.
//!
//! Two generations of entries, each at most half the capacity: lookups that hit the older one move the entry
//! to the newer one, and when the newer one is full it becomes the older one (whose entries are dropped). Every
//! operation is O(1), tokens in use stay cached, and a flood of new tokens costs each of them one verification,
//! never a sweep over the whole cache. A small mutex-guarded pair of maps rather than a cache crate: the policy
//! (expire at `exp`, flush on a key generation change) is the point, and it fits in a page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::identity::Identity;

/// A token's cache key: the SHA-256 of the whole token.
pub type TokenHash = [u8; 32];

type Entries = HashMap<TokenHash, Arc<Identity>>;

#[derive(Debug)]
struct Inner {
    generation: u64,
    newer: Entries,
    older: Entries,
}

impl Inner {
    fn clear(&mut self, generation: u64) {
        self.newer.clear();
        self.older.clear();
        self.generation = generation;
    }

    fn put(&mut self, half: usize, hash: TokenHash, identity: Arc<Identity>) {
        if self.newer.len() >= half {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(hash, identity);
    }
}

/// A bounded map from token hash to verified identity.
#[derive(Debug)]
pub struct TokenCache {
    /// Entries per generation (half the capacity, at least 1); 0 disables the cache.
    half: usize,
    inner: Mutex<Inner>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            half: if capacity == 0 { 0 } else { capacity.div_ceil(2) },
            inner: Mutex::new(Inner {
                generation: 0,
                newer: HashMap::new(),
                older: HashMap::new(),
            }),
        }
    }

    /// The identity of a token verified under key generation `generation`, if it has not expired at `now`.
    pub fn get(&self, hash: &TokenHash, now: i64, generation: u64) -> Option<Arc<Identity>> {
        if self.half == 0 {
            return None;
        }
        let mut inner = self.inner.lock().ok()?;
        if inner.generation != generation {
            inner.clear(generation);
            return None;
        }
        if let Some(identity) = inner.newer.get(hash) {
            if now < identity.exp {
                return Some(identity.clone());
            }
            inner.newer.remove(hash);
            return None;
        }
        let identity = inner.older.remove(hash)?;
        if now >= identity.exp {
            return None;
        }
        inner.put(self.half, *hash, identity.clone());
        Some(identity)
    }

    /// Remembers a verified identity (making room as described in the module docs).
    pub fn insert(&self, hash: TokenHash, identity: Arc<Identity>, now: i64, generation: u64) {
        if self.half == 0 || now >= identity.exp {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if generation < inner.generation {
            return; // verified under keys that have changed since: not worth keeping
        }
        if inner.generation != generation {
            inner.clear(generation);
        }
        inner.put(self.half, hash, identity);
    }

    /// The number of entries held.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|i| i.newer.len() + i.older.len())
            .unwrap_or(0)
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
    fn bounded_and_tokens_in_use_survive_a_flood() {
        let c = TokenCache::new(4);
        c.insert([1; 32], id(100), 50, 0);
        for i in 2..200u8 {
            c.insert([i; 32], id(100), 50, 0);
            assert!(c.len() <= 4, "bounded");
            // The token in use is looked up between the new ones, as a busy session's would be.
            assert!(
                c.get(&[1; 32], 50, 0).is_some(),
                "token in use evicted after {i} new ones"
            );
        }
        assert!(
            c.get(&[100; 32], 50, 0).is_none(),
            "an old token nobody used has gone"
        );
        assert!(c.get(&[199; 32], 50, 0).is_some(), "the newest is kept");
    }

    #[test]
    fn capacity_zero_disables() {
        let c = TokenCache::new(0);
        c.insert([1; 32], id(100), 50, 0);
        assert!(c.get(&[1; 32], 60, 0).is_none());
    }
}
