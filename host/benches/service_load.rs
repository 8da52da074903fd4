//! Load through the HTTP service: the Jasper `overview` view driven through `POST
//! /api/v1/devices/{id}/extensions/jasper/overview` against the in-process Jasper simulator,
//! compared in the same run with a client that makes the plugin's upstream calls itself
//! (`GET /rws/api/v1/devices/{iccid}`, then `GET .../ctdUsages`, Basic auth) at the same
//! concurrency.
//!
//! The simulator's rate limit is lifted and it adds `LATENCY_MS` to every answer (a stand-in for
//! a real network); the org's `rate_per_second` and `max_in_flight` are set to the plugin's
//! maxima; the view cache is off and no ICCID repeats within a level, so every request goes
//! upstream. Service, simulator and client share one multi-thread tokio runtime and talk over
//! loopback sockets; both clients are one keep-alive `reqwest` client.
//!
//! The plugin keeps each Jasper account within its limits (at most 100 requests per second, 20
//! at a time): an `overview` is two requests, so one account serves at most 50 a second, which
//! caps the devext path at concurrency 8 and above. The bench therefore runs twice: with one
//! account (one simulator, one org), and with 32 (as many simulators and orgs, the SIMs spread
//! over them, requests interleaved) where that limiter never binds and what remains is devext's
//! own overhead.
//!
//! Run with `cargo bench -p devext-host --bench service_load` (release). Environment:
//! `LOAD_LEVELS` (default `1,8,64`), `LOAD_ACCOUNTS` (default `1,32`), `LOAD_REQUESTS` (per level
//! and path, default 500, at most 2000), `LATENCY_MS` (default 20).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use devext_host::service::store::{ExtensionSettings, Role, SqliteStore, Store};
use devext_host::service::{self, App};
use devext_host::{Runtime, RuntimeConfig};
use devext_jasper_sim::{FaultSettings, LimitSettings, RunningSim, SimConfig};
use serde_json::{Map, Value, json};

// The Jasper plugin as a static plugin.
use devext_jasper as _;

const SIMS: usize = 2000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// What one path needs to make its `i`-th request.
struct Target {
    client: reqwest::Client,
    service_base: String,
    username: String,
    api_key: String,
    /// One per SIM, the accounts interleaved.
    devices: Vec<Device>,
}

/// A device of the service and the SIM it is bound to.
struct Device {
    id: String,
    iccid: String,
    /// The simulator (Jasper account) holding the SIM.
    sim_base: String,
    /// An admin key of the org whose settings point at that simulator.
    admin: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Direct,
    Devext,
}

impl Target {
    async fn direct(&self, d: &Device) -> Result<(), String> {
        let (base, iccid) = (&d.sim_base, &d.iccid);
        for url in [
            format!("{base}/rws/api/v1/devices/{iccid}"),
            format!("{base}/rws/api/v1/devices/{iccid}/ctdUsages"),
        ] {
            let resp = self
                .client
                .get(&url)
                .basic_auth(&self.username, Some(&self.api_key))
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
            }
            // The plugin parses each answer; so does this client.
            let _: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn devext(&self, d: &Device) -> Result<(), String> {
        let url = format!(
            "{}/api/v1/devices/{}/extensions/jasper/overview",
            self.service_base, d.id
        );
        let resp = self
            .client
            .post(&url)
            .bearer_auth(&d.admin)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        let _: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn one(&self, path: Path, i: usize) -> Result<(), String> {
        let device = &self.devices[i % self.devices.len()];
        match path {
            Path::Direct => self.direct(device).await,
            Path::Devext => self.devext(device).await,
        }
    }
}

struct RunResult {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

impl RunResult {
    fn pct(&self, p: usize) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = (self.latencies.len() * p / 100).min(self.latencies.len() - 1);
        self.latencies[i]
    }
}

/// `n` requests by `concurrency` workers (closed loop), request indices from `offset`.
async fn run(
    target: &Arc<Target>,
    path: Path,
    concurrency: usize,
    n: usize,
    offset: usize,
) -> RunResult {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let r = target.one(path, offset + i).await;
                lat.push(t.elapsed());
                if let Err(e) = r {
                    errors.push(e);
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    let mut errors = 0;
    let mut first_error = None;
    for w in workers {
        let (lat, errs) = w.await.expect("worker");
        latencies.extend(lat);
        errors += errs.len();
        if first_error.is_none() {
            first_error = errs.into_iter().next();
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    RunResult {
        latencies,
        errors,
        first_error,
        elapsed,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The service over `accounts` simulators (Jasper accounts), one org each, `SIMS` SIMs and
/// devices in all.
async fn setup(
    latency_ms: u64,
    accounts: usize,
) -> (Arc<Target>, Vec<RunningSim>, tempfile::TempDir) {
    let mut config = RuntimeConfig {
        view_cache_entries: 0,
        ..RuntimeConfig::default()
    };
    config.egress.allow_loopback_http = true;
    let runtime = tokio::task::spawn_blocking(move || Runtime::load(config))
        .await
        .expect("load")
        .expect("runtime");
    let schema = runtime
        .plugin("jasper")
        .expect("jasper is linked")
        .manifest()
        .org_config_schema
        .clone();
    let max_rate = schema["properties"]["rate_per_second"]["maximum"].clone();
    let max_in_flight = schema["properties"]["max_in_flight"]["maximum"].clone();

    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("load.db"), None)
        .await
        .expect("store");
    let mut sims = Vec::new();
    let mut per_account = Vec::new();
    for a in 0..accounts {
        let sim = devext_jasper_sim::start(SimConfig {
            sims: SIMS / accounts,
            seed: a as u64 + 1,
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        sim.set_limits(LimitSettings {
            enabled: false,
            rate_per_second: 0,
            max_in_flight: 0,
        });
        sim.set_faults(FaultSettings {
            latency_ms,
            ..FaultSettings::default()
        })
        .expect("faults");
        let org = store.create_org(&format!("load {a}")).await.expect("org");
        let (_, admin) = store
            .create_key(org.id, Role::Admin, "load")
            .await
            .expect("key");
        let creds = sim.credentials().clone();
        let mut cfg = Map::new();
        cfg.insert("api".into(), json!("rest"));
        cfg.insert("endpoint".into(), json!(sim.base_url()));
        cfg.insert("username".into(), json!(creds.username));
        cfg.insert("rate_per_second".into(), max_rate.clone());
        cfg.insert("max_in_flight".into(), max_in_flight.clone());
        let mut secrets = Map::new();
        secrets.insert("api_key".into(), json!(creds.api_key));
        let settings = ExtensionSettings {
            plugin: "jasper".into(),
            enabled: true,
            config: cfg,
            secrets,
        };
        runtime
            .validate_org_config("jasper", &settings.merged())
            .expect("valid settings");
        store.put_extension(org.id, &settings).await.expect("put");
        let mut devices = Vec::new();
        for (i, sim_card) in sim.sims().into_iter().enumerate() {
            let d = store
                .create_device(
                    org.id,
                    &format!("unit {i}"),
                    None,
                    &json!({"jasper": {"iccid": sim_card.iccid}}),
                )
                .await
                .expect("device");
            devices.push(Device {
                id: d.id,
                iccid: sim_card.iccid,
                sim_base: sim.base_url(),
                admin: admin.clone(),
            });
        }
        per_account.push(devices.into_iter());
        sims.push(sim);
    }
    // Interleaved: consecutive requests go to different accounts.
    let mut devices = Vec::with_capacity(SIMS);
    loop {
        let before = devices.len();
        devices.extend(per_account.iter_mut().filter_map(Iterator::next));
        if devices.len() == before {
            break;
        }
    }
    eprintln!(
        "setup: {accounts} Jasper account(s) (simulators, orgs), {} SIMs and devices; org limits \
         rate_per_second={max_rate}, max_in_flight={max_in_flight} per account; simulator latency \
         {latency_ms} ms per answer, its limits off; view cache off",
        devices.len()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(service::serve(
        listener,
        App::new(runtime, store),
        std::future::pending(),
    ));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let creds = sims[0].credentials().clone();
    let target = Arc::new(Target {
        client,
        service_base: format!("http://{addr}"),
        username: creds.username,
        api_key: creds.api_key,
        devices,
    });
    (target, sims, dir)
}

/// Runs every level against a fresh service over `accounts` accounts; prints one table.
async fn measure(levels: &[usize], latency_ms: u64, accounts: usize) {
    let (target, sims, _dir) = setup(latency_ms, accounts).await;
    let stats = |sims: &[RunningSim]| {
        sims.iter()
            .map(RunningSim::stats)
            .fold((0, 0), |(r, f), s| {
                (r + s.requests, f + s.faults_injected + s.rate_limited)
            })
    };
    // Warm-up: connections, allocator, the plugin's per-account state.
    for path in [Path::Direct, Path::Devext] {
        let w = run(&target, path, 8, 64, 0).await;
        assert_eq!(w.errors, 0, "warm-up: {:?}", w.first_error);
    }
    let rss_start = rss_kib();
    println!();
    println!("{accounts} Jasper account(s), {latency_ms} ms simulator latency:");
    println!();
    println!(
        "| concurrency | requests | direct p50 ms | direct p99 ms | devext p50 ms | devext p99 ms | p50 ratio | p99 ratio | direct req/s | devext req/s | errors (direct/devext) | RSS KiB before → after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut offset = 64;
    for &c in levels {
        let n = env_or("LOAD_REQUESTS", 500).min(SIMS);
        for s in &sims {
            s.reset_stats();
        }
        let direct = run(&target, Path::Direct, c, n, offset).await;
        let direct_stats = stats(&sims);
        for s in &sims {
            s.reset_stats();
        }
        let rss_before = rss_kib();
        let devext = run(&target, Path::Devext, c, n, offset).await;
        let devext_stats = stats(&sims);
        let rss_after = rss_kib();
        offset += n;
        println!(
            "| {c} | {n} | {} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {}/{} | {rss_before} → {rss_after} |",
            ms(direct.pct(50)),
            ms(direct.pct(99)),
            ms(devext.pct(50)),
            ms(devext.pct(99)),
            devext.pct(50).as_secs_f64() / direct.pct(50).as_secs_f64(),
            devext.pct(99).as_secs_f64() / direct.pct(99).as_secs_f64(),
            n as f64 / direct.elapsed.as_secs_f64(),
            n as f64 / devext.elapsed.as_secs_f64(),
            direct.errors,
            devext.errors,
        );
        eprintln!(
            "  c={c}: upstream requests direct {} / devext {}; upstream refusals or faults {} / {}",
            direct_stats.0, devext_stats.0, direct_stats.1, devext_stats.1,
        );
        for (name, r) in [("direct", &direct), ("devext", &devext)] {
            if let Some(e) = &r.first_error {
                eprintln!("  c={c} {name}: first error: {e}");
            }
        }
    }
    println!();
    println!(
        "RSS over the measured levels: {rss_start} KiB → {} KiB",
        rss_kib()
    );
    for s in sims {
        s.shutdown().await;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let list = |name: &str, default: &str| -> Vec<usize> {
        std::env::var(name)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    let levels = list("LOAD_LEVELS", "1,8,64");
    let accounts = list("LOAD_ACCOUNTS", "1,32");
    let latency_ms: u64 = env_or("LATENCY_MS", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        for a in accounts {
            measure(&levels, latency_ms, a.clamp(1, 100)).await;
        }
    });
}
