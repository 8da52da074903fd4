//! Jasper's limits and retry rules, as configuration of the plugin API's helpers
//! ([`devext_plugin_api::util`]):
//!
//! - [`retry_policy`]: a [`Retry`] of [`MAX_ATTEMPTS`] attempts, waits of 500 ms doubling up to
//!   8 s with up to 25 % jitter above, a `Retry-After` honoured up to 30 s. Which failures are
//!   worth a retry (a write only when provably not processed) is Jasper's
//!   [`RetryClass`](crate::errors::RetryClass), through its
//!   [`Retriable`](devext_plugin_api::util::Retriable) impl in [`crate::errors`].
//! - [`Account`]: the account's [`AccountGate`] (the host's limiter, `limit.*`: shared by every
//!   org and replica that reaches the account), keyed on the host's account key, with the
//!   limiter's refusals said in Jasper's terms; a refusal from Jasper pauses every caller of
//!   the account for [`rate_limit_pause_ms`].
//!
//! Single-flight of identical reads is [`devext_plugin_api::util::SingleFlight`], used as it is.

use std::time::Duration;

use devext_plugin_api::util::{AccountGate, Retry};
use devext_plugin_api::{ErrorKind, Host, LogLevel, Permit, PluginError};

/// Attempts per upstream request, the first included ("retried 3 times").
pub const MAX_ATTEMPTS: u32 = 4;

/// Time an attempt needs at least; no attempt starts when less than this is left before the
/// call's deadline.
pub const MIN_ATTEMPT_MS: i64 = 1000;

/// The first wait between attempts.
const BASE_DELAY_MS: u64 = 500;

/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER_MS: u64 = 30_000;

/// Jasper's retry policy for the request `what` (named in the log line of each retry).
pub fn retry_policy(what: &str) -> Retry {
    Retry::new(MAX_ATTEMPTS)
        .base_delay(Duration::from_millis(BASE_DELAY_MS))
        .max_delay(Duration::from_secs(8))
        .jitter_above(25)
        .max_retry_after(Duration::from_millis(MAX_RETRY_AFTER_MS))
        .min_attempt(Duration::from_millis(MIN_ATTEMPT_MS as u64))
        .label(format!("jasper {what}"))
        .log_level(LogLevel::Warn)
}

/// How long every caller of the account waits after Jasper refused a call for its rate: its
/// `Retry-After` (at most 30 s), and at least the first back-off.
pub fn rate_limit_pause_ms(retry_after_ms: Option<u64>) -> u64 {
    retry_after_ms
        .map_or(0, |ra| ra.min(MAX_RETRY_AFTER_MS))
        .max(BASE_DELAY_MS)
}

/// Whether `now_ms` still leaves an attempt time before `deadline_ms`.
pub fn attempt_fits(now_ms: i64, deadline_ms: i64) -> bool {
    now_ms
        .checked_add(MIN_ATTEMPT_MS)
        .is_some_and(|t| t <= deadline_ms)
}

/// One Jasper account: its key (the host's account key, or one derived from the endpoint and
/// user) and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub key: String,
    pub gate: AccountGate,
}

impl Account {
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
        match self
            .gate
            .enter_account(host, &self.key, Some(left as u64))
            .await
        {
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
                self.gate.max_in_flight()
            ),
            Some("backoff") => "rate limit: Jasper asked this account's callers to slow down, \
                 past the call's deadline; try again shortly"
                .to_owned(),
            _ => format!(
                "rate limit: this Jasper account's limit of {} calls per second leaves no time \
                 before the deadline; try again shortly",
                self.gate.rate_per_second()
            ),
        };
        PluginError::new(ErrorKind::RateLimited, message).with_details(e.details.clone())
    }

    /// Jasper refused a call for its rate (HTTP 429, 40000029, 400101): no caller of the
    /// account, in any replica, starts one for `pause_ms`.
    pub fn back_off(&self, host: &Host, pause_ms: u64, reason: &str) {
        if let Err(e) = self
            .gate
            .back_off_account(host, &self.key, pause_ms, reason)
        {
            host.log(
                LogLevel::Warn,
                format!("cannot pause the Jasper account's callers: {}", e.message),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_pauses_honour_retry_after_within_bounds() {
        assert_eq!(rate_limit_pause_ms(None), 500);
        assert_eq!(rate_limit_pause_ms(Some(100)), 500);
        assert_eq!(rate_limit_pause_ms(Some(3000)), 3000);
        assert_eq!(rate_limit_pause_ms(Some(u64::MAX)), 30_000);
        assert!(attempt_fits(0, 1000));
        assert!(!attempt_fits(1, 1000));
        assert!(!attempt_fits(i64::MAX, i64::MAX));
    }
}
