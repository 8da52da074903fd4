//! `devext jobs` as a client of a running `devext serve` (a child process, SQLite) whose
//! organisation uses the simulator (run in-process by the test, limits raised): run a job and
//! follow it (plain progress lines without a terminal, a bar on one (a pty from util-linux
//! `script`), the summary, the exit code), results as
//! JSON Lines and CSV, list/show, cancel, and the errors of a wrong key or URL.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Value, json};

use crate::support::{Api, devext_binary, fast_org, lift_limits, sim, sim_of, unknown_iccid};

/// A `devext serve` child process, killed when dropped.
struct Served {
    child: Child,
    url: String,
    key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn devext_command() -> Command {
    let mut c = Command::new(devext_binary());
    clean_env(&mut c);
    c
}

/// Without the caller's devext settings.
fn clean_env(c: &mut Command) {
    for var in [
        "DEVEXT_PLUGINS",
        "DEVEXT_ALLOW_LOOPBACK_HTTP",
        "DEVEXT_LOG",
        "DEVEXT_DB",
        "DEVEXT_URL",
        "DEVEXT_KEY",
        "DEVEXT_SECRET_KEY",
    ] {
        c.env_remove(var);
    }
}

/// An organisation `acme` in a fresh SQLite store, served on a free port.
fn serve() -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("devext.db");
    let out = devext_command()
        .args(["orgs", "create", "acme", "--db"])
        .arg(&db)
        .output()
        .expect("devext orgs create");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("dvx_"), "{key}");
    let config = dir.path().join("devext.toml");
    std::fs::write(
        &config,
        "allow_loopback_http = true\nview_cache_entries = 0\n",
    )
    .unwrap();
    let mut child = devext_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("devext serve starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("a first line");
    let addr = line
        .strip_prefix("devext serving on http://")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    std::thread::spawn(move || for _ in out.lines() {});
    Served {
        child,
        url: format!("http://{addr}"),
        key,
        _dir: dir,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One API call with the admin key: status and JSON body.
async fn api(s: &Served, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, format!("{}{path}", s.url))
        .bearer_auth(&s.key);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let response = req.send().await.expect("the service answers");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// `devext jobs ARGS` against `s` (stdout and stderr are pipes, not a terminal).
async fn jobs(s: &Served, args: &[&str], key: Option<&str>) -> Output {
    let mut c = devext_command();
    c.arg("jobs").args(args).env("DEVEXT_URL", &s.url);
    if let Some(k) = key {
        c.env("DEVEXT_KEY", k);
    }
    tokio::task::spawn_blocking(move || c.output().expect("run devext jobs"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_follow_results_cancel_and_clear_errors() {
    let sim = sim().await;
    lift_limits(&sim);
    let s = serve();
    let key = s.key.clone();
    let (status, body) = api(
        &s,
        reqwest::Method::PUT,
        "/api/v1/extensions/jasper",
        Some(json!({"enabled": true, "config": fast_org(&sim, Api::Rest)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let activated: Vec<String> = sim
        .sims()
        .into_iter()
        .filter(|s| s.status == "activated")
        .map(|s| s.iccid)
        .take(8)
        .collect();
    assert!(activated.len() >= 6, "{} activated SIMs", activated.len());
    let mut ids = Vec::new();
    for (i, iccid) in activated.iter().enumerate() {
        let (status, d) = api(
            &s,
            reqwest::Method::POST,
            "/api/v1/devices",
            Some(json!({"name": format!("fleet-{i:02}"), "extensions": {"jasper": {"iccid": iccid}}})),
        )
        .await;
        assert_eq!(status, 201, "{d}");
        ids.push(d["id"].as_str().unwrap().to_owned());
    }
    let (status, d) = api(
        &s,
        reqwest::Method::POST,
        "/api/v1/devices",
        Some(json!({"name": "ghost-1", "extensions": {"jasper": {"iccid": unknown_iccid(&sim)}}})),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let dir = tempfile::tempdir().unwrap();
    let ids_file = dir.path().join("ids.txt");
    std::fs::write(&ids_file, format!("# the fleet\n{}\n", ids.join("\n"))).unwrap();
    let ids_arg = ids_file.to_str().unwrap();
    let n = ids.len().to_string();

    // A destructive op on more than 5 devices needs --confirm N: nothing is created without it.
    let run_args = [
        "run",
        "--op",
        "jasper.set_status",
        "--input",
        r#"{"status": "deactivated"}"#,
        "--devices",
        ids_arg,
    ];
    let out = jobs(&s, &run_args, Some(&key)).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("HTTP 409 confirmation_required"), "{err}");
    assert!(err.contains(&format!("--confirm {n}")), "{err}");
    assert!(!err.contains(&key), "the key is never printed: {err}");
    assert!(
        sim.sims()
            .iter()
            .all(|x| !activated.contains(&x.iccid) || x.status == "activated")
    );

    // With it: followed to the end, plain progress lines on stderr (not a terminal: no bar, no
    // escape codes), the summary on stdout, exit 0.
    let mut confirmed = run_args.to_vec();
    confirmed.extend(["--confirm", &n]);
    let out = jobs(&s, &confirmed, Some(&key)).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("job_")).collect();
    assert!(!progress.is_empty(), "{stderr}");
    let last = progress.last().unwrap();
    assert!(
        last.contains(&format!(
            " done: {n}/{n} (done {n}, failed 0, skipped 0, unknown 0"
        )),
        "{stderr}"
    );
    let summary = stdout.trim();
    let job_id = summary
        .strip_prefix("job ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{summary}"))
        .to_owned();
    assert!(
        summary.starts_with(&format!(
            "job {job_id} done: {n} done, 0 failed, 0 skipped, 0 unknown of {n} in "
        )),
        "{summary}"
    );
    for iccid in &activated {
        assert_eq!(sim_of(&sim, iccid).status, "deactivated", "{iccid}");
    }

    // Results as JSON Lines (stdout), one per device in the file's order.
    let out = jobs(&s, &["results", &job_id], Some(&key)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let devices: Vec<&str> = lines
        .iter()
        .map(|l| l["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(lines.iter().all(|l| l["outcome"] == "ok"), "{lines:?}");
    // And as CSV into a file.
    let csv = dir.path().join("results.csv");
    let out = jobs(
        &s,
        &["results", &job_id, "--csv", "--out", csv.to_str().unwrap()],
        Some(&key),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let csv = std::fs::read_to_string(&csv).unwrap();
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("device,outcome,error_kind,error_message,result")
    );
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), ids.len(), "{csv}");
    assert!(rows[0].starts_with(&format!("{},ok,,,", ids[0])), "{csv}");

    // list and show.
    let out = jobs(&s, &["list"], Some(&key)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    assert!(list.starts_with("ID "), "{list}");
    assert!(
        list.lines().any(|l| l.starts_with(&job_id)
            && l.contains("jasper.set_status")
            && l.contains(&format!("{n}/{n}"))),
        "{list}"
    );
    let out = jobs(&s, &["show", &job_id, "--json"], Some(&key)).await;
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["state"], "done");
    assert_eq!(shown["done"], ids.len());

    // A device the upstream does not know: the item fails, the summary says so, exit 1. By a
    // filter this time.
    let out = jobs(
        &s,
        &["run", "--op", "jasper.overview", "--filter", "name=ghost"],
        Some(&key),
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(" done: 0 done, 1 failed, 0 skipped, 0 unknown of 1 in "),
        "{stdout}"
    );

    // Cancel: a job slowed to one call a second, detached, then cancelled: the rest skipped.
    let mut slow = fast_org(&sim, Api::Rest);
    slow["rate_per_second"] = json!(1);
    slow["max_in_flight"] = json!(1);
    let (status, body) = api(
        &s,
        reqwest::Method::PUT,
        "/api/v1/extensions/jasper",
        Some(json!({"enabled": true, "config": slow})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // On a terminal (a pty from `script`): a progress bar, drawn and cleared, then the summary.
    let two = dir.path().join("two.txt");
    std::fs::write(&two, format!("{}\n{}\n", ids[0], ids[1])).unwrap();
    let command = format!(
        "'{}' jobs run --op jasper.overview --devices '{}'",
        devext_binary().display(),
        two.display()
    );
    let mut script = Command::new("script");
    clean_env(&mut script);
    script
        .args(["-qefc", &command, "/dev/null"])
        .env("DEVEXT_URL", &s.url)
        .env("DEVEXT_KEY", &key)
        .stdin(Stdio::null());
    match tokio::task::spawn_blocking(move || script.output())
        .await
        .unwrap()
    {
        Ok(out) => {
            let tty = text(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{tty:?}");
            assert!(tty.contains("\u{1b}["), "a bar is drawn: {tty:?}");
            assert!(tty.contains("/2 done "), "its position and counts: {tty:?}");
            assert!(
                tty.contains(" done: 2 done, 0 failed, 0 skipped, 0 unknown of 2 in "),
                "{tty:?}"
            );
        }
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "`script` (util-linux) not installed, and CI is set: {e}"
            );
            println!("skipped: script not installed (the progress bar on a terminal)");
        }
    }
    let mut back = vec![
        "run",
        "--op",
        "jasper.set_status",
        "--input",
        r#"{"status": "activated"}"#,
        "--devices",
        ids_arg,
        "--detach",
    ];
    back.extend(["--confirm", &n]);
    let out = jobs(&s, &back, Some(&key)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let slow_id = text(&out.stdout).trim().to_owned();
    assert!(slow_id.starts_with("job_"), "{slow_id}");
    let out = jobs(&s, &["cancel", &slow_id], Some(&key)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Items in flight finish: wait for the job to settle.
    let mut job = Value::Null;
    for _ in 0..100 {
        let (_, j) = api(
            &s,
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{slow_id}"),
            None,
        )
        .await;
        job = j;
        if job["state"] == "cancelled" && job["pending"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(job["skipped"].as_u64().unwrap() >= 1, "{job}");
    let applied = activated
        .iter()
        .filter(|i| sim_of(&sim, i).status == "activated")
        .count() as u64;
    assert_eq!(applied, job["done"].as_u64().unwrap(), "{job}");
    // Cancelling it again: the service's 409, on one line.
    let out = jobs(&s, &["cancel", &slow_id], Some(&key)).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: POST {}/api/v1/jobs/{slow_id}/cancel: HTTP 409 ",
            s.url
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A wrong key: the 401 in words, the key not echoed.
    let out = jobs(&s, &["list"], Some("dvx_not_a_key_at_all")).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("HTTP 401 unauthenticated"), "{err}");
    assert!(!err.contains("dvx_not_a_key_at_all"), "{err}");
    // No key at all.
    let out = jobs(&s, &["list"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("DEVEXT_KEY is not set"),
        "{}",
        text(&out.stderr)
    );
    // A URL where nothing listens: named in the error.
    let mut c = devext_command();
    c.args(["jobs", "list", "--url", "http://127.0.0.1:9"])
        .env("DEVEXT_KEY", &key);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: GET http://127.0.0.1:9/api/v1/jobs: cannot reach the service"),
        "{err}"
    );
}
