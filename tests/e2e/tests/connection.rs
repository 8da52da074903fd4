//! The Settings page's "Test connection" (`test_connection`, the manifest's connection check)
//! and the usage chart's view (`usage_history`), through the real host against the simulator,
//! for both APIs; and the presentation hints of Jasper's schemas.

use std::time::Duration;

use devext_host::{CallRequest, ErrorKind, PluginError, Runtime};
use devext_jasper_sim::FaultSettings;
use serde_json::{Value, json};

use crate::support::{
    Api, Linking, call, cycle_start, expect_ok, host, org, sim, sim_of, sims_with_status,
    soap_bytes,
};

async fn test_connection(rt: &Runtime, org: &Value) -> Result<Value, PluginError> {
    rt.invoke(CallRequest::org(
        "jasper",
        "test_connection",
        org,
        &json!({}),
    ))
    .await
}

/// Fails with `details.code` = `code` (and a message for people).
#[track_caller]
fn assert_code(result: Result<Value, PluginError>, kind: ErrorKind, code: &str, needle: &str) {
    let e = match result {
        Ok(v) => panic!("expected {code}, got {v}"),
        Err(e) => e,
    };
    assert_eq!(e.details["code"], code, "{}: {}", e.message, e.details);
    assert_eq!(e.kind, kind, "{}", e.message);
    assert!(
        e.message.contains(needle),
        "{:?} lacks {needle:?}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_declares_the_connection_check_and_valid_hints() {
    let host = host(Linking::Static, 0).await;
    let jasper = host.rt.plugin("jasper").unwrap();
    let m = jasper.manifest();
    assert_eq!(m.connection_check.as_deref(), Some("test_connection"));
    // Every presentation hint of Jasper's schemas is one the host knows, where it applies.
    assert!(
        jasper.hint_warnings().is_empty(),
        "{:?}",
        jasper.hint_warnings()
    );
    let history = m.operation("usage_history").unwrap();
    assert_eq!(history.output_schema["x-devext-chart"]["series"], "/cycles");
    let usage = m.operation("usage").unwrap();
    assert_eq!(
        usage.input_schema["properties"]["cycle_start_date"]["x-devext-default"],
        "cycle-start"
    );
    let sms = m.operation("send_sms").unwrap();
    assert_eq!(
        sms.input_schema["properties"]["message"]["x-devext-widget"],
        "textarea"
    );
}

async fn connection_checks(api: Api) {
    let sim = sim().await;
    let host = host(Linking::Static, 0).await;
    let rt = &host.rt;
    let good = org(&sim, api);
    let out = expect_ok(test_connection(rt, &good).await, "right settings");
    assert_eq!(out["ok"], true);
    assert_eq!(out["api"], api.as_str());
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .starts_with("Jasper accepted the")
    );
    // The probe changed nothing and read no SIM of the account.
    assert_eq!(sim.stats().writes, 0);

    match api {
        Api::Soap => {
            let mut bad = good.clone();
            bad["password"] = json!("wrong-password");
            assert_code(
                test_connection(rt, &bad).await,
                ErrorKind::Unauthorized,
                "bad_credentials",
                "username or password is wrong",
            );
            let mut bad = good.clone();
            bad["license_key"] = json!("wrong-license");
            assert_code(
                test_connection(rt, &bad).await,
                ErrorKind::Unauthorized,
                "license_refused",
                "license key is invalid",
            );
        }
        Api::Rest => {
            let mut bad = good.clone();
            bad["api_key"] = json!("wrong-key");
            assert_code(
                test_connection(rt, &bad).await,
                ErrorKind::Unauthorized,
                "bad_credentials",
                "credentials rejected",
            );
        }
    }
    let mut bad = good.clone();
    bad["username"] = json!("nobody");
    assert_code(
        test_connection(rt, &bad).await,
        ErrorKind::Unauthorized,
        "bad_credentials",
        "credentials rejected",
    );

    // Nothing listens there: unreachable (a port just freed on loopback).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut bad = good.clone();
    bad["endpoint"] = json!(format!("http://127.0.0.1:{port}"));
    assert_code(
        test_connection(rt, &bad).await,
        ErrorKind::Upstream,
        "unreachable",
        "cannot connect",
    );
    // A slow endpoint: the test's own timeout, before the host's deadline.
    sim.set_faults(FaultSettings {
        latency_ms: 4_000,
        ..FaultSettings::default()
    })
    .unwrap();
    let slow = rt
        .invoke(
            CallRequest::org("jasper", "test_connection", &good, &json!({}))
                .timeout(Duration::from_millis(1_800)),
        )
        .await;
    assert_code(slow, ErrorKind::Timeout, "timeout", "");
    sim.set_faults(FaultSettings::default()).unwrap();

    // A private address: the host's egress rules refuse it before connecting.
    let mut bad = good.clone();
    bad["endpoint"] = json!("https://10.1.2.3");
    let e = test_connection(rt, &bad).await.unwrap_err();
    assert_eq!(
        e.details["code"], "egress_refused",
        "{}: {}",
        e.message, e.details
    );
    assert_eq!(e.kind, ErrorKind::Forbidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_soap() {
    connection_checks(Api::Soap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_rest() {
    connection_checks(Api::Rest).await;
}

async fn usage_history(api: Api) {
    let sim = sim().await;
    let host = host(Linking::Static, 0).await;
    let rt = &host.rt;
    let org = org(&sim, api);
    let iccid = &sims_with_status(&sim, "activated", 1)[0];
    let out = expect_ok(
        call(rt, &org, iccid, "usage_history", json!({})).await,
        "usage_history",
    );
    assert_eq!(out["iccid"], iccid.as_str());
    assert_eq!(out["api"], api.as_str());
    let cycles = out["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 3, "{out}");
    let data = |bytes: u64| match api {
        Api::Soap => soap_bytes(bytes),
        Api::Rest => bytes,
    };
    for (row, back) in cycles.iter().zip([2u32, 1, 0]) {
        let start = cycle_start(back).to_string();
        assert_eq!(row["cycle_start"], start, "{out}");
        assert_eq!(row["current"], back == 0, "{row}");
        let want = sim.cycle_usage(iccid, &start).unwrap_or_default();
        assert_eq!(row["data_bytes"], data(want.data_bytes), "{start}: {row}");
        assert_eq!(row["sms_messages"], want.sms, "{start}: {row}");
        assert_eq!(row["voice_seconds"], want.voice_seconds, "{start}: {row}");
    }
    // The current cycle agrees with the SIM's cycle-to-date counters.
    let s = sim_of(&sim, iccid);
    assert_eq!(cycles[2]["data_bytes"], data(s.ctd_data_bytes));
    assert_eq!(cycles[2]["sms_messages"], s.ctd_sms);
    assert!(
        cycles[..2]
            .iter()
            .any(|c| c["data_bytes"].as_u64() > Some(0)),
        "an activated SIM of the seeded account used data in past cycles: {out}"
    );

    // The declared chart draws from this output: one panel per unit, a bar per cycle.
    let schema = &rt
        .plugin("jasper")
        .unwrap()
        .manifest()
        .operation("usage_history")
        .unwrap()
        .output_schema;
    let svg = devext_service::chart::render(&out, schema).unwrap();
    assert_eq!(svg.matches("class=\"devext-chart-panel\"").count(), 3);
    let bars = cycles
        .iter()
        .flat_map(|c| ["data_bytes", "sms_messages", "voice_seconds"].map(|k| &c[k]))
        .filter(|v| !v.is_null())
        .count();
    assert_eq!(svg.matches("<rect").count(), bars, "{svg}");
    assert!(
        svg.contains(&format!(">{}</text>", cycle_start(0))),
        "{svg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_history_soap() {
    usage_history(Api::Soap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_history_rest() {
    usage_history(Api::Rest).await;
}
