//! Jasper's per-account limits, retries and single-flight, without any async runtime: plain
//! `std::sync::Mutex` + `Waker` lists, and the host's timers for waiting.
//!
//! - [`Semaphore`]: a FIFO async semaphore (`max_in_flight` calls at once).
//! - [`RateWindow`]: a sliding one-second window (`rate_per_second` call starts in any second).
//! - [`may_retry`] / [`backoff_ms`]: the retry policy (writes only when provably not processed).
//! - [`SingleFlight`]: concurrent identical reads share one upstream call.
//!
//! No lock is ever held across an `.await`, and no function panics (a poisoned lock is used as
//! it is: the state it protects stays consistent at every step).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::errors::RetryClass;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Semaphore

/// A FIFO async semaphore.
pub struct Semaphore {
    state: Mutex<SemState>,
}

struct SemState {
    available: usize,
    queue: VecDeque<Arc<Waiter>>,
}

#[derive(Default)]
struct Waiter {
    state: Mutex<WaiterState>,
}

#[derive(Default)]
struct WaiterState {
    granted: bool,
    waker: Option<Waker>,
}

impl Semaphore {
    pub fn new(permits: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore {
            state: Mutex::new(SemState {
                available: permits,
                queue: VecDeque::new(),
            }),
        })
    }

    /// Waits for a permit, first come first served. Dropping the future gives up its place (or
    /// passes on a permit it was granted but never saw).
    pub fn acquire(self: &Arc<Self>) -> Acquire {
        Acquire {
            sem: Arc::clone(self),
            waiter: None,
            done: false,
        }
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        lock(&self.state).available
    }

    fn release(&self) {
        let mut state = lock(&self.state);
        if let Some(next) = state.queue.pop_front() {
            let waker = {
                let mut w = lock(&next.state);
                w.granted = true;
                w.waker.take()
            };
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
        } else {
            state.available += 1;
        }
    }
}

/// A held permit; released when dropped.
pub struct Permit {
    sem: Arc<Semaphore>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.sem.release();
    }
}

/// The future of [`Semaphore::acquire`].
pub struct Acquire {
    sem: Arc<Semaphore>,
    waiter: Option<Arc<Waiter>>,
    done: bool,
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        if self.done {
            // Polled after completion: behave like a fresh acquire would not; stay pending.
            return Poll::Pending;
        }
        match &self.waiter {
            None => {
                let mut state = lock(&self.sem.state);
                if state.available > 0 && state.queue.is_empty() {
                    state.available -= 1;
                    drop(state);
                    self.done = true;
                    return Poll::Ready(Permit {
                        sem: Arc::clone(&self.sem),
                    });
                }
                let waiter = Arc::new(Waiter::default());
                lock(&waiter.state).waker = Some(cx.waker().clone());
                state.queue.push_back(Arc::clone(&waiter));
                drop(state);
                self.waiter = Some(waiter);
                Poll::Pending
            }
            Some(waiter) => {
                let mut w = lock(&waiter.state);
                if w.granted {
                    drop(w);
                    self.done = true;
                    return Poll::Ready(Permit {
                        sem: Arc::clone(&self.sem),
                    });
                }
                if !w
                    .waker
                    .as_ref()
                    .is_some_and(|old| old.will_wake(cx.waker()))
                {
                    w.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(waiter) = self.waiter.take() else {
            return;
        };
        let mut state = lock(&self.sem.state);
        let granted = lock(&waiter.state).granted;
        if granted {
            // Granted but never observed: pass the permit on.
            drop(state);
            self.sem.release();
        } else {
            state.queue.retain(|w| !Arc::ptr_eq(w, &waiter));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rate window

/// A sliding window: at most `per_second` call starts in any window of 1000 ms (a start at `t`
/// and one at `t + 1000` are in different windows), the way Jasper counts calls per second.
pub struct RateWindow {
    per_second: usize,
    /// The latest starts (granted or reserved), non-decreasing, at most `per_second` of them,
    /// none a whole window older than the latest reservation.
    starts: VecDeque<i64>,
}

impl RateWindow {
    pub fn new(per_second: u32) -> RateWindow {
        RateWindow {
            per_second: (per_second as usize).max(1),
            starts: VecDeque::new(),
        }
    }

    /// Reserves the earliest start time at or after `now_ms` that keeps the limit, and returns
    /// it. Start times are handed out in order, so callers just wait until theirs.
    ///
    /// The window is one second plus [`WINDOW_MARGIN_MS`]: Jasper counts arrivals in any rolling
    /// second, and a request arrives some milliseconds after its planned start (timer and
    /// network jitter), so pacing at exactly one second lets a sixth request in now and then.
    ///
    /// Starts a whole window before `now_ms` constrain nothing any more and are dropped, so the
    /// memory follows the calls actually made, not the limit (which may be thousands). The
    /// start reserved now is never dropped by this call, so even a clock that steps back later
    /// cannot hand out an earlier start than the ones already given.
    pub fn reserve(&mut self, now_ms: i64) -> i64 {
        let window = 1000 + WINDOW_MARGIN_MS;
        while self
            .starts
            .front()
            .is_some_and(|&s| s.saturating_add(window) <= now_ms)
        {
            self.starts.pop_front();
        }
        let mut t = now_ms.max(self.starts.back().copied().unwrap_or(i64::MIN));
        if self.starts.len() >= self.per_second {
            let nth_latest = self.starts[self.starts.len() - self.per_second];
            t = t.max(nth_latest.saturating_add(window));
        }
        self.starts.push_back(t);
        while self.starts.len() > self.per_second {
            self.starts.pop_front();
        }
        t
    }
}

/// Slack added to the one-second rate window (see [`RateWindow::reserve`]).
pub const WINDOW_MARGIN_MS: i64 = 100;

/// The limits of one Jasper account.
pub struct AccountLimits {
    pub rate_per_second: u32,
    pub max_in_flight: u32,
    pub in_flight: Arc<Semaphore>,
    pub window: Mutex<RateWindow>,
}

impl AccountLimits {
    pub fn new(rate_per_second: u32, max_in_flight: u32) -> AccountLimits {
        AccountLimits {
            rate_per_second,
            max_in_flight,
            in_flight: Semaphore::new(max_in_flight.max(1) as usize),
            window: Mutex::new(RateWindow::new(rate_per_second)),
        }
    }

    /// Reserves a start time (see [`RateWindow::reserve`]).
    pub fn reserve_start(&self, now_ms: i64) -> i64 {
        lock(&self.window).reserve(now_ms)
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
// Racing two futures (for deadlines)

/// Which of two raced futures finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures (`a` first) until one is ready; the other is dropped.
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
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
    fn window_never_allows_more_than_n_starts_per_second() {
        for n in [1u32, 2, 5, 7] {
            let mut w = RateWindow::new(n);
            let mut starts = Vec::new();
            // Bursty arrivals, including a clock that goes backwards.
            let arrivals = [
                0i64, 0, 0, 0, 0, 0, 0, 0, 10, 10, 999, 1000, 1001, 500, 2500, 2500, 9000, 9000,
                // The clock steps back after old starts were dropped.
                100, 100, 100, 9001, 20_000, 20_000, 19_000, 19_000, 19_000,
            ];
            for now in arrivals {
                let t = w.reserve(now);
                assert!(t >= now);
                starts.push(t);
            }
            assert!(starts.windows(2).all(|p| p[0] <= p[1]), "ordered");
            for (i, &s) in starts.iter().enumerate() {
                // Even with every request arriving up to the margin late.
                let window = 1000 + WINDOW_MARGIN_MS;
                let in_window = starts[..=i].iter().filter(|&&x| x > s - window).count();
                assert!(in_window <= n as usize, "n={n}: {starts:?}");
            }
            // And no needless waiting: the first n go at once.
            assert_eq!(starts[..n as usize], vec![0; n as usize][..]);
        }
    }

    #[test]
    fn window_memory_follows_the_calls_made_not_the_limit() {
        let mut w = RateWindow::new(10_000);
        // 100 calls a second for 10 seconds.
        for i in 0..1000i64 {
            w.reserve(i * 10);
        }
        assert!(
            w.starts.len() <= 111,
            "{} starts kept for a 1.1 s window at 100/s",
            w.starts.len()
        );
    }

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

    /// A tiny single-threaded executor for the runtime-agnostic primitives.
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn semaphore_is_fifo_and_cancellation_safe() {
        let sem = Semaphore::new(1);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let first = block_on(sem.acquire());
        let mut a = Box::pin(sem.acquire());
        let mut b = Box::pin(sem.acquire());
        let mut c = Box::pin(sem.acquire());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        // b gives up its place.
        drop(b);
        drop(first);
        // a was first in line.
        let Poll::Ready(pa) = a.as_mut().poll(&mut cx) else {
            panic!("a should have the permit")
        };
        assert!(c.as_mut().poll(&mut cx).is_pending());
        // c is granted when a releases, but is dropped before it looks: the permit comes back.
        drop(pa);
        drop(c);
        assert_eq!(sem.available(), 1);
        let again = block_on(sem.acquire());
        assert_eq!(sem.available(), 0);
        drop(again);
        assert_eq!(sem.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn semaphore_bounds_concurrency_under_load() {
        let sem = Semaphore::new(2);
        let current = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let (sem, current, peak) = (Arc::clone(&sem), Arc::clone(&current), Arc::clone(&peak));
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10 + i % 3)).await;
                current.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(sem.available(), 2);
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
