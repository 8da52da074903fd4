//! The 1NCE plugin's contract against its simulator, a real HTTP server on loopback, through
//! the real host runtime: every operation, the token's lifecycle and every fault the simulator
//! injects. The simulator shares no code with the plugin.

use std::time::Duration;

use devext_onence as _;
use devext_onence_sim::{Fault, FaultKind, RunningSim, SimConfig};
use devext_plugin_test::{ErrorKind, Harness, Value, expect_error, json, run};

async fn sim(config: SimConfig) -> RunningSim {
    devext_onence_sim::start(config)
        .await
        .expect("the simulator starts")
}

/// The org's settings point at `sim` (each simulator's port is its own account for the
/// plugin's token cache).
fn harness(sim: &RunningSim) -> Harness {
    let (user, password) = sim.credentials();
    Harness::builder("onence")
        .loopback()
        .call_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .with_org(json!({"endpoint": sim.endpoint(), "username": user, "password": password}))
}

fn dev(iccid: &str) -> Value {
    json!({"iccid": iccid})
}

fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    devext_onence::dates::format_day(days as i64)
}

#[test]
fn every_operation_against_the_simulator() {
    run(async {
        let sim = sim(SimConfig::default()).await;
        let h = harness(&sim);
        let iccid = sim.iccids()[0].clone();
        let state = sim.sim(&iccid).unwrap();

        let out = h.call("overview", dev(&iccid), json!({})).await.unwrap();
        assert_eq!(out["iccid"], iccid);
        assert_eq!(out["status"], state.status);
        assert_eq!(out["msisdn"], state.msisdn);
        assert_eq!(out["connectivity"], state.connectivity);
        assert_eq!(out["data_quota"]["expiry_date"], "2029-01-01T00:00:00Z");
        // The 20-digit form the simulator reports addresses the same SIM.
        let luhn = out["iccid_with_luhn"].as_str().unwrap().to_owned();
        let again = h.call("overview", dev(&luhn), json!({})).await.unwrap();
        assert_eq!(again["iccid"], iccid);

        // Disabling and enabling keeps the label and the IMEI lock (the simulator resets what a
        // PUT omits).
        let other = if state.status == "Enabled" {
            "Disabled"
        } else {
            "Enabled"
        };
        let out = h
            .call("set_status", dev(&iccid), json!({"status": other}))
            .await
            .unwrap();
        assert_eq!(out["changed"], true);
        let after = sim.sim(&iccid).unwrap();
        assert_eq!(after.status, other);
        assert_eq!(after.label, state.label);
        assert_eq!(after.imei_lock, state.imei_lock);

        let start = devext_onence::dates::format_day(
            devext_onence::dates::parse_day(&today()).unwrap() - 6,
        );
        let out = h
            .call(
                "usage",
                dev(&iccid),
                json!({"start_date": start, "end_date": today()}),
            )
            .await
            .unwrap();
        let days = out["days"].as_array().unwrap();
        assert_eq!(days.len(), 7, "the TOTAL row is not a day");
        let sum: u64 = days.iter().map(|d| d["data_bytes"].as_u64().unwrap()).sum();
        assert_eq!(out["data_bytes"], sum);
        assert!(
            days.windows(2)
                .all(|w| w[0]["date"].as_str() < w[1]["date"].as_str())
        );

        let out = h
            .call("usage_history", dev(&iccid), json!({"months": 2}))
            .await
            .unwrap();
        assert_eq!(out["cycles"].as_array().unwrap().len(), 2);

        h.call("send_sms", dev(&iccid), json!({"text": "hello device"}))
            .await
            .unwrap();
        let log = sim.sms_log();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].iccid.as_str(), log[0].payload.as_str()),
            (iccid.as_str(), "hello device")
        );

        let out = h.call("top_up", dev(&iccid), json!({})).await.unwrap();
        assert!(out["order_number"].as_str().is_some(), "{out}");
        assert_eq!(sim.sim(&iccid).unwrap().top_ups, 1);

        h.call("reset_connectivity", dev(&iccid), json!({}))
            .await
            .unwrap();
        assert_eq!(sim.sim(&iccid).unwrap().resets, 1);

        let out = h.call_org("test_connection", json!({})).await.unwrap();
        assert_eq!(out["sims"], 20);

        let e = expect_error(
            h.call("overview", dev(&sim.foreign_iccid()), json!({}))
                .await,
            ErrorKind::NotFound,
        );
        assert_eq!(e.details["code"], "sim_not_in_account");
        let e = expect_error(
            h.call("overview", dev("8988303000999999999"), json!({}))
                .await,
            ErrorKind::NotFound,
        );
        assert_eq!(e.details["code"], "sim_not_found");
        // One token for all of it.
        assert_eq!(
            sim.stats().tokens_issued,
            2,
            "one cached, one for test_connection"
        );
    });
}

#[test]
fn an_expired_token_is_replaced_and_short_lived_ones_are_refreshed_before_expiry() {
    run(async {
        let sim = sim(SimConfig {
            seed: 2,
            token_lifetime_secs: 2,
            ..SimConfig::default()
        })
        .await;
        let h = harness(&sim);
        let iccid = sim.iccids()[0].clone();
        h.call("set_status", dev(&iccid), json!({"status": "Enabled"}))
            .await
            .unwrap();
        // The simulator drops the token (as if it had expired): one 401, one new token.
        sim.inject(Fault::new(
            FaultKind::ExpiredToken,
            "GET /management-api/v1/sims/",
            1,
        ));
        h.call("set_status", dev(&iccid), json!({"status": "Enabled"}))
            .await
            .unwrap();
        assert_eq!(sim.stats().tokens_issued, 2);
        // A 2 s token is refreshed after half its life, before the upstream refuses it.
        tokio_sleep(Duration::from_millis(1200)).await;
        let before = sim.stats().unauthorized;
        h.call("set_status", dev(&iccid), json!({"status": "Enabled"}))
            .await
            .unwrap();
        assert_eq!(sim.stats().tokens_issued, 3);
        assert_eq!(
            sim.stats().unauthorized,
            before,
            "no request with an expired token"
        );
    });
}

async fn tokio_sleep(d: Duration) {
    devext_plugin_test::tokio::time::sleep(d).await;
}

#[test]
fn rate_limits_and_server_errors_on_reads_are_retried() {
    run(async {
        let sim = sim(SimConfig {
            seed: 3,
            ..SimConfig::default()
        })
        .await;
        let h = harness(&sim);
        let iccid = sim.iccids()[1].clone();
        sim.inject(Fault::new(
            FaultKind::RateLimited {
                retry_after_secs: Some(1),
            },
            "/status",
            1,
        ));
        sim.inject(Fault::new(FaultKind::ServerError, "/quota/data", 2));
        let started = std::time::Instant::now();
        let out = h.call("overview", dev(&iccid), json!({})).await.unwrap();
        assert_ne!(out["connectivity"], "UNKNOWN");
        assert!(out["data_quota"]["expiry_date"].is_string(), "{out}");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After was honoured"
        );
    });
}

#[test]
fn a_write_whose_answer_was_lost_is_not_applied_twice() {
    run(async {
        let sim = sim(SimConfig {
            seed: 4,
            ..SimConfig::default()
        })
        .await;
        let h = harness(&sim);
        let iccid = sim.iccids()[2].clone();
        sim.inject(Fault::new(
            FaultKind::ServerErrorAfterApplying,
            "POST /management-api/v1/sims/",
            1,
        ));
        let e = expect_error(
            h.call("send_sms", dev(&iccid), json!({"text": "once"}))
                .await,
            ErrorKind::Upstream,
        );
        assert!(!e.retryable);
        assert_eq!(sim.sms_log().len(), 1, "applied once, not repeated");
        // Refused for the rate: not processed, so repeated.
        sim.inject(Fault::new(
            FaultKind::RateLimited {
                retry_after_secs: None,
            },
            "/topup",
            1,
        ));
        h.call("top_up", dev(&iccid), json!({})).await.unwrap();
        assert_eq!(sim.sim(&iccid).unwrap().top_ups, 1);
    });
}

#[test]
fn slow_answers_time_out_and_malformed_ones_are_named() {
    run(async {
        let sim = sim(SimConfig {
            seed: 5,
            ..SimConfig::default()
        })
        .await;
        let (user, password) = sim.credentials();
        let h = Harness::builder("onence")
            .loopback()
            .call_timeout(Duration::from_millis(1500))
            .build()
            .unwrap()
            .with_org(json!({"endpoint": sim.endpoint(), "username": user, "password": password}));
        let iccid = sim.iccids()[3].clone();
        sim.inject(Fault::new(
            FaultKind::Slow { ms: 5000 },
            "GET /management-api/v1/sims/",
            10,
        ));
        let e = expect_error(
            h.call("set_status", dev(&iccid), json!({"status": "Enabled"}))
                .await,
            ErrorKind::Timeout,
        );
        assert!(e.message.contains("did not"), "{}", e.message);
    });
    run(async {
        let sim = sim(SimConfig {
            seed: 6,
            ..SimConfig::default()
        })
        .await;
        let h = harness(&sim);
        let iccid = sim.iccids()[0].clone();
        sim.inject(Fault::new(FaultKind::Malformed, "/usage", 5));
        let e = expect_error(
            h.call("usage_history", dev(&iccid), json!({})).await,
            ErrorKind::Upstream,
        );
        assert_eq!(e.details["code"], "malformed_response");
    });
}

#[test]
fn wrong_credentials_are_bad_credentials() {
    run(async {
        let sim = sim(SimConfig {
            seed: 7,
            ..SimConfig::default()
        })
        .await;
        let h = Harness::builder("onence")
            .loopback()
            .build()
            .unwrap()
            .with_org(json!({"endpoint": sim.endpoint(), "username": "12345_demo", "password": "wrong-password"}));
        let e = expect_error(
            h.call_org("test_connection", json!({})).await,
            ErrorKind::Unauthorized,
        );
        assert_eq!(e.details["code"], "bad_credentials");
        assert_eq!(sim.stats().tokens_refused, 1);
    });
}
