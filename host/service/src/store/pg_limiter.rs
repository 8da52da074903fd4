//! [`PgLimiter`]: the limiter capability's backend shared by every replica on one PostgreSQL
//! (handed to the runtime as its [`Limiter`]).
//!
//! Per upstream account, one row advanced atomically on the database's clock
//! (`devext_limiter_acquire` in the migrations): a GCRA spacing starts `window / rate` apart
//! (`window` = 1 s + the host's margin, so no rolling second holds more than `rate` starts), a
//! back-off, and the mark of an interactive caller waiting (bulk callers step aside). Concurrency
//! is a lease row per permit, renewed by its replica every [`RENEW_EVERY`]: a replica that dies
//! stops renewing, and its slots free themselves within [`LEASE`].
//!
//! A caller that cannot have a permit yet looks again after the hint the database gives (the
//! back-off's or the rate's end, or a few milliseconds for a slot), until its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use devext_host::limiter::{Limiter, LimiterFuture, MAX_BACKOFF, PermitAsk, refusal};
use devext_host::{PluginError, Priority};
use sqlx::PgPool;
use sqlx::Row as _;
use tokio::time::Instant;

/// How long a permit's lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(3);
/// A start later than planned by more than this pushes the account's next starts back.
const LATE: Duration = Duration::from_millis(20);
/// How often a replica renews the leases it holds.
pub const RENEW_EVERY: Duration = Duration::from_millis(750);

/// The limiter over the store's database.
#[derive(Debug, Clone)]
pub struct PgLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    owner: String,
    held: AtomicUsize,
}

impl PgLimiter {
    /// A limiter over `pool`, whose leases are `owner`'s (this replica). Starts the renewal of
    /// this replica's leases in the background.
    pub fn new(pool: PgPool, owner: &str) -> PgLimiter {
        let limiter = PgLimiter {
            inner: Arc::new(Inner {
                pool,
                owner: owner.to_owned(),
                held: AtomicUsize::new(0),
            }),
        };
        let weak = Arc::downgrade(&limiter.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.held.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let renewed = sqlx::query(
                    "UPDATE limiter_leases \
                     SET expires_at = clock_timestamp() + $1 * interval '1 millisecond' \
                     WHERE owner = $2",
                )
                .bind(LEASE.as_millis() as f64)
                .bind(&inner.owner)
                .execute(&inner.pool)
                .await;
                if let Err(e) = renewed {
                    tracing::warn!(error = %e, "cannot renew this replica's limiter leases");
                }
            }
        });
        limiter
    }

    async fn attempt(&self, ask: &PermitAsk, max_wait: Duration) -> Result<Attempt, PluginError> {
        let row = sqlx::query(
            "SELECT permit, delay_ms, retry_ms, reason \
             FROM devext_limiter_acquire($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&ask.account_key)
        .bind(&self.inner.owner)
        .bind(i32::try_from(ask.rate_per_second).unwrap_or(i32::MAX))
        .bind(i32::try_from(ask.max_in_flight).unwrap_or(i32::MAX))
        .bind(i32::try_from(ask.window().as_millis()).unwrap_or(i32::MAX))
        .bind(ask.priority == Priority::Interactive)
        .bind(i32::try_from(LEASE.as_millis()).unwrap_or(i32::MAX))
        .bind(max_wait.as_secs_f64() * 1000.0)
        .fetch_one(&self.inner.pool)
        .await
        .map_err(|e| PluginError::internal(format!("the shared limiter failed: {e}")))?;
        let ms = |v: f64| Duration::from_secs_f64((v.max(0.0)) / 1000.0);
        Ok(match row.get::<Option<i64>, _>("permit") {
            Some(id) => Attempt::Granted(id, ms(row.get("delay_ms"))),
            None => Attempt::Wait(row.get("reason"), ms(row.get("retry_ms"))),
        })
    }

    fn push_back(&self, account_key: &str, late: Duration) {
        let inner = Arc::clone(&self.inner);
        let key = account_key.to_owned();
        tokio::spawn(async move {
            let done = sqlx::query(
                "UPDATE limiter_accounts SET tat = tat + $2 * interval '1 millisecond' \
                 WHERE key = $1",
            )
            .bind(&key)
            .bind(late.as_secs_f64() * 1000.0)
            .execute(&inner.pool)
            .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "cannot record a late start in the shared limiter");
            }
        });
    }

    fn release_id(&self, id: i64) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let done = sqlx::query("DELETE FROM limiter_leases WHERE id = $1")
                .bind(id)
                .execute(&inner.pool)
                .await;
            inner.held.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = done {
                // The lease ends by itself when it is no longer renewed... but this replica
                // renews all of its leases: keep trying once more later.
                tracing::warn!(error = %e, "cannot release a limiter lease");
            }
        });
    }

    async fn acquire_shared(&self, ask: PermitAsk) -> Result<String, PluginError> {
        loop {
            let asked = Instant::now();
            let max_wait = ask.wait_until.saturating_duration_since(asked);
            match self.attempt(&ask, max_wait).await? {
                Attempt::Granted(id, delay) => {
                    self.inner.held.fetch_add(1, Ordering::Relaxed);
                    let mut guard = Unreleased {
                        limiter: self,
                        id: Some(id),
                    };
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    guard.id = None;
                    // Started later than planned (a slow answer, a busy machine): the next
                    // starts keep their spacing from this one's real start, so that lateness
                    // never squeezes more starts into a rolling second.
                    let late = asked.elapsed().saturating_sub(delay);
                    if late > LATE {
                        self.push_back(&ask.account_key, late);
                    }
                    return Ok(id.to_string());
                }
                Attempt::Wait(reason, retry) => {
                    let now = Instant::now();
                    if reason == "rate" || (reason == "backoff" && now + retry > ask.wait_until) {
                        return Err(refusal(&reason, retry, &ask));
                    }
                    if now + retry.min(Duration::from_millis(50)) >= ask.wait_until {
                        tokio::time::sleep_until(ask.wait_until).await;
                        return Err(refusal(&reason, retry, &ask));
                    }
                    // A slot: look again soon; a back-off: at its end.
                    let pause = if reason == "backoff" {
                        retry
                    } else {
                        retry.min(Duration::from_millis(50))
                    };
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

enum Attempt {
    Granted(i64, Duration),
    Wait(String, Duration),
}

/// Releases a granted lease whose caller went away before its start.
struct Unreleased<'a> {
    limiter: &'a PgLimiter,
    id: Option<i64>,
}

impl Drop for Unreleased<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.limiter.release_id(id);
        }
    }
}

impl Limiter for PgLimiter {
    fn acquire(&self, ask: PermitAsk) -> LimiterFuture<'_, Result<String, PluginError>> {
        Box::pin(self.acquire_shared(ask))
    }

    fn release(&self, permit: &str) {
        if let Ok(id) = permit.parse::<i64>() {
            self.release_id(id);
        }
    }

    fn started_late(&self, account_key: &str, late: Duration) {
        self.push_back(account_key, late);
    }

    fn back_off(&self, account_key: &str, pause: Duration) {
        let inner = Arc::clone(&self.inner);
        let key = account_key.to_owned();
        let ms = pause.min(MAX_BACKOFF).as_millis() as f64;
        tokio::spawn(async move {
            let done = sqlx::query(
                "INSERT INTO limiter_accounts (key, paused_until) \
                 VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond') \
                 ON CONFLICT (key) DO UPDATE SET paused_until = \
                 GREATEST(limiter_accounts.paused_until, excluded.paused_until)",
            )
            .bind(&key)
            .bind(ms)
            .execute(&inner.pool)
            .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "cannot record an upstream back-off");
            }
        });
    }
}
