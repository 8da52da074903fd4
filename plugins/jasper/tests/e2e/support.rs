//! The Jasper plugin through the real host runtime with the plugin test kit
//! (`devext-plugin-test`): canned HTTP answers from a handler behind the host's egress rules,
//! the host's timers on tokio's paused clock, the host's schema checks of every argument and
//! output. The helpers keep the shape the tests were written in (`FakeHost::new(handler)`,
//! `invoke(..)`), each a thin layer over the kit.
//!
//! Each `FakeHost` is its own host runtime, and its own upstream account: the plugin (one
//! instance per process, as in a host) keys its per-account state on the host's account key,
//! which depends on the endpoint, so each `FakeHost` gives the endpoints of the orgs it serves
//! a port of its own (and shows the requests with the endpoint as the test wrote it).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devext_host::CallRequest;
use devext_jasper::Jasper;
use devext_plugin_api::{Call, HttpRequest, HttpResponse, Manifest, PluginError, Value, json};
use devext_plugin_test::{Harness, Upstream};

/// 2023-11-14T22:13:20Z: the host clock's start (the kit's).
pub const BASE_MS: i64 = devext_plugin_test::START_UNIX_MS;

pub const ICCID: &str = "8988216716970004975";

/// What the fake Jasper answers to one request.
pub struct Reply {
    pub delay_ms: u64,
    pub result: Result<HttpResponse, PluginError>,
}

impl Reply {
    pub fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            delay_ms: 20,
            result: Ok(HttpResponse::new(status, body)),
        }
    }

    pub fn ok(body: impl Into<String>) -> Reply {
        Reply::status(200, body)
    }

    /// The host's HTTP capability fails with `e`.
    pub fn host_error(e: PluginError) -> Reply {
        Reply {
            delay_ms: 5,
            result: Err(e),
        }
    }

    pub fn delayed(mut self, ms: u64) -> Reply {
        self.delay_ms = ms;
        self
    }

    fn into_kit(self) -> devext_plugin_test::Reply {
        let reply = match self.result {
            Ok(resp) => {
                let mut r = devext_plugin_test::Reply::status(resp.status, resp.body);
                for (n, v) in &resp.headers {
                    r = r.header(n, v);
                }
                r
            }
            Err(e) => devext_plugin_test::Reply::error(e),
        };
        reply.delay(Duration::from_millis(self.delay_ms))
    }
}

/// A request as the upstream saw it, with the host clock's time when it arrived.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at_ms: i64,
    pub req: HttpRequest,
}

/// Origins as the tests wrote them, by the origins the host was given.
type Origins = Arc<Mutex<Vec<(String, String)>>>;

#[derive(Clone)]
pub struct FakeHost {
    upstream: Upstream,
    port: u16,
    origins: Origins,
    checked: Harness,
    unchecked: Harness,
}

fn restore(origins: &Origins, url: &str) -> String {
    for (given, written) in origins.lock().unwrap().iter() {
        if let Some(rest) = url.strip_prefix(given.as_str()) {
            return format!("{written}{rest}");
        }
    }
    url.to_owned()
}

impl FakeHost {
    pub fn new(handler: impl Fn(&HttpRequest, usize) -> Reply + Send + Sync + 'static) -> FakeHost {
        static NEXT_PORT: AtomicU16 = AtomicU16::new(20_000);
        let origins: Origins = Arc::default();
        let seen_origins = origins.clone();
        let upstream = Upstream::handler(move |req, n| {
            let mut req = req.clone();
            req.url = restore(&seen_origins, &req.url);
            handler(&req, n).into_kit()
        });
        let build = |checks: bool| {
            let b = Harness::builder("jasper")
                .upstream(&upstream)
                .clock_at(BASE_MS);
            let b = if checks { b } else { b.without_schema_checks() };
            b.build().unwrap_or_else(|e| panic!("{e}"))
        };
        FakeHost {
            checked: build(true),
            unchecked: build(false),
            upstream,
            port: NEXT_PORT.fetch_add(1, Ordering::Relaxed),
            origins,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.checked.now_unix_ms()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.upstream
            .requests()
            .into_iter()
            .map(|s| {
                let mut req = s.request;
                req.url = restore(&self.origins, &req.url);
                Seen {
                    at_ms: s.at_unix_ms,
                    req,
                }
            })
            .collect()
    }

    pub fn requests(&self) -> usize {
        self.upstream.requests().len()
    }

    pub fn peak(&self) -> usize {
        self.upstream.peak_in_flight()
    }

    /// `org` with its endpoint on this host's own port.
    fn org(&self, org: &Value) -> Value {
        let mut org = org.clone();
        let Some(endpoint) = org["endpoint"].as_str() else {
            return org;
        };
        let (scheme, rest) = endpoint.split_once("://").expect("an endpoint URL");
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let host = authority.split(':').next().unwrap_or(authority);
        let written = format!("{scheme}://{authority}");
        let given = format!("{scheme}://{host}:{}", self.port);
        org["endpoint"] = json!(format!("{given}{path}"));
        let mut origins = self.origins.lock().unwrap();
        if !origins.iter().any(|(g, _)| *g == given) {
            origins.push((given, written));
        }
        org
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations and calls

pub fn soap_org(endpoint: &str) -> Value {
    json!({
        "api": "soap", "endpoint": endpoint, "username": "alice",
        "password": "s3cret<&>pw", "license_key": "LIC-KEY-1"
    })
}

pub fn rest_org(endpoint: &str) -> Value {
    json!({"api": "rest", "endpoint": endpoint, "username": "alice", "api_key": "api-key-1"})
}

/// The manifest, as the host read it.
pub fn manifest() -> Manifest {
    Harness::new("jasper").manifest().clone()
}

/// Calls device-scope `op` through the host: the configurations and the input are checked
/// against the manifest's schemas first, the output after.
pub async fn invoke(
    plugin: &Jasper,
    host: &FakeHost,
    org: &Value,
    iccid: &str,
    op: &str,
    input: Value,
) -> Result<Value, PluginError> {
    invoke_with_deadline(plugin, host, org, iccid, op, input, 30_000).await
}

/// [`invoke`] with the call's deadline `deadline_in_ms` from now.
pub async fn invoke_with_deadline(
    _plugin: &Jasper,
    host: &FakeHost,
    org: &Value,
    iccid: &str,
    op: &str,
    input: Value,
    deadline_in_ms: i64,
) -> Result<Value, PluginError> {
    host.checked
        .clone()
        .with_org(host.org(org))
        .call_within(
            Duration::from_millis(deadline_in_ms as u64),
            op,
            json!({ "iccid": iccid }),
            input,
        )
        .await
}

/// Calls an organisation-scope `op` through the host (no device).
pub async fn invoke_org(
    _plugin: &Jasper,
    host: &FakeHost,
    org: &Value,
    op: &str,
    input: Value,
) -> Result<Value, PluginError> {
    host.checked
        .clone()
        .with_org(host.org(org))
        .call_org(op, input)
        .await
}

/// Calls the plugin through a host that checks no schema (to reach the plugin's own checks).
pub async fn invoke_raw(
    _plugin: &Jasper,
    host: &FakeHost,
    call: Call,
) -> Result<Value, PluginError> {
    let org = host.org(&call.org_config);
    let timeout = (call.context.deadline_unix_ms - host.now_ms()).max(1) as u64;
    let req = CallRequest::new("jasper", &call.op, &org, &call.device_config, &call.input)
        .timeout(Duration::from_millis(timeout));
    host.unchecked.runtime().invoke(req).await
}

pub fn call(host: &FakeHost, org: &Value, op: &str, input: Value) -> Call {
    Call::new(
        devext_plugin_api::CallContext::new("call-raw", host.now_ms() + 30_000),
        op,
        org.clone(),
        json!({ "iccid": ICCID }),
        input,
    )
}

// ---------------------------------------------------------------------------------------------
// Canned answers

pub const JASPER_NS: &str = "http://api.jasperwireless.com/ws/schema";

pub fn soap_ok(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>{inner}</S:Body></S:Envelope>"#
    )
}

pub fn soap_response(op: &str, children: &str) -> String {
    soap_ok(&format!(
        r#"<ns2:{op}Response xmlns:ns2="{JASPER_NS}"><ns2:correlationId>x</ns2:correlationId><ns2:version>7.28</ns2:version><ns2:build>b</ns2:build><ns2:timestamp>2017-02-17T15:36:21.828Z</ns2:timestamp>{children}</ns2:{op}Response>"#
    ))
}

pub fn soap_fault(code: &str, detail: &str) -> Reply {
    Reply::status(
        500,
        format!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>{code}</faultstring><detail><error>{detail}</error></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
        ),
    )
}

pub fn terminal_details(iccid: &str, status: &str) -> String {
    soap_response(
        "GetTerminalDetails",
        &format!(
            r#"<ns2:terminals><ns2:terminal msisdn="1"><ns2:iccid>{iccid}</ns2:iccid><ns2:ratePlan>IoT 10MB</ns2:ratePlan><ns2:status>{status}</ns2:status><ns2:overageLimitReached>true</ns2:overageLimitReached><ns2:overageLimitOverride>DEFAULT</ns2:overageLimitOverride><ns2:dateAdded>2015-05-15T09:27:33.069Z</ns2:dateAdded><ns2:dateModified>2016-06-29T00:21:33.339Z</ns2:dateModified><ns2:monthToDateDataUsage>3.5</ns2:monthToDateDataUsage><ns2:monthToDateSMSUsage>4</ns2:monthToDateSMSUsage><ns2:monthToDateVoiceUsage>61</ns2:monthToDateVoiceUsage><ns2:unknownThing>1</ns2:unknownThing></ns2:terminal></ns2:terminals>"#
        ),
    )
}

pub fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The Jasper operation element of a SOAP request body (namespace-aware).
pub fn soap_op(req: &HttpRequest) -> devext_jasper::xml::Element {
    let root = devext_jasper::xml::parse(req.body.as_deref().unwrap()).expect("well-formed XML");
    let body = root
        .children
        .iter()
        .find(|c| c.is("http://schemas.xmlsoap.org/soap/envelope/", "Body"))
        .expect("a Body");
    body.first_child().expect("an operation").clone()
}
