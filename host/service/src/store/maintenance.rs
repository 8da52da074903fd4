//! An administrator's bad day: online backups and restores of an SQLite store, and rotating the
//! secrets key of either store (`devext store backup | restore | rotate-key`).
//!
//! The secret key is never part of a backup: an SQLite store keeps it in its key file beside
//! the database (or it comes from `DEVEXT_SECRET_KEY` / `--secret-key-file`), and a backup is
//! the database alone. A restored store holds only the key's check value, so it starts with the
//! original key and refuses every other one ([`StoreError::WrongKey`]) or none
//! ([`StoreError::KeyMissing`]).
//!
//! Rotation re-encrypts every secret and the check value in one transaction: a crash before it
//! commits leaves the old key working; after it, the old key is refused. A service still running
//! with the old key keeps reading what it has, but refuses to write secrets
//! ([`StoreError::KeyChanged`], checked in the writing transaction by
//! [`key_is_current_sqlite`] / [`key_is_current_pg`]) until restarted with the new key.

use std::path::{Path, PathBuf};

use sqlx::Row as _;

use super::{AnyStore, PgStore, Result, SqliteStore, StoreError};
use crate::crypto::{self, SecretKey};

/// What the stores seal their check value with, and its context.
const KEY_CHECK: &[u8] = b"devext secret key check";
const KEY_CHECK_CONTEXT: &str = "meta/key_check";

/// Test-only: `rotate-key` stops after re-encrypting this many secrets (inside its transaction)
/// and waits to be killed, so that a test can show a crash mid-way leaves the old key working.
pub const ROTATE_PAUSE_ENV: &str = "DEVEXT_TEST_ROTATE_PAUSE_AFTER";

/// What a rotation re-encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Extension settings whose secrets were re-encrypted.
    pub secrets: u64,
}

fn pause_after() -> Option<u64> {
    std::env::var(ROTATE_PAUSE_ENV).ok()?.trim().parse().ok()
}

/// The test hook: announce the pause on stderr and wait (for SIGKILL).
async fn maybe_pause(done: u64, at: Option<u64>) {
    if at == Some(done) {
        eprintln!(
            "devext: {ROTATE_PAUSE_ENV}: paused after {done} secrets, inside the transaction"
        );
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    }
}

/// Stored secrets this process's key cannot open.
pub(super) fn unreadable_secrets(plugin: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "the secrets of the {plugin} settings cannot be decrypted with this service's key: \
         either the key was rotated (devext store rotate-key) since the service started \
         (restart it with the new key), or the stored data was altered"
    ))
}

fn reseal(old: &SecretKey, new: &SecretKey, context: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let plain = old.open(context, sealed).map_err(|_| {
        StoreError::Corrupt(format!(
            "{context}: the current key cannot open these secrets: nothing was changed"
        ))
    })?;
    Ok(new.seal(context, &plain)?)
}

fn check_opens(key: &SecretKey, sealed: &[u8]) -> Result<()> {
    match key.open(KEY_CHECK_CONTEXT, sealed) {
        Ok(plain) if plain == KEY_CHECK => Ok(()),
        Ok(_) => Err(StoreError::Corrupt("corrupt key check record".into())),
        Err(_) => Err(StoreError::KeyChanged),
    }
}

/// In an SQLite writing transaction (after its first write, so that the write lock is held and
/// the snapshot is the newest): whether `key` still opens the stored check value; else
/// [`StoreError::KeyChanged`] (the key was rotated since this process opened the store).
pub(super) async fn key_is_current_sqlite(
    conn: &mut sqlx::SqliteConnection,
    key: &SecretKey,
) -> Result<()> {
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
        .fetch_one(&mut *conn)
        .await?;
    check_opens(key, &sealed)
}

/// In a PostgreSQL writing transaction, before it writes secrets: the check value, locked
/// against a rotation (`FOR SHARE`; a rotation holds it `FOR UPDATE` until it commits, after
/// which this reads the new value), opens under `key`; else [`StoreError::KeyChanged`].
pub(super) async fn key_is_current_pg(
    conn: &mut sqlx::PgConnection,
    key: &SecretKey,
) -> Result<()> {
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check' FOR SHARE")
            .fetch_one(&mut *conn)
            .await?;
    check_opens(key, &sealed)
}

impl SqliteStore {
    /// Re-encrypts every secret and the key's check value under `new`, in one transaction.
    pub async fn rotate_key(&self, new: &SecretKey) -> Result<Rotated> {
        let old = self.key().clone();
        let pause = pause_after();
        let mut tx = self.pool().begin().await?;
        // The first statement writes: the write lock for the whole rotation.
        sqlx::query("UPDATE meta SET value = value WHERE key = 'key_check'")
            .execute(&mut *tx)
            .await?;
        key_is_current_sqlite(&mut tx, &old).await?;
        let rows = sqlx::query(
            "SELECT org_id, plugin, secrets FROM extensions WHERE secrets IS NOT NULL \
             ORDER BY org_id, plugin",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut done = 0;
        for row in rows {
            let (org_id, plugin): (i64, String) = (row.get("org_id"), row.get("plugin"));
            let sealed: Vec<u8> = row.get("secrets");
            let context = SqliteStore::secrets_context(org_id, &plugin);
            let resealed = reseal(&old, new, &context, &sealed)?;
            sqlx::query("UPDATE extensions SET secrets = ? WHERE org_id = ? AND plugin = ?")
                .bind(resealed)
                .bind(org_id)
                .bind(&plugin)
                .execute(&mut *tx)
                .await?;
            done += 1;
            maybe_pause(done, pause).await;
        }
        sqlx::query("UPDATE meta SET value = ? WHERE key = 'key_check'")
            .bind(new.seal(KEY_CHECK_CONTEXT, KEY_CHECK)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Rotated { secrets: done })
    }
}

impl PgStore {
    /// Re-encrypts every secret and the key's check value under `new`, in one transaction
    /// (the other replicas' secret writes wait for it, then refuse: [`StoreError::KeyChanged`]).
    pub async fn rotate_key(&self, new: &SecretKey) -> Result<Rotated> {
        let old = self.key().clone();
        let pause = pause_after();
        let mut tx = self.pool().begin().await?;
        let sealed: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check' FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        check_opens(&old, &sealed)?;
        let rows = sqlx::query(
            "SELECT org_id, plugin, secrets FROM extensions WHERE secrets IS NOT NULL \
             ORDER BY org_id, plugin FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut done = 0;
        for row in rows {
            let (org_id, plugin): (i64, String) = (row.get("org_id"), row.get("plugin"));
            let sealed: Vec<u8> = row.get("secrets");
            let context = PgStore::secrets_context(org_id, &plugin);
            let resealed = reseal(&old, new, &context, &sealed)?;
            sqlx::query("UPDATE extensions SET secrets = $1 WHERE org_id = $2 AND plugin = $3")
                .bind(resealed)
                .bind(org_id)
                .bind(&plugin)
                .execute(&mut *tx)
                .await?;
            done += 1;
            maybe_pause(done, pause).await;
        }
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'key_check'")
            .bind(new.seal(KEY_CHECK_CONTEXT, KEY_CHECK)?)
            .execute(&mut *tx)
            .await?;
        // Delivered at commit: the running replicas drop their memos (decrypted settings), so
        // they stop using the old secrets at once and say why (`unreadable_secrets`).
        sqlx::query("SELECT pg_notify($1, 'key rotated')")
            .bind(super::postgres::CHANGES_CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Rotated { secrets: done })
    }
}

impl AnyStore {
    /// [`SqliteStore::rotate_key`] or [`PgStore::rotate_key`].
    pub async fn rotate_key(&self, new: &SecretKey) -> Result<Rotated> {
        match self {
            AnyStore::Sqlite(s) => s.rotate_key(new).await,
            AnyStore::Postgres(s) => s.rotate_key(new).await,
        }
    }
}

/// What a backup or a restore holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// Organisations.
    pub orgs: u64,
    /// Devices.
    pub devices: u64,
    /// Extension settings.
    pub settings: u64,
    /// Audit entries.
    pub audit: u64,
    /// Size of the file, bytes.
    pub bytes: u64,
}

impl std::fmt::Display for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} organisations, {} devices, {} extension settings, {} audit entries ({} bytes)",
            self.orgs, self.devices, self.settings, self.audit, self.bytes
        )
    }
}

fn db_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("{}: {e}", path.display()))
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Database(format!("{}: {what}: {e}", path.display()))
}

/// A path beside `target` that does not exist yet (for writing `target` atomically).
fn partial_beside(target: &Path, what: &str) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| StoreError::Database(format!("{}: not a file name", target.display())))?
        .to_string_lossy();
    let tag = crypto::hex(&crypto::random_bytes::<6>()?);
    Ok(target.with_file_name(format!(".{name}.{what}-{tag}")))
}

/// Flushes `file` and the directory holding it, so that a rename into it survives a crash.
fn sync_file_and_dir(file: &Path) -> Result<()> {
    std::fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(file, "cannot flush", e))?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "cannot flush the directory", e))
}

/// Opens an SQLite devext store (an existing file) and checks it is one.
fn open_existing(path: &Path, flags: rusqlite::OpenFlags) -> Result<rusqlite::Connection> {
    if !path.is_file() {
        return Err(StoreError::NotFound(format!(
            "{}: no store there",
            path.display()
        )));
    }
    let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(|e| db_error(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| db_error(path, e))?;
    // No `meta` table, or no check value in it: not a store of ours.
    let has_check: Option<i64> = conn
        .query_row("SELECT 1 FROM meta WHERE key = 'key_check'", [], |r| {
            r.get(0)
        })
        .ok();
    if has_check.is_none() {
        return Err(StoreError::Corrupt(format!(
            "{}: not a devext store (no secret key check value)",
            path.display()
        )));
    }
    Ok(conn)
}

fn contents(conn: &rusqlite::Connection, path: &Path) -> Result<Contents> {
    let count = |table: &str| -> Result<u64> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(|e| db_error(path, e))
    };
    Ok(Contents {
        orgs: count("orgs")?,
        devices: count("devices")?,
        settings: count("extensions")?,
        audit: count("audit")?,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    })
}

fn integrity(conn: &rusqlite::Connection, path: &Path) -> Result<()> {
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| db_error(path, e))?;
    if ok == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "{}: the integrity check failed: {ok}",
            path.display()
        )))
    }
}

/// Writes a consistent copy of the SQLite store `db` to `out` (`VACUUM INTO`, which reads one
/// snapshot: safe while a service writes). The copy is written beside `out` and renamed into
/// place once complete and flushed; an existing `out` is never overwritten. The key file is not
/// copied. Blocking: call it off the async workers.
pub fn backup_sqlite(db: &Path, out: &Path) -> Result<Contents> {
    if out.exists() {
        return Err(StoreError::Conflict(format!(
            "{} exists already: refusing to overwrite it (choose a new name)",
            out.display()
        )));
    }
    let conn = open_existing(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let partial = partial_beside(out, "partial")?;
    let result = (|| {
        conn.execute("VACUUM INTO ?1", [partial.to_string_lossy()])
            .map_err(|e| db_error(db, format!("the backup failed: {e}")))?;
        let copy = open_existing(&partial, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        integrity(&copy, &partial)?;
        drop(copy);
        sync_file_and_dir(&partial)?;
        if out.exists() {
            return Err(StoreError::Conflict(format!(
                "{} appeared during the backup: refusing to overwrite it",
                out.display()
            )));
        }
        std::fs::rename(&partial, out).map_err(|e| io_error(out, "cannot write", e))?;
        sync_file_and_dir(out)?;
        let copy = open_existing(out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        contents(&copy, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// How a restore went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// What the restored store holds.
    pub contents: Contents,
    /// Whether a key (the one given, or the key file beside the restored store) was checked
    /// against the backup.
    pub checked: bool,
}

/// Whether `db` holds something a restore would destroy: any non-empty file.
fn holds_data(db: &Path) -> bool {
    std::fs::metadata(db).is_ok_and(|m| m.len() > 0)
}

/// Restores the SQLite backup `from` as the store `db`: checks the backup (a devext store, its
/// integrity, and, when a key is at hand, `key` or else `db`'s key file, that the key opens it),
/// refuses a `db` that holds data unless `force`, then writes the copy beside `db`, flushes it,
/// removes `db`'s stale write-ahead log and renames the copy into place. Never writes a key.
/// Blocking: call it off the async workers. Stop every service of `db` first.
pub fn restore_sqlite(
    from: &Path,
    db: &Path,
    force: bool,
    key: Option<&SecretKey>,
) -> Result<Restored> {
    let backup = open_existing(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    integrity(&backup, from)?;
    let sealed: Vec<u8> = backup
        .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| {
            r.get(0)
        })
        .map_err(|e| db_error(from, e))?;
    let key_file = SqliteStore::key_file_for(db);
    let at_hand = match key {
        Some(k) => Some((k.clone(), None)),
        None if key_file.exists() => Some((SecretKey::read(&key_file)?, Some(key_file.clone()))),
        None => None,
    };
    if let Some((k, file)) = &at_hand
        && check_opens(k, &sealed).is_err()
    {
        return Err(match file {
            Some(f) => StoreError::Conflict(format!(
                "{} belongs to another store than the backup {}: the restored store would not \
                 start with it; move it away and give the backup's own key (its key file, \
                 {} or --secret-key-file)",
                f.display(),
                from.display(),
                crypto::SECRET_KEY_ENV
            )),
            None => StoreError::WrongKey,
        });
    }
    drop(backup);
    if holds_data(db) && !force {
        return Err(StoreError::Conflict(format!(
            "{} holds a store already: refusing to overwrite it (stop every service using it, \
             then pass --force to replace it)",
            db.display()
        )));
    }
    let partial = partial_beside(db, "restore")?;
    let result = (|| {
        std::fs::copy(from, &partial).map_err(|e| io_error(&partial, "cannot write", e))?;
        sync_file_and_dir(&partial)?;
        // The old store's write-ahead log would be replayed onto the restored file.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = db.as_os_str().to_owned();
            side.push(suffix);
            match std::fs::remove_file(PathBuf::from(&side)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(Path::new(&side), "cannot remove", e)),
            }
        }
        std::fs::rename(&partial, db).map_err(|e| io_error(db, "cannot write", e))?;
        sync_file_and_dir(db)?;
        let restored = open_existing(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        contents(&restored, db)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    Ok(Restored {
        contents: result?,
        checked: at_hand.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ExtensionSettings, Store};

    async fn store_with_secrets(dir: &Path) -> (PathBuf, SecretKey) {
        let db = dir.join("s.db");
        let key = SecretKey::generate().unwrap();
        let s = SqliteStore::open(&db, Some(key.clone())).await.unwrap();
        let org = s.create_org("a").await.unwrap().id;
        let mut secrets = serde_json::Map::new();
        secrets.insert("password".into(), serde_json::json!("hunter2"));
        s.put_extension(
            org,
            &ExtensionSettings {
                plugin: "p".into(),
                enabled: true,
                config: serde_json::Map::new(),
                secrets,
            },
        )
        .await
        .unwrap();
        (db, key)
    }

    #[tokio::test]
    async fn a_restore_checks_the_backup_and_replaces_the_old_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let (db, key) = store_with_secrets(dir.path()).await;
        let backup = dir.path().join("b.db");
        let got = backup_sqlite(&db, &backup).unwrap();
        assert_eq!((got.orgs, got.settings), (1, 1));
        // No partial file is left beside it.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");

        // Not a store: refused, nothing written.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, "not SQLite").unwrap();
        let target = dir.path().join("r.db");
        assert!(restore_sqlite(&junk, &target, false, None).is_err());
        assert!(!target.exists());
        // Another key: refused.
        let other = SecretKey::generate().unwrap();
        let e = restore_sqlite(&backup, &target, false, Some(&other)).unwrap_err();
        assert!(matches!(e, StoreError::WrongKey), "{e:?}");
        assert!(!target.exists());

        // Over a file that holds data, with a stale write-ahead log: only with force, and the
        // log is gone (it would be replayed onto the restored file).
        std::fs::write(&target, "old data").unwrap();
        std::fs::write(dir.path().join("r.db-wal"), "stale").unwrap();
        let e = restore_sqlite(&backup, &target, false, Some(&key)).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        let done = restore_sqlite(&backup, &target, true, Some(&key)).unwrap();
        assert!(done.checked);
        assert_eq!(done.contents.settings, 1);
        assert!(!dir.path().join("r.db-wal").exists());
        let restored = SqliteStore::open(&target, Some(key)).await.unwrap();
        let org = restored.org_by_name("a").await.unwrap().unwrap().id;
        let s = restored.extension(org, "p").await.unwrap().unwrap();
        assert_eq!(s.secrets["password"], "hunter2");
        // Without a key (none given, no key file beside it) it does not open.
        drop(restored);
        let e = SqliteStore::open(&target, None).await.unwrap_err();
        assert!(matches!(e, StoreError::KeyMissing { .. }), "{e:?}");
    }
}
