//! Bulk jobs end to end: `devext serve` (the Jasper plugin linked into the binary) against the
//! Jasper simulator, through the jobs API.
//!
//! - A 60-device `set_status` job at Jasper's default limits (5 per second, 1 in flight) with
//!   the simulator enforcing them (strict): every SIM changed once, nothing refused, progress
//!   moves, results downloadable as JSON Lines and CSV.
//! - `devext serve` on SQLite killed with SIGKILL mid-job and started again: the job finishes,
//!   every item applied exactly once or reported `unknown` (the simulator counts its writes).
//! - Three replicas on PostgreSQL sharing a job's items, one killed mid-job: the same.
//!
//! The durability tests raise the simulator's and the plugin's limits to stay short.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use devext_jasper_sim::{LimitSettings, RunningSim, SimConfig};
use serde_json::{Value, json};

#[allow(dead_code)] // this binary uses part of it
mod serve_proc;
#[allow(dead_code)] // this binary uses part of it
mod support;

use crate::serve_proc::{Served, create_org, http, start_serve};
use crate::support::{Api, org};

/// The config file of `devext serve`: the simulator is on loopback.
fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("devext.toml");
    std::fs::write(
        &config,
        "allow_loopback_http = true\nview_cache_entries = 0\ncall_timeout_secs = 30\n",
    )
    .unwrap();
    config
}

/// A simulator with `n` SIMs (and its limits as given).
async fn sim_with(n: usize, limits: LimitSettings) -> RunningSim {
    devext_jasper_sim::start(SimConfig {
        sims: n,
        limits,
        ..SimConfig::default()
    })
    .await
    .expect("start the simulator")
}

/// Jasper switched on with `settings`; `n` devices for activated SIMs: (device id, iccid).
async fn fleet(
    addr: SocketAddr,
    admin: &str,
    sim: &RunningSim,
    settings: Value,
    n: usize,
) -> Vec<(String, String)> {
    let (s, b) = http(
        addr,
        "PUT",
        "/api/v1/extensions/jasper",
        admin,
        Some(&json!({"enabled": true, "config": settings})),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let activated: Vec<String> = sim
        .sims()
        .into_iter()
        .filter(|s| s.status == "activated")
        .map(|s| s.iccid)
        .take(n)
        .collect();
    assert_eq!(activated.len(), n, "the simulator has {n} activated SIMs");
    let mut devices = Vec::new();
    for (i, iccid) in activated.into_iter().enumerate() {
        let body = json!({"name": format!("sim {i}"), "extensions": {"jasper": {"iccid": iccid}}});
        let (s, d) = http(addr, "POST", "/api/v1/devices", admin, Some(&body), &[])
            .await
            .unwrap();
        assert_eq!(s, 201, "{d}");
        devices.push((d["id"].as_str().unwrap().to_owned(), iccid));
    }
    devices
}

/// Starts a job deactivating every device.
async fn deactivate(addr: SocketAddr, admin: &str, devices: &[(String, String)]) -> String {
    let ids: Vec<&str> = devices.iter().map(|(d, _)| d.as_str()).collect();
    let body = json!({"plugin": "jasper", "op": "set_status", "input": {"status": "deactivated"},
                      "devices": {"ids": ids}, "confirm": ids.len()});
    let (s, job) = http(addr, "POST", "/api/v1/jobs", admin, Some(&body), &[])
        .await
        .unwrap();
    assert_eq!(s, 202, "{job}");
    assert_eq!(job["total"], ids.len());
    job["id"].as_str().unwrap().to_owned()
}

async fn job(addr: SocketAddr, admin: &str, id: &str) -> Option<Value> {
    let (s, j) = http(addr, "GET", &format!("/api/v1/jobs/{id}"), admin, None, &[]).await?;
    assert_eq!(s, 200, "{j}");
    Some(j)
}

/// Polls the job until `until` holds; its state then.
async fn poll(
    addr: SocketAddr,
    admin: &str,
    id: &str,
    limit: Duration,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = Instant::now();
    loop {
        if let Some(j) = job(addr, admin, id).await
            && until(&j)
        {
            return j;
        }
        assert!(t0.elapsed() < limit, "job {id}: not there after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ended(j: &Value) -> bool {
    ["done", "cancelled", "failed"].contains(&j["state"].as_str().unwrap_or(""))
}

fn n(j: &Value, k: &str) -> u64 {
    j[k].as_u64().unwrap()
}

/// The job's results as JSON Lines records.
async fn results(addr: SocketAddr, admin: &str, id: &str) -> Vec<Value> {
    let path = format!("/api/v1/jobs/{id}/results");
    let (s, body) = http(addr, "GET", &path, admin, None, &[]).await.unwrap();
    assert_eq!(s, 200);
    body.as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// After a crash: every item ok or unknown, each ok one's SIM deactivated, no SIM written
/// twice (the simulator's writes are the SIMs changed), and at most the items in flight at the
/// kill unknown.
fn applied_once(sim: &RunningSim, devices: &[(String, String)], end: &Value, lines: &[Value]) {
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!(
        n(end, "failed") + n(end, "skipped") + n(end, "pending"),
        0,
        "{end}"
    );
    assert_eq!(
        n(end, "done") + n(end, "unknown"),
        devices.len() as u64,
        "{end}"
    );
    assert_eq!(lines.len(), devices.len());
    for (line, (device, iccid)) in lines.iter().zip(devices) {
        assert_eq!(&line["device"], device);
        if line["outcome"] == "ok" {
            assert_eq!(sim.sim(iccid).unwrap().status, "deactivated", "{line}");
        } else {
            assert_eq!(line["outcome"], "unknown", "{line}");
        }
    }
    let changed = devices
        .iter()
        .filter(|(_, iccid)| sim.sim(iccid).unwrap().status == "deactivated")
        .count() as u64;
    let stats = sim.stats();
    assert_eq!(stats.writes, changed, "a SIM was written twice: {stats:?}");
    // Items in flight at the kill: at most the workers of the killed process (4).
    assert!(n(end, "unknown") <= 4, "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_devices_at_jaspers_default_limits_none_refused_each_changed_once() {
    let sim = sim_with(150, LimitSettings::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db").display().to_string();
    let admin = create_org(&db, None);
    let server = start_serve(&db, None, &config_file(dir.path()));
    let addr = server.addr;
    let devices = fleet(addr, &admin, &sim, org(&sim, Api::Soap), 60).await;
    sim.reset_stats();
    let started = Instant::now();
    let id = deactivate(addr, &admin, &devices).await;
    // Progress moves: seen running part-way, with a rate and a time left.
    let partway = poll(addr, &admin, &id, Duration::from_secs(60), |j| {
        (10..50).contains(&n(j, "done"))
    })
    .await;
    assert_eq!(partway["state"], "running", "{partway}");
    assert!(partway["rate_per_s"].as_f64().unwrap() > 0.0, "{partway}");
    assert!(partway["eta_s"].as_f64().unwrap() > 0.0, "{partway}");
    let end = poll(addr, &admin, &id, Duration::from_secs(90), ended).await;
    let took = started.elapsed();
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!((n(&end, "done"), n(&end, "failed")), (60, 0), "{end}");
    let stats = sim.stats();
    assert_eq!(
        stats.rate_limited, 0,
        "the simulator refused calls: {stats:?}"
    );
    assert_eq!(stats.writes, 60, "{stats:?}");
    assert_eq!(
        stats.requests, 60,
        "one call per item, none retried: {stats:?}"
    );
    assert!(stats.max_in_flight_seen <= 1, "{stats:?}");
    assert!(stats.max_per_second_seen <= 5, "{stats:?}");
    for (_, iccid) in &devices {
        assert_eq!(sim.sim(iccid).unwrap().status, "deactivated");
    }
    println!(
        "60-device job at 5/s: {took:?} ({:.2} items/s); the job says {} items/s",
        60.0 / took.as_secs_f64(),
        end["rate_per_s"]
    );
    // Results, in selection order: JSON Lines and CSV.
    let lines = results(addr, &admin, &id).await;
    assert_eq!(lines.len(), 60);
    for (line, (device, iccid)) in lines.iter().zip(&devices) {
        assert_eq!(&line["device"], device);
        assert_eq!(line["outcome"], "ok");
        assert_eq!(line["result"]["iccid"], iccid.as_str());
        assert_eq!(line["result"]["status"], "deactivated");
    }
    let path = format!("/api/v1/jobs/{id}/results");
    let (s, csv) = http(addr, "GET", &path, &admin, None, &[("accept", "text/csv")])
        .await
        .unwrap();
    assert_eq!(s, 200);
    let rows: Vec<&str> = csv.as_str().unwrap().lines().collect();
    assert_eq!(rows[0], "device,outcome,error_kind,error_message,result");
    assert_eq!(rows.len(), 61);
    assert!(
        rows[1].starts_with(&format!("{},ok,,,", devices[0].0)),
        "{}",
        rows[1]
    );
}

/// The simulator's limits lifted, and the plugin's raised, to keep the durability tests short.
fn fast(sim: &RunningSim) -> Value {
    sim.set_limits(LimitSettings {
        enabled: false,
        ..LimitSettings::default()
    });
    let mut settings = org(sim, Api::Soap);
    settings["rate_per_second"] = json!(20);
    settings["max_in_flight"] = json!(4);
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_job_then_restart_finishes_with_each_item_applied_once_or_unknown() {
    let sim = sim_with(150, LimitSettings::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db").display().to_string();
    let config = config_file(dir.path());
    let admin = create_org(&db, None);
    let mut first = start_serve(&db, None, &config);
    let devices = fleet(first.addr, &admin, &sim, fast(&sim), 60).await;
    sim.reset_stats();
    let id = deactivate(first.addr, &admin, &devices).await;
    let at_kill = poll(first.addr, &admin, &id, Duration::from_secs(30), |j| {
        n(j, "done") >= 15
    })
    .await;
    first.sigkill();
    assert!(
        n(&at_kill, "done") < 60,
        "the job ended before the kill: {at_kill}"
    );
    let second = start_serve(&db, None, &config);
    let end = poll(second.addr, &admin, &id, Duration::from_secs(60), ended).await;
    let lines = results(second.addr, &admin, &id).await;
    applied_once(&sim, &devices, &end, &lines);
    println!(
        "SIGKILL after {} items: the restarted service finished the job ({} ok, {} unknown)",
        n(&at_kill, "done"),
        n(&end, "done"),
        n(&end, "unknown")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_a_job_and_one_killed_mid_job_leaves_nothing_applied_twice() {
    let Some(url) = devext_service::testing::fresh_postgres_database("jobs_replicas").await else {
        println!("skipped: PostgreSQL not installed (jobs over three replicas)");
        return;
    };
    let sim = sim_with(150, LimitSettings::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let key_hex: String = (0..32)
        .map(|i| format!("{:02x}", (i * 53 + 7) % 256))
        .collect();
    let admin = create_org(&url, Some(&key_hex));
    let mut replicas: Vec<Served> = (0..3)
        .map(|_| start_serve(&url, Some(&key_hex), &config))
        .collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let devices = fleet(addrs[0], &admin, &sim, fast(&sim), 90).await;
    sim.reset_stats();
    let id = deactivate(addrs[1], &admin, &devices).await;
    let at_kill = poll(addrs[1], &admin, &id, Duration::from_secs(30), |j| {
        n(j, "done") >= 20
    })
    .await;
    replicas[0].sigkill();
    assert!(
        n(&at_kill, "done") < 90,
        "the job ended before the kill: {at_kill}"
    );
    // The live replicas finish it, the dead one's items handed out once its leases lapse.
    let end = poll(addrs[2], &admin, &id, Duration::from_secs(60), ended).await;
    let lines = results(addrs[1], &admin, &id).await;
    applied_once(&sim, &devices, &end, &lines);
    println!(
        "3 replicas, one killed after {} items: finished ({} ok, {} unknown)",
        n(&at_kill, "done"),
        n(&end, "done"),
        n(&end, "unknown")
    );
}
