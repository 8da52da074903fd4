//! `devext invoke`: one operation through the host.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use devext_host::{CallRequest, Runtime};
use serde_json::Value;

use crate::{GlobalArgs, InvokeArgs, runtime_config};

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

pub(crate) fn invoke(global: &GlobalArgs, args: &InvokeArgs) -> Result<ExitCode> {
    let org = read_json(&args.org)?;
    let device = read_json(&args.device)?;
    let input: Value = serde_json::from_str(&args.input)
        .map_err(|e| anyhow::anyhow!("--input:{}: not JSON: {e}", e.column()))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let runtime = Runtime::load(runtime_config(global))?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = tokio.block_on(runtime.invoke(CallRequest {
        plugin: &args.plugin,
        op: &args.op,
        org_config: &org,
        device_config: &device,
        input: &input,
        timeout: Some(Duration::from_secs_f64(args.timeout)),
    }));
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
