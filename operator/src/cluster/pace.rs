//! Full passes over every Tenant and Customer, paced so that they never stand in front of a real change.
//!
//! A start or a relist of a watch asks for a reconcile of everything it listed. Handed to the controllers at
//! once, thousands of reconciles would all be due together and a Tenant created meanwhile would wait behind all
//! of them. The pacer instead keeps the pass in its own queue and lets only a small window of it be pending in
//! the controllers at any time; a change seen by a watch goes to the controllers directly and waits behind at
//! most that window.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How many reconciles of a full pass may be pending or running at once by default: a few times the
/// controllers' concurrency, so that the pass keeps them busy while a change waits behind at most this many.
pub const WINDOW: usize = 64;

/// How long a reconcile handed out by the pacer counts against the window when it is never reported done (its
/// object was deleted before the controller got to it, or the controller stopped).
const FORGOTTEN_AFTER: Duration = Duration::from_secs(30);

/// How often the pacer looks at its queue without being woken (to let forgotten reconciles go).
const TICK: Duration = Duration::from_secs(1);

/// The queue of a full pass and the reconciles of it under way.
#[derive(Debug)]
pub struct Pacer<T> {
    state: Mutex<State<T>>,
    wake: Notify,
    window: usize,
}

#[derive(Debug)]
struct State<T> {
    /// Owners waiting for their turn, oldest first.
    queue: VecDeque<T>,
    /// The owners in `queue`, to keep each in it once.
    queued: HashSet<T>,
    /// Owners handed to the controllers and not reported done yet, with when.
    outstanding: HashMap<T, Instant>,
}

impl<T: Clone + Eq + Hash> Pacer<T> {
    /// A pacer that lets `window` reconciles of a pass be under way at once.
    pub fn new(window: usize) -> Arc<Pacer<T>> {
        Arc::new(Pacer {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                outstanding: HashMap::new(),
            }),
            wake: Notify::new(),
            window: window.max(1),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // The state stays consistent across a panic in another holder: every change is one whole step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds owners to the pass; one already waiting keeps its place.
    pub fn enqueue(&self, owners: impl IntoIterator<Item = T>) {
        {
            let mut state = self.state();
            for owner in owners {
                if state.queued.insert(owner.clone()) {
                    state.queue.push_back(owner);
                }
            }
        }
        self.wake.notify_one();
    }

    /// Reports the reconcile of `owner` finished, freeing its place in the window. Reconciles the pacer did not
    /// hand out change nothing.
    pub fn done(&self, owner: &T) {
        if self.state().outstanding.remove(owner).is_some() {
            self.wake.notify_one();
        }
    }

    /// The owners to hand to the controllers now: as many as the window has room for.
    pub fn next(&self, now: Instant) -> Vec<T> {
        let mut state = self.state();
        state
            .outstanding
            .retain(|_, since| now.saturating_duration_since(*since) < FORGOTTEN_AFTER);
        let mut out = Vec::new();
        while state.outstanding.len() < self.window {
            let Some(owner) = state.queue.pop_front() else {
                break;
            };
            state.queued.remove(&owner);
            state.outstanding.insert(owner.clone(), now);
            out.push(owner);
        }
        out
    }

    /// How many owners wait for their turn.
    pub fn waiting(&self) -> usize {
        self.state().queue.len()
    }

    /// Hands the pass to the controllers (`send`) as the window allows, and reports how many still wait
    /// (`waiting`), until the task is aborted.
    pub async fn run(self: Arc<Self>, send: impl Fn(T), waiting: impl Fn(usize)) {
        loop {
            for owner in self.next(Instant::now()) {
                send(owner);
            }
            waiting(self.waiting());
            let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    enum Owner {
        Tenant(String),
        Customer(String),
    }

    fn tenant(i: usize) -> Owner {
        Owner::Tenant(format!("t{i}"))
    }

    #[test]
    fn a_pass_is_handed_out_a_window_at_a_time_in_order() {
        let pacer = Pacer::new(3);
        pacer.enqueue((0..10).map(tenant));
        let now = Instant::now();
        assert_eq!(pacer.next(now), vec![tenant(0), tenant(1), tenant(2)]);
        assert!(pacer.next(now).is_empty(), "the window is full");
        pacer.done(&tenant(1));
        assert_eq!(pacer.next(now), vec![tenant(3)]);
        pacer.done(&tenant(0));
        pacer.done(&tenant(2));
        assert_eq!(pacer.next(now), vec![tenant(4), tenant(5)]);
        assert_eq!(pacer.waiting(), 4);
    }

    #[test]
    fn an_owner_waits_in_the_queue_once() {
        let pacer = Pacer::new(100);
        pacer.enqueue([tenant(1), tenant(2), tenant(1)]);
        pacer.enqueue([tenant(2), Owner::Customer("t1".into())]);
        assert_eq!(
            pacer.next(Instant::now()),
            vec![tenant(1), tenant(2), Owner::Customer("t1".into())]
        );
    }

    #[test]
    fn reconciles_it_did_not_hand_out_leave_the_window_alone() {
        let pacer = Pacer::new(1);
        pacer.enqueue([tenant(1), tenant(2)]);
        let now = Instant::now();
        assert_eq!(pacer.next(now), vec![tenant(1)]);
        pacer.done(&tenant(9));
        assert!(pacer.next(now).is_empty());
    }

    #[test]
    fn a_reconcile_never_reported_frees_its_place_in_the_end() {
        let pacer = Pacer::new(1);
        pacer.enqueue([tenant(1), tenant(2)]);
        let now = Instant::now();
        assert_eq!(pacer.next(now), vec![tenant(1)]);
        assert!(pacer.next(now + FORGOTTEN_AFTER / 2).is_empty());
        assert_eq!(pacer.next(now + FORGOTTEN_AFTER), vec![tenant(2)]);
    }
}
