//! The HTTP client of the commands that talk to a running service (`devext jobs`, `devext
//! devices import|export`): the service's URL from `--url` or `DEVEXT_URL`, its API key from
//! `DEVEXT_KEY` only (never a flag, so it is not in shell history or `ps`; never printed), JSON
//! requests, and the service's error body (`{"error": {"kind", "message", "details"}}`) turned
//! into one clear line.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// The environment variable holding the API key.
pub(crate) const KEY_VAR: &str = "DEVEXT_KEY";

/// The flags of every client command (flatten them into its arguments).
#[derive(Args, Clone, Debug)]
pub(crate) struct ClientArgs {
    /// The running service's base URL, e.g. http://127.0.0.1:8080 (env DEVEXT_URL). The API key
    /// is read from DEVEXT_KEY
    #[arg(long, env = "DEVEXT_URL", value_name = "URL")]
    pub(crate) url: String,
}

/// A client of one service with one key.
pub(crate) struct Client {
    http: reqwest::Client,
    /// The base URL, without a trailing `/`.
    base: String,
    key: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

/// An error answer of the service: its status and error body.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) status: StatusCode,
    /// `error.kind`, or `http_<status>` when the body is not the service's error body.
    pub(crate) kind: String,
    pub(crate) message: String,
    /// `error.details` (`Null` when absent).
    pub(crate) details: Value,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: HTTP {} {}: {}",
            self.method,
            self.url,
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl Client {
    /// The client of `args.url` with the key in `DEVEXT_KEY`.
    pub(crate) fn from_env(args: &ClientArgs) -> Result<Self> {
        let key = match std::env::var(KEY_VAR) {
            Ok(k) if !k.trim().is_empty() => k.trim().to_owned(),
            Ok(_) | Err(std::env::VarError::NotPresent) => {
                bail!("{KEY_VAR} is not set: export the service's API key (dvx_...) in {KEY_VAR}")
            }
            Err(e) => bail!("{KEY_VAR}: {e}"),
        };
        Self::new(&args.url, key)
    }

    /// The client of `url` with `key`.
    pub(crate) fn new(url: &str, key: String) -> Result<Self> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base)
            .with_context(|| format!("--url {base:?} is not a URL (e.g. http://127.0.0.1:8080)"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--url {base:?}: the scheme must be http or https");
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            bail!("--url {base:?}: give the service's base URL, without ? or #");
        }
        // Installing twice is harmless: the first provider stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("devext-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { http, base, key })
    }

    /// The full URL of `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request to `path` carrying the key; send it with [`Client::send`].
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.key)
    }

    /// Sends `request`: a connection failure names the URL; an error status becomes an
    /// [`ApiError`] (inside the `anyhow::Error`, for callers that look at its kind).
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let request = request.build().context("building the request")?;
        let method = request.method().clone();
        let url = strip_query(request.url());
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| anyhow!("{method} {url}: cannot reach the service: {}", chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(api_error(method, url, status, &text).into())
    }

    /// GET `path`, answering JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.send(self.request(Method::GET, path)).await?;
        read_json(response).await
    }

    /// POST `body` as JSON to `path`, answering JSON.
    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .send(
                self.request(Method::POST, path)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
            )
            .await?;
        read_json(response).await
    }
}

/// The body of a success answer, as JSON.
pub(crate) async fn read_json(response: Response) -> Result<Value> {
    let url = strip_query(response.url());
    let text = response
        .text()
        .await
        .map_err(|e| anyhow!("{url}: reading the answer: {}", chain(&e)))?;
    serde_json::from_str(&text).with_context(|| format!("{url}: the answer is not JSON"))
}

/// The URL as shown in messages: without its query (which may carry search terms) or userinfo.
fn strip_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

/// The error and its causes on one line (reqwest's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The [`ApiError`] of an error answer: the service's error body, or the body's first line.
fn api_error(method: Method, url: String, status: StatusCode, text: &str) -> ApiError {
    let body: Option<Value> = serde_json::from_str(text).ok();
    let error = body.as_ref().and_then(|b| b.get("error"));
    let kind = error
        .and_then(|e| e.get("kind"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let details = error
        .and_then(|e| e.get("details"))
        .cloned()
        .unwrap_or(Value::Null);
    let (kind, message) = match (kind, message) {
        (Some(k), Some(m)) => (k, one_line(&m)),
        (k, _) => {
            let first = text.lines().next().unwrap_or("").trim();
            let first: String = first.chars().take(200).collect();
            (
                k.unwrap_or_else(|| format!("http_{}", status.as_u16())),
                if first.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    first
                },
            )
        }
    };
    ApiError {
        method,
        url,
        status,
        kind,
        message,
        details,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_becomes_one_line_with_status_kind_and_message() {
        let e = api_error(
            Method::POST,
            "http://h/api/v1/jobs".into(),
            StatusCode::CONFLICT,
            r#"{"error": {"kind": "confirmation_required", "message": "confirm\n312 devices", "details": {"total": 312}}}"#,
        );
        assert_eq!(
            e.to_string(),
            "POST http://h/api/v1/jobs: HTTP 409 confirmation_required: confirm 312 devices"
        );
        assert_eq!(e.details["total"], 312);
    }

    #[test]
    fn a_body_that_is_not_the_services_names_the_status() {
        let e = api_error(
            Method::GET,
            "http://h/x".into(),
            StatusCode::BAD_GATEWAY,
            "<html>bad gateway</html>\nmore",
        );
        assert_eq!(
            e.to_string(),
            "GET http://h/x: HTTP 502 http_502: <html>bad gateway</html>"
        );
    }

    #[test]
    fn a_bad_url_is_refused_and_debug_hides_the_key() {
        assert!(Client::new("not a url", "k".into()).is_err());
        assert!(Client::new("ftp://h", "k".into()).is_err());
        let c = Client::new("http://127.0.0.1:1/", "dvx_secret".into()).unwrap();
        assert_eq!(c.url("/api"), "http://127.0.0.1:1/api");
        assert!(!format!("{c:?}").contains("dvx_secret"));
    }

    #[test]
    fn messages_show_no_query_or_password() {
        let u = reqwest::Url::parse("http://ann:pw@h/api?name=x").unwrap();
        assert_eq!(strip_query(&u), "http://h/api");
    }
}
