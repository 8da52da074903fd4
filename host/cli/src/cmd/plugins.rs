//! `devext plugins` and `devext plugins check`.

use std::path::Path;
use std::process::ExitCode;

use devext_host::{LoadedPlugin, OpScope, Runtime};
use serde_json::{Value, json};

fn plugin_json(p: &LoadedPlugin) -> Value {
    let m = p.manifest();
    json!({
        "name": m.name,
        "display_name": m.display_name,
        "version": m.version,
        "api_version": m.api_version,
        "source": p.source().to_string(),
        "operations": m.operations.iter().map(|o| json!({
            "name": o.name, "title": o.title, "kind": o.kind.as_str(), "destructive": o.destructive,
            "scope": o.scope.as_str(),
        })).collect::<Vec<_>>(),
    })
}

fn op_summary(p: &LoadedPlugin) -> String {
    p.manifest()
        .operations
        .iter()
        .map(|o| {
            let flag = if o.destructive { "!" } else { "" };
            // Organisation-scope operations run without a device.
            let scope = if o.scope == OpScope::Org { ", org" } else { "" };
            format!("{}({}{flag}{scope})", o.name, o.kind.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn list(runtime: &Runtime, as_json: bool) {
    if as_json {
        let out = json!({
            "plugins": runtime.plugins().map(plugin_json).collect::<Vec<_>>(),
            "refused": runtime.refused(),
            "notices": runtime.notices(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    if runtime.plugins().next().is_none() {
        println!("no plugins loaded");
    }
    for p in runtime.plugins() {
        let m = p.manifest();
        println!("{} {} ({})", m.name, m.version, p.source());
        println!("  operations: {}", op_summary(p));
    }
    for n in runtime.notices() {
        println!("notice: {n}");
    }
    for r in runtime.refused() {
        println!("refused {}: {}", r.source, r.reason);
    }
}

pub(crate) fn check(file: &Path, as_json: bool) -> ExitCode {
    eprintln!("{}", crate::cmd::plugins_lock::CHECK_RUNS_CODE);
    match devext_host::loader::load_file(file) {
        Ok(p) => {
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plugin_json(&p)).unwrap_or_default()
                );
            } else {
                let m = p.manifest();
                println!("ok: {} {} ({})", m.name, m.version, m.display_name);
                println!("  plugin-api {}, protocol {}", m.api_version, m.protocol);
                println!(
                    "  endpoint setting: {}",
                    m.endpoint_field.as_deref().unwrap_or("none")
                );
                println!("  operations: {}", op_summary(&p));
            }
            ExitCode::SUCCESS
        }
        Err(reason) => {
            if as_json {
                println!(
                    "{}",
                    json!({"file": file, "usable": false, "reason": reason.to_string()})
                );
            }
            eprintln!("refused {}: {reason}", file.display());
            ExitCode::FAILURE
        }
    }
}
