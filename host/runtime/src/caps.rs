//! The capability object lent to a plugin for one call: HTTP, timers, clock, logging and the
//! limiter of upstream accounts.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RString};
use async_ffi::{FfiFuture, FutureExt as _};
use devext_plugin_api::abi::{AbiResult, HostCaps, HostCaps_TO, HostCapsBox};
use devext_plugin_api::host::{
    BackoffReport, CAP_CLOCK, CAP_HTTP, CAP_LIMIT_ACQUIRE, CAP_LIMIT_BACKOFF, CAP_LIMIT_RELEASE,
    CAP_LOG, CAP_SLEEP, ClockNow, HttpRequest, LogLevel, LogRecord, PermitGrant, PermitRelease,
    PermitRequest, Priority, SleepRequest,
};
use devext_plugin_api::{ErrorKind, PluginError};
use serde::Serialize;
use tokio::time::Instant;

use crate::clock::HostClock;
use crate::egress::HttpCapability;
use crate::limiter::{Limiter, MAX_BACKOFF, PermitAsk};
use crate::runtime::CallId;

/// What the calls of one plugin share: made once, when the plugin is loaded.
pub(crate) struct PluginCaps {
    pub(crate) plugin: Arc<str>,
    pub(crate) http: Arc<HttpCapability>,
    pub(crate) clock: HostClock,
    pub(crate) limiter: Arc<dyn Limiter>,
}

/// What one call may use; cloned into every async capability future.
#[derive(Clone)]
pub(crate) struct CallCaps {
    shared: Arc<PluginCaps>,
    call_id: CallId,
    endpoint: Option<Arc<str>>,
    deadline: Instant,
    account_key: Arc<str>,
    priority: Priority,
    /// The latest permit granted in this call (its account and when), until the call's next
    /// HTTP request starts: how late that start was goes back to the limiter.
    /// Created by the first asynchronous capability call (most calls make none) and shared
    /// from then on by every clone: clones are made only by `call_async`, after it exists.
    granted: std::sync::OnceLock<Arc<Granted>>,
}

/// The permit a call was granted last: its account and when.
type Granted = std::sync::Mutex<Option<(String, Instant)>>;

/// What the limiter capability needs of a call.
pub(crate) struct CallLimits {
    pub(crate) account_key: Arc<str>,
    pub(crate) priority: Priority,
}

impl CallCaps {
    pub(crate) fn new(
        shared: Arc<PluginCaps>,
        call_id: CallId,
        endpoint: Option<Arc<str>>,
        deadline: Instant,
        limits: CallLimits,
    ) -> Self {
        CallCaps {
            shared,
            call_id,
            endpoint,
            deadline,
            account_key: limits.account_key,
            priority: limits.priority,
            granted: std::sync::OnceLock::new(),
        }
    }

    /// Reports the lateness of the first request after a grant.
    fn request_starts(&self) {
        let Some(granted) = self.granted.get() else {
            return;
        };
        let granted = granted.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((account, at)) = granted {
            let late = at.elapsed();
            if late > crate::limiter::LATE_START {
                self.shared.limiter.started_late(&account, late);
            }
        }
    }

    fn account<'a>(&'a self, named: &'a str) -> &'a str {
        if named.is_empty() {
            &self.account_key
        } else {
            named
        }
    }

    pub(crate) fn into_abi(self) -> HostCapsBox {
        HostCaps_TO::from_ptr(RArc::new(self), TD_Opaque)
    }
}

fn ok(value: &impl Serialize) -> AbiResult {
    match serde_json::to_string(value) {
        Ok(s) => RResult::ROk(s.into()),
        Err(e) => {
            RResult::RErr(PluginError::internal(format!("host encoding error: {e}")).to_abi())
        }
    }
}

fn err(e: PluginError) -> AbiResult {
    RResult::RErr(e.to_abi())
}

fn parse<T: serde::de::DeserializeOwned>(
    capability: &str,
    request: &str,
) -> Result<T, PluginError> {
    serde_json::from_str(request).map_err(|e| {
        PluginError::new(
            ErrorKind::InvalidInput,
            format!("malformed {capability} request from the plugin: {e}"),
        )
    })
}

impl HostCaps for CallCaps {
    fn call(&self, capability: RStr<'_>, request: RStr<'_>) -> AbiResult {
        match capability.as_str() {
            CAP_CLOCK => ok(&ClockNow::new(self.shared.clock.now_unix_ms())),
            CAP_LOG => match parse::<LogRecord>(CAP_LOG, request.as_str()) {
                Ok(record) => {
                    let plugin = &*self.shared.plugin;
                    let call = tracing::field::display(self.call_id);
                    let msg = record.message.as_str();
                    match record.level {
                        LogLevel::Debug => tracing::debug!(plugin, call, "{msg}"),
                        LogLevel::Info => tracing::info!(plugin, call, "{msg}"),
                        LogLevel::Warn => tracing::warn!(plugin, call, "{msg}"),
                        LogLevel::Error => tracing::error!(plugin, call, "{msg}"),
                        // A level this host does not know yet (the enum may grow).
                        _ => tracing::info!(plugin, call, "{msg}"),
                    }
                    ok(&serde_json::json!({}))
                }
                Err(e) => err(e),
            },
            CAP_LIMIT_RELEASE => {
                match parse::<PermitRelease>(CAP_LIMIT_RELEASE, request.as_str()) {
                    Ok(r) => {
                        self.shared.limiter.release(&r.permit);
                        ok(&serde_json::json!({}))
                    }
                    Err(e) => err(e),
                }
            }
            CAP_LIMIT_BACKOFF => {
                match parse::<BackoffReport>(CAP_LIMIT_BACKOFF, request.as_str()) {
                    Ok(r) => {
                        let account = self.account(&r.account_key);
                        if account.is_empty() {
                            return err(no_account());
                        }
                        let pause = Duration::from_millis(r.pause_ms).min(MAX_BACKOFF);
                        tracing::info!(
                            plugin = &*self.shared.plugin,
                            call = tracing::field::display(self.call_id),
                            pause_ms = pause.as_millis() as u64,
                            reason = r.reason.as_str(),
                            "upstream account paused"
                        );
                        self.shared.limiter.back_off(account, pause);
                        ok(&serde_json::json!({}))
                    }
                    Err(e) => err(e),
                }
            }
            other => err(unsupported(other, "synchronous")),
        }
    }

    fn call_async(&self, capability: RStr<'_>, request: RString) -> FfiFuture<AbiResult> {
        let granted = Arc::clone(self.granted.get_or_init(Arc::default));
        let caps = self.clone();
        match capability.as_str() {
            CAP_HTTP => async move {
                let req: HttpRequest = match parse(CAP_HTTP, &request) {
                    Ok(r) => r,
                    Err(e) => return err(e),
                };
                caps.request_starts();
                match caps
                    .shared
                    .http
                    .send(
                        &caps.shared.plugin,
                        caps.endpoint.as_deref(),
                        req,
                        caps.deadline,
                    )
                    .await
                {
                    Ok(response) => ok(&response),
                    Err(e) => err(e),
                }
            }
            .into_ffi(),
            CAP_SLEEP => async move {
                let req: SleepRequest = match parse(CAP_SLEEP, &request) {
                    Ok(r) => r,
                    Err(e) => return err(e),
                };
                let wake = Instant::now() + Duration::from_millis(req.ms);
                if wake > caps.deadline {
                    // Sleeping past the deadline is pointless: wake at it, report a timeout.
                    tokio::time::sleep_until(caps.deadline).await;
                    return err(PluginError::new(
                        ErrorKind::Timeout,
                        "the call's deadline passed while sleeping",
                    ));
                }
                tokio::time::sleep_until(wake).await;
                ok(&serde_json::json!({}))
            }
            .into_ffi(),
            CAP_LIMIT_ACQUIRE => async move {
                let req: PermitRequest = match parse(CAP_LIMIT_ACQUIRE, &request) {
                    Ok(r) => r,
                    Err(e) => return err(e),
                };
                let account = caps.account(&req.account_key);
                if account.is_empty() {
                    return err(no_account());
                }
                let asked = Instant::now();
                let wait_until = match req.max_wait_ms {
                    Some(ms) => (asked + Duration::from_millis(ms)).min(caps.deadline),
                    None => caps.deadline,
                };
                let mut ask = PermitAsk::new(
                    account,
                    req.rate_per_second,
                    req.max_in_flight,
                    req.priority.unwrap_or(caps.priority),
                    wait_until,
                );
                ask.call_deadline = caps.deadline;
                let account = ask.account_key.clone();
                match caps.shared.limiter.acquire(ask).await {
                    Ok(permit) => {
                        *granted.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((account, Instant::now()));
                        let waited = u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX);
                        ok(&PermitGrant::new(permit, waited))
                    }
                    Err(e) => err(e),
                }
            }
            .into_ffi(),
            other => {
                let e = unsupported(other, "asynchronous");
                async move { err(e) }.into_ffi()
            }
        }
    }
}

fn no_account() -> PluginError {
    PluginError::new(
        ErrorKind::InvalidInput,
        "a limiter request needs an account: this call has no account key (the manifest declares \
         no account fields), so name one in account_key",
    )
}

fn unsupported(capability: &str, kind: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Unsupported,
        format!("this host has no {kind} capability {capability:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressConfig;
    use crate::limiter::LocalLimiter;
    use devext_plugin_api::Host;
    use devext_plugin_api::host::BackoffReport;

    fn host(limiter: &Arc<LocalLimiter>, deadline: Duration, priority: Priority) -> Host {
        let shared = Arc::new(PluginCaps {
            plugin: "p".into(),
            http: Arc::new(HttpCapability::new(EgressConfig::default())),
            clock: HostClock::system(),
            limiter: Arc::clone(limiter) as Arc<dyn Limiter>,
        });
        let caps = CallCaps::new(
            shared,
            CallId::for_tests(),
            None,
            Instant::now() + deadline,
            CallLimits {
                account_key: "acct".into(),
                priority,
            },
        );
        Host::from_caps(caps.into_abi())
    }

    #[tokio::test(start_paused = true)]
    async fn plugins_reach_the_limiter_through_the_capability() {
        let limiter = Arc::new(LocalLimiter::new());
        let host = host(&limiter, Duration::from_secs(5), Priority::Interactive);
        let permit = host
            .acquire_permit(&PermitRequest::new(5, 1))
            .await
            .unwrap();
        assert_eq!(limiter.held("acct"), 1, "the call's account key is used");
        // The only slot is held: a second caller gives up at its wait limit, with the reason.
        let e = host
            .acquire_permit(&PermitRequest::new(5, 1).max_wait_ms(100))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.details["limit"], "in_flight");
        permit.release();
        assert_eq!(limiter.held("acct"), 0);
        // Dropping a permit releases it too.
        drop(
            host.acquire_permit(&PermitRequest::new(5, 1))
                .await
                .unwrap(),
        );
        assert_eq!(limiter.held("acct"), 0);
        // Another account, named by the plugin.
        let other = host
            .acquire_permit(&PermitRequest::new(5, 1).account_key("other"))
            .await
            .unwrap();
        assert_eq!(limiter.held("other"), 1);
        drop(other);
        // A back-off pauses the account for every caller, here another call's.
        host.report_backoff(&BackoffReport::new(1500, "HTTP 429"))
            .unwrap();
        let later = self::host(&limiter, Duration::from_secs(5), Priority::Bulk);
        let t0 = Instant::now();
        let p = later
            .acquire_permit(&PermitRequest::new(5, 1))
            .await
            .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(1500));
        assert!(p.waited_ms() >= 1500);
    }
}
