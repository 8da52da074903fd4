//! Single-flight of identical reads.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::PluginError;

/// Identical reads running at the same time share one execution: the first caller of a key
/// runs it, the others wait for its result (a clone). Nothing is cached afterwards. If the
/// running caller is cancelled (its call's deadline), a waiting one takes over.
///
/// Key it on everything the result depends on, the account included (e.g. the call's
/// `account_key`, the credentials' owner and the request), so that two orgs never share a
/// result they could not each have read.
pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Arc<Flight<V>>>>,
}

impl<K, V> std::fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SingleFlight")
    }
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

struct Flight<V> {
    state: Mutex<State<V>>,
}

enum State<V> {
    Running(Vec<Waker>),
    Done(Result<V, PluginError>),
    /// The runner was dropped before finishing.
    Abandoned,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    /// An empty set of flights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls now running (for tests and metrics).
    pub fn running(&self) -> usize {
        lock(&self.flights).len()
    }

    /// The result of `read` for `key`, shared with every caller of the same key that arrives
    /// while it runs. `read` is only polled by the caller that runs it.
    pub async fn run<F, Fut>(&self, key: K, read: F) -> Result<V, PluginError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, PluginError>>,
    {
        self.run_shared(key, read).await.0
    }

    /// [`SingleFlight::run`], also saying whether the result came from another caller's run
    /// (`true`) rather than this caller's own `read` (`false`): a caller with a longer deadline
    /// may want to try again when the run it joined timed out.
    pub async fn run_shared<F, Fut>(&self, key: K, read: F) -> (Result<V, PluginError>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, PluginError>>,
    {
        let mut read = Some(read);
        loop {
            let (flight, leader) = {
                let mut flights = lock(&self.flights);
                match flights.get(&key) {
                    Some(f) => (Arc::clone(f), false),
                    None => {
                        let f = Arc::new(Flight {
                            state: Mutex::new(State::Running(Vec::new())),
                        });
                        flights.insert(key.clone(), Arc::clone(&f));
                        (f, true)
                    }
                }
            };
            if leader {
                let read = read.take().expect("the read runs once");
                // Marks the flight abandoned (and wakes the waiters) if this future is dropped
                // before it finishes.
                let guard = Leader {
                    owner: self,
                    key: &key,
                    flight: &flight,
                    done: false,
                };
                let result = read().await;
                guard.finish(result.clone());
                return (result, false);
            }
            let outcome = std::future::poll_fn(|cx| {
                let mut state = lock(&flight.state);
                match &mut *state {
                    State::Running(wakers) => {
                        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                            wakers.push(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                    State::Done(r) => Poll::Ready(Some(r.clone())),
                    State::Abandoned => Poll::Ready(None),
                }
            })
            .await;
            match outcome {
                Some(result) => return (result, true),
                // The runner was cancelled: try again (perhaps as the runner).
                None => continue,
            }
        }
    }
}

struct Leader<'a, K: Eq + Hash, V> {
    owner: &'a SingleFlight<K, V>,
    key: &'a K,
    flight: &'a Arc<Flight<V>>,
    done: bool,
}

impl<K: Eq + Hash, V> Leader<'_, K, V> {
    fn finish(mut self, result: Result<V, PluginError>) {
        self.settle(State::Done(result));
        self.done = true;
    }

    fn settle(&self, outcome: State<V>) {
        {
            let mut flights = lock(&self.owner.flights);
            if flights
                .get(self.key)
                .is_some_and(|f| Arc::ptr_eq(f, self.flight))
            {
                flights.remove(self.key);
            }
        }
        let wakers = match std::mem::replace(&mut *lock(&self.flight.state), outcome) {
            State::Running(w) => w,
            _ => Vec::new(),
        };
        for w in wakers {
            w.wake();
        }
    }
}

impl<K: Eq + Hash, V> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        if !self.done {
            self.settle(State::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Context;

    /// A read that stays pending until `open` is set.
    async fn gated(open: &Mutex<bool>, runs: &AtomicUsize) -> Result<u32, PluginError> {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::poll_fn(|_| {
            if *lock(open) {
                Poll::Ready(Ok(7))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    #[test]
    fn run_shared_tells_the_runner_from_the_joiners_and_a_cancelled_runner_is_replaced() {
        let sf: SingleFlight<String, u32> = SingleFlight::new();
        let (open, runs) = (Mutex::new(false), AtomicUsize::new(0));
        let mut cx = Context::from_waker(Waker::noop());
        let mut first = pin!(sf.run_shared("k".into(), || gated(&open, &runs)));
        let mut second = pin!(sf.run_shared("k".into(), || gated(&open, &runs)));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert_eq!((sf.running(), runs.load(Ordering::SeqCst)), (1, 1));
        *lock(&open) = true;
        let Poll::Ready((r1, shared1)) = first.as_mut().poll(&mut cx) else {
            panic!("the runner finishes")
        };
        let Poll::Ready((r2, shared2)) = second.as_mut().poll(&mut cx) else {
            panic!("the joiner gets the result")
        };
        assert_eq!(
            (r1.unwrap(), shared1, r2.unwrap(), shared2),
            (7, false, 7, true)
        );
        assert_eq!((sf.running(), runs.load(Ordering::SeqCst)), (0, 1));

        // The runner is dropped: the joiner runs the read itself, and says so.
        *lock(&open) = false;
        let mut joiner = pin!(sf.run_shared("k".into(), || gated(&open, &runs)));
        {
            let mut runner = Box::pin(sf.run_shared("k".into(), || gated(&open, &runs)));
            assert!(runner.as_mut().poll(&mut cx).is_pending());
            assert!(joiner.as_mut().poll(&mut cx).is_pending());
        }
        assert!(joiner.as_mut().poll(&mut cx).is_pending());
        *lock(&open) = true;
        let Poll::Ready((r, shared)) = joiner.as_mut().poll(&mut cx) else {
            panic!("the joiner finishes its own run")
        };
        assert_eq!((r.unwrap(), shared), (7, false));
        assert_eq!((sf.running(), runs.load(Ordering::SeqCst)), (0, 3));
    }
}
