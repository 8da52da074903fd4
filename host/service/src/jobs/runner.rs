//! The runner of bulk jobs: workers in every replica that claim items from the store and run
//! them through the runtime at [`Priority::Bulk`] (the account's shared limiter serves
//! interactive calls first, so the dashboard keeps its share while a job runs).
//!
//! Durable, and never applying an action twice:
//! - an item is claimed with a lease naming this replica ([`JobStore::claim_job_item`]), marked
//!   in flight (`running`) before anything is called, and its lease renewed while it runs;
//! - an action item first claims its idempotency record (key `job:<job>:<device>`) and records
//!   its outcome there before the item's; so when an item in flight is handed out again (its
//!   replica died: the lease lapsed; on SQLite, at the start of the next process), the record
//!   says what happened: none (the call was never made: it runs now), a recorded outcome (that
//!   outcome, not run again), or claimed without an outcome (the call was in flight: the item is
//!   reported `unknown`, never retried). A view item simply runs again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use devext_host::CallRequest;
use devext_plugin_api::{ErrorKind, Priority};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::api::state::App;
use crate::store::jobs::{ClaimedItem, ItemOutcome, ItemResult};
use crate::store::{IdempotencyClaim, NewAudit, Store};

/// Wakes idle workers of this process when a job is created.
static WAKE: Notify = Notify::const_new();

/// Wakes this process's idle workers (a job was created).
pub fn wake() {
    WAKE.notify_waiters();
}

/// How the runner works.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Items run at once by this process (the limiter decides how many reach the upstream).
    pub workers: usize,
    /// How long an item in flight stays this replica's without renewal.
    pub lease: Duration,
    /// How often an idle process looks for work another replica created (one worker looks;
    /// the others wait until it, or a new job, wakes them).
    pub idle_poll: Duration,
    /// How many times an item refused for the rate (never sent) is tried before it fails.
    pub rate_limited_tries: u32,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            workers: 4,
            lease: Duration::from_secs(6),
            idle_poll: Duration::from_secs(1),
            rate_limited_tries: 20,
        }
    }
}

/// The running workers of this process; [`Runner::stop`] lets the items in flight finish.
/// Dropped without `stop`, the workers are aborted (items in flight stay claimed until their
/// lease lapses, as if the process had died).
pub struct Runner {
    replica: Arc<str>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    maintenance: JoinHandle<()>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("replica", &self.replica)
            .finish()
    }
}

/// Starts the runner of `app` with the default [`RunnerConfig`].
pub fn start<S: Store>(app: &Arc<App<S>>) -> Runner {
    start_with(app, RunnerConfig::default())
}

/// Starts the runner of `app`.
pub fn start_with<S: Store>(app: &Arc<App<S>>, config: RunnerConfig) -> Runner {
    let replica: Arc<str> = format!(
        "w{}",
        crate::crypto::hex(&crate::crypto::random_bytes::<6>().unwrap_or_default())
    )
    .into();
    let (stop, stopped) = watch::channel(false);
    let config = Arc::new(config);
    // The workers start once what a previous process left in flight is handed out again.
    let (recovered, ready) = watch::channel(false);
    let maintenance = tokio::spawn(maintain(
        Arc::downgrade(app),
        replica.clone(),
        config.clone(),
        recovered,
    ));
    let mut tasks = Vec::new();
    for n in 0..config.workers.max(1) {
        let mut ready = ready.clone();
        let worker = work(
            Arc::downgrade(app),
            replica.clone(),
            config.clone(),
            stopped.clone(),
            n == 0,
        );
        tasks.push(tokio::spawn(async move {
            if ready.wait_for(|r| *r).await.is_ok() {
                worker.await;
            }
        }));
    }
    tracing::debug!(replica = %replica, workers = config.workers, "job runner started");
    Runner {
        replica,
        stop,
        tasks,
        maintenance,
    }
}

impl Runner {
    /// This runner's name in item leases.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Stops claiming items and waits for the items in flight to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        self.maintenance.abort();
    }

    /// Stops at once, leaving items in flight claimed (as a crash would).
    pub fn abort(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
        }
        self.maintenance.abort();
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.maintenance.abort();
    }
}

/// Renews this replica's leases and hands out again the items of replicas that died (until
/// the runner is dropped or stopped: its workers are done by then).
async fn maintain<S: Store>(
    app: Weak<App<S>>,
    replica: Arc<str>,
    config: Arc<RunnerConfig>,
    recovered: watch::Sender<bool>,
) {
    if let Some(app) = app.upgrade()
        && app.store.exclusive()
    {
        // The only process on this store: whatever is in flight was left by one that stopped
        // (before any worker of this one claims anything).
        match app.store.recover_job_items(true).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(items = n, "job items left in flight by the last run"),
            Err(e) => tracing::warn!(error = %e, "cannot recover the job items left in flight"),
        }
    }
    let _ = recovered.send(true);
    let mut tick = tokio::time::interval(config.lease / 4);
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        if let Err(e) = app.store.renew_job_leases(&replica, config.lease).await {
            tracing::warn!(error = %e, "cannot renew this replica's job item leases");
        }
        match app.store.recover_job_items(false).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    items = n,
                    "job items of a replica that stopped handed out again"
                );
                wake();
            }
            Err(e) => tracing::warn!(error = %e, "cannot recover lapsed job items"),
        }
    }
}

/// One worker: claims and runs items until stopped. Idle, only the one that `polls` looks in
/// the store every `idle_poll` (an idle service makes one claim query a poll, not one per
/// worker); the others sleep until woken.
async fn work<S: Store>(
    app: Weak<App<S>>,
    replica: Arc<str>,
    config: Arc<RunnerConfig>,
    mut stopped: watch::Receiver<bool>,
    polls: bool,
) {
    let mut idle = true;
    let mut retry = false;
    loop {
        if *stopped.borrow() {
            return;
        }
        // Registered before the claim, so that a wake-up sent while it runs is not missed.
        let woken = WAKE.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let Some(strong) = app.upgrade() else { return };
        match strong.store.claim_job_item(&replica, config.lease).await {
            Ok(Some(item)) => {
                if idle {
                    // Work found (perhaps a job another replica created): the other idle
                    // workers look too.
                    wake();
                    idle = false;
                }
                run_item(&strong, &replica, &config, item).await;
                continue;
            }
            Ok(None) => idle = true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a job item");
                // Tried again after `idle_poll`, whichever worker this is.
                retry = true;
            }
        }
        drop(strong);
        let poll = async {
            if polls || std::mem::take(&mut retry) {
                tokio::time::sleep(config.idle_poll).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = woken => {}
            _ = poll => {}
            _ = stopped.changed() => {}
        }
    }
}

fn failed(kind: &str, message: impl Into<String>) -> ItemResult {
    ItemResult {
        outcome: ItemOutcome::Failed,
        error: Some((kind.to_owned(), message.into())),
        result: None,
    }
}

/// What must be true of the job for any item to run, else why the job fails.
enum Ready {
    Run {
        org_config: Value,
        device_config: Value,
        input_schema: Value,
    },
    ItemFails(ItemResult, Value),
    JobFails(&'static str, String),
}

async fn ready<S: Store>(app: &App<S>, item: &ClaimedItem) -> Ready {
    let Some(plugin) = app.runtime.plugin(&item.plugin) else {
        return Ready::JobFails(
            "not_found",
            format!("the plugin {} is not loaded any more", item.plugin),
        );
    };
    let Some(operation) = plugin.manifest().operation(&item.op) else {
        return Ready::JobFails(
            "not_found",
            format!(
                "the plugin {} has no operation {:?} any more",
                item.plugin, item.op
            ),
        );
    };
    let schema = operation.input_schema.clone();
    let settings = match app.settings(item.org_id, &item.plugin).await {
        Ok(s) => s,
        Err(e) => {
            return Ready::ItemFails(failed("internal", format!("the store failed: {e}")), schema);
        }
    };
    let Some(settings) = settings.filter(|s| s.enabled) else {
        return Ready::JobFails(
            "conflict",
            format!(
                "the {} extension is not switched on for this organisation",
                item.plugin
            ),
        );
    };
    let device = match app.store.device(item.org_id, &item.device_id).await {
        Ok(d) => d,
        Err(e) => {
            return Ready::ItemFails(failed("internal", format!("the store failed: {e}")), schema);
        }
    };
    let Some(device) = device else {
        return Ready::ItemFails(
            failed(
                "not_found",
                format!("device {} was deleted", item.device_id),
            ),
            schema,
        );
    };
    let Some(device_config) = device.extensions.get(&item.plugin).cloned() else {
        return Ready::ItemFails(
            failed(
                "not_found",
                format!(
                    "device {} has no {} configuration",
                    item.device_id, item.plugin
                ),
            ),
            schema,
        );
    };
    Ready::Run {
        org_config: settings.merged(),
        device_config,
        input_schema: schema,
    }
}

/// The record of an action item's outcome in its idempotency record.
fn recorded(result: &ItemResult) -> String {
    json!({
        "outcome": result.outcome,
        "error": result.error.as_ref().map(|(k, m)| json!({"kind": k, "message": m})),
        "result": result.result,
    })
    .to_string()
}

/// The outcome an idempotency record holds.
fn from_record(body: &str) -> ItemResult {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let outcome = match v["outcome"].as_str() {
        Some("ok") => ItemOutcome::Ok,
        Some("failed") => ItemOutcome::Failed,
        _ => ItemOutcome::Unknown,
    };
    let error = v["error"].as_object().map(|e| {
        (
            e.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        )
    });
    ItemResult {
        outcome,
        error,
        result: Some(v["result"].clone()).filter(|r| !r.is_null()),
    }
}

/// Calls the operation at bulk priority; a refusal for the rate (the call was not made) is
/// tried again after the wait the limiter names.
async fn call<S: Store>(
    app: &App<S>,
    config: &RunnerConfig,
    item: &ClaimedItem,
    org_config: &Value,
    device_config: &Value,
) -> ItemResult {
    let is_action = item.kind == "action";
    let mut tries = 0;
    loop {
        tries += 1;
        let request = CallRequest::new(
            &item.plugin,
            &item.op,
            org_config,
            device_config,
            &item.input,
        )
        .priority(Priority::Bulk);
        match app.runtime.invoke(request).await {
            Ok(output) => {
                return ItemResult {
                    outcome: ItemOutcome::Ok,
                    error: None,
                    result: Some(output),
                };
            }
            Err(e) if e.kind == ErrorKind::RateLimited && tries < config.rate_limited_tries => {
                let wait = e.details["retry_after_ms"].as_u64().unwrap_or(500);
                tokio::time::sleep(Duration::from_millis(wait.clamp(50, 5_000))).await;
            }
            // An action whose deadline passed may have reached the upstream: unknown.
            Err(e) if e.kind == ErrorKind::Timeout && is_action => {
                return ItemResult {
                    outcome: ItemOutcome::Unknown,
                    error: Some(("timeout".into(), e.message)),
                    result: None,
                };
            }
            Err(e) => return failed(e.kind.as_str(), e.message),
        }
    }
}

/// Runs one claimed item and records its outcome (and, for an action, its audit entry).
async fn run_item<S: Store>(app: &App<S>, replica: &str, config: &RunnerConfig, item: ClaimedItem) {
    let result = match ready(app, &item).await {
        Ready::JobFails(kind, message) => {
            tracing::warn!(job = %item.job_id, kind, %message, "the job cannot run");
            if let Err(e) = app.store.fail_job(&item.job_id, kind, &message).await {
                tracing::error!(error = %e, job = %item.job_id, "cannot mark the job failed");
            }
            let skipped = ItemResult {
                outcome: ItemOutcome::Skipped,
                error: Some((kind.to_owned(), message)),
                result: None,
            };
            finish(app, replica, &item, &skipped).await;
            return;
        }
        Ready::ItemFails(result, schema) => (result, schema),
        Ready::Run {
            org_config,
            device_config,
            input_schema,
        } => {
            let result = if item.kind == "action" {
                run_action(app, config, &item, &org_config, &device_config)
                    .await
                    .unwrap_or_else(|| {
                        failed(
                            "internal",
                            "the store failed before the call was made: the item was not run",
                        )
                    })
            } else {
                call(app, config, &item, &org_config, &device_config).await
            };
            (result, input_schema)
        }
    };
    let (result, input_schema) = result;
    if item.kind == "action" {
        audit_item(app, &item, &input_schema, &result).await;
    }
    finish(app, replica, &item, &result).await;
}

/// An action item under its idempotency record: its result (recorded, or of the call made
/// now); `None` when the store failed (nothing was called).
async fn run_action<S: Store>(
    app: &App<S>,
    config: &RunnerConfig,
    item: &ClaimedItem,
    org_config: &Value,
    device_config: &Value,
) -> Option<ItemResult> {
    let key = format!("job:{}:{}", item.job_id, item.device_id);
    let fingerprint = json!([item.device_id, item.plugin, item.op, item.input]).to_string();
    let claim = match app
        .store
        .claim_idempotency(item.org_id, &key, &fingerprint)
        .await
    {
        Ok(claim) => claim,
        Err(e) => {
            tracing::error!(error = %e, job = %item.job_id, "cannot claim a job item's idempotency record");
            return None;
        }
    };
    match claim {
        IdempotencyClaim::Claimed => {}
        IdempotencyClaim::Done { body, .. } => return Some(from_record(&body)),
        IdempotencyClaim::InProgress { since } | IdempotencyClaim::Unknown { since } => {
            let message = format!(
                "the service stopped while this action was in flight (since {since}): it may or \
                 may not have been applied; check the device"
            );
            return Some(ItemResult {
                outcome: ItemOutcome::Unknown,
                error: Some(("interrupted".into(), message)),
                result: None,
            });
        }
        IdempotencyClaim::Mismatch => {
            return Some(failed(
                "internal",
                "this item's idempotency record belongs to another request",
            ));
        }
    }
    let result = call(app, config, item, org_config, device_config).await;
    let status = if result.outcome == ItemOutcome::Ok {
        200
    } else {
        500
    };
    if let Err(e) = app
        .store
        .complete_idempotency(item.org_id, &key, status, &recorded(&result))
        .await
    {
        tracing::error!(error = %e, job = %item.job_id, "cannot record a job item's outcome");
    }
    Some(result)
}

/// Records an action item's outcome in the audit log, on behalf of the job's creator.
async fn audit_item<S: Store>(
    app: &App<S>,
    item: &ClaimedItem,
    input_schema: &Value,
    result: &ItemResult,
) {
    let outcome = match (&result.outcome, &result.error) {
        (ItemOutcome::Ok, _) => "ok".to_owned(),
        (ItemOutcome::Unknown, _) => "unknown".to_owned(),
        (_, Some((kind, _))) => kind.clone(),
        _ => "failed".to_owned(),
    };
    let detail = format!(
        "job {}: input: {}",
        item.job_id,
        crate::api::ops::audited_input(&item.input, input_schema)
    );
    let entry = NewAudit {
        key_id: item.key_id.as_deref(),
        user_id: item.user_id.as_deref(),
        action: "operation",
        device_id: Some(&item.device_id),
        plugin: Some(&item.plugin),
        op: Some(&item.op),
        outcome: &outcome,
        detail: &detail,
        ..Default::default()
    };
    if let Err(e) = app.store.audit(item.org_id, entry).await {
        tracing::error!(error = %e, job = %item.job_id, "cannot write the audit log");
    }
}

/// Records the item's outcome; audits the job's end when it was its last item.
async fn finish<S: Store>(app: &App<S>, replica: &str, item: &ClaimedItem, result: &ItemResult) {
    match app
        .store
        .finish_job_item(&item.job_id, item.pos, replica, result)
        .await
    {
        Ok(Some(job)) => {
            tracing::info!(job = %job.id, done = job.counts.done, failed = job.counts.failed,
                unknown = job.counts.unknown, "job done");
            super::audit_job(app, &job, "done", None).await;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, job = %item.job_id, "cannot record a job item's outcome")
        }
    }
}
