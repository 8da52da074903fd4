//! Per-account traffic accounting: the rate limiter (concurrency and
//! requests per rolling second) and the observed-traffic statistics.
//!
//! Every API request (SOAP or REST, authenticated or not) counts against the
//! single simulated account, as Control Center counts an account together
//! with its API users.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::views::StatsSnapshot;

/// Length of the rate-limit window.
const WINDOW: Duration = Duration::from_secs(1);

/// Rate-limit settings of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Whether limits are enforced (`--no-rate-limit` clears it). Statistics
    /// are recorded either way.
    pub enabled: bool,
    /// Maximum requests admitted in any rolling 1-second window (0 = no limit).
    pub rate_per_second: u32,
    /// Maximum concurrent requests (0 = no limit).
    pub max_in_flight: u32,
}

impl Default for LimitSettings {
    /// Cisco's published policy: one call at a time, at most 5 per second.
    fn default() -> Self {
        Self {
            enabled: true,
            rate_per_second: 5,
            max_in_flight: 1,
        }
    }
}

/// Which API a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiKind {
    Soap,
    Rest,
}

/// Outcome of the limiter for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    /// Too many concurrent requests.
    TooManyInFlight,
    /// Too many requests in the last second.
    TooManyPerSecond,
}

#[derive(Debug, Default)]
struct State {
    settings: LimitSettings,
    in_flight: u64,
    /// Start instants of admitted requests within the window.
    admitted: VecDeque<Instant>,
    /// Start instants of all requests within the window (statistics).
    starts: VecDeque<Instant>,
    stats: StatsSnapshot,
}

/// Shared traffic accounting (cheap to clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct Traffic {
    inner: Arc<Mutex<State>>,
}

/// Decrements the in-flight counter when the request is done.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    traffic: Traffic,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut st = self.traffic.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}

fn prune(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        window.pop_front();
    }
}

impl Traffic {
    /// Creates the accounting with the given limits.
    pub(crate) fn new(settings: LimitSettings) -> Self {
        let traffic = Self::default();
        traffic.lock().settings = settings;
        traffic
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the start of an API request and decides whether it is
    /// admitted. The guard must live until the response is ready.
    pub(crate) fn begin(&self, api: ApiKind) -> (Admission, InFlightGuard) {
        let now = Instant::now();
        let mut st = self.lock();
        st.stats.requests += 1;
        match api {
            ApiKind::Soap => st.stats.soap_requests += 1,
            ApiKind::Rest => st.stats.rest_requests += 1,
        }
        st.in_flight += 1;
        st.stats.max_in_flight_seen = st.stats.max_in_flight_seen.max(st.in_flight);
        prune(&mut st.starts, now);
        st.starts.push_back(now);
        st.stats.max_per_second_seen = st.stats.max_per_second_seen.max(st.starts.len() as u64);

        prune(&mut st.admitted, now);
        let settings = st.settings;
        let admission = if !settings.enabled {
            Admission::Admitted
        } else if settings.max_in_flight > 0 && st.in_flight > u64::from(settings.max_in_flight) {
            Admission::TooManyInFlight
        } else if settings.rate_per_second > 0
            && st.admitted.len() >= settings.rate_per_second as usize
        {
            Admission::TooManyPerSecond
        } else {
            Admission::Admitted
        };
        if admission == Admission::Admitted {
            st.admitted.push_back(now);
        } else {
            st.stats.rate_limited += 1;
        }
        drop(st);
        (
            admission,
            InFlightGuard {
                traffic: self.clone(),
            },
        )
    }

    /// Counts one request of the named operation.
    pub(crate) fn record_op(&self, name: &str) {
        *self
            .lock()
            .stats
            .operations
            .entry(name.to_owned())
            .or_default() += 1;
    }

    /// Counts an applied write.
    pub(crate) fn record_write(&self) {
        self.lock().stats.writes += 1;
    }

    /// Counts an injected fault.
    pub(crate) fn record_fault(&self) {
        self.lock().stats.faults_injected += 1;
    }

    /// Counts a connection dropped on purpose.
    pub(crate) fn record_drop(&self) {
        self.lock().stats.dropped_connections += 1;
    }

    /// Current statistics.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let st = self.lock();
        StatsSnapshot {
            in_flight: st.in_flight,
            ..st.stats.clone()
        }
    }

    /// Zeroes the statistics (requests in flight stay counted).
    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        st.stats = StatsSnapshot::default();
        st.stats.max_in_flight_seen = st.in_flight;
        st.starts.clear();
    }

    /// Current limits.
    pub(crate) fn settings(&self) -> LimitSettings {
        self.lock().settings
    }

    /// Replaces the limits (the admission window is cleared).
    pub(crate) fn set_settings(&self, settings: LimitSettings) {
        let mut st = self.lock();
        st.settings = settings;
        st.admitted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_and_peaks() {
        let t = Traffic::new(LimitSettings {
            enabled: true,
            rate_per_second: 3,
            max_in_flight: 0,
        });
        let results: Vec<_> = (0..5).map(|_| t.begin(ApiKind::Rest).0).collect();
        assert_eq!(&results[..3], &[Admission::Admitted; 3]);
        assert_eq!(&results[3..], &[Admission::TooManyPerSecond; 2]);
        let s = t.snapshot();
        assert_eq!(s.requests, 5);
        assert_eq!(s.rate_limited, 2);
        assert_eq!(s.max_per_second_seen, 5);
        assert_eq!(s.in_flight, 0);
    }

    #[test]
    fn in_flight_limit() {
        let t = Traffic::new(LimitSettings {
            enabled: true,
            rate_per_second: 0,
            max_in_flight: 1,
        });
        let (a, guard) = t.begin(ApiKind::Soap);
        assert_eq!(a, Admission::Admitted);
        let (b, _g2) = t.begin(ApiKind::Soap);
        assert_eq!(b, Admission::TooManyInFlight);
        drop(_g2);
        drop(guard);
        assert_eq!(t.begin(ApiKind::Soap).0, Admission::Admitted);
        assert_eq!(t.snapshot().max_in_flight_seen, 2);
        t.reset();
        assert_eq!(t.snapshot(), StatsSnapshot::default());
    }

    #[test]
    fn disabled_limits_still_record() {
        let t = Traffic::new(LimitSettings {
            enabled: false,
            ..LimitSettings::default()
        });
        let guards: Vec<_> = (0..4).map(|_| t.begin(ApiKind::Rest)).collect();
        assert!(guards.iter().all(|(a, _)| *a == Admission::Admitted));
        assert_eq!(t.snapshot().max_in_flight_seen, 4);
    }
}
