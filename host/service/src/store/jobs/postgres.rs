//! [`JobStore`] on PostgreSQL: replicas claim items with `SELECT ... FOR UPDATE SKIP LOCKED`
//! (each claims a different one, none waits for another's transaction); leases are in the
//! database's clock (`clock_timestamp()`), so replicas' clocks need not agree.

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{
    CancelRefused, ClaimedItem, ItemOutcome, ItemResult, Job, JobCounts, JobItem, JobState,
    JobStore, NewJob, RATE_WINDOW, job_id, json_of, missing_error, now, time_text,
};
use crate::store::{PgStore, Result};

const JOB_COLUMNS: &str = "seq, id, org_id, plugin, op, kind, input, selection, state, total, \
     created_by, key_id, user_id, created_at, started_at, finished_at, error_kind, error_message";

fn millis(d: Duration) -> f64 {
    d.as_millis() as f64
}

async fn job_of_row(conn: &mut PgConnection, row: &PgRow) -> Result<Job> {
    let id: String = row.get("id");
    let mut counts = JobCounts::default();
    for r in
        sqlx::query("SELECT state, COUNT(*) AS n FROM job_items WHERE job_id = $1 GROUP BY state")
            .bind(&id)
            .fetch_all(&mut *conn)
            .await?
    {
        counts.add(r.get("state"), r.get::<i64, _>("n") as u64)?;
    }
    let since =
        time_text(chrono::Utc::now() - chrono::Duration::from_std(RATE_WINDOW).unwrap_or_default());
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_items WHERE job_id = $1 AND finished_at >= $2 \
         AND state IN ('ok', 'failed', 'unknown')",
    )
    .bind(&id)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    let error = match (
        row.get::<Option<String>, _>("error_kind"),
        row.get::<Option<String>, _>("error_message"),
    ) {
        (Some(k), m) => Some((k, m.unwrap_or_default())),
        _ => None,
    };
    Ok(Job {
        seq: row.get("seq"),
        org_id: row.get("org_id"),
        plugin: row.get("plugin"),
        op: row.get("op"),
        kind: row.get("kind"),
        input: json_of(row.get("input"), "job input")?,
        selection: json_of(row.get("selection"), "job selection")?,
        state: JobState::parse(row.get("state"))?,
        total: row.get::<i64, _>("total") as u64,
        counts,
        recent: recent as u64,
        created_by: row.get("created_by"),
        key_id: row.get("key_id"),
        user_id: row.get("user_id"),
        created_at: row.get("created_at"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        error,
        id,
    })
}

async fn job_by_id(conn: &mut PgConnection, org_id: Option<i64>, id: &str) -> Result<Option<Job>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND ($2::BIGINT IS NULL OR org_id = $2)"
    );
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(org_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(job_of_row(conn, &row).await?))
}

/// Marks the job done if it runs and has no item left to run.
async fn complete_if_done(conn: &mut PgConnection, job_id: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'done', finished_at = $1 WHERE id = $2 \
         AND state IN ('queued', 'running') AND NOT EXISTS (SELECT 1 FROM job_items \
         WHERE job_id = $2 AND state IN ('pending', 'running'))",
    )
    .bind(now())
    .bind(job_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl JobStore for PgStore {
    async fn create_job(&self, job: NewJob<'_>) -> Result<Job> {
        let id = job_id()?;
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, org_id, plugin, op, kind, input, selection, state, total, \
             created_by, key_id, user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10, $11, $12)",
        )
        .bind(&id)
        .bind(job.org_id)
        .bind(job.plugin)
        .bind(job.op)
        .bind(job.kind)
        .bind(job.input.to_string())
        .bind(job.selection.to_string())
        .bind(job.devices.len() as i64)
        .bind(job.created_by)
        .bind(job.key_id)
        .bind(job.user_id)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        // A chunk of devices per statement: their positions with them (`unnest ... WITH
        // ORDINALITY`), only the org's devices inserted.
        let mut missing = Vec::new();
        for (chunk_no, chunk) in job.devices.chunks(1000).enumerate() {
            let base = (chunk_no * 1000) as i64;
            let inserted: Vec<String> = sqlx::query_scalar(
                "INSERT INTO job_items (job_id, pos, device_id, state) \
                 SELECT $1, $2 + s.n - 1, d.id, 'pending' \
                 FROM unnest($3::TEXT[]) WITH ORDINALITY AS s(id, n) \
                 JOIN devices d ON d.id = s.id AND d.org_id = $4 \
                 RETURNING device_id",
            )
            .bind(&id)
            .bind(base)
            .bind(chunk)
            .bind(job.org_id)
            .fetch_all(&mut *tx)
            .await?;
            if inserted.len() < chunk.len() {
                let found: std::collections::HashSet<&str> =
                    inserted.iter().map(String::as_str).collect();
                missing.extend(
                    chunk
                        .iter()
                        .filter(|d| !found.contains(d.as_str()))
                        .cloned(),
                );
            }
        }
        if !missing.is_empty() {
            return Err(missing_error(&missing));
        }
        let created = job_by_id(&mut tx, None, &id).await?;
        tx.commit().await?;
        created.ok_or_else(|| crate::store::StoreError::Database("the new job vanished".into()))
    }

    async fn job(&self, org_id: i64, id: &str) -> Result<Option<Job>> {
        let mut conn = self.pool().acquire().await?;
        job_by_id(&mut conn, Some(org_id), id).await
    }

    async fn jobs(&self, org_id: i64, before: Option<i64>, limit: u32) -> Result<Vec<Job>> {
        let mut conn = self.pool().acquire().await?;
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = $1 AND seq < $2 \
             ORDER BY seq DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            jobs.push(job_of_row(&mut conn, row).await?);
        }
        Ok(jobs)
    }

    async fn job_items(
        &self,
        job_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobItem>> {
        let rows = sqlx::query(
            "SELECT pos, device_id, state, error_kind, error_message, result FROM job_items \
             WHERE job_id = $1 AND pos > $2 ORDER BY pos LIMIT $3",
        )
        .bind(job_id)
        .bind(after.unwrap_or(-1))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let result: Option<String> = r.get("result");
                Ok(JobItem {
                    pos: r.get("pos"),
                    device_id: r.get("device_id"),
                    outcome: ItemOutcome::of_state(r.get("state"))?,
                    error: r.get::<Option<String>, _>("error_kind").map(|k| {
                        (
                            k,
                            r.get::<Option<String>, _>("error_message")
                                .unwrap_or_default(),
                        )
                    }),
                    result: result.map(|t| json_of(&t, "item result")).transpose()?,
                })
            })
            .collect()
    }

    async fn cancel_job(
        &self,
        org_id: i64,
        id: &str,
    ) -> Result<std::result::Result<Job, CancelRefused>> {
        let mut tx = self.pool().begin().await?;
        let cancelled = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1 WHERE id = $2 AND org_id = $3 \
             AND state IN ('queued', 'running')",
        )
        .bind(now())
        .bind(id)
        .bind(org_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if cancelled {
            sqlx::query(
                "UPDATE job_items SET state = 'skipped', error_kind = 'cancelled', \
                 error_message = 'the job was cancelled before this item ran', finished_at = $1 \
                 WHERE job_id = $2 AND state = 'pending'",
            )
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let job = job_by_id(&mut tx, Some(org_id), id).await?;
        tx.commit().await?;
        Ok(match job {
            None => Err(CancelRefused::NotFound),
            Some(job) if !cancelled => Err(CancelRefused::Finished(job.state)),
            Some(job) => Ok(job),
        })
    }

    async fn fail_job(&self, job_id: &str, kind: &str, message: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let failed = sqlx::query(
            "UPDATE jobs SET state = 'failed', finished_at = $1, error_kind = $2, \
             error_message = $3 WHERE id = $4 AND state IN ('queued', 'running')",
        )
        .bind(now())
        .bind(kind)
        .bind(message)
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if failed {
            sqlx::query(
                "UPDATE job_items SET state = 'skipped', error_kind = $1, error_message = $2, \
                 finished_at = $3 WHERE job_id = $4 AND state = 'pending'",
            )
            .bind(kind)
            .bind(message)
            .bind(now())
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_job_item(&self, replica: &str, lease: Duration) -> Result<Option<ClaimedItem>> {
        let mut tx = self.pool().begin().await?;
        let claimed = sqlx::query(
            "WITH next AS (SELECT i.job_id, i.pos FROM job_items i \
                 WHERE i.job_id = (SELECT j.id FROM jobs j \
                     WHERE j.state IN ('queued', 'running') AND EXISTS (SELECT 1 FROM job_items p \
                         WHERE p.job_id = j.id AND p.state = 'pending') \
                     ORDER BY random() LIMIT 1) \
                 AND i.state = 'pending' ORDER BY i.pos LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) \
             UPDATE job_items t SET state = 'running', lease_owner = $1, \
                 lease_until = clock_timestamp() + $2 * interval '1 millisecond', \
                 attempts = t.attempts + 1 \
             FROM next WHERE t.job_id = next.job_id AND t.pos = next.pos \
             RETURNING t.job_id, t.pos, t.device_id, t.attempts",
        )
        .bind(replica)
        .bind(millis(lease))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(item) = claimed else {
            return Ok(None);
        };
        let job_id: String = item.get("job_id");
        sqlx::query(
            "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, $1) \
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(now())
        .bind(&job_id)
        .execute(&mut *tx)
        .await?;
        let job = sqlx::query(
            "SELECT org_id, plugin, op, kind, input, key_id, user_id FROM jobs WHERE id = $1",
        )
        .bind(&job_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(ClaimedItem {
            org_id: job.get("org_id"),
            plugin: job.get("plugin"),
            op: job.get("op"),
            kind: job.get("kind"),
            input: json_of(job.get("input"), "job input")?,
            key_id: job.get("key_id"),
            user_id: job.get("user_id"),
            pos: item.get("pos"),
            device_id: item.get("device_id"),
            attempts: i64::from(item.get::<i32, _>("attempts")),
            job_id,
        }))
    }

    async fn renew_job_leases(&self, replica: &str, lease: Duration) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE job_items SET lease_until = clock_timestamp() + $1 * interval '1 millisecond' \
             WHERE state = 'running' AND lease_owner = $2",
        )
        .bind(millis(lease))
        .bind(replica)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn recover_job_items(&self, all: bool) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE job_items SET state = 'pending' WHERE state = 'running' \
             AND ($1 OR lease_until < clock_timestamp())",
        )
        .bind(all)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn finish_job_item(
        &self,
        job_id: &str,
        pos: i64,
        replica: &str,
        result: &ItemResult,
    ) -> Result<Option<Job>> {
        let mut tx = self.pool().begin().await?;
        let (kind, message) = match &result.error {
            Some((k, m)) => (Some(k.as_str()), Some(m.as_str())),
            None => (None, None),
        };
        let finished = sqlx::query(
            "UPDATE job_items SET state = $1, error_kind = $2, error_message = $3, result = $4, \
             finished_at = $5 WHERE job_id = $6 AND pos = $7 AND state = 'running' \
             AND lease_owner = $8",
        )
        .bind(result.outcome.as_str())
        .bind(kind)
        .bind(message)
        .bind(result.result.as_ref().map(|r| r.to_string()))
        .bind(now())
        .bind(job_id)
        .bind(pos)
        .bind(replica)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        // Two replicas finishing a job's last two items at once: the job row's lock orders
        // them, and the second sees the first's item finished.
        let job = if finished {
            sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            if complete_if_done(&mut tx, job_id).await? {
                job_by_id(&mut tx, None, job_id).await?
            } else {
                None
            }
        } else {
            None
        };
        tx.commit().await?;
        Ok(job)
    }

    async fn prune_jobs_finished_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        batch: u32,
    ) -> Result<u64> {
        let cutoff = time_text(cutoff);
        let batch = i64::from(batch.max(1));
        let mut jobs = 0;
        loop {
            // Items first, a batch at a time; then the jobs left without items.
            let items = sqlx::query(
                "DELETE FROM job_items WHERE (job_id, pos) IN (SELECT i.job_id, i.pos FROM jobs j \
                 JOIN job_items i ON i.job_id = j.id \
                 WHERE j.state IN ('done', 'cancelled', 'failed') AND j.finished_at < $1 \
                 LIMIT $2)",
            )
            .bind(&cutoff)
            .bind(batch)
            .execute(self.pool())
            .await?
            .rows_affected();
            if items > 0 {
                continue;
            }
            let deleted = sqlx::query(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs \
                 WHERE state IN ('done', 'cancelled', 'failed') AND finished_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM job_items WHERE job_id = jobs.id) LIMIT $2)",
            )
            .bind(&cutoff)
            .bind(batch)
            .execute(self.pool())
            .await?
            .rows_affected();
            jobs += deleted;
            if deleted == 0 {
                return Ok(jobs);
            }
        }
    }
}
