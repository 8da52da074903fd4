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
        host.acquire_permit(&PermitRequest::new(
            self.rate_per_second,
            self.max_in_flight,
        ))
        .await
    }

    /// The upstream asked to slow down (a `429`, say with `Retry-After`): no caller of the
    /// account gets a permit for `pause_ms`; `reason` is for the host's log.
    pub fn back_off(&self, host: &Host, pause_ms: u64, reason: &str) -> Result<(), PluginError> {
        host.report_backoff(&BackoffReport::new(pause_ms, reason))
    }
}
