//! Store and limiter costs, SQLite against PostgreSQL (a throw-away cluster, or
//! `DEVEXT_TEST_DATABASE_URL`), on one machine over loopback:
//!
//! 1. latency per store operation on the request path (key check, settings read, device read,
//!    device write, audit append, idempotency claim), p50 / p99 over `STORE_OPS` calls each;
//! 2. the per-call cost of a limiter permit (acquire + release, limits that never make anyone
//!    wait): the in-process limiter against the PostgreSQL one;
//! 3. the achieved rate of one account at Jasper's default limits (5 per second, 1 in flight)
//!    when three replicas' limiters saturate it for `RATE_SECONDS`: starts per second against the
//!    allowed 5, and the most starts seen in any rolling second.
//!
//! `cargo bench -p devext-service --bench store` (release).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devext_host::Priority;
use devext_host::limiter::{Limiter, LocalLimiter, PermitAsk};
use devext_service::crypto::SecretKey;
use devext_service::store::pg_limiter::PgLimiter;
use devext_service::store::{AnyStore, ExtensionSettings, PgStore, Role, SqliteStore, Store};
use serde_json::{Map, json};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// `n` timed calls of `op` (after 20 untimed ones), sorted.
async fn time<F: AsyncFnMut(usize)>(n: usize, mut op: F) -> Vec<Duration> {
    for i in 0..20 {
        op(n + i).await;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        op(i).await;
        out.push(t.elapsed());
    }
    out.sort_unstable();
    out
}

/// Latencies of each request-path operation on `store`.
async fn store_ops(store: &AnyStore, n: usize) -> Vec<(&'static str, Vec<Duration>)> {
    let org = store.create_org("bench").await.unwrap();
    let (_, key) = store.create_key(org.id, Role::Admin, "k").await.unwrap();
    let mut config = Map::new();
    config.insert("greeting".into(), json!("hi"));
    let mut secrets = Map::new();
    secrets.insert("token".into(), json!("secret"));
    let settings = ExtensionSettings {
        plugin: "echo".into(),
        enabled: true,
        config,
        secrets,
    };
    store.put_extension(org.id, &settings).await.unwrap();
    let device = store
        .create_device(org.id, "d", None, &json!({"echo": {"id": "x"}}), &[])
        .await
        .unwrap();
    let mut rows = Vec::new();
    rows.push((
        "authenticate (API key)",
        time(n, async |_| {
            store.authenticate(&key).await.unwrap().unwrap();
        })
        .await,
    ));
    rows.push((
        "extension settings read (decrypts)",
        time(n, async |_| {
            store.extension(org.id, "echo").await.unwrap().unwrap();
        })
        .await,
    ));
    rows.push((
        "device read",
        time(n, async |_| {
            store.device(org.id, &device.id).await.unwrap().unwrap();
        })
        .await,
    ));
    rows.push((
        "device update",
        time(n, async |i| {
            let ext = json!({"echo": {"id": format!("x{i}")}});
            store
                .update_device(org.id, &device.id, "d", None, &ext, &[])
                .await
                .unwrap()
                .unwrap();
        })
        .await,
    ));
    rows.push((
        "audit append",
        time(n, async |_| {
            let entry = devext_service::store::NewAudit {
                action: "operation",
                outcome: "ok",
                ..Default::default()
            };
            store.audit(org.id, entry).await.unwrap();
        })
        .await,
    ));
    rows.push((
        "idempotency claim + complete",
        time(n, async |i| {
            let k = format!("k{i}-{}", rand_suffix());
            store.claim_idempotency(org.id, &k, "f").await.unwrap();
            store
                .complete_idempotency(org.id, &k, 200, "{}")
                .await
                .unwrap();
        })
        .await,
    ));
    rows
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn permit_cost(limiter: &dyn Limiter, n: usize) -> Vec<Duration> {
    time(n, async |_| {
        let ask = PermitAsk::new(
            "bench-account",
            1_000_000,
            1_000,
            Priority::Interactive,
            tokio::time::Instant::now() + Duration::from_secs(5),
        );
        let p = limiter.acquire(ask).await.unwrap();
        limiter.release(&p);
    })
    .await
}

async fn main_async() {
    let n: usize = env_or("STORE_OPS", 2000);
    let Some(url) = devext_service::testing::fresh_postgres_database("bench").await else {
        println!("PostgreSQL not installed: nothing to compare");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = AnyStore::Sqlite(
        SqliteStore::open(&dir.path().join("b.db"), None)
            .await
            .unwrap(),
    );
    let key = SecretKey::generate().unwrap();
    let pg = PgStore::open(&url, key.clone()).await.unwrap();
    let pg_any = AnyStore::Postgres(pg.clone());

    println!("## Store latency per operation ({n} calls each, one caller)\n");
    println!(
        "| operation | SQLite p50 µs | SQLite p99 µs | PostgreSQL p50 µs | PostgreSQL p99 µs |"
    );
    println!("|---|---|---|---|---|");
    let a = store_ops(&sqlite, n).await;
    let b = store_ops(&pg_any, n).await;
    for ((name, s), (_, p)) in a.iter().zip(&b) {
        println!(
            "| {name} | {} | {} | {} | {} |",
            us(pct(s, 50)),
            us(pct(s, 99)),
            us(pct(p, 50)),
            us(pct(p, 99))
        );
    }

    println!("\n## A limiter permit (acquire + release, never waiting), {n} calls\n");
    println!("| limiter | p50 µs | p99 µs | mean µs |");
    println!("|---|---|---|---|");
    let local = LocalLimiter::new();
    let shared = PgLimiter::new(pg.pool().clone(), pg.replica());
    for (name, l) in [
        ("in-process (LocalLimiter)", &local as &dyn Limiter),
        ("PostgreSQL (PgLimiter)", &shared as &dyn Limiter),
    ] {
        let d = permit_cost(l, n).await;
        let mean = d.iter().sum::<Duration>() / d.len() as u32;
        println!(
            "| {name} | {} | {} | {} |",
            us(pct(&d, 50)),
            us(pct(&d, 99)),
            us(mean)
        );
    }

    let secs: u64 = env_or("RATE_SECONDS", 20);
    println!(
        "\n## One account at 5 per second, 1 in flight, saturated by 3 replicas ({secs} s, 8 \
         callers each, 20 ms per call)\n"
    );
    let mut limiters = Vec::new();
    for _ in 0..3 {
        let s = PgStore::open(&url, key.clone()).await.unwrap();
        limiters.push(Arc::new(PgLimiter::new(s.pool().clone(), s.replica())));
    }
    let starts = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for l in &limiters {
        for _ in 0..8 {
            let (l, starts) = (Arc::clone(l), Arc::clone(&starts));
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let ask = PermitAsk::new(
                        "jasper-default",
                        5,
                        1,
                        Priority::Interactive,
                        tokio::time::Instant::now() + Duration::from_secs(30),
                    );
                    let p = l.acquire(ask).await.unwrap();
                    starts.lock().unwrap().push(t0.elapsed());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    l.release(&p);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut s = starts.lock().unwrap().clone();
    s.sort_unstable();
    let span = (*s.last().unwrap() - s[0]).as_secs_f64();
    let rate = (s.len() - 1) as f64 / span;
    let max_in_second = s
        .iter()
        .map(|&t| {
            s.iter()
                .filter(|&&x| x >= t && x - t < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    println!("| starts | achieved rate | of the allowed 5/s | most starts in any rolling second |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {rate:.2}/s | {:.0} % | {max_in_second} |",
        s.len(),
        rate / 5.0 * 100.0
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(main_async());
}
