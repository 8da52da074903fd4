//! The same contract, run against the static and the dynamic build of the echo plugin.

use std::time::Duration;

use devext_host::{CallRequest, ErrorKind, OpKind, OpScope, PluginSource, Runtime, RuntimeConfig};
use serde_json::json;

use crate::util;

async fn contract(rt: &Runtime) {
    let echo = rt.plugin("echo").expect("echo loaded");
    let m = echo.manifest();
    assert_eq!(m.name, "echo");
    assert_eq!(m.api_version, devext_plugin_api::API_VERSION);
    let kinds: Vec<(&str, OpKind)> = m
        .operations
        .iter()
        .map(|o| (o.name.as_str(), o.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("echo", OpKind::View),
            ("count", OpKind::Action),
            ("counter", OpKind::View),
            ("ping", OpKind::View)
        ]
    );
    assert_eq!(m.operation("ping").unwrap().scope, OpScope::Org);
    assert_eq!(m.operation("echo").unwrap().scope, OpScope::Device);
    assert_eq!(
        m.org_config_schema["properties"]["token"]["writeOnly"],
        true
    );

    let org = json!({"greeting": "hej"});
    let call = |op: &'static str, device: &'static str, input: serde_json::Value| {
        let org = org.clone();
        async move {
            rt.invoke(CallRequest {
                plugin: "echo",
                op,
                org_config: &org,
                device_config: &json!({"id": device}),
                input: &input,
                timeout: Some(Duration::from_secs(5)),
                priority: Default::default(),
            })
            .await
        }
    };
    let out = call("echo", "d1", json!({"message": "ping", "tags": ["a"]}))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"message": "ping", "greeting": "hej", "device": "d1", "tags": ["a"]})
    );
    // Per-device state lives in the plugin instance.
    assert_eq!(call("count", "d1", json!({})).await.unwrap()["count"], 1);
    assert_eq!(
        call("count", "d1", json!({"by": 5})).await.unwrap()["count"],
        6
    );
    assert_eq!(call("count", "d2", json!({})).await.unwrap()["count"], 1);
    let e = call("echo", "d1", json!({"message": 1})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);

    // A view with `fresh_for_secs` is served again from the host's cache, with `as_of`...
    let first = call("counter", "d1", json!({})).await.unwrap();
    assert_eq!(first["count"], 6);
    assert!(
        first["as_of"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    let again = call("counter", "d1", json!({})).await.unwrap();
    assert_eq!(again, first, "served from the cache");
    let other_device = call("counter", "d2", json!({})).await.unwrap();
    assert_eq!(other_device["count"], 1);
    assert_ne!(other_device["reads"], first["reads"]);
    // ...until an action on the device drops it: nobody sees a state older than their change.
    assert_eq!(call("count", "d1", json!({})).await.unwrap()["count"], 7);
    let after = call("counter", "d1", json!({})).await.unwrap();
    assert_eq!(after["count"], 7);
    assert_ne!(after["reads"], first["reads"]);

    org_scope(rt, &org).await;
}

/// The account key of echo with greeting "hej": SHA-256 of the documented encoding (see the
/// host's `account.rs`), computed independently. The same in every process and build.
const HEJ_ACCOUNT: &str = "a6e86b96d16ecab985504ac91374a17f673f96721751b6390168c26a2a2a8c6d";

/// Organisation-scope operations run without a device; device-scope ones need one.
async fn org_scope(rt: &Runtime, org: &serde_json::Value) {
    let ping = |org: serde_json::Value, device: Option<serde_json::Value>| async move {
        let input = json!({});
        let req = match &device {
            Some(device) => CallRequest::new("echo", "ping", &org, device, &input),
            None => CallRequest::org("echo", "ping", &org, &input),
        };
        rt.invoke(req.timeout(Duration::from_secs(5))).await
    };
    let out = ping(org.clone(), None).await.unwrap();
    assert_eq!(out, json!({"greeting": "hej", "account_key": HEJ_ACCOUNT}));
    // A secret does not change the account; an account field does.
    let with_token = ping(json!({"greeting": "hej", "token": "t0ps3cret"}), None)
        .await
        .unwrap();
    assert_eq!(with_token["account_key"], HEJ_ACCOUNT);
    let other = ping(json!({"greeting": "hi"}), None).await.unwrap();
    assert_ne!(other["account_key"], HEJ_ACCOUNT);
    // A device config passed to an org-scope operation is ignored: not checked (this one is
    // invalid for echo) and not handed to the plugin.
    let with_device = ping(org.clone(), Some(json!({"not": "a device"})))
        .await
        .unwrap();
    assert_eq!(with_device, out);
    // The org settings are still checked.
    let e = ping(json!({"greeting": 7}), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(e.details["location"], "org_config");

    // A device-scope operation without a device is refused before the plugin runs.
    for op in ["echo", "count", "counter"] {
        let input = if op == "echo" {
            json!({"message": "m"})
        } else {
            json!({})
        };
        let e = rt
            .invoke(CallRequest::org("echo", op, org, &input))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{op}");
        assert!(e.message.contains("needs a device"), "{op}: {}", e.message);
        assert_eq!(e.details["location"], "device_config");
    }
    // Device-scope calls get the account key too.
    let _ = rt
        .invoke(CallRequest::new(
            "echo",
            "echo",
            org,
            &json!({"id": "d1"}),
            &json!({"message": "m"}),
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_device_operation_needs_a_device_even_without_schema_checks() {
    let rt = Runtime::load(RuntimeConfig {
        check_schemas: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let e = rt
        .invoke(CallRequest::org("echo", "count", &json!({}), &json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("needs a device"), "{}", e.message);
    let out = rt
        .invoke(CallRequest::org("echo", "ping", &json!({}), &json!({})))
        .await
        .unwrap();
    assert_eq!(out["greeting"], "hello");
}

#[tokio::test]
async fn static_echo_passes_the_contract() {
    let rt = Runtime::load(RuntimeConfig::default()).unwrap();
    assert_eq!(rt.plugin("echo").unwrap().source(), &PluginSource::Static);
    contract(&rt).await;
}

#[tokio::test]
async fn dynamic_echo_passes_the_contract() {
    let (rt, _dir) = util::dynamic_runtime(&["devext-echo"]);
    assert!(matches!(
        rt.plugin("echo").unwrap().source(),
        PluginSource::File(_)
    ));
    contract(&rt).await;
}
