//! A bulk job in the browser: devices ticked in the list, an operation chosen and confirmed,
//! the job's page followed by its script until the job ends (no reload by the test), the
//! results table, and the downloads fetched from the page (the session's cookie, no key).

use std::time::Duration;

use devext_browser_tests::{Browser, Server, chromium, screenshot};
use devext_jasper_sim::SimConfig;
use fantoccini::Client;

use super::{R, click, confirm_config, create_device, css, jasper_settings, main_text, sign_in};

/// Fetches `path` from the page (same origin, the session's cookie): status and text.
async fn fetch(c: &Client, path: &str) -> (u64, String) {
    let got = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {credentials: 'same-origin'})
               .then(r => r.text().then(t => done([r.status, t])))
               .catch(e => done([0, String(e)]));",
            vec![serde_json::json!(path)],
        )
        .await
        .expect("the fetch runs");
    (
        got[0].as_u64().unwrap_or(0),
        got[1].as_str().unwrap_or("").to_owned(),
    )
}

/// Whether the job's page shows it finished (`None` while a reload replaces the page).
async fn job_finished(c: &Client) -> Option<bool> {
    c.execute(
        "const j = document.getElementById('job'); return j ? j.hasAttribute('data-finished') : null;",
        vec![],
    )
    .await
    .ok()?
    .as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_selected_in_the_list_run_as_a_job_followed_to_its_results() -> R {
    let Some((chrome, driver)) = chromium() else {
        return Ok(());
    };
    let sim = devext_jasper_sim::start(SimConfig::default()).await?;
    let server = Server::start(&[]);
    let browser = Browser::start(&chrome, &driver, 1280, 1000).await;
    let c = &browser.client;
    let base = &server.base;
    sign_in(c, base, "admin@example.com").await;
    jasper_settings(c, base, &sim, "rest", false).await;
    let sims: Vec<String> = sim
        .sims()
        .into_iter()
        .filter(|s| s.status == "activated")
        .map(|s| s.iccid)
        .take(3)
        .collect();
    for (i, iccid) in sims.iter().enumerate() {
        create_device(c, base, &format!("job-tracker-{i}")).await;
        confirm_config(c, &format!("{{\"jasper\": {{\"iccid\": \"{iccid}\"}}}}")).await;
        super::wait_text(c, "Changes confirmed").await;
    }

    // One call a second, so that the job is seen running.
    c.goto(&format!("{base}/settings/extensions")).await?;
    super::fill(c, "#ext-jasper-rate-per-second", "1").await;
    click(c, "#ext-jasper form button[type=submit]").await;
    super::wait_text(c, "Saved.").await;

    // The list: tick the three, run an operation.
    c.goto(&format!("{base}/devices?q=job-tracker")).await?;
    let boxes = c.find_all(css("#select-form input[name=id]")).await?;
    assert_eq!(boxes.len(), 3);
    for b in &boxes {
        b.click().await?;
    }
    screenshot(c, "jobs-select").await;
    click(c, "#select-form button[type=submit]").await;
    let text = super::wait_text(c, "New job").await;
    assert!(text.contains("On 3 selected devices"), "{text}");
    // The overview view, on all three.
    click(c, "#job-jasper-overview button[type=submit]").await;
    let text = super::wait_text(c, "Confirm: ").await;
    assert!(text.contains("3 selected devices"), "{text}");
    click(c, "form[action='/jobs'] button[type=submit]").await;
    super::wait_text(c, "Results").await;
    assert!(c.current_url().await?.path().starts_with("/jobs/job_"));
    let job_path = c.current_url().await?.path().to_owned();

    // The page follows the job by itself until it ends: seen running first, then (reloaded by
    // its script) finished.
    assert_eq!(
        job_finished(c).await,
        Some(false),
        "the job ended before its page was shown: {}",
        main_text(c).await
    );
    screenshot(c, "jobs-running").await;
    let mut finished = false;
    for _ in 0..200 {
        if job_finished(c).await == Some(true) {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(finished, "the job never ended: {}", main_text(c).await);
    assert_eq!(c.current_url().await?.path(), job_path);
    let bar = c.find(css("[data-job-progress]")).await?;
    assert_eq!(bar.attr("value").await?.as_deref(), Some("3"));
    assert_eq!(bar.attr("max").await?.as_deref(), Some("3"));
    let rows = c.find_all(css("#results tbody tr")).await?;
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r.text().await?.contains("ok"), "{}", r.text().await?);
    }
    screenshot(c, "jobs-done").await;

    // The downloads, as the links fetch them.
    let (status, csv) = fetch(c, &format!("{job_path}/results.csv")).await;
    assert_eq!(status, 200, "{csv}");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("device,outcome,error_kind,error_message,result")
    );
    assert_eq!(lines.filter(|l| l.contains(",ok,")).count(), 3, "{csv}");
    let (status, jsonl) = fetch(c, &format!("{job_path}/results.jsonl")).await;
    assert_eq!(status, 200, "{jsonl}");
    let outcomes: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(|o| o["outcome"] == "ok"), "{jsonl}");

    // The Jobs page lists it.
    c.goto(&format!("{base}/jobs")).await?;
    let text = main_text(c).await;
    assert!(
        text.contains(job_path.trim_start_matches("/jobs/")),
        "{text}"
    );
    browser.client.clone().close().await?;
    sim.shutdown().await;
    Ok(())
}
