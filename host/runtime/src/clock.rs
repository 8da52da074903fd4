//! The wall clock the runtime lends plugins (`clock.now`) and stamps call deadlines with.

use std::time::SystemTime;

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
}
