//! The host's capabilities as a plugin sees them, and the JSON shapes of their requests.
//!
//! | capability     | kind  | request                | response         |
//! |----------------|-------|------------------------|------------------|
//! | `http.request` | async | [`HttpRequest`]        | [`HttpResponse`] |
//! | `time.sleep`   | async | [`SleepRequest`]       | `{}`             |
//! | `clock.now`    | sync  | `{}`                   | [`ClockNow`]     |
//! | `log`          | sync  | [`LogRecord`]          | `{}`             |
//!
//! A host that does not know a capability answers with an `unsupported` error, so a plugin can
//! probe for newer capabilities and fall back.

use std::time::Duration;

use abi_stable::std_types::{RResult, RStr};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::abi::HostCapsBox;
use crate::error::PluginError;

/// Capability name of [`Host::http`].
pub const CAP_HTTP: &str = "http.request";
/// Capability name of [`Host::sleep`].
pub const CAP_SLEEP: &str = "time.sleep";
/// Capability name of [`Host::now_unix_ms`].
pub const CAP_CLOCK: &str = "clock.now";
/// Capability name of [`Host::log`].
pub const CAP_LOG: &str = "log";

/// An HTTP request made through the host. The host enforces the plugin's egress rules, the call's
/// deadline and a response size cap; redirects are not followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Absolute URL; must be on the origin of the endpoint in the org config.
    pub url: String,
    /// Header names and values, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// UTF-8 body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Per-request timeout in milliseconds; the call's deadline applies in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl HttpRequest {
    /// A request with no headers and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        HttpRequest {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the per-request timeout in milliseconds.
    pub fn timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }
}

/// The answer to an [`HttpRequest`], whatever its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (invalid sequences replaced).
    #[serde(default)]
    pub body: String,
}

impl HttpResponse {
    /// A response with `status` and `body` and no headers (the host builds these; so do a
    /// plugin's tests).
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header (names are lowercase in responses the host builds).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Request of `time.sleep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SleepRequest {
    /// How long to wait, in milliseconds.
    pub ms: u64,
}

impl SleepRequest {
    /// A wait of `ms` milliseconds.
    pub fn new(ms: u64) -> Self {
        SleepRequest { ms }
    }
}

/// Response of `clock.now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClockNow {
    /// Milliseconds since the Unix epoch, UTC.
    pub unix_ms: i64,
}

impl ClockNow {
    /// The time `unix_ms`.
    pub fn new(unix_ms: i64) -> Self {
        ClockNow { unix_ms }
    }
}

/// Severity of a [`LogRecord`].
///
/// Non-exhaustive: a level may be added (say `trace`) without a protocol change, since a host
/// can always log an unknown level at some other level; match it with a fallback arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogLevel {
    /// Fine detail.
    Debug,
    /// Normal events.
    Info,
    /// Something odd that was handled.
    Warn,
    /// Something failed.
    Error,
}

/// Request of `log`. Never put secrets in a message: the host logs it as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// The message.
    pub message: String,
}

impl LogRecord {
    /// A record of `message` at `level`.
    pub fn new(level: LogLevel, message: impl Into<String>) -> Self {
        LogRecord {
            level,
            message: message.into(),
        }
    }
}

/// The host as a plugin sees it during one call. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    caps: HostCapsBox,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offline_host_has_a_clock_and_nothing_else() {
        let host = Host::offline();
        assert!(host.now_unix_ms().unwrap() > 1_600_000_000_000);
        host.log(LogLevel::Info, "dropped");
        let e = host
            .call::<serde_json::Value>("gpio.write", &serde_json::json!({}))
            .unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Unsupported);
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Host")
    }
}

impl Host {
    /// Wraps the capability object the host passed in.
    pub fn from_caps(caps: HostCapsBox) -> Self {
        Host { caps }
    }

    /// A host without I/O, for unit tests of a plugin and for benchmarks: the clock works, logs
    /// are dropped, every other capability answers `unsupported`.
    pub fn offline() -> Self {
        use abi_stable::{sabi_trait::TD_Opaque, std_types::RArc};
        Host {
            caps: crate::abi::HostCaps_TO::from_ptr(RArc::new(OfflineCaps), TD_Opaque),
        }
    }

    /// Sends an HTTP request through the host.
    pub async fn http(&self, request: &HttpRequest) -> Result<HttpResponse, PluginError> {
        self.call_async(CAP_HTTP, request).await
    }

    /// Waits for `duration` on the host's timers.
    pub async fn sleep(&self, duration: Duration) -> Result<(), PluginError> {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let _: serde_json::Value = self.call_async(CAP_SLEEP, &SleepRequest { ms }).await?;
        Ok(())
    }

    /// The host's wall clock, in milliseconds since the Unix epoch.
    pub fn now_unix_ms(&self) -> Result<i64, PluginError> {
        let now: ClockNow = self.call(CAP_CLOCK, &serde_json::json!({}))?;
        Ok(now.unix_ms)
    }

    /// Logs through the host's logger (tagged with the plugin and the call).
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        let record = LogRecord {
            level,
            message: message.into(),
        };
        // Logging must never fail the operation.
        let _ = self.call::<serde_json::Value>(CAP_LOG, &record);
    }

    /// Calls a synchronous capability by name with a JSON request.
    pub fn call<T: DeserializeOwned>(
        &self,
        capability: &str,
        request: &impl Serialize,
    ) -> Result<T, PluginError> {
        let request = encode(capability, request)?;
        decode(
            capability,
            self.caps
                .call(RStr::from_str(capability), RStr::from_str(&request)),
        )
    }

    /// Calls an asynchronous capability by name with a JSON request.
    pub async fn call_async<T: DeserializeOwned>(
        &self,
        capability: &str,
        request: &impl Serialize,
    ) -> Result<T, PluginError> {
        let request = encode(capability, request)?;
        let answer = self
            .caps
            .call_async(RStr::from_str(capability), request.into())
            .await;
        decode(capability, answer)
    }
}

/// The capabilities of [`Host::offline`].
#[derive(Clone)]
struct OfflineCaps;

fn unsupported(capability: &str) -> crate::abi::AbiError {
    PluginError::new(
        crate::ErrorKind::Unsupported,
        format!("the offline host has no capability {capability:?}"),
    )
    .to_abi()
}

impl crate::abi::HostCaps for OfflineCaps {
    fn call(&self, capability: RStr<'_>, _request: RStr<'_>) -> crate::abi::AbiResult {
        match capability.as_str() {
            CAP_CLOCK => {
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0);
                RResult::ROk(format!("{{\"unix_ms\":{unix_ms}}}").into())
            }
            CAP_LOG => RResult::ROk("{}".into()),
            other => RResult::RErr(unsupported(other)),
        }
    }

    fn call_async(
        &self,
        capability: RStr<'_>,
        _request: abi_stable::std_types::RString,
    ) -> async_ffi::FfiFuture<crate::abi::AbiResult> {
        use async_ffi::FutureExt as _;
        let e = unsupported(capability.as_str());
        async move { RResult::RErr(e) }.into_ffi()
    }
}

fn encode(capability: &str, request: &impl Serialize) -> Result<String, PluginError> {
    serde_json::to_string(request)
        .map_err(|e| PluginError::internal(format!("cannot encode the {capability} request: {e}")))
}

fn decode<T: DeserializeOwned>(
    capability: &str,
    answer: RResult<abi_stable::std_types::RString, crate::abi::AbiError>,
) -> Result<T, PluginError> {
    match answer {
        RResult::ROk(json) => serde_json::from_str(&json).map_err(|e| {
            PluginError::internal(format!(
                "the host's {capability} answer is not understood: {e}"
            ))
        }),
        RResult::RErr(e) => Err(PluginError::from_abi(&e)),
    }
}
