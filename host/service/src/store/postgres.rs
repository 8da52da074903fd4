//! [`PgStore`]: the PostgreSQL backend of [`Store`], for several replicas of the service on one
//! database (sqlx's Postgres driver; versioned migrations in `host/service/migrations/postgres/`,
//! applied at start under an advisory lock).
//!
//! Differences from SQLite a reader of the SQL meets: `$n` placeholders, `strpos` for `instr`,
//! `BYTEA`/`BOOLEAN`/`BIGSERIAL` columns, and a `rowid` column for whole-table order. Times and
//! JSON are stored as text, as in SQLite, so both stores answer the same bytes.
//!
//! What replicas must agree on lives here: keys, settings, devices, idempotency claims (with the
//! claimant and its renewal, so a dead replica's claim reads "outcome unknown"), and the
//! upstream limiter's state ([`super::pg_limiter`]). Writes that the other replicas' memos hold
//! are announced on the `devext_changes` channel (`NOTIFY`, in the writing transaction).

use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Row, SqlSafeStr};

use super::{
    ApiKeyInfo, AuditEntry, Device, DeviceQuery, ExtensionSettings, IdempotencyClaim, LookupEntry,
    NewAudit, Org, OrgSummary, Principal, Reindexed, Result, Role, Session, SessionLimits, Store,
    StoreChange, StoreError, User, UserCredentials,
};
use super::{check_extension_etag, device_etag, etag_matches};
use crate::crypto::{self, SecretKey};

fn now() -> String {
    time_text(chrono::Utc::now())
}

/// A time as the store writes it: RFC 3339, UTC, milliseconds (text order is time order).
fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The time `ago` before now, as the store writes times.
fn before_now(ago: Duration) -> String {
    let ago = chrono::Duration::from_std(ago).unwrap_or(chrono::Duration::MAX);
    time_text(
        chrono::Utc::now()
            .checked_sub_signed(ago)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
    )
}

/// How often a session's `last_seen_at` is written: its idle expiry is this coarse.
const SESSION_TOUCH: Duration = Duration::from_secs(15);

fn row_to_user(row: &PgRow) -> Result<User> {
    let role: String = row.get("role");
    Ok(User {
        id: row.get("id"),
        org_id: row.get("org_id"),
        email: row.get("email"),
        role: role
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("stored user: {e}")))?,
        disabled: row.get::<Option<String>, _>("disabled_at").is_some(),
        created_at: row.get("created_at"),
    })
}

/// An email as stored: trimmed, lower-case.
fn normal_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The schema versions this binary knows, in order.
fn migrations() -> Vec<Migration> {
    let migration = |version, description: &'static str, sql: &'static str| {
        Migration::new(
            version,
            description.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    vec![
        migration(
            1,
            "init",
            include_str!("../../migrations/postgres/0001_init.sql"),
        ),
        migration(
            2,
            "jobs",
            include_str!("../../migrations/postgres/0002_jobs.sql"),
        ),
    ]
}

/// The newest schema version this binary knows.
pub fn schema_version() -> i64 {
    migrations().iter().map(|m| m.version).max().unwrap_or(0)
}

/// The channel on which writes are announced to the other replicas.
pub const CHANGES_CHANNEL: &str = "devext_changes";

/// How long a replica's idempotency claim lasts without renewal.
pub const CLAIM_LEASE: Duration = Duration::from_secs(4);

const KEY_CHECK: &[u8] = b"devext secret key check";

/// Whether `db` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    key: SecretKey,
    /// This replica's name in claims and leases (random per process).
    replica: std::sync::Arc<str>,
    /// Announcements of the other replicas' writes.
    changes: tokio::sync::broadcast::Sender<StoreChange>,
    /// The background tasks (claim renewal) stop once every clone of the store is dropped.
    alive: std::sync::Arc<()>,
}

impl PgStore {
    /// Connects to `url`, applies the migrations this binary has (under PostgreSQL's advisory
    /// lock, so replicas starting together do not race), and checks `key` against the stored
    /// check value (recording it on a new store). A database whose schema is newer than this
    /// binary is refused.
    pub async fn open(url: &str, key: SecretKey) -> Result<PgStore> {
        let options: PgConnectOptions = url.parse().map_err(|e| {
            StoreError::Database(format!("{}: not a PostgreSQL URL: {e}", redacted(url)))
        })?;
        let options = options.log_statements(log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Database(format!("cannot connect to {}: {e}", redacted(url)))
            })?;
        Self::migrate(&pool).await?;
        let replica = format!("r{}", crypto::hex(&crypto::random_bytes::<6>()?));
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let store = PgStore {
            pool,
            key,
            replica: replica.into(),
            changes,
            alive: std::sync::Arc::new(()),
        };
        store.check_key().await?;
        store.listen().await?;
        let alive = std::sync::Arc::downgrade(&store.alive);
        let (pool, replica) = (store.pool.clone(), std::sync::Arc::clone(&store.replica));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CLAIM_LEASE / 4);
            loop {
                tick.tick().await;
                if alive.upgrade().is_none() {
                    return;
                }
                if let Err(e) = renew_claims(&pool, &replica).await {
                    tracing::warn!(error = %e, "cannot renew this replica's idempotency claims");
                }
            }
        });
        Ok(store)
    }

    /// Listens for the other replicas' announcements (in the background, reconnecting; a lost
    /// connection announces [`StoreChange::All`], since announcements may have been missed).
    async fn listen(&self) -> Result<()> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        let changes = self.changes.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let _ = changes.send(StoreChange::parse(n.payload()));
                    }
                    // The connection was lost (and is re-made on the next call).
                    Ok(None) => {
                        let _ = changes.send(StoreChange::All);
                    }
                    Err(e) => {
                        let _ = changes.send(StoreChange::All);
                        tracing::warn!(error = %e, "lost the store's change announcements; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// The pool (for the limiter and the change listener).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This replica's name in claims and leases.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    async fn migrate(pool: &PgPool) -> Result<()> {
        let mut conn = pool.acquire().await?;
        // The same lock for the check and the migration: a replica starting while another
        // migrates waits, then sees the result.
        sqlx::query("SELECT pg_advisory_lock(7400321)")
            .execute(&mut *conn)
            .await?;
        let result = Self::migrate_locked(&mut conn).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock(7400321)")
            .execute(&mut *conn)
            .await;
        result
    }

    async fn migrate_locked(conn: &mut sqlx::PgConnection) -> Result<()> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
        let ours = schema_version();
        if exists {
            let theirs: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut *conn)
                    .await?;
            if let Some(v) = theirs.filter(|&v| v > ours) {
                return Err(StoreError::Database(format!(
                    "the database's schema is version {v}, newer than this devext's ({ours}): \
                     a newer devext migrated it; run that version (or newer) on every replica"
                )));
            }
        }
        let mut migrator = Migrator::with_migrations(migrations());
        // Our own advisory lock is held already.
        migrator.set_locking(false);
        migrator
            .run_direct(None, &mut *conn, false)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }

    /// Verifies (or, on a new store, records) that the key is this store's.
    async fn check_key(&self) -> Result<()> {
        // Two replicas creating the check value at once: the second's insert does nothing, and
        // both then verify the one stored.
        let sealed = self.key.seal("meta/key_check", KEY_CHECK)?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT DO NOTHING",
        )
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
            .fetch_one(&self.pool)
            .await?;
        let plain = self
            .key
            .open("meta/key_check", &stored)
            .map_err(|_| StoreError::WrongKey)?;
        if plain != KEY_CHECK {
            return Err(StoreError::Corrupt("corrupt key check record".into()));
        }
        Ok(())
    }

    fn secrets_context(org_id: i64, plugin: &str) -> String {
        format!("extension/{org_id}/{plugin}")
    }

    fn row_to_settings(&self, org_id: i64, row: &PgRow) -> Result<ExtensionSettings> {
        let plugin: String = row.get("plugin");
        let config: String = row.get("config");
        let sealed: Option<Vec<u8>> = row.get("secrets");
        let config: Map<String, Value> = serde_json::from_str(&config)
            .map_err(|e| StoreError::Corrupt(format!("stored config is not JSON: {e}")))?;
        let secrets = match sealed {
            Some(sealed) => {
                let plain = self
                    .key
                    .open(&Self::secrets_context(org_id, &plugin), &sealed)?;
                serde_json::from_slice(&plain)
                    .map_err(|e| StoreError::Corrupt(format!("stored secrets unreadable: {e}")))?
            }
            None => Map::new(),
        };
        Ok(ExtensionSettings {
            plugin,
            enabled: row.get("enabled"),
            config,
            secrets,
        })
    }

    /// Announces a change to the other replicas, in `conn`'s transaction (delivered at commit).
    async fn announce(conn: &mut sqlx::PgConnection, what: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(what)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Renews `replica`'s running idempotency claims (every [`CLAIM_LEASE`] / 4 while the store
/// lives).
async fn renew_claims(pool: &PgPool, replica: &str) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE idempotency SET claim_until = clock_timestamp() + $1 * interval '1 millisecond' \
         WHERE claimant = $2 AND status = 0",
    )
    .bind(CLAIM_LEASE.as_millis() as f64)
    .bind(replica)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

fn row_to_device(row: &PgRow) -> Result<Device> {
    super::sqlite::device_from_columns(
        row.get("id"),
        row.get("name"),
        row.get("type"),
        row.get::<&str, _>("extensions"),
        row.get("created_at"),
        row.get("updated_at"),
    )
}

fn row_to_key(row: &PgRow) -> Result<ApiKeyInfo> {
    let role: String = row.get("role");
    Ok(ApiKeyInfo {
        id: row.get("id"),
        role: role
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("stored key: {e}")))?,
        name: row.get("name"),
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
    })
}

fn random_id(prefix: &str) -> Result<String> {
    let bytes = crypto::random_bytes::<8>()?;
    Ok(format!("{prefix}_{}", crypto::hex(&bytes)))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

/// The entity tag of stored settings, read in `conn`'s transaction.
async fn extension_etag_in(
    conn: &mut sqlx::PgConnection,
    org_id: i64,
    plugin: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT enabled, config, secrets, updated_at FROM extensions \
         WHERE org_id = $1 AND plugin = $2",
    )
    .bind(org_id)
    .bind(plugin)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| {
        let enabled: bool = r.get("enabled");
        let config: String = r.get("config");
        let sealed: Option<Vec<u8>> = r.get("secrets");
        let at: String = r.get("updated_at");
        super::etag_of(&[
            plugin.as_bytes(),
            &[u8::from(enabled)],
            config.as_bytes(),
            sealed.as_deref().unwrap_or_default(),
            at.as_bytes(),
        ])
    }))
}

async fn write_lookup(
    conn: &mut sqlx::PgConnection,
    org_id: i64,
    device_id: &str,
    lookup: &[LookupEntry],
) -> Result<()> {
    sqlx::query("DELETE FROM device_lookup WHERE device_id = $1")
        .bind(device_id)
        .execute(&mut *conn)
        .await?;
    for entry in lookup {
        match insert_lookup(conn, org_id, device_id, entry).await? {
            Some(owner) if owner != device_id => {
                return Err(StoreError::LookupTaken {
                    entry: entry.clone(),
                    owner,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

async fn insert_lookup(
    conn: &mut sqlx::PgConnection,
    org_id: i64,
    device_id: &str,
    entry: &LookupEntry,
) -> Result<Option<String>> {
    let inserted = sqlx::query(
        "INSERT INTO device_lookup (org_id, plugin, field, value, device_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, plugin, field, value) DO NOTHING",
    )
    .bind(org_id)
    .bind(&entry.plugin)
    .bind(&entry.field)
    .bind(&entry.value)
    .bind(device_id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        return Ok(None);
    }
    let owner = sqlx::query_scalar(
        "SELECT device_id FROM device_lookup \
         WHERE org_id = $1 AND plugin = $2 AND field = $3 AND value = $4",
    )
    .bind(org_id)
    .bind(&entry.plugin)
    .bind(&entry.field)
    .bind(&entry.value)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(owner))
}

impl Store for PgStore {
    async fn create_org(&self, name: &str) -> Result<Org> {
        let result = sqlx::query_scalar::<_, i64>(
            "INSERT INTO orgs (name, created_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(name)
        .bind(now())
        .fetch_one(&self.pool)
        .await;
        match result {
            Ok(id) => Ok(Org {
                id,
                name: name.to_owned(),
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "an organisation named {name:?} exists already"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn org_by_name(&self, name: &str) -> Result<Option<Org>> {
        let row = sqlx::query("SELECT id, name FROM orgs WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| Org {
            id: r.get("id"),
            name: r.get("name"),
        }))
    }

    async fn orgs(&self) -> Result<Vec<OrgSummary>> {
        let rows = sqlx::query(
            "SELECT o.name, o.created_at, \
                 (SELECT COUNT(*) FROM devices d WHERE d.org_id = o.id) AS devices, \
                 (SELECT COUNT(*) FROM api_keys k \
                    WHERE k.org_id = o.id AND k.revoked_at IS NULL) AS active_keys, \
                 (SELECT string_agg(plugin, ',' ORDER BY plugin) FROM extensions e \
                    WHERE e.org_id = o.id AND e.enabled) AS extensions_on \
             FROM orgs o ORDER BY o.name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| OrgSummary {
                name: r.get("name"),
                created_at: r.get("created_at"),
                devices: u64::try_from(r.get::<i64, _>("devices")).unwrap_or(0),
                active_keys: u64::try_from(r.get::<i64, _>("active_keys")).unwrap_or(0),
                extensions_on: r
                    .get::<Option<String>, _>("extensions_on")
                    .map(|s| s.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
            .collect())
    }

    async fn extension_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT j AS plugin, COUNT(*) AS devices \
             FROM devices d, jsonb_object_keys(d.extensions::jsonb) j GROUP BY j ORDER BY j",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get("plugin"),
                    u64::try_from(r.get::<i64, _>("devices")).unwrap_or(0),
                )
            })
            .collect())
    }

    async fn create_key(
        &self,
        org_id: i64,
        role: Role,
        name: &str,
    ) -> Result<(ApiKeyInfo, String)> {
        let secret = crypto::new_api_key()?;
        let info = self.import_key(org_id, role, name, &secret).await?;
        Ok((info, secret))
    }

    async fn import_key(
        &self,
        org_id: i64,
        role: Role,
        name: &str,
        secret: &str,
    ) -> Result<ApiKeyInfo> {
        if !crypto::is_api_key(secret) {
            return Err(StoreError::Conflict(
                "an API key is dvx_ followed by 64 hex digits".into(),
            ));
        }
        let info = ApiKeyInfo {
            id: random_id("key")?,
            role,
            name: name.to_owned(),
            created_at: now(),
            last_used_at: None,
        };
        let result = sqlx::query(
            "INSERT INTO api_keys (id, org_id, role, name, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&info.id)
        .bind(org_id)
        .bind(role.as_str())
        .bind(name)
        .bind(crypto::key_hash(secret))
        .bind(&info.created_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(info),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::NotFound("no such organisation".into()))
            }
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict("this key exists already".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT id, org_id, role, last_used_at FROM api_keys \
             WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(crypto::key_hash(key))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let role: String = row.get("role");
        let principal = Principal {
            org_id: row.get("org_id"),
            key_id: row.get("id"),
            role: role
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("stored key: {e}")))?,
            user_id: None,
        };
        let last: Option<String> = row.get("last_used_at");
        let stale = last
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .is_none_or(|t| chrono::Utc::now().signed_duration_since(t).num_seconds() >= 60);
        if stale {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now())
                .bind(&principal.key_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(principal))
    }

    async fn list_keys(&self, org_id: i64) -> Result<Vec<ApiKeyInfo>> {
        let rows = sqlx::query(
            "SELECT id, role, name, created_at, last_used_at FROM api_keys \
             WHERE org_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_key).collect()
    }

    async fn revoke_key(&self, org_id: i64, key_id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 \
             WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(org_id)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            Self::announce(&mut tx, "keys").await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn extension(&self, org_id: i64, plugin: &str) -> Result<Option<ExtensionSettings>> {
        let row = sqlx::query(
            "SELECT plugin, enabled, config, secrets FROM extensions \
             WHERE org_id = $1 AND plugin = $2",
        )
        .bind(org_id)
        .bind(plugin)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.row_to_settings(org_id, &r)).transpose()
    }

    async fn extensions(&self, org_id: i64) -> Result<Vec<ExtensionSettings>> {
        let rows = sqlx::query(
            "SELECT plugin, enabled, config, secrets FROM extensions \
             WHERE org_id = $1 ORDER BY plugin",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| self.row_to_settings(org_id, r))
            .collect()
    }

    async fn put_extension_if(
        &self,
        org_id: i64,
        s: &ExtensionSettings,
        if_match: Option<&str>,
    ) -> Result<()> {
        let sealed = if s.secrets.is_empty() {
            None
        } else {
            let plain =
                serde_json::to_vec(&s.secrets).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Some(
                self.key
                    .seal(&Self::secrets_context(org_id, &s.plugin), &plain)?,
            )
        };
        let mut tx = self.pool.begin().await?;
        if let Some(expected) = if_match {
            // The org's row serialises its settings' writes (the settings' row may not exist).
            sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR UPDATE")
                .bind(org_id)
                .execute(&mut *tx)
                .await?;
            let current = extension_etag_in(&mut tx, org_id, &s.plugin).await?;
            check_extension_etag(&s.plugin, expected, current.as_deref())?;
        }
        sqlx::query(
            "INSERT INTO extensions (org_id, plugin, enabled, config, secrets, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, plugin) DO UPDATE SET enabled = excluded.enabled, \
             config = excluded.config, secrets = excluded.secrets, updated_at = excluded.updated_at",
        )
        .bind(org_id)
        .bind(&s.plugin)
        .bind(s.enabled)
        .bind(Value::Object(s.config.clone()).to_string())
        .bind(sealed)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        Self::announce(&mut tx, &format!("extension {org_id} {}", s.plugin)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn extension_etag(&self, org_id: i64, plugin: &str) -> Result<Option<String>> {
        let mut conn = self.pool.acquire().await?;
        extension_etag_in(&mut conn, org_id, plugin).await
    }

    async fn create_device(
        &self,
        org_id: i64,
        name: &str,
        device_type: Option<&str>,
        extensions: &Value,
        lookup: &[LookupEntry],
    ) -> Result<Device> {
        let id = random_id("dev")?;
        let at = now();
        let mut tx = self.pool.begin().await?;
        // The org's row serialises its devices' sequence numbers.
        let org: Option<i64> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = $1 FOR UPDATE")
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        if org.is_none() {
            return Err(StoreError::NotFound("no such organisation".into()));
        }
        sqlx::query(
            "INSERT INTO devices (id, org_id, seq, name, type, extensions, created_at, updated_at) \
             VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM devices WHERE org_id = $2), \
             $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(org_id)
        .bind(name)
        .bind(device_type)
        .bind(extensions.to_string())
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        write_lookup(&mut tx, org_id, &id, lookup).await?;
        tx.commit().await?;
        Ok(Device {
            id,
            name: name.to_owned(),
            device_type: device_type.map(str::to_owned),
            extensions: extensions.clone(),
            created_at: at.clone(),
            updated_at: at,
        })
    }

    async fn device(&self, org_id: i64, id: &str) -> Result<Option<Device>> {
        let row = sqlx::query("SELECT * FROM devices WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_device).transpose()
    }

    async fn devices(&self, org_id: i64, q: &DeviceQuery) -> Result<(Vec<Device>, Option<i64>)> {
        let limit = q.limit.clamp(1, 500);
        let mut sql = String::from(
            "SELECT * FROM devices WHERE org_id = $1 AND seq > $2 \
             AND ($3::text IS NULL OR strpos(lower(name), lower($3)) > 0)",
        );
        let mut n = 3;
        for _ in &q.lookup {
            sql.push_str(&format!(
                " AND id IN (SELECT device_id FROM device_lookup \
                 WHERE org_id = $1 AND plugin = ${} AND field = ${} AND value = ${})",
                n + 1,
                n + 2,
                n + 3
            ));
            n += 3;
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", n + 1));
        // Only fixed fragments and placeholder numbers above; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id)
            .bind(q.cursor.unwrap_or(0))
            .bind(&q.name);
        for entry in &q.lookup {
            query = query
                .bind(&entry.plugin)
                .bind(&entry.field)
                .bind(&entry.value);
        }
        let rows = query
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() > limit as usize;
        let page = &rows[..rows.len().min(limit as usize)];
        let next = if more {
            page.last().map(|r| r.get::<i64, _>("seq"))
        } else {
            None
        };
        Ok((page.iter().map(row_to_device).collect::<Result<_>>()?, next))
    }

    async fn update_device_if(
        &self,
        org_id: i64,
        id: &str,
        name: &str,
        device_type: Option<&str>,
        extensions: &Value,
        lookup: &[LookupEntry],
        if_match: Option<&str>,
    ) -> Result<Option<Device>> {
        let mut tx = self.pool.begin().await?;
        if let Some(expected) = if_match {
            // The row is locked (SQLite: the write lock) before it is compared.
            let row = sqlx::query("SELECT * FROM devices WHERE org_id = $1 AND id = $2 FOR UPDATE")
                .bind(org_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let current = device_etag(&row_to_device(&row)?);
            if !etag_matches(expected, &current) {
                return Err(StoreError::PreconditionFailed(format!(
                    "device {id} was changed by someone else since it was read (its ETag is now \
                     {current}): reload it and make the change again"
                )));
            }
        }
        let row = sqlx::query(
            "UPDATE devices SET name = $1, type = $2, extensions = $3, updated_at = $4 \
             WHERE org_id = $5 AND id = $6 RETURNING *",
        )
        .bind(name)
        .bind(device_type)
        .bind(extensions.to_string())
        .bind(now())
        .bind(org_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let device = row_to_device(&row)?;
        write_lookup(&mut tx, org_id, id, lookup).await?;
        Self::announce(&mut tx, &format!("device {org_id} {id}")).await?;
        tx.commit().await?;
        Ok(Some(device))
    }

    async fn reindex_lookups(
        &self,
        signature: &str,
        index: impl Fn(&Value) -> Vec<LookupEntry> + Send + Sync,
    ) -> Result<Option<Reindexed>> {
        let mut tx = self.pool.begin().await?;
        // Replicas starting together rebuild one at a time; devices are locked against writes
        // while the index is rebuilt.
        sqlx::query("SELECT pg_advisory_xact_lock(7400322)")
            .execute(&mut *tx)
            .await?;
        let built: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'lookup_signature'")
                .fetch_optional(&mut *tx)
                .await?;
        if built.as_deref() == Some(signature.as_bytes()) {
            return Ok(None);
        }
        sqlx::query("LOCK TABLE devices IN SHARE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM device_lookup")
            .execute(&mut *tx)
            .await?;
        let mut done = Reindexed::default();
        let mut after = 0_i64;
        loop {
            let rows = sqlx::query(
                "SELECT rowid, id, org_id, extensions FROM devices WHERE rowid > $1 \
                 ORDER BY rowid LIMIT 500",
            )
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.get("rowid");
            for row in &rows {
                let (id, org_id): (String, i64) = (row.get("id"), row.get("org_id"));
                let extensions: String = row.get("extensions");
                let extensions: Value = serde_json::from_str(&extensions).map_err(|e| {
                    StoreError::Corrupt(format!("stored device {id} is not JSON: {e}"))
                })?;
                done.devices += 1;
                for entry in index(&extensions) {
                    match insert_lookup(&mut tx, org_id, &id, &entry).await? {
                        None => done.entries += 1,
                        Some(owner) if owner == id => {}
                        Some(owner) => done.taken.push((id.clone(), entry, owner)),
                    }
                }
            }
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('lookup_signature', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(signature.as_bytes())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(done))
    }

    async fn delete_device(&self, org_id: i64, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM devices WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            Self::announce(&mut tx, &format!("device {org_id} {id}")).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn audit(&self, org_id: i64, e: NewAudit<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit \
             (org_id, at, key_id, action, device_id, plugin, op, outcome, detail, request_id, \
              user_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(org_id)
        .bind(now())
        .bind(e.key_id)
        .bind(e.action)
        .bind(e.device_id)
        .bind(e.plugin)
        .bind(e.op)
        .bind(e.outcome)
        .bind(e.detail)
        .bind(e.request_id)
        .bind(e.user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_log(
        &self,
        org_id: i64,
        device: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT a.*, k.name AS key_name, u.email AS user_email FROM audit a \
                 LEFT JOIN api_keys k ON k.id = a.key_id \
                 LEFT JOIN users u ON u.id = a.user_id \
                 WHERE a.org_id = $1 AND ($4::text IS NULL OR a.device_id = $4) AND a.id < $2 \
                 ORDER BY a.id DESC LIMIT $3",
        )
        .bind(org_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit.clamp(1, 500)))
        .bind(device)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get("id"),
                at: r.get("at"),
                key_id: r.get("key_id"),
                action: r.get("action"),
                device_id: r.get("device_id"),
                plugin: r.get("plugin"),
                op: r.get("op"),
                outcome: r.get("outcome"),
                detail: r.get("detail"),
                request_id: r.get("request_id"),
                key_name: r.get("key_name"),
                user_id: r.get("user_id"),
                user_email: r.get("user_email"),
            })
            .collect())
    }

    async fn claim_idempotency(
        &self,
        org_id: i64,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyClaim> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency \
             (org_id, key, request, status, body, created_at, claimant, claim_until) \
             VALUES ($1, $2, $3, 0, '', $4, $5, \
                     clock_timestamp() + $6 * interval '1 millisecond') \
             ON CONFLICT (org_id, key) DO NOTHING",
        )
        .bind(org_id)
        .bind(key)
        .bind(fingerprint)
        .bind(now())
        .bind(&*self.replica)
        .bind(CLAIM_LEASE.as_millis() as f64)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let claim = if inserted {
            IdempotencyClaim::Claimed
        } else {
            let row = sqlx::query(
                "SELECT request, status, body, created_at, \
                        (claim_until IS NOT NULL AND claim_until < clock_timestamp()) AS lapsed \
                 FROM idempotency WHERE org_id = $1 AND key = $2",
            )
            .bind(org_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let request: String = row.get("request");
            let status: i32 = row.get("status");
            if request != fingerprint {
                IdempotencyClaim::Mismatch
            } else if status == 0 && row.get::<bool, _>("lapsed") {
                IdempotencyClaim::Unknown {
                    since: row.get("created_at"),
                }
            } else if status == 0 {
                IdempotencyClaim::InProgress {
                    since: row.get("created_at"),
                }
            } else {
                IdempotencyClaim::Done {
                    status: u16::try_from(status).unwrap_or(500),
                    body: row.get("body"),
                }
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        Some(self.changes.subscribe())
    }

    async fn create_user(
        &self,
        org_id: i64,
        email: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User> {
        let user = User {
            id: random_id("usr")?,
            org_id,
            email: normal_email(email),
            role,
            disabled: false,
            created_at: now(),
        };
        let result = sqlx::query(
            "INSERT INTO users (id, org_id, email, role, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&user.id)
        .bind(org_id)
        .bind(&user.email)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(&user.created_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(user),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::NotFound("no such organisation".into()))
            }
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a user with the email {:?} exists already",
                user.email
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn user_credentials(&self, email: &str) -> Result<Option<UserCredentials>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(normal_email(email))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(UserCredentials {
                user: row_to_user(&r)?,
                password_hash: r.get("password_hash"),
            })
        })
        .transpose()
    }

    async fn user(&self, org_id: i64, user_id: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_user).transpose()
    }

    async fn users(&self, org_id: i64) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users WHERE org_id = $1 ORDER BY email")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_user).collect()
    }

    async fn set_user_disabled(&self, org_id: i64, user_id: &str, disabled: bool) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET disabled_at = CASE WHEN $1 THEN COALESCE(disabled_at, $2) END \
             WHERE org_id = $3 AND id = $4",
        )
        .bind(disabled)
        .bind(now())
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        Self::announce(&mut tx, &format!("user {org_id} {user_id}")).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_password(
        &self,
        org_id: i64,
        user_id: &str,
        password_hash: &str,
        keep: Option<&[u8]>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE org_id = $2 AND id = $3")
            .bind(password_hash)
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR hash <> $2)",
        )
        .bind(user_id)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        Self::announce(&mut tx, &format!("user {org_id} {user_id}")).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_session(&self, user_id: &str, token_hash: &[u8]) -> Result<()> {
        let at = now();
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $3)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(&at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8], limits: SessionLimits) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT u.*, s.created_at AS session_created_at, s.last_seen_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let created_at: String = row.get("session_created_at");
        let last_seen: String = row.get("last_seen_at");
        let user = row_to_user(&row)?;
        if user.disabled
            || last_seen < before_now(limits.idle)
            || created_at < before_now(limits.absolute)
        {
            self.delete_session(token_hash).await?;
            return Ok(None);
        }
        // Written at most every few seconds (a fraction of the idle limit when that is short),
        // as the SQLite store does.
        if last_seen < before_now(SESSION_TOUCH.min(limits.idle / 4)) {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE hash = $2")
                .bind(now())
                .bind(token_hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Session { user, created_at }))
    }

    async fn delete_session(&self, token_hash: &[u8]) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_sessions(&self, user_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn record_login_failure(&self, key: &str, window: Duration) -> Result<u32> {
        // One statement, atomic under concurrent failures from any replica.
        let failures: i32 = sqlx::query_scalar(
            "INSERT INTO login_failures (key, failures, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_failures.window_start < $3 THEN 1 \
                          ELSE login_failures.failures + 1 END, \
               window_start = CASE WHEN login_failures.window_start < $3 \
                              THEN excluded.window_start ELSE login_failures.window_start END \
             RETURNING failures",
        )
        .bind(key)
        .bind(now())
        .bind(before_now(window))
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(failures).unwrap_or(u32::MAX))
    }

    async fn login_failures(&self, key: &str, window: Duration) -> Result<u32> {
        let failures: Option<i32> = sqlx::query_scalar(
            "SELECT failures FROM login_failures WHERE key = $1 AND window_start >= $2",
        )
        .bind(key)
        .bind(before_now(window))
        .fetch_optional(&self.pool)
        .await?;
        Ok(failures.map_or(0, |f| u32::try_from(f).unwrap_or(u32::MAX)))
    }

    async fn clear_login_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn complete_idempotency(
        &self,
        org_id: i64,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency SET status = $1, body = $2, claimant = NULL, claim_until = NULL \
             WHERE org_id = $3 AND key = $4",
        )
        .bind(i32::from(status))
        .bind(body)
        .bind(org_id)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
