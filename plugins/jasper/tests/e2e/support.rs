//! A fake host for end-to-end tests of the plugin without a real host or simulator: canned HTTP
//! answers, a virtual clock (tokio's paused time) and a record of every request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RString};
use async_ffi::{FfiFuture, FutureExt as _};
use devext_jasper::Jasper;
use devext_plugin_api::abi::{AbiResult, HostCaps, HostCaps_TO};
use devext_plugin_api::{
    Call, CallContext, Host, HttpRequest, HttpResponse, Manifest, Plugin, PluginError, Value, json,
};

/// 2023-11-14T22:13:20Z: the fake clock's start.
pub const BASE_MS: i64 = 1_700_000_000_000;

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
}

pub type Handler = Arc<dyn Fn(&HttpRequest, usize) -> Reply + Send + Sync>;

/// A request as the fake host saw it, with the virtual time it started.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at_ms: i64,
    pub req: HttpRequest,
}

pub struct Inner {
    start: tokio::time::Instant,
    handler: Handler,
    pub seen: Mutex<Vec<Seen>>,
    pub logs: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    pub peak_in_flight: AtomicUsize,
    /// The host's in-process limiter, as the runtime lends it.
    pub limiter: Arc<devext_host::limiter::LocalLimiter>,
    /// Back-offs the plugin reported: (account, pause ms).
    pub backoffs: Mutex<Vec<(String, u64)>>,
}

#[derive(Clone)]
pub struct FakeHost {
    pub inner: Arc<Inner>,
}

impl FakeHost {
    pub fn new(handler: impl Fn(&HttpRequest, usize) -> Reply + Send + Sync + 'static) -> FakeHost {
        FakeHost {
            inner: Arc::new(Inner {
                start: tokio::time::Instant::now(),
                handler: Arc::new(handler),
                seen: Mutex::new(Vec::new()),
                logs: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                peak_in_flight: AtomicUsize::new(0),
                limiter: Arc::new(devext_host::limiter::LocalLimiter::new()),
                backoffs: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn now_ms(&self) -> i64 {
        BASE_MS + self.inner.start.elapsed().as_millis() as i64
    }

    pub fn host(&self) -> Host {
        Host::from_caps(HostCaps_TO::from_ptr(RArc::new(self.clone()), TD_Opaque))
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.inner.seen.lock().unwrap().len()
    }

    pub fn peak(&self) -> usize {
        self.inner.peak_in_flight.load(Ordering::SeqCst)
    }

    pub fn logs(&self) -> Vec<String> {
        self.inner.logs.lock().unwrap().clone()
    }
}

fn abi_err(e: PluginError) -> AbiResult {
    RResult::RErr(e.to_abi())
}

impl HostCaps for FakeHost {
    fn call(&self, capability: RStr<'_>, request: RStr<'_>) -> AbiResult {
        match capability.as_str() {
            "clock.now" => RResult::ROk(json!({"unix_ms": self.now_ms()}).to_string().into()),
            "log" => {
                self.inner
                    .logs
                    .lock()
                    .unwrap()
                    .push(request.as_str().to_owned());
                RResult::ROk("{}".into())
            }
            "limit.release" => {
                use devext_host::limiter::Limiter as _;
                let r: Value = serde_json::from_str(request.as_str()).unwrap();
                self.inner.limiter.release(r["permit"].as_str().unwrap());
                RResult::ROk("{}".into())
            }
            "limit.backoff" => {
                use devext_host::limiter::Limiter as _;
                let r: Value = serde_json::from_str(request.as_str()).unwrap();
                let (account, ms) = (
                    r["account_key"].as_str().unwrap().to_owned(),
                    r["pause_ms"].as_u64().unwrap(),
                );
                self.inner
                    .limiter
                    .back_off(&account, Duration::from_millis(ms));
                self.inner.backoffs.lock().unwrap().push((account, ms));
                RResult::ROk("{}".into())
            }
            other => abi_err(PluginError::new(
                devext_plugin_api::ErrorKind::Unsupported,
                format!("no capability {other}"),
            )),
        }
    }

    fn call_async(&self, capability: RStr<'_>, request: RString) -> FfiFuture<AbiResult> {
        match capability.as_str() {
            "http.request" => {
                let req: HttpRequest = serde_json::from_str(&request).expect("an HttpRequest");
                let index = {
                    let mut seen = self.inner.seen.lock().unwrap();
                    seen.push(Seen {
                        at_ms: self.now_ms(),
                        req: req.clone(),
                    });
                    seen.len() - 1
                };
                let now = self.inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.inner.peak_in_flight.fetch_max(now, Ordering::SeqCst);
                let reply = (self.inner.handler)(&req, index);
                let inner = Arc::clone(&self.inner);
                async move {
                    tokio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
                    inner.in_flight.fetch_sub(1, Ordering::SeqCst);
                    match reply.result {
                        Ok(resp) => RResult::ROk(serde_json::to_string(&resp).unwrap().into()),
                        Err(e) => abi_err(e),
                    }
                }
                .into_ffi()
            }
            "limit.acquire" => {
                use devext_host::limiter::Limiter as _;
                let r: Value = serde_json::from_str(&request).unwrap();
                let wait = Duration::from_millis(r["max_wait_ms"].as_u64().unwrap_or(30_000));
                let ask = devext_host::limiter::PermitAsk::new(
                    r["account_key"].as_str().unwrap(),
                    r["rate_per_second"].as_u64().unwrap() as u32,
                    r["max_in_flight"].as_u64().unwrap() as u32,
                    devext_host::Priority::Interactive,
                    tokio::time::Instant::now() + wait,
                );
                let limiter = Arc::clone(&self.inner.limiter);
                async move {
                    match limiter.acquire(ask).await {
                        Ok(permit) => RResult::ROk(json!({"permit": permit}).to_string().into()),
                        Err(e) => abi_err(e),
                    }
                }
                .into_ffi()
            }
            "time.sleep" => {
                let ms = serde_json::from_str::<Value>(&request).unwrap()["ms"]
                    .as_u64()
                    .unwrap();
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    RResult::ROk("{}".into())
                }
                .into_ffi()
            }
            other => {
                let e = abi_err(PluginError::new(
                    devext_plugin_api::ErrorKind::Unsupported,
                    format!("no capability {other}"),
                ));
                async move { e }.into_ffi()
            }
        }
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

pub fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .with_format("luhn", luhn)
        .build(schema)
        .expect("a valid schema")
}

pub fn luhn(s: &str) -> bool {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = s
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

pub fn errors_of(schema: &Value, instance: &Value) -> Vec<String> {
    validator(schema)
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect()
}

pub fn manifest() -> Manifest {
    Jasper::default().manifest()
}

/// Calls `op` like the host would: checks the configurations and the input against the
/// manifest's schemas first, and the output against the output schema after.
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

/// Like [`invoke`], with the given account key in the call's context instead of the one the
/// host would derive.
pub async fn invoke_as(
    plugin: &Jasper,
    host: &FakeHost,
    org: &Value,
    account_key: &str,
    iccid: &str,
    op: &str,
    input: Value,
) -> Result<Value, PluginError> {
    invoke_checked(
        plugin,
        host,
        org,
        Some(account_key.to_owned()),
        iccid,
        op,
        input,
        30_000,
    )
    .await
}

pub async fn invoke_with_deadline(
    plugin: &Jasper,
    host: &FakeHost,
    org: &Value,
    iccid: &str,
    op: &str,
    input: Value,
    deadline_in_ms: i64,
) -> Result<Value, PluginError> {
    invoke_checked(plugin, host, org, None, iccid, op, input, deadline_in_ms).await
}

#[allow(clippy::too_many_arguments)]
async fn invoke_checked(
    plugin: &Jasper,
    host: &FakeHost,
    org: &Value,
    account_key: Option<String>,
    iccid: &str,
    op: &str,
    input: Value,
    deadline_in_ms: i64,
) -> Result<Value, PluginError> {
    let m = manifest();
    let device = json!({ "iccid": iccid });
    assert_eq!(
        errors_of(&m.org_config_schema, org),
        Vec::<String>::new(),
        "org config"
    );
    assert_eq!(
        errors_of(&m.device_config_schema, &device),
        Vec::<String>::new(),
        "device"
    );
    let operation = m.operation(op).expect("a declared operation");
    assert_eq!(
        errors_of(&operation.input_schema, &input),
        Vec::<String>::new(),
        "input of {op}"
    );
    let context = CallContext::new("call-1", host.now_ms() + deadline_in_ms)
        .account_key(account_key.unwrap_or_else(|| host_account_key(org)));
    let call = Call::new(context, op, org.clone(), device, input);
    let out = invoke_raw(plugin, host, call).await;
    if let Ok(v) = &out {
        assert_eq!(
            errors_of(&operation.output_schema, v),
            Vec::<String>::new(),
            "output of {op}: {v:#}"
        );
    }
    if let Err(e) = &out {
        // Never leak a credential.
        let text = format!("{} {}", e.message, e.details);
        for secret in ["s3cret", "LIC-KEY-1", "api-key-1"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    out
}

/// Calls an organisation-scope `op` like the host would: no device (`device_config` is
/// `null`), the org config and input checked first, the output after.
pub async fn invoke_org(
    plugin: &Jasper,
    host: &FakeHost,
    org: &Value,
    op: &str,
    input: Value,
) -> Result<Value, PluginError> {
    let m = manifest();
    assert_eq!(
        errors_of(&m.org_config_schema, org),
        Vec::<String>::new(),
        "org config"
    );
    let operation = m.operation(op).expect("a declared operation");
    assert_eq!(operation.scope, devext_plugin_api::OpScope::Org, "{op}");
    assert_eq!(
        errors_of(&operation.input_schema, &input),
        Vec::<String>::new(),
        "input of {op}"
    );
    let context =
        CallContext::new("call-org", host.now_ms() + 30_000).account_key(host_account_key(org));
    let call = Call::new(context, op, org.clone(), Value::Null, input);
    let out = invoke_raw(plugin, host, call).await;
    if let Ok(v) = &out {
        assert_eq!(
            errors_of(&operation.output_schema, v),
            Vec::<String>::new(),
            "output of {op}: {v:#}"
        );
    }
    out
}

/// Calls the plugin directly, without any schema check (to reach the plugin's own checks).
pub async fn invoke_raw(
    plugin: &Jasper,
    host: &FakeHost,
    call: Call,
) -> Result<Value, PluginError> {
    plugin.invoke(host.host(), call).await
}

pub fn call(host: &FakeHost, org: &Value, op: &str, input: Value) -> Call {
    Call::new(
        CallContext::new("call-raw", host.now_ms() + 30_000),
        op,
        org.clone(),
        json!({ "iccid": ICCID }),
        input,
    )
}

/// The account key a host would send for `org`: it depends on the endpoint and the manifest's
/// account fields (`api`, `username`) only, never on the credentials (the real derivation, a
/// SHA-256 digest, is the host's; the plugin only compares keys).
pub fn host_account_key(org: &Value) -> String {
    let endpoint = org["endpoint"].as_str().unwrap_or("");
    format!(
        "account:{}|{}|{}",
        endpoint.trim_end_matches('/').to_ascii_lowercase(),
        org["api"],
        org["username"]
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
