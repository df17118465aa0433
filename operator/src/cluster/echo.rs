//! The operator's own writes, seen again. Every write comes back through the watch as an event carrying the
//! version the write produced; reconciling on it would only find what the writing reconcile already made. At
//! 10,000 Tenants those echoes were most of the reconciles. So each write records the version it produced, and
//! the watch takes an event of exactly that version into the cache without asking for a reconcile. Any other
//! version, someone else's change included, triggers as before.
//!
//! The reverse also happens: a reconcile that runs right after another may read the object before the watch
//! has brought the first one's write. [`Superseded`] keeps what was written over which version until the watch
//! shows a newer one, so the second reconcile builds on the write instead of repeating it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Versions produced by the operator's writes, by object key, until their watch events arrive.
#[derive(Clone, Debug, Default)]
pub struct Echoes {
    written: Arc<Mutex<Records>>,
}

#[derive(Debug, Default)]
struct Records {
    by_key: HashMap<String, Vec<(String, Instant)>>,
    /// Writes since the last sweep.
    since_sweep: usize,
}

/// How long a record waits for its event. An event normally follows its write within a second; one that came
/// before the write's response left a record no event will match, and a sweep drops it.
const WAIT: Duration = Duration::from_secs(300);
/// Writes between sweeps.
const SWEEP_EVERY: usize = 4096;

/// The most versions kept per object: one reconcile writes an object at most twice (a Tenant's finalizer, then
/// its status), so older ones are records whose event a relist replaced.
const KEPT: usize = 4;

impl Echoes {
    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        // Each change is one insert or remove, so the map is consistent even after a panic elsewhere.
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that a write of `key` produced `version` (nothing is recorded without a version).
    pub fn wrote(&self, key: &str, version: Option<&str>) {
        let Some(version) = version else { return };
        let mut records = self.records();
        let now = Instant::now();
        records.since_sweep += 1;
        if records.since_sweep >= SWEEP_EVERY {
            records.since_sweep = 0;
            records.by_key.retain(|_, versions| {
                versions.retain(|(_, at)| now.duration_since(*at) < WAIT);
                !versions.is_empty()
            });
        }
        let versions = records.by_key.entry(key.to_owned()).or_default();
        if versions.len() == KEPT {
            versions.remove(0);
        }
        versions.push((version.to_owned(), now));
    }

    /// Whether a watch event of `key` at `version` is the echo of one of the operator's writes of it; that
    /// record is used up. Any other version is someone else's change (or one the operator did not record).
    pub fn is_echo(&self, key: &str, version: Option<&str>) -> bool {
        let (mut records, Some(version)) = (self.records(), version) else {
            return false;
        };
        let Some(versions) = records.by_key.get_mut(key) else {
            return false;
        };
        let Some(at) = versions.iter().position(|(v, _)| v == version) else {
            return false;
        };
        versions.remove(at);
        if versions.is_empty() {
            records.by_key.remove(key);
        }
        true
    }

    /// Drops the record of `key` (the object is gone).
    pub fn forget(&self, key: &str) {
        self.records().by_key.remove(key);
    }

    /// Drops every record: a relist replaces the events a record would have matched.
    pub fn clear(&self) {
        self.records().by_key.clear();
    }

    /// How many writes still wait for their event.
    pub fn len(&self) -> usize {
        self.records().by_key.values().map(Vec::len).sum()
    }

    /// Whether no write waits for its event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the operator last wrote over a version of an object (by key), until the watch shows a newer version.
#[derive(Debug)]
pub struct Superseded<T> {
    written: Arc<Mutex<HashMap<String, (String, T)>>>,
}

impl<T> Clone for Superseded<T> {
    fn clone(&self) -> Self {
        Self {
            written: Arc::clone(&self.written),
        }
    }
}

impl<T> Default for Superseded<T> {
    fn default() -> Self {
        Self {
            written: Arc::default(),
        }
    }
}

impl<T: Clone> Superseded<T> {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, T)>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `value` was written over `version` of `key`.
    pub fn wrote_over(&self, key: &str, version: Option<&str>, value: T) {
        if let Some(version) = version {
            self.map().insert(key.to_owned(), (version.to_owned(), value));
        }
    }

    /// What was written over `version` of `key`, if that version is the one the last write replaced: a reader
    /// holding it is behind the operator's own write.
    pub fn over(&self, key: &str, version: Option<&str>) -> Option<T> {
        let map = self.map();
        let (over, value) = map.get(key)?;
        (Some(over.as_str()) == version).then(|| value.clone())
    }

    /// The watch shows `version` of `key`: once it is not the replaced one, readers are up to date.
    pub fn seen(&self, key: &str, version: Option<&str>) {
        let mut map = self.map();
        if map
            .get(key)
            .is_some_and(|(over, _)| Some(over.as_str()) != version)
        {
            map.remove(key);
        }
    }

    /// Drops the record of `key`.
    pub fn forget(&self, key: &str) {
        self.map().remove(key);
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_of_a_written_version_is_an_echo_once() {
        let echoes = Echoes::default();
        echoes.wrote("ns/a", Some("41"));
        assert!(echoes.is_echo("ns/a", Some("41")));
        // Used up: the same version again (a relist replaying it) reconciles.
        assert!(!echoes.is_echo("ns/a", Some("41")));
        assert!(echoes.is_empty());
    }

    #[test]
    fn every_other_version_is_a_change() {
        let echoes = Echoes::default();
        echoes.wrote("ns/a", Some("41"));
        assert!(!echoes.is_echo("ns/a", Some("40")));
        assert!(!echoes.is_echo("ns/a", None));
        assert!(!echoes.is_echo("ns/b", Some("41")));
        // Someone else's edit between the write and its echo does not use the record up.
        assert!(echoes.is_echo("ns/a", Some("41")));
    }

    #[test]
    fn two_writes_in_a_row_have_two_echoes() {
        // A Tenant's finalizer, then its status: the first echo may arrive after the second write.
        let echoes = Echoes::default();
        echoes.wrote("uid", Some("7"));
        echoes.wrote("uid", Some("9"));
        assert!(echoes.is_echo("uid", Some("7")));
        assert!(echoes.is_echo("uid", Some("9")));
        assert!(echoes.is_empty());
    }

    #[test]
    fn records_are_bounded_and_need_a_version() {
        let echoes = Echoes::default();
        for v in 0..10 {
            echoes.wrote("a", Some(&v.to_string()));
        }
        echoes.wrote("b", None);
        assert_eq!(echoes.len(), KEPT);
        assert!(!echoes.is_echo("a", Some("0")));
        assert!(echoes.is_echo("a", Some("9")));
        assert!(!echoes.is_echo("b", None));
    }

    #[test]
    fn forgetting_and_clearing_drop_records() {
        let echoes = Echoes::default();
        echoes.wrote("a", Some("1"));
        echoes.wrote("b", Some("1"));
        echoes.forget("a");
        assert!(!echoes.is_echo("a", Some("1")));
        echoes.clear();
        assert!(!echoes.is_echo("b", Some("1")));
    }

    #[test]
    fn a_reader_behind_the_write_gets_what_was_written_until_the_watch_catches_up() {
        let written: Superseded<&str> = Superseded::default();
        written.wrote_over("uid", Some("7"), "Ready");
        assert_eq!(written.over("uid", Some("7")), Some("Ready"));
        // A reader already past the replaced version needs nothing.
        assert_eq!(written.over("uid", Some("9")), None);
        assert_eq!(written.over("other", Some("7")), None);
        // The replaced version itself, seen again, keeps the record; any other ends it.
        written.seen("uid", Some("7"));
        assert_eq!(written.len(), 1);
        written.seen("uid", Some("9"));
        assert!(written.is_empty());
        written.wrote_over("uid", Some("9"), "Ready");
        written.wrote_over("none", None, "Ready");
        written.forget("uid");
        assert!(written.is_empty());
    }
}
