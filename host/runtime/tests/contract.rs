//! The same contract, run against the static and the dynamic build of the echo plugin.

use std::time::Duration;

use devext_host::{CallRequest, ErrorKind, OpKind, PluginSource, Runtime, RuntimeConfig};
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
            ("counter", OpKind::View)
        ]
    );
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
