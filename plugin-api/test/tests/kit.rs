//! The kit itself, on a small plugin defined here: the scripted upstream behind the real egress
//! rules, virtual time, deadlines and diffs.

use std::time::Duration;

use devext_plugin_api::{Call, Host, HttpRequest, Manifest, Operation, Plugin, PluginError};
use devext_plugin_test::{
    ErrorKind, Expect, Harness, Reply, Upstream, expect_error, json, run_paused,
};
use serde_json::Value;

/// GETs `input.path` on the org's endpoint, after sleeping `input.wait_ms`.
struct Fetch;

impl Plugin for Fetch {
    fn manifest(&self) -> Manifest {
        Manifest::new("fetch", "Fetch", "0.1.0")
            .org_config_schema(json!({
                "type": "object",
                "properties": {
                    "endpoint": {"type": "string", "format": "uri"},
                    "token": {"type": "string", "writeOnly": true}
                },
                "required": ["endpoint"]
            }))
            .device_config_schema(json!({"type": "object"}))
            .endpoint_field("endpoint")
            .with_operation(
                Operation::view("get", "Get")
                    .scope(devext_plugin_api::OpScope::Org)
                    .input_schema(json!({
                        "type": "object",
                        "properties": {"path": {"type": "string"}, "wait_ms": {"type": "integer"}},
                        "required": ["path"]
                    }))
                    .output_schema(json!({
                        "type": "object",
                        "properties": {"status": {"type": "integer"}, "now": {"type": "integer"}},
                        "required": ["status", "now"],
                        "additionalProperties": false
                    })),
            )
            .with_operation(
                // A view the host may cache, so it gets the host's `as_of`.
                Operation::view("stamp", "Stamp").fresh_for_secs(5),
            )
    }

    async fn invoke(&self, host: Host, call: Call) -> Result<Value, PluginError> {
        if call.op == "stamp" {
            return Ok(json!({}));
        }
        if let Some(ms) = call.input["wait_ms"].as_u64() {
            host.sleep(Duration::from_millis(ms)).await?;
        }
        let base = call.org_config["endpoint"].as_str().unwrap_or_default();
        let path = call.input["path"].as_str().unwrap_or_default();
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{base}{path}")
        };
        let mut req = HttpRequest::new("GET", url);
        if let Some(t) = call.org_config["token"].as_str() {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = host.http(&req).await?;
        if resp.body.contains("leak") {
            return Err(PluginError::upstream(format!(
                "echoing {}",
                call.org_config["token"]
            )));
        }
        Ok(json!({"status": resp.status, "now": host.now_unix_ms()?}))
    }
}

devext_plugin_api::export_plugin!(Fetch, Fetch);

fn harness(up: &Upstream) -> Harness {
    Harness::builder("fetch")
        .upstream(up)
        .call_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .with_org(json!({"endpoint": Upstream::ENDPOINT, "token": "tok-123456"}))
}

#[test]
fn scripted_requests_are_answered_in_order_on_virtual_time() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(
            Expect::get("/a").header("authorization", "Bearer tok-123456"),
            Reply::status(204, "").delay(Duration::from_secs(3)),
        )
        .expect(Expect::get("/b"), Reply::ok("x"));
        let h = harness(&up);
        let start = h.now_unix_ms();
        assert_eq!(start, devext_plugin_test::START_UNIX_MS);
        let out = h.call_org("get", json!({"path": "/a"})).await.unwrap();
        assert_eq!(out["status"], 204);
        // The 3 s answer took 3 s of the host's clock and no real time.
        assert_eq!(out["now"], start + 3000);
        let out = h
            .call_org("get", json!({"path": "/b", "wait_ms": 1500}))
            .await
            .unwrap();
        assert_eq!(out["now"], start + 4500);
        let seen = up.requests();
        assert_eq!(seen[1].at_unix_ms, start + 4500);
        assert_eq!(seen[1].path(), "/b");
        up.verify();
    });
}

#[test]
fn a_request_that_differs_fails_the_call_and_the_verification_shows_a_diff() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(Expect::get("/expected"), Reply::ok(""));
        let h = harness(&up);
        expect_error(
            h.call_org("get", json!({"path": "/other"})).await,
            ErrorKind::Upstream,
        );
        let panic = std::panic::catch_unwind(|| up.verify()).unwrap_err();
        let text = panic.downcast_ref::<String>().unwrap();
        assert!(text.contains("- GET /expected\n+ GET /other"), "{text}");
    });
}

#[test]
fn the_egress_rules_still_apply_in_front_of_the_upstream() {
    run_paused(async {
        let up = Upstream::scripted();
        let h = harness(&up);
        let e = expect_error(
            h.call_org("get", json!({"path": "https://elsewhere.test/x"}))
                .await,
            ErrorKind::Forbidden,
        );
        assert_eq!(e.details["stage"], "connect");
        assert!(up.requests().is_empty(), "the request never left");
        let plain = h
            .clone()
            .with_org(json!({"endpoint": "http://upstream.test"}));
        expect_error(
            plain.call_org("get", json!({"path": "/x"})).await,
            ErrorKind::Forbidden,
        );
        up.verify();
    });
}

#[test]
fn the_call_deadline_cuts_off_an_upstream_that_never_answers() {
    run_paused(async {
        let up = Upstream::handler(|_, _| Reply::never());
        let h = harness(&up);
        let e = expect_error(
            h.call_org("get", json!({"path": "/slow"})).await,
            ErrorKind::Timeout,
        );
        assert_eq!(e.details["stage"], "response", "{}", e.details);
        assert_eq!(up.peak_in_flight(), 1);
        // Sleeping past the deadline is a timeout too, without waiting for it in real time.
        expect_error(
            h.call_org("get", json!({"path": "/x", "wait_ms": 60_000}))
                .await,
            ErrorKind::Timeout,
        );
    });
}

#[test]
#[should_panic(expected = "the org secret \"token\" appears in the answer of plugin fetch")]
fn a_secret_in_an_answer_fails_the_test() {
    run_paused(async {
        let up = Upstream::handler(|_, _| Reply::ok("leak"));
        let _ = harness(&up).call_org("get", json!({"path": "/x"})).await;
    });
}

#[test]
fn a_plugin_that_is_not_linked_is_reported_with_the_fix() {
    let e = Harness::builder("absent").build().unwrap_err().to_string();
    assert!(e.contains("plugin absent was not loaded"), "{e}");
    assert!(e.contains("use my_plugin as _;"), "{e}");
    assert!(e.contains("fetch"), "the loaded ones are listed: {e}");
}

#[test]
fn as_of_is_the_host_clocks_time() {
    run_paused(async {
        let h = harness(&Upstream::scripted());
        let out = h.call("stamp", json!({}), json!({})).await.unwrap();
        assert_eq!(out["as_of"], "2023-11-14T22:13:20.000Z");
    });
}
