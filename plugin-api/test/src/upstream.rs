//! A scripted upstream: the HTTP service a plugin talks to, replaced by expected requests and
//! the answers to give, or by a function of each request.
//!
//! It sits behind the host's HTTP capability (`devext_host::egress::Transport`), so the plugin's
//! requests pass the real egress rules (the origin of the org's endpoint, https) and the call's
//! deadline before they reach it. Its endpoint is [`Upstream::ENDPOINT`]: put it in the org
//! settings.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devext_host::HostClock;
use devext_host::egress::{Transport, TransportFuture};
use devext_plugin_api::{ErrorKind, HttpRequest, HttpResponse, PluginError, Value, json};

use crate::diff;

/// An expected request: its method and path (with the query), and optionally some headers and
/// its body.
#[derive(Debug, Clone)]
pub struct Expect {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Body>,
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Text(String),
}

impl Expect {
    /// A request of `method` on `path` (the URL's path and query, e.g. `/v1/sims?page=1`).
    pub fn new(method: &str, path: &str) -> Expect {
        Expect {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Expect {
        Expect::new("GET", path)
    }

    /// `POST path`.
    pub fn post(path: &str) -> Expect {
        Expect::new("POST", path)
    }

    /// `PUT path`.
    pub fn put(path: &str) -> Expect {
        Expect::new("PUT", path)
    }

    /// `DELETE path`.
    pub fn delete(path: &str) -> Expect {
        Expect::new("DELETE", path)
    }

    /// The request carries this header (name case-insensitive, value exact); other headers are
    /// not compared.
    pub fn header(mut self, name: &str, value: &str) -> Expect {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The body is this JSON value (compared as JSON, not as text).
    pub fn json(mut self, body: Value) -> Expect {
        self.body = Some(Body::Json(body));
        self
    }

    /// The body is exactly this text.
    pub fn body(mut self, body: &str) -> Expect {
        self.body = Some(Body::Text(body.to_owned()));
        self
    }

    /// The expectation as text (what a diff compares).
    fn render(&self) -> String {
        let mut text = format!("{} {}\n", self.method, self.path);
        for (n, v) in &self.headers {
            text.push_str(&format!("{n}: {v}\n"));
        }
        match &self.body {
            Some(Body::Json(v)) => text.push_str(&format!("\n{}\n", diff::json_text(v))),
            Some(Body::Text(t)) => text.push_str(&format!("\n{t}\n")),
            None => {}
        }
        text
    }

    /// `request` as text, showing the headers and the kind of body this expectation compares.
    fn render_actual(&self, request: &HttpRequest) -> String {
        let mut text = format!(
            "{} {}\n",
            request.method.to_ascii_uppercase(),
            path_of(&request.url)
        );
        for (n, _) in &self.headers {
            match header(request, n) {
                Some(v) => text.push_str(&format!("{n}: {v}\n")),
                None => text.push_str(&format!("({n} missing)\n")),
            }
        }
        let body = request.body.as_deref().unwrap_or("");
        match &self.body {
            Some(Body::Json(_)) => match serde_json::from_str::<Value>(body) {
                Ok(v) => text.push_str(&format!("\n{}\n", diff::json_text(&v))),
                Err(_) => text.push_str(&format!("\n{body}\n")),
            },
            Some(Body::Text(_)) => text.push_str(&format!("\n{body}\n")),
            None => {}
        }
        text
    }

    fn matches(&self, request: &HttpRequest) -> bool {
        self.render() == self.render_actual(request)
    }
}

/// What the upstream answers: a response after an optional delay (on the host's timers, so
/// virtual under paused time), or a failure as the host's HTTP capability reports one.
#[derive(Debug, Clone)]
pub struct Reply {
    delay: Duration,
    result: Result<HttpResponse, PluginError>,
}

impl Reply {
    /// A response with `status` and a text body.
    pub fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            delay: Duration::ZERO,
            result: Ok(HttpResponse::new(status, body)),
        }
    }

    /// `200` with a text body.
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply::status(200, body)
    }

    /// A JSON response (`content-type: application/json`).
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::status(status, body.to_string()).header("content-type", "application/json")
    }

    /// The host's HTTP capability fails with `error` (use [`Reply::connect_error`] or
    /// [`Reply::cut_off`] for the usual ones).
    pub fn error(error: PluginError) -> Reply {
        Reply {
            delay: Duration::ZERO,
            result: Err(error),
        }
    }

    /// The connection could not be made: the request was certainly not sent
    /// (`details.stage = "connect"`).
    pub fn connect_error() -> Reply {
        Reply::error(
            PluginError::new(ErrorKind::Upstream, "cannot connect (scripted)")
                .with_details(json!({"stage": "connect"})),
        )
    }

    /// The connection broke after the request was sent: it may have been processed
    /// (`details.stage = "response"`).
    pub fn cut_off() -> Reply {
        Reply::error(
            PluginError::new(ErrorKind::Upstream, "connection closed (scripted)")
                .with_details(json!({"stage": "response"})),
        )
    }

    /// No answer at all: the host's deadline (or the request's timeout) ends the wait.
    pub fn never() -> Reply {
        Reply::status(200, "").delay(Duration::from_secs(365 * 24 * 3600))
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        if let Ok(r) = self.result {
            self.result = Ok(r.with_header(name.to_ascii_lowercase(), value));
        }
        self
    }

    /// Answers after `delay`.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A request the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The host clock's time when it arrived, in milliseconds since the Unix epoch.
    pub at_unix_ms: i64,
    /// The request as the plugin sent it.
    pub request: HttpRequest,
}

impl Seen {
    /// The URL's path and query.
    pub fn path(&self) -> String {
        path_of(&self.request.url)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.request, name)
    }

    /// The body parsed as JSON (`Null` when there is none or it is no JSON).
    pub fn json(&self) -> Value {
        self.request
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null)
    }
}

type Handler = Arc<dyn Fn(&HttpRequest, usize) -> Reply + Send + Sync>;

enum Mode {
    Script(VecDeque<(Expect, Reply)>),
    Handler(Handler),
}

struct Inner {
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
    failures: Mutex<Vec<String>>,
    clock: Mutex<HostClock>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// The scripted upstream. Cheap to clone; give it to [`crate::HarnessBuilder::upstream`].
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("requests", &self.requests().len())
            .finish()
    }
}

impl Upstream {
    /// The endpoint to put in the org settings: the upstream answers every request to this
    /// origin (other origins are refused by the host's egress rules, as in production).
    pub const ENDPOINT: &'static str = "https://upstream.test";

    fn with_mode(mode: Mode) -> Upstream {
        Upstream {
            inner: Arc::new(Inner {
                mode: Mutex::new(mode),
                seen: Mutex::new(Vec::new()),
                failures: Mutex::new(Vec::new()),
                clock: Mutex::new(HostClock::system()),
                in_flight: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }),
        }
    }

    /// An upstream that expects the requests given with [`Upstream::expect`], in that order.
    pub fn scripted() -> Upstream {
        Upstream::with_mode(Mode::Script(VecDeque::new()))
    }

    /// An upstream that answers each request with `handler(request, index)` (index counts from
    /// 0 in arrival order).
    pub fn handler(
        handler: impl Fn(&HttpRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> Upstream {
        Upstream::with_mode(Mode::Handler(Arc::new(handler)))
    }

    /// Expects `request` next and answers it with `reply`.
    pub fn expect(&self, request: Expect, reply: Reply) -> &Upstream {
        match &mut *lock(&self.inner.mode) {
            Mode::Script(queue) => queue.push_back((request, reply)),
            Mode::Handler(_) => panic!("Upstream::expect on an upstream built with a handler"),
        }
        self
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.inner.seen).clone()
    }

    /// The most requests that were waiting for their answer at the same time.
    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak.load(Ordering::SeqCst)
    }

    /// Panics, with a diff of each request that did not match its expectation and the list of
    /// expectations that were never met, if there is any.
    #[track_caller]
    pub fn verify(&self) {
        let mut problems = lock(&self.inner.failures).clone();
        if let Mode::Script(queue) = &*lock(&self.inner.mode) {
            for (expect, _) in queue {
                problems.push(format!("expected but never received:\n{}", expect.render()));
            }
        }
        if !problems.is_empty() {
            panic!(
                "the scripted upstream saw problems:\n\n{}",
                problems.join("\n")
            );
        }
    }

    pub(crate) fn set_clock(&self, clock: HostClock) {
        *lock(&self.inner.clock) = clock;
    }

    fn answer(&self, request: &HttpRequest) -> Reply {
        let index = {
            let mut seen = lock(&self.inner.seen);
            seen.push(Seen {
                at_unix_ms: lock(&self.inner.clock).now_unix_ms(),
                request: request.clone(),
            });
            seen.len() - 1
        };
        let handler = match &mut *lock(&self.inner.mode) {
            Mode::Handler(h) => h.clone(),
            Mode::Script(queue) => {
                let problem = match queue.front() {
                    Some((expect, _)) if expect.matches(request) => {
                        let (_, reply) = queue.pop_front().expect("a front");
                        return reply;
                    }
                    Some((expect, _)) => format!(
                        "request #{index} differs from the expectation (- expected, + actual):\n{}",
                        diff::lines(&expect.render(), &expect.render_actual(request))
                    ),
                    None => format!(
                        "request #{index} was not expected (the script is done):\n{} {}\n",
                        request.method,
                        path_of(&request.url)
                    ),
                };
                lock(&self.inner.failures).push(problem.clone());
                return Reply::error(PluginError::new(
                    ErrorKind::Upstream,
                    format!("the scripted upstream refused this request: {problem}"),
                ));
            }
        };
        handler(request, index)
    }
}

impl Transport for Upstream {
    fn send(&self, _plugin: &str, request: HttpRequest) -> TransportFuture {
        let reply = self.answer(&request);
        let now = self.inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.peak.fetch_max(now, Ordering::SeqCst);
        // Leaves the in-flight count when the answer is given or the host gives up waiting.
        struct InFlight(Arc<Inner>);
        impl Drop for InFlight {
            fn drop(&mut self) {
                self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let guard = InFlight(self.inner.clone());
        Box::pin(async move {
            let _guard = guard;
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            reply.result
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The path and query of `url` (the whole text when it is no absolute URL).
fn path_of(url: &str) -> String {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return url.to_owned();
    };
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].to_owned(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_the_query() {
        assert_eq!(path_of("https://a.test/v1/sims?page=2"), "/v1/sims?page=2");
        assert_eq!(path_of("https://a.test"), "/");
        assert_eq!(path_of("https://a.test?x=1"), "/?x=1");
    }

    #[test]
    fn a_mismatch_is_reported_with_a_diff() {
        let up = Upstream::scripted();
        up.expect(
            Expect::post("/oauth/token").json(json!({"grant_type": "client_credentials"})),
            Reply::json(200, json!({})),
        );
        let req = HttpRequest::new("POST", "https://upstream.test/oauth/token")
            .body(r#"{"grant_type":"password"}"#);
        assert!(up.answer(&req).result.is_err());
        let panic = std::panic::catch_unwind(|| up.verify()).unwrap_err();
        let text = panic.downcast_ref::<String>().unwrap();
        assert!(
            text.contains("-   \"grant_type\": \"client_credentials\""),
            "{text}"
        );
        assert!(text.contains("+   \"grant_type\": \"password\""), "{text}");
        assert!(text.contains("expected but never received"), "{text}");
    }
}
