//! `devext serve`, `devext demo`, `devext orgs create`, `devext keys create`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use devext_host::{Runtime, RuntimeConfig};
use devext_service::crypto::{SECRET_KEY_ENV, SecretKey};
use devext_service::lookup::LookupFields;
use devext_service::store::pg_limiter::PgLimiter;
use devext_service::store::postgres::{is_postgres_url, redacted};
use devext_service::store::{AnyStore, ExtensionSettings, NewAudit, Role, SqliteStore, Store};
use devext_service::{self as service, App};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{GlobalArgs, runtime_config};

/// `devext serve` options. Precedence: flags, then `DEVEXT_*` variables, then the config file,
/// then defaults.
#[derive(Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) global: crate::GlobalArgs,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "DEVEXT_LISTEN")]
    listen: Option<SocketAddr>,
    /// SQLite database file (created and migrated on start), or a postgres:// URL (several
    /// replicas share one; needs the secret key) [default: ./devext.db]
    #[arg(long, env = "DEVEXT_DB")]
    db: Option<PathBuf>,
    /// TOML file with `listen`, `db`, `plugins`, `allow_loopback_http`, `call_timeout_secs`,
    /// `view_cache_entries`, `header_read_timeout_secs`, `body_read_timeout_secs`,
    /// `max_connections`, `audit_retention_days`, `idempotency_retention_hours`,
    /// `job_retention_days`
    #[arg(long, env = "DEVEXT_CONFIG")]
    config: Option<PathBuf>,
    /// A dashboard session ends after this many seconds without use [default: 1800]
    #[arg(long, env = "DEVEXT_SESSION_IDLE_SECS", value_name = "SECS")]
    session_idle_secs: Option<u64>,
    /// A dashboard session ends this many seconds after sign-in [default: 43200]
    #[arg(long, env = "DEVEXT_SESSION_MAX_SECS", value_name = "SECS")]
    session_max_secs: Option<u64>,
    /// Served to browsers over https (directly or through a TLS proxy): session cookies are
    /// `Secure`
    #[arg(long, env = "DEVEXT_SECURE_COOKIES", value_parser = clap::builder::FalseyValueParser::new())]
    secure_cookies: bool,
    /// Behind a proxy that sets X-Forwarded-For: sign-in throttling counts its first address
    #[arg(long, env = "DEVEXT_TRUST_FORWARDED_FOR", value_parser = clap::builder::FalseyValueParser::new())]
    trust_forwarded_for: bool,
    /// A connection whose request headers have not all arrived this many seconds after it
    /// opened (or after its previous answer) is closed [default: 10]
    #[arg(long, env = "DEVEXT_HEADER_READ_TIMEOUT_SECS", value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: Option<u64>,
    /// A request whose body has not all arrived this many seconds after its headers is refused
    /// (408) and its connection closed [default: 30]
    #[arg(long, env = "DEVEXT_BODY_READ_TIMEOUT_SECS", value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout_secs: Option<u64>,
    /// Most connections served at once; more wait in the listen queue [default: 1024]
    #[arg(long, env = "DEVEXT_MAX_CONNECTIONS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: Option<u64>,
    /// Audit entries are deleted (in the background) after this many days; 0: kept for ever
    /// [default: 90]
    #[arg(long, env = "DEVEXT_AUDIT_RETENTION_DAYS", value_name = "DAYS")]
    audit_retention_days: Option<u64>,
    /// Idempotency-Key records (a repeated key gets the first answer) are deleted after this
    /// many hours; 0: kept for ever [default: 168]
    #[arg(long, env = "DEVEXT_IDEMPOTENCY_RETENTION_HOURS", value_name = "HOURS")]
    idempotency_retention_hours: Option<u64>,
    /// Bulk jobs (with their items and results) are deleted this many days after they ended;
    /// 0: kept for ever [default: 30]
    #[arg(long, env = "DEVEXT_JOB_RETENTION_DAYS", value_name = "DAYS")]
    job_retention_days: Option<u64>,
}

/// The config file of `devext serve`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    db: Option<PathBuf>,
    #[serde(default)]
    plugins: Vec<PathBuf>,
    allow_loopback_http: Option<bool>,
    call_timeout_secs: Option<u64>,
    /// Most view results kept for repeats within their `fresh_for_secs` (0: no view cache).
    view_cache_entries: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    max_connections: Option<u64>,
    /// Days audit entries are kept (0: for ever).
    audit_retention_days: Option<u64>,
    /// Hours idempotency records are kept (0: for ever).
    idempotency_retention_hours: Option<u64>,
    /// Days finished bulk jobs are kept (0: for ever).
    job_retention_days: Option<u64>,
}

fn read_config(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

static SECRET_KEY_FILE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Records `--secret-key-file` (a global flag) for the commands that open the store.
pub(crate) fn set_secret_key_file(path: Option<PathBuf>) {
    let _ = SECRET_KEY_FILE.set(path);
}

/// The secret key given: `DEVEXT_SECRET_KEY`, else `--secret-key-file`; `None` for neither (an
/// SQLite store then uses its key file).
pub(crate) fn store_key() -> Result<Option<SecretKey>> {
    if let Ok(hex) = std::env::var(SECRET_KEY_ENV) {
        return Ok(Some(
            SecretKey::from_hex(&hex).map_err(|e| anyhow!("{SECRET_KEY_ENV}: {e}"))?,
        ));
    }
    match SECRET_KEY_FILE.get().and_then(Option::as_ref) {
        Some(path) => {
            Ok(Some(SecretKey::read(path).map_err(|e| {
                anyhow!("--secret-key-file {}: {e}", path.display())
            })?))
        }
        None => Ok(None),
    }
}

/// How a store is named in messages (a URL without its password).
fn store_name(db: &Path) -> String {
    redacted(&db.to_string_lossy())
}

/// Opens the store `db` names: a `postgres://` URL or an SQLite file.
pub(crate) async fn open_store(db: &Path) -> Result<AnyStore> {
    let name = db.to_string_lossy();
    AnyStore::open(&name, store_key()?)
        .await
        .map_err(|e| anyhow!("{}: {e}", store_name(db)))
}

pub(crate) fn tokio() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load_runtime(config: RuntimeConfig) -> Result<Runtime> {
    let runtime = Runtime::load(config)?;
    for notice in runtime.notices() {
        tracing::warn!("{notice}");
    }
    for r in runtime.refused() {
        tracing::warn!(path = %r.source, reason = %r.reason, "plugin refused");
    }
    Ok(runtime)
}

pub(crate) fn serve(global: &GlobalArgs, args: &ServeArgs) -> Result<ExitCode> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => FileConfig::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let db = args
        .db
        .clone()
        .or(file.db)
        .unwrap_or_else(|| PathBuf::from("devext.db"));
    let retention_file = (
        file.audit_retention_days,
        file.idempotency_retention_hours,
        file.job_retention_days,
    );
    let mut config = runtime_config(global);
    if config.plugin_dirs.is_empty() {
        config.plugin_dirs = file.plugins;
    }
    config.egress.allow_loopback_http |= file.allow_loopback_http.unwrap_or(false);
    if let Some(secs) = file.call_timeout_secs {
        config.call_timeout = Duration::from_secs(secs.max(1));
    }
    if let Some(entries) = file.view_cache_entries {
        config.view_cache_entries = entries;
    }
    let mut web = service::WebConfig {
        secure_cookies: args.secure_cookies,
        trust_forwarded_for: args.trust_forwarded_for,
        ..service::WebConfig::default()
    };
    if let Some(s) = args.session_idle_secs {
        web.session.idle = Duration::from_secs(s.max(1));
    }
    if let Some(s) = args.session_max_secs {
        web.session.absolute = Duration::from_secs(s.max(1));
    }
    let defaults = service::ServeLimits::default();
    let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
        flag.or(file)
            .map_or(default, |s| Duration::from_secs(s.max(1)))
    };
    let limits = service::ServeLimits {
        header_read_timeout: secs(
            args.header_read_timeout_secs,
            file.header_read_timeout_secs,
            defaults.header_read_timeout,
        ),
        body_read_timeout: secs(
            args.body_read_timeout_secs,
            file.body_read_timeout_secs,
            defaults.body_read_timeout,
        ),
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .map_or(defaults.max_connections, |n| {
                usize::try_from(n.max(1)).unwrap_or(usize::MAX)
            }),
    };
    let retention = retention_policy(args, retention_file, web.session);
    tokio()?.block_on(async move {
        let store = open_store(&db).await?;
        // Old audit entries, idempotency records and expired sessions, pruned in the background.
        let _retention = devext_service::store::retention::spawn(store.clone(), retention);
        if let Some(pg) = store.postgres() {
            // Replicas share the upstream accounts' limits through the database.
            let limiter = PgLimiter::new(pg.pool().clone(), pg.replica());
            config.limiter = Some(devext_host::SharedLimiter(std::sync::Arc::new(limiter)));
        }
        // Loading runs plugin code: off the async workers.
        let runtime = tokio::task::spawn_blocking(move || load_runtime(config))
            .await
            .context("loading the plugins")??;
        let listener = service::bind(listen).await?;
        let addr = listener.local_addr()?;
        println!(
            "devext serving on http://{addr} (store {}{})",
            store_name(&db),
            if store.postgres().is_some() {
                ", PostgreSQL"
            } else {
                ""
            }
        );
        service::serve_with(
            listener,
            App::with_web(runtime, store, web),
            limits,
            service::shutdown_signal(),
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The retention periods: flags, then the config file, then the defaults (0: kept for ever).
fn retention_policy(
    args: &ServeArgs,
    (file_days, file_hours, file_job_days): (Option<u64>, Option<u64>, Option<u64>),
    session: devext_service::store::SessionLimits,
) -> devext_service::store::retention::RetentionPolicy {
    use devext_service::store::retention::{
        DEFAULT_AUDIT_DAYS, DEFAULT_IDEMPOTENCY_HOURS, DEFAULT_JOB_DAYS, RetentionPolicy,
    };
    let period = |n: u64, unit: u64| (n > 0).then(|| Duration::from_secs(n.saturating_mul(unit)));
    let days = args
        .audit_retention_days
        .or(file_days)
        .unwrap_or(DEFAULT_AUDIT_DAYS);
    let hours = args
        .idempotency_retention_hours
        .or(file_hours)
        .unwrap_or(DEFAULT_IDEMPOTENCY_HOURS);
    let job_days = args
        .job_retention_days
        .or(file_job_days)
        .unwrap_or(DEFAULT_JOB_DAYS);
    RetentionPolicy {
        audit: period(days, 86_400),
        idempotency: period(hours, 3_600),
        sessions: Some(session),
        jobs: period(job_days, 86_400),
        ..RetentionPolicy::default()
    }
}

/// `devext orgs create NAME --db PATH`.
#[derive(Args)]
pub(crate) struct OrgsCreateArgs {
    /// The organisation's name
    name: String,
    /// SQLite database file, or a postgres:// URL
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
    /// Also create the first admin user with this email (password from a prompt or stdin)
    #[arg(long, value_name = "EMAIL")]
    admin_email: Option<String>,
}

pub(crate) fn orgs_create(args: &OrgsCreateArgs) -> Result<ExitCode> {
    // Checked before anything is written: a bad email or password creates no organisation.
    let admin = match &args.admin_email {
        Some(email) => {
            devext_service::users::check_email(email)?;
            Some((
                email,
                super::users::read_password("Password of the first admin")?,
            ))
        }
        None => None,
    };
    tokio()?.block_on(async {
        let store = open_store(&args.db).await?;
        if let Some((email, _)) = &admin
            && store.user_credentials(email).await?.is_some()
        {
            return Err(anyhow!("a user with the email {email:?} exists already"));
        }
        let org = store.create_org(&args.name).await?;
        if let Some((email, password)) = &admin {
            let user =
                devext_service::users::create_user(&store, org.id, email, Role::Admin, password)
                    .await?;
            audit_cli(
                &store,
                org.id,
                "user",
                &user.email,
                "first admin user created",
            )
            .await?;
            println!(
                "created admin user {} (signs in to the dashboard)",
                user.email
            );
        }
        let (info, key) = store
            .create_key(org.id, Role::Admin, "first admin key")
            .await?;
        audit_cli(
            &store,
            org.id,
            "org",
            &org.name,
            "created with its first admin key",
        )
        .await?;
        audit_cli(&store, org.id, "key", &info.id, "admin key created").await?;
        println!(
            "created organisation {} with admin key {}",
            org.name, info.id
        );
        println!("the key is shown once; keep it safe:");
        println!("{key}");
        Ok(ExitCode::SUCCESS)
    })
}

/// `devext keys create --org NAME --role ROLE --db PATH`.
/// An audit entry for a change made on the command line (no key, no request: `detail` says so).
pub(crate) async fn audit_cli(
    store: &AnyStore,
    org_id: i64,
    action: &str,
    what: &str,
    detail: &str,
) -> Result<()> {
    let detail = format!("{what}: {detail} (devext command line)");
    store
        .audit(
            org_id,
            NewAudit {
                action,
                op: Some("create"),
                outcome: "ok",
                detail: &detail,
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

#[derive(Args)]
pub(crate) struct OrgsListArgs {
    /// SQLite database file, or a postgres:// URL
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub(crate) fn orgs_list(args: &OrgsListArgs) -> Result<ExitCode> {
    if !is_postgres_url(&args.db.to_string_lossy()) && !args.db.exists() {
        // Opening would create an empty store (and its key) where the user mistyped a path.
        return Err(anyhow!("no store at {}", args.db.display()));
    }
    tokio()?.block_on(async {
        let orgs = open_store(&args.db).await?.orgs().await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "items": orgs }))?
            );
            return Ok(ExitCode::SUCCESS);
        }
        if orgs.is_empty() {
            println!(
                "no organisations in {} (devext orgs create NAME)",
                store_name(&args.db)
            );
        }
        for o in &orgs {
            let on = if o.extensions_on.is_empty() {
                "none".to_owned()
            } else {
                o.extensions_on.join(", ")
            };
            println!(
                "{}  devices: {}  active keys: {}  extensions on: {on}  (created {})",
                o.name, o.devices, o.active_keys, o.created_at
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub(crate) struct KeysCreateArgs {
    /// The organisation's name
    #[arg(long)]
    org: String,
    /// admin, operator or viewer
    #[arg(long)]
    role: String,
    /// A label for the key
    #[arg(long, default_value = "")]
    name: String,
    /// SQLite database file, or a postgres:// URL
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
}

pub(crate) fn keys_create(args: &KeysCreateArgs) -> Result<ExitCode> {
    let role: Role = args.role.parse()?;
    tokio()?.block_on(async {
        let store = open_store(&args.db).await?;
        let org = store
            .org_by_name(&args.org)
            .await?
            .ok_or_else(|| anyhow!("no organisation named {:?}", args.org))?;
        let (info, key) = store.create_key(org.id, role, &args.name).await?;
        audit_cli(
            &store,
            org.id,
            "key",
            &info.id,
            &format!("{} key created", role.as_str()),
        )
        .await?;
        println!("created {} key {} for {}", role.as_str(), info.id, org.name);
        println!("the key is shown once; keep it safe:");
        println!("{key}");
        Ok(ExitCode::SUCCESS)
    })
}

/// `devext demo` options.
#[derive(Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    pub(crate) global: crate::GlobalArgs,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Use this admin key instead of a random one (dvx_ and 64 hex digits)
    #[arg(long)]
    admin_key: Option<String>,
    /// Which Jasper API the demo org uses
    #[arg(long, default_value = "rest", value_parser = ["rest", "soap"])]
    api: String,
}

pub(crate) fn demo(global: &GlobalArgs, args: &DemoArgs) -> Result<ExitCode> {
    if let Some(key) = &args.admin_key
        && !devext_service::crypto::is_api_key(key)
    {
        return Err(anyhow!(
            "--admin-key must be dvx_ followed by 64 hex digits"
        ));
    }
    let mut config = runtime_config(global);
    // The simulator listens on loopback over plain http.
    config.egress.allow_loopback_http = true;
    let runtime = load_runtime(config)?;
    if runtime.plugin("jasper").is_none() {
        return Err(anyhow!("the jasper plugin is not loaded"));
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    tokio()?.block_on(async move {
        let sim = devext_jasper_sim::start(devext_jasper_sim::SimConfig::default()).await?;
        let store = SqliteStore::open(&dir.path().join("demo.db"), None)
            .await
            .map_err(|e| anyhow!("demo store: {e}"))?;
        let org = store.create_org("demo").await?;
        let key = match &args.admin_key {
            Some(key) => {
                store
                    .import_key(org.id, Role::Admin, "demo admin", key)
                    .await?;
                key.clone()
            }
            None => store.create_key(org.id, Role::Admin, "demo admin").await?.1,
        };
        let creds = sim.credentials().clone();
        let mut config = Map::new();
        config.insert("api".into(), json!(args.api));
        config.insert("endpoint".into(), json!(sim.base_url()));
        config.insert("username".into(), json!(creds.username));
        let mut secrets = Map::new();
        if args.api == "soap" {
            secrets.insert("password".into(), json!(creds.password));
            secrets.insert("license_key".into(), json!(creds.license_key));
        } else {
            secrets.insert("api_key".into(), json!(creds.api_key));
        }
        let settings = ExtensionSettings {
            plugin: "jasper".into(),
            enabled: true,
            config,
            secrets,
        };
        runtime
            .validate_org_config("jasper", &settings.merged())
            .map_err(|v| anyhow!("demo settings rejected: {v:?}"))?;
        store.put_extension(org.id, &settings).await?;
        // Activated SIMs first, so that every operation has something to show.
        let lookup = LookupFields::of(&runtime);
        let mut sims = sim.sims();
        sims.sort_by_key(|s| s.status != "activated");
        for (i, sim_card) in sims.iter().take(12).enumerate() {
            let extensions: Value = json!({"jasper": {"iccid": sim_card.iccid}});
            store
                .create_device(
                    org.id,
                    &format!("demo device {:02}", i + 1),
                    Some("tracker"),
                    &extensions,
                    &lookup.entries(&extensions),
                )
                .await?;
        }
        // A person signs in to the dashboard with these.
        let email = "demo@example.com";
        let password = devext_service::crypto::hex(&devext_service::crypto::random_bytes::<8>()?);
        devext_service::users::create_user(&store, org.id, email, Role::Admin, &password).await?;
        let listener = service::bind(args.listen).await?;
        let addr = listener.local_addr()?;
        println!("devext demo: http://{addr}");
        println!("dashboard: http://{addr}/");
        println!("email: {email}");
        println!("password: {password}");
        println!("Jasper simulator: {} ({} API)", sim.base_url(), args.api);
        println!("organisation demo, 12 devices; admin key:");
        println!("{key}");
        service::serve(
            listener,
            App::new(runtime, store),
            service::shutdown_signal(),
        )
        .await?;
        sim.shutdown().await;
        drop(dir);
        Ok(ExitCode::SUCCESS)
    })
}

/// `devext store copy --from SQLITE --to postgres://...`.
#[derive(Args)]
pub(crate) struct StoreCopyArgs {
    /// The SQLite store to copy (its key: its key file, DEVEXT_SECRET_KEY or --secret-key-file)
    #[arg(long, value_name = "SQLITE")]
    from: PathBuf,
    /// The empty PostgreSQL database to copy it to (postgres://...)
    #[arg(long, value_name = "URL")]
    to: String,
}

pub(crate) fn store_copy(args: &StoreCopyArgs) -> Result<ExitCode> {
    if !is_postgres_url(&args.to) {
        return Err(anyhow!(
            "--to {}: the target must be a PostgreSQL URL (postgres://...)",
            args.to
        ));
    }
    if !args.from.exists() {
        return Err(anyhow!("--from {}: no store there", args.from.display()));
    }
    tokio()?.block_on(async {
        let key = match store_key()? {
            Some(k) => k,
            None => SecretKey::read(&SqliteStore::key_file_for(&args.from))
                .map_err(|e| anyhow!("--from {}: its secret key: {e}", args.from.display()))?,
        };
        let from = SqliteStore::open(&args.from, Some(key.clone()))
            .await
            .map_err(|e| anyhow!("--from {}: {e}", args.from.display()))?;
        let to = devext_service::store::PgStore::open(&args.to, key)
            .await
            .map_err(|e| anyhow!("--to {}: {e}", redacted(&args.to)))?;
        let done = devext_service::store::copy::copy(&from, &to)
            .await
            .map_err(|e| anyhow!("--to {}: {e}", redacted(&args.to)))?;
        println!(
            "copied {} to {}: {done}",
            args.from.display(),
            redacted(&args.to)
        );
        println!(
            "start every replica with --db {} and the same secret key (DEVEXT_SECRET_KEY or \
             --secret-key-file; the key of {} is in {})",
            redacted(&args.to),
            args.from.display(),
            SqliteStore::key_file_for(&args.from).display()
        );
        Ok(ExitCode::SUCCESS)
    })
}
