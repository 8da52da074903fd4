//! Bulk jobs in the dashboard, in-process, with a plugin the dashboard has never seen
//! (`fixture_hostile`: every string it supplies carries `<script>` and `"><img onerror=...>`):
//! devices ticked in the list (or all matching a search) → an operation and its input from the
//! schema-generated form → the confirmation page (a destructive one: type the count) → the job's
//! page with its progress, counts and results → the downloads (JSON Lines and CSV) and the Jobs
//! page; the anti-forgery token, role rules (a viewer runs views, not actions), and every
//! plugin string rendered as text.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use devext_host::RuntimeConfig;
use devext_service::store::{Role, Store};
use devext_service::testing::TestService;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use devext_fixture_hostile as _;

const PASSWORD: &str = "correct horse battery";
const PLUGIN: &str = "fixture_hostile";

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(
    svc: &TestService,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<&[(&str, &str)]>,
) -> Page {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "t")
        .header("origin", "http://t");
    if !cookie.is_empty() {
        req = req.header("cookie", format!("devext_session={cookie}"));
    }
    let req = match form {
        Some(f) => req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(f).unwrap())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let response = svc.router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn assert_inert(page: &str, what: &str) {
    assert!(
        !page.contains("<script>alert(1)</script>"),
        "{what}: a script ran: {page}"
    );
    assert!(
        !page.contains("<img src=x"),
        "{what}: an attribute broke out: {page}"
    );
}

/// A user of `acme` with `role`, signed in: session token and anti-forgery token.
async fn signed_in(svc: &TestService, email: &str, role: Role) -> (String, String) {
    let org = svc.app.store.org_by_name("acme").await.unwrap().unwrap();
    devext_service::users::create_user(&svc.app.store, org.id, email, role, PASSWORD)
        .await
        .unwrap();
    let page = send(
        svc,
        "POST",
        "/sign-in",
        "",
        Some(&[("email", email), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let token = page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .trim_start_matches("devext_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = send(svc, "GET", "/jobs", &token, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let csrf = hidden(&page.text, "csrf");
    (token, csrf)
}

/// The value of the first hidden field `name` in `page`.
fn hidden(page: &str, name: &str) -> String {
    page.split(&format!(r#"name="{name}" value=""#))
        .nth(1)
        .unwrap_or_else(|| panic!("no field {name} in {page}"))
        .split('"')
        .next()
        .unwrap()
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Switches the hostile extension on and creates `n` devices `h-0`, `h-1`, ...: their ids.
async fn fleet(svc: &TestService, n: usize) -> Vec<String> {
    let (s, b) = svc
        .client
        .send(
            "PUT",
            &format!("/api/v1/extensions/{PLUGIN}"),
            Some(&svc.admin),
            Some(json!({"enabled": true, "config": {
                "endpoint": "https://example.com/", "token": "tok-secret-1", "mode": "calm", "retries": 2
            }})),
            &[],
        )
        .await
        .status_and_body();
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut ids = Vec::new();
    for i in 0..n {
        let (s, d) = svc
            .client
            .send(
                "POST",
                "/api/v1/devices",
                Some(&svc.admin),
                Some(json!({"name": format!("h-{i}"), "extensions": {PLUGIN: {"serial": format!("SER{i:04}")}}})),
                &[],
            )
            .await
            .status_and_body();
        assert_eq!(s, StatusCode::CREATED, "{d}");
        ids.push(d["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// The job once it has ended (polled through the API).
async fn finished(svc: &TestService, id: &str) -> Value {
    for _ in 0..200 {
        let (s, job) = svc
            .client
            .send(
                "GET",
                &format!("/api/v1/jobs/{id}"),
                Some(&svc.admin),
                None,
                &[],
            )
            .await
            .status_and_body();
        assert_eq!(s, StatusCode::OK, "{job}");
        if matches!(job["state"].as_str(), Some("done" | "cancelled" | "failed")) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn devices_ticked_in_the_list_run_as_a_job_with_progress_results_and_downloads() {
    let svc = TestService::start(RuntimeConfig::default()).await;
    let _runner = devext_service::jobs::runner::start(&svc.app);
    let ids = fleet(&svc, 3).await;
    let (token, csrf) = signed_in(&svc, "ann@example.com", Role::Admin).await;

    // The list offers a box per device and "all N", in a form that opens /jobs/new.
    let page = send(&svc, "GET", "/devices", &token, None).await;
    assert!(page.text.contains(r#"action="/jobs/new""#), "{}", page.text);
    for id in &ids {
        assert!(
            page.text
                .contains(&format!(r#"name="id" value="{id}" aria-label="Select "#)),
            "{}",
            page.text
        );
    }
    assert!(page.text.contains("All 3 devices"), "{}", page.text);
    assert!(
        page.text.contains(r#"href="/jobs""#),
        "Jobs in the navigation"
    );

    // Two ticked: the operations, from the plugin's manifest, its strings as text.
    let path = format!("/jobs/new?id={}&id={}", ids[0], ids[2]);
    let page = send(&svc, "GET", &path, &token, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_inert(&page.text, "new job");
    assert!(
        page.text.contains("On <strong>2 selected devices</strong>"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(r#"name="op" value="poke""#)
            && page.text.contains(r#"name="op" value="break""#)
            && page.text.contains(r#"name="op" value="status""#),
        "{}",
        page.text
    );
    assert!(page.text.contains(r#"name="f.level""#), "its input form");

    // A value the schema refuses: shown at its field, nothing created.
    let bad = send(
        &svc,
        "POST",
        "/jobs/confirm",
        &token,
        Some(&[
            ("csrf", &csrf),
            ("id", &ids[0]),
            ("plugin", PLUGIN),
            ("op", "poke"),
            ("f.level", "low"),
            ("f.text", &"x".repeat(51)),
        ]),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(bad.text.contains("field-error"), "{}", bad.text);

    // The confirmation page: what will run on what, nothing created yet.
    let text = "<script>alert(1)</script>";
    let confirm = send(
        &svc,
        "POST",
        "/jobs/confirm",
        &token,
        Some(&[
            ("csrf", &csrf),
            ("id", &ids[0]),
            ("id", &ids[2]),
            ("plugin", PLUGIN),
            ("op", "poke"),
            ("f.level", "low"),
            ("f.text", text),
        ]),
    )
    .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert_inert(&confirm.text, "confirm");
    assert!(
        confirm.text.contains("Start the job on 2 devices"),
        "{}",
        confirm.text
    );
    assert!(
        !confirm.text.contains(r#"name="confirm""#),
        "not destructive: no count to type"
    );
    let (_, listed) = svc
        .client
        .send("GET", "/api/v1/jobs", Some(&svc.admin), None, &[])
        .await
        .status_and_body();
    assert_eq!(
        listed["items"],
        json!([]),
        "nothing created before the confirmation"
    );
    let input_json = hidden(&confirm.text, "input_json");
    assert_eq!(
        serde_json::from_str::<Value>(&input_json).unwrap(),
        json!({"level": "low", "text": text})
    );
    let key = hidden(&confirm.text, "idempotency_key");
    let start: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("id", &ids[0]),
        ("id", &ids[2]),
        ("plugin", PLUGIN),
        ("op", "poke"),
        ("input_json", &input_json),
        ("idempotency_key", &key),
    ];
    // Without the session's token: refused, nothing created.
    let forged: Vec<(&str, &str)> = start
        .iter()
        .copied()
        .filter(|(n, _)| *n != "csrf")
        .collect();
    let page = send(&svc, "POST", "/jobs", &token, Some(&forged)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    let created = send(&svc, "POST", "/jobs", &token, Some(&start)).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let job_path = created.location().to_owned();
    let job_id = job_path.strip_prefix("/jobs/").unwrap().to_owned();
    assert!(job_id.starts_with("job_"), "{job_path}");
    // The same form sent twice: the same job.
    let again = send(&svc, "POST", "/jobs", &token, Some(&start)).await;
    assert_eq!(again.location(), job_path);

    let job = finished(&svc, &job_id).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["done"], 2, "{job}");
    assert_eq!(job["selection"], json!({"ids": [&ids[0], &ids[2]]}));
    assert_eq!(job["input"]["text"], text);

    // Its page: the bar full, counts, per-device results (plugin output as text), downloads.
    let page = send(&svc, "GET", &job_path, &token, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_inert(&page.text, "job page");
    assert!(
        page.text
            .contains(r#"<progress data-job-progress max="2" value="2">"#),
        "{}",
        page.text
    );
    assert!(page.text.contains(r#"data-finished="1""#), "{}", page.text);
    assert!(
        !page.text.contains("http-equiv"),
        "a finished job's page does not refresh"
    );
    assert!(
        page.text
            .contains(r#"<span data-job-field="done">2</span>"#),
        "{}",
        page.text
    );
    let results: Vec<&str> = page.text.split("badge-outcome-").skip(1).collect();
    assert_eq!(results.len(), 2, "{}", page.text);
    assert!(
        results.iter().all(|r| r.starts_with(r#"ok""#)),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains(&format!(r#"href="/devices/{}""#, ids[0])),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains(&format!(r#"href="/jobs/{job_id}/results.csv""#))
    );
    assert!(
        !page.text.contains("Cancel the job"),
        "a finished job cannot be cancelled"
    );

    let csv = send(
        &svc,
        "GET",
        &format!("/jobs/{job_id}/results.csv"),
        &token,
        None,
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{:?}",
        csv.headers
    );
    assert_eq!(
        csv.headers["content-disposition"],
        format!("attachment; filename=\"{job_id}-results.csv\"").as_str()
    );
    let mut rows = csv.text.lines();
    assert_eq!(
        rows.next(),
        Some("device,outcome,error_kind,error_message,result")
    );
    assert_eq!(rows.count(), 2, "{}", csv.text);
    let jsonl = send(
        &svc,
        "GET",
        &format!("/jobs/{job_id}/results.jsonl"),
        &token,
        None,
    )
    .await;
    assert_eq!(jsonl.status, StatusCode::OK);
    let lines: Vec<Value> = jsonl
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["device"], ids[0].as_str());
    assert_eq!(lines[1]["device"], ids[2].as_str());
    assert!(lines.iter().all(|l| l["outcome"] == "ok"));

    // The Jobs page lists it with its progress.
    let page = send(&svc, "GET", "/jobs", &token, None).await;
    assert!(
        page.text.contains(&format!(r#"href="/jobs/{job_id}""#)),
        "{}",
        page.text
    );
    assert!(page.text.contains(r#"max="2" value="2""#), "{}", page.text);
    assert_inert(&page.text, "jobs page");

    // Cancelling a finished job: the API's refusal in words.
    let page = send(
        &svc,
        "POST",
        &format!("/jobs/{job_id}/cancel"),
        &token,
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.text);
    assert!(page.text.contains("Not cancelled: "), "{}", page.text);
}

#[tokio::test]
async fn a_destructive_job_on_all_matching_devices_needs_the_count_typed() {
    let svc = TestService::start(RuntimeConfig::default()).await;
    let _runner = devext_service::jobs::runner::start(&svc.app);
    let ids = fleet(&svc, 7).await;
    let (token, csrf) = signed_in(&svc, "ann@example.com", Role::Admin).await;
    // A search for them: "all 7 matching", a selection by filter.
    let page = send(&svc, "GET", "/devices?q=h-", &token, None).await;
    assert!(
        page.text.contains("All 7 devices matching this search"),
        "{}",
        page.text
    );
    let sel: Vec<(&str, &str)> = vec![("all", "1"), ("q", "h-")];
    let mut form = vec![("csrf", csrf.as_str()), ("plugin", PLUGIN), ("op", "break")];
    form.extend(sel.iter().copied());
    let confirm = send(&svc, "POST", "/jobs/confirm", &token, Some(&form)).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(
        confirm
            .text
            .contains("all 7 devices whose name contains “h-”"),
        "{}",
        confirm.text
    );
    assert!(
        confirm
            .text
            .contains("Type the number of devices (7) to confirm"),
        "{}",
        confirm.text
    );
    let key = hidden(&confirm.text, "idempotency_key");
    let mut start = vec![
        ("csrf", csrf.as_str()),
        ("plugin", PLUGIN),
        ("op", "break"),
        ("input_json", "{}"),
        ("idempotency_key", key.as_str()),
    ];
    start.extend(sel.iter().copied());
    // Not typed, or typed wrong: not started.
    let page = send(&svc, "POST", "/jobs", &token, Some(&start)).await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.text
    );
    assert!(
        page.text.contains("type 7, the number of devices"),
        "{}",
        page.text
    );
    let mut wrong = start.clone();
    wrong.push(("confirm", "6"));
    let page = send(&svc, "POST", "/jobs", &token, Some(&wrong)).await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.text
    );
    assert!(
        page.text.contains("you typed 6, but the selection holds 7"),
        "{}",
        page.text
    );
    let (_, listed) = svc
        .client
        .send("GET", "/api/v1/jobs", Some(&svc.admin), None, &[])
        .await
        .status_and_body();
    assert_eq!(listed["items"], json!([]), "nothing created");
    // Typed right: the job runs on all 7; each item fails with the plugin's hostile error,
    // shown as text.
    start.push(("confirm", "7"));
    let created = send(&svc, "POST", "/jobs", &token, Some(&start)).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let job_id = created
        .location()
        .strip_prefix("/jobs/")
        .unwrap()
        .to_owned();
    let job = finished(&svc, &job_id).await;
    assert_eq!(
        (job["total"].as_u64(), job["failed"].as_u64()),
        (Some(7), Some(7)),
        "{job}"
    );
    assert_eq!(job["selection"], json!({"filter": {"name": "h-"}}));
    let page = send(&svc, "GET", &format!("/jobs/{job_id}"), &token, None).await;
    assert_inert(&page.text, "failed results");
    assert_eq!(page.text.matches("badge-outcome-failed").count(), 7);
    assert!(
        page.text.contains("refused &lt;script&gt;"),
        "{}",
        page.text
    );
    assert_eq!(ids.len(), 7);
}

#[tokio::test]
async fn a_viewer_sees_jobs_and_runs_views_but_not_actions() {
    let svc = TestService::start(RuntimeConfig::default()).await;
    let _runner = devext_service::jobs::runner::start(&svc.app);
    let ids = fleet(&svc, 2).await;
    let (token, csrf) = signed_in(&svc, "vic@example.com", Role::Viewer).await;
    let page = send(
        &svc,
        "GET",
        &format!("/jobs/new?id={}", ids[0]),
        &token,
        None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains(r#"name="op" value="status""#),
        "{}",
        page.text
    );
    assert!(
        !page.text.contains(r#"name="op" value="poke""#)
            && !page.text.contains(r#"name="op" value="break""#),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains("may run views on many devices, not actions")
    );
    // A forged post of an action: the API's role check refuses it.
    let page = send(
        &svc,
        "POST",
        "/jobs",
        &token,
        Some(&[
            ("csrf", &csrf),
            ("id", &ids[0]),
            ("plugin", PLUGIN),
            ("op", "poke"),
            ("input_json", r#"{"level": "low"}"#),
            ("idempotency_key", "k1"),
        ]),
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    assert!(page.text.contains("Not started:"), "{}", page.text);
    // A view job: allowed; its page has no Cancel button for the viewer.
    let page = send(
        &svc,
        "POST",
        "/jobs",
        &token,
        Some(&[
            ("csrf", &csrf),
            ("id", &ids[0]),
            ("id", &ids[1]),
            ("plugin", PLUGIN),
            ("op", "status"),
            ("input_json", "{}"),
            ("idempotency_key", "k2"),
        ]),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let job_id = page.location().strip_prefix("/jobs/").unwrap().to_owned();
    let job = finished(&svc, &job_id).await;
    assert_eq!(job["done"], 2, "{job}");
    let page = send(&svc, "GET", &format!("/jobs/{job_id}"), &token, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_inert(&page.text, "view results");
    assert!(!page.text.contains("Cancel the job"));
    let page = send(&svc, "GET", "/jobs", &token, None).await;
    assert!(page.text.contains(&job_id), "{}", page.text);
}

#[tokio::test]
async fn a_waiting_job_refreshes_without_script_and_cancels_from_its_page() {
    // No runner: the job waits, as behind a long one.
    let svc = TestService::start(RuntimeConfig::default()).await;
    let ids = fleet(&svc, 2).await;
    let (token, csrf) = signed_in(&svc, "ann@example.com", Role::Operator).await;
    let page = send(
        &svc,
        "POST",
        "/jobs",
        &token,
        Some(&[
            ("csrf", &csrf),
            ("id", &ids[0]),
            ("id", &ids[1]),
            ("plugin", PLUGIN),
            ("op", "poke"),
            ("input_json", r#"{"level": "low"}"#),
            ("idempotency_key", "w1"),
        ]),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let job_path = page.location().to_owned();
    let page = send(&svc, "GET", &job_path, &token, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text
            .contains(r#"<noscript><meta http-equiv="refresh" content="3"></noscript>"#),
        "{}",
        page.text
    );
    assert!(!page.text.contains("data-finished"), "{}", page.text);
    assert!(
        page.text
            .contains(r#"<progress data-job-progress max="2" value="0">"#),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains(&format!(r#"<a href="{job_path}">Reload</a>"#)),
        "{}",
        page.text
    );
    assert!(page.text.contains("Cancel the job"), "{}", page.text);
    let page = send(
        &svc,
        "POST",
        &format!("{job_path}/cancel"),
        &token,
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), job_path);
    let page = send(&svc, "GET", &job_path, &token, None).await;
    assert!(page.text.contains(r#"data-finished="1""#), "{}", page.text);
    assert!(page.text.contains(">cancelled</span>"), "{}", page.text);
    assert_eq!(
        page.text.matches("badge-outcome-skipped").count(),
        2,
        "{}",
        page.text
    );
}

#[tokio::test]
async fn a_large_job_s_page_shows_the_first_500_results_and_the_downloads_hold_all() {
    let svc = TestService::start(RuntimeConfig::default()).await;
    let _runner = devext_service::jobs::runner::start(&svc.app);
    let ids = fleet(&svc, 501).await;
    let (token, csrf) = signed_in(&svc, "ann@example.com", Role::Admin).await;
    let page = send(
        &svc,
        "POST",
        "/jobs",
        &token,
        Some(&[
            ("csrf", &csrf),
            ("all", "1"),
            ("plugin", PLUGIN),
            ("op", "status"),
            ("input_json", "{}"),
            ("idempotency_key", "big"),
        ]),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let job_path = page.location().to_owned();
    let job_id = job_path.strip_prefix("/jobs/").unwrap();
    let job = finished(&svc, job_id).await;
    assert_eq!(job["done"], 501, "{job}");
    let page = send(&svc, "GET", &job_path, &token, None).await;
    assert_eq!(page.text.matches("badge-outcome-ok").count(), 500);
    assert!(
        page.text
            .contains("The first 500 of 501 devices; the downloads hold them all."),
        "{}",
        page.text
    );
    let jsonl = send(
        &svc,
        "GET",
        &format!("{job_path}/results.jsonl"),
        &token,
        None,
    )
    .await;
    assert_eq!(jsonl.text.lines().count(), 501);
    assert!(jsonl.text.contains(&ids[500]));
}
