//! Per-account limits, retries within the deadline, and single-flight, measured on the fake
//! host's virtual clock.

use std::sync::Arc;

use devext_jasper::Jasper;
use devext_plugin_api::{ErrorKind, PluginError, Value, json};
use tokio::task::JoinHandle;

use crate::support::*;

const EP: &str = "https://api.jasper.example";

fn iccid(i: usize) -> String {
    format!("89882167169700{i:05}")
}

fn spawn(
    plugin: &Arc<Jasper>,
    fake: &FakeHost,
    org: &Value,
    iccid: &str,
    op: &str,
    input: Value,
) -> JoinHandle<Result<Value, PluginError>> {
    let (plugin, fake, org, iccid, op) = (
        Arc::clone(plugin),
        fake.clone(),
        org.clone(),
        iccid.to_owned(),
        op.to_owned(),
    );
    tokio::spawn(async move { invoke(&plugin, &fake, &org, &iccid, &op, input).await })
}

/// The largest number of request starts in any window of 1000 ms (`(t - 1000, t]`).
fn max_per_second(starts: &[i64]) -> usize {
    starts
        .iter()
        .map(|&t| starts.iter().filter(|&&s| s > t - 1000 && s <= t).count())
        .max()
        .unwrap_or(0)
}

fn starts(fake: &FakeHost) -> Vec<i64> {
    fake.seen().iter().map(|s| s.at_ms).collect()
}

#[tokio::test(start_paused = true)]
async fn one_at_a_time_and_five_per_second_by_default() {
    let fake = FakeHost::new(|req, _| {
        let body = if req.url.ends_with("ctdUsages") {
            json!({"ctdDataUsage": 1})
        } else {
            json!({"status": "ACTIVATED"})
        };
        Reply::ok(body.to_string()).delayed(50)
    });
    let plugin = Arc::new(Jasper::default());
    let org = rest_org(EP);
    let t0 = fake.now_ms();
    let tasks: Vec<_> = (0..12)
        .map(|i| spawn(&plugin, &fake, &org, &iccid(i), "overview", json!({})))
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let starts = starts(&fake);
    assert_eq!(starts.len(), 24);
    assert_eq!(fake.peak(), 1, "max_in_flight 1");
    assert_eq!(max_per_second(&starts), 5, "rate_per_second 5");
    // 24 starts at 5 per second need more than 4 seconds: the limiter really waited.
    assert!(starts.last().unwrap() - t0 >= 4000, "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn tuned_limits_are_honoured() {
    let fake = FakeHost::new(|req, _| {
        let iccid = soap_op(req)
            .child(JASPER_NS, "iccids")
            .and_then(|i| i.child_text(JASPER_NS, "iccid"))
            .unwrap()
            .to_owned();
        Reply::ok(terminal_details(&iccid, "ACTIVATED_NAME")).delayed(400)
    });
    let plugin = Arc::new(Jasper::default());
    let mut org = soap_org(EP);
    org["max_in_flight"] = json!(3);
    org["rate_per_second"] = json!(4);
    let tasks: Vec<_> = (0..15)
        .map(|i| spawn(&plugin, &fake, &org, &iccid(i), "overview", json!({})))
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.peak(), 3);
    assert_eq!(max_per_second(&starts(&fake)), 4);
}

#[tokio::test(start_paused = true)]
async fn accounts_do_not_share_limits() {
    let fake = FakeHost::new(|req, _| {
        let iccid = soap_op(req)
            .child(JASPER_NS, "iccids")
            .and_then(|i| i.child_text(JASPER_NS, "iccid"))
            .unwrap()
            .to_owned();
        Reply::ok(terminal_details(&iccid, "ACTIVATED_NAME")).delayed(500)
    });
    let plugin = Arc::new(Jasper::default());
    let a = soap_org(EP);
    let mut b = soap_org(EP);
    b["username"] = json!("bob");
    let tasks = [
        spawn(&plugin, &fake, &a, &iccid(1), "overview", json!({})),
        spawn(&plugin, &fake, &b, &iccid(2), "overview", json!({})),
    ];
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.peak(), 2, "each account has its own turn");
}

#[tokio::test(start_paused = true)]
async fn orgs_on_one_account_share_its_limits_whatever_their_credentials() {
    // The limits are the upstream account's: the host's account key depends on the endpoint
    // and the account fields (api, username), not on the password.
    let fake = FakeHost::new(|req, _| {
        let iccid = soap_op(req)
            .child(JASPER_NS, "iccids")
            .and_then(|i| i.child_text(JASPER_NS, "iccid"))
            .unwrap()
            .to_owned();
        Reply::ok(terminal_details(&iccid, "ACTIVATED_NAME")).delayed(500)
    });
    let plugin = Arc::new(Jasper::default());
    let a = soap_org(EP);
    let mut b = soap_org(EP);
    b["password"] = json!("another-password");
    let tasks = [
        spawn(&plugin, &fake, &a, &iccid(1), "overview", json!({})),
        spawn(&plugin, &fake, &b, &iccid(2), "overview", json!({})),
    ];
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.peak(), 1, "one account, one turn (max_in_flight 1)");
}

#[tokio::test(start_paused = true)]
async fn the_hosts_account_key_decides_which_limits_apply() {
    // The host's account key depends on the endpoint and the account fields (api, username):
    // two users are two accounts' limits, one user is one account's.
    for (users, peak) in [(["alice", "bob"], 2), (["alice", "alice"], 1)] {
        let fake = FakeHost::new(|req, _| {
            let iccid = soap_op(req)
                .child(JASPER_NS, "iccids")
                .and_then(|i| i.child_text(JASPER_NS, "iccid"))
                .unwrap()
                .to_owned();
            Reply::ok(terminal_details(&iccid, "ACTIVATED_NAME")).delayed(500)
        });
        let plugin = Arc::new(Jasper::default());
        let tasks: Vec<_> = users
            .into_iter()
            .enumerate()
            .map(|(i, user)| {
                let mut org = soap_org(EP);
                org["username"] = json!(user);
                spawn(&plugin, &fake, &org, &iccid(i), "overview", json!({}))
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(fake.peak(), peak, "users {users:?}");
    }
}

fn rate_limited_rest() -> Reply {
    Reply::status(
        429,
        r#"{"errorMessage":"Rate limit exceeded","errorCode":"40000029"}"#,
    )
}

#[tokio::test(start_paused = true)]
async fn reads_are_retried_with_backoff() {
    let fake = FakeHost::new(|_, i| match i {
        0 | 1 => rate_limited_rest(),
        _ => Reply::ok(json!({"deviceCycleUsageInZones": {}}).to_string()),
    });
    let out = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "usage",
        json!({"cycle_start_date": "2016-11-10"}),
    )
    .await
    .unwrap();
    assert_eq!(out["total"]["data_bytes"], 0);
    let s = starts(&fake);
    assert_eq!(s.len(), 3);
    assert!(s[1] - s[0] >= 500 && s[2] - s[1] >= 1000, "{s:?}");

    // Ambiguous failures are retried for reads.
    let fake = FakeHost::new(|_, i| match i {
        0 => Reply::host_error(
            PluginError::upstream("connection reset").with_details(json!({"stage": "response"})),
        ),
        1 => Reply::status(504, "<html>Gateway Timeout</html>"),
        2 => Reply::status(500, "<html>oops</html>"),
        _ => Reply::ok(terminal_details(ICCID, "ACTIVATED_NAME")),
    });
    invoke(
        &Jasper::default(),
        &fake,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(fake.requests(), 4);
    // Retry-After is honoured, SOAP included.
    let fake = FakeHost::new(|_, i| match i {
        0 => {
            let mut r = Reply::status(503, "<html>maintenance</html>");
            if let Ok(resp) = &mut r.result {
                resp.headers.push(("retry-after".into(), "3".into()));
            }
            r
        }
        _ => Reply::ok(terminal_details(ICCID, "ACTIVATED_NAME")),
    });
    invoke(
        &Jasper::default(),
        &fake,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap();
    let s = starts(&fake);
    assert!(s[1] - s[0] >= 3000, "{s:?}");
    // A truncated answer to a read is retried.
    let fake = FakeHost::new(|_, i| match i {
        0 => Reply::ok(&terminal_details(ICCID, "ACTIVATED_NAME")[..200]),
        _ => Reply::ok(terminal_details(ICCID, "ACTIVATED_NAME")),
    });
    invoke(
        &Jasper::default(),
        &fake,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(fake.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn persistent_rate_limits_give_up_after_three_retries() {
    let fake = FakeHost::new(|_, _| soap_fault("400101", ""));
    let e = invoke(
        &Jasper::default(),
        &fake,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.retryable);
    assert!(
        e.message.starts_with("rate limit, retried 3 times"),
        "{}",
        e.message
    );
    assert_eq!(e.details["attempts"], 4);
    assert!(
        !e.message.contains("rate limit: rate limit"),
        "{}",
        e.message
    );
    assert_eq!(fake.requests(), 4);

    let fake = FakeHost::new(|_, _| Reply::status(503, ""));
    let e = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("retried 3 times"), "{}", e.message);
}

#[tokio::test(start_paused = true)]
async fn writes_are_retried_only_when_not_processed() {
    let sms = json!({"message": "wake up"});
    let ok_rest = || Reply::ok(json!({"smsMessageId": 1}).to_string());
    // Not processed: rate limits (REST and SOAP), 429, 503, connection refused.
    let not_processed: Vec<Box<dyn Fn() -> Reply + Send + Sync>> = vec![
        Box::new(rate_limited_rest),
        Box::new(|| Reply::status(400, r#"{"errorMessage":"x","errorCode":"40000029"}"#)),
        Box::new(|| Reply::status(429, "")),
        Box::new(|| Reply::status(503, "")),
        Box::new(|| {
            Reply::host_error(
                PluginError::upstream("connection refused")
                    .with_details(json!({"stage": "connect"})),
            )
        }),
    ];
    for first in not_processed {
        let first = Arc::new(first);
        let fake = FakeHost::new(move |_, i| if i == 0 { first() } else { ok_rest() });
        let out = invoke(
            &Jasper::default(),
            &fake,
            &rest_org(EP),
            ICCID,
            "send_sms",
            sms.clone(),
        )
        .await
        .unwrap();
        assert_eq!(out["message_id"], "1");
        assert_eq!(fake.requests(), 2);
    }
    let fake = FakeHost::new(|_, i| {
        if i == 0 {
            soap_fault("400101", "")
        } else {
            Reply::ok(soap_response("EditTerminal", ""))
        }
    });
    invoke(
        &Jasper::default(),
        &fake,
        &soap_org(EP),
        ICCID,
        "set_status",
        json!({"status": "activated"}),
    )
    .await
    .unwrap();
    assert_eq!(fake.requests(), 2);

    // Ambiguous: never retried, and the user is told the change may have happened.
    let ambiguous: Vec<Box<dyn Fn() -> Reply + Send + Sync>> = vec![
        Box::new(|| Reply::status(500, "")),
        Box::new(|| Reply::status(504, "")),
        Box::new(|| Reply::status(502, "")),
        Box::new(|| Reply::status(500, r#"{"errorMessage":"x","errorCode":"30000001"}"#)),
        Box::new(|| {
            Reply::host_error(
                PluginError::upstream("connection reset")
                    .with_details(json!({"stage": "response"})),
            )
        }),
    ];
    for first in ambiguous {
        let first = Arc::new(first);
        let fake = FakeHost::new(move |_, i| if i == 0 { first() } else { ok_rest() });
        let e = invoke(
            &Jasper::default(),
            &fake,
            &rest_org(EP),
            ICCID,
            "send_sms",
            sms.clone(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
        assert!(
            e.message.contains("may still have been processed"),
            "{}",
            e.message
        );
        assert!(!e.retryable);
        assert_eq!(fake.requests(), 1);
    }
    // A truncated answer to a write: it may have been processed, so it is not retried.
    let fake = FakeHost::new(|_, _| Reply::ok(r#"{"smsMessageId": 12"#));
    let e = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "send_sms",
        sms.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(
        e.message.contains("may still have been processed"),
        "{}",
        e.message
    );
    assert_eq!(fake.requests(), 1);
    // Same over SOAP: a connection dropped after sending is never retried for a write.
    let fake = FakeHost::new(|_, i| {
        if i == 0 {
            Reply::host_error(
                PluginError::upstream("connection closed before message completed")
                    .with_details(json!({"stage": "response"})),
            )
        } else {
            Reply::ok(soap_response("SendSMS", "<ns2:smsMsgId>1</ns2:smsMsgId>"))
        }
    });
    let e = invoke(
        &Jasper::default(),
        &fake,
        &soap_org(EP),
        ICCID,
        "send_sms",
        sms.clone(),
    )
    .await
    .unwrap_err();
    assert!(
        e.message.contains("may still have been processed"),
        "{}",
        e.message
    );
    assert_eq!(fake.requests(), 1);
    let fake = FakeHost::new(|_, _| {
        Reply::host_error(PluginError::new(ErrorKind::Timeout, "deadline passed"))
    });
    let e = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(fake.requests(), 1);
    let fake = FakeHost::new(|_, _| {
        Reply::host_error(PluginError::new(ErrorKind::Forbidden, "egress refused"))
    });
    let e = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(fake.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_before_the_deadline() {
    let fake = FakeHost::new(|_, _| rate_limited_rest());
    let t0 = fake.now_ms();
    let deadline = t0 + 2500;
    let e = invoke_with_deadline(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "overview",
        json!({}),
        2500,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    let s = starts(&fake);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(
        e.message.starts_with("rate limit, retried once"),
        "{}",
        e.message
    );
    for start in &s {
        assert!(start + 1000 <= deadline);
    }
    assert!(fake.now_ms() <= deadline, "finished before the deadline");
    for req in fake.seen() {
        assert!(
            req.req
                .timeout_ms
                .is_some_and(|t| req.at_ms + t as i64 <= deadline)
        );
    }

    // No time at all: a timeout without any request.
    let e = invoke_with_deadline(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "overview",
        json!({}),
        500,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(fake.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_turn_is_bounded_by_the_deadline() {
    let fake = FakeHost::new(|_, _| {
        Reply::ok(terminal_details(&iccid(1), "ACTIVATED_NAME")).delayed(5000)
    });
    let plugin = Arc::new(Jasper::default());
    let org = soap_org(EP);
    let slow = spawn(&plugin, &fake, &org, &iccid(1), "overview", json!({}));
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let (plugin2, fake2, org2) = (Arc::clone(&plugin), fake.clone(), org.clone());
    let waiting = tokio::spawn(async move {
        invoke_with_deadline(
            &plugin2,
            &fake2,
            &org2,
            &iccid(2),
            "overview",
            json!({}),
            2000,
        )
        .await
    });
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.message.contains("at most 1 at a time"), "{}", e.message);
    slow.await.unwrap().unwrap();
    assert_eq!(fake.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn identical_concurrent_reads_share_one_call() {
    let fake =
        FakeHost::new(|_, _| Reply::ok(terminal_details(ICCID, "ACTIVATED_NAME")).delayed(300));
    let plugin = Arc::new(Jasper::default());
    let org = soap_org(EP);
    let tasks: Vec<_> = (0..5)
        .map(|_| spawn(&plugin, &fake, &org, ICCID, "overview", json!({})))
        .collect();
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await.unwrap().unwrap());
    }
    assert_eq!(fake.requests(), 1);
    assert!(outs.windows(2).all(|w| w[0] == w[1]));

    // Errors are shared as well.
    let missing = FakeHost::new(|_, _| soap_fault("100100", "").delayed(300));
    let tasks: Vec<_> = (0..3)
        .map(|_| spawn(&plugin, &missing, &org, ICCID, "overview", json!({})))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().kind, ErrorKind::NotFound);
    }
    assert_eq!(missing.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn single_flight_never_crosses_accounts_iccids_inputs_or_writes() {
    let fake = FakeHost::new(|req, _| {
        let body = req.body.as_deref().unwrap_or("");
        let reply = if body.contains("EditTerminalRequest") {
            soap_response("EditTerminal", "")
        } else if body.contains("GetTerminalUsageRequest") {
            soap_response(
                "GetTerminalUsage",
                "<ns2:totalDataVolume>1</ns2:totalDataVolume>",
            )
        } else {
            let iccid = soap_op(req)
                .child(JASPER_NS, "iccids")
                .and_then(|i| i.child_text(JASPER_NS, "iccid"))
                .unwrap()
                .to_owned();
            terminal_details(&iccid, "ACTIVATED_NAME")
        };
        Reply::ok(reply).delayed(300)
    });
    let plugin = Arc::new(Jasper::default());
    let a = soap_org(EP);
    let mut other_password = soap_org(EP);
    other_password["password"] = json!("another-password");
    let mut other_user = soap_org(EP);
    other_user["username"] = json!("bob");
    let mut other_endpoint = soap_org("https://other.jasper.example");
    other_endpoint["license_key"] = json!("LIC-KEY-1");
    let tasks = vec![
        spawn(&plugin, &fake, &a, ICCID, "overview", json!({})),
        spawn(
            &plugin,
            &fake,
            &other_password,
            ICCID,
            "overview",
            json!({}),
        ),
        spawn(&plugin, &fake, &other_user, ICCID, "overview", json!({})),
        spawn(
            &plugin,
            &fake,
            &other_endpoint,
            ICCID,
            "overview",
            json!({}),
        ),
        spawn(&plugin, &fake, &a, &iccid(7), "overview", json!({})),
        spawn(
            &plugin,
            &fake,
            &a,
            ICCID,
            "usage",
            json!({"cycle_start_date": "2016-08-01"}),
        ),
        spawn(
            &plugin,
            &fake,
            &a,
            ICCID,
            "usage",
            json!({"cycle_start_date": "2016-08-01"}),
        ),
        spawn(
            &plugin,
            &fake,
            &a,
            ICCID,
            "usage",
            json!({"cycle_start_date": "2016-09-01"}),
        ),
        spawn(
            &plugin,
            &fake,
            &a,
            ICCID,
            "set_status",
            json!({"status": "activated"}),
        ),
        spawn(
            &plugin,
            &fake,
            &a,
            ICCID,
            "set_status",
            json!({"status": "activated"}),
        ),
    ];
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // 4 accounts' overviews + another ICCID + 2 distinct usage cycles + 2 writes.
    assert_eq!(fake.requests(), 9);
}

#[tokio::test(start_paused = true)]
async fn a_follower_outlives_a_leader_that_timed_out() {
    // The fake Jasper is slow: a request that may take less than 5 s times out (as the host
    // would report it when the call's deadline comes first).
    let fake = FakeHost::new(|req, _| {
        let budget = req.timeout_ms.unwrap_or(0);
        if budget < 5000 {
            Reply::host_error(PluginError::new(ErrorKind::Timeout, "deadline passed"))
                .delayed(budget)
        } else {
            Reply::ok(terminal_details(ICCID, "ACTIVATED_NAME")).delayed(300)
        }
    });
    let plugin = Arc::new(Jasper::default());
    let org = soap_org(EP);
    let (p, f, o) = (Arc::clone(&plugin), fake.clone(), org.clone());
    let leader = tokio::spawn(async move {
        invoke_with_deadline(&p, &f, &o, ICCID, "overview", json!({}), 3000).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let follower = spawn(&plugin, &fake, &org, ICCID, "overview", json!({}));
    assert_eq!(leader.await.unwrap().unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(follower.await.unwrap().unwrap()["status"], "activated");
    assert_eq!(fake.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_refusal_pauses_every_caller_of_the_account() {
    // The first request is refused for the account's rate, with Retry-After: 2; the others
    // (other SIMs, other calls) must not start before the pause is over.
    let fake = FakeHost::new(|req, i| {
        if i == 0 {
            let mut r = soap_fault("400101", "");
            if let Ok(resp) = &mut r.result {
                resp.headers.push(("retry-after".into(), "2".into()));
            }
            return r;
        }
        let iccid = soap_op(req)
            .child(JASPER_NS, "iccids")
            .and_then(|i| i.child_text(JASPER_NS, "iccid"))
            .unwrap()
            .to_owned();
        Reply::ok(terminal_details(&iccid, "ACTIVATED_NAME"))
    });
    let plugin = Arc::new(Jasper::default());
    let mut org = soap_org(EP);
    org["max_in_flight"] = json!(5);
    let first = spawn(&plugin, &fake, &org, &iccid(0), "overview", json!({}));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let others: Vec<_> = (1..4)
        .map(|i| spawn(&plugin, &fake, &org, &iccid(i), "overview", json!({})))
        .collect();
    first.await.unwrap().unwrap();
    for t in others {
        t.await.unwrap().unwrap();
    }
    let s = starts(&fake);
    assert!(s[1..].iter().all(|&t| t - s[0] >= 2000), "{s:?}");
}
