//! The limiter of calls to upstream accounts, lent to plugins as the `limit.*` capabilities
//! (`devext_plugin_api::host::PermitRequest`).
//!
//! [`Limiter`] is the seam: the runtime only talks to it. [`LocalLimiter`] (the default) keeps the
//! accounts' state in this process; a host running several replicas hands the runtime a limiter
//! whose state they share ([`crate::RuntimeConfig::limiter`]; the service has one over
//! PostgreSQL). The rules every backend keeps:
//!
//! - at most `max_in_flight` permits of an account are held at once; a permit not released
//!   by its lease's end (its process died) is freed;
//! - at most `rate_per_second` permits of an account start in any window of
//!   `1000 + WINDOW_MARGIN_MS` ms;
//! - while a back-off of the account runs, no permit is granted;
//! - a `bulk` caller gets no permit while an `interactive` caller of the account waits (and, in
//!   this in-process limiter, takes no start before it is due, and leaves one start of each
//!   window free while interactive callers are about);
//! - nobody waits past their deadline: they get `rate_limited` with details
//!   `{"limit": "in_flight" | "rate" | "backoff", "retry_after_ms": n}`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use devext_plugin_api::host::{Priority, WINDOW_MARGIN_MS};
use devext_plugin_api::{ErrorKind, PluginError, json};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a caller asks of a [`Limiter`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermitAsk {
    /// The upstream account (the call context's `account_key`, or the plugin's own).
    pub account_key: String,
    /// Starts allowed in any rolling second (at least 1).
    pub rate_per_second: u32,
    /// Permits held at once (at least 1).
    pub max_in_flight: u32,
    /// Interactive callers are served before bulk ones.
    pub priority: Priority,
    /// Give up (`rate_limited`) rather than wait past this.
    pub wait_until: Instant,
    /// The call's deadline: the permit's holder is gone by then (leases end after it).
    pub call_deadline: Instant,
}

impl PermitAsk {
    /// An ask for a permit of `account_key`, waiting at most until `wait_until`.
    pub fn new(
        account_key: impl Into<String>,
        rate_per_second: u32,
        max_in_flight: u32,
        priority: Priority,
        wait_until: Instant,
    ) -> Self {
        PermitAsk {
            account_key: account_key.into(),
            rate_per_second: rate_per_second.max(1),
            max_in_flight: max_in_flight.max(1),
            priority,
            wait_until,
            call_deadline: wait_until,
        }
    }

    /// The window over which `rate_per_second` starts are allowed.
    pub fn window(&self) -> Duration {
        Duration::from_millis(1000 + WINDOW_MARGIN_MS)
    }
}

/// A boxed future of a [`Limiter`].
pub type LimiterFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend of the limiter capability.
pub trait Limiter: Send + Sync + 'static {
    /// Waits for a permit under the ask's limits; returns its id. `rate_limited` (see the module
    /// documentation) when none can be had by `ask.wait_until`.
    fn acquire(&self, ask: PermitAsk) -> LimiterFuture<'_, Result<String, PluginError>>;
    /// Gives a permit back (unknown ids are ignored: the lease may have ended). Must not block.
    fn release(&self, permit: &str);
    /// Pauses the account for `pause`: no permit is granted until it is over.
    fn back_off(&self, account_key: &str, pause: Duration);
    /// The request a permit of the account was granted for left `late` after the grant (the
    /// plugin's work, a busy machine): the next starts are spaced from the real one.
    fn started_late(&self, _account_key: &str, _late: Duration) {}
}

/// A start later than its grant by more than this is reported ([`Limiter::started_late`]).
pub const LATE_START: Duration = Duration::from_millis(20);

/// Longest back-off a plugin may ask for.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The error of a wait that cannot end before the caller's deadline.
pub fn refusal(limit: &str, retry_after: Duration, ask: &PermitAsk) -> PluginError {
    let why = match limit {
        "in_flight" => format!(
            "other calls to this upstream account kept it busy (at most {} at a time)",
            ask.max_in_flight
        ),
        "backoff" => "the upstream account asked callers to slow down".to_owned(),
        _ => format!(
            "the upstream account's limit of {} calls per second leaves no start in time",
            ask.rate_per_second
        ),
    };
    PluginError::new(
        ErrorKind::RateLimited,
        format!("rate limit: {why}; try again shortly"),
    )
    .with_details(json!({
        "limit": limit,
        "retry_after_ms": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
    }))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The in-process limiter: the accounts' state in this process's memory.
#[derive(Default)]
pub struct LocalLimiter {
    accounts: Mutex<HashMap<String, Arc<Account>>>,
    /// Held permits: id -> account.
    held: Mutex<HashMap<u64, Arc<Account>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("accounts", &lock(&self.accounts).len())
            .finish()
    }
}

#[derive(Default)]
struct Account {
    state: Mutex<AccountState>,
    changed: Notify,
}

#[derive(Default)]
struct AccountState {
    /// Held permits and the end of their lease.
    held: HashMap<u64, Instant>,
    /// Recent (and reserved) starts, non-decreasing.
    starts: VecDeque<Instant>,
    paused_until: Option<Instant>,
    /// Waiting callers, in arrival order.
    queue: VecDeque<(Priority, u64)>,
    /// The last start granted to an interactive caller.
    interactive_at: Option<Instant>,
}

/// For this many windows after an interactive caller's start, bulk callers leave one start of
/// each window free (someone is using the dashboard: their next click is served at once).
const INTERACTIVE_WINDOWS: u32 = 30;

impl AccountState {
    /// The caller served next: the first interactive one, else the first.
    fn head(&self) -> Option<u64> {
        self.queue
            .iter()
            .find(|(p, _)| *p == Priority::Interactive)
            .or(self.queue.front())
            .map(|&(_, t)| t)
    }

    /// The earliest start at or after `now` within the rate (not reserved).
    fn next_start(&mut self, now: Instant, rate: usize, window: Duration) -> Instant {
        while self.starts.front().is_some_and(|&s| s + window <= now) {
            self.starts.pop_front();
        }
        let mut t = now.max(self.starts.back().copied().unwrap_or(now));
        if self.starts.len() >= rate {
            t = t.max(self.starts[self.starts.len() - rate] + window);
        }
        t
    }
}

/// What a waiter does after looking at its account.
enum Step {
    Granted(u64, Instant),
    Wait(&'static str, Option<Instant>),
    Refuse(PluginError),
}

/// Takes a waiter out of its account's queue however its wait ends.
struct InQueue<'a> {
    account: &'a Account,
    ticket: u64,
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        lock(&self.account.state)
            .queue
            .retain(|&(_, t)| t != self.ticket);
        self.account.changed.notify_waiters();
    }
}

/// Releases a reserved permit if its holder is dropped before its start.
struct Reserved<'a> {
    limiter: &'a LocalLimiter,
    id: u64,
    armed: bool,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.limiter.release_id(self.id);
        }
    }
}

impl LocalLimiter {
    /// A limiter without accounts.
    pub fn new() -> LocalLimiter {
        LocalLimiter::default()
    }

    fn account(&self, key: &str) -> Arc<Account> {
        let mut accounts = lock(&self.accounts);
        if let Some(a) = accounts.get(key) {
            return Arc::clone(a);
        }
        let a = Arc::new(Account::default());
        accounts.insert(key.to_owned(), Arc::clone(&a));
        a
    }

    fn release_id(&self, id: u64) {
        let Some(account) = lock(&self.held).remove(&id) else {
            return;
        };
        lock(&account.state).held.remove(&id);
        account.changed.notify_waiters();
    }

    /// Permits of `account_key` held now (for tests and metrics).
    pub fn held(&self, account_key: &str) -> usize {
        let account = self.account(account_key);
        let now = Instant::now();
        let state = lock(&account.state);
        state.held.values().filter(|&&end| end > now).count()
    }

    async fn acquire_local(&self, ask: PermitAsk) -> Result<String, PluginError> {
        let account = self.account(&ask.account_key);
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&account.state).queue.push_back((ask.priority, ticket));
        let in_queue = InQueue {
            account: &account,
            ticket,
        };
        let window = ask.window();
        let lease_end = ask.call_deadline + Duration::from_secs(1);
        loop {
            let changed = account.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let step = {
                let mut state = lock(&account.state);
                let now = Instant::now();
                let before = state.held.len();
                state.held.retain(|_, end| *end > now);
                if state.held.len() < before {
                    account.changed.notify_waiters();
                }
                if state.head() != Some(ticket) {
                    Step::Wait("in_flight", None)
                } else if let Some(until) = state.paused_until.filter(|&u| u > now) {
                    Step::Wait("backoff", Some(until))
                } else if state.held.len() >= ask.max_in_flight as usize {
                    Step::Wait("in_flight", state.held.values().min().copied())
                } else {
                    // A bulk caller takes a start only once it is due (never holding a slot
                    // while it waits for one), so that an interactive caller arriving meanwhile
                    // goes first; and while interactive callers are about (one started within
                    // the last INTERACTIVE_WINDOWS windows) it leaves one start of each window
                    // to them.
                    let bulk = ask.priority == Priority::Bulk;
                    let interactive_lately = state
                        .interactive_at
                        .is_some_and(|t| now < t + window * INTERACTIVE_WINDOWS);
                    let rate = match ask.rate_per_second as usize {
                        r if bulk && interactive_lately && r > 1 => r - 1,
                        r => r,
                    };
                    let start = state.next_start(now, rate, window);
                    if start > ask.wait_until {
                        Step::Refuse(refusal("rate", start - now, &ask))
                    } else if bulk && start > now {
                        Step::Wait("rate", Some(start))
                    } else {
                        let id = self.next.fetch_add(1, Ordering::Relaxed);
                        if !bulk {
                            state.interactive_at = Some(start);
                        }
                        state.starts.push_back(start);
                        state.held.insert(id, lease_end);
                        Step::Granted(id, start)
                    }
                }
            };
            let (limit, wake_at) = match step {
                Step::Refuse(e) => return Err(e),
                Step::Wait(limit, wake_at) => (limit, wake_at),
                Step::Granted(id, start) => {
                    lock(&self.held).insert(id, Arc::clone(&account));
                    drop(in_queue); // the next caller may look now
                    let mut reserved = Reserved {
                        limiter: self,
                        id,
                        armed: true,
                    };
                    if start > Instant::now() {
                        tokio::time::sleep_until(start).await;
                    }
                    reserved.armed = false;
                    return Ok(id.to_string());
                }
            };
            let now = Instant::now();
            // A held permit may come back any moment: only a back-off is known to outlast.
            if limit == "backoff"
                && let Some(at) = wake_at
                && at > ask.wait_until
            {
                return Err(refusal(limit, at - now, &ask));
            }
            let until = wake_at.map_or(ask.wait_until, |at| at.min(ask.wait_until));
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(until) => {
                    if Instant::now() >= ask.wait_until {
                        let left = wake_at.map_or(window, |at| at.saturating_duration_since(now));
                        return Err(refusal(limit, left, &ask));
                    }
                }
            }
        }
    }
}

impl Limiter for LocalLimiter {
    fn acquire(&self, ask: PermitAsk) -> LimiterFuture<'_, Result<String, PluginError>> {
        Box::pin(self.acquire_local(ask))
    }

    fn release(&self, permit: &str) {
        if let Ok(id) = permit.parse::<u64>() {
            self.release_id(id);
        }
    }

    fn started_late(&self, account_key: &str, _late: Duration) {
        // The request left now: the latest start counts from now (only ever later), so that a
        // busy moment cannot squeeze more starts into a rolling second.
        let account = self.account(account_key);
        let now = Instant::now();
        let mut state = lock(&account.state);
        if let Some(last) = state.starts.back_mut()
            && *last < now
        {
            *last = now;
        }
    }

    fn back_off(&self, account_key: &str, pause: Duration) {
        let account = self.account(account_key);
        let until = Instant::now() + pause.min(MAX_BACKOFF);
        let mut state = lock(&account.state);
        state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn ask(rate: u32, in_flight: u32, priority: Priority, wait: Duration) -> PermitAsk {
        PermitAsk::new("acct", rate, in_flight, priority, Instant::now() + wait)
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_and_rolling_second_are_kept_under_load() {
        let limiter = Arc::new(LocalLimiter::new());
        let epoch = Instant::now();
        let current = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let starts = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..40u64 {
            let (limiter, current, peak, starts) = (
                Arc::clone(&limiter),
                Arc::clone(&current),
                Arc::clone(&peak),
                Arc::clone(&starts),
            );
            tasks.push(tokio::spawn(async move {
                let permit = limiter
                    .acquire(ask(5, 2, Priority::Interactive, Duration::from_secs(60)))
                    .await
                    .unwrap();
                lock(&starts).push(Instant::now() - epoch);
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30 + i % 7)).await;
                current.fetch_sub(1, Ordering::SeqCst);
                limiter.release(&permit);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        let starts = lock(&starts).clone();
        assert_eq!(starts.len(), 40);
        for s in &starts {
            let in_second = starts
                .iter()
                .filter(|&&x| x <= *s && *s - x < Duration::from_millis(1000 + WINDOW_MARGIN_MS))
                .count();
            assert!(in_second <= 5, "{starts:?}");
        }
        // Saturated, it keeps pace: 40 starts at 5 per 1.1 s take about 8 windows.
        let last = *starts.iter().max().unwrap();
        assert!(last <= Duration::from_millis(7 * 1100 + 200), "{last:?}");
        assert_eq!(limiter.held("acct"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_calls_go_at_once() {
        let limiter = LocalLimiter::new();
        let t0 = Instant::now();
        for _ in 0..5 {
            let p = limiter
                .acquire(ask(5, 1, Priority::Interactive, Duration::from_secs(5)))
                .await
                .unwrap();
            limiter.release(&p);
        }
        assert_eq!(
            Instant::now(),
            t0,
            "5 per second: the first five wait for nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_is_refused_with_its_reason() {
        let limiter = LocalLimiter::new();
        let held = limiter
            .acquire(ask(5, 1, Priority::Interactive, Duration::from_secs(5)))
            .await
            .unwrap();
        let e = limiter
            .acquire(ask(5, 1, Priority::Interactive, Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.details["limit"], "in_flight");
        limiter.release(&held);
        // The rate: one per second, the second start is a window away.
        let p = limiter
            .acquire(ask(1, 5, Priority::Interactive, Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert_eq!(p.details["limit"], "rate", "{p:?}");
        assert!(p.details["retry_after_ms"].as_u64().unwrap() > 800);
    }

    #[tokio::test(start_paused = true)]
    async fn a_back_off_pauses_every_caller_of_the_account() {
        let limiter = LocalLimiter::new();
        limiter.back_off("acct", Duration::from_secs(2));
        let t0 = Instant::now();
        let e = limiter
            .acquire(ask(5, 5, Priority::Interactive, Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert_eq!(e.details["limit"], "backoff");
        let p = limiter
            .acquire(ask(5, 5, Priority::Interactive, Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(Instant::now() - t0 >= Duration::from_secs(2));
        limiter.release(&p);
        // Another account is not paused.
        limiter.back_off("acct", Duration::from_secs(2));
        let t1 = Instant::now();
        let other = PermitAsk::new(
            "other",
            5,
            5,
            Priority::Interactive,
            t1 + Duration::from_secs(1),
        );
        let p = limiter.acquire(other).await.unwrap();
        assert_eq!(Instant::now(), t1);
        limiter.release(&p);
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_callers_leave_a_start_of_each_window_while_interactive_ones_are_about() {
        let limiter = LocalLimiter::new();
        let window = Duration::from_millis(1000 + WINDOW_MARGIN_MS);
        let take = async |priority| {
            let p = limiter
                .acquire(ask(5, 5, priority, Duration::from_secs(10)))
                .await
                .unwrap();
            limiter.release(&p);
        };
        // Nobody interactive about: bulk callers have every start of the window.
        let t0 = Instant::now();
        for _ in 0..5 {
            take(Priority::Bulk).await;
        }
        assert_eq!(Instant::now(), t0);
        // An interactive caller (the next window's first start)...
        take(Priority::Interactive).await;
        let t1 = Instant::now();
        assert_eq!(t1, t0 + window);
        // ... and bulk callers now take four starts of a window, not five,
        for _ in 0..3 {
            take(Priority::Bulk).await;
        }
        assert_eq!(Instant::now(), t1);
        // leaving the fifth to the next interactive caller, at once;
        take(Priority::Interactive).await;
        assert_eq!(Instant::now(), t1);
        // a bulk caller waits for the next window.
        take(Priority::Bulk).await;
        assert!(Instant::now() >= t1 + window);
    }

    #[tokio::test(start_paused = true)]
    async fn interactive_callers_pass_waiting_bulk_ones() {
        let limiter = Arc::new(LocalLimiter::new());
        let held = limiter
            .acquire(ask(100, 1, Priority::Interactive, Duration::from_secs(5)))
            .await
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, priority) in [
            Priority::Bulk,
            Priority::Bulk,
            Priority::Interactive,
            Priority::Bulk,
            Priority::Interactive,
        ]
        .into_iter()
        .enumerate()
        {
            let (limiter, order) = (Arc::clone(&limiter), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let p = limiter
                    .acquire(ask(100, 1, priority, Duration::from_secs(10)))
                    .await
                    .unwrap();
                lock(&order).push((i, priority));
                tokio::time::sleep(Duration::from_millis(10)).await;
                limiter.release(&p);
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        limiter.release(&held);
        for t in tasks {
            t.await.unwrap();
        }
        let order: Vec<usize> = lock(&order).iter().map(|&(i, _)| i).collect();
        assert_eq!(order, vec![2, 4, 0, 1, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_frees_a_permit_never_released_and_cancelling_a_wait_gives_its_place_back() {
        let limiter = Arc::new(LocalLimiter::new());
        let t0 = Instant::now();
        // Held by a call whose deadline is in 1 s, never released.
        let _leaked = limiter
            .acquire(ask(100, 1, Priority::Interactive, Duration::from_secs(1)))
            .await
            .unwrap();
        // A waiter that gives up (its call was cancelled).
        let waiting = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter
                    .acquire(ask(100, 1, Priority::Interactive, Duration::from_secs(60)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        waiting.abort();
        let p = limiter
            .acquire(ask(100, 1, Priority::Interactive, Duration::from_secs(10)))
            .await
            .unwrap();
        let waited = Instant::now() - t0;
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
        limiter.release(&p);
        assert_eq!(limiter.held("acct"), 0);
    }
}
