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
        "connection_check": m.connection_check,
        "hint_warnings": p.hint_warnings(),
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
        for w in p.hint_warnings() {
            println!(
                "  hint warning: {} schema at {}: {}",
                w.schema, w.pointer, w.problem
            );
        }
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
                if let Some(check) = &m.connection_check {
                    println!("  connection check: {check}");
                }
                for w in p.hint_warnings() {
                    println!(
                        "  hint warning: {} schema at {}: {}",
                        w.schema, w.pointer, w.problem
                    );
                }
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

/// Where a generated plugin gets `devext-plugin-api` and the test kit from.
#[derive(Debug, Clone)]
pub(crate) enum ApiSource {
    /// A checkout of devext.
    Path(std::path::PathBuf),
    /// A git repository holding devext.
    Git(String),
}

/// The checkout of devext holding `dir`, if any: the nearest ancestor with
/// `plugin-api/Cargo.toml` declaring `devext-plugin-api`.
pub(crate) fn find_checkout(dir: &Path) -> Option<std::path::PathBuf> {
    dir.ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("plugin-api/Cargo.toml"))
                .is_ok_and(|t| t.contains("name = \"devext-plugin-api\""))
        })
        .map(Path::to_path_buf)
}

/// The lock file of the workspace this binary was built from: the versions the host uses.
const WORKSPACE_LOCK: &str = include_str!("../../../../Cargo.lock");

fn title_of(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn render(template: &str, name: &str, lib: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{lib}}", lib)
        .replace("{{title}}", &title_of(name))
}

/// `devext plugins new`: writes a standalone plugin crate into `dir` (which must not exist or
/// be empty), all of it or nothing.
pub(crate) fn new(name: &str, dir: &Path, api: &ApiSource) -> anyhow::Result<()> {
    use anyhow::{Context as _, bail};
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!(
            "{name:?} is not a plugin name: lowercase letters, digits and _, starting with a \
             letter, at most 64 characters (it is the key of the plugin's part in a device's \
             configuration)"
        );
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} exists and is not empty: nothing written", dir.display());
    }
    let lib = name.to_owned();
    let (deps, lock) = match api {
        ApiSource::Path(checkout) => {
            let checkout = checkout
                .canonicalize()
                .with_context(|| format!("--api-path {}", checkout.display()))?;
            if find_checkout(&checkout).as_deref() != Some(checkout.as_path()) {
                bail!(
                    "--api-path {}: not a checkout of devext (no plugin-api/Cargo.toml declaring devext-plugin-api)",
                    checkout.display()
                );
            }
            let api = checkout.join("plugin-api");
            let kit = api.join("test");
            let lock = std::fs::read_to_string(checkout.join("Cargo.lock"))
                .unwrap_or_else(|_| WORKSPACE_LOCK.to_owned());
            (
                (
                    format!(
                        "devext-plugin-api = {{ path = {:?} }}",
                        api.display().to_string()
                    ),
                    format!(
                        "devext-plugin-test = {{ path = {:?} }}",
                        kit.display().to_string()
                    ),
                ),
                lock,
            )
        }
        ApiSource::Git(url) => (
            (
                format!("devext-plugin-api = {{ git = {url:?} }}"),
                format!("devext-plugin-test = {{ git = {url:?} }}"),
            ),
            WORKSPACE_LOCK.to_owned(),
        ),
    };
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the shared library the host loads (--plugins DIR); rlib: for the tests, which link it.
crate-type = ["cdylib", "rlib"]

[dependencies]
{api_dep}

[dev-dependencies]
# The test kit: the plugin through the real host runtime.
{kit_dep}

# Never `panic = "abort"`: the host turns a plugin's panic into an error only when it unwinds.

# A crate of its own, outside any enclosing workspace.
[workspace]
"#,
        api_dep = deps.0,
        kit_dep = deps.1,
    );
    let files: [(&str, String); 6] = [
        ("Cargo.toml", manifest),
        ("Cargo.lock", lock),
        (
            "src/lib.rs",
            render(include_str!("template/lib.rs.txt"), name, &lib),
        ),
        (
            "tests/plugin.rs",
            render(include_str!("template/test.rs.txt"), name, &lib),
        ),
        (
            "README.md",
            render(include_str!("template/readme.md.txt"), name, &lib),
        ),
        (".gitignore", "/target\n".to_owned()),
    ];
    // Written into a sibling first and renamed: nothing half-written.
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".devext-new-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    for (path, text) in &files {
        let file = staging.path().join(path);
        if let Some(p) = file.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    if dir.exists() {
        std::fs::remove_dir(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dir).with_context(|| format!("cannot create {}", dir.display()))?;
    println!("created plugin {name} in {}", dir.display());
    println!(
        "  cd {} && cargo test && cargo build --release",
        dir.display()
    );
    println!("  devext plugins check target/release/lib{lib}.so");
    Ok(())
}
