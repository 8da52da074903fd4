//! 1NCE's wire protocol: the token, the requests and what their answers mean.

use std::time::Duration;

use devext_plugin_api::util::{AccountGate, Retry, Safety, SingleFlight, Token, TokenCache};
use devext_plugin_api::{
    CallContext, ErrorKind, Host, HttpRequest, HttpResponse, LogLevel, PluginError, Value, json,
};

/// 1NCE documents no limit for `/sims`, but asks to be gentle: at most this many requests per
/// second and at once per account, whatever the number of orgs and replicas using it.
pub(crate) const GATE: AccountGate = AccountGate::new(10, 4);
/// Each attempt waits at most this long for an answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a token is used when the answer gives no lifetime (1NCE documents 3600 s).
const DEFAULT_TOKEN_SECS: u64 = 3600;
/// Wait after a 429 without `Retry-After`.
const DEFAULT_BACKOFF_MS: u64 = 1000;

/// What one call talks to: the org's endpoint and credentials, the call's context.
pub(crate) struct Session<'a> {
    pub(crate) host: &'a Host,
    pub(crate) context: &'a CallContext,
    pub(crate) base: String,
    username: &'a str,
    password: &'a str,
}

/// The plugin's shared state: tokens and reads in flight, across calls.
pub(crate) struct Shared {
    pub(crate) tokens: TokenCache,
    pub(crate) reads: SingleFlight<String, HttpResponse>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            // Refresh five minutes before expiry (half-way through a shorter life).
            tokens: TokenCache::new(Duration::from_secs(300)),
            reads: SingleFlight::new(),
        }
    }
}

/// An error with `details.code` (merged into any details it has).
pub(crate) fn coded(mut e: PluginError, code: &str) -> PluginError {
    match &mut e.details {
        Value::Object(map) => {
            map.insert("code".into(), json!(code));
        }
        other => *other = json!({ "code": code }),
    }
    e
}

/// A failure of the host's HTTP capability, with the dashboard's code.
fn host_failure(e: PluginError) -> PluginError {
    let code = match e.kind {
        ErrorKind::Forbidden => "egress_refused",
        ErrorKind::Timeout => "timeout",
        _ if e.details.get("stage").and_then(Value::as_str) == Some("connect") => "unreachable",
        _ => "upstream_error",
    };
    coded(e, code)
}

pub(crate) fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The message of a 1NCE error body, when it has one (`message`, as in the token and top-up
/// errors); never more than 200 characters.
fn body_message(body: &str) -> Option<String> {
    let v: Value = serde_json_from(body)?;
    let m = v.get("message")?.as_str()?;
    Some(m.chars().take(200).collect())
}

fn serde_json_from(body: &str) -> Option<Value> {
    devext_plugin_api::serde_json::from_str(body).ok()
}

/// The status of an answer to a SIM request as an error, or `None` for success.
pub(crate) fn status_error(resp: &HttpResponse, what: &str) -> Option<PluginError> {
    let status = resp.status;
    if (200..300).contains(&status) {
        return None;
    }
    let said = body_message(&resp.body)
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let e = match status {
        401 => coded(
            PluginError::new(
                ErrorKind::Unauthorized,
                format!("1NCE refused the access token for {what}"),
            ),
            "token_refused",
        ),
        403 => coded(
            PluginError::not_found(format!(
                "{what}: the SIM does not belong to this account{said}"
            )),
            "sim_not_in_account",
        ),
        404 => coded(
            PluginError::not_found(format!("{what}: 1NCE knows no such SIM{said}")),
            "sim_not_found",
        ),
        409 => coded(
            PluginError::conflict(format!("{what}: conflict{said}")),
            "conflict",
        ),
        422 => coded(
            PluginError::conflict(format!(
                "{what}: the SIM is expired; only an extension is possible{said}"
            )),
            "sim_expired",
        ),
        429 => {
            let retry_after_ms = resp
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(DEFAULT_BACKOFF_MS, |s| s.saturating_mul(1000));
            PluginError::new(
                ErrorKind::RateLimited,
                format!("1NCE asked to slow down ({what})"),
            )
            .with_details(json!({"code": "rate_limited", "retry_after_ms": retry_after_ms}))
        }
        s if s >= 500 => coded(
            PluginError::upstream(format!("1NCE failed on {what} (HTTP {s}){said}"))
                .retryable(true),
            "upstream_error",
        ),
        s => PluginError::upstream(format!("1NCE refused {what} (HTTP {s}){said}"))
            .with_details(json!({"code": "upstream_error", "status": s})),
    };
    Some(e)
}

/// A body that is not what the API documents.
pub(crate) fn malformed(what: &str, why: &str) -> PluginError {
    coded(
        PluginError::upstream(format!("1NCE's answer to {what} is not understood: {why}")),
        "malformed_response",
    )
}

impl<'a> Session<'a> {
    pub(crate) fn new(host: &'a Host, context: &'a CallContext, org: &'a Value) -> Session<'a> {
        let base = org["endpoint"]
            .as_str()
            .unwrap_or(crate::schemas::DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_owned();
        Session {
            host,
            context,
            base,
            username: org["username"].as_str().unwrap_or_default(),
            password: org["password"].as_str().unwrap_or_default(),
        }
    }

    /// The token cache's key: the account and the credentials (orgs sharing an account key
    /// with other credentials never share a token).
    fn token_key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}",
            self.context.account_key, self.username, self.password
        )
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, PluginError> {
        let _permit = GATE.enter(self.host).await?;
        self.host
            .http(&req.timeout_ms(REQUEST_TIMEOUT.as_millis() as u64))
            .await
            .map_err(host_failure)
    }

    /// `POST /oauth/token` with the org's credentials.
    pub(crate) async fn fetch_token(&self) -> Result<Token, PluginError> {
        let basic = base64(format!("{}:{}", self.username, self.password).as_bytes());
        let req = HttpRequest::new("POST", format!("{}/oauth/token", self.base))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(r#"{"grant_type":"client_credentials"}"#);
        let resp = self.send(req).await?;
        if resp.status == 400 || resp.status == 401 || resp.status == 403 {
            let v = serde_json_from(&resp.body).unwrap_or(Value::Null);
            let code = v["errorCode"].as_str().unwrap_or("");
            let said = body_message(&resp.body)
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            let bad_credentials = resp.status != 400
                || matches!(
                    code,
                    "BadCredentials" | "CognitoAuthenticationError" | "AuthValidationError" | ""
                );
            return Err(if bad_credentials {
                coded(
                    PluginError::new(
                        ErrorKind::Unauthorized,
                        format!("1NCE refused the API user and password{said}"),
                    ),
                    "bad_credentials",
                )
            } else {
                coded(
                    PluginError::upstream(format!("1NCE refused the token request ({code}){said}")),
                    "upstream_error",
                )
            });
        }
        if let Some(e) = status_error(&resp, "the token request") {
            if e.kind == ErrorKind::RateLimited {
                self.back_off(&e);
            }
            return Err(e);
        }
        let v = serde_json_from(&resp.body)
            .ok_or_else(|| malformed("the token request", "not JSON"))?;
        let token = v["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed("the token request", "no access_token"))?;
        let secs = crate::parse::number(&v["expires_in"])
            .filter(|s| *s > 0.0)
            .map_or(DEFAULT_TOKEN_SECS, |s| s as u64);
        Ok(Token::new(
            token,
            self.host.now_unix_ms()?,
            Duration::from_secs(secs),
        ))
    }

    fn back_off(&self, e: &PluginError) {
        let pause = e.details["retry_after_ms"]
            .as_u64()
            .unwrap_or(DEFAULT_BACKOFF_MS);
        let _ = GATE.back_off(self.host, pause, "1NCE answered 429");
    }

    /// One request with a Bearer token: a refused token is replaced once; a 429 pauses the
    /// account at the host's limiter.
    async fn authorised(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<HttpResponse, PluginError> {
        let key = self.token_key();
        self.shared_tokens()
            .with_token(
                self.host,
                &key,
                || self.fetch_token(),
                |token| async move {
                    let mut req = HttpRequest::new(method, format!("{}{path}", self.base))
                        .header("authorization", format!("Bearer {token}"))
                        .header("accept", "application/json");
                    if let Some(b) = body {
                        req = req
                            .header("content-type", "application/json")
                            .body(b.to_string());
                    }
                    let resp = self.send(req).await?;
                    match status_error(&resp, what) {
                        None => Ok(resp),
                        Some(e) => {
                            if e.kind == ErrorKind::RateLimited {
                                self.back_off(&e);
                            }
                            Err(e)
                        }
                    }
                },
            )
            .await
    }

    fn shared_tokens(&self) -> &'static TokenCache {
        &crate::shared().tokens
    }

    /// A GET, retried on transient failures, shared with identical GETs running at once.
    pub(crate) async fn get(&self, path: &str, what: &str) -> Result<HttpResponse, PluginError> {
        let key = format!("{}\u{0}{path}", self.token_key());
        let retry = self.retry();
        crate::shared()
            .reads
            .run(key, || {
                retry.run(self.host, self.context, Safety::Read, |_| {
                    self.authorised("GET", path, None, what)
                })
            })
            .await
    }

    /// A write, repeated only when 1NCE certainly did not process it (`safety`: `Read` for a
    /// request that is harmless to repeat, such as a PUT of the whole state).
    pub(crate) async fn write(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        what: &str,
        safety: Safety,
    ) -> Result<HttpResponse, PluginError> {
        let out = self
            .retry()
            .run(self.host, self.context, safety, |_| {
                self.authorised(method, path, body, what)
            })
            .await;
        if let Err(e) = &out
            && safety == Safety::Write
            && devext_plugin_api::util::may_have_been_processed(e)
            && e.kind != ErrorKind::Unauthorized
        {
            self.host.log(
                LogLevel::Warn,
                format!("{what} failed in a way that may have been processed; not repeated"),
            );
        }
        out.map_err(|e| {
            if safety == Safety::Write && devext_plugin_api::util::may_have_been_processed(&e) {
                e.retryable(false)
            } else {
                e
            }
        })
    }

    fn retry(&self) -> Retry {
        Retry::new(3)
            .base_delay(Duration::from_millis(250))
            .max_delay(Duration::from_secs(4))
    }

    /// `test_connection`: a new token (not the cached one: the point is to try the
    /// credentials), then one SIM listed.
    pub(crate) async fn test_connection(&self) -> Result<Value, PluginError> {
        let token = self.fetch_token().await?;
        let now = self.host.now_unix_ms()?;
        let lifetime = (token.expires_at_unix_ms - now).max(0) / 1000;
        let req = HttpRequest::new("GET", format!("{}/v1/sims?page=1&pageSize=1", self.base))
            .header("authorization", format!("Bearer {}", token.value))
            .header("accept", "application/json");
        let resp = self.send(req).await?;
        if let Some(e) = status_error(&resp, "listing SIMs") {
            return Err(e);
        }
        let sims = resp
            .header("x-total-count")
            .and_then(|v| v.trim().parse::<u64>().ok());
        Ok(json!({"ok": true, "token_lifetime_secs": lifetime, "sims": sims}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
