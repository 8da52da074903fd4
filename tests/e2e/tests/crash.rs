//! Crashes lose nothing: `devext serve` is killed with SIGKILL at random moments (seeded: the
//! seed is printed, `DEVEXT_CRASH_SEED=N` replays its choices) during a stream of writes from
//! several clients (devices created and renamed, the Jasper settings changed, SMS sent with an
//! `Idempotency-Key` against the simulator, which records every message), then restarted, for
//! several rounds. After each kill: the store's integrity check passes (SQLite's
//! `integrity_check` and `foreign_key_check`; PostgreSQL's `amcheck` of every B-tree index),
//! the lookup index agrees with the devices, every acknowledged write is there (a write cut off
//! may or may not be), and no action ran twice, not even when repeated with its key after the
//! restart. On SQLite and on PostgreSQL (skipped, passing, without PostgreSQL unless `CI` is
//! set).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devext_jasper_sim::RunningSim;
use serde_json::{Value, json};

mod bad_day;
#[allow(dead_code)] // this binary uses part of it
mod serve_proc;
#[allow(dead_code)] // this binary uses part of it
mod support;

use crate::serve_proc::{create_org, http, start_serve};
use crate::support::{Api, fast_org, lift_limits, sim};

/// SplitMix64: small, seeded, good enough to choose moments and writes.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    match std::env::var("DEVEXT_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("DEVEXT_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// What a client knows of a device it wrote.
struct DeviceRecord {
    iccid: String,
    /// The name last acknowledged.
    name: String,
    /// A rename sent but not answered: the store may hold either name.
    pending: Option<String>,
}

/// An SMS sent with an `Idempotency-Key` (the message is the key).
struct ActionRecord {
    key: String,
    device: String,
    /// Answered 200.
    acknowledged: bool,
}

#[derive(Default)]
struct Ledger {
    devices: HashMap<String, DeviceRecord>,
    actions: Vec<ActionRecord>,
    /// The settings' `rate_per_second` last acknowledged, and one sent but not answered.
    rate: u64,
    rate_pending: Option<u64>,
    /// Acknowledged writes (of every kind), for the summary.
    acknowledged: u64,
    cut_off: u64,
    /// Repeats after a restart answered 409 (claimed, outcome unknown), ran then (never
    /// claimed), or replayed (done before the kill, answer lost).
    repeats_refused: u64,
    repeats_ran: u64,
    repeats_replayed: u64,
}

struct World {
    admin: String,
    settings_base: Value,
    /// The devices whose SIMs the actions go to (the simulator's).
    action_devices: Vec<String>,
    ledger: Mutex<Ledger>,
    next_iccid: AtomicU64,
}

/// A 19-digit ICCID of no SIM in the simulator (devices that are only written, never called).
fn fresh_iccid(n: u64) -> String {
    format!("8999{n:015}")
}

/// One client's stream of writes until the service stops answering (or `stop`).
async fn writer(
    world: Arc<World>,
    addr: SocketAddr,
    round: u32,
    w: u32,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) {
    let admin = world.admin.as_str();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let choice = rng.below(10);
        let answered = match choice {
            // Create a device.
            0..=2 => {
                let iccid = fresh_iccid(world.next_iccid.fetch_add(1, Ordering::Relaxed));
                let name = format!("r{round}-w{w}-{n}");
                let body = json!({"name": name, "extensions": {"jasper": {"iccid": iccid}}});
                match http(addr, "POST", "/api/v1/devices", admin, Some(&body), &[]).await {
                    Some((201, d)) => {
                        let id = d["id"].as_str().expect("an id").to_owned();
                        let mut l = world.ledger.lock().unwrap();
                        l.devices.insert(
                            id,
                            DeviceRecord {
                                iccid,
                                name,
                                pending: None,
                            },
                        );
                        l.acknowledged += 1;
                        true
                    }
                    Some((s, b)) => panic!("round {round}: creating a device: {s} {b}"),
                    None => false,
                }
            }
            // Rename one of the devices (this writer's own: no two clients race on one).
            3..=5 => {
                let target = {
                    let mut l = world.ledger.lock().unwrap();
                    let mine: Vec<String> = l
                        .devices
                        .iter()
                        .filter(|(_, d)| d.name.contains(&format!("-w{w}-")) && d.pending.is_none())
                        .map(|(id, _)| id.clone())
                        .collect();
                    if mine.is_empty() {
                        None
                    } else {
                        let id = mine[rng.below(mine.len() as u64) as usize].clone();
                        let d = l.devices.get_mut(&id).unwrap();
                        let base = d.name.split("-renamed").next().unwrap_or_default();
                        let new = format!("{base}-renamed{round}.{n}");
                        d.pending = Some(new.clone());
                        Some((id, d.iccid.clone(), new))
                    }
                };
                match target {
                    None => true,
                    Some((id, iccid, new)) => {
                        let body = json!({"name": new, "extensions": {"jasper": {"iccid": iccid}}});
                        let path = format!("/api/v1/devices/{id}");
                        match http(addr, "PUT", &path, admin, Some(&body), &[]).await {
                            Some((200, _)) => {
                                let mut l = world.ledger.lock().unwrap();
                                let d = l.devices.get_mut(&id).unwrap();
                                d.name = new;
                                d.pending = None;
                                l.acknowledged += 1;
                                true
                            }
                            Some((s, b)) => panic!("round {round}: renaming {id}: {s} {b}"),
                            None => false,
                        }
                    }
                }
            }
            // Change the settings (writer 0 only), secrets included.
            6 if w == 0 => {
                let rate = 50 + rng.below(50);
                world.ledger.lock().unwrap().rate_pending = Some(rate);
                let mut config = world.settings_base.clone();
                config["rate_per_second"] = json!(rate);
                let body = json!({"enabled": true, "config": config});
                match http(
                    addr,
                    "PUT",
                    "/api/v1/extensions/jasper",
                    admin,
                    Some(&body),
                    &[],
                )
                .await
                {
                    Some((200, _)) => {
                        let mut l = world.ledger.lock().unwrap();
                        l.rate = rate;
                        l.rate_pending = None;
                        l.acknowledged += 1;
                        true
                    }
                    Some((s, b)) => panic!("round {round}: settings: {s} {b}"),
                    None => false,
                }
            }
            // An action with a fresh Idempotency-Key.
            _ => {
                let device = world.action_devices
                    [rng.below(world.action_devices.len() as u64) as usize]
                    .clone();
                let key = format!("crash-r{round}-w{w}-{n}");
                let index = {
                    let mut l = world.ledger.lock().unwrap();
                    l.actions.push(ActionRecord {
                        key: key.clone(),
                        device: device.clone(),
                        acknowledged: false,
                    });
                    l.actions.len() - 1
                };
                let path = format!("/api/v1/devices/{device}/extensions/jasper/send_sms");
                let body = json!({"message": key});
                match http(
                    addr,
                    "POST",
                    &path,
                    admin,
                    Some(&body),
                    &[("idempotency-key", &key)],
                )
                .await
                {
                    Some((200, _)) => {
                        let mut l = world.ledger.lock().unwrap();
                        l.actions[index].acknowledged = true;
                        l.acknowledged += 1;
                        true
                    }
                    Some((s, b)) => panic!("round {round}: action {key}: {s} {b}"),
                    None => false,
                }
            }
        };
        if !answered {
            world.ledger.lock().unwrap().cut_off += 1;
            return;
        }
    }
}

/// How many messages the simulator received with this text.
fn sent(sim: &RunningSim, message: &str) -> usize {
    sim.sms_log()
        .iter()
        .filter(|m| m.message == message)
        .count()
}

/// The store's own integrity checks and the lookup index against the devices.
async fn check_integrity(db: &str) {
    if db.starts_with("postgres") {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(db)
            .await
            .expect("PostgreSQL answers");
        sqlx::query("CREATE EXTENSION IF NOT EXISTS amcheck")
            .execute(&mut conn)
            .await
            .expect("amcheck (PostgreSQL's contrib)");
        let checked: i64 = sqlx::query_scalar(
            "SELECT count(bt_index_check(c.oid, true)::text) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.amname = 'btree' AND n.nspname = 'public'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("every B-tree index passes amcheck");
        assert!(checked >= 10, "{checked} indexes checked");
        let wrong: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM device_lookup l JOIN devices d ON d.id = l.device_id \
             WHERE l.org_id <> d.org_id \
                OR (d.extensions::jsonb -> l.plugin ->> l.field) IS DISTINCT FROM l.value",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(wrong, 0, "lookup entries that disagree with their device");
        let missing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM devices d WHERE (d.extensions::jsonb -> 'jasper') ? 'iccid' \
             AND NOT EXISTS (SELECT 1 FROM device_lookup l WHERE l.device_id = d.id \
                             AND l.plugin = 'jasper' AND l.field = 'iccid')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(missing, 0, "devices missing from the lookup index");
        let orphans: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM idempotency WHERE status = 0 AND claimant IS NULL",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(orphans, 0, "running idempotency claims without a claimant");
        conn.close().await.ok();
    } else {
        let conn = rusqlite::Connection::open(db).expect("the SQLite store opens");
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "PRAGMA integrity_check");
        let mut fk = conn.prepare("PRAGMA foreign_key_check").unwrap();
        let violations = fk.query_map([], |r| r.get::<_, String>(0)).unwrap().count();
        assert_eq!(violations, 0, "PRAGMA foreign_key_check");
        let wrong: i64 = conn
            .query_row(
                "SELECT count(*) FROM device_lookup l JOIN devices d ON d.id = l.device_id \
                 WHERE l.org_id <> d.org_id \
                    OR json_extract(d.extensions, '$.' || l.plugin || '.' || l.field) \
                       IS NOT l.value",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(wrong, 0, "lookup entries that disagree with their device");
        let missing: i64 = conn
            .query_row(
                "SELECT count(*) FROM devices d \
                 WHERE json_extract(d.extensions, '$.jasper.iccid') IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM device_lookup l WHERE l.device_id = d.id \
                                 AND l.plugin = 'jasper' AND l.field = 'iccid')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(missing, 0, "devices missing from the lookup index");
    }
}

/// After a restart: every acknowledged write is there, no action ran twice (also when
/// repeated with its key), then the ledger holds what the store holds.
/// `sqlite`: a claim of the killed process answers "outcome unknown" at once (PostgreSQL: once
/// its lease lapsed, "still running" until then).
async fn check_after_restart(
    world: &World,
    sim: &RunningSim,
    addr: SocketAddr,
    round: u32,
    sqlite: bool,
) {
    let admin = world.admin.as_str();
    // Taken out of its lock for the checks (no lock held across a request), put back after.
    let mut ledger = std::mem::take(&mut *world.ledger.lock().unwrap());
    let l = &mut ledger;
    // Every device, page by page.
    let mut stored: HashMap<String, String> = HashMap::new();
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/api/v1/devices?limit=500&cursor={c}"),
            None => "/api/v1/devices?limit=500".to_owned(),
        };
        let (s, page) = http(addr, "GET", &path, admin, None, &[])
            .await
            .expect("the restarted service answers");
        assert_eq!(s, 200, "{page}");
        for d in page["items"].as_array().unwrap() {
            stored.insert(
                d["id"].as_str().unwrap().to_owned(),
                d["name"].as_str().unwrap().to_owned(),
            );
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut this_round = Vec::new();
    for (id, rec) in &mut l.devices {
        let name = stored
            .get(id)
            .unwrap_or_else(|| panic!("round {round}: acknowledged device {id} lost"))
            .clone();
        assert!(
            name == rec.name || rec.pending.as_deref() == Some(name.as_str()),
            "round {round}: device {id} is named {name:?}: acknowledged {:?}, cut off {:?}",
            rec.name,
            rec.pending
        );
        if name != rec.name || rec.pending.is_some() || rec.name.starts_with(&format!("r{round}-"))
        {
            this_round.push((id.clone(), rec.iccid.clone()));
        }
        rec.name = name;
        rec.pending = None;
    }
    // The devices written in this round are found through the lookup index.
    for (id, iccid) in this_round {
        let (s, found) = http(
            addr,
            "GET",
            &format!("/api/v1/devices?ext.jasper.iccid={iccid}"),
            admin,
            None,
            &[],
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{found}");
        let items = found["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1, "round {round}: lookup of {iccid}: {found}");
        assert_eq!(items[0]["id"], json!(id));
    }
    let (s, settings) = http(addr, "GET", "/api/v1/extensions/jasper", admin, None, &[])
        .await
        .unwrap();
    assert_eq!(s, 200, "{settings}");
    let rate = settings["config"]["rate_per_second"].as_u64().unwrap();
    assert!(
        rate == l.rate || l.rate_pending == Some(rate),
        "round {round}: settings rate {rate}: acknowledged {}, cut off {:?}",
        l.rate,
        l.rate_pending
    );
    l.rate = rate;
    l.rate_pending = None;
    let (mut refused, mut ran, mut replayed) = (0, 0, 0);
    for a in &mut l.actions {
        let before = sent(sim, &a.key);
        if a.acknowledged {
            assert_eq!(
                before, 1,
                "round {round}: acknowledged action {} ran {before} times",
                a.key
            );
        } else {
            assert!(
                before <= 1,
                "round {round}: action {} ran {before} times",
                a.key
            );
        }
        // This round's, and every one not answered yet, repeated with its key: the recorded
        // answer, "still running / interrupted" (409), or, if it was never claimed, run now;
        // never a second time.
        if a.acknowledged && !a.key.starts_with(&format!("crash-r{round}-")) {
            continue;
        }
        let path = format!("/api/v1/devices/{}/extensions/jasper/send_sms", a.device);
        let (s, b) = http(
            addr,
            "POST",
            &path,
            admin,
            Some(&json!({"message": a.key})),
            &[("idempotency-key", &a.key)],
        )
        .await
        .expect("the restarted service answers");
        let after = sent(sim, &a.key);
        match s {
            200 => assert_eq!(after, 1, "round {round}: {} ran {after} times: {b}", a.key),
            409 => {
                assert_eq!(after, before, "round {round}: {}: {b}", a.key);
                if sqlite {
                    assert_eq!(b["error"]["details"]["outcome"], "unknown", "{b}");
                }
            }
            _ => panic!("round {round}: repeating {}: {s} {b}", a.key),
        }
        match (a.acknowledged, s, before) {
            (true, _, _) => {}
            (false, 409, _) => refused += 1,
            (false, _, 0) => ran += 1,
            (false, _, _) => replayed += 1,
        }
        assert!(after <= 1);
        a.acknowledged |= s == 200;
    }
    ledger.repeats_refused += refused;
    ledger.repeats_ran += ran;
    ledger.repeats_replayed += replayed;
    *world.ledger.lock().unwrap() = ledger;
}

const ROUNDS: u32 = 6;
const WRITERS: u32 = 4;

async fn crash_rounds(db: &str, key_hex: Option<&str>, backend: &str) {
    let seed = seed();
    println!("{backend} crash test seed: {seed} (DEVEXT_CRASH_SEED={seed} replays its choices)");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let sim = sim().await;
    lift_limits(&sim);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("devext.toml");
    std::fs::write(
        &config,
        "allow_loopback_http = true\nview_cache_entries = 0\ncall_timeout_secs = 10\n",
    )
    .unwrap();
    let admin = create_org(db, key_hex);
    let settings_base = fast_org(&sim, Api::Rest);

    // The service's first start: the settings and the devices the actions go to.
    let mut served = start_serve(db, key_hex, &config);
    let body = json!({"enabled": true, "config": settings_base});
    let (s, b) = http(
        served.addr,
        "PUT",
        "/api/v1/extensions/jasper",
        &admin,
        Some(&body),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let mut action_devices = Vec::new();
    let mut ledger = Ledger {
        rate: 100,
        ..Ledger::default()
    };
    for (i, s) in sim
        .sims()
        .iter()
        .filter(|s| s.status == "activated")
        .take(4)
        .enumerate()
    {
        let name = format!("sim-{i}");
        let body = json!({"name": name, "extensions": {"jasper": {"iccid": s.iccid}}});
        let (st, d) = http(
            served.addr,
            "POST",
            "/api/v1/devices",
            &admin,
            Some(&body),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(st, 201, "{d}");
        let id = d["id"].as_str().unwrap().to_owned();
        ledger.devices.insert(
            id.clone(),
            DeviceRecord {
                iccid: s.iccid.clone(),
                name,
                pending: None,
            },
        );
        action_devices.push(id);
    }
    assert_eq!(action_devices.len(), 4, "the simulator has activated SIMs");
    let world = Arc::new(World {
        admin,
        settings_base,
        action_devices,
        ledger: Mutex::new(ledger),
        next_iccid: AtomicU64::new(0),
    });

    println!("{backend}: set up in {:?}", started.elapsed());
    for round in 1..=ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let rng = Rng(rng.next());
                tokio::spawn(writer(
                    Arc::clone(&world),
                    served.addr,
                    round,
                    w,
                    rng,
                    Arc::clone(&stop),
                ))
            })
            .collect();
        // A random moment while the writes stream in.
        let moment = Duration::from_millis(150 + rng.below(1200));
        tokio::time::sleep(moment).await;
        served.sigkill();
        stop.store(true, Ordering::Relaxed);
        let killed = Instant::now();
        for w in writers {
            w.await.expect("a writer panicked");
        }
        let t0 = Instant::now();
        println!(
            "{backend} round {round}: writers stopped {:?} after the kill",
            t0 - killed
        );
        check_integrity(db).await;
        let t1 = Instant::now();
        served = start_serve(db, key_hex, &config);
        let t2 = Instant::now();
        check_after_restart(&world, &sim, served.addr, round, backend == "sqlite").await;
        let timing = format!(
            "integrity check {:?}, restart {:?}, checks {:?}",
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        let l = world.ledger.lock().unwrap();
        println!(
            "{backend} round {round}: killed after {moment:?}; {} writes acknowledged so far, {} \
             cut off, {} devices, {} actions; {timing}",
            l.acknowledged,
            l.cut_off,
            l.devices.len(),
            l.actions.len()
        );
    }
    let l = world.ledger.lock().unwrap();
    let repeats = (l.repeats_refused, l.repeats_ran, l.repeats_replayed);
    assert!(
        l.acknowledged >= u64::from(ROUNDS) * 5,
        "too few writes to mean anything: {}",
        l.acknowledged
    );
    assert!(
        l.actions.iter().any(|a| a.acknowledged),
        "no action was acknowledged"
    );
    // Upstream, the simulator applied one write per message, each message at most once.
    let log = sim.sms_log();
    let distinct: std::collections::HashSet<&str> =
        log.iter().map(|m| m.message.as_str()).collect();
    assert_eq!(distinct.len(), log.len(), "a message was sent twice");
    assert_eq!(sim.stats().writes, log.len() as u64, "{:?}", sim.stats());
    drop(l);
    drop(served);
    println!(
        "{backend}: {ROUNDS} rounds in {:?}; actions cut off and repeated: {} answered 409 \
         (claimed, outcome unknown), {} ran then (never claimed), {} replayed (done, answer lost)",
        started.elapsed(),
        repeats.0,
        repeats.1,
        repeats.2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_writes_loses_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("devext.db");
    crash_rounds(db.to_str().unwrap(), None, "sqlite").await;
    assert!(Path::new(&format!("{}.key", db.display())).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_writes_loses_nothing_on_postgres() {
    let Some(url) = devext_service::testing::fresh_postgres_database("crash").await else {
        println!("skipped: PostgreSQL not installed (crash test)");
        return;
    };
    let key_hex = "5a".repeat(32);
    crash_rounds(&url, Some(&key_hex), "postgres").await;
}
