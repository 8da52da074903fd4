//! The plugin API's helpers (`devext_plugin_api::util`) on the real host's timers, limiter and
//! deadline, through the kit: a small plugin that uses each of them.

use std::time::Duration;

use devext_plugin_api::util::{AccountGate, Retry, Safety, SingleFlight, Token, TokenCache};
use devext_plugin_api::{
    Call, ErrorKind, Host, HttpRequest, Manifest, Operation, Plugin, PluginError,
};
use devext_plugin_test::{Harness, Reply, START_UNIX_MS, Upstream, expect_error, json, run_paused};
use serde_json::Value;

struct Helpers {
    reads: SingleFlight<String, Value>,
    tokens: TokenCache,
}

const GATE: AccountGate = AccountGate::new(100, 2);

fn status_error(status: u16) -> PluginError {
    match status {
        401 => PluginError::new(ErrorKind::Unauthorized, "token refused"),
        429 => PluginError::new(ErrorKind::RateLimited, "slow down"),
        _ => PluginError::upstream(format!("status {status}")),
    }
}

impl Helpers {
    async fn send(&self, host: &Host, req: HttpRequest) -> Result<Value, PluginError> {
        let _permit = GATE.enter(host).await?;
        let resp = host.http(&req).await?;
        if resp.status >= 400 {
            return Err(status_error(resp.status));
        }
        Ok(serde_json::from_str(&resp.body).unwrap_or(Value::Null))
    }

    async fn token(&self, host: &Host, base: &str) -> Result<Token, PluginError> {
        let body = self
            .send(host, HttpRequest::new("POST", format!("{base}/token")))
            .await?;
        let now = host.now_unix_ms()?;
        Ok(Token::new(
            body["access_token"].as_str().unwrap_or_default(),
            now,
            Duration::from_secs(body["expires_in"].as_u64().unwrap_or(0)),
        ))
    }
}

impl Plugin for Helpers {
    fn manifest(&self) -> Manifest {
        Manifest::new("helpers", "Helpers", "0.1.0")
            .org_config_schema(json!({
                "type": "object",
                "properties": {"endpoint": {"type": "string"}, "user": {"type": "string"}},
                "required": ["endpoint"]
            }))
            .device_config_schema(json!({"type": "object"}))
            .endpoint_field("endpoint")
            .account_fields(["user"])
            .with_operations(
                ["read", "write", "shared", "authed"]
                    .map(|op| Operation::view(op, op).scope(devext_plugin_api::OpScope::Org)),
            )
    }

    async fn invoke(&self, host: Host, call: Call) -> Result<Value, PluginError> {
        let base = call.org_config["endpoint"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let retry = Retry::new(4)
            .base_delay(Duration::from_millis(100))
            .without_jitter();
        match call.op.as_str() {
            "read" => {
                retry
                    .run(&host, &call.context, Safety::Read, |_| {
                        self.send(&host, HttpRequest::new("GET", format!("{base}/r")))
                    })
                    .await
            }
            "write" => {
                retry
                    .run(&host, &call.context, Safety::Write, |_| {
                        self.send(&host, HttpRequest::new("POST", format!("{base}/w")))
                    })
                    .await
            }
            "shared" => {
                let key = format!("{}|/s", call.context.account_key);
                self.reads
                    .run(key, || {
                        self.send(&host, HttpRequest::new("GET", format!("{base}/s")))
                    })
                    .await
            }
            "authed" => {
                let key = call.context.account_key.clone();
                self.tokens
                    .with_token(
                        &host,
                        &key,
                        || self.token(&host, &base),
                        |token| {
                            let req = HttpRequest::new("GET", format!("{base}/me"))
                                .header("authorization", format!("Bearer {token}"));
                            self.send(&host, req)
                        },
                    )
                    .await
            }
            _ => Err(PluginError::not_found("no such op")),
        }
    }
}

devext_plugin_api::export_plugin!(
    Helpers,
    Helpers {
        reads: SingleFlight::new(),
        tokens: TokenCache::new(Duration::from_secs(60)),
    }
);

fn harness(up: &Upstream, user: &str) -> Harness {
    Harness::builder("helpers")
        .upstream(up)
        .build()
        .unwrap()
        .with_org(json!({"endpoint": Upstream::ENDPOINT, "user": user}))
}

fn offsets(up: &Upstream) -> Vec<(String, i64)> {
    up.requests()
        .iter()
        .map(|s| {
            (
                format!("{} {}", s.request.method, s.path()),
                s.at_unix_ms - START_UNIX_MS,
            )
        })
        .collect()
}

#[test]
fn reads_are_retried_with_growing_waits_on_the_host_timers() {
    run_paused(async {
        let up = Upstream::handler(|_, n| {
            if n < 2 {
                Reply::status(503, "")
            } else {
                Reply::ok("{\"v\":1}")
            }
        });
        let out = harness(&up, "retry-read")
            .call_org("read", json!({}))
            .await
            .unwrap();
        assert_eq!(out["v"], 1);
        let at: Vec<i64> = offsets(&up).into_iter().map(|(_, t)| t).collect();
        assert_eq!(at, [0, 100, 300]);
    });
}

#[test]
fn a_write_that_may_have_been_processed_is_never_repeated() {
    run_paused(async {
        // The connection broke after the request was sent: perhaps done, so not repeated.
        let up = Upstream::handler(|_, _| Reply::cut_off());
        expect_error(
            harness(&up, "w1").call_org("write", json!({})).await,
            ErrorKind::Upstream,
        );
        assert_eq!(up.requests().len(), 1);
        // Never sent, or refused for the rate: repeated.
        let up = Upstream::handler(|_, n| match n {
            0 => Reply::connect_error(),
            1 => Reply::status(429, ""),
            _ => Reply::ok("{}"),
        });
        harness(&up, "w2")
            .call_org("write", json!({}))
            .await
            .unwrap();
        assert_eq!(up.requests().len(), 3);
        // A 500 may have been processed: not repeated.
        let up = Upstream::handler(|_, _| Reply::status(500, ""));
        expect_error(
            harness(&up, "w3").call_org("write", json!({})).await,
            ErrorKind::Upstream,
        );
        assert_eq!(up.requests().len(), 1);
    });
}

#[test]
fn no_retry_is_started_that_could_not_finish_before_the_deadline() {
    run_paused(async {
        let up = Upstream::handler(|_, _| Reply::status(503, "").delay(Duration::from_millis(900)));
        let h = Harness::builder("helpers")
            .upstream(&up)
            .call_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
            .with_org(json!({"endpoint": Upstream::ENDPOINT, "user": "deadline"}));
        // 900 ms + 100 ms wait + 900 ms = 1.9 s; a third attempt would start after 2.1 s.
        let e = expect_error(h.call_org("read", json!({})).await, ErrorKind::Upstream);
        assert_eq!(e.message, "status 503");
        assert_eq!(up.requests().len(), 2);
    });
}

#[test]
fn identical_reads_at_the_same_time_share_one_request() {
    run_paused(async {
        let up = Upstream::handler(|_, _| Reply::ok("{\"n\":7}").delay(Duration::from_secs(1)));
        let h = harness(&up, "shared");
        let other = harness(&up, "other-account");
        let (a, b, c) = devext_plugin_test::tokio::join!(
            h.call_org("shared", json!({})),
            h.call_org("shared", json!({})),
            other.call_org("shared", json!({})),
        );
        assert_eq!(a.unwrap()["n"], 7);
        assert_eq!(b.unwrap()["n"], 7);
        assert_eq!(c.unwrap()["n"], 7);
        assert_eq!(
            up.requests().len(),
            2,
            "one per account: {:?}",
            offsets(&up)
        );
        // Afterwards nothing is cached.
        h.call_org("shared", json!({})).await.unwrap();
        assert_eq!(up.requests().len(), 3);
    });
}

#[test]
fn the_gate_holds_an_accounts_requests_in_flight_to_its_limit() {
    run_paused(async {
        let up = Upstream::handler(|_, _| Reply::ok("{}").delay(Duration::from_millis(500)));
        let h = harness(&up, "gated");
        let calls: Vec<_> = (0..5).map(|_| h.call_org("read", json!({}))).collect();
        for r in devext_plugin_api::util::join_all(calls).await {
            r.unwrap();
        }
        assert_eq!(up.peak_in_flight(), 2);
        assert_eq!(up.requests().len(), 5);
    });
}

#[test]
fn tokens_are_refreshed_once_before_expiry_and_after_a_refusal() {
    run_paused(async {
        let up = Upstream::handler(|req, _| {
            if req.url.ends_with("/token") {
                return Reply::ok(r#"{"access_token":"t","expires_in":3600}"#)
                    .delay(Duration::from_millis(200));
            }
            Reply::ok("{\"me\":true}")
        });
        let h = harness(&up, "tokens");
        // Three calls at once: one token request.
        let (a, b, c) = devext_plugin_test::tokio::join!(
            h.call_org("authed", json!({})),
            h.call_org("authed", json!({})),
            h.call_org("authed", json!({})),
        );
        for r in [a, b, c] {
            assert_eq!(r.unwrap()["me"], true);
        }
        let tokens = |up: &Upstream| {
            up.requests()
                .iter()
                .filter(|s| s.path() == "/token")
                .count()
        };
        assert_eq!(tokens(&up), 1);
        // 58 minutes later the token is within a minute of its expiry: refreshed first.
        devext_plugin_test::tokio::time::advance(Duration::from_secs(58 * 60)).await;
        h.call_org("authed", json!({})).await.unwrap();
        assert_eq!(tokens(&up), 1, "still more than 60 s left");
        devext_plugin_test::tokio::time::advance(Duration::from_secs(90)).await;
        h.call_org("authed", json!({})).await.unwrap();
        assert_eq!(tokens(&up), 2);
    });
}

#[test]
fn a_refused_token_is_replaced_and_the_call_retried_once() {
    run_paused(async {
        let up = Upstream::handler(|req, _| {
            if req.url.ends_with("/token") {
                return Reply::ok(r#"{"access_token":"t","expires_in":3600}"#);
            }
            Reply::status(401, "")
        });
        let h = harness(&up, "refused");
        expect_error(
            h.call_org("authed", json!({})).await,
            ErrorKind::Unauthorized,
        );
        let paths: Vec<String> = offsets(&up).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["POST /token", "GET /me", "POST /token", "GET /me"]);
    });
}
