//! Point reads of the SQLite store run inline on the calling task.
//!
//! sqlx gives every SQLite connection a thread of its own, so each query is two thread hand-offs
//! (to the connection's thread and back). On a busy machine each hand-off waits for the OS to
//! schedule a thread, which is what made the device read the longest part of an operation's
//! tail (1.8 ms at p90, 3.3 ms at p99 at 64 concurrent operations on 2 cores, against ~20 µs
//! of actual work). The reads on every operation's path go through here instead: a small pool
//! of read-only connections used directly on the async worker.
//!
//! A read here never waits: the connections have no busy timeout, and when SQLite answers
//! "busy" or "locked" (rare in WAL mode: a reader only meets it while the WAL is being
//! recovered or reset) the caller falls back to the pooled, asynchronous path. Writes never
//! come here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::sqlite::{PAGE_CACHE_KIB, device_from_columns};
use super::{Device, StoreError};

/// Connections kept for reuse (more may exist briefly while many tasks read at once).
const KEPT_CONNECTIONS: usize = 4;

/// What a read inline gave.
pub(super) enum Inline<T> {
    /// The answer.
    Done(T),
    /// SQLite was busy: ask the asynchronous path instead.
    Busy,
}

/// Read-only connections to the store's file.
pub(super) struct InlineReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for InlineReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineReads")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl InlineReads {
    pub(super) fn new(path: &Path) -> Self {
        InlineReads {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // rusqlite waits up to 5 s on a lock by default; here a lock means "ask the pool".
        conn.busy_timeout(std::time::Duration::ZERO)?;
        conn.pragma_update(None, "cache_size", format!("-{PAGE_CACHE_KIB}"))?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (opening one if none is idle).
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Inline<T>, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => match self.connect() {
                Ok(conn) => conn,
                Err(e) if is_busy(&e) => return Ok(Inline::Busy),
                Err(e) => return Err(internal(e)),
            },
        };
        let result = read(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < KEPT_CONNECTIONS
        {
            idle.push(conn);
        }
        match result {
            Ok(v) => Ok(Inline::Done(v)),
            Err(e) if is_busy(&e) => Ok(Inline::Busy),
            Err(e) => Err(internal(e)),
        }
    }

    /// The device `id` of `org_id`.
    pub(super) fn device(
        &self,
        org_id: i64,
        id: &str,
    ) -> Result<Inline<Option<Device>>, StoreError> {
        let row = self.with(|conn| {
            conn.prepare_cached(
                "SELECT id, name, type, extensions, created_at, updated_at FROM devices \
                 WHERE org_id = ? AND id = ?",
            )?
            .query_row((org_id, id), |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .optional()
        })?;
        let Inline::Done(row) = row else {
            return Ok(Inline::Busy);
        };
        let Some((id, name, device_type, extensions, created_at, updated_at)) = row else {
            return Ok(Inline::Done(None));
        };
        device_from_columns(id, name, device_type, &extensions, created_at, updated_at)
            .map(|d| Inline::Done(Some(d)))
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn internal(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}
