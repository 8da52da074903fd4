//! The host's capabilities as a plugin sees them, and the JSON shapes of their requests.
//!
//! | capability     | kind  | request                | response         |
//! |----------------|-------|------------------------|------------------|
//! | `http.request` | async | [`HttpRequest`]        | [`HttpResponse`] |
//! | `time.sleep`   | async | [`SleepRequest`]       | `{}`             |
//! | `clock.now`    | sync  | `{}`                   | [`ClockNow`]     |
//! | `log`          | sync  | [`LogRecord`]          | `{}`             |
//! | `limit.acquire`| async | [`PermitRequest`]      | [`PermitGrant`]  |
//! | `limit.release`| sync  | [`PermitRelease`]      | `{}`             |
//! | `limit.backoff`| sync  | [`BackoffReport`]      | `{}`             |
//!
//! The `limit.*` capabilities are the host's limiter of calls to an upstream account (see
//! [`Host::acquire_permit`]): in-process for a single host, shared by every replica of a host
//! that runs several (the PostgreSQL store). A plugin keys them on the upstream account
//! ([`crate::CallContext::account_key`]) so that every call reaching one account, from any org
//! and any replica, counts against the same limits.
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
/// Capability name of [`Host::acquire_permit`] (async).
pub const CAP_LIMIT_ACQUIRE: &str = "limit.acquire";
/// Capability name of [`Permit::release`] (sync).
pub const CAP_LIMIT_RELEASE: &str = "limit.release";
/// Capability name of [`Host::report_backoff`] (sync).
pub const CAP_LIMIT_BACKOFF: &str = "limit.backoff";

/// Slack the host's limiter adds to the one-second window: an upstream counts the *arrivals* of
/// requests in any rolling second, and a request arrives some milliseconds after its permit
/// (timers, network), so starts are paced over `1000 + WINDOW_MARGIN_MS` ms. At a saturated
/// account this gives 1000 / 1100 = 91 % of the nominal rate, never more than the nominal rate.
pub const WINDOW_MARGIN_MS: u64 = 100;

/// Whose call it is, for the host's limiter: a person waiting (`interactive`, the default) or a
/// background job (`bulk`). A bulk caller is never given a permit while an interactive caller of
/// the same account waits, so bulk jobs never starve a person's call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// A person waits for the answer.
    #[default]
    Interactive,
    /// A background or batch job.
    Bulk,
}

impl Priority {
    /// `interactive` or `bulk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Bulk => "bulk",
        }
    }
}

/// Request of `limit.acquire`: a permit to start one request to an upstream account.
///
/// The host grants it when fewer than `max_in_flight` permits of the account are held and a
/// start keeps at most `rate_per_second` starts in any rolling second (see [`WINDOW_MARGIN_MS`]),
/// and no back-off ([`BackoffReport`]) of the account is running. It waits for that within the
/// call's deadline (and `max_wait_ms`, if set), else answers `rate_limited` with details
/// `{"limit": "in_flight" | "rate" | "backoff", "retry_after_ms": n}`. A permit is released by
/// [`Permit::release`] (or dropping it); a host frees the permits of a process that died after
/// a lease expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PermitRequest {
    /// The upstream account; empty means the call's [`crate::CallContext::account_key`].
    #[serde(default)]
    pub account_key: String,
    /// Starts allowed in any rolling second (at least 1).
    pub rate_per_second: u32,
    /// Permits of the account held at once (at least 1).
    pub max_in_flight: u32,
    /// The caller's priority; absent means the call's (see [`crate::CallContext::priority`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Longest wait in milliseconds; the call's deadline applies in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_ms: Option<u64>,
}

impl PermitRequest {
    /// A permit of the call's account under these limits, at the call's priority.
    pub fn new(rate_per_second: u32, max_in_flight: u32) -> Self {
        PermitRequest {
            account_key: String::new(),
            rate_per_second,
            max_in_flight,
            priority: None,
            max_wait_ms: None,
        }
    }

    /// Names the account (instead of the call's).
    pub fn account_key(mut self, account_key: impl Into<String>) -> Self {
        self.account_key = account_key.into();
        self
    }

    /// Sets the priority (instead of the call's).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Waits at most `ms` milliseconds.
    pub fn max_wait_ms(mut self, ms: u64) -> Self {
        self.max_wait_ms = Some(ms);
        self
    }
}

/// Response of `limit.acquire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PermitGrant {
    /// The permit's id, to release it.
    pub permit: String,
    /// How long the host waited before granting it, in milliseconds.
    #[serde(default)]
    pub waited_ms: u64,
}

impl PermitGrant {
    /// A grant of `permit` after `waited_ms`.
    pub fn new(permit: impl Into<String>, waited_ms: u64) -> Self {
        PermitGrant {
            permit: permit.into(),
            waited_ms,
        }
    }
}

/// Request of `limit.release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PermitRelease {
    /// The permit's id ([`PermitGrant::permit`]).
    pub permit: String,
}

impl PermitRelease {
    /// Releases `permit`.
    pub fn new(permit: impl Into<String>) -> Self {
        PermitRelease {
            permit: permit.into(),
        }
    }
}

/// Request of `limit.backoff`: the upstream asked to slow down (a `Retry-After`, a vendor's
/// rate-limit error). No permit of the account is granted, to any caller, for `pause_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackoffReport {
    /// The upstream account; empty means the call's.
    #[serde(default)]
    pub account_key: String,
    /// How long to pause the account, in milliseconds (the host caps it at a minute).
    pub pause_ms: u64,
    /// Why, for the host's log (never a secret).
    #[serde(default)]
    pub reason: String,
}

impl BackoffReport {
    /// A pause of the call's account for `pause_ms`.
    pub fn new(pause_ms: u64, reason: impl Into<String>) -> Self {
        BackoffReport {
            account_key: String::new(),
            pause_ms,
            reason: reason.into(),
        }
    }

    /// Names the account (instead of the call's).
    pub fn account_key(mut self, account_key: impl Into<String>) -> Self {
        self.account_key = account_key.into();
        self
    }
}

/// A held permit of the host's limiter ([`Host::acquire_permit`]). Released by
/// [`Permit::release`] or when dropped (so a cancelled call gives its permit back).
#[must_use = "a permit is released when dropped"]
pub struct Permit {
    host: Host,
    id: Option<String>,
    waited_ms: u64,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("id", &self.id)
            .field("waited_ms", &self.waited_ms)
            .finish()
    }
}

impl Permit {
    /// How long the host waited before granting it, in milliseconds.
    pub fn waited_ms(&self) -> u64 {
        self.waited_ms
    }

    /// The permit's id.
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// Gives the permit back now (the request it covered has finished).
    pub fn release(mut self) {
        self.release_now();
    }

    fn release_now(&mut self) {
        if let Some(id) = self.id.take() {
            // Releasing never fails the operation; a host that lost the permit has freed it.
            let _ = self
                .host
                .call::<serde_json::Value>(CAP_LIMIT_RELEASE, &PermitRelease { permit: id });
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.release_now();
    }
}

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

    #[test]
    fn limiter_requests_keep_their_wire_shape() {
        let req = PermitRequest::new(5, 1);
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"account_key": "", "rate_per_second": 5, "max_in_flight": 1})
        );
        let req = PermitRequest::new(5, 1)
            .account_key("k")
            .priority(Priority::Bulk)
            .max_wait_ms(10);
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["priority"], "bulk");
        assert_eq!(serde_json::from_value::<PermitRequest>(json).unwrap(), req);
        // Fields a newer plugin leaves out take the call's values.
        let old: PermitRequest =
            serde_json::from_str(r#"{"rate_per_second": 2, "max_in_flight": 3}"#).unwrap();
        assert_eq!(old.account_key, "");
        assert_eq!(old.priority, None);
        let report: BackoffReport = serde_json::from_str(r#"{"pause_ms": 1000}"#).unwrap();
        assert_eq!(report.pause_ms, 1000);
    }

    #[test]
    fn the_offline_host_has_no_limiter() {
        let host = Host::offline();
        let e = futures_lite_block_on(host.acquire_permit(&PermitRequest::new(1, 1))).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Unsupported);
        let e = host
            .report_backoff(&BackoffReport::new(10, "test"))
            .unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Unsupported);
    }

    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
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

    /// The capability object (the glue's tests hand it to the entry points).
    #[cfg(test)]
    pub(crate) fn into_caps(self) -> HostCapsBox {
        self.caps
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

    /// Waits for a permit of the host's limiter to start one upstream request (see
    /// [`PermitRequest`]); hold it while the request runs. `rate_limited` when the limits leave
    /// no start before the call's deadline (or `max_wait_ms`); `unsupported` from a host without
    /// a limiter.
    pub async fn acquire_permit(&self, request: &PermitRequest) -> Result<Permit, PluginError> {
        let grant: PermitGrant = self.call_async(CAP_LIMIT_ACQUIRE, request).await?;
        Ok(Permit {
            host: self.clone(),
            id: Some(grant.permit),
            waited_ms: grant.waited_ms,
        })
    }

    /// Tells the host's limiter that the upstream asked to slow down: no caller of the account
    /// gets a permit for `report.pause_ms`.
    pub fn report_backoff(&self, report: &BackoffReport) -> Result<(), PluginError> {
        let _: serde_json::Value = self.call(CAP_LIMIT_BACKOFF, report)?;
        Ok(())
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
