//! Bulk jobs through the API (on the suite's store), run by the runner in-process, with the
//! `bulk` test plugin (which counts every call it gets per device): creation and its checks
//! (roles, input, selection, confirmation, Idempotency-Key), progress, results as JSON Lines
//! and CSV, cancel, the audit, recovery after a runner died, and pruning.

use std::time::Duration;

use axum::http::StatusCode;
use devext_fixture_bulk::applied;
use devext_service::jobs::runner::{self, Runner, RunnerConfig};
use devext_service::store::jobs::{ItemOutcome, JobStore as _, NewJob};
use devext_service::store::retention::{self, RetentionPolicy};
use devext_service::store::{IdempotencyClaim, Role, Store as _};
use serde_json::{Value, json};

use crate::api_env::{Env, error_message};

/// A tag no other test uses (the plugin's counts are per process).
fn tag(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn quick() -> RunnerConfig {
    RunnerConfig {
        lease: Duration::from_millis(800),
        idle_poll: Duration::from_millis(50),
        ..RunnerConfig::default()
    }
}

/// The service with `bulk` switched on and `n` devices tagged `<prefix>-<i>`; their ids.
async fn setup(env: &Env, prefix: &str, n: usize) -> Vec<String> {
    let (s, b) = env
        .put(
            "/api/v1/extensions/bulk",
            &env.admin,
            json!({"enabled": true, "config": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut ids = Vec::new();
    for i in 0..n {
        let (s, d) = env
            .post(
                "/api/v1/devices",
                &env.admin,
                json!({"name": format!("{prefix} unit {i}"),
                       "extensions": {"bulk": {"tag": format!("{prefix}-{i}")},
                                      "meter": {"serial": format!("{prefix}-{i}")}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        ids.push(d["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Polls the job until it has ended; its last state.
async fn until_ended(env: &Env, id: &str) -> Value {
    let path = format!("/api/v1/jobs/{id}");
    for _ in 0..1000 {
        let (s, job) = env.get(&path, &env.admin).await;
        assert_eq!(s, StatusCode::OK, "{job}");
        if ["done", "cancelled", "failed"].contains(&job["state"].as_str().unwrap()) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} did not end");
}

fn sum(job: &Value) -> u64 {
    ["done", "failed", "skipped", "unknown", "pending"]
        .iter()
        .map(|k| job[*k].as_u64().unwrap())
        .sum()
}

async fn results(env: &Env, id: &str, accept: &str) -> (StatusCode, String, String) {
    let r = env
        .client
        .send(
            "GET",
            &format!("/api/v1/jobs/{id}/results"),
            Some(&env.admin),
            None,
            &[("accept", accept)],
        )
        .await;
    let ct = r
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status, ct, r.text)
}

#[tokio::test]
async fn a_job_applies_every_device_once_and_lists_each_outcome_in_selection_order() {
    let env = Env::new().await;
    let prefix = tag("all");
    let mut ids = setup(&env, &prefix, 6).await;
    // One device that refuses, and one without a bulk configuration.
    let (_, refusing) = env
        .post(
            "/api/v1/devices",
            &env.admin,
            json!({"name": "refusing", "extensions": {"bulk": {"tag": format!("refuse-{prefix}")}}}),
        )
        .await;
    let (_, bare) = env
        .post("/api/v1/devices", &env.admin, json!({"name": "bare"}))
        .await;
    ids.push(refusing["id"].as_str().unwrap().to_owned());
    ids.push(bare["id"].as_str().unwrap().to_owned());
    let operator = env.key("acme", Role::Operator).await;
    let _runner = runner::start_with(&env.app, quick());
    let (s, job) = env
        .post(
            "/api/v1/jobs",
            &operator,
            json!({"plugin": "bulk", "op": "apply", "input": {"value": "on"},
                   "devices": {"ids": ids}, "confirm": 8}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["total"], 8);
    assert_eq!(job["selection"]["ids"].as_array().unwrap().len(), 8);
    assert!(job["created_by"].as_str().unwrap().starts_with("key:"));
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("job_"));
    let job = until_ended(&env, &id).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (job["done"].as_u64(), job["failed"].as_u64()),
        (Some(6), Some(2))
    );
    assert_eq!(sum(&job), 8);
    assert!(job["rate_per_s"].as_f64().unwrap() > 0.0, "{job}");
    assert!(job["started_at"].is_string() && job["finished_at"].is_string());
    assert_eq!(job["error"], Value::Null);
    for i in 0..6 {
        assert_eq!(applied(&format!("{prefix}-{i}")), 1, "device {i}");
    }

    let (s, ct, text) = results(&env, &id, "application/x-ndjson").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    for (line, device) in lines.iter().zip(&ids) {
        assert_eq!(&line["device"], device);
    }
    assert_eq!(lines[0]["outcome"], "ok");
    assert_eq!(
        lines[0]["result"],
        json!({"tag": format!("{prefix}-0"), "applied": 1})
    );
    assert_eq!(lines[0]["error"], Value::Null);
    assert_eq!(lines[6]["outcome"], "failed");
    assert_eq!(lines[6]["error"]["kind"], "conflict");
    assert_eq!(lines[7]["error"]["kind"], "not_found");
    assert!(
        lines[7]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no bulk configuration")
    );

    let (s, ct, csv) = results(&env, &id, "text/csv").await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("text/csv"));
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "device,outcome,error_kind,error_message,result");
    assert_eq!(rows.len(), 9);
    assert_eq!(
        rows[1],
        format!(
            "{},ok,,,\"{{\"\"applied\"\":1,\"\"tag\"\":\"\"{prefix}-0\"\"}}\"",
            ids[0]
        )
    );
    assert!(rows[7].starts_with(&format!("{},failed,conflict,", ids[6])));

    // Audited: the job once when created and once when done (with its counts), and each
    // action item, on behalf of the key that created the job.
    let (_, audit) = env.get("/api/v1/audit?limit=100", &env.admin).await;
    let entries = audit["items"].as_array().unwrap();
    let jobs: Vec<Value> = entries
        .iter()
        .filter(|e| e["action"] == "job")
        .map(|e| serde_json::from_str(e["detail"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(jobs.len(), 2, "{audit}");
    assert_eq!(jobs[0]["event"], "done");
    assert_eq!(
        (jobs[0]["done"].as_u64(), jobs[0]["failed"].as_u64()),
        (Some(6), Some(2))
    );
    assert_eq!(jobs[1]["event"], "created");
    assert_eq!(jobs[1]["input"], json!({"value": "on"}));
    assert_eq!(jobs[1]["total"], 8);
    let items: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "operation")
        .collect();
    assert_eq!(items.len(), 8, "{audit}");
    assert!(
        items
            .iter()
            .all(|e| e["key_id"].is_string() && e["op"] == "apply")
    );
    assert_eq!(items.iter().filter(|e| e["outcome"] == "ok").count(), 6);
}

#[tokio::test]
async fn creation_checks_the_role_the_input_the_selection_and_the_confirmation() {
    let env = Env::new().await;
    let prefix = tag("checks");
    let ids = setup(&env, &prefix, 7).await;
    let viewer = env.key("acme", Role::Viewer).await;
    let operator = env.key("acme", Role::Operator).await;
    let apply = |devices: Value| json!({"plugin": "bulk", "op": "apply", "input": {"value": "x"}, "devices": devices});
    let two = json!({"ids": ids[..2]});

    let r = env
        .client
        .send("POST", "/api/v1/jobs", None, Some(apply(two.clone())), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let (s, b) = env.post("/api/v1/jobs", &viewer, apply(two.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // A view is a viewer's to run.
    let (s, b) = env
        .post(
            "/api/v1/jobs",
            &viewer,
            json!({"plugin": "bulk", "op": "read", "devices": two}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");

    let cases = [
        (
            json!({"plugin": "nope", "op": "apply", "devices": two}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            json!({"plugin": "bulk", "op": "nope", "devices": two}),
            StatusCode::BAD_REQUEST,
            "no operation",
        ),
        (
            json!({"plugin": "bulk", "op": "probe", "devices": two}),
            StatusCode::BAD_REQUEST,
            "organisation operation",
        ),
        (
            json!({"plugin": "bulk", "op": "apply", "input": {"value": "much too long"}, "devices": two}),
            StatusCode::BAD_REQUEST,
            "/input/value",
        ),
        (
            apply(json!({"filter": {"name": "no such device"}})),
            StatusCode::BAD_REQUEST,
            "no device",
        ),
        (
            apply(json!({"filter": {"colour": "red"}})),
            StatusCode::BAD_REQUEST,
            "unknown filter key",
        ),
        (
            apply(json!({"filter": {"ext.meter.colour": "red"}})),
            StatusCode::BAD_REQUEST,
            "ext.meter.colour",
        ),
        (
            apply(json!({"ids": ["dev_nope"]})),
            StatusCode::BAD_REQUEST,
            "dev_nope",
        ),
        (
            apply(json!({"ids": ids[..1], "filter": {"name": "x"}})),
            StatusCode::BAD_REQUEST,
            "not both",
        ),
        (apply(json!({})), StatusCode::BAD_REQUEST, "not both"),
        (
            json!({"plugin": "bulk", "devices": two}),
            StatusCode::BAD_REQUEST,
            "op",
        ),
    ];
    for (body, status, says) in cases {
        let (s, b) = env.post("/api/v1/jobs", &operator, body.clone()).await;
        assert_eq!(s, status, "{body} -> {b}");
        let text = b.to_string();
        assert!(text.contains(says), "{body} -> {b}");
    }
    // The invalid input's pointer is in the details.
    let (_, b) = env
        .post(
            "/api/v1/jobs",
            &operator,
            json!({"plugin": "bulk", "op": "apply", "input": {}, "devices": two}),
        )
        .await;
    assert_eq!(
        b["error"]["details"]["violations"][0]["keyword"], "required",
        "{b}"
    );

    // Another org's device is not selectable.
    let other = env.key("globex", Role::Admin).await;
    let (s, _) = env
        .put(
            "/api/v1/extensions/bulk",
            &other,
            json!({"enabled": true, "config": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = env.post("/api/v1/jobs", &other, apply(two.clone())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // Destructive on more than 5 devices: the count must be confirmed; nothing created before.
    let (_, before) = env.get("/api/v1/jobs", &operator).await;
    let by_name = json!({"filter": {"name": prefix.as_str()}});
    let (s, b) = env
        .post("/api/v1/jobs", &operator, apply(by_name.clone()))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["kind"], "confirmation_required");
    assert_eq!(b["error"]["details"]["total"], 7);
    let mut wrong = apply(by_name.clone());
    wrong["confirm"] = json!(6);
    let (s, b) = env.post("/api/v1/jobs", &operator, wrong).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (_, after) = env.get("/api/v1/jobs", &operator).await;
    assert_eq!(before["items"], after["items"]);
    let mut confirmed = apply(by_name);
    confirmed["confirm"] = json!(7);
    let (s, b) = env.post("/api/v1/jobs", &operator, confirmed).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["total"], 7);
    assert_eq!(b["state"], "queued");
    assert_eq!(b["pending"], 7);
    // Five or fewer need no confirmation; a lookup filter selects by the plugin's field.
    let (s, b) = env
        .post(
            "/api/v1/jobs",
            &operator,
            apply(json!({"filter": {"ext.meter.serial": format!("{prefix}-3")}})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["total"], 1);
    assert_eq!(
        b["selection"],
        json!({"filter": {"ext.meter.serial": format!("{prefix}-3")}})
    );

    // Listing: newest first, paged.
    let (s, page) = env.get("/api/v1/jobs?limit=2", &viewer).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["id"], b["id"]);
    let next = page["next"].as_str().unwrap();
    let (_, rest) = env
        .get(&format!("/api/v1/jobs?limit=2&cursor={next}"), &viewer)
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next"], Value::Null);
    let (s, _) = env.get("/api/v1/jobs?cursor=x", &viewer).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env.get("/api/v1/jobs/job_nope", &viewer).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Other orgs' jobs are not found.
    let id = b["id"].as_str().unwrap();
    let (s, _) = env.get(&format!("/api/v1/jobs/{id}"), &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Cancelling needs operator.
    let (s, _) = env
        .post(&format!("/api/v1/jobs/{id}/cancel"), &viewer, json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_give_the_same_job() {
    let env = Env::new().await;
    let ids = setup(&env, &tag("idem"), 2).await;
    let body = json!({"plugin": "bulk", "op": "read", "devices": {"ids": ids}});
    let (s, first) = env
        .post_idempotent("/api/v1/jobs", &env.admin, body.clone(), "k-1")
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let again = env
        .client
        .send(
            "POST",
            "/api/v1/jobs",
            Some(&env.admin),
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["id"], first["id"]);
    assert_eq!(again.headers["idempotent-replay"], "true");
    assert_eq!(
        again.headers["location"].to_str().unwrap(),
        format!("/api/v1/jobs/{}", first["id"].as_str().unwrap())
    );
    let (_, list) = env.get("/api/v1/jobs", &env.admin).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let mut other = body;
    other["op"] = json!("apply");
    other["input"] = json!({"value": "x"});
    let (s, b) = env
        .post_idempotent("/api/v1/jobs", &env.admin, other, "k-1")
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
}

#[tokio::test]
async fn cancel_lets_the_items_in_flight_finish_and_skips_the_rest() {
    let env = Env::new().await;
    let prefix = tag("cancel");
    let ids = setup(&env, &prefix, 24).await;
    let runner = runner::start_with(
        &env.app,
        RunnerConfig {
            workers: 2,
            ..quick()
        },
    );
    let (s, job) = env
        .post(
            "/api/v1/jobs",
            &env.admin,
            json!({"plugin": "bulk", "op": "apply", "input": {"value": "x", "delay_ms": 100},
                   "devices": {"ids": ids}, "confirm": 24}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    // Progress moves: some items done, the job running with a rate and a time left.
    let path = format!("/api/v1/jobs/{id}");
    let running = loop {
        let (_, j) = env.get(&path, &env.admin).await;
        if j["done"].as_u64().unwrap() >= 2 {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(running["state"], "running", "{running}");
    assert!(running["rate_per_s"].as_f64().unwrap() > 0.0, "{running}");
    assert!(running["eta_s"].as_f64().unwrap() > 0.0, "{running}");
    assert_eq!(sum(&running), 24);

    let (s, cancelled) = env
        .post(&format!("/api/v1/jobs/{id}/cancel"), &env.admin, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    // The items in flight finish.
    runner.stop().await;
    let (_, after) = env.get(&path, &env.admin).await;
    assert_eq!(after["state"], "cancelled");
    assert_eq!(after["pending"], 0, "{after}");
    let skipped = after["skipped"].as_u64().unwrap();
    let done = after["done"].as_u64().unwrap();
    assert!(skipped > 0 && done >= 2, "{after}");
    assert_eq!(done + skipped, 24, "{after}");
    let ran: u64 = (0..24).map(|i| applied(&format!("{prefix}-{i}"))).sum();
    assert_eq!(ran, done, "only the items that were run were applied");
    let (_, _, text) = results(&env, &id, "application/x-ndjson").await;
    let skipped_line: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["outcome"] == "skipped")
        .unwrap();
    assert_eq!(skipped_line["error"]["kind"], "cancelled");

    let (s, b) = env
        .post(&format!("/api/v1/jobs/{id}/cancel"), &env.admin, json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(error_message(&b).contains("cancelled"));
}

#[tokio::test]
async fn after_a_runner_died_an_action_in_flight_is_unknown_and_nothing_runs_twice() {
    let env = Env::new().await;
    let prefix = tag("crash");
    let ids = setup(&env, &prefix, 4).await;
    let store = &env.app.store;
    let org = store.org_by_name("acme").await.unwrap().unwrap();
    let input = json!({"value": "x"});
    let selection = json!({"ids": ids});
    let job = store
        .create_job(NewJob {
            org_id: org.id,
            plugin: "bulk",
            op: "apply",
            kind: "action",
            input: &input,
            selection: &selection,
            devices: &ids,
            created_by: "key:test",
            key_id: None,
            user_id: None,
        })
        .await
        .unwrap();
    // A replica that died: it claimed three items (short leases); it had made the call of the
    // first (its idempotency record claimed, no outcome), recorded the outcome of the second,
    // and not yet called the third.
    let lease = Duration::from_millis(200);
    let mut claimed = Vec::new();
    for _ in 0..3 {
        claimed.push(store.claim_job_item("dead", lease).await.unwrap().unwrap());
    }
    let key = |i: usize| format!("job:{}:{}", job.id, claimed[i].device_id);
    let fingerprint = |i: usize| json!([claimed[i].device_id, "bulk", "apply", input]).to_string();
    for i in 0..2 {
        let claim = store
            .claim_idempotency(org.id, &key(i), &fingerprint(i))
            .await
            .unwrap();
        assert_eq!(claim, IdempotencyClaim::Claimed);
    }
    let record =
        json!({"outcome": "ok", "error": null, "result": {"tag": "recorded", "applied": 1}});
    store
        .complete_idempotency(org.id, &key(1), 200, &record.to_string())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let _runner = runner::start_with(&env.app, quick());
    let ended = until_ended(&env, &job.id).await;
    assert_eq!(ended["state"], "done", "{ended}");
    assert_eq!(ended["unknown"], 1, "{ended}");
    assert_eq!(ended["done"], 3, "{ended}");
    let (_, _, text) = results(&env, &job.id, "application/x-ndjson").await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["outcome"], "unknown");
    assert_eq!(lines[0]["error"]["kind"], "interrupted");
    assert_eq!(lines[1]["outcome"], "ok");
    assert_eq!(lines[1]["result"]["tag"], "recorded");
    // The one in flight and the one recorded were not called again; the rest once.
    assert_eq!(applied(&format!("{prefix}-0")), 0);
    assert_eq!(applied(&format!("{prefix}-1")), 0);
    assert_eq!(applied(&format!("{prefix}-2")), 1);
    assert_eq!(applied(&format!("{prefix}-3")), 1);
    assert_eq!(
        store
            .job_items(&job.id, None, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.outcome)
            .collect::<Vec<_>>(),
        [
            ItemOutcome::Unknown,
            ItemOutcome::Ok,
            ItemOutcome::Ok,
            ItemOutcome::Ok
        ]
    );
}

#[tokio::test]
async fn a_stopped_runner_leaves_nothing_in_flight_and_a_view_job_reruns_safely() {
    let env = Env::new().await;
    let ids = setup(&env, &tag("view"), 3).await;
    let store = &env.app.store;
    let (s, job) = env
        .post(
            "/api/v1/jobs",
            &env.admin,
            json!({"plugin": "bulk", "op": "read", "devices": {"ids": ids}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let id = job["id"].as_str().unwrap();
    // A view item claimed by a replica that died is run again.
    store
        .claim_job_item("dead", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let runner: Runner = runner::start_with(&env.app, quick());
    let ended = until_ended(&env, id).await;
    runner.stop().await;
    assert_eq!(
        (ended["state"].as_str(), ended["done"].as_u64()),
        (Some("done"), Some(3))
    );
}

#[tokio::test]
async fn finished_jobs_older_than_the_cutoff_are_pruned_in_batches() {
    let env = Env::new().await;
    let ids = setup(&env, &tag("prune"), 5).await;
    let store = &env.app.store;
    let body = json!({"plugin": "bulk", "op": "read", "devices": {"ids": ids}});
    let (_, finished) = env.post("/api/v1/jobs", &env.admin, body.clone()).await;
    let (_, running) = env.post("/api/v1/jobs", &env.admin, body).await;
    let finished = finished["id"].as_str().unwrap();
    let running = running["id"].as_str().unwrap();
    let (s, _) = env
        .post(
            &format!("/api/v1/jobs/{finished}/cancel"),
            &env.admin,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Nothing ended before a cutoff in the past.
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(store.prune_jobs_finished_before(past, 2).await.unwrap(), 0);
    let future = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        store.prune_jobs_finished_before(future, 2).await.unwrap(),
        1
    );
    let (s, _) = env
        .get(&format!("/api/v1/jobs/{finished}"), &env.admin)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        store
            .job_items(finished, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The job that has not ended stays, with its items.
    let (s, _) = env
        .get(&format!("/api/v1/jobs/{running}"), &env.admin)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(store.job_items(running, None, 10).await.unwrap().len(), 5);

    // The background retention run of `devext serve`: a job that ended within the period
    // stays; once the period is over it goes.
    let (s, _) = env
        .post(
            &format!("/api/v1/jobs/{running}/cancel"),
            &env.admin,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let policy = |jobs| RetentionPolicy {
        audit: None,
        idempotency: None,
        sessions: None,
        jobs: Some(jobs),
        ..RetentionPolicy::default()
    };
    let kept = retention::prune(store, &policy(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(kept.jobs, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let pruned = retention::prune(store, &policy(Duration::from_millis(5)))
        .await
        .unwrap();
    assert_eq!(pruned.jobs, 1);
    let (s, _) = env
        .get(&format!("/api/v1/jobs/{running}"), &env.admin)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_job_whose_extension_was_switched_off_fails_and_skips_what_is_left() {
    let env = Env::new().await;
    let prefix = tag("off");
    let ids = setup(&env, &prefix, 3).await;
    let (s, job) = env
        .post(
            "/api/v1/jobs",
            &env.admin,
            json!({"plugin": "bulk", "op": "apply", "input": {"value": "x"},
                   "devices": {"ids": ids}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let (s, _) = env
        .put(
            "/api/v1/extensions/bulk",
            &env.admin,
            json!({"enabled": false, "config": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let runner = runner::start_with(&env.app, quick());
    let id = job["id"].as_str().unwrap();
    until_ended(&env, id).await;
    // Items other workers had claimed finish (skipped too).
    runner.stop().await;
    let (_, ended) = env.get(&format!("/api/v1/jobs/{id}"), &env.admin).await;
    assert_eq!(ended["state"], "failed", "{ended}");
    assert_eq!(ended["error"]["kind"], "conflict", "{ended}");
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not switched on")
    );
    assert_eq!(
        (ended["skipped"].as_u64(), ended["done"].as_u64()),
        (Some(3), Some(0)),
        "{ended}"
    );
    assert_eq!(sum(&ended), 3);
    assert!((0..3).all(|i| applied(&format!("{prefix}-{i}")) == 0));
}

#[tokio::test]
async fn jobs_running_at_once_share_the_runner_a_small_one_is_not_queued_behind_a_large_one() {
    let env = Env::new().await;
    let ids = setup(&env, &tag("share"), 22).await;
    let create = |devices: &[String]| {
        json!({"plugin": "bulk", "op": "apply", "input": {"value": "x", "delay_ms": 40},
               "devices": {"ids": devices}, "confirm": devices.len()})
    };
    let (_, large) = env
        .post("/api/v1/jobs", &env.admin, create(&ids[..20]))
        .await;
    let (_, small) = env
        .post("/api/v1/jobs", &env.admin, create(&ids[20..]))
        .await;
    let _runner = runner::start_with(
        &env.app,
        RunnerConfig {
            workers: 1,
            ..quick()
        },
    );
    let small = until_ended(&env, small["id"].as_str().unwrap()).await;
    assert_eq!(small["done"], 2, "{small}");
    let (_, large) = env
        .get(
            &format!("/api/v1/jobs/{}", large["id"].as_str().unwrap()),
            &env.admin,
        )
        .await;
    assert!(large["pending"].as_u64().unwrap() > 0, "{large}");
}
