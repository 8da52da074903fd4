//! How a platform embeds the devext host as a library.
//!
//! Run with `cargo run -p devext-host --example embed [-- PLUGIN_DIR...]`.
//!
//! It loads the plugins linked into this example (echo) plus any `*.so` in the directories given,
//! validates a device's extension configuration the way a platform would before storing it, runs
//! a view and an action through the runtime, and prints the call metrics. Sample output:
//!
//! ```text
//! loaded: echo 0.1.0 (static)
//! device config ok
//! rejected: /echo/id: 7 is not of type "string" (type)
//! echo -> {"device":"sensor-17","greeting":"hello from the platform","message":"ping"}
//! count -> {"count":1}
//! bad input -> invalid_input: the input of echo.echo is invalid: /message: 42 is not of type "string" (type)
//! metrics: echo.count ok 1 call(s); echo.echo ok 1 call(s); echo.echo invalid_input 1 call(s)
//! ```

use std::time::Duration;

use devext_host::{CallRequest, Runtime, RuntimeConfig};
use serde_json::json;

// A statically linked plugin registers itself when the binary mentions its crate.
use devext_echo as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = RuntimeConfig {
        plugin_dirs: std::env::args().skip(1).map(Into::into).collect(),
        call_timeout: Duration::from_secs(10),
        ..RuntimeConfig::default()
    };
    // Loading runs plugin code (library initialisers, manifests): keep it off the async workers.
    let runtime = tokio::task::spawn_blocking(move || Runtime::load(config)).await??;
    for p in runtime.plugins() {
        let m = p.manifest();
        println!("loaded: {} {} ({})", m.name, m.version, p.source());
    }
    for r in runtime.refused() {
        println!("refused {}: {}", r.source, r.reason);
    }

    // A device's extension configuration, checked before the platform stores it.
    let extensions = json!({"echo": {"id": "sensor-17"}});
    let violations = runtime.validate_device_extensions(&extensions);
    if violations.is_empty() {
        println!("device config ok");
    }
    for v in runtime.validate_device_extensions(&json!({"echo": {"id": 7}})) {
        println!("rejected: {v}");
    }

    // The org's settings for the plugin, as an admin entered them.
    let org = json!({"greeting": "hello from the platform"});
    let device = &extensions["echo"];
    let call = |op: &'static str, input: serde_json::Value| {
        let runtime = runtime.clone();
        let org = org.clone();
        let device = device.clone();
        async move {
            runtime
                .invoke(CallRequest {
                    plugin: "echo",
                    op,
                    org_config: &org,
                    device_config: &device,
                    input: &input,
                    timeout: None,
                    priority: Default::default(),
                })
                .await
        }
    };
    println!(
        "echo -> {}",
        call("echo", json!({"message": "ping"})).await?
    );
    println!("count -> {}", call("count", json!({})).await?);
    match call("echo", json!({"message": 42})).await {
        Ok(v) => println!("unexpected: {v}"),
        Err(e) => println!("bad input -> {e}"),
    }

    let metrics: Vec<String> = runtime
        .metrics()
        .iter()
        .map(|m| format!("{}.{} {} {} call(s)", m.plugin, m.op, m.outcome, m.count))
        .collect();
    println!("metrics: {}", metrics.join("; "));
    Ok(())
}
