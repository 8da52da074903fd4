//! Control endpoints, seeding determinism and the library API.

use std::collections::BTreeSet;

use devext_jasper_sim::{SimView, SmsView, StatsSnapshot};

use crate::util::*;

#[tokio::test]
async fn same_seed_same_account() {
    let a = sim_with(|c| c.seed = 7).await;
    let b = sim_with(|c| c.seed = 7).await;
    let c = sim_with(|c| c.seed = 8).await;
    let sims_a: Vec<SimView> = control_get(&a, "/_sim/sims").await.json_as();
    let sims_b: Vec<SimView> = control_get(&b, "/_sim/sims").await.json_as();
    let sims_c: Vec<SimView> = control_get(&c, "/_sim/sims").await.json_as();
    assert_eq!(sims_a, sims_b);
    assert_ne!(sims_a, sims_c);
    assert_eq!(a.other_account_iccids(), b.other_account_iccids());
    // Usage is seeded too.
    let iccid = &sims_a[0].iccid;
    let path = format!("/devices/{iccid}/usageInZone?cycleStartDate={}Z", cycle(1));
    let mut ua = rest_get(&a, &path).await.json();
    let mut ub = rest_get(&b, &path).await.json();
    ua["timeStamp"] = serde_json::Value::Null;
    ub["timeStamp"] = serde_json::Value::Null;
    assert_eq!(ua, ub);
}

#[tokio::test]
async fn seeded_account_shape() {
    let sim = sim_with(|c| c.sims = 60).await;
    let sims: Vec<SimView> = control_get(&sim, "/_sim/sims").await.json_as();
    assert_eq!(sims.len(), 60);
    let activated = sims.iter().filter(|s| s.status == "activated").count();
    assert!(activated >= 30, "{activated} activated");
    let statuses: BTreeSet<&str> = sims.iter().map(|s| s.status.as_str()).collect();
    for wanted in [
        "inventory",
        "activation_ready",
        "activated",
        "deactivated",
        "retired",
    ] {
        assert!(
            statuses.contains(wanted),
            "{wanted} missing from {statuses:?}"
        );
    }
    let lengths: BTreeSet<usize> = sims.iter().map(|s| s.iccid.len()).collect();
    assert_eq!(lengths, BTreeSet::from([19, 20]));
    assert!(
        sims.iter()
            .all(|s| s.iccid.starts_with("89") && s.iccid.bytes().all(|b| b.is_ascii_digit()))
    );
    let unique: BTreeSet<&str> = sims.iter().map(|s| s.iccid.as_str()).collect();
    assert_eq!(unique.len(), 60);

    let plans = control_get(&sim, "/_sim/rate_plans").await.json();
    let names: Vec<&str> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.len() >= 3);
    assert!(names.iter().all(|n| !n.contains(' ')));
    assert!(sims.iter().all(|s| names.contains(&s.rate_plan.as_str())));

    let foreign: Vec<String> = control_get(&sim, "/_sim/other_account_iccids")
        .await
        .json_as();
    assert_eq!(foreign.len(), 3);
    assert!(foreign.iter().all(|f| !unique.contains(f.as_str())));
}

#[tokio::test]
async fn sms_log_stats_and_patch() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}/smsMessages", active.iccid);
    let response = rest_post(&sim, &path, r#"{"messageText":"hi"}"#).await;
    assert_eq!(response.status, 200);
    let log: Vec<SmsView> = control_get(&sim, "/_sim/sms").await.json_as();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].iccid.as_str(), log[0].message.as_str()),
        (active.iccid.as_str(), "hi")
    );
    assert!(log[0].sent_at.ends_with('Z'));
    let raw = control_get(&sim, "/_sim/sms").await.json();
    for key in ["iccid", "message", "id", "sent_at"] {
        assert!(raw[0].get(key).is_some(), "{key}");
    }
    assert_eq!(control(&sim, "DELETE", "/_sim/sms", "").await.status, 204);
    assert!(sim.sms_log().is_empty());

    let stats: StatsSnapshot = control_get(&sim, "/_sim/stats").await.json_as();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.rest_requests, 1);
    assert_eq!(stats.writes, 1);

    // Forcing a state, bypassing the rules (test setup helper).
    let retired = sim_in(&sim, "retired");
    let retired_path = format!("/_sim/sims/{}", retired.iccid);
    let patched = control(&sim, "PATCH", &retired_path, r#"{"status":"activated"}"#).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["status"], "activated");
    assert_eq!(
        control_get(&sim, &retired_path).await.json()["rest_status"],
        "ACTIVATED"
    );
    // A REST status name is not a status id (no content type: control endpoints need none).
    let bad = send(
        sim.addr(),
        "PATCH",
        &retired_path,
        &[],
        br#"{"status":"ACTIVATED"}"#,
    )
    .await
    .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(
        control_get(&sim, "/_sim/sims/8900000000000000000")
            .await
            .status,
        404
    );
    // Control calls are not counted as API traffic.
    assert_eq!(sim.stats().requests, 1);
}

#[tokio::test]
async fn library_lifecycle() {
    // A seed no other test uses: after shutdown, the port may be reused by
    // another test's simulator, which would then serve different SIMs.
    let sim = sim_with(|c| c.seed = 999_999).await;
    let before = control_get(&sim, "/_sim/sims").await.body;
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(
        sim.rest_base_url(),
        format!("{}/rws/api/v1", sim.base_url())
    );
    assert_eq!(
        sim.soap_url("terminal"),
        format!("{}/ws/service/terminal", sim.base_url())
    );
    assert_eq!(sim.credentials().username, "demo");
    let addr = sim.addr();
    sim.shutdown().await;
    match send(addr, "GET", "/_sim/sims", &[], b"").await {
        Err(_) => {}
        Ok(other) => assert_ne!(other.body, before, "the stopped simulator still answers"),
    }
}
