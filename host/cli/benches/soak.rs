//! Soak: a bounded run (`SOAK_SECS`, default 600) of mixed traffic through the real `devext
//! serve` process against the Jasper simulator with its fault modes on, which stops by itself.
//! It reports the service's resident memory, open files and threads at the start (after a
//! warm-up) and at the end, and counts errors: every answer must be a success except those the
//! injected faults explain (an operation answering 502/504/429 with an upstream error kind).
//!
//! Traffic, from `SOAK_WORKERS` (default 8) closed-loop workers: the `overview` and
//! `usage_history` views, the `set_status` action (each worker toggling its own SIM, with an
//! `Idempotency-Key`), the drilldown with its views, device reads, lookups by ICCID, device
//! creation, update with `If-Match` and deletion, `/healthz`.
//!
//! Faults: the simulator answers `SOAK_ERROR_RATE` (default 0.03) of its requests with a server
//! error, adds `SOAK_LATENCY_MS` (default 5) to each, and every 15 s forces the next few
//! requests into one mode, in turn: HTTP 500, rate limited, malformed body, dropped connection,
//! write applied and its answer dropped.
//!
//! Run: `cargo bench -p devext --bench soak` (release), or `--profile dev` for the debug build.
//! Exits non-zero on an unexplained error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use devext_host::{Runtime, RuntimeConfig};
use devext_jasper_sim::{FaultMode, FaultSettings, LimitSettings, SimConfig};
use devext_service::lookup::LookupFields;
use devext_service::store::{AnyStore, ExtensionSettings, Role, Store};
use serde_json::{Map, Value, json};

use devext_jasper as _;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A field of `/proc/<pid>/status` (`VmRSS`, `Threads`), its first number.
fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The service's resident memory (KiB), open files and threads.
fn sample(pid: u32) -> (u64, usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (
        status_field(pid, "VmRSS:"),
        fds,
        status_field(pid, "Threads:"),
    )
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    injected: AtomicU64,
    unexplained: AtomicU64,
}

struct Target {
    client: reqwest::Client,
    base: String,
    admin: String,
    /// Device ids and their ICCIDs.
    devices: Vec<(String, String)>,
    counts: Counts,
    first_unexplained: std::sync::Mutex<Option<String>>,
}

impl Target {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<(u16, reqwest::header::HeaderMap, Value), String> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin);
        for (n, v) in headers {
            req = req.header(*n, v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| format!("{path}: {e}"))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {status}: {e}"))?
        };
        Ok((status, headers, body))
    }

    fn record(&self, what: &str, result: Result<(u16, Value), String>, operation: bool) {
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        let unexplained = match result {
            Ok((s, _)) if (200..300).contains(&s) => None,
            // What the injected faults cause: the plugin's upstream errors.
            Ok((s @ (429 | 502 | 504), body))
                if operation
                    && matches!(
                        body["error"]["kind"].as_str(),
                        Some("upstream" | "timeout" | "rate_limited")
                    ) =>
            {
                let _ = s;
                self.counts.injected.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok((s, body)) => Some(format!("{what}: {s} {body}")),
            Err(e) => Some(format!("{what}: {e}")),
        };
        if let Some(e) = unexplained {
            self.counts.unexplained.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_unexplained.lock().unwrap();
            if first.is_none() {
                *first = Some(e);
            }
        }
    }

    async fn op(&self, device: &str, op: &str, body: Value, key: Option<String>) {
        let headers: Vec<(&str, String)> = key
            .map(|k| vec![("idempotency-key", k)])
            .unwrap_or_default();
        let path = format!("/api/v1/devices/{device}/extensions/jasper/{op}");
        let r = self
            .send(reqwest::Method::POST, &path, Some(body), &headers)
            .await;
        self.record(op, r.map(|(s, _, b)| (s, b)), true);
    }

    async fn plain(&self, what: &str, method: reqwest::Method, path: &str, body: Option<Value>) {
        let r = self.send(method, path, body, &[]).await;
        self.record(what, r.map(|(s, _, b)| (s, b)), false);
    }

    /// A device created, updated with `If-Match`, read and deleted.
    async fn device_cycle(&self, worker: usize, n: u64) {
        let name = format!("soak {worker}-{n}");
        let r = self
            .send(
                reqwest::Method::POST,
                "/api/v1/devices",
                Some(json!({"name": name})),
                &[],
            )
            .await;
        let (id, etag) = match &r {
            Ok((201, h, b)) => (
                b["id"].as_str().unwrap_or_default().to_owned(),
                h.get("etag")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
            ),
            _ => {
                self.record("create", r.map(|(s, _, b)| (s, b)), false);
                return;
            }
        };
        self.record("create", Ok((201, Value::Null)), false);
        let path = format!("/api/v1/devices/{id}");
        let r = self
            .send(
                reqwest::Method::PUT,
                &path,
                Some(json!({"name": format!("{name} renamed"), "type": "soak"})),
                &[("if-match", etag)],
            )
            .await;
        self.record("update", r.map(|(s, _, b)| (s, b)), false);
        self.plain("read", reqwest::Method::GET, &path, None).await;
        self.plain("delete", reqwest::Method::DELETE, &path, None)
            .await;
    }

    async fn worker(self: Arc<Self>, w: usize, until: Instant) {
        let mut n: u64 = 0;
        // This worker's own SIM for the action, and its state.
        let own = &self.devices[w % self.devices.len()].0;
        let mut activated = true;
        while Instant::now() < until {
            n += 1;
            let (device, iccid) = &self.devices[(n as usize * 7 + w) % self.devices.len()];
            match n % 20 {
                0..=5 => self.op(device, "overview", json!({}), None).await,
                6 | 7 => self.op(device, "usage_history", json!({}), None).await,
                8 => {
                    activated = !activated;
                    let status = if activated {
                        "activated"
                    } else {
                        "deactivated"
                    };
                    let key = format!("soak-{w}-{n}");
                    self.op(own, "set_status", json!({"status": status}), Some(key))
                        .await;
                }
                9 | 10 => {
                    let path = format!("/api/v1/devices/{device}/extensions?include=views");
                    self.plain("drilldown", reqwest::Method::GET, &path, None)
                        .await;
                }
                11..=13 => {
                    let path = format!("/api/v1/devices/{device}");
                    self.plain("get", reqwest::Method::GET, &path, None).await;
                }
                14 | 15 => {
                    let path = format!("/api/v1/devices?ext.jasper.iccid={iccid}");
                    self.plain("lookup", reqwest::Method::GET, &path, None)
                        .await;
                }
                16 | 17 => self.device_cycle(w, n).await,
                _ => {
                    self.plain("health", reqwest::Method::GET, "/healthz", None)
                        .await
                }
            }
        }
    }
}

/// The service process, killed if the bench ends early (a panic).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let secs = env_or("SOAK_SECS", 600u64).max(10);
    let workers = env_or("SOAK_WORKERS", 8usize).max(1);
    let error_rate = env_or("SOAK_ERROR_RATE", 0.03f64);
    let latency_ms = env_or("SOAK_LATENCY_MS", 5u64);
    // reqwest is built without a default TLS provider (see ABI-NOTES): ring, as the host's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = rt.block_on(soak(secs, workers, error_rate, latency_ms));
    if !ok {
        std::process::exit(1);
    }
}

async fn soak(secs: u64, workers: usize, error_rate: f64, latency_ms: u64) -> bool {
    let sim = devext_jasper_sim::start(SimConfig {
        sims: 64,
        seed: 7,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    sim.set_limits(LimitSettings {
        enabled: false,
        rate_per_second: 0,
        max_in_flight: 0,
    });
    let faults = FaultSettings {
        latency_ms,
        error_rate,
        ..FaultSettings::default()
    };
    sim.set_faults(faults.clone()).expect("faults");

    // The store: one org, Jasper against the simulator (REST), a device per SIM.
    let runtime = tokio::task::spawn_blocking(|| Runtime::load(RuntimeConfig::default()))
        .await
        .expect("load")
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("soak.db");
    let store = AnyStore::open(db.to_str().expect("utf-8"), None)
        .await
        .expect("store");
    let org = store.create_org("soak").await.expect("org");
    let (_, admin) = store
        .create_key(org.id, Role::Admin, "soak")
        .await
        .expect("key");
    let creds = sim.credentials().clone();
    let mut config = Map::new();
    config.insert("api".into(), json!("rest"));
    config.insert("endpoint".into(), json!(sim.base_url()));
    config.insert("username".into(), json!(creds.username));
    config.insert("rate_per_second".into(), json!(1000));
    config.insert("max_in_flight".into(), json!(64));
    let mut secrets = Map::new();
    secrets.insert("api_key".into(), json!(creds.api_key));
    let settings = ExtensionSettings {
        plugin: "jasper".into(),
        enabled: true,
        config,
        secrets,
    };
    runtime
        .validate_org_config("jasper", &settings.merged())
        .expect("valid settings");
    store.put_extension(org.id, &settings).await.expect("put");
    let lookup = LookupFields::of(&runtime);
    let mut devices = Vec::new();
    for (i, s) in sim
        .sims()
        .into_iter()
        .filter(|s| s.status == "activated")
        .enumerate()
    {
        let extensions = json!({"jasper": {"iccid": s.iccid}});
        let d = store
            .create_device(
                org.id,
                &format!("unit {i}"),
                None,
                &extensions,
                &lookup.entries(&extensions),
            )
            .await
            .expect("device");
        devices.push((d.id, s.iccid));
    }
    drop(store);

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_devext"))
        .arg("serve")
        .arg("--db")
        .arg(&db)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--allow-loopback-http")
        .env_remove("DEVEXT_LISTEN")
        .env_remove("DEVEXT_DB")
        .env_remove("DEVEXT_PLUGINS")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        // Its log (the plugin's retries of injected faults) beside the store, not on the
        // terminal.
        .stderr(std::fs::File::create(dir.path().join("serve.log")).expect("log file"))
        .spawn()
        .expect("devext serve");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let mut child = KillOnDrop(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("banner");
        line
    })
    .await
    .expect("banner task");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    eprintln!(
        "soak: {secs} s, {workers} workers, {} devices; simulator: {error_rate} of requests \
         fail, {latency_ms} ms latency, a forced fault mode every 15 s",
        devices.len()
    );
    let target = Arc::new(Target {
        client: reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .expect("client"),
        base,
        admin,
        devices,
        counts: Counts::default(),
        first_unexplained: std::sync::Mutex::new(None),
    });

    // Warm-up (30 s at most a tenth of the run), then the start figures.
    let warm = Duration::from_secs((secs / 10).min(30));
    let until = Instant::now() + warm;
    let warmers: Vec<_> = (0..workers)
        .map(|w| tokio::spawn(target.clone().worker(w, until)))
        .collect();
    for w in warmers {
        w.await.expect("warm-up worker");
    }
    let warm_requests = target.counts.requests.swap(0, Ordering::Relaxed);
    let warm_unexplained = target.counts.unexplained.swap(0, Ordering::Relaxed);
    target.counts.injected.store(0, Ordering::Relaxed);
    sim.reset_stats();
    let start = sample(pid);
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let running: Vec<_> = (0..workers)
        .map(|w| tokio::spawn(target.clone().worker(w, until)))
        .collect();
    // The fault schedule and the samples.
    let modes = [
        FaultMode::Http500,
        FaultMode::RateLimit,
        FaultMode::Malformed,
        FaultMode::Drop,
        FaultMode::DropAfterWrite,
    ];
    let mut peak = start;
    let mut i = 0;
    println!("| elapsed | RSS (KiB) | open files | threads | requests | injected errors |");
    println!("|---|---|---|---|---|---|");
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(15).min(until - Instant::now())).await;
        let mode = modes[i % modes.len()];
        i += 1;
        sim.set_faults(FaultSettings {
            mode,
            count: Some(3),
            ..faults.clone()
        })
        .expect("faults");
        let now = sample(pid);
        peak = (peak.0.max(now.0), peak.1.max(now.1), peak.2.max(now.2));
        if i % 4 == 0 {
            println!(
                "| {} s | {} | {} | {} | {} | {} |",
                started.elapsed().as_secs(),
                now.0,
                now.1,
                now.2,
                target.counts.requests.load(Ordering::Relaxed),
                target.counts.injected.load(Ordering::Relaxed)
            );
        }
    }
    for r in running {
        r.await.expect("worker");
    }
    let elapsed = started.elapsed();
    let end = sample(pid);
    let stats = sim.stats();
    let requests = target.counts.requests.load(Ordering::Relaxed);
    let injected = target.counts.injected.load(Ordering::Relaxed);
    let unexplained = target.counts.unexplained.load(Ordering::Relaxed);
    println!();
    println!(
        "warm-up: {warm_requests} requests ({warm_unexplained} unexplained errors); run: \
         {requests} requests in {:.0} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64()
    );
    println!("| | RSS (KiB) | open files | threads |");
    println!("|---|---|---|---|");
    println!("| start | {} | {} | {} |", start.0, start.1, start.2);
    println!("| end | {} | {} | {} |", end.0, end.1, end.2);
    println!("| peak | {} | {} | {} |", peak.0, peak.1, peak.2);
    println!(
        "simulator: {} API requests, {} faults injected, {} rate limited; service answers: {injected} \
         upstream errors (explained by the faults), {unexplained} unexplained",
        stats.requests, stats.faults_injected, stats.rate_limited
    );
    let first = target.first_unexplained.lock().unwrap().clone();
    if let Some(e) = &first {
        println!("first unexplained error: {e}");
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.0.wait();
    sim.shutdown().await;
    // More upstream errors than faults injected would mean the service made some of its own.
    let explained = injected <= stats.faults_injected + stats.rate_limited;
    if !explained {
        println!("more upstream errors ({injected}) than injected faults");
    }
    unexplained == 0 && warm_unexplained == 0 && explained
}
