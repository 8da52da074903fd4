//! Load through the HTTP service: the Jasper `overview` view driven through `POST
//! /api/v1/devices/{id}/extensions/jasper/overview` against the Jasper simulator, compared in the
//! same run with a client that makes the plugin's upstream calls itself (`GET
//! /rws/api/v1/devices/{iccid}`, then `GET .../ctdUsages`, Basic auth) at the same concurrency.
//!
//! Three parties, as on three machines: the devext service is the real `devext serve` binary in
//! its own process (its RSS and CPU time read from `/proc`); the load client (both paths) and the
//! simulators (a stand-in for Jasper) run in this process, each on its own tokio runtime. They
//! talk over loopback sockets; the client is one keep-alive `reqwest` client. The simulators'
//! rate limits are lifted and each adds `LATENCY_MS` to every answer (a stand-in for a real
//! network); the orgs' `rate_per_second` and `max_in_flight` are set to the schema's maxima; the
//! view cache is off (`view_cache_entries = 0`); no device or ICCID is used twice in a run, so
//! every request reads its device from the store and goes upstream.
//!
//! Each level starts with a warm-up at its concurrency (connection pools filled, not measured),
//! then runs `LOAD_ROUNDS` rounds, the two paths one after the other over the same devices,
//! alternating which goes first (direct/devext, devext/direct, ...) so that drift in the
//! machine's state falls on both alike; percentiles are over all rounds' requests.
//!
//! It runs with one Jasper account (one simulator, one org) and with 32 (as many simulators and
//! orgs, the devices interleaved over them).
//!
//! On PostgreSQL (`LOAD_STORE=postgres`: a throw-away cluster, or `DEVEXT_TEST_DATABASE_URL`),
//! `LOAD_REPLICAS` (default `1`, e.g. `1,2,3`) `devext serve` replicas share the database and the
//! client sends consecutive requests to consecutive replicas; the service CPU and RSS columns
//! are then the replicas' sums.
//!
//! Run with `cargo bench -p devext --bench service_load` (release). Environment:
//! `LOAD_LEVELS` (default `1,8,64`), `LOAD_ACCOUNTS` (default `1,32`), `LOAD_REQUESTS` (per level
//! and path, default 4000, at most 10000, and at most 500 per unit of concurrency),
//! `LOAD_ROUNDS` (default 8), `LATENCY_MS` (default 20). Columns: latency percentiles and their
//! ratios, throughput, CPU time per request of this process (client and simulators) for each
//! path and of the service, errors, and the service's RSS before and after the level.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use devext_host::{Runtime, RuntimeConfig};
use devext_jasper_sim::{FaultSettings, LimitSettings, RunningSim, SimConfig};
use devext_service::lookup::LookupFields;
use devext_service::store::{AnyStore, ExtensionSettings, Role, Store};
use serde_json::{Map, Value, json};
use tokio::runtime::Handle;

// The Jasper plugin, linked here only to read its org schema (the service is `devext serve`).
use devext_jasper as _;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process (`self` or a pid), in KiB.
fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time used so far by every live thread of a process (`self` or a pid), in nanoseconds,
/// from `/proc/<pid>/task/*/schedstat`.
fn cpu_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A device of the service and the SIM it is bound to.
struct Device {
    id: String,
    iccid: String,
    /// The simulator (Jasper account) holding the SIM, and its REST credentials.
    sim_base: String,
    username: String,
    api_key: String,
    /// An admin key of the org whose settings point at that simulator.
    admin: String,
}

/// What both paths need.
struct Target {
    client: reqwest::Client,
    /// The replicas' base URLs (one, except on PostgreSQL with `LOAD_REPLICAS`).
    service_bases: Vec<String>,
    /// The replicas' process ids, as `/proc` names them.
    service_pids: Vec<String>,
    /// The accounts interleaved: consecutive devices belong to different accounts.
    devices: Vec<Device>,
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
            // The plugin parses each answer; so does this client.
            read_json(
                self.client
                    .get(&url)
                    .basic_auth(&d.username, Some(&d.api_key))
                    .header("accept", "application/json")
                    .send(),
            )
            .await?;
        }
        Ok(())
    }

    async fn devext(&self, d: &Device, i: usize) -> Result<(), String> {
        let base = &self.service_bases[i % self.service_bases.len()];
        let url = format!("{base}/api/v1/devices/{}/extensions/jasper/overview", d.id);
        read_json(
            self.client
                .post(&url)
                .bearer_auth(&d.admin)
                .header("content-type", "application/json")
                .body("{}")
                .send(),
        )
        .await
    }

    async fn one(&self, path: Path, i: usize) -> Result<(), String> {
        let device = &self.devices[i];
        match path {
            Path::Direct => self.direct(device).await,
            Path::Devext => self.devext(device, i).await,
        }
    }
}

/// Sends a request and parses its answer as JSON; a failure or a non-2xx status is an error.
async fn read_json(
    sent: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
) -> Result<(), String> {
    let resp = sent.await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let _: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok(())
}

/// One path's requests at one level, pooled over rounds.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// CPU time of this process (load client and simulators).
    local_cpu_ns: u64,
    /// CPU time of the service's process.
    service_cpu_ns: u64,
    upstream_requests: u64,
    upstream_refusals: u64,
}

impl Samples {
    /// The `p`th percentile; `latencies` must be sorted (see [`run`]).
    fn pct(&self, p: usize) -> Duration {
        let l = &self.latencies;
        if l.is_empty() {
            return Duration::ZERO;
        }
        l[(l.len() * p / 100).min(l.len() - 1)]
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn per_request_us(&self, ns: u64) -> f64 {
        ns as f64 / 1000.0 / self.latencies.len().max(1) as f64
    }
}

/// `n` requests on devices `offset..offset + n` by `concurrency` workers (closed loop), added to
/// `into`.
async fn run(
    target: &Arc<Target>,
    sims: &[RunningSim],
    path: Path,
    concurrency: usize,
    n: usize,
    offset: usize,
    into: &mut Samples,
) {
    for s in sims {
        s.reset_stats();
    }
    let next = Arc::new(AtomicUsize::new(0));
    let service_cpu = || target.service_pids.iter().map(|p| cpu_ns(p)).sum::<u64>();
    let cpu_start = (cpu_ns("self"), service_cpu());
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
    for w in workers {
        let (lat, errs) = w.await.expect("worker");
        into.latencies.extend(lat);
        into.errors += errs.len();
        if into.first_error.is_none() {
            into.first_error = errs.into_iter().next();
        }
    }
    into.elapsed += started.elapsed();
    into.local_cpu_ns += cpu_ns("self").saturating_sub(cpu_start.0);
    into.service_cpu_ns += service_cpu().saturating_sub(cpu_start.1);
    for s in sims.iter().map(RunningSim::stats) {
        into.upstream_requests += s.requests;
        into.upstream_refusals += s.faults_injected + s.rate_limited;
    }
    // Kept sorted for the percentiles (after the clocks above stopped).
    into.latencies.sort_unstable();
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Starts `accounts` simulators with `sims_total` SIMs in all on the simulators' runtime.
async fn start_sims(
    sims_rt: &Handle,
    accounts: usize,
    sims_total: usize,
    latency_ms: u64,
) -> Vec<RunningSim> {
    let mut sims = Vec::new();
    for a in 0..accounts {
        let config = SimConfig {
            sims: sims_total.div_ceil(accounts),
            seed: a as u64 + 1,
            ..SimConfig::default()
        };
        let sim = sims_rt
            .spawn(devext_jasper_sim::start(config))
            .await
            .expect("simulator task")
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
        sims.push(sim);
    }
    sims
}

/// One account as the service needs it.
struct AccountSpec {
    base_url: String,
    username: String,
    api_key: String,
    iccids: Vec<String>,
}

/// The devext service: a `devext serve` child process over a store prepared here.
struct Service {
    children: Vec<std::process::Child>,
    bases: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Service {
    fn pids(&self) -> Vec<String> {
        self.children.iter().map(|c| c.id().to_string()).collect()
    }

    /// Stops the replicas as an operator would (SIGTERM: graceful shutdown) and waits for them.
    fn stop(mut self) {
        for pid in self.pids() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status();
        }
        for child in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The store of a run: an SQLite file, or a fresh PostgreSQL database and its secret key.
#[derive(Clone)]
enum StoreKind {
    Sqlite,
    Postgres { url: String, key_hex: String },
}

/// A store with one org per account (Jasper switched on against that account's simulator,
/// limits at the schema's maxima, one device per SIM), then `devext serve` over it. Returns the
/// running service and the devices per account.
async fn start_service(
    accounts: Vec<AccountSpec>,
    kind: &StoreKind,
    replicas: usize,
) -> (Service, Vec<Vec<Device>>) {
    let runtime = tokio::task::spawn_blocking(|| Runtime::load(RuntimeConfig::default()))
        .await
        .expect("load")
        .expect("runtime");
    let schema = &runtime
        .plugin("jasper")
        .expect("jasper is linked")
        .manifest()
        .org_config_schema;
    let max_rate = schema["properties"]["rate_per_second"]["maximum"].clone();
    let max_in_flight = schema["properties"]["max_in_flight"]["maximum"].clone();
    eprintln!("org limits: rate_per_second={max_rate}, max_in_flight={max_in_flight}");

    let dir = tempfile::tempdir().expect("temp dir");
    let db = match kind {
        StoreKind::Sqlite => dir
            .path()
            .join("load.db")
            .to_str()
            .expect("utf-8")
            .to_owned(),
        StoreKind::Postgres { url, .. } => url.clone(),
    };
    let key = match kind {
        StoreKind::Sqlite => None,
        StoreKind::Postgres { key_hex, .. } => {
            Some(devext_service::crypto::SecretKey::from_hex(key_hex).expect("a key"))
        }
    };
    let store = AnyStore::open(&db, key).await.expect("store");
    let lookup = LookupFields::of(&runtime);
    let mut per_account = Vec::new();
    for (a, account) in accounts.into_iter().enumerate() {
        let org = store.create_org(&format!("load {a}")).await.expect("org");
        let (_, admin) = store
            .create_key(org.id, Role::Admin, "load")
            .await
            .expect("key");
        let mut cfg = Map::new();
        cfg.insert("api".into(), json!("rest"));
        cfg.insert("endpoint".into(), json!(account.base_url));
        cfg.insert("username".into(), json!(account.username));
        cfg.insert("rate_per_second".into(), max_rate.clone());
        cfg.insert("max_in_flight".into(), max_in_flight.clone());
        let mut secrets = Map::new();
        secrets.insert("api_key".into(), json!(account.api_key));
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
        for (i, iccid) in account.iccids.into_iter().enumerate() {
            let extensions = json!({"jasper": {"iccid": iccid}});
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
            devices.push(Device {
                id: d.id,
                iccid,
                sim_base: account.base_url.clone(),
                username: account.username.clone(),
                api_key: account.api_key.clone(),
                admin: admin.clone(),
            });
        }
        per_account.push(devices);
    }
    drop(store);

    let config = dir.path().join("devext.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndb = {db:?}\nallow_loopback_http = true\nview_cache_entries = 0\n"
        ),
    )
    .expect("config");
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..replicas {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_devext"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("DEVEXT_LISTEN")
            .env_remove("DEVEXT_DB")
            .env_remove("DEVEXT_PLUGINS")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped());
        if let StoreKind::Postgres { key_hex, .. } = kind {
            command.env("DEVEXT_SECRET_KEY", key_hex);
        }
        let mut child = command.spawn().expect("devext serve");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .expect("banner");
            line
        })
        .await
        .expect("banner task");
        // "devext serving on http://ADDR (store ...)"
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        children.push(child);
        bases.push(base);
    }
    (
        Service {
            children,
            bases,
            _dir: dir,
        },
        per_account,
    )
}

/// Runs every level against a fresh service over `accounts` accounts; prints one table.
async fn measure(
    levels: &[usize],
    latency_ms: u64,
    accounts: usize,
    sims_rt: &Handle,
    kind: &StoreKind,
    replicas: usize,
) {
    let n = env_or("LOAD_REQUESTS", 4000).clamp(1, 10_000);
    let rounds = env_or("LOAD_ROUNDS", 8).clamp(1, n);
    let first_warm_up = 64;
    // At most 500 requests per unit of concurrency: a level at concurrency 1 takes 20 s a path.
    let requests = |c: usize| n.min(500 * c);
    let devices_needed = first_warm_up + levels.iter().map(|&c| 2 * c + requests(c)).sum::<usize>();

    let sims = start_sims(sims_rt, accounts, devices_needed, latency_ms).await;
    let specs = sims
        .iter()
        .map(|sim| AccountSpec {
            base_url: sim.base_url(),
            username: sim.credentials().username.clone(),
            api_key: sim.credentials().api_key.clone(),
            iccids: sim.sims().into_iter().map(|s| s.iccid).collect(),
        })
        .collect();
    let (service, per_account) = start_service(specs, kind, replicas).await;
    // Interleaved: consecutive requests go to different accounts.
    let mut per_account: Vec<_> = per_account.into_iter().map(Vec::into_iter).collect();
    let mut devices = Vec::new();
    loop {
        let before = devices.len();
        devices.extend(per_account.iter_mut().filter_map(Iterator::next));
        if devices.len() == before {
            break;
        }
    }
    eprintln!(
        "setup: {accounts} Jasper account(s) (simulators, orgs), {} SIMs and devices; \
         simulator latency {latency_ms} ms per answer, its limits off; view cache off",
        devices.len()
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let target = Arc::new(Target {
        client,
        service_bases: service.bases.clone(),
        service_pids: service.pids(),
        devices,
    });

    // First warm-up: the allocators, the plugin's per-account state, the service's memos of
    // keys and settings.
    let mut offset = 0;
    for path in [Path::Direct, Path::Devext] {
        let mut w = Samples::default();
        run(&target, &sims, path, 8, first_warm_up, offset, &mut w).await;
        assert_eq!(w.errors, 0, "warm-up: {:?}", w.first_error);
    }
    offset += first_warm_up;
    let service_rss = || target.service_pids.iter().map(|p| rss_kib(p)).sum::<u64>();
    let rss_start = service_rss();
    println!();
    let store_name = match kind {
        StoreKind::Sqlite => "SQLite".to_owned(),
        StoreKind::Postgres { .. } => format!("PostgreSQL, {replicas} replica(s)"),
    };
    println!(
        "{store_name}; {accounts} Jasper account(s), {latency_ms} ms simulator latency, up to {n} \
         requests per path and level (at most 500 per unit of concurrency) in {rounds} rounds:"
    );
    println!();
    println!(
        "| concurrency | requests per path | direct p50 ms | direct p99 ms | devext p50 ms | devext p99 ms | p50 ratio | p99 ratio | direct req/s | devext req/s | CPU µs/req client+Jasper, direct | CPU µs/req client+Jasper, devext | CPU µs/req devext service | errors (direct/devext) | service RSS KiB before → after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &c in levels {
        let rss_before = service_rss();
        // Warm-up at this concurrency: both clients' connection pools and the service's.
        for path in [Path::Direct, Path::Devext] {
            let mut w = Samples::default();
            run(&target, &sims, path, c, c, offset, &mut w).await;
            assert_eq!(w.errors, 0, "warm-up: {:?}", w.first_error);
            offset += c;
        }
        let (mut direct, mut devext) = (Samples::default(), Samples::default());
        let (n, rounds) = (requests(c), rounds.min(requests(c)));
        for round in 0..rounds {
            let size = n / rounds + usize::from(round < n % rounds);
            let order = if round % 2 == 0 {
                [Path::Direct, Path::Devext]
            } else {
                [Path::Devext, Path::Direct]
            };
            for path in order {
                let into = if path == Path::Direct {
                    &mut direct
                } else {
                    &mut devext
                };
                run(&target, &sims, path, c, size, offset, into).await;
            }
            offset += size;
        }
        let rss_after = service_rss();
        println!(
            "| {c} | {n} | {} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {}/{} | {rss_before} → {rss_after} |",
            ms(direct.pct(50)),
            ms(direct.pct(99)),
            ms(devext.pct(50)),
            ms(devext.pct(99)),
            devext.pct(50).as_secs_f64() / direct.pct(50).as_secs_f64(),
            devext.pct(99).as_secs_f64() / direct.pct(99).as_secs_f64(),
            direct.per_second(),
            devext.per_second(),
            direct.per_request_us(direct.local_cpu_ns),
            devext.per_request_us(devext.local_cpu_ns),
            devext.per_request_us(devext.service_cpu_ns),
            direct.errors,
            devext.errors,
        );
        eprintln!(
            "  c={c}: upstream requests direct {} / devext {}; upstream refusals or faults {} / {}",
            direct.upstream_requests,
            devext.upstream_requests,
            direct.upstream_refusals,
            devext.upstream_refusals,
        );
        for (name, r) in [("direct", &direct), ("devext", &devext)] {
            if let Some(e) = &r.first_error {
                eprintln!("  c={c} {name}: first error: {e}");
            }
        }
    }
    println!();
    println!(
        "Service RSS over the measured levels: {rss_start} KiB → {} KiB",
        service_rss()
    );
    service.stop();
    for s in sims {
        sims_rt
            .spawn(s.shutdown())
            .await
            .expect("simulator shutdown");
    }
}

fn tokio_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .expect("tokio")
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let list = |name: &str, default: &str| -> Vec<usize> {
        std::env::var(name)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter(|&c| c > 0)
            .collect()
    };
    let levels = list("LOAD_LEVELS", "1,8,64");
    let accounts = list("LOAD_ACCOUNTS", "1,32");
    let latency_ms: u64 = env_or("LATENCY_MS", 20);
    let replicas = list("LOAD_REPLICAS", "1");
    let client_rt = tokio_runtime("load-client");
    let sims_rt = tokio_runtime("jasper-sim");
    let postgres = std::env::var("LOAD_STORE").as_deref() == Ok("postgres");
    for a in accounts {
        for &r in &replicas {
            let kind = if postgres {
                let url = client_rt
                    .block_on(devext_service::testing::fresh_postgres_database("load"))
                    .expect("PostgreSQL for LOAD_STORE=postgres (initdb on PATH or in /usr/lib/postgresql, or DEVEXT_TEST_DATABASE_URL)");
                let key_hex: String = (0..32).map(|i| format!("{:02x}", i * 7 + 3)).collect();
                StoreKind::Postgres { url, key_hex }
            } else {
                StoreKind::Sqlite
            };
            let r = if postgres { r.clamp(1, 8) } else { 1 };
            client_rt.block_on(measure(
                &levels,
                latency_ms,
                a.clamp(1, 100),
                sims_rt.handle(),
                &kind,
                r,
            ));
            if !postgres {
                break;
            }
        }
    }
}
