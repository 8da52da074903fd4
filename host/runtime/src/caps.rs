//! The capability object lent to a plugin for one call: HTTP, timers, clock and logging.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RString};
use async_ffi::{FfiFuture, FutureExt as _};
use devext_plugin_api::abi::{AbiResult, HostCaps, HostCaps_TO, HostCapsBox};
use devext_plugin_api::host::{
    CAP_CLOCK, CAP_HTTP, CAP_LOG, CAP_SLEEP, ClockNow, HttpRequest, LogLevel, LogRecord,
    SleepRequest,
};
use devext_plugin_api::{ErrorKind, PluginError};
use serde::Serialize;
use tokio::time::Instant;

use crate::clock::HostClock;
use crate::egress::HttpCapability;
use crate::runtime::CallId;

/// What one call may use; cloned into every async capability future.
#[derive(Clone)]
pub(crate) struct CallCaps {
    plugin: Arc<str>,
    call_id: CallId,
    endpoint: Option<Arc<str>>,
    deadline: Instant,
    http: Arc<HttpCapability>,
    clock: HostClock,
}

impl CallCaps {
    pub(crate) fn new(
        plugin: Arc<str>,
        call_id: CallId,
        endpoint: Option<Arc<str>>,
        deadline: Instant,
        http: Arc<HttpCapability>,
        clock: HostClock,
    ) -> Self {
        CallCaps {
            plugin,
            call_id,
            endpoint,
            deadline,
            http,
            clock,
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
            CAP_CLOCK => ok(&ClockNow::new(self.clock.now_unix_ms())),
            CAP_LOG => match parse::<LogRecord>(CAP_LOG, request.as_str()) {
                Ok(record) => {
                    let plugin = &*self.plugin;
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
            other => err(unsupported(other, "synchronous")),
        }
    }

    fn call_async(&self, capability: RStr<'_>, request: RString) -> FfiFuture<AbiResult> {
        let caps = self.clone();
        match capability.as_str() {
            CAP_HTTP => async move {
                let req: HttpRequest = match parse(CAP_HTTP, &request) {
                    Ok(r) => r,
                    Err(e) => return err(e),
                };
                match caps
                    .http
                    .send(&caps.plugin, caps.endpoint.as_deref(), req, caps.deadline)
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
            other => {
                let e = unsupported(other, "asynchronous");
                async move { err(e) }.into_ffi()
            }
        }
    }
}

fn unsupported(capability: &str, kind: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Unsupported,
        format!("this host has no {kind} capability {capability:?}"),
    )
}
