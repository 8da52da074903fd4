//! Device import and export at scale, SQLite against PostgreSQL (a throw-away cluster, or
//! `DEVEXT_TEST_DATABASE_URL`): `IMPORT_DEVICES` (default 100,000) devices of a neutral plugin
//! `tally` (lookup field `serial`) posted as JSON Lines to `POST /api/v1/devices/import` through
//! the router in-process (tower `oneshot`, no socket), the body generated as it is sent (the
//! file is never in memory); then the same file again (every record unchanged), the same as
//! CSV matched by the lookup field, and `GET /api/v1/devices/export` read to its end.
//!
//! Wall time per run and the process's peak resident memory during it (`VmHWM` of
//! `/proc/self/status`, reset before each run through `/proc/self/clear_refs`), against its
//! resident memory before the run. A smaller run first (a tenth of the devices) shows whether
//! the peak grows with the file.
//!
//! `cargo bench -p devext-service --bench import` (release).

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::Request;
use devext_host::RuntimeConfig;
use devext_plugin_api::{Call, Host, Manifest, Plugin, PluginError, Value, json};
use devext_service::testing::{Backend, TestService};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(Default)]
struct Tally;

impl Plugin for Tally {
    fn manifest(&self) -> Manifest {
        Manifest::new("tally", "Tally", "1.0.0")
            .description("A bench plugin whose devices are found by serial number.")
            .org_config_schema(json!({"type": "object"}))
            .device_config_schema(json!({
                "type": "object",
                "properties": {
                    "serial": {"type": "string", "pattern": "^SN-[0-9]+$"},
                    "floor": {"type": "integer", "minimum": 0},
                    "note": {"type": "string", "maxLength": 200}
                },
                "required": ["serial"],
                "additionalProperties": false
            }))
            .lookup_fields(["serial"])
    }

    async fn invoke(&self, _host: Host, _call: Call) -> Result<Value, PluginError> {
        Err(PluginError::not_found("tally has no operations"))
    }
}

devext_plugin_api::export_plugin!(Tally, Tally);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A field of `/proc/self/status`, KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets the peak resident memory to the current one.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs (Linux)");
}

/// The file, generated a chunk of 1,000 records at a time.
fn body(n: usize, csv: bool) -> Body {
    let chunks = (0..n.div_ceil(1000)).map(move |c| {
        let mut out = String::new();
        if csv && c == 0 {
            out.push_str("name,type,tally.serial,tally.floor,tally.note\n");
        }
        for i in c * 1000..((c + 1) * 1000).min(n) {
            if csv {
                out.push_str(&format!(
                    "device-{i:06},meter,SN-{i},{},\"note for device {i}\"\n",
                    i % 40
                ));
            } else {
                out.push_str(
                    &json!({"name": format!("device-{i:06}"), "type": "meter",
                           "extensions": {"tally": {"serial": format!("SN-{i}"), "floor": i % 40,
                                                    "note": format!("note for device {i}")}}})
                    .to_string(),
                );
                out.push('\n');
            }
        }
        Ok::<_, std::io::Error>(Bytes::from(out))
    });
    Body::from_stream(futures_util::stream::iter(chunks))
}

struct Run {
    what: String,
    secs: f64,
    rss_before_mib: f64,
    peak_mib: f64,
    summary: String,
}

async fn measured(what: String, fut: impl std::future::Future<Output = String>) -> Run {
    reset_peak();
    let rss_before_mib = status_kib("VmRSS:") as f64 / 1024.0;
    let t = Instant::now();
    let summary = fut.await;
    let secs = t.elapsed().as_secs_f64();
    Run {
        what,
        secs,
        rss_before_mib,
        peak_mib: status_kib("VmHWM:") as f64 / 1024.0,
        summary,
    }
}

async fn import(s: &TestService, n: usize, csv: bool, query: &str) -> String {
    let media = if csv {
        "text/csv"
    } else {
        "application/x-ndjson"
    };
    let req = Request::post(format!("/api/v1/devices/import{query}"))
        .header("authorization", format!("Bearer {}", s.admin))
        .header("content-type", media)
        .body(body(n, csv))
        .unwrap();
    let response = s.router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let report: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(status.is_success(), "{status}: {report}");
    format!(
        "{} created, {} updated, {} unchanged, {} failed",
        report["created"], report["updated"], report["unchanged"], report["failed"]
    )
}

async fn export(s: &TestService) -> String {
    let req = Request::get("/api/v1/devices/export")
        .header("authorization", format!("Bearer {}", s.admin))
        .body(Body::empty())
        .unwrap();
    let response = s.router.clone().oneshot(req).await.unwrap();
    assert!(response.status().is_success());
    let mut body = response.into_body();
    let (mut lines, mut bytes) = (0usize, 0usize);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            lines += data.iter().filter(|b| **b == b'\n').count();
            bytes += data.len();
        }
    }
    format!("{lines} lines, {:.1} MB", bytes as f64 / 1e6)
}

async fn backend(name: &str, b: Backend, n: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    // A smaller import first, into its own store: does the peak grow with the file?
    let small = TestService::start_on(b, RuntimeConfig::default()).await;
    runs.push(
        measured(
            format!("{name}: import {} new (JSON Lines)", n / 10),
            import(&small, n / 10, false, ""),
        )
        .await,
    );
    drop(small);
    let s = TestService::start_on(b, RuntimeConfig::default()).await;
    runs.push(
        measured(
            format!("{name}: import {n} new (JSON Lines)"),
            import(&s, n, false, ""),
        )
        .await,
    );
    runs.push(
        measured(
            format!("{name}: the same file again"),
            import(&s, n, false, ""),
        )
        .await,
    );
    runs.push(
        measured(
            format!("{name}: the same as CSV, match=ext.tally.serial"),
            import(&s, n, true, "?match=ext.tally.serial"),
        )
        .await,
    );
    runs.push(measured(format!("{name}: export {n} (JSON Lines)"), export(&s)).await);
    runs
}

async fn main_async() {
    let n: usize = env_or("IMPORT_DEVICES", 100_000);
    let mut runs = backend("SQLite", Backend::Sqlite, n).await;
    if devext_service::testing::fresh_postgres_database("probe")
        .await
        .is_some()
    {
        runs.extend(backend("PostgreSQL", Backend::Postgres, n).await);
    } else {
        println!("PostgreSQL not installed: SQLite only");
    }
    println!("| run | wall s | records/s | RSS before MiB | peak RSS MiB | outcome |");
    println!("|---|---|---|---|---|---|");
    for r in &runs {
        let count: f64 = r
            .what
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or(n as f64);
        println!(
            "| {} | {:.2} | {:.0} | {:.1} | {:.1} | {} |",
            r.what,
            r.secs,
            count / r.secs,
            r.rss_before_mib,
            r.peak_mib,
            r.summary
        );
    }
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(main_async());
}
