//! Server time per dashboard page with 10,000 devices in the store, and the bytes of each page's
//! first load (HTML + stylesheet + script, uncompressed: an upper bound of what is transferred).
//!
//! The router is driven in-process (tower `oneshot`, no socket), signed in as an admin through a
//! real session (each request reads its session from the store), over an SQLite store in a
//! temporary directory holding one organisation with `DASH_DEVICES` devices (default 10,000),
//! each configured for the `echo` plugin (linked statically; no upstream service, so the time is
//! the service's own). Every page runs `DASH_ITERATIONS` times (default 400) after 50 warm-up
//! requests; the table gives p50, p95 and p99 of the server time and the page's bytes.
//!
//! Run with `cargo bench -p devext-service --bench dashboard`. Figures: `benches/README.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use devext_host::{Runtime, RuntimeConfig};
use devext_service::store::{Role, SqliteStore, Store};
use devext_service::{App, router};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use devext_echo as _;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn get(router: &axum::Router, path: &str, cookie: &str) -> (u16, Vec<u8>) {
    let req = Request::builder()
        .uri(path)
        .header("host", "bench")
        .header("cookie", cookie)
        .body(Body::empty())
        .expect("a request");
    let response = router.clone().oneshot(req).await.expect("an answer");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes()
        .to_vec();
    (status, bytes)
}

fn main() {
    let devices = env_or("DASH_DEVICES", 10_000);
    let iterations = env_or("DASH_ITERATIONS", 400);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("a directory");
        let store = SqliteStore::open(&base.path().join("bench.db"), None)
            .await
            .expect("a store");
        let org = store.create_org("bench").await.expect("an org");
        let started = Instant::now();
        let mut ids = Vec::with_capacity(devices);
        for i in 0..devices {
            let ext = json!({"echo": {"id": format!("d-{i}")}});
            let d = store
                .create_device(org.id, &format!("device {i:05}"), Some("tracker"), &ext, &[])
                .await
                .expect("a device");
            ids.push(d.id);
        }
        eprintln!("{devices} devices written in {:.1} s", started.elapsed().as_secs_f64());
        let user = devext_service::users::create_user(
            &store,
            org.id,
            "bench@example.com",
            Role::Admin,
            "bench password 123",
        )
        .await
        .expect("a user");
        let (token, hash) = devext_service::users::new_session_token().expect("a token");
        store.create_session(&user.id, &hash).await.expect("a session");
        let mut settings = devext_service::store::ExtensionSettings {
            plugin: "echo".into(),
            enabled: true,
            config: serde_json::Map::new(),
            secrets: serde_json::Map::new(),
        };
        settings.config.insert("greeting".into(), json!("hi"));
        store.put_extension(org.id, &settings).await.expect("settings");
        let runtime = Runtime::load(RuntimeConfig::default()).expect("the runtime");
        let app: Arc<App<SqliteStore>> = App::new(runtime, store);
        let router = router(app);
        let cookie = format!("devext_session={token}");
        let middle = &ids[devices / 2];
        let pages = [
            ("sign-in", "/sign-in".to_owned()),
            ("devices, first page", "/devices".to_owned()),
            ("devices, name search", format!("/devices?q=device+{:05}", devices - 1)),
            ("devices, page 100", "/devices?cursor=5000".to_owned()),
            ("device drilldown", format!("/devices/{middle}")),
            ("settings", "/settings/extensions".to_owned()),
            ("audit log", "/audit".to_owned()),
            ("users", "/users".to_owned()),
        ];
        let (_, sign_in) = get(&router, "/sign-in", "").await;
        let html = String::from_utf8_lossy(&sign_in).into_owned();
        let asset = |rel: &str| {
            html.split(rel)
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let css = get(&router, &asset(r#"rel="stylesheet" href=""#), "").await.1.len();
        let js = get(&router, &asset(r#"script src=""#), "").await.1.len();
        println!(
            "{devices} devices, {iterations} requests per page; assets: {css} B stylesheet, {js} B script"
        );
        println!(
            "{:<22} {:>9} {:>9} {:>9} {:>10} {:>16}",
            "page", "p50", "p95", "p99", "HTML B", "first load B"
        );
        for (name, path) in &pages {
            let (status, body) = get(&router, path, &cookie).await;
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
            for _ in 0..50 {
                get(&router, path, &cookie).await;
            }
            let mut times = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let t = Instant::now();
                let (s, _) = get(&router, path, &cookie).await;
                times.push(t.elapsed());
                assert_eq!(s, 200);
            }
            times.sort();
            let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
            println!(
                "{:<22} {:>9} {:>9} {:>9} {:>10} {:>16}",
                name,
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.95)),
                ms(percentile(&times, 0.99)),
                body.len(),
                body.len() + css + js
            );
        }
    });
}
