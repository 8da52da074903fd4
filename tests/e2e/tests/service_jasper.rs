//! The Jasper plugin through the HTTP API against the in-process simulator: how each kind of
//! upstream failure maps to an HTTP status, idempotent SMS, audit entries, and that the org's
//! Jasper credentials never show up in responses or logs. Its own test binary: it links the
//! Jasper plugin statically and owns the process-wide log subscriber.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use devext_host::RuntimeConfig;
use devext_jasper_sim::{Credentials, FaultMode, FaultSettings, RunningSim, SimConfig};
use devext_service::store::Role;
use devext_service::testing::{TestService, captured_logs};
use serde_json::{Value, json};

// The Jasper plugin as a static plugin.
use devext_jasper as _;

/// The org's REST API key: distinctive, so that a leak is easy to find.
const API_KEY: &str = "rest-SECRET-key-4711";
/// Base64 of `demo:rest-SECRET-key-4711` (the Basic credentials on the wire).
const API_KEY_BASIC: &str = "ZGVtbzpyZXN0LVNFQ1JFVC1rZXktNDcxMQ==";
/// An ICCID in no account of the simulator.
const UNKNOWN_ICCID: &str = "89011704252318999999";

fn assert_logs_hold_no_secret() {
    let text = captured_logs().text();
    assert!(!text.contains(API_KEY), "the API key was logged");
    assert!(
        !text.contains(API_KEY_BASIC),
        "the Basic credentials were logged"
    );
}

/// The message of an error answer.
fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap()
}

struct Env {
    service: TestService,
    admin: String,
    operator: String,
    sim: RunningSim,
    /// Every response body seen, to check that no secret is ever returned.
    seen: Mutex<String>,
}

impl Env {
    /// A service with the Jasper plugin (calls bounded by `call_timeout`), an org whose Jasper
    /// settings point at a fresh simulator with `api_key` as the REST key.
    async fn new(call_timeout: Duration, api_key: &str) -> Env {
        captured_logs();
        let sim = devext_jasper_sim::start(SimConfig {
            credentials: Credentials {
                api_key: API_KEY.into(),
                ..Credentials::default()
            },
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut config = RuntimeConfig {
            call_timeout,
            ..RuntimeConfig::default()
        };
        config.egress.allow_loopback_http = true;
        let service = TestService::start(config).await;
        assert!(
            service.app.runtime.plugin("jasper").is_some(),
            "jasper is linked"
        );
        let env = Env {
            admin: service.admin.clone(),
            operator: service.key("acme", Role::Operator).await,
            service,
            sim,
            seen: Mutex::new(String::new()),
        };
        let (s, body) = env
            .send(
                "PUT",
                "/api/v1/extensions/jasper",
                &env.admin.clone(),
                Some(json!({"enabled": true, "config": {
                    "api": "rest",
                    "endpoint": env.sim.base_url(),
                    "username": "demo",
                    "api_key": api_key,
                }})),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["secrets_set"], json!(["api_key"]));
        env
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let (s, _, v) = self.send_full(method, path, key, body, extra).await;
        (s, v)
    }

    async fn send_full(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let reply = self
            .service
            .client
            .send(method, path, Some(key), body, extra)
            .await;
        self.seen.lock().unwrap().push_str(&reply.text);
        (reply.status, reply.headers, reply.body)
    }

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.send("GET", path, key, None, &[]).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.send("POST", path, key, Some(body), &[]).await
    }

    /// A device bound to `iccid`; returns its id.
    async fn device(&self, iccid: &str) -> String {
        let (s, d) = self
            .post(
                "/api/v1/devices",
                &self.admin,
                json!({"name": format!("sim {iccid}"), "extensions": {"jasper": {"iccid": iccid}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        d["id"].as_str().unwrap().to_owned()
    }

    /// A device bound to an activated SIM of the simulator.
    async fn activated_device(&self) -> (String, String) {
        let iccid = self
            .sim
            .sims()
            .into_iter()
            .find(|s| s.status == "activated")
            .expect("an activated SIM")
            .iccid;
        (self.device(&iccid).await, iccid)
    }

    async fn op(&self, device: &str, op: &str, input: Value) -> (StatusCode, Value) {
        let path = format!("/api/v1/devices/{device}/extensions/jasper/{op}");
        self.post(&path, &self.operator, input).await
    }

    /// Checks that no response and no log line held the org's Jasper key.
    fn assert_no_secret_seen(&self) {
        let seen = self.seen.lock().unwrap();
        assert!(!seen.contains(API_KEY), "a response held the API key");
        assert!(!seen.contains(API_KEY_BASIC));
        assert_logs_hold_no_secret();
    }
}

#[tokio::test]
async fn jasper_operations_map_to_http_statuses_and_are_audited() {
    let env = Env::new(Duration::from_secs(30), API_KEY).await;
    let (device, iccid) = env.activated_device().await;

    // 200: the overview, through the drilldown's operation.
    let (s, drill) = env
        .get(&format!("/api/v1/devices/{device}/extensions"), &env.admin)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(drill["extensions"][0]["available"], true, "{drill}");
    let (s, overview) = env.op(&device, "overview", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{overview}");
    assert_eq!(overview["iccid"], iccid.as_str());
    assert_eq!(overview["status"], "activated");
    assert_eq!(overview["api"], "rest");

    // 409: Jasper refuses to take an activated SIM back to Activation Ready.
    let (s, body) = env
        .op(&device, "set_status", json!({"status": "activation_ready"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "conflict");
    assert_eq!(
        env.sim.sim(&iccid).unwrap().status,
        "activated",
        "nothing changed"
    );

    // 404: an ICCID that is not in the account.
    let unknown = env.device(UNKNOWN_ICCID).await;
    assert!(env.sim.sim(UNKNOWN_ICCID).is_none());
    let (s, body) = env.op(&unknown, "overview", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "not_found");
    assert!(
        error_message(&body).contains("not in this Jasper account"),
        "{body}"
    );
    assert_eq!(
        body["error"]["details"]["code"], "iccid_not_in_account",
        "{body}"
    );
    // The service's own 404 (no such device) has no such code: a client tells them apart.
    let (s, body) = env.op("no-such-device", "overview", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_ne!(
        body["error"]["details"]["code"], "iccid_not_in_account",
        "{body}"
    );

    // 422 with a pointer: a date that is no date, caught before anything is sent.
    let before = env.sim.stats().requests;
    let (s, body) = env
        .op(&device, "usage", json!({"cycle_start_date": "2024-13-45"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "invalid_input");
    assert_eq!(
        body["error"]["details"]["violations"][0]["pointer"],
        "/cycle_start_date"
    );
    // 422 too for a missing field and for an unknown status id.
    let (s, body) = env.op(&device, "usage", json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = env
        .op(&device, "set_status", json!({"status": "suspended"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"]["violations"][0]["pointer"],
        "/status"
    );
    assert_eq!(
        env.sim.stats().requests,
        before,
        "invalid input never leaves"
    );

    // 422 too: well-formed input that Jasper refuses (a rate plan the account does not have) is
    // `invalid_input` like a schema violation, only without pointers.
    let (s, body) = env
        .op(
            &device,
            "set_rate_plan",
            json!({"rate_plan": "No_Such_Plan_9"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "invalid_input");
    assert!(body["error"]["details"].get("violations").is_none());

    // A viewer may read but not act.
    let viewer = env.service.key("acme", Role::Viewer).await;
    let path = format!("/api/v1/devices/{device}/extensions/jasper");
    let (s, _) = env
        .post(&format!("{path}/overview"), &viewer, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .post(
            &format!("{path}/send_sms"),
            &viewer,
            json!({"message": "hi"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Every action is audited with its outcome (views are not); newest first.
    let (_, audit) = env.get("/api/v1/audit?limit=100", &env.admin).await;
    let ops: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "operation")
        .map(|e| {
            assert_eq!(e["plugin"], "jasper", "{e}");
            (
                e["op"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("set_rate_plan", "invalid_input"),
        ("set_status", "invalid_input"),
        ("set_status", "conflict"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(ops, expected, "{audit}");

    // The settings read back masked.
    let (_, ext) = env.get("/api/v1/extensions/jasper", &env.admin).await;
    assert_eq!(ext["secrets_set"], json!(["api_key"]));
    assert!(ext["config"].get("api_key").is_none(), "{ext}");
    env.assert_no_secret_seen();
}

#[tokio::test]
async fn wrong_org_credentials_are_502_never_401() {
    let env = Env::new(Duration::from_secs(30), "not-the-key").await;
    let (device, _) = env.activated_device().await;
    let (s, body) = env.op(&device, "overview", json!({})).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["kind"], "unauthorized");
    assert!(
        error_message(&body).contains("credentials rejected"),
        "{body}"
    );
    assert!(!body.to_string().contains("not-the-key"), "{body}");
    // The devext key itself is fine: other endpoints still answer.
    let (s, _) = env.get("/api/v1/devices", &env.operator).await;
    assert_eq!(s, StatusCode::OK);
    env.assert_no_secret_seen();
}

#[tokio::test]
async fn persistent_rate_limits_are_429() {
    // A short deadline bounds the plugin's retries (backoff 0.5 s, 1 s, ...).
    let env = Env::new(Duration::from_secs(2), API_KEY).await;
    let (device, _) = env.activated_device().await;
    env.sim
        .set_faults(FaultSettings {
            mode: FaultMode::RateLimit,
            count: None,
            ..FaultSettings::default()
        })
        .unwrap();
    let started = Instant::now();
    let (s, body) = env.op(&device, "overview", json!({})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["kind"], "rate_limited");
    assert_eq!(body["error"]["details"]["retryable"], true, "{body}");
    assert!(
        env.sim.stats().faults_injected >= 2,
        "retried at least once"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // An action under the same limits: 429 as well, and audited so.
    let (s, body) = env.op(&device, "send_sms", json!({"message": "x"})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(env.sim.sms_log().is_empty());
    env.sim.clear_faults();
    let (s, body) = env.op(&device, "overview", json!({})).await;
    assert_eq!(s, StatusCode::OK, "recovers: {body}");
    env.assert_no_secret_seen();
}

#[tokio::test]
async fn a_slow_upstream_is_504() {
    let env = Env::new(Duration::from_secs(2), API_KEY).await;
    let (device, _) = env.activated_device().await;
    env.sim
        .set_faults(FaultSettings {
            latency_ms: 4_000,
            ..FaultSettings::default()
        })
        .unwrap();
    let started = Instant::now();
    let (s, body) = env.op(&device, "overview", json!({})).await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["kind"], "timeout");
    assert!(
        took >= Duration::from_millis(1_900) && took < Duration::from_millis(3_500),
        "answered at the deadline, not after the upstream: {took:?}"
    );
    env.assert_no_secret_seen();
}

#[tokio::test]
async fn an_idempotency_key_sends_the_sms_once() {
    let env = Env::new(Duration::from_secs(30), API_KEY).await;
    let (device, iccid) = env.activated_device().await;
    let path = format!("/api/v1/devices/{device}/extensions/jasper/send_sms");
    let input = json!({"message": "reboot please"});
    let idem = [("idempotency-key", "sms-2026-001")];
    let before = env.sim.sms_log().len();
    let (s1, h1, first) = env
        .send_full("POST", &path, &env.operator, Some(input.clone()), &idem)
        .await;
    assert_eq!(s1, StatusCode::OK, "{first}");
    assert!(h1.get("idempotent-replay").is_none());
    let (s2, h2, again) = env
        .send_full("POST", &path, &env.operator, Some(input.clone()), &idem)
        .await;
    assert_eq!(s2, StatusCode::OK, "{again}");
    assert_eq!(again, first, "the repeat returns the first answer");
    assert_eq!(h2.get("idempotent-replay").unwrap(), "true");
    let log = env.sim.sms_log();
    assert_eq!(log.len(), before + 1, "sent once: {log:?}");
    assert_eq!(log.last().unwrap().iccid, iccid);
    assert_eq!(log.last().unwrap().message, "reboot please");
    // The same key with another message is refused and sends nothing.
    let (s, _) = env
        .send(
            "POST",
            &path,
            &env.operator,
            Some(json!({"message": "other"})),
            &idem,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Without a key, every request sends.
    let (s, _) = env.op(&device, "send_sms", input).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(env.sim.sms_log().len(), before + 2);
    let (_, audit) = env.get("/api/v1/audit", &env.admin).await;
    let sends = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["op"] == "send_sms" && e["outcome"] == "ok")
        .count();
    assert_eq!(sends, 2, "audited once per execution: {audit}");
    // The audit keeps the message's length (the schema says so), never its text.
    assert!(!audit.to_string().contains("reboot please"), "{audit}");
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"] == r#"input: {"message":"<13 characters>"}"#),
        "{audit}"
    );
    env.assert_no_secret_seen();
}

#[tokio::test]
async fn devices_are_found_by_iccid_and_an_iccid_is_one_devices() {
    let env = Env::new(Duration::from_secs(30), API_KEY).await;
    let (device, iccid) = env.activated_device().await;
    let (s, found) = env
        .get(
            &format!("/api/v1/devices?ext.jasper.iccid={iccid}"),
            &env.operator,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["items"][0]["id"], device.as_str());
    // A second device with the ICCID is refused, naming the field; nothing is written.
    let (s, body) = env
        .post(
            "/api/v1/devices",
            &env.admin,
            json!({"name": "copy", "extensions": {"jasper": {"iccid": iccid}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"]["details"]["pointer"],
        "/extensions/jasper/iccid"
    );
    assert_eq!(body["error"]["details"]["device"], device.as_str());
    let (_, all) = env.get("/api/v1/devices", &env.admin).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    // Jasper declares no other lookup field.
    let (s, body) = env
        .get("/api/v1/devices?ext.jasper.imei=1", &env.admin)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["details"]["known"],
        json!(["ext.jasper.iccid"])
    );
    // The OpenAPI document names the filter.
    let (_, doc) = env.get("/api/v1/openapi.json", &env.admin).await;
    let params = doc["paths"]["/api/v1/devices"]["get"]["parameters"].to_string();
    assert!(params.contains("\"ext.jasper.iccid\""), "{params}");
    env.assert_no_secret_seen();
}
