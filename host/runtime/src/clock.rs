//! The wall clock the runtime lends plugins (`clock.now`) and stamps call deadlines with.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the runtime reads the time of day. The system clock by default; a test kit uses
/// [`HostClock::following_tokio`] so that the time of day a plugin reads moves with tokio's
/// (possibly paused) clock, which the host's timers (`time.sleep`, deadlines) already follow.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostClock {
    /// `Some((unix_ms, instant))`: `unix_ms` at `instant`, then advancing with tokio's clock.
    virtual_start: Option<(i64, tokio::time::Instant)>,
}

impl HostClock {
    /// The system clock.
    pub fn system() -> HostClock {
        HostClock::default()
    }

    /// A clock that reads `start_unix_ms` now and then advances with tokio's clock (frozen and
    /// moved by hand or auto-advanced when tokio's time is paused, as in tests). Create it
    /// inside the runtime whose clock it should follow.
    pub fn following_tokio(start_unix_ms: i64) -> HostClock {
        HostClock {
            virtual_start: Some((start_unix_ms, tokio::time::Instant::now())),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_unix_ms(&self) -> i64 {
        match self.virtual_start {
            None => crate::runtime::unix_ms(SystemTime::now()),
            Some((start, at)) => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(at);
                start.saturating_add(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            }
        }
    }

    /// [`HostClock::now_unix_ms`] at `now`, an instant the caller has just read (a call's
    /// start). The system clock is read at most once per [`REANCHOR`] on each thread and
    /// advanced by the monotonic clock in between: a call then reads the time once rather
    /// than twice. Off from a fresh reading by no more than a step of the system clock within
    /// the last [`REANCHOR`] (which the next re-read corrects).
    pub(crate) fn unix_ms_at(&self, now: tokio::time::Instant) -> i64 {
        if self.virtual_start.is_some() {
            return self.now_unix_ms();
        }
        ANCHOR.with(|anchor| {
            let since_epoch = match anchor.get() {
                Some((since_epoch, at))
                    if let Some(elapsed) = now.checked_duration_since(at)
                        && elapsed < REANCHOR =>
                {
                    since_epoch + elapsed
                }
                _ => {
                    let since_epoch = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    anchor.set(Some((since_epoch, now)));
                    since_epoch
                }
            };
            i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
        })
    }
}

/// How long a thread's reading of the system clock serves [`HostClock::unix_ms_at`].
pub(crate) const REANCHOR: Duration = Duration::from_secs(1);

thread_local! {
    /// The system clock's last reading on this thread (since the epoch) and the instant of it.
    static ANCHOR: Cell<Option<(Duration, tokio::time::Instant)>> = const { Cell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system_ms() -> i64 {
        crate::runtime::unix_ms(SystemTime::now())
    }

    #[test]
    fn unix_ms_at_follows_the_system_clock() {
        let clock = HostClock::system();
        for _ in 0..3 {
            let before = system_ms();
            let read = clock.unix_ms_at(tokio::time::Instant::now());
            let after = system_ms();
            // (A millisecond either side: the monotonic clock and the system clock tick apart.)
            assert!(
                (before - 1..=after + 1).contains(&read),
                "{before} <= {read} <= {after}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    #[test]
    fn unix_ms_at_advances_with_the_instant_and_rereads_after_a_second() {
        let clock = HostClock::system();
        let start = tokio::time::Instant::now();
        let at_start = clock.unix_ms_at(start);
        // Within a second of the reading: the instant's distance, to the millisecond.
        let later = clock.unix_ms_at(start + Duration::from_millis(400));
        assert!(
            (399..=401).contains(&(later - at_start)),
            "{}",
            later - at_start
        );
        // An instant far from the reading: the system clock is read again, so an instant that
        // is not now does not move the time of day (here: ten minutes ahead of it).
        let reread = clock.unix_ms_at(start + Duration::from_secs(600));
        assert!((reread - system_ms()).abs() < 1_000, "{reread}");
        // An instant before the reading (another runtime's paused clock, say) re-reads too.
        let earlier = clock.unix_ms_at(start);
        assert!((earlier - system_ms()).abs() < 1_000, "{earlier}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_following_tokio_ignores_the_instant_given() {
        let clock = HostClock::following_tokio(1_000_000);
        tokio::time::advance(Duration::from_millis(250)).await;
        let now = tokio::time::Instant::now();
        assert_eq!(clock.unix_ms_at(now + Duration::from_secs(5)), 1_000_250);
    }
}
