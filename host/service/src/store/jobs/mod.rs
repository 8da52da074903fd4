//! Bulk jobs in the store: [`JobStore`], implemented by both backends (`sqlite.rs`,
//! `postgres.rs`) and dispatched by [`AnyStore`].
//!
//! A job is one operation of one plugin with one input over a set of devices, snapshotted at
//! creation into its items (one per device, in selection order). Items are claimed by the
//! runners of every replica ([`JobStore::claim_job_item`]) with a lease naming the replica,
//! renewed while the item runs; an item whose lease lapsed (its replica died) is handed out
//! again by [`JobStore::recover_job_items`] — the runner then decides, from the item's
//! idempotency record, whether it may run (a view, or an action that never reached the
//! upstream) or is reported `unknown` (an action that was in flight).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{AnyStore, Result, StoreError};

mod postgres;
mod sqlite;

/// A time as the store writes it: RFC 3339, UTC, milliseconds (text order is time order).
pub(crate) fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn now() -> String {
    time_text(chrono::Utc::now())
}

/// How far back the rate of a job is measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(30);

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Created, no item claimed yet.
    Queued,
    /// Items are being run.
    Running,
    /// Every item has an outcome (some may have failed).
    Done,
    /// Cancelled: items in flight finished, the rest were skipped.
    Cancelled,
    /// The job itself could not run (e.g. its plugin is no longer loaded).
    Failed,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    /// Whether the job has ended (nothing more runs).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Cancelled | JobState::Failed
        )
    }

    fn parse(s: &str) -> Result<JobState> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "cancelled" => JobState::Cancelled,
            "failed" => JobState::Failed,
            other => return Err(StoreError::Corrupt(format!("unknown job state {other:?}"))),
        })
    }
}

/// The outcome of one item (what the results list shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemOutcome {
    /// The operation succeeded; its output is the item's result.
    Ok,
    /// The operation failed (error kind and message).
    Failed,
    /// Not run: the job was cancelled or failed first.
    Skipped,
    /// An action interrupted in flight: it may or may not have been applied (never retried).
    Unknown,
    /// Not run yet (or running).
    Pending,
}

impl ItemOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemOutcome::Ok => "ok",
            ItemOutcome::Failed => "failed",
            ItemOutcome::Skipped => "skipped",
            ItemOutcome::Unknown => "unknown",
            ItemOutcome::Pending => "pending",
        }
    }

    /// The outcome of a stored item state (`running` reads as pending).
    fn of_state(s: &str) -> Result<ItemOutcome> {
        Ok(match s {
            "ok" => ItemOutcome::Ok,
            "failed" => ItemOutcome::Failed,
            "skipped" => ItemOutcome::Skipped,
            "unknown" => ItemOutcome::Unknown,
            "pending" | "running" => ItemOutcome::Pending,
            other => return Err(StoreError::Corrupt(format!("unknown item state {other:?}"))),
        })
    }
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// The org.
    pub org_id: i64,
    /// The plugin.
    pub plugin: &'a str,
    /// The operation.
    pub op: &'a str,
    /// `view` or `action`.
    pub kind: &'a str,
    /// The operation's input.
    pub input: &'a Value,
    /// The selection as the caller gave it.
    pub selection: &'a Value,
    /// The devices, in selection order (no repeats).
    pub devices: &'a [String],
    /// `key:<id>` or `user:<id>`.
    pub created_by: &'a str,
    /// The key that created it (for the audit of its items).
    pub key_id: Option<&'a str>,
    /// The user that created it.
    pub user_id: Option<&'a str>,
}

/// Item counts of a job, by outcome (`pending` includes items in flight).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// Succeeded.
    pub done: u64,
    /// Failed.
    pub failed: u64,
    /// Skipped.
    pub skipped: u64,
    /// Outcome unknown.
    pub unknown: u64,
    /// Not finished (in flight included).
    pub pending: u64,
    /// Of the pending, in flight now.
    pub running: u64,
}

impl JobCounts {
    fn add(&mut self, state: &str, n: u64) -> Result<()> {
        match ItemOutcome::of_state(state)? {
            ItemOutcome::Ok => self.done += n,
            ItemOutcome::Failed => self.failed += n,
            ItemOutcome::Skipped => self.skipped += n,
            ItemOutcome::Unknown => self.unknown += n,
            ItemOutcome::Pending => self.pending += n,
        }
        if state == "running" {
            self.running += n;
        }
        Ok(())
    }

    /// Items with an outcome that ran (ok, failed, unknown).
    pub fn ran(&self) -> u64 {
        self.done + self.failed + self.unknown
    }
}

/// A job as stored, with its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `job_...`.
    pub id: String,
    /// Its org.
    pub org_id: i64,
    /// Listing order (the cursor of listings).
    pub seq: i64,
    /// The plugin.
    pub plugin: String,
    /// The operation.
    pub op: String,
    /// `view` or `action`.
    pub kind: String,
    /// The input.
    pub input: Value,
    /// The selection as given.
    pub selection: Value,
    /// Its state.
    pub state: JobState,
    /// Items.
    pub total: u64,
    /// Items by outcome.
    pub counts: JobCounts,
    /// Items that finished within [`RATE_WINDOW`] before it was read.
    pub recent: u64,
    /// `key:<id>` or `user:<id>`.
    pub created_by: String,
    /// The creating key.
    pub key_id: Option<String>,
    /// The creating user.
    pub user_id: Option<String>,
    /// Creation.
    pub created_at: String,
    /// First item claimed.
    pub started_at: Option<String>,
    /// Ended.
    pub finished_at: Option<String>,
    /// Why it failed (state `failed`): kind and message.
    pub error: Option<(String, String)>,
}

impl Job {
    /// Items finished per second: over the last [`RATE_WINDOW`] while it runs, over its whole
    /// run once it ended; `None` before anything finished.
    pub fn rate_per_s(&self, now: chrono::DateTime<chrono::Utc>) -> Option<f64> {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc())
        };
        let started = parse(&self.started_at)?;
        if self.state.is_finished() {
            let end = parse(&self.finished_at).unwrap_or(now);
            let secs = (end - started).as_seconds_f64();
            let ran = self.counts.ran();
            return (ran > 0 && secs > 0.0).then(|| ran as f64 / secs);
        }
        let window = (now - started)
            .as_seconds_f64()
            .min(RATE_WINDOW.as_secs_f64());
        (self.recent > 0 && window > 0.0).then(|| self.recent as f64 / window)
    }

    /// Seconds left at the current rate, while it runs.
    pub fn eta_s(&self, now: chrono::DateTime<chrono::Utc>) -> Option<f64> {
        if self.state.is_finished() {
            return None;
        }
        if self.counts.pending == 0 {
            return Some(0.0);
        }
        self.rate_per_s(now)
            .filter(|r| *r > 0.0)
            .map(|r| self.counts.pending as f64 / r)
    }
}

/// One item's outcome, as the results list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobItem {
    /// Place in the selection.
    pub pos: i64,
    /// The device id.
    pub device_id: String,
    /// Its outcome.
    pub outcome: ItemOutcome,
    /// Error kind and message (failed, unknown, skipped).
    pub error: Option<(String, String)>,
    /// The operation's output (ok).
    pub result: Option<Value>,
}

/// An item a runner claimed, with what it needs of its job.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedItem {
    /// The job.
    pub job_id: String,
    /// The org.
    pub org_id: i64,
    /// The plugin.
    pub plugin: String,
    /// The operation.
    pub op: String,
    /// `view` or `action`.
    pub kind: String,
    /// The input.
    pub input: Value,
    /// The creating key.
    pub key_id: Option<String>,
    /// The creating user.
    pub user_id: Option<String>,
    /// Place in the selection.
    pub pos: i64,
    /// The device.
    pub device_id: String,
    /// Claims of this item so far, this one included (more than 1: it was recovered).
    pub attempts: i64,
}

/// What an item ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    /// `Ok`, `Failed` or `Unknown`.
    pub outcome: ItemOutcome,
    /// Error kind and message.
    pub error: Option<(String, String)>,
    /// Output.
    pub result: Option<Value>,
}

/// Why cancelling a job did nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelRefused {
    /// No such job in the org.
    NotFound,
    /// It had ended already (its state).
    Finished(JobState),
}

/// Bulk jobs and their items.
pub trait JobStore: Send + Sync + 'static {
    /// Whether this store has only one process running jobs (an SQLite file): every item in
    /// flight when it starts was left by a process that stopped.
    fn exclusive(&self) -> bool {
        false
    }
    /// Creates a job and its items (one transaction). [`StoreError::NotFound`] naming the
    /// devices that are not the org's (nothing is created).
    fn create_job(&self, job: NewJob<'_>) -> impl Future<Output = Result<Job>> + Send;
    /// A job of the org, with its progress.
    fn job(&self, org_id: i64, id: &str) -> impl Future<Output = Result<Option<Job>>> + Send;
    /// The org's jobs, newest first, before the `seq` `before`.
    fn jobs(
        &self,
        org_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Job>>> + Send;
    /// A page of a job's items in selection order, after position `after`.
    fn job_items(
        &self,
        job_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<JobItem>>> + Send;
    /// Cancels a queued or running job: its pending items become skipped (items in flight
    /// finish); the job as it is now, or why nothing was done.
    fn cancel_job(
        &self,
        org_id: i64,
        id: &str,
    ) -> impl Future<Output = Result<std::result::Result<Job, CancelRefused>>> + Send;
    /// Marks a job failed (it cannot run): its pending items become skipped.
    fn fail_job(
        &self,
        job_id: &str,
        kind: &str,
        message: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Claims for `replica` the next pending item (in selection order) of a running or queued
    /// job picked at random (jobs running at once share the runners, whatever their size), in
    /// flight until `lease` from now (renewed by [`JobStore::renew_job_leases`]); marks its job
    /// running. `None` when there is nothing to do.
    fn claim_job_item(
        &self,
        replica: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<ClaimedItem>>> + Send;
    /// Extends the leases of `replica`'s items in flight; how many.
    fn renew_job_leases(
        &self,
        replica: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// Hands out again the items in flight whose lease lapsed (their replica died), or, with
    /// `all`, every item in flight (at the start of the only process on an SQLite store); how
    /// many.
    fn recover_job_items(&self, all: bool) -> impl Future<Output = Result<u64>> + Send;
    /// Records the outcome of an item `replica` holds; when it was the job's last, the job is
    /// done and returned. `Ok(None)` too when the item was not `replica`'s any more.
    fn finish_job_item(
        &self,
        job_id: &str,
        pos: i64,
        replica: &str,
        result: &ItemResult,
    ) -> impl Future<Output = Result<Option<Job>>> + Send;
    /// Deletes the jobs that ended before `cutoff` and their items, at most `batch` rows per
    /// transaction (so that a large job never holds the store long); how many jobs.
    fn prune_jobs_finished_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        batch: u32,
    ) -> impl Future<Output = Result<u64>> + Send;
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl JobStore for AnyStore {
    fn exclusive(&self) -> bool {
        each!(self, s => s.exclusive())
    }
    async fn create_job(&self, job: NewJob<'_>) -> Result<Job> {
        each!(self, s => s.create_job(job).await)
    }
    async fn job(&self, org_id: i64, id: &str) -> Result<Option<Job>> {
        each!(self, s => s.job(org_id, id).await)
    }
    async fn jobs(&self, org_id: i64, before: Option<i64>, limit: u32) -> Result<Vec<Job>> {
        each!(self, s => s.jobs(org_id, before, limit).await)
    }
    async fn job_items(
        &self,
        job_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobItem>> {
        each!(self, s => s.job_items(job_id, after, limit).await)
    }
    async fn cancel_job(
        &self,
        org_id: i64,
        id: &str,
    ) -> Result<std::result::Result<Job, CancelRefused>> {
        each!(self, s => s.cancel_job(org_id, id).await)
    }
    async fn fail_job(&self, job_id: &str, kind: &str, message: &str) -> Result<()> {
        each!(self, s => s.fail_job(job_id, kind, message).await)
    }
    async fn claim_job_item(&self, replica: &str, lease: Duration) -> Result<Option<ClaimedItem>> {
        each!(self, s => s.claim_job_item(replica, lease).await)
    }
    async fn renew_job_leases(&self, replica: &str, lease: Duration) -> Result<u64> {
        each!(self, s => s.renew_job_leases(replica, lease).await)
    }
    async fn recover_job_items(&self, all: bool) -> Result<u64> {
        each!(self, s => s.recover_job_items(all).await)
    }
    async fn finish_job_item(
        &self,
        job_id: &str,
        pos: i64,
        replica: &str,
        result: &ItemResult,
    ) -> Result<Option<Job>> {
        each!(self, s => s.finish_job_item(job_id, pos, replica, result).await)
    }
    async fn prune_jobs_finished_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        batch: u32,
    ) -> Result<u64> {
        each!(self, s => s.prune_jobs_finished_before(cutoff, batch).await)
    }
}

/// A JSON document stored as text.
fn json_of(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored {what}: {e}")))
}

/// A new job id.
fn job_id() -> Result<String> {
    Ok(format!(
        "job_{}",
        crate::crypto::hex(&crate::crypto::random_bytes::<8>()?)
    ))
}

/// The ids of `devices` not found (by `exists`), for the error of a creation.
fn missing_error(missing: &[String]) -> StoreError {
    let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
    let more = if missing.len() > shown.len() {
        format!(" (and {} more)", missing.len() - shown.len())
    } else {
        String::new()
    };
    StoreError::NotFound(format!(
        "{} of the selected devices are not devices of this organisation: {}{more}",
        missing.len(),
        shown.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState, started: &str, finished: Option<&str>) -> Job {
        Job {
            id: "job_1".into(),
            org_id: 1,
            seq: 1,
            plugin: "p".into(),
            op: "o".into(),
            kind: "action".into(),
            input: Value::Null,
            selection: Value::Null,
            state,
            total: 10,
            counts: JobCounts {
                done: 4,
                pending: 6,
                ..Default::default()
            },
            recent: 4,
            created_by: "key:k".into(),
            key_id: None,
            user_id: None,
            created_at: started.into(),
            started_at: Some(started.into()),
            finished_at: finished.map(str::to_owned),
            error: None,
        }
    }

    #[test]
    fn the_rate_is_recent_items_over_the_window_and_the_eta_what_is_left_at_that_rate() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .to_utc();
        // Started 2 s ago: 4 items in 2 s.
        let j = job(JobState::Running, "2026-01-01T00:00:58Z", None);
        assert_eq!(j.rate_per_s(now), Some(2.0));
        assert_eq!(j.eta_s(now), Some(3.0));
        // Started a minute ago: the window is 30 s.
        let j = job(JobState::Running, "2026-01-01T00:00:00Z", None);
        let rate = j.rate_per_s(now).unwrap();
        assert!((rate - 4.0 / 30.0).abs() < 1e-9, "{rate}");
        // Ended: over its run, no time left.
        let j = job(
            JobState::Cancelled,
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T00:00:08Z"),
        );
        assert_eq!(j.rate_per_s(now), Some(0.5));
        assert_eq!(j.eta_s(now), None);
    }
}
