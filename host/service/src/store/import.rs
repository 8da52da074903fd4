//! Device import: many devices written in one transaction ([`ImportStore::begin_import`]), each
//! record matched against the organisation's devices (by name, by a lookup field or by id) and
//! created, updated, or left alone when it says what is stored already.
//!
//! The caller checks every record first (schemas, names); the store decides, in the
//! transaction, what each record does to the devices it sees, the transaction's own writes
//! included (a file that names a device twice updates the device its earlier line created).
//! Nothing is visible to others before [`ImportTx::commit`]; a dropped [`ImportTx`] (or
//! [`ImportTx::rollback`]) leaves the store as it was.

use std::future::Future;

use serde_json::Value;

use super::{Device, LookupEntry, Result, StoreError};

mod postgres;
mod sqlite;

pub use postgres::PgImport;
pub use sqlite::SqliteImport;

/// How a record finds the device it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchKey {
    /// The device with this name (names are not unique: two devices with it are an error).
    Name(String),
    /// The device with this lookup value (unique within an organisation).
    Lookup(LookupEntry),
    /// The device with this id (it must exist: ids are the store's to give).
    Id(String),
}

/// One record to import, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// How it finds its device.
    pub key: MatchKey,
    /// The device's name.
    pub name: String,
    /// Its type.
    pub device_type: Option<String>,
    /// Its whole extension configuration.
    pub extensions: Value,
    /// Its lookup index entries.
    pub lookup: Vec<LookupEntry>,
}

/// What a record did (in the transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// A new device, with this id.
    Created(String),
    /// This device was changed.
    Updated(String),
    /// This device already was as the record says: nothing written.
    Unchanged(String),
    /// The record cannot be applied (nothing written for it): where in the record (a JSON
    /// pointer, when one part is the cause) and why.
    Refused {
        /// The part of the record at fault.
        pointer: Option<String>,
        /// Why, for people.
        message: String,
    },
}

/// The counts of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportCounts {
    /// Devices created.
    pub created: u64,
    /// Devices changed.
    pub updated: u64,
    /// Records that matched a device already as they say.
    pub unchanged: u64,
}

/// Import transactions of a store.
pub trait ImportStore {
    /// Starts an import into the org's devices: one transaction, which takes the store's write
    /// lock (SQLite) or the org's row (PostgreSQL) at once, so that concurrent device creations
    /// wait for it. `NotFound` if there is no such org.
    fn begin_import(&self, org_id: i64) -> impl Future<Output = Result<ImportTx>> + Send;
}

/// An import in progress (one transaction).
#[derive(Debug)]
pub enum ImportTx {
    /// On SQLite.
    Sqlite(SqliteImport),
    /// On PostgreSQL.
    Postgres(PgImport),
}

impl ImportTx {
    /// Applies `rows` in order; one outcome per row. A refused row writes nothing and the
    /// transaction goes on; an `Err` is a failure of the database (the import is lost).
    pub async fn apply(&mut self, rows: &[ImportRow]) -> Result<Vec<RowOutcome>> {
        match self {
            ImportTx::Sqlite(tx) => tx.apply(rows).await,
            ImportTx::Postgres(tx) => tx.apply(rows).await,
        }
    }

    /// What the rows applied so far did.
    pub fn counts(&self) -> ImportCounts {
        match self {
            ImportTx::Sqlite(tx) => tx.counts,
            ImportTx::Postgres(tx) => tx.counts,
        }
    }

    /// Makes every applied row visible (and, on PostgreSQL, announces the changed devices to
    /// the other replicas).
    pub async fn commit(self) -> Result<()> {
        match self {
            ImportTx::Sqlite(tx) => tx.commit().await,
            ImportTx::Postgres(tx) => tx.commit().await,
        }
    }

    /// Forgets every applied row.
    pub async fn rollback(self) -> Result<()> {
        match self {
            ImportTx::Sqlite(tx) => tx.rollback().await,
            ImportTx::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// What a batch reads before it is planned: the devices its keys may match and the current
/// owners of its lookup values.
#[derive(Debug, Default)]
struct Prefetched {
    /// Devices named by a row, with a row's id, or owning one of the batch's lookup values.
    devices: Vec<Device>,
    /// The device owning each lookup value of the batch that has one.
    owners: Vec<(LookupEntry, String)>,
}

/// What a batch writes, once planned.
#[derive(Debug, Default)]
struct Writes {
    /// New devices, in the order of their first line, with their lookup entries.
    created: Vec<(Device, Vec<LookupEntry>)>,
    /// Stored devices changed, with their new lookup entries.
    updated: Vec<(Device, Vec<LookupEntry>)>,
}

/// The keys a batch must read: names, ids and lookup values (each once).
fn keys_of(rows: &[ImportRow]) -> (Vec<String>, Vec<String>, Vec<LookupEntry>) {
    let mut names = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut entries = std::collections::BTreeSet::new();
    for row in rows {
        match &row.key {
            MatchKey::Name(n) => {
                names.insert(n.clone());
            }
            MatchKey::Id(id) => {
                ids.insert(id.clone());
            }
            MatchKey::Lookup(e) => {
                entries.insert(e.clone());
            }
        }
        entries.extend(row.lookup.iter().cloned());
    }
    (
        names.into_iter().collect(),
        ids.into_iter().collect(),
        entries.into_iter().collect(),
    )
}

/// A device as the batch has left it so far.
struct Touched {
    device: Device,
    lookup: Vec<LookupEntry>,
    /// Created by this batch (not in the store yet).
    new: bool,
}

/// Decides every row of a batch in order, over what was read (`pre`) and what the earlier rows
/// of the batch did: the outcomes and the writes that make them so.
fn plan(
    rows: &[ImportRow],
    pre: Prefetched,
    counts: &mut ImportCounts,
) -> Result<(Vec<RowOutcome>, Writes)> {
    use std::collections::HashMap;
    let stored: HashMap<String, Device> =
        pre.devices.into_iter().map(|d| (d.id.clone(), d)).collect();
    let owners: HashMap<LookupEntry, String> = pre.owners.into_iter().collect();
    let mut stored_by_name: HashMap<String, Vec<String>> = HashMap::new();
    for d in stored.values() {
        stored_by_name
            .entry(d.name.clone())
            .or_default()
            .push(d.id.clone());
    }
    let mut touched: HashMap<String, Touched> = HashMap::new();
    // The touched devices by their current name.
    let mut touched_by_name: HashMap<String, Vec<String>> = HashMap::new();
    // Lookup values held by touched devices (their stored values are theirs no more).
    let mut claims: HashMap<LookupEntry, String> = HashMap::new();
    let mut created_order: Vec<String> = Vec::new();
    let mut outcomes = Vec::with_capacity(rows.len());
    for row in rows {
        let current = |id: &str| -> Option<Device> {
            touched
                .get(id)
                .map(|t| t.device.clone())
                .or_else(|| stored.get(id).cloned())
        };
        let owner = |entry: &LookupEntry| -> Option<String> {
            claims.get(entry).cloned().or_else(|| {
                owners
                    .get(entry)
                    .filter(|o| !touched.contains_key(o.as_str()))
                    .cloned()
            })
        };
        let found: Vec<Device> = match &row.key {
            MatchKey::Name(name) => {
                let untouched = stored_by_name
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter(|id| !touched.contains_key(id.as_str()))
                    .filter_map(|id| stored.get(id));
                let renamed = touched_by_name
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| touched.get(id).map(|t| &t.device));
                untouched.chain(renamed).cloned().collect()
            }
            MatchKey::Lookup(entry) => owner(entry)
                .and_then(|id| current(&id))
                .into_iter()
                .collect(),
            MatchKey::Id(id) => current(id).into_iter().collect(),
        };
        let row_owners: Vec<(LookupEntry, Option<String>)> =
            row.lookup.iter().map(|e| (e.clone(), owner(e))).collect();
        let outcome = match decide(row, &found, &row_owners) {
            Decision::Refuse(outcome) => outcome,
            Decision::Unchanged(id) => {
                counts.unchanged += 1;
                RowOutcome::Unchanged(id)
            }
            Decision::Update(id) => {
                let base = found
                    .into_iter()
                    .next()
                    .ok_or_else(|| StoreError::Corrupt("an update without its device".into()))?;
                let new = touched.get(&id).is_some_and(|t| t.new);
                if let Some(old) = touched.get(&id) {
                    for e in &old.lookup {
                        claims.remove(e);
                    }
                    if let Some(ids) = touched_by_name.get_mut(&old.device.name) {
                        ids.retain(|i| i != &id);
                    }
                }
                touched_by_name
                    .entry(row.name.clone())
                    .or_default()
                    .push(id.clone());
                for e in &row.lookup {
                    claims.insert(e.clone(), id.clone());
                }
                let device = Device {
                    name: row.name.clone(),
                    device_type: row.device_type.clone(),
                    extensions: row.extensions.clone(),
                    updated_at: now(),
                    ..base
                };
                touched.insert(
                    id.clone(),
                    Touched {
                        device,
                        lookup: row.lookup.clone(),
                        new,
                    },
                );
                counts.updated += 1;
                RowOutcome::Updated(id)
            }
            Decision::Create => {
                let id = new_device_id()?;
                let at = now();
                for e in &row.lookup {
                    claims.insert(e.clone(), id.clone());
                }
                touched.insert(
                    id.clone(),
                    Touched {
                        device: Device {
                            id: id.clone(),
                            name: row.name.clone(),
                            device_type: row.device_type.clone(),
                            extensions: row.extensions.clone(),
                            created_at: at.clone(),
                            updated_at: at,
                        },
                        lookup: row.lookup.clone(),
                        new: true,
                    },
                );
                touched_by_name
                    .entry(row.name.clone())
                    .or_default()
                    .push(id.clone());
                created_order.push(id.clone());
                counts.created += 1;
                RowOutcome::Created(id)
            }
        };
        outcomes.push(outcome);
    }
    let mut writes = Writes::default();
    for id in &created_order {
        if let Some(t) = touched.remove(id) {
            writes.created.push((t.device, t.lookup));
        }
    }
    let mut updated: Vec<Touched> = touched.into_values().collect();
    updated.sort_by(|a, b| a.device.id.cmp(&b.device.id));
    writes.updated = updated.into_iter().map(|t| (t.device, t.lookup)).collect();
    Ok((outcomes, writes))
}

/// What a row does, from what the transaction sees.
enum Decision {
    Refuse(RowOutcome),
    Unchanged(String),
    Update(String),
    Create,
}

/// Decides a row: `found` are the devices its key matches, `owners` the device owning each of
/// its lookup entries, if any.
fn decide(row: &ImportRow, found: &[Device], owners: &[(LookupEntry, Option<String>)]) -> Decision {
    let refuse = |pointer: Option<String>, message: String| {
        Decision::Refuse(RowOutcome::Refused { pointer, message })
    };
    if found.len() > 1 {
        let MatchKey::Name(name) = &row.key else {
            // Lookup values and ids are unique: the store cannot hold two.
            return refuse(None, "the match key names several devices".into());
        };
        return refuse(
            Some("/name".into()),
            format!(
                "several devices of the organisation are named {name:?}: match by a lookup \
                 field instead (match=ext.<plugin>.<field>)"
            ),
        );
    }
    let target = found.first();
    if let (None, MatchKey::Id(id)) = (target, &row.key) {
        return refuse(
            Some("/id".into()),
            format!(
                "no device {id:?} in the organisation: with match=id every record names an \
                 existing device (the service gives new devices their ids)"
            ),
        );
    }
    for (entry, owner) in owners {
        if let Some(owner) = owner
            && target.is_none_or(|t| &t.id != owner)
        {
            let e = StoreError::LookupTaken {
                entry: entry.clone(),
                owner: owner.clone(),
            };
            return refuse(Some(entry.pointer()), e.to_string());
        }
    }
    match target {
        Some(d)
            if d.name == row.name
                && d.device_type == row.device_type
                && d.extensions == row.extensions =>
        {
            Decision::Unchanged(d.id.clone())
        }
        Some(d) => Decision::Update(d.id.clone()),
        None => Decision::Create,
    }
}

fn new_device_id() -> Result<String> {
    let bytes = crate::crypto::random_bytes::<8>()?;
    Ok(format!("dev_{}", crate::crypto::hex(&bytes)))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl ImportStore for super::AnyStore {
    async fn begin_import(&self, org_id: i64) -> Result<ImportTx> {
        match self {
            super::AnyStore::Sqlite(s) => s.begin_import(org_id).await,
            super::AnyStore::Postgres(s) => s.begin_import(org_id).await,
        }
    }
}
