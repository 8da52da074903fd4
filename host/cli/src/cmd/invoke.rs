//! `devext invoke`: one operation through the host.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use devext_host::{CallRequest, OpScope, Runtime};
use serde_json::Value;

use crate::{GlobalArgs, InvokeArgs};

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// The plugin's own object from a `--device` file: a whole extension configuration
/// (`{"<plugin>": {...}}`, what `devext validate` and the API's devices hold) is unwrapped, unless
/// the plugin's device schema itself has a property named like the plugin.
fn plugin_part(runtime: &Runtime, plugin: &str, device: Value) -> Value {
    let own_property = runtime.plugin(plugin).is_some_and(|p| {
        p.manifest().device_config_schema["properties"]
            .get(plugin)
            .is_some()
    });
    match device {
        Value::Object(mut map) if map.len() == 1 && map.contains_key(plugin) && !own_property => {
            map.remove(plugin).unwrap_or_default()
        }
        other => other,
    }
}

pub(crate) fn invoke(global: &GlobalArgs, args: &InvokeArgs) -> Result<ExitCode> {
    let org = read_json(&args.org)?;
    let device = args.device.as_deref().map(read_json).transpose()?;
    let input: Value = serde_json::from_str(&args.input)
        .map_err(|e| anyhow::anyhow!("--input:{}: not JSON: {e}", e.column()))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let runtime = super::load_plugins(global)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let device = device.map(|d| plugin_part(&runtime, &args.plugin, d));
    let request = match &device {
        Some(device) => CallRequest::new(&args.plugin, &args.op, &org, device, &input),
        None => {
            let needs_device = runtime
                .plugin(&args.plugin)
                .and_then(|p| p.manifest().operation(&args.op))
                .is_some_and(|op| op.scope == OpScope::Device);
            if needs_device {
                anyhow::bail!(
                    "{}.{} runs on a device: give its configuration with --device DEVICE.json",
                    args.plugin,
                    args.op
                );
            }
            CallRequest::org(&args.plugin, &args.op, &org, &input)
        }
    }
    .timeout(Duration::from_secs_f64(args.timeout));
    let result = tokio.block_on(runtime.invoke(request));
    match result {
        Ok(output) => {
            println!("{}", serde_json::to_string_pretty(&output)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}: {}", e.kind, e.message);
            if let Some(violations) = e.details.get("violations").and_then(Value::as_array) {
                for v in violations {
                    eprintln!(
                        "  {}: {} ({})",
                        v["pointer"]
                            .as_str()
                            .filter(|p| !p.is_empty())
                            .unwrap_or("/"),
                        v["message"].as_str().unwrap_or_default(),
                        v["keyword"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
