//! Fault injection: added latency, a random error rate, and forced failure
//! modes (HTTP 500, rate-limit answers, malformed bodies, dropped
//! connections, and writes that apply but lose their response).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// A forced failure mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// No forced failure.
    #[default]
    None,
    /// Server error: REST 500 `30000001`, SOAP fault `400300`. Not executed.
    Http500,
    /// Rate-limit answer: REST 429 `40000029`, SOAP fault `400101`. Not executed.
    RateLimit,
    /// HTTP 200 with a truncated body. Not executed.
    Malformed,
    /// The connection is closed without any response. Not executed.
    Drop,
    /// Write operations are applied, then the connection is closed without a
    /// response (an ambiguous failure). Reads are unaffected and do not
    /// consume `count`.
    DropAfterWrite,
}

/// Fault-injection settings, as accepted by `POST /_sim/faults`. Fields left
/// out take their defaults (no latency, no errors, mode `none`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Milliseconds added to every API response (including faults).
    pub latency_ms: u64,
    /// Fraction (0..=1) of API requests answered with a server error
    /// (REST 500 `30000001`, SOAP fault `400300`), decided by a seeded RNG.
    pub error_rate: f64,
    /// Forced failure mode.
    pub mode: FaultMode,
    /// How many upcoming requests `mode` applies to; `None` = until reset.
    /// When it reaches zero the mode returns to `none`.
    pub count: Option<u64>,
}

impl FaultSettings {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.error_rate.is_finite() && (0.0..=1.0).contains(&self.error_rate)) {
            return Err(format!(
                "error_rate must be between 0 and 1, got {}",
                self.error_rate
            ));
        }
        Ok(())
    }
}

/// A failure decided before the request is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreFault {
    Http500,
    RateLimit,
    Malformed,
    Drop,
}

#[derive(Debug)]
struct State {
    settings: FaultSettings,
    rng: SplitMix64,
}

/// Shared fault-injection state.
#[derive(Debug)]
pub(crate) struct Faults {
    inner: Mutex<State>,
}

impl Faults {
    /// Creates the state; `seed` drives the error-rate decisions.
    pub(crate) fn new(settings: FaultSettings, seed: u64) -> Self {
        Self {
            inner: Mutex::new(State {
                settings,
                rng: SplitMix64::new(seed ^ 0x5EED_FA17),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current settings (with the remaining `count`).
    pub(crate) fn settings(&self) -> FaultSettings {
        self.lock().settings.clone()
    }

    /// Replaces the settings.
    pub(crate) fn set(&self, settings: FaultSettings) -> Result<(), String> {
        settings.validate()?;
        self.lock().settings = settings;
        Ok(())
    }

    /// Latency to add to the current request.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.lock().settings.latency_ms)
    }

    /// Decides the failure (if any) of a request before it is executed.
    pub(crate) fn before(&self) -> Option<PreFault> {
        let mut st = self.lock();
        let forced = match st.settings.mode {
            FaultMode::Http500 => Some(PreFault::Http500),
            FaultMode::RateLimit => Some(PreFault::RateLimit),
            FaultMode::Malformed => Some(PreFault::Malformed),
            FaultMode::Drop => Some(PreFault::Drop),
            FaultMode::None | FaultMode::DropAfterWrite => None,
        };
        if forced.is_some() {
            consume(&mut st.settings);
            return forced;
        }
        let rate = st.settings.error_rate;
        (rate > 0.0 && st.rng.chance(rate)).then_some(PreFault::Http500)
    }

    /// Whether the write that was just applied must lose its response.
    pub(crate) fn after_write(&self) -> bool {
        let mut st = self.lock();
        if st.settings.mode == FaultMode::DropAfterWrite {
            consume(&mut st.settings);
            true
        } else {
            false
        }
    }
}

fn consume(settings: &mut FaultSettings) {
    if let Some(count) = settings.count.as_mut() {
        *count = count.saturating_sub(1);
        if *count == 0 {
            settings.mode = FaultMode::None;
            settings.count = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Faults forcing `mode` on the next `count` requests.
    fn counted(mode: FaultMode, count: u64) -> Faults {
        let settings = FaultSettings {
            mode,
            count: Some(count),
            ..FaultSettings::default()
        };
        Faults::new(settings, 1)
    }

    #[test]
    fn count_limits_the_mode() {
        let f = counted(FaultMode::Http500, 2);
        assert_eq!(f.before(), Some(PreFault::Http500));
        assert_eq!(f.settings().count, Some(1));
        assert_eq!(f.before(), Some(PreFault::Http500));
        assert_eq!(f.before(), None);
        assert_eq!(f.settings().mode, FaultMode::None);
    }

    #[test]
    fn drop_after_write_only_on_writes() {
        let f = counted(FaultMode::DropAfterWrite, 1);
        assert_eq!(f.before(), None);
        assert!(f.after_write());
        assert!(!f.after_write());
    }

    #[test]
    fn error_rate_extremes_and_validation() {
        let f = Faults::new(
            FaultSettings {
                error_rate: 1.0,
                ..FaultSettings::default()
            },
            1,
        );
        assert!((0..20).all(|_| f.before() == Some(PreFault::Http500)));
        assert!(f.set(FaultSettings::default()).is_ok());
        assert!((0..20).all(|_| f.before().is_none()));
        let bad = FaultSettings {
            error_rate: 1.5,
            ..FaultSettings::default()
        };
        assert!(f.set(bad).is_err());
    }
}
