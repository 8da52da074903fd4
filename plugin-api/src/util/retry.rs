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

/// A retry policy: how many attempts, and how long to wait between them.
///
/// The wait after attempt *n* is `base_delay * 2^(n-1)`, capped at `max_delay`, at least the
/// upstream's `details.retry_after_ms` when the error carries one, and with jitter (a
/// deterministic spread of up to half the wait, from the call id) unless turned off. A retry
/// that could not finish before the call's deadline is not started: the last error is returned.
#[derive(Debug, Clone)]
pub struct Retry {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: bool,
    /// Time an attempt needs, at least, for a retry to be worth starting.
    min_attempt: Duration,
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
            jitter: true,
            min_attempt: Duration::from_millis(500),
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
        self.jitter = false;
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
    fn delay(&self, context: &CallContext, attempt: u32, error: &PluginError) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.max_delay);
        let exp = if self.jitter && !exp.is_zero() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&context.call_id, attempt).hash(&mut h);
            let half = exp.as_millis() as u64 / 2;
            Duration::from_millis(half + h.finish() % (half + 1))
        } else {
            exp
        };
        let asked = error
            .details
            .get("retry_after_ms")
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .unwrap_or_default();
        exp.max(asked)
    }

    /// Runs `attempt(n)` (n = 1, 2, ...) until it succeeds, fails in a way not worth repeating,
    /// runs out of attempts or would not finish before the call's deadline; waits on the host's
    /// timers in between. Returns the last error.
    pub async fn run<T, F, Fut>(
        &self,
        host: &Host,
        context: &CallContext,
        safety: Safety,
        mut attempt: F,
    ) -> Result<T, PluginError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, PluginError>>,
    {
        let mut n = 1;
        loop {
            let error = match attempt(n).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if n >= self.max_attempts || !Retry::should_retry(&error, safety) {
                return Err(error);
            }
            let wait = self.delay(context, n, &error);
            let now = host.now_unix_ms()?;
            let needed = i64::try_from((wait + self.min_attempt).as_millis()).unwrap_or(i64::MAX);
            if now.saturating_add(needed) > context.deadline_unix_ms {
                return Err(error);
            }
            host.log(
                LogLevel::Debug,
                format!(
                    "attempt {n} failed ({}: {}); retrying in {} ms",
                    error.kind.as_str(),
                    error.message,
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
}
