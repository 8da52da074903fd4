//! Dispatch overhead: the echo plugin's no-op `echo` view with a ~100-byte input, called
//! directly (plain Rust), as a static plugin and as a dynamic plugin, with and without the
//! host's schema checks, and the encoding work alone of such a call, as JSON text
//! (`json_floor`, protocol 1's `invoke`) and as MessagePack (`packed_floor`, `CallModule::call`);
//! plus device-config validation throughput.
//!
//! Run with `cargo bench -p devext-host --bench dispatch`; figures and the profile of a call are
//! in `benches/README.md`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use devext_host::{CallRequest, Runtime, RuntimeConfig};
use devext_plugin_api::{Call, CallContext, Host, Plugin};
use serde_json::{Value, json};

fn input() -> Value {
    // 100 bytes of JSON.
    let v = json!({"message": "the quick brown fox jumps over the lazy dog, twice over", "tags": ["bench", "devext"]});
    assert!(
        (90..=110).contains(&v.to_string().len()),
        "{}",
        v.to_string().len()
    );
    v
}

/// Builds the echo cdylib (release, like this bench) and returns a directory holding only it.
/// An account key as long as the host's (a SHA-256 in hex).
const ACCOUNT_KEY: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn echo_dir() -> tempfile::TempDir {
    let exe = std::env::current_exe().expect("bench path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "devext-echo"]);
    // The profile this bench was built with (`target/<profile>`): `release` for `cargo bench`,
    // `profiling` for `cargo bench --profile profiling`.
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some(name) => {
            cmd.args([
                "--profile",
                if name == "release" { "release" } else { name },
            ]);
        }
    }
    let ok = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(ok.success());
    let dir = tempfile::tempdir().expect("temp dir");
    let src: PathBuf = profile.join("libdevext_echo.so");
    std::fs::copy(&src, dir.path().join("libdevext_echo.so")).expect("copy echo");
    dir
}

fn dispatch(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let input = input();
    let org = json!({"greeting": "hello"});
    let device = json!({"id": "dev-1"});
    let dir = echo_dir();

    let mut group = c.benchmark_group("dispatch_echo");

    // Plain Rust: the plugin's own code, no host, no JSON across any boundary.
    let echo = devext_echo::Echo::default();
    let host = Host::offline();
    let context = CallContext::new("bench", i64::MAX);
    group.bench_function("direct", |b| {
        b.iter(|| {
            let call = Call::new(
                context.clone(),
                "echo",
                org.clone(),
                device.clone(),
                input.clone(),
            );
            tokio
                .block_on(echo.invoke(host.clone(), black_box(call)))
                .unwrap()
        })
    });

    // The JSON work alone of a call through a JSON-text ABI, with no host: the host's writing
    // of the three arguments, the plugin's reading of them and of the context's two strings,
    // echo, the plugin's writing of the output and the host's reading of it: what a call through
    // protocol 1's `invoke` cannot go below.
    let mut texts = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    group.bench_function("json_floor", |b| {
        b.iter(|| {
            let (org_text, device_text, input_text, output_text) = &mut texts;
            for (text, value) in [
                (&mut *org_text, &org),
                (&mut *device_text, &device),
                (&mut *input_text, &input),
            ] {
                text.clear();
                serde_json::to_writer(text, value).unwrap();
            }
            let read = |text: &[u8]| -> Value {
                serde_json::from_str(std::str::from_utf8(text).unwrap()).unwrap()
            };
            let call = Call::new(
                CallContext::new(context.call_id.as_str(), i64::MAX).account_key(ACCOUNT_KEY),
                "echo",
                read(org_text),
                read(device_text),
                read(input_text),
            );
            let output = tokio
                .block_on(echo.invoke(host.clone(), black_box(call)))
                .unwrap();
            output_text.clear();
            serde_json::to_writer(&mut *output_text, &output).unwrap();
            drop(output);
            read(output_text)
        })
    });

    // The same with the values as MessagePack, as `CallModule::call` sends them: the lower bound
    // of `static_*` and `dynamic_*` for the current ABI.
    let mut packed = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    group.bench_function("packed_floor", |b| {
        b.iter(|| {
            let (org_bytes, device_bytes, input_bytes, output_bytes) = &mut packed;
            for (bytes, value) in [
                (&mut *org_bytes, &org),
                (&mut *device_bytes, &device),
                (&mut *input_bytes, &input),
            ] {
                bytes.clear();
                devext_plugin_api::wire::write(bytes, value).unwrap();
            }
            let mut call = Call::new(
                CallContext::new(context.call_id.as_str(), i64::MAX).account_key(ACCOUNT_KEY),
                "echo",
                Value::Null,
                Value::Null,
                Value::Null,
            );
            devext_plugin_api::wire::read_into(org_bytes, &mut call.org_config).unwrap();
            devext_plugin_api::wire::read_into(device_bytes, &mut call.device_config).unwrap();
            devext_plugin_api::wire::read_into(input_bytes, &mut call.input).unwrap();
            let output = tokio
                .block_on(echo.invoke(host.clone(), black_box(call)))
                .unwrap();
            output_bytes.clear();
            devext_plugin_api::wire::write(&mut *output_bytes, &output).unwrap();
            drop(output);
            devext_plugin_api::wire::read(output_bytes).unwrap()
        })
    });

    for checks in [true, false] {
        let suffix = if checks { "checked" } else { "unchecked" };
        let static_rt = Runtime::load(RuntimeConfig {
            check_schemas: checks,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let dynamic_rt = Runtime::load(RuntimeConfig {
            plugin_dirs: vec![dir.path().to_owned()],
            static_plugins: false,
            check_schemas: checks,
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert!(matches!(
            dynamic_rt.plugin("echo").unwrap().source(),
            devext_host::PluginSource::File(_)
        ));
        for (name, rt) in [("static", &static_rt), ("dynamic", &dynamic_rt)] {
            let req = CallRequest {
                plugin: "echo",
                op: "echo",
                org_config: &org,
                device_config: &device,
                input: &input,
                timeout: None,
                priority: Default::default(),
            };
            group.bench_function(format!("{name}_{suffix}"), |b| {
                b.iter(|| tokio.block_on(rt.invoke(black_box(req))).unwrap())
            });
        }
    }
    group.finish();
}

fn validation(c: &mut Criterion) {
    let rt = Runtime::load(RuntimeConfig::default()).unwrap();
    let doc = json!({"echo": {"id": "device-0001"}});
    let text = doc.to_string();
    let mut group = c.benchmark_group("device_config_validation");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pre_parsed", |b| {
        b.iter(|| assert!(rt.is_valid_device_extensions(black_box(&doc))))
    });
    group.bench_function("from_json_text", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_str(black_box(&text)).unwrap();
            assert!(rt.is_valid_device_extensions(&v))
        })
    });
    group.finish();
}

criterion_group!(benches, dispatch, validation);
criterion_main!(benches);
