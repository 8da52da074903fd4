//! Three `devext serve` replicas on one PostgreSQL, one Jasper account at its default limits
//! (5 per second, 1 in flight) in the simulator, which enforces them (strict): together the
//! replicas keep the account's limits (the shared limiter), a revoked key or a changed setting
//! takes effect on every replica within a second (change announcements), and a replica killed
//! with SIGKILL mid-burst leaves nothing run twice and no acknowledged write lost.
//!
//! Needs PostgreSQL (a throw-away cluster, or `DEVEXT_TEST_DATABASE_URL`); without it the test
//! says "skipped: PostgreSQL not installed" (and fails when `CI` is set).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

#[allow(dead_code)] // this binary uses part of it
mod serve_proc;
#[allow(dead_code)] // this binary uses part of it
mod support;

use crate::serve_proc::{Served, create_org, devext, http, start_serve};
use crate::support::{Api, org, sim};

fn start_replica(url: &str, key_hex: &str, config: &std::path::Path) -> Served {
    start_serve(url, Some(key_hex), config)
}

/// Polls `check` until it holds; how long that took, or `None` after `limit`.
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if check().await {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_account_s_limits_and_survive_a_sigkill() {
    let Some(url) = devext_service::testing::fresh_postgres_database("replicas").await else {
        println!("skipped: PostgreSQL not installed (three replicas)");
        return;
    };
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let key_hex: String = (0..32)
        .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
        .collect();
    let config = dir.path().join("devext.toml");
    // Every view reaches the simulator (no view cache), the simulator is on loopback.
    std::fs::write(
        &config,
        "allow_loopback_http = true\nview_cache_entries = 0\ncall_timeout_secs = 30\n",
    )
    .unwrap();

    // The first admin key, from an empty PostgreSQL store (which records the key's check value).
    let admin = create_org(&url, Some(&key_hex));

    let replicas: Vec<Served> = (0..3)
        .map(|_| start_replica(&url, &key_hex, &config))
        .collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    // A replica with another key refuses to start.
    let other_key: String = "ab".repeat(32);
    let out = devext(Some(&other_key))
        .args(["serve", "--db", &url, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not belong to this store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let settings = json!({"enabled": true, "config": org(&sim, Api::Soap)});
    let (s, b) = http(
        addrs[0],
        "PUT",
        "/api/v1/extensions/jasper",
        &admin,
        Some(&settings),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{b}");
    // 30 SIMs for views, then 9 activated ones for writes.
    let all = sim.sims();
    let writable: Vec<_> = all
        .iter()
        .filter(|s| s.status == "activated")
        .take(9)
        .collect();
    assert_eq!(
        writable.len(),
        9,
        "the simulator's account has activated SIMs"
    );
    let mut sims: Vec<_> = all
        .iter()
        .filter(|s| !writable.iter().any(|w| w.iccid == s.iccid))
        .take(30)
        .collect();
    assert_eq!(sims.len(), 30);
    sims.extend(writable);
    let mut devices = Vec::new();
    for (i, s) in sims.iter().enumerate() {
        let body = json!({"name": format!("d{i}"), "extensions": {"jasper": {"iccid": s.iccid}}});
        let (st, d) = http(
            addrs[i % 3],
            "POST",
            "/api/v1/devices",
            &admin,
            Some(&body),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(st, 201, "{d}");
        devices.push((d["id"].as_str().unwrap().to_owned(), s.iccid.clone()));
    }

    // Each replica's first upstream call sets up its HTTP client (CA roots, connection) after
    // its permit, late: warm every replica once, as a running fleet is.
    for (i, &a) in addrs.iter().enumerate() {
        let path = format!(
            "/api/v1/devices/{}/extensions/jasper/overview",
            devices[i].0
        );
        let (s, b) = http(a, "POST", &path, &admin, Some(&json!({})), &[])
            .await
            .unwrap();
        assert_eq!(s, 200, "{b}");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // 1. Sixty distinct views (an overview and a usage of 30 SIMs: nothing shared by
    // single-flight), round-robin over the replicas, all at once.
    sim.reset_stats();
    let started = Instant::now();
    let cycle = format!("{}", crate::support::cycle_start(0));
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (addr, admin) = (addrs[i % 3], admin.clone());
            let device = devices[i / 2].0.clone();
            let (op, input) = if i % 2 == 0 {
                ("overview", json!({}))
            } else {
                ("usage", json!({"cycle_start_date": cycle}))
            };
            tokio::spawn(async move {
                let path = format!("/api/v1/devices/{device}/extensions/jasper/{op}");
                let r = http(addr, "POST", &path, &admin, Some(&input), &[]).await;
                (r, started.elapsed())
            })
        })
        .collect();
    for t in tasks {
        let (r, took) = t.await.unwrap();
        let (status, body) = r.expect("a live replica answers");
        assert_eq!(status, 200, "after {took:?}: {body}");
        assert!(took < Duration::from_secs(30), "{took:?}");
    }
    let elapsed = started.elapsed();
    let stats = sim.stats();
    let executed: u64 = stats.operations.values().sum();
    assert!(
        executed >= 60,
        "single-flight shared distinct views: {stats:?}"
    );
    assert_eq!(stats.requests, executed, "requests were retried: {stats:?}");
    assert_eq!(
        stats.rate_limited, 0,
        "the simulator refused calls: {stats:?}"
    );
    assert!(stats.max_in_flight_seen <= 1, "{stats:?}");
    assert!(stats.max_per_second_seen <= 5, "{stats:?}");
    // Paced at the account's rate, not three times it: 60 starts at 5 per 1.1 s.
    assert!(
        elapsed >= Duration::from_millis((executed - 1) * 200),
        "{elapsed:?}"
    );
    println!(
        "60 views ({executed} requests) over 3 replicas in {elapsed:?}: {:.2} starts/s \
         (allowed 5/s)",
        executed as f64 / elapsed.as_secs_f64()
    );

    // 2. A revoked key and a changed setting take effect on every replica within a second.
    let (_, k) = http(
        addrs[0],
        "POST",
        "/api/v1/keys",
        &admin,
        Some(&json!({"role": "viewer", "name": "short-lived"})),
        &[],
    )
    .await
    .unwrap();
    let (key_id, viewer) = (
        k["id"].as_str().unwrap().to_owned(),
        k["key"].as_str().unwrap().to_owned(),
    );
    for &a in &addrs {
        // Each replica memoises the key.
        assert_eq!(
            http(a, "GET", "/api/v1/devices", &viewer, None, &[])
                .await
                .unwrap()
                .0,
            200
        );
    }
    let (s, _) = http(
        addrs[0],
        "DELETE",
        &format!("/api/v1/keys/{key_id}"),
        &admin,
        None,
        &[],
    )
    .await
    .unwrap();
    assert!(s == 200 || s == 204, "{s}");
    for &a in &addrs[1..] {
        let took = within(Duration::from_secs(1), async || {
            http(a, "GET", "/api/v1/devices", &viewer, None, &[])
                .await
                .unwrap()
                .0
                == 401
        })
        .await;
        assert!(took.is_some(), "a revoked key still works on {a} after 1 s");
    }
    let off = json!({"enabled": false, "config": org(&sim, Api::Soap)});
    for &a in &addrs {
        let path = format!(
            "/api/v1/devices/{}/extensions/jasper/overview",
            devices[0].0
        );
        let (s, b) = http(a, "POST", &path, &admin, Some(&json!({})), &[])
            .await
            .unwrap();
        assert_eq!(s, 200, "{b}");
    }
    assert_eq!(
        http(
            addrs[2],
            "PUT",
            "/api/v1/extensions/jasper",
            &admin,
            Some(&off),
            &[]
        )
        .await
        .unwrap()
        .0,
        200
    );
    for &a in &addrs[..2] {
        let path = format!(
            "/api/v1/devices/{}/extensions/jasper/overview",
            devices[0].0
        );
        let took = within(Duration::from_secs(1), async || {
            http(a, "POST", &path, &admin, Some(&json!({})), &[])
                .await
                .unwrap()
                .0
                == 409
        })
        .await;
        assert!(
            took.is_some(),
            "a switched-off extension still runs on {a} after 1 s"
        );
    }
    http(
        addrs[2],
        "PUT",
        "/api/v1/extensions/jasper",
        &admin,
        Some(&settings),
        &[],
    )
    .await
    .unwrap();

    // 3. A burst of writes (one per SIM, each with an Idempotency-Key); replica 0 is killed
    // in the middle of it.
    tokio::time::sleep(Duration::from_secs(1)).await; // the settings reached every memo
    sim.reset_stats();
    let writes: Vec<_> = devices[30..39]
        .iter()
        .enumerate()
        .map(|(i, (device, iccid))| {
            let (addr, admin, device, iccid) =
                (addrs[i % 3], admin.clone(), device.clone(), iccid.clone());
            tokio::spawn(async move {
                let path = format!("/api/v1/devices/{device}/extensions/jasper/set_status");
                let key = format!("burst-{iccid}");
                let r = http(
                    addr,
                    "POST",
                    &path,
                    &admin,
                    Some(&json!({"status": "deactivated"})),
                    &[("idempotency-key", &key)],
                )
                .await;
                (i, device, iccid, key, r)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut replicas = replicas;
    let killed_at = Instant::now();
    replicas[0].child.kill().expect("SIGKILL"); // std's kill is SIGKILL
    let _ = replicas[0].child.wait();
    let mut acknowledged = Vec::new();
    let mut cut_off = Vec::new();
    for w in writes {
        let (i, device, iccid, key, r) = w.await.unwrap();
        match r {
            Some((200, body)) => acknowledged.push((iccid, body)),
            Some((s, body)) => panic!("write {i} to a live replica failed: {s} {body}"),
            None => {
                assert_eq!(i % 3, 0, "only the killed replica's writes go unanswered");
                cut_off.push((device, iccid, key));
            }
        }
    }
    let carried_on = killed_at.elapsed();
    assert!(acknowledged.len() >= 6, "{acknowledged:?}");
    // The live replicas carried on within the dead one's lease (3 s) and their pacing.
    assert!(carried_on < Duration::from_secs(15), "{carried_on:?}");
    // No acknowledged write is lost.
    for (iccid, body) in &acknowledged {
        assert_eq!(
            sim.sim(iccid).unwrap().status,
            "deactivated",
            "{iccid}: {body}"
        );
    }
    // The cut-off writes, repeated with their key on a live replica: run now if the dead one
    // never claimed them, else "outcome unknown" (or still running): never run twice.
    tokio::time::sleep(devext_service::store::postgres::CLAIM_LEASE + Duration::from_secs(1)).await;
    for (device, iccid, key) in &cut_off {
        let path = format!("/api/v1/devices/{device}/extensions/jasper/set_status");
        let (s, body) = http(
            addrs[1],
            "POST",
            &path,
            &admin,
            Some(&json!({"status": "deactivated"})),
            &[("idempotency-key", key)],
        )
        .await
        .unwrap();
        match s {
            200 => assert_eq!(sim.sim(iccid).unwrap().status, "deactivated"),
            409 => assert_eq!(body["error"]["details"]["outcome"], "unknown", "{body}"),
            _ => panic!("{s} {body}"),
        }
    }
    let changed = devices[30..39]
        .iter()
        .filter(|(_, iccid)| sim.sim(iccid).unwrap().status == "deactivated")
        .count() as u64;
    let stats = sim.stats();
    assert_eq!(stats.writes, changed, "a write ran twice: {stats:?}");
    assert!(stats.max_in_flight_seen <= 1, "{stats:?}");
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
}
