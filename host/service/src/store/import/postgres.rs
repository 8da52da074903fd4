//! Imports on PostgreSQL: one transaction that holds the org's row (which serialises its
//! devices' sequence numbers) from its start; each batch read with one index probe per key
//! (`unnest` + `LATERAL`) and written with array parameters (`unnest`), a few statements per batch.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::{ImportCounts, ImportRow, ImportStore, ImportTx, Prefetched, RowOutcome, Writes};
use crate::store::postgres::CHANGES_CHANNEL;
use crate::store::sqlite::device_from_columns;
use crate::store::{LookupEntry, PgStore, Result, StoreError};

/// An import in progress on PostgreSQL.
#[derive(Debug)]
pub struct PgImport {
    tx: Transaction<'static, Postgres>,
    org_id: i64,
    /// The sequence number of the last device of the org.
    seq: i64,
    pub(super) counts: ImportCounts,
}

impl ImportStore for PgStore {
    async fn begin_import(&self, org_id: i64) -> Result<ImportTx> {
        let mut tx = self.pool().begin().await?;
        let org: Option<i64> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = $1 FOR UPDATE")
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        if org.is_none() {
            return Err(StoreError::NotFound("no such organisation".into()));
        }
        // The tables grow within this one transaction, beyond what the planner's statistics
        // (taken before it) say: a table they call tiny would be scanned whole by each probe.
        // Every read of the import has an index made for it.
        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *tx)
            .await?;
        let seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM devices WHERE org_id = $1")
                .bind(org_id)
                .fetch_one(&mut *tx)
                .await?;
        Ok(ImportTx::Postgres(PgImport {
            tx,
            org_id,
            seq,
            counts: ImportCounts::default(),
        }))
    }
}

fn row_device(r: &PgRow) -> Result<crate::store::Device> {
    device_from_columns(
        r.get("id"),
        r.get("name"),
        r.get("type"),
        r.get("extensions"),
        r.get("created_at"),
        r.get("updated_at"),
    )
}

impl PgImport {
    pub(super) async fn apply(&mut self, rows: &[ImportRow]) -> Result<Vec<RowOutcome>> {
        let pre = self.prefetch(rows).await?;
        let (outcomes, writes) = super::plan(rows, pre, &mut self.counts)?;
        self.write(writes).await?;
        Ok(outcomes)
    }

    async fn prefetch(&mut self, rows: &[ImportRow]) -> Result<Prefetched> {
        let (names, mut ids, entries) = super::keys_of(rows);
        let mut pre = Prefetched::default();
        // The owners of the lookup values, one query per (plugin, field): one probe of the
        // index of the lookup values per value (as for names below).
        let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&str>> = Default::default();
        for e in &entries {
            groups
                .entry((e.plugin.as_str(), e.field.as_str()))
                .or_default()
                .push(e.value.as_str());
        }
        for ((plugin, field), values) in groups {
            let found = sqlx::query(
                "SELECT k.value, l.device_id FROM unnest($4::text[]) AS k(value) CROSS JOIN \
                 LATERAL (SELECT device_id FROM device_lookup WHERE org_id = $1 AND \
                 plugin = $2 AND field = $3 AND value = k.value LIMIT 1) AS l",
            )
            .bind(self.org_id)
            .bind(plugin)
            .bind(field)
            .bind(&values)
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
        // By name: one probe of (org_id, name) per name (a `LATERAL` subquery, kept apart by
        // its `LIMIT`: two devices are enough to know a name is ambiguous). `name = ANY($2)`
        // would let the planner read every device of the org and compare each with every
        // name of the batch.
        if !names.is_empty() {
            let found = sqlx::query(
                "SELECT d.id, d.name, d.type, d.extensions, d.created_at, d.updated_at \
                 FROM unnest($2::text[]) AS k(name) CROSS JOIN LATERAL \
                 (SELECT * FROM devices WHERE org_id = $1 AND name = k.name LIMIT 2) AS d",
            )
            .bind(self.org_id)
            .bind(&names)
            .fetch_all(&mut *self.tx)
            .await?;
            for r in &found {
                pre.devices.push(row_device(r)?);
            }
        }
        // By id: one probe of the primary key per id.
        if !ids.is_empty() {
            let found = sqlx::query(
                "SELECT d.id, d.name, d.type, d.extensions, d.created_at, d.updated_at \
                 FROM unnest($2::text[]) AS k(id) CROSS JOIN LATERAL \
                 (SELECT * FROM devices WHERE id = k.id AND org_id = $1 LIMIT 1) AS d",
            )
            .bind(self.org_id)
            .bind(&ids)
            .fetch_all(&mut *self.tx)
            .await?;
            for r in &found {
                let device = row_device(r)?;
                if !pre.devices.iter().any(|d| d.id == device.id) {
                    pre.devices.push(device);
                }
            }
        }
        Ok(pre)
    }

    async fn write(&mut self, writes: Writes) -> Result<()> {
        if !writes.created.is_empty() {
            let n = writes.created.len();
            let (mut ids, mut seqs, mut names, mut types, mut exts, mut ats) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (d, _) in &writes.created {
                self.seq += 1;
                ids.push(d.id.as_str());
                seqs.push(self.seq);
                names.push(d.name.as_str());
                types.push(d.device_type.as_deref());
                exts.push(d.extensions.to_string());
                ats.push(d.created_at.as_str());
            }
            sqlx::query(
                "INSERT INTO devices (id, org_id, seq, name, type, extensions, created_at, \
                 updated_at) SELECT u.id, $1, u.seq, u.name, u.type, u.extensions, u.at, u.at \
                 FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
                 $7::text[]) AS u(id, seq, name, type, extensions, at)",
            )
            .bind(self.org_id)
            .bind(&ids)
            .bind(&seqs)
            .bind(&names)
            .bind(&types)
            .bind(&exts)
            .bind(&ats)
            .execute(&mut *self.tx)
            .await?;
        }
        if !writes.updated.is_empty() {
            let ids: Vec<&str> = writes.updated.iter().map(|(d, _)| d.id.as_str()).collect();
            let names: Vec<&str> = writes
                .updated
                .iter()
                .map(|(d, _)| d.name.as_str())
                .collect();
            let types: Vec<Option<&str>> = writes
                .updated
                .iter()
                .map(|(d, _)| d.device_type.as_deref())
                .collect();
            let exts: Vec<String> = writes
                .updated
                .iter()
                .map(|(d, _)| d.extensions.to_string())
                .collect();
            let ats: Vec<&str> = writes
                .updated
                .iter()
                .map(|(d, _)| d.updated_at.as_str())
                .collect();
            sqlx::query(
                "UPDATE devices d SET name = u.name, type = u.type, extensions = u.extensions, \
                 updated_at = u.at FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[]) AS u(id, name, type, extensions, at) \
                 WHERE d.id = u.id AND d.org_id + 0 = $1",
            )
            .bind(self.org_id)
            .bind(&ids)
            .bind(&names)
            .bind(&types)
            .bind(&exts)
            .bind(&ats)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM device_lookup WHERE device_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *self.tx)
                .await?;
        }
        let entries: Vec<(&str, &LookupEntry)> = writes
            .created
            .iter()
            .chain(&writes.updated)
            .flat_map(|(d, lookup)| lookup.iter().map(move |e| (d.id.as_str(), e)))
            .collect();
        if !entries.is_empty() {
            let plugins: Vec<&str> = entries.iter().map(|(_, e)| e.plugin.as_str()).collect();
            let fields: Vec<&str> = entries.iter().map(|(_, e)| e.field.as_str()).collect();
            let values: Vec<&str> = entries.iter().map(|(_, e)| e.value.as_str()).collect();
            let ids: Vec<&str> = entries.iter().map(|(id, _)| *id).collect();
            sqlx::query(
                "INSERT INTO device_lookup (org_id, plugin, field, value, device_id) \
                 SELECT $1, u.plugin, u.field, u.value, u.device_id FROM unnest($2::text[], \
                 $3::text[], $4::text[], $5::text[]) AS u(plugin, field, value, device_id)",
            )
            .bind(self.org_id)
            .bind(&plugins)
            .bind(&fields)
            .bind(&values)
            .bind(&ids)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    pub(super) async fn commit(mut self) -> Result<()> {
        if self.counts.updated > 0 {
            // Other replicas may have memoised the changed devices: one announcement, which
            // they read as "anything may have changed" (an import is rare, its devices many).
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(format!("import {}", self.org_id))
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }

    pub(super) async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}
