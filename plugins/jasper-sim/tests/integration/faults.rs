//! Fault injection: latency, error rate and every forced mode, from the
//! control endpoint and from the configuration.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use devext_jasper_sim::{FaultMode, FaultSettings};
use serde_json::Value;

use crate::util::*;

async fn set_faults(sim: &devext_jasper_sim::RunningSim, json: &str) -> HttpResponse {
    control(sim, "POST", "/_sim/faults", json).await
}

#[tokio::test]
async fn latency_is_added() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    assert_eq!(set_faults(&sim, r#"{"latency_ms":200}"#).await.status, 200);
    let start = Instant::now();
    assert_eq!(rest_get(&sim, &path).await.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(200));
    // Control endpoints are never delayed or faulted.
    let start = Instant::now();
    control_get(&sim, "/_sim/sims").await;
    assert!(start.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn forced_server_errors_with_count() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    let set = set_faults(&sim, r#"{"mode":"http500","count":2}"#)
        .await
        .json();
    assert_eq!(set["mode"], "http500");
    assert_eq!(set["count"], 2);
    // Paths outside the APIs neither count nor consume the fault.
    for other in ["/", "/_sim/", "/ws/other", "/rws/other"] {
        let response = send(sim.addr(), "GET", other, &[], b"").await.unwrap();
        assert_eq!(response.status, 404, "{other}");
    }
    assert_eq!(sim.stats().requests, 0);
    assert_rest_error(&rest_get(&sim, &path).await, 500, "30000001");
    let soap = terminal_details(&sim, &[&active.iccid]).await;
    assert_fault(&soap, "400300");
    assert!(soap.body.contains("SOAP-ENV:Server"));
    // The count is used up: back to normal.
    assert_eq!(rest_get(&sim, &path).await.status, 200);
    let now = control_get(&sim, "/_sim/faults").await.json();
    assert_eq!(now["mode"], "none");
    assert_eq!(sim.stats().faults_injected, 2);
}

#[tokio::test]
async fn forced_rate_limit_answers() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    set_faults(&sim, r#"{"mode":"rate_limit"}"#).await;
    for _ in 0..3 {
        assert_rest_error(&rest_get(&sim, &path).await, 429, "40000029");
    }
    assert_fault(&terminal_details(&sim, &[&active.iccid]).await, "400101");
    let cleared = control(&sim, "DELETE", "/_sim/faults", "").await.json();
    assert_eq!(cleared["mode"], "none");
    assert_eq!(rest_get(&sim, &path).await.status, 200);
}

#[tokio::test]
async fn malformed_bodies() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    set_faults(&sim, r#"{"mode":"malformed","count":2}"#).await;
    let rest = rest_get(&sim, &path).await;
    assert_eq!(rest.status, 200);
    assert!(
        serde_json::from_str::<Value>(&rest.body).is_err(),
        "{}",
        rest.body
    );
    let soap = terminal_details(&sim, &[&active.iccid]).await;
    assert_eq!(soap.status, 200);
    assert!(soap.body.starts_with("<?xml"), "{}", soap.body);
    assert!(!soap.body.contains("</SOAP-ENV:Envelope>"), "{}", soap.body);
    // After the count, normal answers again.
    assert_eq!(rest_get(&sim, &path).await.status, 200);
}

#[tokio::test]
async fn dropped_connections_do_not_execute() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    set_faults(&sim, r#"{"mode":"drop","count":2}"#).await;
    let dropped = rest_send(
        &sim,
        "POST",
        &format!("{path}/smsMessages"),
        r#"{"messageText":"x"}"#,
    )
    .await;
    assert_eq!(dropped.unwrap_err().kind(), ErrorKind::UnexpectedEof);
    let envelope = details_envelope(&active.iccid);
    assert_eq!(
        soap_post(&sim, "terminal", &envelope)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::UnexpectedEof
    );
    assert!(
        sim.sms_log().is_empty(),
        "a dropped request is not executed"
    );
    assert_eq!(sim.stats().dropped_connections, 2);
    // The server keeps serving.
    assert_eq!(rest_get(&sim, &path).await.status, 200);
}

#[tokio::test]
async fn drop_after_write_applies_the_write() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    set_faults(&sim, r#"{"mode":"drop_after_write","count":2}"#).await;
    // Reads are not affected and do not use up the count.
    assert_eq!(rest_get(&sim, &path).await.status, 200);
    // REST write: applied, then the connection is dropped.
    let result = rest_send(&sim, "PUT", &path, r#"{"status":"DEACTIVATED"}"#).await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::UnexpectedEof);
    assert_eq!(sim.sim(&active.iccid).unwrap().status, "deactivated");
    // SOAP write: same.
    let other = sim_in(&sim, "activated");
    let fields = [
        leaf("sentToIccid", other.iccid.clone()),
        leaf("messageText", "ping"),
    ];
    let envelope = soap_request(
        Style::Prefix("sch"),
        &SoapAuth::default(),
        "SendSMS",
        "m",
        &[],
        &fields,
    );
    assert_eq!(
        soap_post(&sim, "Sms", &envelope).await.unwrap_err().kind(),
        ErrorKind::UnexpectedEof
    );
    assert_eq!(sim.sms_log().len(), 1);
    let stats = sim.stats();
    assert_eq!((stats.writes, stats.dropped_connections), (2, 2));
    assert_eq!(stats.operations.get("rest:PUT /devices/{iccid}"), Some(&1));
    // Count used up.
    assert_eq!(
        rest_put(&sim, &path, r#"{"status":"ACTIVATED"}"#)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn error_rate_and_validation() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    set_faults(&sim, r#"{"error_rate":1.0}"#).await;
    for _ in 0..3 {
        assert_rest_error(&rest_get(&sim, &path).await, 500, "30000001");
    }
    set_faults(&sim, r#"{"error_rate":0.5}"#).await;
    let mut failures = 0;
    for _ in 0..40 {
        if rest_get(&sim, &path).await.status == 500 {
            failures += 1;
        }
    }
    assert!(
        (5..=35).contains(&failures),
        "{failures} failures out of 40 at 50%"
    );

    assert_eq!(set_faults(&sim, r#"{"error_rate":2}"#).await.status, 400);
    assert_eq!(set_faults(&sim, r#"{"mode":"explode"}"#).await.status, 400);
    assert_eq!(set_faults(&sim, r#"{"latency":1}"#).await.status, 400);
    assert_eq!(set_faults(&sim, "{").await.status, 400);
}

#[tokio::test]
async fn faults_from_the_configuration_and_library() {
    let sim = sim_with(|c| {
        c.faults = FaultSettings {
            mode: FaultMode::Http500,
            count: Some(1),
            ..FaultSettings::default()
        };
    })
    .await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    assert_eq!(rest_get(&sim, &path).await.status, 500);
    assert_eq!(rest_get(&sim, &path).await.status, 200);
    sim.set_faults(FaultSettings {
        mode: FaultMode::RateLimit,
        ..FaultSettings::default()
    })
    .unwrap();
    assert_eq!(rest_get(&sim, &path).await.status, 429);
    sim.clear_faults();
    assert_eq!(rest_get(&sim, &path).await.status, 200);
    assert!(
        sim.set_faults(FaultSettings {
            error_rate: -1.0,
            ..FaultSettings::default()
        })
        .is_err()
    );
}
