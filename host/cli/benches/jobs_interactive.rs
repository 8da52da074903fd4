//! The wait of an interactive call while a bulk job runs: the Jasper `overview` view asked
//! through the API (as the dashboard asks it) during a `set_status` job over `JOB_DEVICES`
//! devices, on one Jasper account at its default limits (5 per second, 1 in flight), the
//! simulator enforcing them (strict).
//!
//! Three phases, each measuring `overview` calls made one at a time, every `GAP_MS`:
//! 1. idle: nothing else uses the account;
//! 2. job: a bulk job runs (its calls at bulk priority: the account's limiter serves an
//!    interactive caller first);
//! 3. single calls: the same load as four clients sending single `set_status` requests (at
//!    interactive priority, as any API client's), for comparison.
//!
//! In-process: the service (router, runner, SQLite store in a temporary directory) and the
//! simulator share this process; the wait measured is the limiter's pacing, not CPU, so the
//! figures hold for a debug build too (`cargo bench -p devext --bench jobs_interactive
//! --profile dev`). Environment: `JOB_DEVICES` (default 100), `GAP_MS` (default 500).

use std::time::{Duration, Instant};

use devext_host::egress::EgressConfig;
use devext_host::{Runtime, RuntimeConfig};
use devext_jasper_sim::{RunningSim, SimConfig};
use devext_service::App;
use devext_service::store::{Role, SqliteStore, Store};
use devext_service::testing::Client;
use serde_json::{Value, json};

use devext_jasper as _;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    client: Client,
    admin: String,
    sim: RunningSim,
}

impl Bench {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .send("POST", path, Some(&self.admin), Some(body), &[])
            .await;
        (r.status.as_u16(), r.body)
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .send("GET", path, Some(&self.admin), None, &[])
            .await
            .body
    }

    /// `n` devices for activated SIMs not used yet (`used` grows).
    async fn devices(&self, n: usize, used: &mut Vec<String>) -> Vec<String> {
        let iccids: Vec<String> = self
            .sim
            .sims()
            .into_iter()
            .filter(|s| s.status == "activated" && !used.contains(&s.iccid))
            .map(|s| s.iccid)
            .take(n)
            .collect();
        assert_eq!(iccids.len(), n, "the simulator has enough activated SIMs");
        let mut ids = Vec::new();
        for iccid in iccids {
            let (s, d) = self
                .post(
                    "/api/v1/devices",
                    json!({"name": iccid, "extensions": {"jasper": {"iccid": iccid}}}),
                )
                .await;
            assert_eq!(s, 201, "{d}");
            ids.push(d["id"].as_str().unwrap().to_owned());
            used.push(iccid);
        }
        ids
    }

    /// One interactive `overview`: how long it took.
    async fn interactive(&self, device: &str) -> Duration {
        let t0 = Instant::now();
        let (s, b) = self
            .post(
                &format!("/api/v1/devices/{device}/extensions/jasper/overview"),
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        t0.elapsed()
    }

    /// Interactive calls every `gap` while `busy` says the load runs (at least `min` calls).
    async fn measure(
        &self,
        devices: &[String],
        gap: Duration,
        min: usize,
        busy: impl AsyncFn() -> bool,
    ) -> Vec<Duration> {
        let mut waits = Vec::new();
        let mut i = 0;
        while waits.len() < min || busy().await {
            waits.push(self.interactive(&devices[i % devices.len()]).await);
            i += 1;
            tokio::time::sleep(gap).await;
        }
        waits
    }
}

fn report(phase: &str, mut waits: Vec<Duration>) {
    waits.sort();
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
    println!(
        "{phase:<34} calls {:>3}  median {:>7.1?}  p90 {:>7.1?}  max {:>7.1?}",
        waits.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let job_devices: usize = env_or("JOB_DEVICES", 100);
    let gap = Duration::from_millis(env_or("GAP_MS", 500));
    let sim = devext_jasper_sim::start(SimConfig {
        sims: 3 * job_devices + 100,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db"), None)
        .await
        .expect("a store");
    let org = store.create_org("acme").await.unwrap();
    let (_, admin) = store
        .create_key(org.id, Role::Admin, "bench")
        .await
        .unwrap();
    let runtime = tokio::task::spawn_blocking(|| {
        Runtime::load(RuntimeConfig {
            static_plugins: true,
            view_cache_entries: 0,
            egress: EgressConfig {
                allow_loopback_http: true,
                ..EgressConfig::default()
            },
            ..RuntimeConfig::default()
        })
        .expect("the runtime loads")
    })
    .await
    .unwrap();
    let app = App::new(runtime, store);
    let _runner = devext_service::jobs::runner::start(&app);
    let bench = Bench {
        client: Client::new(devext_service::router(app.clone())),
        admin,
        sim,
    };
    let c = bench.sim.credentials().clone();
    let (s, b) = bench
        .client
        .send(
            "PUT",
            "/api/v1/extensions/jasper",
            Some(&bench.admin),
            Some(json!({"enabled": true, "config": {
                "api": "soap", "endpoint": bench.sim.base_url(), "username": c.username,
                "password": c.password, "license_key": c.license_key}})),
            &[],
        )
        .await
        .status_and_body();
    assert_eq!(s.as_u16(), 200, "{b}");
    let mut used = Vec::new();
    let viewed = bench.devices(10, &mut used).await;
    let job = bench.devices(job_devices, &mut used).await;
    let single = bench.devices(job_devices, &mut used).await;
    println!(
        "interactive `overview` every {gap:?}; {job_devices} `set_status` items; Jasper at 5/s, \
         1 in flight (strict)"
    );
    // Warm: the plugin's HTTP client set up.
    bench.interactive(&viewed[0]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    bench.sim.reset_stats();
    let idle = bench.measure(&viewed, gap, 10, async || false).await;
    report("idle", idle);

    let (s, created) = bench
        .post(
            "/api/v1/jobs",
            json!({"plugin": "jasper", "op": "set_status", "input": {"status": "deactivated"},
                   "devices": {"ids": job}, "confirm": job_devices}),
        )
        .await;
    assert_eq!(s, 202, "{created}");
    let path = format!("/api/v1/jobs/{}", created["id"].as_str().unwrap());
    let started = Instant::now();
    let during = bench
        .measure(&viewed, gap, 3, async || {
            bench.get(&path).await["state"] == "running"
                || bench.get(&path).await["state"] == "queued"
        })
        .await;
    let took = started.elapsed();
    let end = bench.get(&path).await;
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!(end["done"], job_devices, "{end}");
    report("during the job (bulk priority)", during);
    println!(
        "  the job: {job_devices} items in {took:.1?} ({:.2}/s)",
        job_devices as f64 / took.as_secs_f64()
    );

    let remaining = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(single.len()));
    let started = Instant::now();
    let senders: Vec<_> = single
        .chunks(single.len().div_ceil(4))
        .map(|chunk| {
            let (client, admin, chunk) =
                (bench.client.clone(), bench.admin.clone(), chunk.to_vec());
            let remaining = remaining.clone();
            tokio::spawn(async move {
                for device in chunk {
                    let r = client
                        .send(
                            "POST",
                            &format!("/api/v1/devices/{device}/extensions/jasper/set_status"),
                            Some(&admin),
                            Some(json!({"status": "deactivated"})),
                            &[],
                        )
                        .await;
                    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
                    remaining.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    let beside = bench
        .measure(&viewed, gap, 3, async || {
            remaining.load(std::sync::atomic::Ordering::Relaxed) > 0
        })
        .await;
    for s in senders {
        s.await.unwrap();
    }
    report("beside 4 single-call clients", beside);
    println!(
        "  the single calls: {job_devices} in {:.1?}",
        started.elapsed()
    );
    let stats = bench.sim.stats();
    println!(
        "simulator: {} requests, {} refused, max {} in flight, max {} per second",
        stats.requests, stats.rate_limited, stats.max_in_flight_seen, stats.max_per_second_seen
    );
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
}
