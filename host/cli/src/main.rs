//! `devext`: the command-line shell over the host library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use devext_host::{Runtime, RuntimeConfig, egress::EgressConfig};

mod client;
mod cmd;

// The plugins that ship inside the binary: mentioning the crate links it, and its `inventory`
// registration makes it a static plugin.
use devext_jasper as _;

// mimalloc: `validate`'s workers allocate and free many small strings per diagnostic, which
// glibc's allocator serves slowly (see host/cli/benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "devext",
    version,
    about = "Bind external services to IoT devices through plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// File holding the store's secret key (64 hex digits): required with PostgreSQL unless
    /// DEVEXT_SECRET_KEY is set; every replica needs the same key
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "DEVEXT_SECRET_KEY_FILE"
    )]
    secret_key_file: Option<PathBuf>,
}

/// The plugin and egress flags, on the commands that load plugins (not `orgs` or `keys`).
#[derive(Args)]
pub(crate) struct GlobalArgs {
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
    /// Check device extension configurations (files, directories, JSON Lines, stdin) against
    /// the plugins' schemas; exit 1 if one is invalid, 3 if an input is unreadable, not JSON or
    /// holds no document
    Validate(cmd::validate::ValidateArgs),
    /// Export the plugins' schemas, check committed copies for drift, list breaking changes
    Schema(cmd::schema::SchemaArgs),
    /// Run the HTTP service (API, store, plugins)
    Serve(cmd::serve::ServeArgs),
    /// Run the service against the bundled Jasper simulator, with a throw-away store and a
    /// demo organisation; prints the URL and the admin key
    Demo(cmd::serve::DemoArgs),
    /// Manage organisations in a store
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Manage API keys in a store
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the people who sign in to the dashboard
    #[command(subcommand)]
    Users(cmd::users::UsersCommand),
    /// Store maintenance: copying an installation to another store, backups, restores, key
    /// rotation
    #[command(subcommand)]
    Store(StoreCommand),
    /// Import and export devices through a running service (--url or DEVEXT_URL, the key in
    /// DEVEXT_KEY)
    #[command(subcommand)]
    Devices(cmd::devices::DevicesCommand),
    /// Bulk jobs on a running service (--url or DEVEXT_URL, the key in DEVEXT_KEY): run one
    /// and follow its progress, list, show, cancel, download results
    #[command(subcommand)]
    Jobs(cmd::jobs::JobsCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copies every organisation, key, setting (secrets stay encrypted under the same key),
    /// device, user, audit entry and idempotency record from an SQLite store to an empty
    /// PostgreSQL one
    Copy(cmd::serve::StoreCopyArgs),
    /// Writes a consistent copy of an SQLite store while it serves (without its secret key:
    /// keep the key apart); for PostgreSQL, says how to use pg_dump
    Backup(cmd::store_maint::BackupArgs),
    /// Restores a backup as an SQLite store (refuses to overwrite one that holds data unless
    /// --force); it starts with the original secret key only
    Restore(cmd::store_maint::RestoreArgs),
    /// Re-encrypts every secret under a new key in one transaction (SQLite or PostgreSQL);
    /// afterwards the old key is refused: restart every service with the new one
    RotateKey(cmd::store_maint::RotateKeyArgs),
}

#[derive(Subcommand)]
enum OrgsCommand {
    /// Create an organisation and its first admin key (printed alone on the last line), and with
    /// --admin-email its first admin user
    Create(cmd::serve::OrgsCreateArgs),
    /// List the organisations of a store: devices, active keys, extensions switched on
    List(cmd::serve::OrgsListArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key for an organisation (printed alone on the last line)
    Create(cmd::serve::KeysCreateArgs),
}

#[derive(Args)]
struct PluginsArgs {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<PluginsCommand>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Load one plugin file and check its ABI and manifest (exit 1 if unusable). Loading runs
    /// the library's initialisers: check only files you would run
    Check {
        /// The shared library (lib<name>.so)
        file: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Write a new plugin crate (manifest, one view, one action, a test on the plugin test
    /// kit, a README, the workspace's Cargo.lock) that builds outside this workspace
    New {
        /// The plugin's name (lowercase letters, digits, _): its key in device configurations
        name: String,
        /// The crate's directory (default: ./NAME); must not exist or be empty
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A checkout of devext to depend on (default: the checkout holding the current directory)
        #[arg(long, conflicts_with = "api_git")]
        api_path: Option<PathBuf>,
        /// A git URL of devext to depend on
        #[arg(long)]
        api_git: Option<String>,
    },
    /// Pin the SHA-256 of every *.so in a plugin directory in DIR/plugins.lock; from then on a
    /// library that is not pinned, or differs, is refused at load
    Lock(cmd::plugins_lock::LockArgs),
}

#[derive(Args)]
pub(crate) struct InvokeArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// Plugin name
    plugin: String,
    /// Operation name
    op: String,
    /// JSON file with the org's settings for the plugin
    #[arg(long, value_name = "ORG.json")]
    org: PathBuf,
    /// JSON file with the device's configuration for the plugin: its own object, or a whole
    /// extension configuration `{"<plugin>": {...}}` as `devext validate` reads (its plugin's
    /// part is used). Not needed by organisation-scope operations
    #[arg(long, value_name = "DEVICE.json")]
    device: Option<PathBuf>,
    /// The operation's input, inline JSON
    #[arg(long, default_value = "{}")]
    input: String,
    /// Deadline of the call, in seconds
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

fn main() -> ExitCode {
    if let Err(e) = init_logs() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    cmd::serve::set_secret_key_file(cli.secret_key_file.clone());
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: `DEVEXT_LOG` filters (`warn` by default), `DEVEXT_LOG_FORMAT` is `text`
/// (the default; coloured only on a terminal) or `json` (one object per line, with the fields of
/// the spans it is in: a service request's `request_id`).
fn init_logs() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DEVEXT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("DEVEXT_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().init(),
        Ok("text") | Err(std::env::VarError::NotPresent) => logs
            // Colours for people at a terminal, plain text for files, pipes and CI logs.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok(other) => anyhow::bail!("DEVEXT_LOG_FORMAT={other:?}: use text or json"),
        Err(e) => anyhow::bail!("DEVEXT_LOG_FORMAT: {e}"),
    }
    Ok(())
}

pub(crate) fn runtime_config(global: &GlobalArgs) -> RuntimeConfig {
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
            Some(PluginsCommand::Check { file, json }) => {
                Ok(cmd::plugins::check(&file, json || args.json))
            }
            Some(PluginsCommand::New {
                name,
                dir,
                api_path,
                api_git,
            }) => {
                let api = match (api_path, api_git) {
                    (Some(p), _) => cmd::plugins::ApiSource::Path(p),
                    (None, Some(url)) => cmd::plugins::ApiSource::Git(url),
                    (None, None) => {
                        let here = std::env::current_dir()?;
                        match cmd::plugins::find_checkout(&here) {
                            Some(p) => cmd::plugins::ApiSource::Path(p),
                            None => {
                                eprintln!(
                                    "error: {} is not inside a checkout of devext: say where \
                                     devext-plugin-api comes from with --api-path PATH (a \
                                     checkout) or --api-git URL",
                                    here.display()
                                );
                                return Ok(ExitCode::from(2));
                            }
                        }
                    }
                };
                let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
                cmd::plugins::new(&name, &dir, &api)?;
                Ok(ExitCode::SUCCESS)
            }
            Some(PluginsCommand::Lock(lock)) => Ok(cmd::plugins_lock::lock(&lock)),
            None => {
                let runtime = Runtime::load(runtime_config(&args.global))?;
                cmd::plugins::list(&runtime, args.json);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Invoke(args) => cmd::invoke::invoke(&args.global, &args),
        Command::Validate(args) => cmd::validate::validate(&args.global, &args),
        Command::Schema(args) => cmd::schema::schema(&args.global, &args),
        Command::Serve(args) => cmd::serve::serve(&args.global, &args),
        Command::Demo(args) => cmd::serve::demo(&args.global, &args),
        Command::Orgs(OrgsCommand::Create(args)) => cmd::serve::orgs_create(&args),
        Command::Orgs(OrgsCommand::List(args)) => cmd::serve::orgs_list(&args),
        Command::Keys(KeysCommand::Create(args)) => cmd::serve::keys_create(&args),
        Command::Users(command) => cmd::users::run(&command),
        Command::Store(StoreCommand::Copy(args)) => cmd::serve::store_copy(&args),
        Command::Store(StoreCommand::Backup(args)) => cmd::store_maint::backup(&args),
        Command::Store(StoreCommand::Restore(args)) => cmd::store_maint::restore(&args),
        Command::Store(StoreCommand::RotateKey(args)) => cmd::store_maint::rotate_key(&args),
        Command::Devices(command) => cmd::devices::run(&command),
        Command::Jobs(command) => cmd::jobs::run(&command),
    }
}
