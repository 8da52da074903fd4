//! `devext`: the command-line shell over the host library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use devext_host::{CallRequest, LoadedPlugin, Runtime, RuntimeConfig, egress::EgressConfig};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "devext",
    version,
    about = "Bind external services to IoT devices through plugins"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// Load every *.so plugin in DIR (repeatable; env DEVEXT_PLUGINS, ':'-separated)
    #[arg(
        long = "plugins",
        value_name = "DIR",
        global = true,
        env = "DEVEXT_PLUGINS",
        value_delimiter = ':'
    )]
    plugin_dirs: Vec<PathBuf>,

    /// Allow plugins plain http to loopback addresses (tests, the simulator)
    #[arg(long, global = true, env = "DEVEXT_ALLOW_LOOPBACK_HTTP", value_parser = clap::builder::FalseyValueParser::new())]
    allow_loopback_http: bool,
}

#[derive(Subcommand)]
enum Command {
    /// List the loaded plugins and the refused files, or check one plugin file
    Plugins(PluginsArgs),
    /// Run one operation of a plugin (validation, deadline and egress rules included)
    Invoke(InvokeArgs),
}

#[derive(Args)]
struct PluginsArgs {
    #[command(subcommand)]
    command: Option<PluginsCommand>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Load one plugin file and check its ABI and manifest (exit 1 if unusable)
    Check {
        /// The shared library (lib<name>.so)
        file: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct InvokeArgs {
    /// Plugin name
    plugin: String,
    /// Operation name
    op: String,
    /// JSON file with the org's settings for the plugin
    #[arg(long, value_name = "ORG.json")]
    org: PathBuf,
    /// JSON file with the device's configuration for the plugin (its own object)
    #[arg(long, value_name = "DEVICE.json")]
    device: PathBuf,
    /// The operation's input, inline JSON
    #[arg(long, default_value = "{}")]
    input: String,
    /// Deadline of the call, in seconds
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEVEXT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime_config(global: &GlobalArgs) -> RuntimeConfig {
    RuntimeConfig {
        plugin_dirs: global.plugin_dirs.clone(),
        egress: EgressConfig {
            allow_loopback_http: global.allow_loopback_http,
            ..EgressConfig::default()
        },
        ..RuntimeConfig::default()
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Plugins(args) => match args.command {
            Some(PluginsCommand::Check { file, json }) => Ok(check(&file, json || args.json)),
            None => {
                let runtime =
                    Runtime::load(runtime_config(&cli.global)).map_err(anyhow::Error::msg)?;
                list(&runtime, args.json);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Invoke(args) => invoke(&cli.global, &args),
    }
}

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
        })).collect::<Vec<_>>(),
    })
}

fn op_summary(p: &LoadedPlugin) -> String {
    p.manifest()
        .operations
        .iter()
        .map(|o| {
            let flag = if o.destructive { "!" } else { "" };
            format!("{}({}{flag})", o.name, o.kind.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(runtime: &Runtime, as_json: bool) {
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
        println!("refused {}: {}", r.path.display(), r.reason);
    }
}

fn check(file: &Path, as_json: bool) -> ExitCode {
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
                    json!({"file": file, "usable": false, "reason": reason})
                );
            }
            eprintln!("refused {}: {reason}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn read_json(path: &Path) -> Result<Value> {
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

fn invoke(global: &GlobalArgs, args: &InvokeArgs) -> Result<ExitCode> {
    let org = read_json(&args.org)?;
    let device = read_json(&args.device)?;
    let input: Value = serde_json::from_str(&args.input)
        .map_err(|e| anyhow::anyhow!("--input:{}: not JSON: {e}", e.column()))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let runtime = Runtime::load(runtime_config(global)).map_err(anyhow::Error::msg)?;
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
