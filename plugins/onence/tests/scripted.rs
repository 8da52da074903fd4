//! The 1NCE plugin against a scripted upstream, through the real host runtime (the plugin test
//! kit), on virtual time: the exact requests, the mapping of every answer, tolerant parsing,
//! the token's lifecycle, retries and errors.

use std::time::Duration;

use devext_onence as _;
use devext_plugin_test::Value;
use devext_plugin_test::{
    ErrorKind, Expect, Harness, Reply, START_UNIX_MS, Upstream, assert_json_eq, expect_error, json,
    run_paused,
};

const ICCID: &str = "8988303000123456789";
/// With its check digit.
const ICCID20: &str = "89883030001234567894";
const BASE: &str = "/management-api";

fn org(user: &str) -> Value {
    json!({
        "endpoint": format!("{}{BASE}", Upstream::ENDPOINT),
        "username": user,
        "password": "p4ssw0rd-secret"
    })
}

fn basic(user: &str) -> String {
    // base64 of "user:p4ssw0rd-secret", computed independently of the plugin's encoder.
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:p4ssw0rd-secret").into_bytes();
    let mut bits = String::new();
    for b in &input {
        bits.push_str(&format!("{b:08b}"));
    }
    while !bits.len().is_multiple_of(6) {
        bits.push('0');
    }
    let mut out: String = bits
        .as_bytes()
        .chunks(6)
        .map(|c| table[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()] as char)
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    format!("Basic {out}")
}

fn token_request(user: &str) -> Expect {
    Expect::post(&format!("{BASE}/oauth/token"))
        .header("authorization", &basic(user))
        .header("content-type", "application/json")
        .json(json!({"grant_type": "client_credentials"}))
}

fn token_reply(token: &str) -> Reply {
    Reply::json(
        200,
        json!({"status_code": 200, "access_token": token, "token_type": "bearer",
               "expires_in": 3600, "userId": "u", "scope": "all"}),
    )
}

fn sim_object() -> Value {
    json!({
        "iccid": ICCID, "iccid_with_luhn": ICCID20,
        "imsi": "901405100000018", "imsi_2": "", "current_imsi": "901405100000019",
        "msisdn": "882285100000018", "imei": "0000000000000018", "imei_lock": true,
        "status": "Enabled", "activation_date": "2018-03-09T07:59:09.000+0000",
        "ip_address": "100.100.100.18", "current_quota": 500,
        "quota_status": {"id": 0, "description": "More than 20% available"},
        "current_quota_SMS": "250",
        "quota_status_SMS": {"id": 1, "description": "Less than 20% available"},
        "label": "DX-137-B12"
    })
}

fn harness(up: &Upstream, user: &str) -> Harness {
    Harness::builder("onence")
        .upstream(up)
        .build()
        .unwrap()
        .with_org(org(user))
}

fn device() -> Value {
    json!({"iccid": ICCID})
}

/// An upstream answering by `METHOD path` (query included), 404 for anything else.
fn routes(table: Vec<(String, Reply)>) -> Upstream {
    Upstream::handler(move |req, _| {
        let path = req.url.split_once(BASE).map_or("", |(_, p)| p);
        let line = format!("{} {path}", req.method);
        table
            .iter()
            .find(|(l, _)| *l == line)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| Reply::status(404, format!("no route {line}")))
    })
}

fn sim_routes() -> Vec<(String, Reply)> {
    vec![
        ("POST /oauth/token".into(), token_reply("tok-A")),
        (
            format!("GET /v1/sims/{ICCID}"),
            Reply::json(200, sim_object()),
        ),
        (
            format!("GET /v1/sims/{ICCID}/status"),
            Reply::json(
                200,
                json!({"status": "ATTACHED", "location": {"last_updated": "2023-08-06 09:59:05"}, "pdp_context": null}),
            ),
        ),
        (
            format!("GET /v1/sims/{ICCID}/quota/data"),
            Reply::json(
                200,
                json!({"volume": 435.787951, "total_volume": 500, "expiry_date": "2029-01-01 00:00:00", "threshold_percentage": 20}),
            ),
        ),
        (
            format!("GET /v1/sims/{ICCID}/quota/sms"),
            Reply::json(
                200,
                json!({"volume": "30", "total_volume": "250", "expiry_date": "2029-01-01T00:00:00.000Z", "threshold_percentage": "20"}),
            ),
        ),
    ]
}

#[test]
fn the_manifest_loads_with_its_hints_and_connection_check() {
    let h = Harness::new("onence");
    assert_eq!(h.hint_warnings(), Vec::<String>::new());
    let m = h.manifest();
    assert_eq!(m.connection_check.as_deref(), Some("test_connection"));
    let destructive: Vec<&str> = m
        .operations
        .iter()
        .filter(|o| o.destructive)
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(destructive, ["top_up"]);
    // Both ICCID forms are valid device configurations; others are not.
    assert!(h.check_device(json!({"iccid": ICCID})).is_empty());
    assert!(h.check_device(json!({"iccid": ICCID20})).is_empty());
    let v = h.check_device(json!({"iccid": "12345"}));
    assert_eq!(v[0].pointer, "/onence/iccid");
    assert_eq!(
        h.check_org(&json!({"endpoint": "https://x.test"})).len(),
        2,
        "username and password are required"
    );
}

#[test]
fn the_overview_maps_the_sim_its_connectivity_and_quotas() {
    run_paused(async {
        let up = routes(sim_routes());
        let mut out = harness(&up, "overview")
            .call("overview", device(), json!({}))
            .await
            .unwrap();
        // The host stamps a view it may cache with its clock's time.
        assert_eq!(out["as_of"], "2023-11-14T22:13:20.000Z");
        out.as_object_mut().unwrap().remove("as_of");
        assert_json_eq(
            &out,
            &json!({
                "iccid": ICCID, "iccid_with_luhn": ICCID20, "status": "Enabled",
                "label": "DX-137-B12", "imsi": "901405100000019", "msisdn": "882285100000018",
                "imei": "0000000000000018", "imei_lock": true, "ip_address": "100.100.100.18",
                "activation_date": "2018-03-09T07:59:09Z",
                "connectivity": "ATTACHED", "last_seen": "2023-08-06T09:59:05Z",
                "data_quota": {
                    "remaining": 435_787_951.0, "total": 500_000_000.0,
                    "expiry_date": "2029-01-01T00:00:00Z", "threshold": "ok",
                    "threshold_percentage": 20.0
                },
                "sms_quota": {
                    "remaining": 30.0, "total": 250.0, "expiry_date": "2029-01-01T00:00:00Z",
                    "threshold": "low", "threshold_percentage": 20.0
                }
            }),
        );
        let seen = up.requests();
        assert_eq!(seen.len(), 5, "one token and four reads");
        assert_eq!(seen[0].path(), format!("{BASE}/oauth/token"));
        for s in &seen[1..] {
            assert_eq!(s.header("authorization"), Some("Bearer tok-A"));
        }
    });
}

#[test]
fn a_missing_quota_or_status_leaves_that_part_unknown() {
    run_paused(async {
        let mut table = sim_routes();
        table.retain(|(l, _)| !l.contains("quota") && !l.ends_with("/status"));
        let up = routes(table);
        let out = harness(&up, "partial")
            .call("overview", device(), json!({}))
            .await
            .unwrap();
        assert_eq!(out["connectivity"], "UNKNOWN");
        // From the SIM object's own fields.
        assert_eq!(out["data_quota"]["remaining"], 500_000_000.0);
        assert_eq!(out["sms_quota"]["threshold"], "low");
        assert_eq!(out["data_quota"]["expiry_date"], Value::Null);
    });
}

#[test]
fn a_twenty_digit_iccid_addresses_the_nineteen_digit_one_and_a_wrong_check_digit_is_refused() {
    run_paused(async {
        let up = routes(sim_routes());
        let h = harness(&up, "iccid20");
        let out = h
            .call("overview", json!({"iccid": ICCID20}), json!({}))
            .await
            .unwrap();
        assert_eq!(out["iccid"], ICCID);
        let before = up.requests().len();
        let e = expect_error(
            h.call(
                "overview",
                json!({"iccid": "89883030001234567890"}),
                json!({}),
            )
            .await,
            ErrorKind::InvalidInput,
        );
        assert_eq!(e.details["code"], "iccid_check_digit");
        assert!(e.message.contains("expected 4"), "{}", e.message);
        assert_eq!(up.requests().len(), before, "nothing sent");
    });
}

#[test]
fn set_status_sends_the_whole_state_and_skips_a_change_already_made() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(token_request("status"), token_reply("tok-S"))
            .expect(
                Expect::get(&format!("{BASE}/v1/sims/{ICCID}")).header("authorization", "Bearer tok-S"),
                Reply::json(200, sim_object()),
            )
            .expect(
                Expect::put(&format!("{BASE}/v1/sims/{ICCID}"))
                    .header("authorization", "Bearer tok-S")
                    .header("content-type", "application/json")
                    .json(json!({"iccid": ICCID, "status": "Disabled", "label": "DX-137-B12", "imei_lock": true})),
                Reply::status(200, ""),
            )
            .expect(
                Expect::get(&format!("{BASE}/v1/sims/{ICCID}")),
                Reply::json(200, json!({"iccid": ICCID, "status": "Disabled"})),
            );
        let h = harness(&up, "status");
        let out = h
            .call("set_status", device(), json!({"status": "Disabled"}))
            .await
            .unwrap();
        assert_json_eq(
            &out,
            &json!({"iccid": ICCID, "status": "Disabled", "previous_status": "Enabled", "changed": true}),
        );
        let again = h
            .call("set_status", device(), json!({"status": "Disabled"}))
            .await
            .unwrap();
        assert_eq!(again["changed"], false);
        up.verify();
    });
}

#[test]
fn send_sms_posts_the_text_with_the_sender_and_returns_no_id() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(token_request("sms"), token_reply("tok-M"))
            .expect(
                Expect::post(&format!("{BASE}/v1/sims/{ICCID}/sms"))
                    .json(json!({"source_address": "devext", "payload": "reboot"})),
                Reply::status(201, ""),
            );
        let out = harness(&up, "sms")
            .call("send_sms", device(), json!({"text": "reboot"}))
            .await
            .unwrap();
        assert_eq!(out["accepted"], true);
        assert_eq!(out["submitted_at"], "2023-11-14T22:13:20Z");
        up.verify();
    });
}

#[test]
fn a_send_that_may_have_been_processed_is_not_repeated() {
    run_paused(async {
        let up = Upstream::handler(|req, _| {
            if req.url.ends_with("/oauth/token") {
                token_reply("tok-5")
            } else {
                Reply::status(500, "{\"message\":\"boom\"}")
            }
        });
        let e = expect_error(
            harness(&up, "sms500")
                .call("send_sms", device(), json!({"text": "x"}))
                .await,
            ErrorKind::Upstream,
        );
        assert_eq!(e.details["code"], "upstream_error");
        assert!(!e.retryable, "the caller must check before repeating it");
        let sends = up
            .requests()
            .iter()
            .filter(|s| s.path().ends_with("/sms"))
            .count();
        assert_eq!(sends, 1);
    });
}

#[test]
fn a_send_that_never_left_is_repeated() {
    run_paused(async {
        let up = Upstream::handler(|req, n| {
            if req.url.ends_with("/oauth/token") {
                token_reply("tok-c")
            } else if n == 1 {
                Reply::connect_error()
            } else {
                Reply::status(201, "")
            }
        });
        harness(&up, "smsconnect")
            .call("send_sms", device(), json!({"text": "x"}))
            .await
            .unwrap();
        let sends = up
            .requests()
            .iter()
            .filter(|s| s.path().ends_with("/sms"))
            .count();
        assert_eq!(sends, 2);
    });
}

#[test]
fn a_refused_token_is_replaced_once() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(token_request("expired"), token_reply("old"))
            .expect(
                Expect::post(&format!("{BASE}/v1/sims/{ICCID}/reset"))
                    .header("authorization", "Bearer old"),
                Reply::status(401, ""),
            )
            .expect(token_request("expired"), token_reply("new"))
            .expect(
                Expect::post(&format!("{BASE}/v1/sims/{ICCID}/reset"))
                    .header("authorization", "Bearer new"),
                Reply::status(201, ""),
            );
        let out = harness(&up, "expired")
            .call("reset_connectivity", device(), json!({}))
            .await
            .unwrap();
        assert_eq!(out["requested"], true);
        up.verify();
    });
}

#[test]
fn the_token_is_reused_then_refreshed_five_minutes_before_it_expires() {
    run_paused(async {
        let up = routes(sim_routes());
        let h = harness(&up, "lifecycle");
        let tokens = |up: &Upstream| {
            up.requests()
                .iter()
                .filter(|s| s.path().ends_with("/oauth/token"))
                .count()
        };
        h.call("set_status", device(), json!({"status": "Enabled"}))
            .await
            .unwrap();
        devext_plugin_test::tokio::time::advance(Duration::from_secs(3200)).await;
        h.call("set_status", device(), json!({"status": "Enabled"}))
            .await
            .unwrap();
        assert_eq!(tokens(&up), 1);
        devext_plugin_test::tokio::time::advance(Duration::from_secs(200)).await;
        h.call("set_status", device(), json!({"status": "Enabled"}))
            .await
            .unwrap();
        assert_eq!(tokens(&up), 2, "refreshed at 3400 s of 3600");
    });
}

#[test]
fn a_429_pauses_the_account_and_the_read_is_retried_after_retry_after() {
    run_paused(async {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let up2 = Upstream::handler(move |req, _| {
            if req.url.ends_with("/oauth/token") {
                return token_reply("tok-r");
            }
            if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Reply::status(429, "").header("retry-after", "2")
            } else {
                Reply::json(200, sim_object())
            }
        });
        let h = harness(&up2, "limited");
        let out = h
            .call("set_status", device(), json!({"status": "Enabled"}))
            .await
            .unwrap();
        assert_eq!(out["changed"], false);
        let gets: Vec<i64> = up2
            .requests()
            .iter()
            .filter(|s| s.request.method == "GET")
            .map(|s| s.at_unix_ms - START_UNIX_MS)
            .collect();
        assert_eq!(gets.len(), 2);
        assert!(gets[1] - gets[0] >= 2000, "{gets:?}");
    });
}

#[test]
fn answers_map_to_error_kinds_and_codes() {
    run_paused(async {
        for (status, body, kind, code) in [
            (404, "", ErrorKind::NotFound, "sim_not_found"),
            (
                403,
                "SIM does not belong to user.",
                ErrorKind::NotFound,
                "sim_not_in_account",
            ),
            (422, "", ErrorKind::Conflict, "sim_expired"),
            (400, "{}", ErrorKind::Upstream, "upstream_error"),
        ] {
            let user = format!("err{status}");
            let up = Upstream::handler(move |req, _| {
                if req.url.ends_with("/oauth/token") {
                    token_reply("t")
                } else {
                    Reply::status(status, body)
                }
            });
            let e = expect_error(
                harness(&up, &user)
                    .call("overview", device(), json!({}))
                    .await,
                kind,
            );
            assert_eq!(e.details["code"], code, "{status}: {}", e.message);
        }
        // A body that is no JSON.
        let up = Upstream::handler(|req, _| {
            if req.url.ends_with("/oauth/token") {
                token_reply("t")
            } else {
                Reply::ok("<html>")
            }
        });
        let e = expect_error(
            harness(&up, "malformed")
                .call("overview", device(), json!({}))
                .await,
            ErrorKind::Upstream,
        );
        assert_eq!(e.details["code"], "malformed_response");
    });
}

#[test]
fn bad_credentials_are_named_and_the_password_never_shown() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(
            token_request("wrong"),
            Reply::json(400, json!({"statusCode": 400, "errorCode": "BadCredentials", "message": "User does not exist."})),
        );
        let e = expect_error(
            harness(&up, "wrong")
                .call_org("test_connection", json!({}))
                .await,
            ErrorKind::Unauthorized,
        );
        assert_eq!(e.details["code"], "bad_credentials");
        assert!(e.message.contains("User does not exist."), "{}", e.message);
        up.verify();
    });
}

#[test]
fn test_connection_gets_a_new_token_and_counts_the_sims() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(token_request("conn"), token_reply("fresh"))
            .expect(
                Expect::get(&format!("{BASE}/v1/sims?page=1&pageSize=1"))
                    .header("authorization", "Bearer fresh"),
                Reply::json(200, json!([sim_object()])).header("x-total-count", "42"),
            );
        let out = harness(&up, "conn")
            .call_org("test_connection", json!({}))
            .await
            .unwrap();
        assert_json_eq(
            &out,
            &json!({"ok": true, "token_lifetime_secs": 3600, "sims": 42}),
        );
        up.verify();
    });
}

#[test]
fn the_hosts_refusals_and_timeouts_carry_the_dashboards_codes() {
    run_paused(async {
        let up = Upstream::handler(|_, _| Reply::never());
        let h = Harness::builder("onence")
            .upstream(&up)
            .call_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .with_org(org("slow"));
        let e = expect_error(
            h.call_org("test_connection", json!({})).await,
            ErrorKind::Timeout,
        );
        assert_eq!(e.details["code"], "timeout", "{}", e.details);
        let plain = h.clone().with_org(json!({"endpoint": "http://upstream.test/management-api", "username": "u", "password": "pppp"}));
        let e = expect_error(
            plain.call_org("test_connection", json!({})).await,
            ErrorKind::Forbidden,
        );
        assert_eq!(e.details["code"], "egress_refused");
        let down = Upstream::handler(|_, _| Reply::connect_error());
        let e = expect_error(
            harness(&down, "down")
                .call_org("test_connection", json!({}))
                .await,
            ErrorKind::Upstream,
        );
        assert_eq!(e.details["code"], "unreachable");
    });
}

fn usage_entry(date: &str, tx: &str, rx: &str, mo: &str, mt: &str) -> Value {
    json!({
        "date": date,
        "data": {"volume": "0", "volume_tx": tx, "volume_rx": rx, "cost": "0", "traffic_type": {"unit": "MB"}},
        "sms": {"volume": "0", "volume_tx": mt, "volume_rx": mo}
    })
}

#[test]
fn usage_reads_strings_any_date_form_and_a_total_row_newest_first() {
    run_paused(async {
        // Virtual today: 2023-11-14.
        let up = Upstream::scripted();
        let mut d1 = usage_entry("2023-11-13", "0.5", "0.25", "1", "2");
        d1["data"]["volume"] = json!("0.75");
        let d2 = usage_entry("2023-11-01T00:00:00.000Z", "1", "0", "0", "0");
        up.expect(token_request("usage"), token_reply("u")).expect(
            Expect::get(&format!("{BASE}/v1/sims/{ICCID}/usage?start_dt=2023-11-01&end_dt=2023-11-14")),
            Reply::json(200, json!({"stats": [d1, d2, {"date": "TOTAL", "data": {"volume": "1.75"}, "sms": {"volume": "3"}}]})),
        );
        let mut out = harness(&up, "usage")
            .call(
                "usage",
                device(),
                json!({"start_date": "2023-11-01", "end_date": "2023-11-14"}),
            )
            .await
            .unwrap();
        out.as_object_mut().unwrap().remove("as_of");
        assert_json_eq(
            &out,
            &json!({
                "iccid": ICCID, "start_date": "2023-11-01", "end_date": "2023-11-14",
                "days": [
                    {"date": "2023-11-01", "data_up_bytes": 1_000_000, "data_down_bytes": 0, "data_bytes": 0, "sms_mo": 0, "sms_mt": 0, "sms_count": 0},
                    {"date": "2023-11-13", "data_up_bytes": 500_000, "data_down_bytes": 250_000, "data_bytes": 750_000, "sms_mo": 1, "sms_mt": 2, "sms_count": 3}
                ],
                "data_bytes": 750_000, "sms_count": 3
            }),
        );
        up.verify();
    });
}

#[test]
fn usage_ranges_outside_the_last_six_months_are_refused_before_any_request() {
    run_paused(async {
        let up = Upstream::scripted();
        let h = harness(&up, "ranges");
        for (start, end, code) in [
            ("2023-05-13", "2023-06-01", "range_too_old"),
            ("2023-11-01", "2023-11-15", "date_in_future"),
            ("2023-11-10", "2023-11-01", "bad_range"),
        ] {
            let e = expect_error(
                h.call(
                    "usage",
                    device(),
                    json!({"start_date": start, "end_date": end}),
                )
                .await,
                ErrorKind::InvalidInput,
            );
            assert_eq!(e.details["code"], code, "{start}..{end}: {}", e.message);
        }
        // The earliest day allowed is six months back.
        assert!(up.requests().is_empty());
        up.verify();
    });
}

#[test]
fn usage_history_sums_each_month_for_the_chart() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(token_request("history"), token_reply("h"))
            .expect(
                Expect::get(&format!(
                    "{BASE}/v1/sims/{ICCID}/usage?start_dt=2023-09-01&end_dt=2023-11-14"
                )),
                Reply::json(
                    200,
                    json!({"stats": [
                        usage_entry("2023-11-02", "1", "1", "1", "0"),
                        usage_entry("2023-09-30", "0.5", "0", "0", "4"),
                        usage_entry("2023-09-01", "0.5", "0", "0", "0"),
                    ]}),
                ),
            );
        let out = harness(&up, "history")
            .call("usage_history", device(), json!({"months": 3}))
            .await
            .unwrap();
        // `volume` is "0" in these entries: data is its total as 1NCE gives it.
        assert_json_eq(
            &out["cycles"],
            &json!([
                {"cycle_start": "2023-09-01", "data_bytes": 0, "sms_count": 4},
                {"cycle_start": "2023-10-01", "data_bytes": 0, "sms_count": 0},
                {"cycle_start": "2023-11-01", "data_bytes": 0, "sms_count": 1}
            ]),
        );
        up.verify();
    });
}

#[test]
fn top_up_orders_with_the_payment_method_and_reads_the_order_from_location() {
    run_paused(async {
        let up = Upstream::scripted();
        up.expect(token_request("topup"), token_reply("t"))
            .expect(
                Expect::post(&format!(
                    "{BASE}/v1/sims/{ICCID}/topup?payment_method=creditcard"
                )),
                Reply::status(201, "").header(
                    "location",
                    "https://api.1nce.com/management-api/v1/orders/1234",
                ),
            )
            .expect(
                Expect::post(&format!(
                    "{BASE}/v1/sims/{ICCID}/topup?payment_method=boleto"
                )),
                Reply::json(400, json!({"message": "Payment method used is not valid."})),
            );
        let h = harness(&up, "topup");
        let out = h
            .call("top_up", device(), json!({"payment_method": "creditcard"}))
            .await
            .unwrap();
        assert_eq!(out["order_number"], "1234");
        let e = expect_error(
            h.call("top_up", device(), json!({"payment_method": "boleto"}))
                .await,
            ErrorKind::InvalidInput,
        );
        assert_eq!(e.details["code"], "payment_method_refused");
        up.verify();
    });
}
