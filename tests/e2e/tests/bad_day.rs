//! A bad day, through the `devext` binary: an online backup of an SQLite store while the
//! service writes, its restore (refused over a store that holds data, unless `--force`), the
//! restored store starting with its original key only; rotating the secrets key (killed in the
//! middle: the old key still works; afterwards the old key is refused, the new one opens every
//! secret, a service still running with the old key refuses to write secrets), on SQLite and on
//! PostgreSQL.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use devext_jasper_sim::RunningSim;
use serde_json::{Value, json};

use crate::serve_proc::{create_org, create_org_named, devext, http, start_serve};
use crate::support::{Api, fast_org, lift_limits, sim};

fn config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("devext.toml");
    std::fs::write(
        &config,
        "allow_loopback_http = true\nview_cache_entries = 0\n",
    )
    .unwrap();
    config
}

/// `devext ARGS` with `DEVEXT_SECRET_KEY` = `key_hex` (when given) and extra variables: exit
/// status and stdout + stderr.
fn run(args: &[&str], key_hex: Option<&str>, env: &[(&str, &str)]) -> (bool, String) {
    let mut c = devext(key_hex);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("devext runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `devext serve` on `db` exits at once with a message holding `expected`.
fn refused_to_start(db: &str, key_hex: Option<&str>, config: &Path, expected: &str) {
    let (ok, out) = run(
        &[
            "serve",
            "--db",
            db,
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        key_hex,
        &[],
    );
    assert!(!ok, "devext serve started: {out}");
    assert!(out.contains(expected), "expected {expected:?} in: {out}");
}

/// The Jasper settings (with their secrets) in the org of `admin`.
async fn put_settings(addr: SocketAddr, admin: &str, sim: &RunningSim, rate: u64) -> (u16, Value) {
    let mut config = fast_org(sim, Api::Rest);
    config["rate_per_second"] = json!(rate);
    let body = json!({"enabled": true, "config": config});
    http(
        addr,
        "PUT",
        "/api/v1/extensions/jasper",
        admin,
        Some(&body),
        &[],
    )
    .await
    .expect("the service answers")
}

/// A device on the simulator's first activated SIM; its id.
async fn sim_device(addr: SocketAddr, admin: &str, sim: &RunningSim, i: usize) -> String {
    let iccid = sim
        .sims()
        .iter()
        .filter(|s| s.status == "activated")
        .nth(i)
        .expect("an activated SIM")
        .iccid
        .clone();
    let body = json!({"name": format!("sim-{i}"), "extensions": {"jasper": {"iccid": iccid}}});
    let (s, d) = http(addr, "POST", "/api/v1/devices", admin, Some(&body), &[])
        .await
        .unwrap();
    assert_eq!(s, 201, "{d}");
    d["id"].as_str().unwrap().to_owned()
}

/// An SMS through the service: the org's secrets decrypt and reach the simulator.
async fn action_works(
    addr: SocketAddr,
    admin: &str,
    device: &str,
    sim: &RunningSim,
    message: &str,
) {
    let path = format!("/api/v1/devices/{device}/extensions/jasper/send_sms");
    let (s, b) = http(
        addr,
        "POST",
        &path,
        admin,
        Some(&json!({"message": message})),
        &[],
    )
    .await
    .expect("the service answers");
    assert_eq!(s, 200, "{b}");
    assert!(
        sim.sms_log().iter().any(|m| m.message == message),
        "{message} not sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_sqlite_backup_restores_with_its_original_key_only() {
    let sim = sim().await;
    lift_limits(&sim);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let db = dir.path().join("devext.db");
    let db_s = db.to_str().unwrap().to_owned();
    let admin = create_org(&db_s, None);
    let served = start_serve(&db_s, None, &config);
    let addr = served.addr;
    assert_eq!(put_settings(addr, &admin, &sim, 90).await.0, 200);
    let device = sim_device(addr, &admin, &sim, 0).await;

    // Devices keep being created while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, admin) = (Arc::clone(&stop), admin.clone());
        tokio::spawn(async move {
            let mut made = 0u32;
            while !stop.load(Ordering::Relaxed) && made < 400 {
                let body = json!({"name": format!("busy-{made}"), "extensions": {}});
                let (s, b) = http(addr, "POST", "/api/v1/devices", &admin, Some(&body), &[])
                    .await
                    .unwrap();
                assert_eq!(s, 201, "{b}");
                made += 1;
            }
            made
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every device acknowledged before the backup starts is in it.
    let (_, listed) = http(addr, "GET", "/api/v1/devices?limit=500", &admin, None, &[])
        .await
        .unwrap();
    let before = listed["items"].as_array().unwrap().len();
    let backup = dir.path().join("backup.db");
    let (ok, out) = tokio::task::spawn_blocking({
        let (db_s, backup) = (db_s.clone(), backup.clone());
        move || {
            run(
                &[
                    "store",
                    "backup",
                    "--db",
                    &db_s,
                    "--out",
                    backup.to_str().unwrap(),
                ],
                None,
                &[],
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("holds no secret key"), "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let made = writer.await.unwrap();
    assert!(made > 5, "the service wrote during the backup: {made}");
    let (_, listed) = http(addr, "GET", "/api/v1/devices?limit=500", &admin, None, &[])
        .await
        .unwrap();
    let live = listed["items"].as_array().unwrap().len();

    // A backup that exists is never overwritten.
    let (ok, out) = run(
        &[
            "store",
            "backup",
            "--db",
            &db_s,
            "--out",
            backup.to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert!(!ok && out.contains("refusing to overwrite"), "{out}");

    // The key is nowhere in the backup.
    let key_hex = std::fs::read_to_string(format!("{db_s}.key"))
        .unwrap()
        .trim()
        .to_owned();
    let raw_key: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let bytes = std::fs::read(&backup).unwrap();
    assert!(!bytes.windows(32).any(|w| w == raw_key.as_slice()));
    assert!(!bytes.windows(64).any(|w| w == key_hex.as_bytes()));

    // Restored elsewhere; again over it is refused, unless --force.
    let restored = dir.path().join("restored.db");
    let restored_s = restored.to_str().unwrap().to_owned();
    let restore = |force: bool| {
        let mut args = vec![
            "store",
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--db",
            &restored_s,
        ];
        if force {
            args.push("--force");
        }
        run(&args, None, &[])
    };
    let (ok, out) = restore(false);
    assert!(ok, "{out}");
    assert!(out.contains("original secret key"), "{out}");
    let (ok, out) = restore(false);
    assert!(!ok && out.contains("--force"), "{out}");
    let (ok, out) = restore(true);
    assert!(ok, "{out}");

    // Without its key, or with another one, it does not start.
    refused_to_start(&restored_s, None, &config, "secret key is missing");
    refused_to_start(
        &restored_s,
        Some(&"ab".repeat(32)),
        &config,
        "does not belong to this store",
    );
    // A wrong key given to the restore is refused too.
    let (ok, out) = run(
        &[
            "store",
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--db",
            &restored_s,
            "--force",
        ],
        Some(&"ab".repeat(32)),
        &[],
    );
    assert!(!ok && out.contains("does not belong"), "{out}");

    // With the original key: everything is there, secrets included.
    drop(served);
    let again = start_serve(&restored_s, Some(&key_hex), &config);
    let (_, listed) = http(
        again.addr,
        "GET",
        "/api/v1/devices?limit=500",
        &admin,
        None,
        &[],
    )
    .await
    .unwrap();
    let count = listed["items"].as_array().unwrap().len();
    assert!(
        before <= count && count <= live,
        "{count} devices restored: {before} before the backup, {live} after"
    );
    action_works(again.addr, &admin, &device, &sim, "after the restore").await;

    // PostgreSQL: the command says to use pg_dump.
    let (ok, out) = run(
        &[
            "store",
            "backup",
            "--db",
            "postgres://u@localhost/devext",
            "--out",
            "x.dump",
        ],
        None,
        &[],
    );
    assert!(
        !ok && out.contains("pg_dump") && out.contains("secret key"),
        "{out}"
    );
}

/// Runs `devext store rotate-key` with the test hook that pauses inside its transaction after
/// one secret, waits for the pause, and kills it.
fn rotate_killed_midway(db: &str, key_hex: Option<&str>, new_key: &Path) {
    let mut child = devext(key_hex)
        .args([
            "store",
            "rotate-key",
            "--db",
            db,
            "--new-key-file",
            new_key.to_str().unwrap(),
        ])
        .env(devext_service::store::maintenance::ROTATE_PAUSE_ENV, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("paused after 1 secrets"), "{line}");
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
}

async fn rotate_key_scenario(db: &str, old_hex: Option<&str>, dir: &Path) {
    let sim = sim().await;
    lift_limits(&sim);
    let config = config(dir);
    let acme = create_org(db, old_hex);
    let beta = create_org_named(db, old_hex, "beta");
    let served = start_serve(db, old_hex, &config);
    let mut devices = Vec::new();
    for (i, admin) in [&acme, &beta].into_iter().enumerate() {
        assert_eq!(put_settings(served.addr, admin, &sim, 90).await.0, 200);
        devices.push(sim_device(served.addr, admin, &sim, i).await);
    }
    drop(served);
    let new_key = dir.join("new.key");

    // Killed inside its transaction: nothing changed, the old key works.
    rotate_killed_midway(db, old_hex, &new_key);
    let new_hex = std::fs::read_to_string(&new_key).unwrap().trim().to_owned();
    refused_to_start(db, Some(&new_hex), &config, "does not belong to this store");
    let served = start_serve(db, old_hex, &config);
    action_works(
        served.addr,
        &acme,
        &devices[0],
        &sim,
        "old key, after the crash",
    )
    .await;
    action_works(served.addr, &beta, &devices[1], &sim, "old key, beta").await;

    // Rotated for real while that service runs with the old key.
    let (ok, out) = run(
        &[
            "store",
            "rotate-key",
            "--db",
            db,
            "--new-key-file",
            new_key.to_str().unwrap(),
        ],
        old_hex,
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("re-encrypted the secrets of 2 extension settings"),
        "{out}"
    );
    // The running service refuses to write secrets under the old key; the settings stay.
    let (s, b) = put_settings(served.addr, &acme, &sim, 42).await;
    assert_eq!(s, 500, "{b}");
    drop(served);

    // The old key is refused; the new one opens every secret.
    let old_for_start = match old_hex {
        Some(h) => h.to_owned(),
        None => String::new(),
    };
    if !old_for_start.is_empty() {
        refused_to_start(
            db,
            Some(&old_for_start),
            &config,
            "does not belong to this store",
        );
    }
    let served = start_serve(db, Some(&new_hex), &config);
    action_works(served.addr, &acme, &devices[0], &sim, "new key").await;
    action_works(served.addr, &beta, &devices[1], &sim, "new key, beta").await;
    let (_, settings) = http(
        served.addr,
        "GET",
        "/api/v1/extensions/jasper",
        &acme,
        None,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(settings["config"]["rate_per_second"], 90, "{settings}");
    assert_eq!(put_settings(served.addr, &acme, &sim, 42).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_key_of_an_sqlite_store_survives_a_crash_and_retires_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("devext.db");
    let db_s = db.to_str().unwrap().to_owned();
    let key_file = format!("{db_s}.key");
    // The store's key file, created with it.
    create_org_named(&db_s, None, "first");
    let old_hex = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    rotate_key_scenario(&db_s, None, dir.path()).await;
    // The key file beside the store now holds the new key; the old key is refused.
    let now_hex = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(now_hex, old_hex);
    assert_eq!(
        now_hex,
        std::fs::read_to_string(dir.path().join("new.key"))
            .unwrap()
            .trim()
    );
    refused_to_start(
        &db_s,
        Some(&old_hex),
        &config(dir.path()),
        "does not belong to this store",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_key_of_a_postgres_store_survives_a_crash_and_retires_the_old_key() {
    let Some(url) = devext_service::testing::fresh_postgres_database("rotate").await else {
        println!("skipped: PostgreSQL not installed (key rotation)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    rotate_key_scenario(&url, Some(&"3c".repeat(32)), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devext_serve_prunes_old_audit_entries_and_idempotency_records_in_the_background() {
    let sim = sim().await;
    lift_limits(&sim);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let db = dir.path().join("devext.db");
    let db_s = db.to_str().unwrap().to_owned();
    let admin = create_org(&db_s, None);
    let served = start_serve(&db_s, None, &config);
    assert_eq!(put_settings(served.addr, &admin, &sim, 90).await.0, 200);
    let device = sim_device(served.addr, &admin, &sim, 0).await;
    let path = format!("/api/v1/devices/{device}/extensions/jasper/send_sms");
    for key in ["old-1", "old-2", "new-1"] {
        let (s, b) = http(
            served.addr,
            "POST",
            &path,
            &admin,
            Some(&json!({"message": key})),
            &[("idempotency-key", key)],
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{b}");
    }
    drop(served);
    // Long ago: every audit entry but the last (the third SMS), and the first two SMS' records.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let old = "2000-01-01T00:00:00.000Z";
    let last: i64 = conn
        .query_row("SELECT max(id) FROM audit", [], |r| r.get(0))
        .unwrap();
    let total: i64 = conn
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert!(total >= 5, "settings, device, three SMS: {total}");
    conn.execute(
        "UPDATE audit SET at = ?1 WHERE id < ?2",
        rusqlite::params![old, last],
    )
    .unwrap();
    conn.execute(
        "UPDATE idempotency SET created_at = ?1 WHERE key LIKE 'old-%'",
        [old],
    )
    .unwrap();
    drop(conn);

    let mut child = devext(None)
        .args([
            "serve",
            "--db",
            &db_s,
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .args([
            "--audit-retention-days",
            "30",
            "--idempotency-retention-hours",
            "24",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let started = std::time::Instant::now();
    while count("SELECT count(*) FROM audit WHERE at = '2000-01-01T00:00:00.000Z'") > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "old audit entries still there after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    // The recent SMS's entry and record stay; the old ones are gone.
    assert_eq!(count("SELECT count(*) FROM audit"), 1);
    assert_eq!(count("SELECT max(id) FROM audit"), last);
    assert_eq!(
        count("SELECT count(*) FROM idempotency WHERE key LIKE 'old-%'"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM idempotency WHERE key = 'new-1'"),
        1
    );
}
