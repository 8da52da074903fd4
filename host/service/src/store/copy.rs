//! Copying an SQLite store into an empty PostgreSQL one (`devext store copy`): every row of every
//! table, ids kept (sealed secrets name their org's id, so they open under the same key), in one
//! transaction on the target, whose sequences then continue after the copied ids.
//!
//! Requests that were running when the source stopped (idempotency records without a result)
//! arrive with an unknown outcome, as they would on the replica that died running them.

use sqlx::Row as _;

use super::{PgStore, Result, SqliteStore, StoreError};

/// Rows copied, by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// `(table, rows)` in copy order.
    pub tables: Vec<(&'static str, u64)>,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .tables
            .iter()
            .map(|(t, n)| format!("{n} {t}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// The tables holding data, in an order that satisfies their references.
const TABLES: [&str; 10] = [
    "orgs",
    "api_keys",
    "extensions",
    "devices",
    "device_lookup",
    "users",
    "sessions",
    "login_failures",
    "audit",
    "idempotency",
];

/// Copies `from` into `to`, which must hold no data (its key check value aside, which is the
/// same key's: [`PgStore::open`] checked it). Nothing is written if anything fails.
pub async fn copy(from: &SqliteStore, to: &PgStore) -> Result<Copied> {
    let src = from.pool();
    let mut tx = to.pool().begin().await?;
    for table in TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await?;
        if any {
            return Err(StoreError::Conflict(format!(
                "the target store is not empty (table {table} has rows): copy only into a new, \
                 empty database"
            )));
        }
    }
    let mut done = Copied::default();
    let mut count = |table: &'static str, n: usize| done.tables.push((table, n as u64));

    let rows = sqlx::query("SELECT id, name, created_at FROM orgs ORDER BY id")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(r.get::<i64, _>("id"))
            .bind(r.get::<String, _>("name"))
            .bind(r.get::<String, _>("created_at"))
            .execute(&mut *tx)
            .await?;
    }
    count("organisations", rows.len());

    let rows = sqlx::query("SELECT * FROM api_keys ORDER BY rowid")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, role, name, hash, created_at, last_used_at, \
             revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.get::<String, _>("id"))
        .bind(r.get::<i64, _>("org_id"))
        .bind(r.get::<String, _>("role"))
        .bind(r.get::<String, _>("name"))
        .bind(r.get::<Vec<u8>, _>("hash"))
        .bind(r.get::<String, _>("created_at"))
        .bind(r.get::<Option<String>, _>("last_used_at"))
        .bind(r.get::<Option<String>, _>("revoked_at"))
        .execute(&mut *tx)
        .await?;
    }
    count("keys", rows.len());

    let rows = sqlx::query("SELECT * FROM extensions ORDER BY org_id, plugin")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query(
            "INSERT INTO extensions (org_id, plugin, enabled, config, secrets, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.get::<i64, _>("org_id"))
        .bind(r.get::<String, _>("plugin"))
        .bind(r.get::<i64, _>("enabled") != 0)
        .bind(r.get::<String, _>("config"))
        .bind(r.get::<Option<Vec<u8>>, _>("secrets"))
        .bind(r.get::<String, _>("updated_at"))
        .execute(&mut *tx)
        .await?;
    }
    count("settings", rows.len());

    let rows = sqlx::query("SELECT * FROM devices ORDER BY rowid")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query(
            "INSERT INTO devices (id, org_id, seq, name, type, extensions, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.get::<String, _>("id"))
        .bind(r.get::<i64, _>("org_id"))
        .bind(r.get::<i64, _>("seq"))
        .bind(r.get::<String, _>("name"))
        .bind(r.get::<Option<String>, _>("type"))
        .bind(r.get::<String, _>("extensions"))
        .bind(r.get::<String, _>("created_at"))
        .bind(r.get::<String, _>("updated_at"))
        .execute(&mut *tx)
        .await?;
    }
    count("devices", rows.len());

    let rows = sqlx::query("SELECT * FROM device_lookup ORDER BY rowid")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query(
            "INSERT INTO device_lookup (org_id, plugin, field, value, device_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(r.get::<i64, _>("org_id"))
        .bind(r.get::<String, _>("plugin"))
        .bind(r.get::<String, _>("field"))
        .bind(r.get::<String, _>("value"))
        .bind(r.get::<String, _>("device_id"))
        .execute(&mut *tx)
        .await?;
    }
    count("lookup entries", rows.len());

    let rows = sqlx::query("SELECT * FROM users ORDER BY rowid")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query(
            "INSERT INTO users (id, org_id, email, role, password_hash, created_at, \
             disabled_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.get::<String, _>("id"))
        .bind(r.get::<i64, _>("org_id"))
        .bind(r.get::<String, _>("email"))
        .bind(r.get::<String, _>("role"))
        .bind(r.get::<String, _>("password_hash"))
        .bind(r.get::<String, _>("created_at"))
        .bind(r.get::<Option<String>, _>("disabled_at"))
        .execute(&mut *tx)
        .await?;
    }
    count("users", rows.len());

    let rows = sqlx::query("SELECT * FROM sessions ORDER BY rowid")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(r.get::<Vec<u8>, _>("hash"))
        .bind(r.get::<String, _>("user_id"))
        .bind(r.get::<String, _>("created_at"))
        .bind(r.get::<String, _>("last_seen_at"))
        .execute(&mut *tx)
        .await?;
    }
    count("sessions", rows.len());

    let rows = sqlx::query("SELECT * FROM login_failures ORDER BY rowid")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query("INSERT INTO login_failures (key, failures, window_start) VALUES ($1, $2, $3)")
            .bind(r.get::<String, _>("key"))
            .bind(i32::try_from(r.get::<i64, _>("failures")).unwrap_or(i32::MAX))
            .bind(r.get::<String, _>("window_start"))
            .execute(&mut *tx)
            .await?;
    }
    count("login failure counters", rows.len());

    let rows = sqlx::query("SELECT * FROM audit ORDER BY id")
        .fetch_all(src)
        .await?;
    for r in &rows {
        sqlx::query(
            "INSERT INTO audit (id, org_id, at, key_id, action, device_id, plugin, op, outcome, \
             detail, request_id, user_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(r.get::<i64, _>("id"))
        .bind(r.get::<i64, _>("org_id"))
        .bind(r.get::<String, _>("at"))
        .bind(r.get::<Option<String>, _>("key_id"))
        .bind(r.get::<String, _>("action"))
        .bind(r.get::<Option<String>, _>("device_id"))
        .bind(r.get::<Option<String>, _>("plugin"))
        .bind(r.get::<Option<String>, _>("op"))
        .bind(r.get::<String, _>("outcome"))
        .bind(r.get::<String, _>("detail"))
        .bind(r.get::<Option<String>, _>("request_id"))
        .bind(r.get::<Option<String>, _>("user_id"))
        .execute(&mut *tx)
        .await?;
    }
    count("audit entries", rows.len());

    let rows = sqlx::query("SELECT * FROM idempotency ORDER BY rowid")
        .fetch_all(src)
        .await?;
    for r in &rows {
        // A request without a result was cut off by the source's end: its claim has lapsed.
        sqlx::query(
            "INSERT INTO idempotency (org_id, key, request, status, body, created_at, \
             claim_until) VALUES ($1, $2, $3, $4, $5, $6, \
             CASE WHEN $4 = 0 THEN '-infinity'::timestamptz END)",
        )
        .bind(r.get::<i64, _>("org_id"))
        .bind(r.get::<String, _>("key"))
        .bind(r.get::<String, _>("request"))
        .bind(i32::try_from(r.get::<i64, _>("status")).unwrap_or(500))
        .bind(r.get::<String, _>("body"))
        .bind(r.get::<String, _>("created_at"))
        .execute(&mut *tx)
        .await?;
    }
    count("idempotency records", rows.len());

    let signature: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT CAST(value AS BLOB) FROM meta WHERE key = 'lookup_signature'")
            .fetch_optional(src)
            .await?;
    if let Some(signature) = signature {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('lookup_signature', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(signature)
        .execute(&mut *tx)
        .await?;
    }
    // New rows continue after the copied ids.
    for (table, column) in [("orgs", "id"), ("audit", "id"), ("devices", "rowid")] {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(done)
}
