//! The per-account gate.

use crate::host::{BackoffReport, Permit, PermitRequest};
use crate::{Host, PluginError};

/// Limits of one upstream account, enforced by the host's limiter capability (`limit.*`): at
/// most `max_in_flight` requests at once and `rate_per_second` starts in any rolling second,
/// across every call, org and replica that uses the account (the call's
/// [`account_key`](crate::CallContext::account_key)). A thin wrapper over
/// [`Host::acquire_permit`] and [`Host::report_backoff`] that keeps a plugin's limits in one
/// place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountGate {
    rate_per_second: u32,
    max_in_flight: u32,
}

impl AccountGate {
    /// A gate of `rate_per_second` starts per second and `max_in_flight` requests at once.
    pub const fn new(rate_per_second: u32, max_in_flight: u32) -> AccountGate {
        AccountGate {
            rate_per_second,
            max_in_flight,
        }
    }

    /// Waits (within the call's deadline) for a permit to start one request to the call's
    /// account; the permit is released when dropped. Fails with `rate_limited` (details
    /// `limit`, `retry_after_ms`) when none comes in time.
    pub async fn enter(&self, host: &Host) -> Result<Permit, PluginError> {
        host.acquire_permit(&self.permit_request("", None)).await
    }

    /// [`AccountGate::enter`] for the account `account_key` (empty: the call's), waiting at
    /// most `max_wait_ms` (and within the call's deadline) when set.
    pub async fn enter_account(
        &self,
        host: &Host,
        account_key: &str,
        max_wait_ms: Option<u64>,
    ) -> Result<Permit, PluginError> {
        host.acquire_permit(&self.permit_request(account_key, max_wait_ms))
            .await
    }

    /// The upstream asked to slow down (a `429`, say with `Retry-After`): no caller of the
    /// account gets a permit for `pause_ms`; `reason` is for the host's log.
    pub fn back_off(&self, host: &Host, pause_ms: u64, reason: &str) -> Result<(), PluginError> {
        self.back_off_account(host, "", pause_ms, reason)
    }

    /// [`AccountGate::back_off`] for the account `account_key` (empty: the call's).
    pub fn back_off_account(
        &self,
        host: &Host,
        account_key: &str,
        pause_ms: u64,
        reason: &str,
    ) -> Result<(), PluginError> {
        host.report_backoff(&BackoffReport::new(pause_ms, reason).account_key(account_key))
    }

    /// Starts per second.
    pub const fn rate_per_second(&self) -> u32 {
        self.rate_per_second
    }

    /// Requests at once.
    pub const fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// What [`AccountGate::enter_account`] asks the host's limiter.
    pub fn permit_request(&self, account_key: &str, max_wait_ms: Option<u64>) -> PermitRequest {
        let request =
            PermitRequest::new(self.rate_per_second, self.max_in_flight).account_key(account_key);
        match max_wait_ms {
            Some(ms) => request.max_wait_ms(ms),
            None => request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permit_request_names_the_account_and_the_wait() {
        let gate = AccountGate::new(5, 1);
        assert_eq!((gate.rate_per_second(), gate.max_in_flight()), (5, 1));
        let default = gate.permit_request("", None);
        assert_eq!(default, PermitRequest::new(5, 1));
        let own = gate.permit_request("jasper|acct", Some(1500));
        assert_eq!(own.account_key, "jasper|acct");
        assert_eq!(own.max_wait_ms, Some(1500));
        assert_eq!((own.rate_per_second, own.max_in_flight), (5, 1));
    }
}
