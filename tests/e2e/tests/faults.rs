//! Each fault mode of the simulator gives a clear error or a successful retry, the host stays
//! healthy afterwards, and no write is applied twice. Each scenario runs for both APIs at once
//! (one simulator each; limits lifted, so only the injected faults matter).

use std::future::Future;
use std::time::{Duration, Instant};

use devext_host::{ErrorKind, PluginError};
use devext_jasper_sim::{FaultMode, FaultSettings, RunningSim};
use serde_json::{Value, json};

use crate::support::{
    Api, Host, Linking, call, call_with, device, expect_err, expect_ok, fast_org, host,
    lift_limits, sim, sim_of, sims_with_status,
};

const MAYBE_PROCESSED: &str = "may still have been processed";

/// One API's simulator, runtime (static plugin, no view cache) and org.
struct Case {
    api: Api,
    sim: RunningSim,
    host: Host,
    org: Value,
    /// Activated SIMs: reads, SMS, status changes.
    iccids: Vec<String>,
}

impl Case {
    async fn new(api: Api) -> Case {
        let sim = sim().await;
        lift_limits(&sim);
        let host = host(Linking::Static, 0).await;
        let org = fast_org(&sim, api);
        let iccids = sims_with_status(&sim, "activated", 6);
        Case {
            api,
            sim,
            host,
            org,
            iccids,
        }
    }

    fn faults(&self, mode: FaultMode, count: Option<u64>) {
        self.set_faults(FaultSettings {
            mode,
            count,
            ..FaultSettings::default()
        });
    }

    /// Every API answer delayed by `ms`.
    fn latency(&self, ms: u64) {
        self.set_faults(FaultSettings {
            latency_ms: ms,
            ..FaultSettings::default()
        });
    }

    /// A share `rate` (0 to 1) of API requests answered with a server error.
    fn error_rate(&self, rate: f64) {
        self.set_faults(FaultSettings {
            error_rate: rate,
            ..FaultSettings::default()
        });
    }

    fn set_faults(&self, settings: FaultSettings) {
        self.sim.set_faults(settings).expect("fault settings");
    }

    async fn call(&self, iccid: &str, op: &str, input: Value) -> Result<Value, PluginError> {
        call(&self.host.rt, &self.org, iccid, op, input).await
    }

    /// `call` with a deadline.
    async fn call_within(
        &self,
        deadline: Duration,
        iccid: &str,
        op: &str,
        input: Value,
    ) -> Result<Value, PluginError> {
        call_with(
            &self.host.rt,
            &self.org,
            &device(iccid),
            op,
            input,
            Some(deadline),
        )
        .await
    }

    async fn overview(&self, iccid: &str) -> Result<Value, PluginError> {
        self.call(iccid, "overview", json!({})).await
    }

    async fn set_status(&self, iccid: &str, status: &str) -> Result<Value, PluginError> {
        self.call(iccid, "set_status", json!({ "status": status }))
            .await
    }

    async fn sms(&self, iccid: &str, text: &str) -> Result<Value, PluginError> {
        self.call(iccid, "send_sms", json!({ "message": text }))
            .await
    }

    /// After the faults are cleared, a read and a write go through: the host is healthy.
    async fn healthy(&self) {
        self.sim.clear_faults();
        let iccid = &self.iccids[5];
        let out = expect_ok(self.overview(iccid).await, "overview after the faults");
        assert_eq!(out["status"], sim_of(&self.sim, iccid).status);
        let before = self.sim.sms_log().len();
        expect_ok(
            self.sms(iccid, "after the faults").await,
            "SMS after the faults",
        );
        assert_eq!(self.sim.sms_log().len(), before + 1);
    }

    fn what(&self, s: &str) -> String {
        format!("{:?}: {s}", self.api)
    }
}

/// Runs `scenario` for SOAP and REST concurrently.
async fn both<F, Fut>(scenario: F)
where
    F: Fn(Case) -> Fut,
    Fut: Future<Output = ()>,
{
    let (soap, rest) = tokio::join!(Case::new(Api::Soap), Case::new(Api::Rest));
    tokio::join!(scenario(soap), scenario(rest));
}

#[track_caller]
fn assert_maybe_processed(e: &PluginError, what: &str) {
    assert_eq!(e.kind, ErrorKind::Upstream, "{what}: {}", e.message);
    assert!(
        e.message.contains(MAYBE_PROCESSED),
        "{what}: the message does not warn that the write may have been applied: {}",
        e.message
    );
    assert!(!e.retryable, "{what}: an ambiguous write is not retryable");
    assert_eq!(e.details["attempts"], 1, "{what}: a write was retried");
}

/// A write that failed before the simulator executed it: exactly one attempt, nothing applied,
/// and the caller is told it may have been.
async fn unexecuted_write_is_not_retried(c: &Case, mode: FaultMode) {
    let iccid = &c.iccids[1];
    let before_log = c.sim.sms_log().len();
    let before = c.sim.stats();
    c.faults(mode, Some(1));
    let e = expect_err(c.sms(iccid, "never twice").await, &c.what("faulted SMS"));
    assert_maybe_processed(&e, &c.what(&format!("{mode:?} on send_sms")));
    let after = c.sim.stats();
    assert_eq!(
        after.requests,
        before.requests + 1,
        "{mode:?}: one attempt only"
    );
    assert_eq!(after.writes, before.writes, "{mode:?}: nothing applied");
    assert_eq!(c.sim.sms_log().len(), before_log);
}

/// A read that failed once is retried and succeeds.
async fn read_is_retried(c: &Case, mode: FaultMode) {
    let iccid = &c.iccids[0];
    c.sim.reset_stats();
    c.faults(mode, Some(1));
    let out = expect_ok(c.overview(iccid).await, &c.what(&format!("{mode:?} read")));
    assert_eq!(out["status"], "activated");
    let stats = c.sim.stats();
    assert_eq!(stats.faults_injected, 1, "{stats:?}");
    let per_call = if c.api == Api::Rest { 2 } else { 1 };
    assert_eq!(stats.requests, per_call + 1, "one retry: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_slows_calls_and_the_deadline_cancels_them() {
    both(|c| async move {
        let iccid = &c.iccids[0];
        c.latency(300);
        let started = Instant::now();
        expect_ok(c.overview(iccid).await, &c.what("slow overview"));
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Slower than the call's deadline: a clear timeout, on time.
        c.latency(4000);
        let started = Instant::now();
        let e = expect_err(
            c.call_within(Duration::from_millis(1500), iccid, "overview", json!({}))
                .await,
            &c.what("overview past its deadline"),
        );
        let took = started.elapsed();
        assert_eq!(e.kind, ErrorKind::Timeout, "{}", e.message);
        assert!(
            e.message.contains("1500 ms") || e.message.contains("deadline"),
            "{}",
            e.message
        );
        assert!(took < Duration::from_millis(2500), "took {took:?}");
        c.healthy().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_reads_retry_writes_do_not() {
    both(|c| async move {
        // Some errors: reads are retried and all succeed (the simulator's RNG is seeded).
        c.error_rate(0.3);
        c.sim.reset_stats();
        for iccid in &c.iccids[..5] {
            let out = expect_ok(c.overview(iccid).await, &c.what("overview, 30 % errors"));
            assert_eq!(out["iccid"], iccid.as_str());
        }
        assert!(c.sim.stats().faults_injected > 0, "no error was injected");

        // Only errors: a read gives up after 4 attempts with a clear upstream error.
        c.error_rate(1.0);
        c.sim.reset_stats();
        let e = expect_err(c.overview(&c.iccids[0]).await, &c.what("always failing"));
        assert_eq!(e.kind, ErrorKind::Upstream, "{}", e.message);
        assert!(e.message.contains("retried 3 times"), "{}", e.message);
        assert!(e.retryable);
        assert_eq!(e.details["attempts"], 4);
        assert_eq!(c.sim.stats().requests, 4);

        // A write is never retried after a server error: it may have been executed.
        let before = c.sim.sms_log().len();
        c.sim.reset_stats();
        let e = expect_err(c.sms(&c.iccids[1], "server error").await, &c.what("SMS"));
        assert_maybe_processed(&e, &c.what("SMS with errors"));
        assert_eq!(c.sim.stats().requests, 1);
        assert_eq!(c.sim.sms_log().len(), before);
        c.healthy().await;
    })
    .await;
}

/// One fault of `mode` on a read, then on a write: the read is retried, the write is reported,
/// and the host is healthy afterwards.
async fn read_retried_write_reported(mode: FaultMode) {
    both(|c| async move {
        read_is_retried(&c, mode).await;
        unexecuted_write_is_not_retried(&c, mode).await;
        if mode == FaultMode::Drop {
            // One for the read (then retried), one for the write (not retried).
            assert_eq!(c.sim.stats().dropped_connections, 2);
        }
        c.healthy().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http500_read_retried_write_reported() {
    read_retried_write_reported(FaultMode::Http500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_are_retried_and_writes_applied_once() {
    both(|c| async move {
        read_is_retried(&c, FaultMode::RateLimit).await;

        // A write refused with a rate-limit answer was not executed: retried, applied once.
        let iccid = &c.iccids[1];
        let before_log = c.sim.sms_log().len();
        c.sim.reset_stats();
        c.faults(FaultMode::RateLimit, Some(1));
        let out = expect_ok(c.sms(iccid, "exactly once").await, &c.what("SMS after 429"));
        let log = c.sim.sms_log();
        assert_eq!(log.len(), before_log + 1, "applied exactly once");
        let sent = log.last().expect("SMS");
        assert_eq!(sent.message, "exactly once");
        assert_eq!(out["message_id"], sent.id.to_string());
        let stats = c.sim.stats();
        assert_eq!((stats.requests, stats.writes), (2, 1), "{stats:?}");

        // A status change too.
        c.faults(FaultMode::RateLimit, Some(1));
        expect_ok(
            c.set_status(iccid, "deactivated").await,
            &c.what("set_status after 429"),
        );
        assert_eq!(sim_of(&c.sim, iccid).status, "deactivated");
        assert_eq!(c.sim.stats().writes, 2);

        // Refused every time: a clear rate_limited error after 4 attempts.
        c.faults(FaultMode::RateLimit, None);
        c.sim.reset_stats();
        let e = expect_err(c.overview(&c.iccids[0]).await, &c.what("always 429"));
        assert_eq!(e.kind, ErrorKind::RateLimited, "{}", e.message);
        assert!(
            e.message.starts_with("rate limit, retried 3 times"),
            "{}",
            e.message
        );
        assert!(e.retryable);
        assert_eq!(c.sim.stats().requests, 4);
        c.healthy().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_read_retried_write_reported() {
    read_retried_write_reported(FaultMode::Malformed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_read_retried_write_reported() {
    read_retried_write_reported(FaultMode::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_after_write_applies_once_and_says_so() {
    both(|c| async move {
        let iccid = &c.iccids[1];
        c.faults(FaultMode::DropAfterWrite, Some(3));
        c.sim.reset_stats();

        // Reads pass and do not use up the count.
        expect_ok(c.overview(iccid).await, &c.what("read"));

        // send_sms: applied once, not retried, and the caller is told.
        let before = c.sim.sms_log().len();
        let e = expect_err(c.sms(iccid, "sent once").await, &c.what("SMS"));
        assert_maybe_processed(&e, &c.what("drop_after_write on send_sms"));
        let log = c.sim.sms_log();
        assert_eq!(log.len(), before + 1, "the SMS log grows by exactly one");
        assert_eq!(log.last().map(|s| s.message.as_str()), Some("sent once"));

        // set_status and set_rate_plan: applied once, reported as possibly processed.
        let e = expect_err(
            c.set_status(iccid, "deactivated").await,
            &c.what("set_status"),
        );
        assert_maybe_processed(&e, &c.what("drop_after_write on set_status"));
        assert_eq!(sim_of(&c.sim, iccid).status, "deactivated");

        let plan = if sim_of(&c.sim, iccid).rate_plan == "IoT_Pro_1GB" {
            "IoT_Basic_1MB"
        } else {
            "IoT_Pro_1GB"
        };
        let e = expect_err(
            c.call(iccid, "set_rate_plan", json!({ "rate_plan": plan }))
                .await,
            &c.what("set_rate_plan"),
        );
        assert_maybe_processed(&e, &c.what("drop_after_write on set_rate_plan"));
        assert_eq!(sim_of(&c.sim, iccid).rate_plan, plan);

        let stats = c.sim.stats();
        assert_eq!(
            stats.writes, 3,
            "each write applied exactly once: {stats:?}"
        );
        assert_eq!(stats.dropped_connections, 3);
        c.healthy().await;
    })
    .await;
}

/// A write whose answer does not come before the deadline: a `timeout`, one attempt, applied at
/// most once. `strict`: the caller is also told that it may have been processed (it was sent; the
/// host reports the timeout with `stage: response`), as for any other write with an unknown fate.
async fn write_past_its_deadline(strict: bool) {
    both(|c| async move {
        let iccid = &c.iccids[1];
        let before = c.sim.sms_log().len();
        c.latency(2500);
        let started = Instant::now();
        let e = expect_err(
            c.call_within(
                Duration::from_millis(1500),
                iccid,
                "send_sms",
                json!({"message": "late"}),
            )
            .await,
            &c.what("SMS past its deadline"),
        );
        assert!(started.elapsed() < Duration::from_millis(2400));
        assert_eq!(e.kind, ErrorKind::Timeout, "{}", e.message);
        if strict {
            // Whichever timer fires first (the plugin's request timeout or the host's deadline).
            assert!(
                e.message.contains(MAYBE_PROCESSED) && !e.retryable,
                "{:?}: a timed-out write does not warn that it may have been applied: {e:?}",
                c.api,
            );
        }
        // Let the simulator finish whatever it still does with the request.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(c.sim.sms_log().len() <= before + 1, "applied twice");
        c.healthy().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_past_its_deadline_is_applied_at_most_once() {
    write_past_its_deadline(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_past_its_deadline_says_it_may_have_been_processed() {
    write_past_its_deadline(true).await;
}
