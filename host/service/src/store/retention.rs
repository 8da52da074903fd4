//! Retention: what the store stops keeping after a while. Audit entries, idempotency records
//! and finished bulk jobs (with their items) older than their retention period, and sessions
//! that expired (idle or absolute limit), are
//! deleted in the background ([`spawn`]) in small batches, each batch one statement (its own short
//! transaction), oldest first, with a pause between batches so that the service's own writes
//! are never held up for long. Several PostgreSQL replicas may prune at once: each batch skips
//! rows another one has locked.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::jobs::JobStore;
use super::{AnyStore, PgStore, Result, SessionLimits, SqliteStore};

/// A time as the stores write it (RFC 3339, UTC, milliseconds: text order is time order).
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn ago(period: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(period)
        .ok()
        .and_then(|p| Utc::now().checked_sub_signed(p))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Deleting old rows, one batch at a time. Each method deletes at most `batch` rows, oldest
/// first, in one statement, and says how many it deleted (fewer than `batch`: nothing is left).
pub trait Retention: Send + Sync + 'static {
    /// Audit entries made before `before`.
    fn prune_audit_before(
        &self,
        before: DateTime<Utc>,
        batch: u32,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// Idempotency records created before `before` (on PostgreSQL, not one whose replica still
    /// renews its claim).
    fn prune_idempotency_before(
        &self,
        before: DateTime<Utc>,
        batch: u32,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// Sessions unused since before `idle_before` or begun before `absolute_before`: expired.
    fn prune_sessions_before(
        &self,
        idle_before: DateTime<Utc>,
        absolute_before: DateTime<Utc>,
        batch: u32,
    ) -> impl Future<Output = Result<u64>> + Send;
}

impl Retention for SqliteStore {
    async fn prune_audit_before(&self, before: DateTime<Utc>, batch: u32) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM audit WHERE id IN \
             (SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
        )
        .bind(time_text(before))
        .bind(i64::from(batch))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn prune_idempotency_before(&self, before: DateTime<Utc>, batch: u32) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM idempotency WHERE rowid IN \
             (SELECT rowid FROM idempotency WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
        .bind(time_text(before))
        .bind(i64::from(batch))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn prune_sessions_before(
        &self,
        idle_before: DateTime<Utc>,
        absolute_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE hash IN \
             (SELECT hash FROM sessions WHERE last_seen_at < ? OR created_at < ? LIMIT ?)",
        )
        .bind(time_text(idle_before))
        .bind(time_text(absolute_before))
        .bind(i64::from(batch))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

impl Retention for PgStore {
    async fn prune_audit_before(&self, before: DateTime<Utc>, batch: u32) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 \
             ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(time_text(before))
        .bind(i64::from(batch))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn prune_idempotency_before(&self, before: DateTime<Utc>, batch: u32) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM idempotency WHERE (org_id, key) IN \
             (SELECT org_id, key FROM idempotency WHERE created_at < $1 \
              AND (status <> 0 OR claim_until IS NULL OR claim_until < clock_timestamp()) \
              ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(time_text(before))
        .bind(i64::from(batch))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn prune_sessions_before(
        &self,
        idle_before: DateTime<Utc>,
        absolute_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE hash IN (SELECT hash FROM sessions \
             WHERE last_seen_at < $1 OR created_at < $2 LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .bind(time_text(idle_before))
        .bind(time_text(absolute_before))
        .bind(i64::from(batch))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Retention for AnyStore {
    async fn prune_audit_before(&self, before: DateTime<Utc>, batch: u32) -> Result<u64> {
        each!(self, s => s.prune_audit_before(before, batch).await)
    }
    async fn prune_idempotency_before(&self, before: DateTime<Utc>, batch: u32) -> Result<u64> {
        each!(self, s => s.prune_idempotency_before(before, batch).await)
    }
    async fn prune_sessions_before(
        &self,
        idle_before: DateTime<Utc>,
        absolute_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64> {
        each!(self, s => s.prune_sessions_before(idle_before, absolute_before, batch).await)
    }
}

/// How long what is kept; `None`: kept for ever.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    /// Audit entries: 90 days by default.
    pub audit: Option<Duration>,
    /// Idempotency records (a repeated key within it gets the first answer): 7 days by default.
    pub idempotency: Option<Duration>,
    /// Sessions are deleted once expired under these limits (the service's).
    pub sessions: Option<SessionLimits>,
    /// Bulk jobs that ended this long ago, with their items: 30 days by default.
    pub jobs: Option<Duration>,
    /// Rows per batch (500).
    pub batch: u32,
    /// Pause between two batches (20 ms).
    pub pause: Duration,
    /// Time between two runs (10 minutes); the first run starts [`FIRST_RUN_AFTER`] after
    /// start-up (or `every`, if shorter).
    pub every: Duration,
}

/// When the first run starts after start-up: soon, but not while the service starts.
pub const FIRST_RUN_AFTER: Duration = Duration::from_secs(5);

/// The default audit retention, days.
pub const DEFAULT_AUDIT_DAYS: u64 = 90;
/// The default idempotency retention, hours.
pub const DEFAULT_IDEMPOTENCY_HOURS: u64 = 7 * 24;
/// The default retention of finished bulk jobs, days.
pub const DEFAULT_JOB_DAYS: u64 = 30;

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            audit: Some(Duration::from_secs(DEFAULT_AUDIT_DAYS * 86_400)),
            idempotency: Some(Duration::from_secs(DEFAULT_IDEMPOTENCY_HOURS * 3_600)),
            sessions: Some(SessionLimits::default()),
            jobs: Some(Duration::from_secs(DEFAULT_JOB_DAYS * 86_400)),
            batch: 500,
            pause: Duration::from_millis(20),
            every: Duration::from_secs(600),
        }
    }
}

/// What one run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Audit entries.
    pub audit: u64,
    /// Idempotency records.
    pub idempotency: u64,
    /// Expired sessions.
    pub sessions: u64,
    /// Finished bulk jobs (each with its items).
    pub jobs: u64,
}

/// Runs `step` (one batch) until it deletes fewer than `batch` rows; the total.
async fn drain<F, Fut>(batch: u32, pause: Duration, mut step: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = step().await?;
        total += n;
        if n < u64::from(batch) {
            return Ok(total);
        }
        tokio::time::sleep(pause).await;
    }
}

/// One run of the policy: everything older than its periods is deleted, batch by batch.
pub async fn prune<S: Retention + JobStore>(store: &S, policy: &RetentionPolicy) -> Result<Pruned> {
    let batch = policy.batch.max(1);
    let mut pruned = Pruned::default();
    if let Some(period) = policy.audit {
        let before = ago(period);
        pruned.audit = drain(batch, policy.pause, || {
            store.prune_audit_before(before, batch)
        })
        .await?;
    }
    if let Some(period) = policy.idempotency {
        let before = ago(period);
        pruned.idempotency = drain(batch, policy.pause, || {
            store.prune_idempotency_before(before, batch)
        })
        .await?;
    }
    if let Some(limits) = policy.sessions {
        let (idle, absolute) = (ago(limits.idle), ago(limits.absolute));
        pruned.sessions = drain(batch, policy.pause, || {
            store.prune_sessions_before(idle, absolute, batch)
        })
        .await?;
    }
    if let Some(period) = policy.jobs {
        // Batched by the store itself: at most `batch` rows per transaction.
        pruned.jobs = store.prune_jobs_finished_before(ago(period), batch).await?;
    }
    Ok(pruned)
}

/// Runs the policy in the background every `policy.every`, until the returned task is
/// aborted (or the runtime ends). A failed run is logged and tried again next time.
pub fn spawn<S: Retention + JobStore + Clone>(
    store: S,
    policy: RetentionPolicy,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let first = policy.every.min(FIRST_RUN_AFTER);
        tokio::time::sleep(first).await;
        loop {
            match prune(&store, &policy).await {
                Ok(p) if p != Pruned::default() => tracing::info!(
                    audit = p.audit,
                    idempotency = p.idempotency,
                    sessions = p.sessions,
                    jobs = p.jobs,
                    "retention: pruned old rows"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention: pruning failed; trying again later")
                }
            }
            tokio::time::sleep(policy.every).await;
        }
    })
}
