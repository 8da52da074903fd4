//! The HTTP capability lent to plugins, and the egress rules it enforces.
//!
//! A plugin may reach only the origin (scheme, host, port) of the endpoint in its org config.
//! https is required and addresses on the host's own networks (loopback, private, link-local,
//! shared, unspecified, multicast) are refused, so that a tenant's settings can never make the
//! host probe its own network. The operator may allow plain http to loopback (tests, the
//! simulator). The address rules are applied to the addresses the name resolves to, at connect
//! time, by the client's resolver: a name that resolves to a public address for the check and a
//! private one for the connection cannot slip through. Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use devext_plugin_api::{ErrorKind, HttpRequest, HttpResponse, PluginError, json};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::time::Instant;
use url::Url;

/// Operator settings of the HTTP capability.
#[derive(Clone)]
pub struct EgressConfig {
    /// Allow `http://` to loopback addresses (and loopback addresses at all).
    pub allow_loopback_http: bool,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: usize,
    /// Replaces the network (a test kit's scripted upstream): requests that pass the egress
    /// rules go to it instead of the HTTP client; names are not resolved. `None` in production.
    pub transport: Option<Arc<dyn Transport>>,
}

impl std::fmt::Debug for EgressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressConfig")
            .field("allow_loopback_http", &self.allow_loopback_http)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("transport", &self.transport.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            allow_loopback_http: false,
            max_response_bytes: 4 * 1024 * 1024,
            transport: None,
        }
    }
}

/// The answer of a [`Transport`].
pub type TransportFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, PluginError>> + Send + 'static>,
>;

/// What carries a plugin's HTTP requests once the egress rules allowed them, instead of the
/// network: a scripted upstream in a plugin's tests. The host bounds the answer by the call's
/// deadline (and the request's `timeout_ms`) and the response size cap, as for the network.
pub trait Transport: Send + Sync {
    /// Answers `request` of `plugin` (its URL already checked against the egress rules). An
    /// error is what the plugin receives, as from a failed connection (give it a
    /// `details.stage`).
    fn send(&self, plugin: &str, request: HttpRequest) -> TransportFuture;
}

/// The host's HTTP client, shared by every call.
pub struct HttpCapability {
    /// Built on first use: loading the platform's CA roots costs start-up time and memory that
    /// commands which never call a plugin (e.g. `devext validate`) should not pay.
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
    config: EgressConfig,
    /// Requests by (plugin, outcome): a status class (`2xx`...) or an error kind.
    counts: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
}

impl std::fmt::Debug for HttpCapability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCapability")
            .field("config", &self.config)
            .finish()
    }
}

/// Why a request never left, or failed; `stage` tells a plugin whether the request may have been
/// processed (`connect`: certainly not sent; `response`: it may have been).
fn http_error(kind: ErrorKind, stage: &str, message: String) -> PluginError {
    PluginError::new(kind, message).with_details(json!({ "stage": stage }))
}

impl HttpCapability {
    /// The capability with these settings; the client itself is built on first use.
    pub fn new(config: EgressConfig) -> HttpCapability {
        HttpCapability {
            client: std::sync::OnceLock::new(),
            config,
            counts: Default::default(),
        }
    }

    /// The client (rustls with the ring provider, the platform's roots), built once.
    fn client(&self) -> Result<&reqwest::Client, PluginError> {
        self.client
            .get_or_init(|| {
                // Installing twice is harmless: the first provider stays.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let resolver = Arc::new(CheckedResolver {
                    allow_loopback: self.config.allow_loopback_http,
                });
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .dns_resolver(resolver)
                    .connect_timeout(Duration::from_secs(10))
                    .pool_idle_timeout(Duration::from_secs(60))
                    .user_agent(concat!("devext/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| PluginError::internal(e.clone()))
    }

    /// Checks `request` against the egress rules for a plugin whose org config names `endpoint`.
    pub fn check(
        &self,
        plugin: &str,
        endpoint: Option<&str>,
        url: &str,
    ) -> Result<Url, PluginError> {
        let refuse = |msg: String| http_error(ErrorKind::Forbidden, "connect", msg);
        let Some(endpoint) = endpoint else {
            return Err(refuse(format!(
                "plugin {plugin} declared no endpoint setting, so it may not make HTTP requests"
            )));
        };
        let allowed = Url::parse(endpoint).map_err(|e| {
            refuse(format!(
                "the endpoint in the org settings is not a URL ({e})"
            ))
        })?;
        let target = Url::parse(url)
            .map_err(|e| refuse(format!("plugin {plugin} asked for an invalid URL ({e})")))?;
        if origin(&target) != origin(&allowed) {
            return Err(refuse(format!(
                "plugin {plugin} may only reach {} (the endpoint in its org settings), not {}",
                origin_text(&allowed),
                origin_text(&target)
            )));
        }
        if !target.username().is_empty() || target.password().is_some() {
            return Err(refuse(
                "credentials in the URL are not allowed; send them in headers".into(),
            ));
        }
        let literal = ip_literal(&target);
        let loopback_target = is_loopback_host(&target);
        let loopback_ok = self.config.allow_loopback_http;
        match target.scheme() {
            "https" => {}
            "http" if loopback_ok && loopback_target => {}
            "http" => {
                return Err(refuse(format!(
                    "{} uses plain http; https is required{}",
                    origin_text(&target),
                    if loopback_ok {
                        " (plain http is allowed to loopback addresses only)"
                    } else {
                        ""
                    }
                )));
            }
            other => return Err(refuse(format!("scheme {other} is not allowed"))),
        }
        // Literal addresses never reach the resolver: check them here.
        if let Some(ip) = literal
            && !address_allowed(ip, loopback_ok)
        {
            return Err(refuse(format!(
                "{} is on a local or private network; refused",
                origin_text(&target)
            )));
        }
        Ok(target)
    }

    /// Whether `url` is plain http to loopback, which these rules refuse unless
    /// `allow_loopback_http` is set: the refusal a local simulator meets.
    pub(crate) fn refuses_loopback_http(&self, url: &Url) -> bool {
        !self.config.allow_loopback_http && url.scheme() == "http" && is_loopback_host(url)
    }

    /// Requests sent so far, by plugin and outcome (`2xx`, `4xx`, ..., or an error kind).
    pub fn counts(&self) -> Vec<(String, String, u64)> {
        self.counts
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((p, o), n)| (p.clone(), o.clone(), *n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends `request` for `plugin` (egress-checked against `endpoint`), giving up at `deadline`.
    pub async fn send(
        &self,
        plugin: &str,
        endpoint: Option<&str>,
        request: HttpRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, PluginError> {
        let result = self.send_checked(plugin, endpoint, request, deadline).await;
        let outcome = match &result {
            Ok(r) => format!("{}xx", r.status / 100),
            Err(e) => e.kind.as_str().to_owned(),
        };
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((plugin.to_owned(), outcome)).or_default() += 1;
        }
        result
    }

    async fn send_checked(
        &self,
        plugin: &str,
        endpoint: Option<&str>,
        request: HttpRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, PluginError> {
        let url = self.check(plugin, endpoint, &request.url)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            http_error(
                ErrorKind::InvalidInput,
                "connect",
                format!("invalid HTTP method {:?}", request.method),
            )
        })?;
        let mut remaining = deadline.saturating_duration_since(Instant::now());
        if let Some(ms) = request.timeout_ms {
            remaining = remaining.min(Duration::from_millis(ms));
        }
        if remaining.is_zero() {
            return Err(http_error(
                ErrorKind::Timeout,
                "connect",
                "no time left before the call's deadline".into(),
            ));
        }
        if let Some(transport) = &self.config.transport {
            let answer = tokio::time::timeout(remaining, transport.send(plugin, request)).await;
            let response = answer.map_err(|_| {
                http_error(
                    ErrorKind::Timeout,
                    "response",
                    format!("{} did not answer before the deadline", origin_text(&url)),
                )
            })??;
            let max = self.config.max_response_bytes;
            if response.body.len() > max {
                return Err(http_error(
                    ErrorKind::Upstream,
                    "response",
                    format!(
                        "{} answered with more than {max} bytes; refused",
                        origin_text(&url)
                    ),
                ));
            }
            return Ok(response);
        }
        let mut builder = self
            .client()?
            .request(method, url.clone())
            .timeout(remaining);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        // Never log headers, bodies or the query: they may carry credentials.
        tracing::debug!(plugin, method = %request.method, origin = %origin_text(&url), path = url.path(), "plugin http request");
        let response = builder.send().await.map_err(|e| send_error(&url, &e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let max = self.config.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(http_error(
                ErrorKind::Upstream,
                "response",
                format!(
                    "{} answered with more than {max} bytes; refused",
                    origin_text(&url)
                ),
            ));
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| send_error(&url, &e))? {
            if body.len() + chunk.len() > max {
                return Err(http_error(
                    ErrorKind::Upstream,
                    "response",
                    format!(
                        "{} answered with more than {max} bytes; refused",
                        origin_text(&url)
                    ),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let mut response = HttpResponse::new(status, String::from_utf8_lossy(&body));
        response.headers = headers;
        Ok(response)
    }
}

fn send_error(url: &Url, e: &reqwest::Error) -> PluginError {
    let place = origin_text(url);
    // The innermost cause, for the message; it never contains the query or headers.
    let mut detail = String::new();
    let mut refused = false;
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        refused |= matches!(
            s.downcast_ref::<ResolveError>(),
            Some(ResolveError::Refused { .. })
        );
        source = s.source();
    }
    if e.is_timeout() {
        // Whether the server got the request is unknown: report it as possibly processed.
        http_error(
            ErrorKind::Timeout,
            "response",
            format!("{place} did not answer before the deadline"),
        )
    } else if e.is_connect() {
        let kind = if refused {
            ErrorKind::Forbidden
        } else {
            ErrorKind::Upstream
        };
        http_error(
            kind,
            "connect",
            format!("cannot connect to {place}: {detail}"),
        )
    } else {
        http_error(
            ErrorKind::Upstream,
            "response",
            format!("request to {place} failed: {detail}"),
        )
    }
}

/// (scheme, host, port) with default ports filled in.
fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_ascii_lowercase(),
        url.host_str().map(|h| h.to_ascii_lowercase()),
        url.port_or_known_default(),
    )
}

fn origin_text(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => url.scheme().to_owned(),
    }
}

/// Why the egress resolver gave no address for a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name has no address.
    #[error("{host} does not resolve")]
    NoAddress {
        /// The name.
        host: String,
    },
    /// Every address of the name is one a plugin may not reach.
    #[error("{host} resolves only to local or private addresses; refused")]
    Refused {
        /// The name.
        host: String,
    },
}

/// The address of `url` when its host is written as one.
fn ip_literal(url: &Url) -> Option<IpAddr> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// Whether plain http may be allowed to `url`'s host: a loopback literal or the name
/// `localhost` (whose addresses the resolver still checks at connect time).
fn is_loopback_host(url: &Url) -> bool {
    ip_literal(url).is_some_and(|ip| ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost"))
}

/// Whether a plugin may connect to `ip`.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_loopback),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_allowed(v4, allow_loopback);
            }
            v6_allowed(v6, allow_loopback)
        }
    }
}

fn v4_allowed(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b); // 100.64.0.0/10 (carrier-grade NAT)
    let this_network = a == 0;
    let benchmarking = a == 198 && (b == 18 || b == 19);
    !(ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || shared
        || this_network
        || benchmarking
        || a >= 240)
}

fn v6_allowed(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    let first = ip.segments()[0];
    let unique_local = (first & 0xfe00) == 0xfc00; // fc00::/7
    let link_local = (first & 0xffc0) == 0xfe80; // fe80::/10
    let site_local = (first & 0xffc0) == 0xfec0; // deprecated fec0::/10
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    let nat64_local = first == 0x0064 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1;
    !(ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || site_local
        || documentation
        || nat64_local)
}

/// Resolves names with the system resolver and drops every address a plugin may not reach.
struct CheckedResolver {
    allow_loopback: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| address_allowed(a.ip(), allow_loopback))
                .collect();
            if allowed.is_empty() {
                let e = if found.is_empty() {
                    ResolveError::NoAddress { host }
                } else {
                    ResolveError::Refused { host }
                };
                return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(allow_loopback_http: bool) -> HttpCapability {
        HttpCapability::new(EgressConfig {
            allow_loopback_http,
            max_response_bytes: 1024,
            transport: None,
        })
    }

    /// What the plugin gets for a GET of `url` through `c`'s client that fails to send.
    async fn failed_get(c: &HttpCapability, url: &Url) -> PluginError {
        let e = c
            .client()
            .unwrap()
            .get(url.clone())
            .send()
            .await
            .unwrap_err();
        send_error(url, &e)
    }

    #[test]
    fn only_the_endpoint_origin_is_reachable() {
        let c = cap(false);
        let ep = Some("https://api.example.com");
        assert!(
            c.check("p", ep, "https://api.example.com/ws/service/terminal")
                .is_ok()
        );
        assert!(c.check("p", ep, "https://API.example.com:443/x").is_ok());
        for bad in [
            "https://api.example.com:8443/x",
            "https://other.example.com/x",
            "http://api.example.com/x",
            "https://api.example.com.evil.net/x",
            "ftp://api.example.com/x",
        ] {
            let e = c.check("p", ep, bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Forbidden, "{bad}");
            assert_eq!(e.details["stage"], "connect");
        }
        let e = c.check("p", None, "https://api.example.com/").unwrap_err();
        assert!(e.message.contains("declared no endpoint"), "{}", e.message);
    }

    #[test]
    fn https_is_required_and_private_literals_are_refused() {
        let strict = cap(false);
        let e = strict
            .check(
                "p",
                Some("http://127.0.0.1:9000"),
                "http://127.0.0.1:9000/x",
            )
            .unwrap_err();
        assert!(e.message.contains("https is required"), "{}", e.message);
        let e = strict
            .check("p", Some("https://10.0.0.8"), "https://10.0.0.8/x")
            .unwrap_err();
        assert!(e.message.contains("private network"), "{}", e.message);
        let e = strict
            .check("p", Some("https://[::1]:9000"), "https://[::1]:9000/x")
            .unwrap_err();
        assert!(e.message.contains("private network"), "{}", e.message);

        let relaxed = cap(true);
        assert!(
            relaxed
                .check(
                    "p",
                    Some("http://127.0.0.1:9000"),
                    "http://127.0.0.1:9000/x"
                )
                .is_ok()
        );
        assert!(
            relaxed
                .check(
                    "p",
                    Some("http://localhost:9000"),
                    "http://localhost:9000/x"
                )
                .is_ok()
        );
        // Loopback only: other private networks stay closed, and plain http elsewhere too.
        assert!(
            relaxed
                .check("p", Some("http://192.168.1.4"), "http://192.168.1.4/x")
                .is_err()
        );
        assert!(
            relaxed
                .check("p", Some("http://example.com"), "http://example.com/x")
                .is_err()
        );
    }

    #[test]
    fn address_classes() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!address_allowed(ip, true), "{ip} must be refused");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.4.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(address_allowed(ip, false), "{ip} must be allowed");
        }
        assert!(!address_allowed("127.0.0.1".parse().unwrap(), false));
        assert!(!address_allowed("::ffff:127.0.0.1".parse().unwrap(), false));
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true));
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_connect_time() {
        // `localhost` resolves to loopback; without the operator's permission it is refused by
        // the resolver even though the URL check (a name, not a literal) cannot see it.
        let r = CheckedResolver {
            allow_loopback: false,
        };
        let err = match r.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert_eq!(
            err.downcast_ref::<ResolveError>(),
            Some(&ResolveError::Refused {
                host: "localhost".into()
            })
        );
    }

    #[tokio::test]
    async fn the_resolvers_refusal_is_found_in_the_clients_error_chain() {
        // Through the real client: the refusal travels inside reqwest's and hyper's errors and
        // is recognised by its type, so the plugin gets `forbidden`, not `upstream`.
        let url = Url::parse("http://localhost:9/").unwrap();
        let error = failed_get(&cap(false), &url).await;
        assert_eq!(error.kind, ErrorKind::Forbidden, "{}", error.message);
        assert_eq!(error.details["stage"], "connect");
        assert!(
            error.message.contains("only to local or private addresses"),
            "{}",
            error.message
        );
        // A connection failure for another reason stays `upstream`.
        assert_eq!(failed_get(&cap(true), &url).await.kind, ErrorKind::Upstream);
    }
}
