//! The contract of the Jasper plugin, through the real host against the simulator: one suite,
//! run for {SOAP, REST} × {static, dynamic}.
//!
//! The simulator keeps Cisco's limits (1 in flight, 5 per second) and the org the plugin's
//! defaults: the suite also shows that ordinary use is never refused for going too fast.

use devext_host::{ErrorKind, Runtime};
use devext_jasper_sim::RunningSim;
use serde_json::{Value, json};

use crate::support::{
    Api, Linking, assert_error, call, call_with, cycle_start, days_ahead, device, expect_err,
    expect_ok, host, org, sim, sim_of, sims_with_status, soap_bytes, unknown_iccid,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_soap_static() {
    contract_with(Linking::Static, Api::Soap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_rest_static() {
    contract_with(Linking::Static, Api::Rest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_soap_dynamic() {
    contract_with(Linking::Dynamic, Api::Soap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_rest_dynamic() {
    contract_with(Linking::Dynamic, Api::Rest).await;
}

/// The suite against a fresh simulator (Cisco's limits), through a host without a view cache.
async fn contract_with(linking: Linking, api: Api) {
    let sim = sim().await;
    let host = host(linking, 0).await;
    contract(&host.rt, &sim, api).await;
}

/// Every operation and every mapped error of the plugin, checked against the simulator's state.
async fn contract(rt: &Runtime, sim: &RunningSim, api: Api) {
    let activated = sims_with_status(sim, "activated", 4);
    let [overview_sim, status_sim, sms_sim, plan_sim] =
        [&activated[0], &activated[1], &activated[2], &activated[3]];
    let deactivated = &sims_with_status(sim, "deactivated", 1)[0];

    overview(rt, sim, api, overview_sim).await;
    overview(rt, sim, api, deactivated).await;
    usage(rt, sim, api, overview_sim).await;
    set_status(rt, sim, api, status_sim).await;
    send_sms(rt, sim, api, sms_sim, deactivated).await;
    set_rate_plan(rt, sim, api, plan_sim).await;
    rate_plans_from_settings(rt, sim, api, plan_sim).await;
    past_effective_dates(rt, sim, api, deactivated).await;
    unknown_and_foreign_iccids(rt, sim, api).await;
    invalid_input(rt, sim, api, overview_sim).await;

    // The plugin keeps Jasper's concurrency limit. (Its pace of 5 per second is checked by
    // `burst::*_strict`: see the note there.)
    let stats = sim.stats();
    assert!(stats.max_in_flight_seen <= 1, "{api:?}: {stats:?}");
    assert_eq!(stats.faults_injected, 0);

    // Last: wrong credentials are another limiter in the plugin (it keys accounts by their
    // credentials) but the same account for Jasper, so they may meet its limit.
    wrong_credentials(rt, sim, api, overview_sim).await;
}

/// `overview` agrees with the simulator's view of the SIM, units included.
async fn overview(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str) {
    let org = org(sim, api);
    let out = expect_ok(
        call(rt, &org, iccid, "overview", json!({})).await,
        "overview",
    );
    let s = sim_of(sim, iccid);
    assert_eq!(out["iccid"], iccid);
    assert_eq!(out["api"], api.as_str());
    assert_eq!(out["status"], s.status, "{out}");
    let label = match s.status.as_str() {
        "activated" => "Activated",
        "deactivated" => "Deactivated",
        other => panic!("unexpected status {other}"),
    };
    assert_eq!(out["status_label"], label);
    let raw = match api {
        Api::Soap => &s.soap_status,
        Api::Rest => &s.rest_status,
    };
    assert_eq!(out["upstream_status"], raw.as_str());
    assert_eq!(out["rate_plan"], s.rate_plan);
    let mtd = &out["month_to_date"];
    let data = data_bytes_seen(api, s.ctd_data_bytes);
    assert_eq!(mtd["data_bytes"], data, "{api:?} month_to_date {mtd}");
    assert_eq!(mtd["sms_messages"], s.ctd_sms, "{mtd}");
    assert_eq!(mtd["voice_seconds"], s.ctd_voice_seconds, "{mtd}");
    if s.status == "activated" {
        assert!(
            s.ctd_data_bytes > 0,
            "the seeded account gives activated SIMs usage"
        );
    }
    assert!(out["overage_limit"]["reached"].is_boolean(), "{out}");
    assert!(out["overage_limit"]["override_mode"].is_string(), "{out}");
    for field in ["date_added", "date_modified", "as_of"] {
        let text = out[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {out}"));
        assert!(text.ends_with('Z') && text.len() >= 20, "{field}: {text}");
    }
    // The same instant, whatever the wire format (SOAP and REST write dates differently).
    assert_eq!(
        out["date_added"].as_str().map(|d| &d[..19]),
        Some(&s.date_added[..19]),
        "date_added {out} vs {}",
        s.date_added
    );
}

/// The data volume a client of `api` can know of `bytes`: SOAP sends decimal MB with 3
/// decimals, REST exact bytes.
fn data_bytes_seen(api: Api, bytes: u64) -> u64 {
    match api {
        Api::Soap => soap_bytes(bytes),
        Api::Rest => bytes,
    }
}

/// `usage`: the current and previous cycles, totals against the simulator, billable numbers
/// (SOAP) or null and a reason (REST), and cycles outside what each API keeps.
async fn usage(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str) {
    let org = org(sim, api);
    let usage = |date: &str| call(rt, &org, iccid, "usage", json!({"cycle_start_date": date}));
    let s = sim_of(sim, iccid);
    let current = cycle_start(0).to_string();
    let out = expect_ok(usage(&current).await, "usage now");
    assert_eq!(out["iccid"], iccid);
    assert_eq!(out["api"], api.as_str());
    assert_eq!(out["cycle_start_date"], current);
    assert!(
        out["cycle_start"]
            .as_str()
            .is_some_and(|c| c.starts_with(&current)),
        "{out}"
    );
    let total = &out["total"];
    let data = data_bytes_seen(api, s.ctd_data_bytes);
    assert_eq!(total["data_bytes"], data, "current cycle total {total}");
    assert_eq!(total["sms_messages"], s.ctd_sms, "{total}");
    assert_eq!(total["voice_seconds"], s.ctd_voice_seconds, "{total}");
    check_billable(api, &out);
    if api == Api::Soap {
        assert_eq!(
            out["cycle_billed"], false,
            "the current cycle is not billed"
        );
        assert_eq!(out["rate_plan"], s.rate_plan);
    }

    let previous = cycle_start(1).to_string();
    let out = expect_ok(usage(&previous).await, "usage of the previous cycle");
    assert_eq!(out["cycle_start_date"], previous);
    assert!(
        out["total"]["data_bytes"].as_u64().is_some_and(|b| b > 0),
        "an activated SIM of the seeded account used data last cycle: {out}"
    );
    check_billable(api, &out);
    if api == Api::Soap {
        assert_eq!(out["cycle_billed"], true, "a past cycle is billed");
    }

    // Each API's oldest cycle, then one too old.
    let (oldest, too_old) = match api {
        Api::Soap => (3, 4),
        Api::Rest => (2, 3),
    };
    let date = cycle_start(oldest).to_string();
    expect_ok(usage(&date).await, "usage of the oldest cycle");
    let date = cycle_start(too_old).to_string();
    let e = expect_err(usage(&date).await, "usage of a cycle too old");
    match api {
        Api::Soap => assert_error(
            &e,
            ErrorKind::NotFound,
            "no usage for that cycle",
            "SOAP old",
        ),
        Api::Rest => assert_error(&e, ErrorKind::InvalidInput, "last 3 cycles", "REST old"),
    }
    // Not the first day of a cycle.
    let mid = format!("{}-15", &cycle_start(1).to_string()[..7]);
    let e = expect_err(usage(&mid).await, "usage of a date that starts no cycle");
    assert!(
        matches!(e.kind, ErrorKind::NotFound | ErrorKind::InvalidInput),
        "{}: {}",
        e.kind,
        e.message
    );
}

fn check_billable(api: Api, out: &Value) {
    let (billable, total) = (&out["billable"], &out["total"]);
    for k in ["data_bytes", "sms_messages", "voice_seconds"] {
        match api {
            Api::Soap => {
                let b = billable[k].as_u64().unwrap_or_else(|| panic!("{k}: {out}"));
                let t = total[k].as_u64().unwrap_or_else(|| panic!("{k}: {out}"));
                assert!(b <= t, "billable {k} {b} above total {t}");
            }
            Api::Rest => {
                assert!(billable[k].is_null(), "REST has no billable {k}: {out}");
                assert!(total[k].is_u64(), "{k}: {out}");
            }
        }
    }
    match api {
        Api::Soap => assert!(out["billable_unavailable_reason"].is_null(), "{out}"),
        Api::Rest => assert!(
            out["billable_unavailable_reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{out}"
        ),
    }
}

/// `set_status`: Activated ↔ Deactivated, a refused return to Activation Ready, a scheduled
/// change; the simulator reflects each.
async fn set_status(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str) {
    let org = org(sim, api);
    let set = |input: Value| call(rt, &org, iccid, "set_status", input);
    let out = expect_ok(set(json!({"status": "deactivated"})).await, "deactivate");
    assert_eq!(
        out,
        json!({"iccid": iccid, "api": api.as_str(), "status": "deactivated",
               "effective_date": null, "scheduled": false})
    );
    assert_eq!(sim_of(sim, iccid).status, "deactivated");
    // The overview says so too (no cache in this runtime).
    let view = expect_ok(call(rt, &org, iccid, "overview", json!({})).await, "view");
    assert_eq!(view["status"], "deactivated");

    expect_ok(set(json!({"status": "activated"})).await, "activate");
    assert_eq!(sim_of(sim, iccid).status, "activated");

    let e = expect_err(
        set(json!({"status": "activation_ready"})).await,
        "back to activation ready",
    );
    assert_error(
        &e,
        ErrorKind::Conflict,
        "refused",
        "back to activation ready",
    );
    assert_eq!(sim_of(sim, iccid).status, "activated", "nothing changed");

    // A future effective date: scheduled, not applied yet.
    let when = days_ahead(10).to_string();
    let out = expect_ok(
        set(json!({"status": "deactivated", "effective_date": when})).await,
        "scheduled deactivation",
    );
    assert_eq!(out["scheduled"], true);
    assert_eq!(out["effective_date"], when);
    let s = sim_of(sim, iccid);
    assert_eq!((s.status.as_str(), s.pending_changes), ("activated", 1));
}

/// `send_sms`: the message reaches the simulator's log with the id returned; a message too long
/// is refused before anything is sent; a SIM that is not active gives `conflict`.
async fn send_sms(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str, inactive: &str) {
    let org = org(sim, api);
    let sms = |message: &str| call(rt, &org, iccid, "send_sms", json!({"message": message}));
    let text = format!("devext e2e {} ✓ hello", api.as_str());
    let before = sim.sms_log().len();
    let out = expect_ok(sms(&text).await, "send_sms");
    let log = sim.sms_log();
    assert_eq!(log.len(), before + 1, "exactly one SMS sent");
    let sent = log.last().expect("an SMS");
    assert_eq!(
        (sent.iccid.as_str(), sent.message.as_str()),
        (iccid, text.as_str())
    );
    assert_eq!(sent.api, api.as_str());
    assert_eq!(out["message_id"], sent.id.to_string(), "{out}");
    assert_eq!(out["characters"], text.chars().count());
    assert_eq!(out["iccid"], iccid);

    // The longest message each API takes is sent whole.
    let max = match api {
        Api::Soap => 160,
        Api::Rest => 320,
    };
    let longest = "é".repeat(max);
    expect_ok(sms(&longest).await, "longest SMS");
    assert_eq!(
        sim.sms_log().last().map(|s| s.message.clone()),
        Some(longest)
    );

    // One character more: refused before sending (SOAP by the plugin, REST by the schema).
    let requests = sim.stats().requests;
    let count = sim.sms_log().len();
    let e = expect_err(sms(&"x".repeat(max + 1)).await, "SMS too long");
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{}", e.message);
    match api {
        Api::Soap => assert!(e.message.contains("at most 160"), "{}", e.message),
        Api::Rest => assert_eq!(e.details["violations"][0]["pointer"], "/message"),
    }
    assert_eq!(sim.sms_log().len(), count, "nothing sent");
    assert_eq!(sim.stats().requests, requests, "Jasper was not called");

    let e = expect_err(
        call(rt, &org, inactive, "send_sms", json!({"message": "hi"})).await,
        "SMS to a deactivated SIM",
    );
    let says = match api {
        Api::Soap => "not active",
        Api::Rest => "receive SMS",
    };
    assert_error(&e, ErrorKind::Conflict, says, "SMS to a deactivated SIM");
    assert_eq!(sim.sms_log().len(), count, "nothing sent");
}

/// `set_rate_plan`: a plan of the account is applied; an unknown one is `invalid_input` and
/// changes nothing.
async fn set_rate_plan(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str) {
    let org = org(sim, api);
    let set = |plan: &str| call(rt, &org, iccid, "set_rate_plan", json!({"rate_plan": plan}));
    let current = sim_of(sim, iccid).rate_plan;
    let plan = sim
        .rate_plans()
        .into_iter()
        .map(|p| p.name)
        .find(|p| *p != current && p != "IoT_Test_Free")
        .expect("another plan");
    let out = expect_ok(set(&plan).await, "set_rate_plan");
    assert_eq!(
        out,
        json!({"iccid": iccid, "api": api.as_str(), "rate_plan": plan,
               "effective_date": null, "scheduled": false})
    );
    assert_eq!(sim_of(sim, iccid).rate_plan, plan);

    let e = expect_err(set("No_Such_Plan_9").await, "unknown plan");
    assert_error(
        &e,
        ErrorKind::InvalidInput,
        "unknown rate plan",
        "unknown plan",
    );
    assert_eq!(sim_of(sim, iccid).rate_plan, plan, "nothing changed");
}

/// The org's list of rate plans: the org-scope view shows it (no device, Jasper not called), and
/// `set_rate_plan` refuses a name not in it before calling Jasper, naming the valid ones.
async fn rate_plans_from_settings(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str) {
    let names: Vec<String> = sim.rate_plans().into_iter().map(|p| p.name).collect();
    let mut org = org(sim, api);
    let requests = sim.stats().requests;
    let out = expect_ok(
        call_with(rt, &org, &Value::Null, "rate_plans", json!({}), None).await,
        "rate_plans without a list",
    );
    assert_eq!(out["rate_plans"], json!([]), "{out}");
    assert!(out["note"].is_string(), "{out}");

    org["rate_plans"] = json!(names);
    let out = expect_ok(
        call_with(rt, &org, &Value::Null, "rate_plans", json!({}), None).await,
        "rate_plans",
    );
    assert_eq!(out, json!({"rate_plans": names, "note": null}));
    assert_eq!(sim.stats().requests, requests, "Jasper was not called");

    let before = sim_of(sim, iccid).rate_plan;
    let e = expect_err(
        call(
            rt,
            &org,
            iccid,
            "set_rate_plan",
            json!({"rate_plan": "No_Such_Plan_9"}),
        )
        .await,
        "a plan not in the list",
    );
    assert_error(
        &e,
        ErrorKind::InvalidInput,
        "unknown rate plan",
        "not listed",
    );
    for name in &names {
        assert!(e.message.contains(name.as_str()), "{}", e.message);
    }
    assert_eq!(e.details["code"], "unknown_rate_plan");
    assert_eq!(e.details["known_rate_plans"], json!(names));
    assert_eq!(
        sim.stats().requests,
        requests,
        "refused before calling Jasper"
    );
    assert_eq!(sim_of(sim, iccid).rate_plan, before, "nothing changed");

    // A listed plan goes through.
    let other = names
        .iter()
        .find(|p| **p != before && *p != "IoT_Test_Free")
        .expect("another plan");
    let out = expect_ok(
        call(
            rt,
            &org,
            iccid,
            "set_rate_plan",
            json!({"rate_plan": other}),
        )
        .await,
        "a listed plan",
    );
    assert_eq!(out["rate_plan"], other.as_str());
    assert_eq!(sim_of(sim, iccid).rate_plan, *other);
}

/// An effective date in the past is `invalid_input` saying so (not "date format"), for a status
/// and a rate plan change; nothing changes.
async fn past_effective_dates(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str) {
    let org = org(sim, api);
    let yesterday = days_ahead(-1).to_string();
    let before = sim_of(sim, iccid);
    let e = expect_err(
        call(
            rt,
            &org,
            iccid,
            "set_status",
            json!({"status": "activated", "effective_date": yesterday}),
        )
        .await,
        "activation in the past",
    );
    assert_error(
        &e,
        ErrorKind::InvalidInput,
        "the effective date is in the past",
        "activation in the past",
    );
    assert!(!e.message.contains("format"), "{}", e.message);
    assert_eq!(e.details["code"], "effective_date_in_past");

    let plan = sim
        .rate_plans()
        .into_iter()
        .map(|p| p.name)
        .find(|p| *p != before.rate_plan)
        .expect("another plan");
    let e = expect_err(
        call(
            rt,
            &org,
            iccid,
            "set_rate_plan",
            json!({"rate_plan": plan, "effective_date": yesterday}),
        )
        .await,
        "rate plan change in the past",
    );
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{}", e.message);
    assert!(!e.message.contains("format"), "{}", e.message);
    match api {
        // SOAP's INVALID_EFFECTIVE_DATE does not say why.
        Api::Soap => assert_eq!(e.details["code"], "invalid_effective_date"),
        Api::Rest => {
            assert!(e.message.contains("in the past"), "{}", e.message);
            assert_eq!(e.details["code"], "effective_date_in_past");
        }
    }
    let after = sim_of(sim, iccid);
    assert_eq!(
        (after.status, after.rate_plan, after.pending_changes),
        (before.status, before.rate_plan, before.pending_changes),
        "nothing changed"
    );
}

/// An ICCID in no account is `not_found` for every operation; one of another account is refused.
async fn unknown_and_foreign_iccids(rt: &Runtime, sim: &RunningSim, api: Api) {
    let org = org(sim, api);
    let unknown = unknown_iccid(sim);
    let current = cycle_start(0).to_string();
    for (op, input) in [
        ("overview", json!({})),
        ("usage", json!({"cycle_start_date": current})),
        ("set_status", json!({"status": "activated"})),
        ("send_sms", json!({"message": "hi"})),
        ("set_rate_plan", json!({"rate_plan": "IoT_Pro_1GB"})),
    ] {
        let e = expect_err(call(rt, &org, &unknown, op, input).await, op);
        assert_error(
            &e,
            ErrorKind::NotFound,
            "ICCID not in this Jasper account",
            op,
        );
        assert!(e.message.starts_with("ICCID not in this Jasper account"));
        // A stable code tells it apart from the host's own `not_found` (no such device).
        assert_eq!(
            e.details["code"], "iccid_not_in_account",
            "{op}: {}",
            e.details
        );
    }

    let foreign = &sim.other_account_iccids()[0];
    let e = expect_err(
        call(rt, &org, foreign, "overview", json!({})).await,
        "another account's SIM",
    );
    match api {
        // SOAP says 400201 (access violation), REST answers 404 like any unknown ICCID.
        Api::Soap => {
            assert_error(
                &e,
                ErrorKind::Unauthorized,
                "another account",
                "foreign SOAP",
            );
            assert_eq!(e.details["code"], "access_violation");
        }
        Api::Rest => {
            assert_error(
                &e,
                ErrorKind::NotFound,
                "ICCID not in this Jasper account",
                "foreign REST",
            );
            assert_eq!(e.details["code"], "iccid_not_in_account");
        }
    }
    let before = sim.sms_log().len();
    let e = expect_err(
        call(rt, &org, foreign, "send_sms", json!({"message": "hi"})).await,
        "SMS to another account's SIM",
    );
    assert!(
        matches!(e.kind, ErrorKind::Unauthorized | ErrorKind::NotFound),
        "{}: {}",
        e.kind,
        e.message
    );
    assert_eq!(sim.sms_log().len(), before);
}

/// Wrong secrets are `unauthorized`, and never echoed.
async fn wrong_credentials(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str) {
    let secret_fields: &[&str] = match api {
        Api::Soap => &["password", "license_key"],
        Api::Rest => &["api_key"],
    };
    for field in secret_fields.iter().copied().chain(["username"]) {
        let mut org = org(sim, api);
        let wrong = format!("wrong-{field}-S3cr3t");
        org[field] = json!(wrong);
        let e = expect_err(
            call(rt, &org, iccid, "overview", json!({})).await,
            &format!("wrong {field}"),
        );
        assert_error(&e, ErrorKind::Unauthorized, "credentials rejected", field);
        let text = format!("{} {}", e.message, e.details);
        assert!(!text.contains("S3cr3t"), "secret echoed: {text}");
        assert!(!e.retryable);
        // Writes too.
        let e = expect_err(
            call(
                rt,
                &org,
                iccid,
                "set_status",
                json!({"status": "activated"}),
            )
            .await,
            "write with wrong credentials",
        );
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{}", e.message);
    }
}

/// The host's schema checks: `invalid_input` with the location and JSON pointers, before the
/// plugin runs (the simulator sees nothing).
async fn invalid_input(rt: &Runtime, sim: &RunningSim, api: Api, iccid: &str) {
    let org = org(sim, api);
    let requests = sim.stats().requests;
    let cases: Vec<(&str, Value, Value, Value, &str, &str)> = vec![
        (
            "set_status",
            org.clone(),
            device(iccid),
            json!({"status": "bogus"}),
            "input",
            "/status",
        ),
        (
            "set_status",
            org.clone(),
            device(iccid),
            json!({"status": "deactivated", "effective_date": "2024-02-30"}),
            "input",
            "/effective_date",
        ),
        (
            "set_status",
            org.clone(),
            device(iccid),
            json!({"status": "test_ready"}),
            "input",
            "/status",
        ),
        (
            "usage",
            org.clone(),
            device(iccid),
            json!({"cycle_start_date": "2024-13-01"}),
            "input",
            "/cycle_start_date",
        ),
        (
            "usage",
            org.clone(),
            device(iccid),
            json!({"cycle_start_date": "1 May 2024"}),
            "input",
            "/cycle_start_date",
        ),
        ("usage", org.clone(), device(iccid), json!({}), "input", ""),
        (
            "send_sms",
            org.clone(),
            device(iccid),
            json!({"message": ""}),
            "input",
            "/message",
        ),
        (
            "set_rate_plan",
            org.clone(),
            device(iccid),
            json!({"rate_plan": "IoT_Pro_1GB", "extra": 1}),
            "input",
            "",
        ),
        (
            "overview",
            org.clone(),
            json!({"iccid": "12345"}),
            json!({}),
            "device_config",
            "/iccid",
        ),
        (
            "overview",
            org.clone(),
            json!({"iccid": iccid, "imei": "1"}),
            json!({}),
            "device_config",
            "",
        ),
        (
            "overview",
            {
                let mut o = org.clone();
                o["endpoint"] = json!("not a url");
                o
            },
            device(iccid),
            json!({}),
            "org_config",
            "/endpoint",
        ),
        (
            "overview",
            {
                let mut o = org.clone();
                // One over the schema's maximum.
                o["rate_per_second"] = json!(10_001);
                o
            },
            device(iccid),
            json!({}),
            "org_config",
            "/rate_per_second",
        ),
        (
            "overview",
            {
                let mut o = org.clone();
                let secret = match api {
                    Api::Soap => "license_key",
                    Api::Rest => "api_key",
                };
                o.as_object_mut().expect("object").remove(secret);
                o
            },
            device(iccid),
            json!({}),
            "org_config",
            "",
        ),
    ];
    for (op, org, device, input, location, pointer) in cases {
        let what = format!("{op} {input} {device}");
        let e = expect_err(
            call_with(rt, &org, &device, op, input.clone(), None).await,
            &what,
        );
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{what}: {}", e.message);
        assert_eq!(e.details["location"], location, "{what}: {}", e.details);
        let pointers: Vec<&str> = e.details["violations"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no violations: {}", e.details))
            .iter()
            .filter_map(|v| v["pointer"].as_str())
            .collect();
        assert!(
            pointers.contains(&pointer),
            "{what}: pointer {pointer:?} not in {pointers:?}"
        );
    }
    assert_eq!(sim.stats().requests, requests, "the simulator saw nothing");
}
