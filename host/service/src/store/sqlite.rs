//! [`SqliteStore`]: the embedded backend of [`Store`], over sqlx (writes, listings) and
//! [`InlineReads`] (point reads on the operation path).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions as _, Row, SqlSafeStr};

use super::inline::{Inline, InlineReads};
use super::{
    ApiKeyInfo, AuditEntry, Device, DeviceQuery, ExtensionSettings, IdempotencyClaim, LookupEntry,
    NewAudit, Org, OrgSummary, Principal, Reindexed, Result, Role, Session, SessionLimits, Store,
    StoreError, User, UserCredentials,
};
use super::{check_extension_etag, device_etag, etag_matches};
use crate::crypto::{self, SecretKey};

fn now() -> String {
    time_text(chrono::Utc::now())
}

/// A time as the store writes it: RFC 3339, UTC, milliseconds (so that text order is time order).
fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The time `ago` before now, as the store writes times.
fn before_now(ago: std::time::Duration) -> String {
    let ago = chrono::Duration::from_std(ago).unwrap_or(chrono::Duration::MAX);
    time_text(
        chrono::Utc::now()
            .checked_sub_signed(ago)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
    )
}

/// How often a session's `last_seen_at` is written: its idle expiry is this coarse.
const SESSION_TOUCH_SECS: u64 = 15;

fn row_to_user(row: &sqlx::sqlite::SqliteRow) -> Result<User> {
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

fn migrator() -> Migrator {
    let migration = |version, description: &'static str, sql: &'static str| {
        Migration::new(
            version,
            description.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(1, "init", include_str!("../../migrations/0001_init.sql")),
        migration(
            2,
            "device_lookup",
            include_str!("../../migrations/0002_device_lookup.sql"),
        ),
        migration(
            3,
            "audit_request_id",
            include_str!("../../migrations/0003_audit_request_id.sql"),
        ),
        migration(
            4,
            "users_sessions",
            include_str!("../../migrations/0004_users_sessions.sql"),
        ),
        migration(5, "jobs", include_str!("../../migrations/0005_jobs.sql")),
    ])
}

/// The embedded SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    key: SecretKey,
    /// Point reads on the operation path, without the pool's thread hand-offs.
    inline: std::sync::Arc<InlineReads>,
}

const KEY_CHECK: &[u8] = b"devext secret key check";

/// Connections of the pool (each is a thread of its own in sqlx).
const MAX_CONNECTIONS: u32 = 8;

/// Page cache of each connection, KiB: the store's memory is bounded by about
/// `MAX_CONNECTIONS * PAGE_CACHE_KIB` whatever the number of devices read.
pub(super) const PAGE_CACHE_KIB: u32 = 512;

impl SqliteStore {
    /// The key file of the database at `db`.
    pub fn key_file_for(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push(".key");
        PathBuf::from(name)
    }

    /// Opens the database at `db`, creating and migrating it if needed. A new store gets a new
    /// key (written to the key file unless one is given); an existing store whose key is missing
    /// or wrong is an error, never a silently new key.
    pub async fn open(db: &Path, key: Option<SecretKey>) -> Result<SqliteStore> {
        let exists = db.exists();
        let key_file = Self::key_file_for(db);
        let key = match (key, exists) {
            (Some(k), _) => k,
            (None, true) => {
                if !key_file.exists() {
                    return Err(StoreError::KeyMissing {
                        db: db.to_owned(),
                        key_file,
                    });
                }
                SecretKey::read(&key_file)?
            }
            (None, false) => {
                let k = SecretKey::generate()?;
                if key_file.exists() {
                    return Err(StoreError::OrphanKeyFile(key_file));
                }
                k.create_file(&key_file)?;
                k
            }
        };
        let options = SqliteConnectOptions::new()
            .filename(db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5))
            // Each connection's page cache, in KiB (SQLite's default is 2 MiB): a bounded,
            // small footprint; the file's pages stay in the OS page cache, shared by all.
            .pragma("cache_size", format!("-{PAGE_CACHE_KIB}"))
            // Every statement at trace level, not debug: `DEVEXT_LOG=debug` is for people
            // following requests, who would drown in SQL (slow ones still warn).
            .log_statements(log::LevelFilter::Trace);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // A local file cannot drop a connection: the ping before each use would only add a
            // round trip to the connection's worker thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let store = SqliteStore {
            pool,
            key,
            inline: std::sync::Arc::new(InlineReads::new(db)),
        };
        store.check_key().await?;
        Ok(store)
    }

    /// The pool (for copying the store).
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Verifies (or, on a new store, records) that the key is this store's.
    async fn check_key(&self) -> Result<()> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'key_check'")
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => {
                let sealed: Vec<u8> = row.get(0);
                let plain = self
                    .key
                    .open("meta/key_check", &sealed)
                    .map_err(|_| StoreError::WrongKey)?;
                if plain != KEY_CHECK {
                    return Err(StoreError::Corrupt("corrupt key check record".into()));
                }
            }
            None => {
                let sealed = self.key.seal("meta/key_check", KEY_CHECK)?;
                sqlx::query("INSERT INTO meta (key, value) VALUES ('key_check', ?)")
                    .bind(sealed)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    fn secrets_context(org_id: i64, plugin: &str) -> String {
        format!("extension/{org_id}/{plugin}")
    }

    fn row_to_settings(
        &self,
        org_id: i64,
        row: &sqlx::sqlite::SqliteRow,
    ) -> Result<ExtensionSettings> {
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
            enabled: row.get::<i64, _>("enabled") != 0,
            config,
            secrets,
        })
    }
}

fn row_to_device(row: &sqlx::sqlite::SqliteRow) -> Result<Device> {
    device_from_columns(
        row.get("id"),
        row.get("name"),
        row.get("type"),
        row.get("extensions"),
        row.get("created_at"),
        row.get("updated_at"),
    )
}

/// A device from the columns of its row (`extensions` as stored: JSON text).
pub(super) fn device_from_columns(
    id: String,
    name: String,
    device_type: Option<String>,
    extensions: &str,
    created_at: String,
    updated_at: String,
) -> Result<Device> {
    Ok(Device {
        id,
        name,
        device_type,
        extensions: serde_json::from_str(extensions)
            .map_err(|e| StoreError::Corrupt(format!("stored device is not JSON: {e}")))?,
        created_at,
        updated_at,
    })
}

fn row_to_key(row: &sqlx::sqlite::SqliteRow) -> Result<ApiKeyInfo> {
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
    Ok(format!(
        "{prefix}_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// The entity tag of stored settings, read in `conn`'s transaction.
async fn extension_etag_in(
    conn: &mut sqlx::SqliteConnection,
    org_id: i64,
    plugin: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT enabled, config, secrets, updated_at FROM extensions \
         WHERE org_id = ? AND plugin = ?",
    )
    .bind(org_id)
    .bind(plugin)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| {
        let enabled = r.get::<i64, _>("enabled") != 0;
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

/// Replaces the lookup index of the device `device_id` with `lookup`, in `conn`'s transaction.
async fn write_lookup(
    conn: &mut sqlx::SqliteConnection,
    org_id: i64,
    device_id: &str,
    lookup: &[LookupEntry],
) -> Result<()> {
    sqlx::query("DELETE FROM device_lookup WHERE device_id = ?")
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

/// Adds one entry to the lookup index; `Some(device)` (and nothing written) if a device has the
/// value already.
async fn insert_lookup(
    conn: &mut sqlx::SqliteConnection,
    org_id: i64,
    device_id: &str,
    entry: &LookupEntry,
) -> Result<Option<String>> {
    let inserted = sqlx::query(
        "INSERT INTO device_lookup (org_id, plugin, field, value, device_id) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (org_id, plugin, field, value) DO NOTHING",
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
         WHERE org_id = ? AND plugin = ? AND field = ? AND value = ?",
    )
    .bind(org_id)
    .bind(&entry.plugin)
    .bind(&entry.field)
    .bind(&entry.value)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(owner))
}

impl Store for SqliteStore {
    async fn create_org(&self, name: &str) -> Result<Org> {
        let result = sqlx::query("INSERT INTO orgs (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(now())
            .execute(&self.pool)
            .await;
        match result {
            Ok(done) => Ok(Org {
                id: done.last_insert_rowid(),
                name: name.to_owned(),
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("an organisation named {name:?} exists already"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn org_by_name(&self, name: &str) -> Result<Option<Org>> {
        let row = sqlx::query("SELECT id, name FROM orgs WHERE name = ?")
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
                 (SELECT group_concat(plugin, ',') FROM \
                    (SELECT plugin FROM extensions e \
                      WHERE e.org_id = o.id AND e.enabled = 1 ORDER BY plugin)) AS extensions_on \
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
            "SELECT j.key AS plugin, COUNT(*) AS devices \
             FROM devices d, json_each(d.extensions) j GROUP BY j.key ORDER BY j.key",
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
            "INSERT INTO api_keys (id, org_id, role, name, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
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
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(StoreError::NotFound("no such organisation".into()))
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict("this key exists already".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Principal>> {
        // A read on every request; the `last_used_at` write (which SQLite serialises) only when
        // the recorded time is older than a minute: "last used" is shown to the minute.
        let row = sqlx::query(
            "SELECT id, org_id, role, last_used_at FROM api_keys \
             WHERE hash = ? AND revoked_at IS NULL",
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
            sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
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
             WHERE org_id = ? AND revoked_at IS NULL ORDER BY created_at, id",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_key).collect()
    }

    async fn revoke_key(&self, org_id: i64, key_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE org_id = ? AND id = ? AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(org_id)
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn extension(&self, org_id: i64, plugin: &str) -> Result<Option<ExtensionSettings>> {
        let row = sqlx::query(
            "SELECT plugin, enabled, config, secrets FROM extensions WHERE org_id = ? AND plugin = ?",
        )
        .bind(org_id)
        .bind(plugin)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.row_to_settings(org_id, &r)).transpose()
    }

    async fn extensions(&self, org_id: i64) -> Result<Vec<ExtensionSettings>> {
        let rows = sqlx::query(
            "SELECT plugin, enabled, config, secrets FROM extensions WHERE org_id = ? ORDER BY plugin",
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
            // Take the write lock before comparing.
            sqlx::query("UPDATE extensions SET plugin = plugin WHERE org_id = ? AND plugin = ?")
                .bind(org_id)
                .bind(&s.plugin)
                .execute(&mut *tx)
                .await?;
            let current = extension_etag_in(&mut tx, org_id, &s.plugin).await?;
            check_extension_etag(&s.plugin, expected, current.as_deref())?;
        }
        sqlx::query(
            "INSERT INTO extensions (org_id, plugin, enabled, config, secrets, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (org_id, plugin) DO UPDATE SET enabled = excluded.enabled, \
             config = excluded.config, secrets = excluded.secrets, updated_at = excluded.updated_at",
        )
        .bind(org_id)
        .bind(&s.plugin)
        .bind(i64::from(s.enabled))
        .bind(Value::Object(s.config.clone()).to_string())
        .bind(sealed)
        .bind(now())
        .execute(&mut *tx)
        .await?;
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
        sqlx::query(
            "INSERT INTO devices (id, org_id, seq, name, type, extensions, created_at, updated_at) \
             VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM devices WHERE org_id = ?), ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(org_id)
        .bind(org_id)
        .bind(name)
        .bind(device_type)
        .bind(extensions.to_string())
        .bind(&at)
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
        if let Inline::Done(device) = self.inline.device(org_id, id)? {
            return Ok(device);
        }
        let row = sqlx::query("SELECT * FROM devices WHERE org_id = ? AND id = ?")
            .bind(org_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_device).transpose()
    }

    async fn devices(&self, org_id: i64, q: &DeviceQuery) -> Result<(Vec<Device>, Option<i64>)> {
        let limit = q.limit.clamp(1, 500);
        let mut sql = String::from(
            "SELECT * FROM devices WHERE org_id = ? AND seq > ? \
             AND (? IS NULL OR instr(lower(name), lower(?)) > 0)",
        );
        for _ in &q.lookup {
            sql.push_str(
                " AND id IN (SELECT device_id FROM device_lookup \
                 WHERE org_id = ? AND plugin = ? AND field = ? AND value = ?)",
            );
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        // Only fixed fragments above; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id)
            .bind(q.cursor.unwrap_or(0))
            .bind(&q.name)
            .bind(&q.name);
        for entry in &q.lookup {
            query = query
                .bind(org_id)
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
            sqlx::query("UPDATE devices SET id = id WHERE org_id = ? AND id = ?")
                .bind(org_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query("SELECT * FROM devices WHERE org_id = ? AND id = ?")
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
            "UPDATE devices SET name = ?, type = ?, extensions = ?, updated_at = ? \
             WHERE org_id = ? AND id = ? RETURNING *",
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
        tx.commit().await?;
        Ok(Some(device))
    }

    async fn reindex_lookups(
        &self,
        signature: &str,
        index: impl Fn(&Value) -> Vec<LookupEntry> + Send + Sync,
    ) -> Result<Option<Reindexed>> {
        let mut tx = self.pool.begin().await?;
        // A write first, so that the transaction holds the write lock from here on: no device
        // written by another connection can slip between the check and the rebuild.
        sqlx::query("UPDATE meta SET value = value WHERE key = 'lookup_signature'")
            .execute(&mut *tx)
            .await?;
        let built: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'lookup_signature'")
                .fetch_optional(&mut *tx)
                .await?;
        if built.as_deref() == Some(signature) {
            return Ok(None);
        }
        sqlx::query("DELETE FROM device_lookup")
            .execute(&mut *tx)
            .await?;
        let mut done = Reindexed::default();
        let mut after = 0_i64;
        loop {
            let rows = sqlx::query(
                "SELECT rowid, id, org_id, extensions FROM devices WHERE rowid > ? \
                 ORDER BY rowid LIMIT 500",
            )
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.get(0);
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
            "INSERT INTO meta (key, value) VALUES ('lookup_signature', ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(signature)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(done))
    }

    async fn delete_device(&self, org_id: i64, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM devices WHERE org_id = ? AND id = ?")
            .bind(org_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn audit(&self, org_id: i64, e: NewAudit<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit \
             (org_id, at, key_id, user_id, action, device_id, plugin, op, outcome, detail, \
              request_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(org_id)
        .bind(now())
        .bind(e.key_id)
        .bind(e.user_id)
        .bind(e.action)
        .bind(e.device_id)
        .bind(e.plugin)
        .bind(e.op)
        .bind(e.outcome)
        .bind(e.detail)
        .bind(e.request_id)
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
                 WHERE a.org_id = ? AND (? IS NULL OR a.device_id = ?) AND a.id < ? ORDER BY a.id DESC LIMIT ?",
        )
        .bind(org_id)
        .bind(device)
        .bind(device)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit.clamp(1, 500)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get("id"),
                at: r.get("at"),
                key_id: r.get("key_id"),
                user_id: r.get("user_id"),
                user_email: r.get("user_email"),
                action: r.get("action"),
                device_id: r.get("device_id"),
                plugin: r.get("plugin"),
                op: r.get("op"),
                outcome: r.get("outcome"),
                detail: r.get("detail"),
                request_id: r.get("request_id"),
                key_name: r.get("key_name"),
            })
            .collect())
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
             VALUES (?, ?, ?, ?, ?, ?)",
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
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(StoreError::NotFound("no such organisation".into()))
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("a user with the email {:?} exists already", user.email),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn user_credentials(&self, email: &str) -> Result<Option<UserCredentials>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = ?")
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
        let row = sqlx::query("SELECT * FROM users WHERE org_id = ? AND id = ?")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_user).transpose()
    }

    async fn users(&self, org_id: i64) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users WHERE org_id = ? ORDER BY email")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_user).collect()
    }

    async fn set_user_disabled(&self, org_id: i64, user_id: &str, disabled: bool) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET disabled_at = CASE WHEN ? THEN COALESCE(disabled_at, ?) END \
             WHERE org_id = ? AND id = ?",
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
            sqlx::query("DELETE FROM sessions WHERE user_id = ?")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
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
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE org_id = ? AND id = ?")
            .bind(password_hash)
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = ? AND (? IS NULL OR hash != ?)")
            .bind(user_id)
            .bind(keep)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_session(&self, user_id: &str, token_hash: &[u8]) -> Result<()> {
        let at = now();
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, created_at, last_seen_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(&at)
        .bind(&at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8], limits: SessionLimits) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT u.*, s.created_at AS session_created_at, s.last_seen_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = ?",
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
        // Written at most every few seconds (a fraction of the idle limit when that is short).
        let touch = std::time::Duration::from_secs(SESSION_TOUCH_SECS).min(limits.idle / 4);
        if last_seen < before_now(touch) {
            sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE hash = ?")
                .bind(now())
                .bind(token_hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Session { user, created_at }))
    }

    async fn delete_session(&self, token_hash: &[u8]) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_sessions(&self, user_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn record_login_failure(&self, key: &str, window: std::time::Duration) -> Result<u32> {
        // One statement: a window that has passed starts again at 1; concurrent failures
        // (here or in another replica) are each counted.
        let failures: i64 = sqlx::query_scalar(
            "INSERT INTO login_failures (key, failures, window_start) VALUES (?, 1, ?) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN window_start < ? THEN 1 ELSE failures + 1 END, \
               window_start = CASE WHEN window_start < ? THEN excluded.window_start \
                              ELSE window_start END \
             RETURNING failures",
        )
        .bind(key)
        .bind(now())
        .bind(before_now(window))
        .bind(before_now(window))
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(failures).unwrap_or(u32::MAX))
    }

    async fn login_failures(&self, key: &str, window: std::time::Duration) -> Result<u32> {
        let failures: Option<i64> = sqlx::query_scalar(
            "SELECT failures FROM login_failures WHERE key = ? AND window_start >= ?",
        )
        .bind(key)
        .bind(before_now(window))
        .fetch_optional(&self.pool)
        .await?;
        Ok(failures.map_or(0, |f| u32::try_from(f).unwrap_or(u32::MAX)))
    }

    async fn clear_login_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_idempotency(
        &self,
        org_id: i64,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyClaim> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency (org_id, key, request, status, body, created_at) \
             VALUES (?, ?, ?, 0, '', ?) ON CONFLICT (org_id, key) DO NOTHING",
        )
        .bind(org_id)
        .bind(key)
        .bind(fingerprint)
        .bind(now())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let claim = if inserted {
            IdempotencyClaim::Claimed
        } else {
            let row = sqlx::query(
                "SELECT request, status, body, created_at FROM idempotency \
                 WHERE org_id = ? AND key = ?",
            )
            .bind(org_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let request: String = row.get("request");
            let status: i64 = row.get("status");
            if request != fingerprint {
                IdempotencyClaim::Mismatch
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

    async fn complete_idempotency(
        &self,
        org_id: i64,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE idempotency SET status = ?, body = ? WHERE org_id = ? AND key = ?")
            .bind(i64::from(status))
            .bind(body)
            .bind(org_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db"), None)
            .await
            .unwrap();
        (s, dir)
    }

    #[tokio::test]
    async fn a_store_needs_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let s = SqliteStore::open(&db, None).await.unwrap();
        let org = s.create_org("a").await.unwrap();
        drop(s);
        // Reopens with the key file.
        let s = SqliteStore::open(&db, None).await.unwrap();
        assert_eq!(s.org_by_name("a").await.unwrap(), Some(org));
        drop(s);
        // A wrong key is refused.
        let wrong = SecretKey::generate().unwrap();
        let e = SqliteStore::open(&db, Some(wrong)).await.unwrap_err();
        assert!(matches!(e, StoreError::WrongKey), "{e:?}");
        assert!(
            e.to_string().contains("does not belong to this store"),
            "{e}"
        );
        // A missing key is refused, not replaced.
        std::fs::remove_file(SqliteStore::key_file_for(&db)).unwrap();
        let e = SqliteStore::open(&db, None).await.unwrap_err();
        assert!(matches!(e, StoreError::KeyMissing { .. }), "{e:?}");
        assert!(e.to_string().contains("secret key is missing"), "{e}");
        assert!(!SqliteStore::key_file_for(&db).exists());
    }

    #[tokio::test]
    async fn secrets_are_encrypted_at_rest() {
        let (s, dir) = store().await;
        let org = s.create_org("a").await.unwrap();
        let mut secrets = Map::new();
        secrets.insert("password".into(), json!("hunter2-very-secret"));
        let settings = ExtensionSettings {
            plugin: "meter".into(),
            enabled: true,
            config: json!({"username": "u"}).as_object().unwrap().clone(),
            secrets,
        };
        s.put_extension(org.id, &settings).await.unwrap();
        assert_eq!(s.extension(org.id, "meter").await.unwrap(), Some(settings));
        drop(s);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(19).any(|w| w == b"hunter2-very-secret"));
        }
    }

    #[tokio::test]
    async fn orgs_are_listed_with_their_counts() {
        let (s, _dir) = store().await;
        s.create_org("b").await.unwrap();
        let a = s.create_org("a").await.unwrap();
        let (k1, _) = s.create_key(a.id, Role::Admin, "").await.unwrap();
        s.create_key(a.id, Role::Viewer, "").await.unwrap();
        s.revoke_key(a.id, &k1.id).await.unwrap();
        for (plugin, enabled) in [("zeta", true), ("meter", true), ("off", false)] {
            let settings = ExtensionSettings {
                plugin: plugin.into(),
                enabled,
                config: Map::new(),
                secrets: Map::new(),
            };
            s.put_extension(a.id, &settings).await.unwrap();
        }
        s.create_device(a.id, "d", None, &json!({}), &[])
            .await
            .unwrap();
        s.create_device(a.id, "e", None, &json!({}), &[])
            .await
            .unwrap();
        let orgs = s.orgs().await.unwrap();
        let names: Vec<&str> = orgs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!((orgs[0].devices, orgs[0].active_keys), (2, 1));
        assert_eq!(orgs[0].extensions_on, ["meter", "zeta"]);
        assert_eq!((orgs[1].devices, orgs[1].active_keys), (0, 0));
        assert!(orgs[1].extensions_on.is_empty());
    }

    #[tokio::test]
    async fn keys_authenticate_until_revoked() {
        let (s, _dir) = store().await;
        let org = s.create_org("a").await.unwrap();
        let (info, secret) = s.create_key(org.id, Role::Operator, "ci").await.unwrap();
        let p = s.authenticate(&secret).await.unwrap().unwrap();
        assert_eq!(
            (p.org_id, p.role, p.key_id.as_str()),
            (org.id, Role::Operator, info.id.as_str())
        );
        assert!(s.authenticate("dvx_nope").await.unwrap().is_none());
        assert!(s.list_keys(org.id).await.unwrap()[0].last_used_at.is_some());
        assert!(s.revoke_key(org.id, &info.id).await.unwrap());
        assert!(s.authenticate(&secret).await.unwrap().is_none());
        assert!(!s.revoke_key(org.id, &info.id).await.unwrap());
    }

    /// The lookup entry of a neutral plugin `meter` whose devices are found by `serial`.
    fn serial(value: &str) -> LookupEntry {
        LookupEntry {
            plugin: "meter".into(),
            field: "serial".into(),
            value: value.into(),
        }
    }

    #[tokio::test]
    async fn devices_page_and_filter_per_org() {
        let (s, _dir) = store().await;
        let a = s.create_org("a").await.unwrap();
        let b = s.create_org("b").await.unwrap();
        for i in 0..5 {
            let value = format!("SN-{i:03}");
            let ext = json!({"meter": {"serial": value}});
            s.create_device(a.id, &format!("pump {i}"), None, &ext, &[serial(&value)])
                .await
                .unwrap();
        }
        // The same value in another org is another device's.
        s.create_device(b.id, "pump b", None, &json!({}), &[serial("SN-003")])
            .await
            .unwrap();
        let q = DeviceQuery {
            limit: 2,
            ..Default::default()
        };
        let (page1, next) = s.devices(a.id, &q).await.unwrap();
        assert_eq!(page1.len(), 2);
        let (page2, _) = s
            .devices(
                a.id,
                &DeviceQuery {
                    cursor: next,
                    ..q.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(page2[0].name, "pump 2");
        let by_serial = DeviceQuery {
            lookup: vec![serial("SN-003")],
            limit: 50,
            ..Default::default()
        };
        let (found, _) = s.devices(a.id, &by_serial).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "pump 3");
        let (found, _) = s.devices(b.id, &by_serial).await.unwrap();
        assert_eq!(found[0].name, "pump b");
        // Filters add up: no device has two serials.
        let both = DeviceQuery {
            lookup: vec![serial("SN-003"), serial("SN-004")],
            ..by_serial.clone()
        };
        assert!(s.devices(a.id, &both).await.unwrap().0.is_empty());
        let by_name = DeviceQuery {
            name: Some("PUMP".into()),
            limit: 50,
            ..Default::default()
        };
        assert_eq!(s.devices(a.id, &by_name).await.unwrap().0.len(), 5);
        // Org b sees only its own.
        assert_eq!(s.devices(b.id, &by_name).await.unwrap().0.len(), 1);
        assert!(s.device(b.id, &page1[0].id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_lookup_value_belongs_to_one_device_of_an_org() {
        let (s, _dir) = store().await;
        let a = s.create_org("a").await.unwrap();
        let ext = |v: &str| json!({"meter": {"serial": v}});
        let one = s
            .create_device(a.id, "one", None, &ext("SN-1"), &[serial("SN-1")])
            .await
            .unwrap();
        let by = |v: &str| DeviceQuery {
            lookup: vec![serial(v)],
            limit: 50,
            ..Default::default()
        };
        // A second device with the value is refused, naming the field; nothing is written.
        let e = s
            .create_device(a.id, "two", None, &ext("SN-1"), &[serial("SN-1")])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::LookupTaken { entry, owner } if *entry == serial("SN-1") && *owner == one.id),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("/extensions/meter/serial: "),
            "{e}"
        );
        let all = DeviceQuery {
            limit: 50,
            ..Default::default()
        };
        assert_eq!(s.devices(a.id, &all).await.unwrap().0.len(), 1);
        // Updating to a taken value is refused too and changes nothing.
        let two = s
            .create_device(a.id, "two", None, &ext("SN-2"), &[serial("SN-2")])
            .await
            .unwrap();
        let e = s
            .update_device(a.id, &two.id, "two!", None, &ext("SN-1"), &[serial("SN-1")])
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::LookupTaken { .. }), "{e:?}");
        assert_eq!(s.device(a.id, &two.id).await.unwrap(), Some(two.clone()));
        assert_eq!(
            s.devices(a.id, &by("SN-2")).await.unwrap().0,
            vec![two.clone()]
        );
        // A device keeps its own value through an update; a changed value frees the old one.
        s.update_device(a.id, &one.id, "uno", None, &ext("SN-1"), &[serial("SN-1")])
            .await
            .unwrap()
            .unwrap();
        s.update_device(a.id, &one.id, "uno", None, &ext("SN-9"), &[serial("SN-9")])
            .await
            .unwrap()
            .unwrap();
        assert!(s.devices(a.id, &by("SN-1")).await.unwrap().0.is_empty());
        // A deleted device frees its values.
        assert!(s.delete_device(a.id, &two.id).await.unwrap());
        assert!(s.devices(a.id, &by("SN-2")).await.unwrap().0.is_empty());
        s.create_device(a.id, "three", None, &ext("SN-2"), &[serial("SN-2")])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_lookup_index_is_rebuilt_when_its_signature_changes() {
        let (s, _dir) = store().await;
        let a = s.create_org("a").await.unwrap();
        // Written without index entries (as before the index existed); two share a value.
        let mut ids = Vec::new();
        for (name, value) in [("one", "SN-1"), ("two", "SN-2"), ("again", "SN-1")] {
            let d = s
                .create_device(a.id, name, None, &json!({"meter": {"serial": value}}), &[])
                .await
                .unwrap();
            ids.push(d.id);
        }
        let index = |ext: &Value| {
            ext["meter"]["serial"]
                .as_str()
                .map(|v| vec![serial(v)])
                .unwrap_or_default()
        };
        let done = s.reindex_lookups("meter.serial", index).await.unwrap();
        let done = done.expect("a first build");
        assert_eq!((done.devices, done.entries), (3, 2));
        assert_eq!(
            done.taken,
            vec![(ids[2].clone(), serial("SN-1"), ids[0].clone())]
        );
        let q = DeviceQuery {
            lookup: vec![serial("SN-2")],
            limit: 50,
            ..Default::default()
        };
        assert_eq!(s.devices(a.id, &q).await.unwrap().0[0].id, ids[1]);
        // Built for this signature already: nothing to do.
        assert_eq!(
            s.reindex_lookups("meter.serial", index).await.unwrap(),
            None
        );
        // Another signature (no lookup fields any more) rebuilds it, empty.
        let done = s.reindex_lookups("", |_: &Value| Vec::new()).await.unwrap();
        assert_eq!(done.map(|d| (d.devices, d.entries)), Some((3, 0)));
        assert!(s.devices(a.id, &q).await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn users_have_unique_emails_and_roles() {
        let (s, _dir) = store().await;
        let a = s.create_org("a").await.unwrap();
        let b = s.create_org("b").await.unwrap();
        let u = s
            .create_user(a.id, " Ann@Example.COM ", Role::Operator, "$argon2id$x")
            .await
            .unwrap();
        assert_eq!(
            (u.email.as_str(), u.role, u.disabled),
            ("ann@example.com", Role::Operator, false)
        );
        // Unique across the store, whatever the case or org.
        let e = s
            .create_user(b.id, "ANN@example.com", Role::Viewer, "h")
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
        let e = s
            .create_user(999, "x@example.com", Role::Viewer, "h")
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
        let c = s
            .user_credentials("ann@EXAMPLE.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.user, c.password_hash.as_str()),
            (u.clone(), "$argon2id$x")
        );
        assert!(
            s.user_credentials("bob@example.com")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(s.users(a.id).await.unwrap(), vec![u.clone()]);
        assert!(s.users(b.id).await.unwrap().is_empty());
        assert!(s.user(b.id, &u.id).await.unwrap().is_none(), "org scoped");
        assert_eq!(s.user(a.id, &u.id).await.unwrap(), Some(u));
    }

    #[tokio::test]
    async fn sessions_end_on_sign_out_disable_password_change_and_expiry() {
        let (s, _dir) = store().await;
        let a = s.create_org("a").await.unwrap();
        let u = s
            .create_user(a.id, "ann@example.com", Role::Admin, "h1")
            .await
            .unwrap();
        let limits = SessionLimits::default();
        for token in [b"t1", b"t2", b"t3"] {
            s.create_session(&u.id, token).await.unwrap();
        }
        let live = s.session(b"t1", limits).await.unwrap().unwrap();
        assert_eq!(live.user, u);
        assert!(s.session(b"nope", limits).await.unwrap().is_none());
        // Sign-out ends one session.
        assert!(s.delete_session(b"t1").await.unwrap());
        assert!(s.session(b"t1", limits).await.unwrap().is_none());
        // A password change keeps the session that made it and ends the others.
        assert!(
            s.set_password(a.id, &u.id, "h2", Some(b"t2"))
                .await
                .unwrap()
        );
        assert!(s.session(b"t2", limits).await.unwrap().is_some());
        assert!(s.session(b"t3", limits).await.unwrap().is_none());
        assert_eq!(
            s.user_credentials("ann@example.com")
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            "h2"
        );
        assert!(!s.set_password(a.id, "usr_none", "h", None).await.unwrap());
        // Disabling ends them all, and a disabled user has none.
        assert!(s.set_user_disabled(a.id, &u.id, true).await.unwrap());
        assert!(s.session(b"t2", limits).await.unwrap().is_none());
        s.create_session(&u.id, b"t4").await.unwrap();
        assert!(s.session(b"t4", limits).await.unwrap().is_none());
        assert!(s.user(a.id, &u.id).await.unwrap().unwrap().disabled);
        assert!(s.set_user_disabled(a.id, &u.id, false).await.unwrap());
        s.create_session(&u.id, b"t5").await.unwrap();
        assert!(s.session(b"t5", limits).await.unwrap().is_some());
        assert_eq!(s.delete_sessions(&u.id).await.unwrap(), 1);
        // Expiry: idle and absolute.
        s.create_session(&u.id, b"t6").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let idle = SessionLimits {
            idle: std::time::Duration::from_millis(5),
            ..limits
        };
        assert!(s.session(b"t6", idle).await.unwrap().is_none());
        s.create_session(&u.id, b"t7").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let absolute = SessionLimits {
            absolute: std::time::Duration::from_millis(5),
            ..limits
        };
        assert!(s.session(b"t7", absolute).await.unwrap().is_none());
        // An expired session is gone, even under longer limits.
        assert!(s.session(b"t7", limits).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn login_failures_are_counted_per_key_in_a_window() {
        let (s, dir) = store().await;
        let window = std::time::Duration::from_secs(600);
        assert_eq!(s.login_failures("account:a", window).await.unwrap(), 0);
        for n in 1..=3 {
            assert_eq!(
                s.record_login_failure("account:a", window).await.unwrap(),
                n
            );
        }
        assert_eq!(
            s.record_login_failure("address:1.2.3.4", window)
                .await
                .unwrap(),
            1
        );
        assert_eq!(s.login_failures("account:a", window).await.unwrap(), 3);
        // Another store over the same database (a replica) counts on from there.
        let replica = SqliteStore::open(&dir.path().join("t.db"), None)
            .await
            .unwrap();
        assert_eq!(
            replica
                .record_login_failure("account:a", window)
                .await
                .unwrap(),
            4
        );
        assert_eq!(s.login_failures("account:a", window).await.unwrap(), 4);
        s.clear_login_failures("account:a").await.unwrap();
        assert_eq!(s.login_failures("account:a", window).await.unwrap(), 0);
        assert_eq!(
            s.login_failures("address:1.2.3.4", window).await.unwrap(),
            1
        );
        // A window that has passed starts again.
        let short = std::time::Duration::from_millis(5);
        s.record_login_failure("account:b", short).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(s.login_failures("account:b", short).await.unwrap(), 0);
        assert_eq!(s.record_login_failure("account:b", short).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn the_audit_names_the_user_who_acted() {
        let (s, _dir) = store().await;
        let a = s.create_org("a").await.unwrap();
        let u = s
            .create_user(a.id, "ann@example.com", Role::Admin, "h")
            .await
            .unwrap();
        let entry = NewAudit {
            user_id: Some(&u.id),
            action: "device",
            op: Some("create"),
            outcome: "ok",
            ..Default::default()
        };
        s.audit(a.id, entry).await.unwrap();
        let log = s.audit_log(a.id, None, None, 10).await.unwrap();
        assert_eq!(log[0].user_id.as_deref(), Some(u.id.as_str()));
        assert_eq!(log[0].user_email.as_deref(), Some("ann@example.com"));
        assert_eq!(log[0].key_id, None);
    }

    #[tokio::test]
    async fn idempotency_keys_are_claimed_once() {
        let (s, _dir) = store().await;
        let a = s.create_org("a").await.unwrap();
        assert_eq!(
            s.claim_idempotency(a.id, "k", "req1").await.unwrap(),
            IdempotencyClaim::Claimed
        );
        assert!(matches!(
            s.claim_idempotency(a.id, "k", "req1").await.unwrap(),
            IdempotencyClaim::InProgress { .. }
        ));
        assert_eq!(
            s.claim_idempotency(a.id, "k", "req2").await.unwrap(),
            IdempotencyClaim::Mismatch
        );
        s.complete_idempotency(a.id, "k", 200, "{}").await.unwrap();
        assert_eq!(
            s.claim_idempotency(a.id, "k", "req1").await.unwrap(),
            IdempotencyClaim::Done {
                status: 200,
                body: "{}".into()
            }
        );
    }

    #[tokio::test]
    async fn device_reads_see_every_committed_write_and_stay_in_their_org() {
        let (s, _dir) = store().await;
        let (a, b) = (
            s.create_org("a").await.unwrap(),
            s.create_org("b").await.unwrap(),
        );
        let d = s
            .create_device(a.id, "one", None, &json!({"meter": {"serial": "1"}}), &[])
            .await
            .unwrap();
        // The read right after the write (another connection) sees it.
        let read = s.device(a.id, &d.id).await.unwrap().unwrap();
        assert_eq!(read, d);
        assert!(s.device(b.id, &d.id).await.unwrap().is_none(), "org scoped");
        let changed = s
            .update_device(
                a.id,
                &d.id,
                "renamed",
                Some("gw"),
                &json!({"meter": {"serial": "2"}}),
                &[],
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.device(a.id, &d.id).await.unwrap(), Some(changed));
        assert!(s.delete_device(a.id, &d.id).await.unwrap());
        assert!(s.device(a.id, &d.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_inline_read_never_waits_for_a_lock() {
        let (s, dir) = store().await;
        let a = s.create_org("a").await.unwrap();
        let d = s
            .create_device(a.id, "one", None, &json!({}), &[])
            .await
            .unwrap();
        s.pool.close().await;
        // Another process holding the database exclusively (WAL with exclusive locking).
        let holder = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        holder
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
            .unwrap();
        let started = std::time::Instant::now();
        let inline = InlineReads::new(&dir.path().join("t.db"));
        assert!(matches!(inline.device(a.id, &d.id), Ok(Inline::Busy)));
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        // Released, the same reads answer.
        holder
            .execute_batch("COMMIT; PRAGMA locking_mode = NORMAL;")
            .unwrap();
        drop(holder);
        assert!(matches!(inline.device(a.id, &d.id), Ok(Inline::Done(Some(found))) if found == d));
    }
}
