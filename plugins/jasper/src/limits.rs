//! Jasper's per-account limits, retries and single-flight, without any async runtime: plain
//! `std::sync::Mutex` + `Waker` lists, and the host's timers for waiting.
//!
//! - [`AccountLimits`]: `max_in_flight` calls at once and `rate_per_second` starts in any
//!   rolling second, through the host's limiter capability (shared by every replica of a host
//!   that runs several); a refusal from Jasper pauses every caller of the account.
//! - [`may_retry`] / [`backoff_ms`]: the retry policy (writes only when provably not processed).
//! - [`SingleFlight`]: concurrent identical reads share one upstream call.
//!
//! No lock is ever held across an `.await`, and no function panics (a poisoned lock is used as
//! it is: the state it protects stays consistent at every step).

use std::collections::HashMap;
use std::future::Future;

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use devext_plugin_api::host::{BackoffReport, PermitRequest};
use devext_plugin_api::{ErrorKind, Host, LogLevel, Permit, PluginError};

use crate::errors::RetryClass;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The account's limits: the host's limiter

/// The limits of one Jasper account, enforced by the host's limiter (`limit.*`): in-process for
/// one host, shared by every replica of a host on PostgreSQL. Keyed on the host's account key, so
/// every org and replica reaching one account counts against the same limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLimits {
    pub account: String,
    pub rate_per_second: u32,
    pub max_in_flight: u32,
}

impl AccountLimits {
    /// Waits for a permit to start one request, leaving at least [`MIN_ATTEMPT_MS`] before
    /// `deadline_ms` for the request itself. A wait that cannot end in time is a `rate_limited`
    /// error naming the limit that held it.
    pub async fn acquire(
        &self,
        host: &Host,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<Permit, PluginError> {
        let left = deadline_ms - now_ms - MIN_ATTEMPT_MS;
        if left < 0 {
            return Err(PluginError::new(
                ErrorKind::Timeout,
                "no time left before the call's deadline to call Jasper",
            ));
        }
        let request = PermitRequest::new(self.rate_per_second, self.max_in_flight)
            .account_key(self.account.as_str())
            .max_wait_ms(left as u64);
        match host.acquire_permit(&request).await {
            Ok(permit) => Ok(permit),
            Err(e) if e.kind == ErrorKind::RateLimited => Err(self.refusal(&e)),
            Err(e) => Err(e),
        }
    }

    /// The host's refusal, said in Jasper's terms.
    fn refusal(&self, e: &PluginError) -> PluginError {
        let message = match e.details.get("limit").and_then(|l| l.as_str()) {
            Some("in_flight") => format!(
                "rate limit: other calls to this Jasper account kept it busy until the deadline \
                 (at most {} at a time); try again shortly",
                self.max_in_flight
            ),
            Some("backoff") => "rate limit: Jasper asked this account's callers to slow down, \
                 past the call's deadline; try again shortly"
                .to_owned(),
            _ => format!(
                "rate limit: this Jasper account's limit of {} calls per second leaves no time \
                 before the deadline; try again shortly",
                self.rate_per_second
            ),
        };
        PluginError::new(ErrorKind::RateLimited, message).with_details(e.details.clone())
    }

    /// Jasper refused a call for its rate (HTTP 429, 40000029, 400101): no caller of the
    /// account, in any replica, starts one for `pause_ms`.
    pub fn back_off(&self, host: &Host, pause_ms: u64, reason: &str) {
        let report = BackoffReport::new(pause_ms, reason).account_key(self.account.as_str());
        if let Err(e) = host.report_backoff(&report) {
            host.log(
                LogLevel::Warn,
                format!("cannot pause the Jasper account's callers: {}", e.message),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retry policy

/// Attempts per upstream request, the first included ("retried 3 times").
pub const MAX_ATTEMPTS: u32 = 4;

/// Time an attempt needs at least; no attempt starts when less than this is left before the
/// call's deadline.
pub const MIN_ATTEMPT_MS: i64 = 1000;

/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER_MS: u64 = 30_000;

/// Whether a failed attempt may be retried: a write only when the request provably was not
/// processed, a read after any transient failure.
pub fn may_retry(write: bool, class: RetryClass) -> bool {
    match class {
        RetryClass::NotProcessed => true,
        RetryClass::Ambiguous => !write,
        RetryClass::Final => false,
    }
}

/// The wait before the next attempt after `failures` failed ones (1, 2, ...): 500 ms doubling,
/// at most 8 s, plus up to 25 % jitter from `jitter_seed`; a longer `Retry-After` wins (capped
/// at 30 s).
pub fn backoff_ms(failures: u32, retry_after_ms: Option<u64>, jitter_seed: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(4);
    let base = (500u64 << exp).min(8_000);
    let jitter = if base >= 4 {
        jitter_seed % (base / 4 + 1)
    } else {
        0
    };
    let backoff = base + jitter;
    match retry_after_ms {
        Some(ra) => backoff.max(ra.min(MAX_RETRY_AFTER_MS)),
        None => backoff,
    }
}

/// Whether waiting `wait_ms` from `now_ms` still leaves an attempt time before `deadline_ms`.
pub fn fits_before_deadline(now_ms: i64, wait_ms: i64, deadline_ms: i64) -> bool {
    now_ms
        .checked_add(wait_ms)
        .and_then(|t| t.checked_add(MIN_ATTEMPT_MS))
        .is_some_and(|t| t <= deadline_ms)
}

// ---------------------------------------------------------------------------------------------
// Single-flight

/// Concurrent calls with the same key share the first one's result.
///
/// The first caller (the leader) runs the work with its own host; the others wait. When the
/// leader is cancelled before finishing (the host dropped its call), a waiter takes over and
/// runs the work itself. Keys must include the account, so results never cross accounts.
pub struct SingleFlight<T> {
    flights: Mutex<HashMap<String, Arc<Flight<T>>>>,
}

struct Flight<T> {
    state: Mutex<FlightState<T>>,
}

enum FlightState<T> {
    Running(Vec<Waker>),
    Done(T),
    Abandoned,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

enum Role<T> {
    Leader(Arc<Flight<T>>),
    Follower(Arc<Flight<T>>),
}

/// Ends a flight when the leader finishes or is dropped.
struct LeaderGuard<'a, T> {
    owner: &'a SingleFlight<T>,
    key: String,
    flight: Arc<Flight<T>>,
    finished: bool,
}

impl<T> LeaderGuard<'_, T> {
    fn end(&mut self, outcome: FlightState<T>) {
        self.finished = true;
        {
            let mut flights = lock(&self.owner.flights);
            if flights
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(&self.key);
            }
        }
        let wakers = match std::mem::replace(&mut *lock(&self.flight.state), outcome) {
            FlightState::Running(wakers) => wakers,
            _ => Vec::new(),
        };
        for w in wakers {
            w.wake();
        }
    }
}

impl<T> Drop for LeaderGuard<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.end(FlightState::Abandoned);
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Runs `work` unless an identical call (same `key`) is in flight, in which case its result
    /// is returned. The flag says whether the result was shared from another call.
    pub async fn run<F, Fut>(&self, key: String, work: F) -> (T, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let flight = loop {
            let role = {
                let mut flights = lock(&self.flights);
                match flights.get(&key) {
                    Some(f) => Role::Follower(Arc::clone(f)),
                    None => {
                        let f = Arc::new(Flight {
                            state: Mutex::new(FlightState::Running(Vec::new())),
                        });
                        flights.insert(key.clone(), Arc::clone(&f));
                        Role::Leader(f)
                    }
                }
            };
            match role {
                Role::Leader(f) => break f,
                Role::Follower(f) => {
                    if let Some(v) = wait_for(&f).await {
                        return (v, true);
                    }
                    // The leader was cancelled: try again (maybe as the leader).
                }
            }
        };
        let mut guard = LeaderGuard {
            owner: self,
            key,
            flight,
            finished: false,
        };
        let value = work().await;
        guard.end(FlightState::Done(value.clone()));
        (value, false)
    }

    /// Calls in flight (for tests).
    pub fn in_flight(&self) -> usize {
        lock(&self.flights).len()
    }
}

/// Waits for a flight: `Some(result)`, or `None` when its leader was cancelled.
async fn wait_for<T: Clone>(flight: &Flight<T>) -> Option<T> {
    std::future::poll_fn(|cx| {
        let mut state = lock(&flight.state);
        match &mut *state {
            FlightState::Done(v) => Poll::Ready(Some(v.clone())),
            FlightState::Abandoned => Poll::Ready(None),
            FlightState::Running(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn retry_policy_protects_writes() {
        assert!(may_retry(false, RetryClass::NotProcessed));
        assert!(may_retry(true, RetryClass::NotProcessed));
        assert!(may_retry(false, RetryClass::Ambiguous));
        assert!(!may_retry(true, RetryClass::Ambiguous));
        assert!(!may_retry(false, RetryClass::Final));
        assert!(!may_retry(true, RetryClass::Final));
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        assert_eq!(backoff_ms(1, None, 0), 500);
        assert_eq!(backoff_ms(2, None, 0), 1000);
        assert_eq!(backoff_ms(3, None, 0), 2000);
        assert_eq!(backoff_ms(30, None, 0), 8000);
        for seed in 0..1000 {
            let b = backoff_ms(1, None, seed);
            assert!((500..=625).contains(&b));
        }
        assert_eq!(backoff_ms(1, Some(3000), 0), 3000);
        assert_eq!(backoff_ms(1, Some(100), 0), 500);
        assert_eq!(backoff_ms(1, Some(u64::MAX), 0), 30_000);
        assert!(fits_before_deadline(0, 500, 1500));
        assert!(!fits_before_deadline(0, 501, 1500));
        assert!(!fits_before_deadline(i64::MAX, 1, i64::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn single_flight_shares_concurrent_calls_and_survives_a_cancelled_leader() {
        let sf: Arc<SingleFlight<u32>> = Arc::new(SingleFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let call = |key: &str| {
            let (sf, runs, key) = (Arc::clone(&sf), Arc::clone(&runs), key.to_owned());
            tokio::spawn(async move {
                sf.run(key, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    7
                })
                .await
            })
        };
        let tasks: Vec<_> = (0..5).map(|_| call("a")).collect();
        let other = call("b");
        let mut shared = 0;
        for t in tasks {
            let (v, was_shared) = t.await.unwrap();
            assert_eq!(v, 7);
            shared += usize::from(was_shared);
        }
        assert_eq!(shared, 4);
        assert_eq!(other.await.unwrap(), (7, false));
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one run per key");
        assert_eq!(sf.in_flight(), 0);

        // A later call runs again (only concurrent calls share).
        assert_eq!(call("a").await.unwrap(), (7, false));
        assert_eq!(runs.load(Ordering::SeqCst), 3);

        // The leader is cancelled: a follower takes over.
        let leader = call("c");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let follower = call("c");
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort();
        assert_eq!(follower.await.unwrap(), (7, false));
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        assert_eq!(sf.in_flight(), 0);
    }
}
