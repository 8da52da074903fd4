//! Imports on SQLite: one transaction that holds the write lock from its start.

use serde_json::Value;
use sqlx::{Row, Sqlite, Transaction};

use super::{ImportCounts, ImportRow, ImportStore, ImportTx, Prefetched, RowOutcome, Writes};
use crate::store::sqlite::device_from_columns;
use crate::store::{LookupEntry, Result, SqliteStore, StoreError};

/// An import in progress on SQLite.
#[derive(Debug)]
pub struct SqliteImport {
    tx: Transaction<'static, Sqlite>,
    org_id: i64,
    /// The sequence number of the last device of the org.
    seq: i64,
    pub(super) counts: ImportCounts,
}

/// A JSON array of strings, for `IN (SELECT value FROM json_each(?))`.
fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect()).to_string()
}

impl ImportStore for SqliteStore {
    async fn begin_import(&self, org_id: i64) -> Result<ImportTx> {
        let mut tx = self.pool().begin().await?;
        // A write first: the transaction holds the write lock from here on, so the sequence
        // numbers read below stay the org's last.
        let locked = sqlx::query("UPDATE orgs SET id = id WHERE id = ?")
            .bind(org_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if locked == 0 {
            return Err(StoreError::NotFound("no such organisation".into()));
        }
        let seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM devices WHERE org_id = ?")
                .bind(org_id)
                .fetch_one(&mut *tx)
                .await?;
        Ok(ImportTx::Sqlite(SqliteImport {
            tx,
            org_id,
            seq,
            counts: ImportCounts::default(),
        }))
    }
}

impl SqliteImport {
    pub(super) async fn apply(&mut self, rows: &[ImportRow]) -> Result<Vec<RowOutcome>> {
        let pre = self.prefetch(rows).await?;
        let (outcomes, writes) = super::plan(rows, pre, &mut self.counts)?;
        self.write(writes).await?;
        Ok(outcomes)
    }

    async fn prefetch(&mut self, rows: &[ImportRow]) -> Result<Prefetched> {
        let (names, mut ids, entries) = super::keys_of(rows);
        let mut pre = Prefetched::default();
        // The owners of the lookup values, one query per (plugin, field).
        let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&str>> = Default::default();
        for e in &entries {
            groups
                .entry((e.plugin.as_str(), e.field.as_str()))
                .or_default()
                .push(e.value.as_str());
        }
        for ((plugin, field), values) in groups {
            let found = sqlx::query(
                "SELECT value, device_id FROM device_lookup WHERE org_id = ? AND plugin = ? \
                 AND field = ? AND value IN (SELECT value FROM json_each(?))",
            )
            .bind(self.org_id)
            .bind(plugin)
            .bind(field)
            .bind(json_list(values))
            .fetch_all(&mut *self.tx)
            .await?;
            for r in found {
                let owner: String = r.get("device_id");
                ids.push(owner.clone());
                let entry = LookupEntry {
                    plugin: plugin.to_owned(),
                    field: field.to_owned(),
                    value: r.get("value"),
                };
                pre.owners.push((entry, owner));
            }
        }
        // Two queries, each on its index: (org_id, name), and the primary key (`+org_id`: the
        // org's condition a filter there, not the org's index, which reads all its devices).
        for (condition, keys) in [
            ("org_id = ? AND name", &names),
            ("+org_id = ? AND id", &ids),
        ] {
            if keys.is_empty() {
                continue;
            }
            let sql = format!(
                "SELECT id, name, type, extensions, created_at, updated_at FROM devices \
                 WHERE {condition} IN (SELECT value FROM json_each(?))"
            );
            // Only fixed conditions; every value is bound.
            let found = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(self.org_id)
                .bind(json_list(keys.iter().map(String::as_str)))
                .fetch_all(&mut *self.tx)
                .await?;
            for r in found {
                let device = device_from_columns(
                    r.get("id"),
                    r.get("name"),
                    r.get("type"),
                    r.get("extensions"),
                    r.get("created_at"),
                    r.get("updated_at"),
                )?;
                if !pre.devices.iter().any(|d| d.id == device.id) {
                    pre.devices.push(device);
                }
            }
        }
        Ok(pre)
    }

    /// Rows per multi-row `INSERT` (8 values each, well under SQLite's 32766 variables).
    const CHUNK: usize = 500;

    async fn write(&mut self, writes: Writes) -> Result<()> {
        for chunk in writes.created.chunks(Self::CHUNK) {
            let mut sql = String::from(
                "INSERT INTO devices (id, org_id, seq, name, type, extensions, created_at, \
                 updated_at) VALUES ",
            );
            sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", "));
            // Only fixed fragments; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (d, _) in chunk {
                self.seq += 1;
                q = q
                    .bind(&d.id)
                    .bind(self.org_id)
                    .bind(self.seq)
                    .bind(&d.name)
                    .bind(&d.device_type)
                    .bind(d.extensions.to_string())
                    .bind(&d.created_at)
                    .bind(&d.updated_at);
            }
            q.execute(&mut *self.tx).await?;
        }
        for (d, _) in &writes.updated {
            sqlx::query(
                "UPDATE devices SET name = ?, type = ?, extensions = ?, updated_at = ? \
                 WHERE org_id = ? AND id = ?",
            )
            .bind(&d.name)
            .bind(&d.device_type)
            .bind(d.extensions.to_string())
            .bind(&d.updated_at)
            .bind(self.org_id)
            .bind(&d.id)
            .execute(&mut *self.tx)
            .await?;
        }
        if !writes.updated.is_empty() {
            sqlx::query(
                "DELETE FROM device_lookup WHERE device_id IN (SELECT value FROM json_each(?))",
            )
            .bind(json_list(writes.updated.iter().map(|(d, _)| d.id.as_str())))
            .execute(&mut *self.tx)
            .await?;
        }
        let entries: Vec<(&str, &LookupEntry)> = writes
            .created
            .iter()
            .chain(&writes.updated)
            .flat_map(|(d, lookup)| lookup.iter().map(move |e| (d.id.as_str(), e)))
            .collect();
        for chunk in entries.chunks(Self::CHUNK) {
            let mut sql = String::from(
                "INSERT INTO device_lookup (org_id, plugin, field, value, device_id) VALUES ",
            );
            sql.push_str(&vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", "));
            // Only fixed fragments; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, e) in chunk {
                q = q
                    .bind(self.org_id)
                    .bind(&e.plugin)
                    .bind(&e.field)
                    .bind(&e.value)
                    .bind(*id);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub(super) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub(super) async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}
