//! Retries with back-off.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::{CallContext, ErrorKind, Host, LogLevel, PluginError, Value};

/// Whether repeating a request is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// A read (or an idempotent write): repeated whenever the failure is transient.
    Read,
    /// A write: repeated only when the failure proves the upstream did not process it.
    Write,
}

/// Whether the upstream may have acted on the request that failed with `error`.
///
/// It certainly did not when the request never left (`details.stage = "connect"`, as the host's
/// HTTP capability reports it), when the upstream refused it for its rate (`rate_limited`), or
/// when the plugin says so (`details.processed = false`, e.g. for a `503` that its upstream
/// documents as "nothing done"). Anything else may have been processed.
pub fn may_have_been_processed(error: &PluginError) -> bool {
    let details = &error.details;
    let stage_connect = details.get("stage").and_then(Value::as_str) == Some("connect");
    let said_not = details.get("processed") == Some(&Value::Bool(false));
    !(stage_connect || said_not || error.kind == ErrorKind::RateLimited)
}

/// What [`Retry::run`] needs to know of a failed attempt. Implemented for [`PluginError`]
/// ([`Retry::should_retry`], `details.retry_after_ms`); a plugin with its own classification of
/// its upstream's answers implements it for its own error type.
pub trait Retriable {
    /// Whether repeating the request of this `safety` after this failure is worth it and safe.
    fn worth_retrying(&self, safety: Safety) -> bool;
    /// The wait the upstream asked for (e.g. its `Retry-After`), if any.
    fn retry_after(&self) -> Option<Duration>;
    /// A short description for the log (never a secret).
    fn summary(&self) -> String;
}

impl Retriable for PluginError {
    fn worth_retrying(&self, safety: Safety) -> bool {
        Retry::should_retry(self, safety)
    }

    fn retry_after(&self) -> Option<Duration> {
        self.details
            .get("retry_after_ms")
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
    }

    fn summary(&self) -> String {
        format!("{}: {}", self.kind.as_str(), self.message)
    }
}

/// How the waits are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jitter {
    None,
    /// Between half the wait and the wait.
    Below,
    /// Between the wait and the wait plus this percentage of it.
    Above(u32),
}

/// A retry policy: how many attempts, and how long to wait between them.
///
/// The wait after attempt *n* is `base_delay * 2^(n-1)`, capped at `max_delay`, at least the
/// upstream's `details.retry_after_ms` when the error carries one (itself capped at
/// [`Retry::max_retry_after`], if set), and with jitter (a deterministic spread of up to half
/// the wait, from the call id; or above the wait, [`Retry::jitter_above`]) unless turned off. A
/// retry that could not finish before the call's deadline is not started: the last error is
/// returned.
#[derive(Debug, Clone)]
pub struct Retry {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: Jitter,
    /// Time an attempt needs, at least, for a retry to be worth starting.
    min_attempt: Duration,
    /// The longest upstream-asked wait honoured.
    max_retry_after: Option<Duration>,
    /// Prefix of the log lines.
    label: Option<String>,
    log_level: LogLevel,
}

impl Default for Retry {
    fn default() -> Self {
        Retry::new(3)
    }
}

impl Retry {
    /// Up to `max_attempts` attempts (at least 1), waits from 200 ms up to 5 s, with jitter.
    pub fn new(max_attempts: u32) -> Retry {
        Retry {
            max_attempts: max_attempts.max(1),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            jitter: Jitter::Below,
            min_attempt: Duration::from_millis(500),
            max_retry_after: None,
            label: None,
            log_level: LogLevel::Debug,
        }
    }

    /// The first wait.
    pub fn base_delay(mut self, delay: Duration) -> Retry {
        self.base_delay = delay;
        self
    }

    /// The longest wait (the upstream's `retry_after_ms` may ask for more, within the deadline).
    pub fn max_delay(mut self, delay: Duration) -> Retry {
        self.max_delay = delay;
        self
    }

    /// Turns the jitter off (exact waits, for tests).
    pub fn without_jitter(mut self) -> Retry {
        self.jitter = Jitter::None;
        self
    }

    /// Spreads the waits above their nominal value instead of below: each wait is between the
    /// nominal one and `percent` % more (so a wait is never shorter than `base_delay`).
    pub fn jitter_above(mut self, percent: u32) -> Retry {
        self.jitter = Jitter::Above(percent);
        self
    }

    /// The longest upstream-asked wait (`retry_after_ms`, `Retry-After`) honoured: a longer one
    /// counts as this long (no cap by default).
    pub fn max_retry_after(mut self, wait: Duration) -> Retry {
        self.max_retry_after = Some(wait);
        self
    }

    /// Prefixes the log line of each retry with `label` (e.g. the request's name).
    pub fn label(mut self, label: impl Into<String>) -> Retry {
        self.label = Some(label.into());
        self
    }

    /// The level of the log line of each retry (`debug` by default).
    pub fn log_level(mut self, level: LogLevel) -> Retry {
        self.log_level = level;
        self
    }

    /// The time an attempt needs at least: a retry that would start with less than this left
    /// before the deadline is not made (500 ms by default).
    pub fn min_attempt(mut self, time: Duration) -> Retry {
        self.min_attempt = time;
        self
    }

    /// Whether a failure `error` of a request of this `safety` is worth repeating: a transient
    /// failure (`retryable`, or an `upstream`, `timeout` or `rate_limited` error), and for a
    /// write only one the upstream cannot have processed ([`may_have_been_processed`]).
    pub fn should_retry(error: &PluginError, safety: Safety) -> bool {
        let transient = error.retryable
            || matches!(
                error.kind,
                ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::RateLimited
            );
        transient && (safety == Safety::Read || !may_have_been_processed(error))
    }

    /// The wait before attempt `attempt + 1` after `error`.
    fn delay(&self, context: &CallContext, attempt: u32, error: &impl Retriable) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.max_delay);
        let seed = || {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&context.call_id, attempt).hash(&mut h);
            h.finish()
        };
        let ms = exp.as_millis() as u64;
        let exp = match self.jitter {
            Jitter::None => exp,
            _ if exp.is_zero() => exp,
            Jitter::Below => Duration::from_millis(ms / 2 + seed() % (ms / 2 + 1)),
            Jitter::Above(percent) => {
                let spread = ms.saturating_mul(u64::from(percent)) / 100;
                Duration::from_millis(ms.saturating_add(seed() % spread.saturating_add(1)))
            }
        };
        let mut asked = error.retry_after().unwrap_or_default();
        if let Some(cap) = self.max_retry_after {
            asked = asked.min(cap);
        }
        exp.max(asked)
    }

    /// Runs `attempt(n)` (n = 1, 2, ...) until it succeeds, fails in a way not worth repeating
    /// ([`Retriable::worth_retrying`]), runs out of attempts or would not finish before the
    /// call's deadline; waits on the host's timers in between. Returns the last error (or the
    /// host's, converted, when its clock or timer fails).
    pub async fn run<T, E, F, Fut>(
        &self,
        host: &Host,
        context: &CallContext,
        safety: Safety,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: Retriable + From<PluginError>,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut n = 1;
        loop {
            let error = match attempt(n).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if n >= self.max_attempts || !error.worth_retrying(safety) {
                return Err(error);
            }
            let wait = self.delay(context, n, &error);
            let now = host.now_unix_ms()?;
            let needed = i64::try_from((wait + self.min_attempt).as_millis()).unwrap_or(i64::MAX);
            if now.saturating_add(needed) > context.deadline_unix_ms {
                return Err(error);
            }
            let prefix = self
                .label
                .as_deref()
                .map(|l| format!("{l}: "))
                .unwrap_or_default();
            host.log(
                self.log_level,
                format!(
                    "{prefix}attempt {n} failed ({}); retrying in {} ms",
                    error.summary(),
                    wait.as_millis()
                ),
            );
            host.sleep(wait).await?;
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn writes_are_repeated_only_when_nothing_was_done() {
        let connect = PluginError::upstream("down").with_details(json!({"stage": "connect"}));
        let response = PluginError::upstream("cut").with_details(json!({"stage": "response"}));
        let limited = PluginError::new(ErrorKind::RateLimited, "slow down");
        let said = PluginError::upstream("503").with_details(json!({"processed": false}));
        let invalid = PluginError::invalid_input("no");
        for e in [&connect, &limited, &said] {
            assert!(Retry::should_retry(e, Safety::Write), "{e:?}");
        }
        assert!(!Retry::should_retry(&response, Safety::Write));
        assert!(Retry::should_retry(&response, Safety::Read));
        assert!(!Retry::should_retry(&invalid, Safety::Read));
        let timeout = PluginError::new(ErrorKind::Timeout, "late");
        assert!(!Retry::should_retry(&timeout, Safety::Write));
    }

    #[test]
    fn waits_grow_are_capped_and_honour_retry_after() {
        let r = Retry::new(5)
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(300))
            .without_jitter();
        let ctx = CallContext::new("c", 0);
        let e = PluginError::upstream("x");
        let waits: Vec<u128> = (1..=4).map(|n| r.delay(&ctx, n, &e).as_millis()).collect();
        assert_eq!(waits, [100, 200, 300, 300]);
        let asked = e.clone().with_details(json!({"retry_after_ms": 2000}));
        assert_eq!(r.delay(&ctx, 1, &asked).as_millis(), 2000);
        let jittered = Retry::new(2).base_delay(Duration::from_millis(1000));
        let w = jittered.delay(&ctx, 1, &e).as_millis();
        assert!((500..=1000).contains(&w), "{w}");
        assert_eq!(w, jittered.delay(&ctx, 1, &e).as_millis(), "deterministic");
    }

    #[test]
    fn jitter_above_never_shortens_and_retry_after_can_be_capped() {
        let r = Retry::new(4)
            .base_delay(Duration::from_millis(500))
            .max_delay(Duration::from_secs(8))
            .jitter_above(25)
            .max_retry_after(Duration::from_secs(30));
        let e = PluginError::upstream("x");
        for i in 0..200 {
            let ctx = CallContext::new(format!("call-{i}"), 0);
            let w = r.delay(&ctx, 1, &e).as_millis();
            assert!((500..=625).contains(&w), "{w}");
            let w = r.delay(&ctx, 6, &e).as_millis();
            assert!((8000..=10_000).contains(&w), "{w}");
        }
        let ctx = CallContext::new("c", 0);
        let asked = e.clone().with_details(json!({"retry_after_ms": 3000}));
        assert_eq!(r.delay(&ctx, 1, &asked).as_millis(), 3000);
        let huge = e.clone().with_details(json!({"retry_after_ms": u64::MAX}));
        assert_eq!(r.delay(&ctx, 1, &huge).as_millis(), 30_000);
        let uncapped = Retry::new(2).without_jitter();
        assert_eq!(uncapped.delay(&ctx, 1, &asked).as_millis(), 3000);
    }

    /// A plugin's own error type, classified by the plugin.
    struct Own {
        again: bool,
        after: Option<Duration>,
    }

    impl Retriable for Own {
        fn worth_retrying(&self, safety: Safety) -> bool {
            self.again && safety == Safety::Read
        }
        fn retry_after(&self) -> Option<Duration> {
            self.after
        }
        fn summary(&self) -> String {
            "own".into()
        }
    }

    #[test]
    fn a_plugins_own_error_type_decides_and_asks_for_its_wait() {
        let r = Retry::new(3).without_jitter();
        let ctx = CallContext::new("c", 0);
        let own = Own {
            again: true,
            after: Some(Duration::from_millis(1234)),
        };
        assert!(own.worth_retrying(Safety::Read));
        assert!(!own.worth_retrying(Safety::Write));
        assert_eq!(r.delay(&ctx, 1, &own).as_millis(), 1234);
        let e = PluginError::upstream("x").with_details(json!({"retry_after_ms": 7}));
        assert_eq!(e.retry_after(), Some(Duration::from_millis(7)));
        assert_eq!(e.summary(), "upstream: x");
    }
}
