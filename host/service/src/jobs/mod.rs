//! Bulk jobs: one operation of one plugin with one input over a set of devices (by ids, or by
//! the device list's filters), answered at once (202) and run in the background by the
//! [`runner`] of every replica, under the account's shared limiter at bulk priority.
//!
//! The HTTP interface (fixed in the project's JOBS-API): `POST /api/v1/jobs` ([`create_job`]),
//! `GET /api/v1/jobs` ([`list_jobs`]), `GET /api/v1/jobs/{id}` ([`get_job`]),
//! `GET /api/v1/jobs/{id}/results` ([`job_results`]: JSON Lines, or CSV with
//! `Accept: text/csv`), `POST /api/v1/jobs/{id}/cancel` ([`cancel_job`]). Everything the
//! creation checks (the operation's role, its input against its schema, the selection, the
//! confirmation of a destructive operation) is checked before anything is stored.

pub mod runner;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use devext_plugin_api::{OpKind, OpScope, Operation};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::state::App;
use crate::api::{SECRET_MASK, page};
use crate::lookup::FILTER_PREFIX;
use crate::store::jobs::{CancelRefused, Job, JobItem, NewJob};
use crate::store::{DeviceQuery, IdempotencyClaim, NewAudit, Role, Store, StoreError};

/// A destructive operation on more devices than this needs `confirm` (the selected count).
pub const CONFIRM_ABOVE: usize = 5;

/// The most devices one job may select.
pub const MAX_JOB_DEVICES: usize = 100_000;

/// Items read per page when streaming results.
const RESULTS_PAGE: u32 = 500;

/// The body of `POST /api/v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    plugin: String,
    op: String,
    /// Left out: `{}` (`null` is an input like any other, checked by the op's schema).
    #[serde(default = "no_input")]
    input: Value,
    devices: Selection,
    #[serde(default, deserialize_with = "present")]
    confirm: Option<u64>,
}

/// A field that, when given, has a value: `null` is refused as the wrong type (left out is
/// `None`, by `#[serde(default)]`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

fn no_input() -> Value {
    json!({})
}

/// Which devices: by id, or by the device list's filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    #[serde(default, deserialize_with = "present")]
    ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    filter: Option<Map<String, Value>>,
}

/// The role running `operation` needs (as for single operations).
pub(crate) fn role_for(operation: &Operation) -> Role {
    if operation.kind == OpKind::Action {
        crate::api::ops::ACTION_ROLE
    } else {
        Role::Viewer
    }
}

/// The caller's id as jobs record it: `key:<id>` or `user:<id>`.
fn created_by(caller: &Caller) -> String {
    match &caller.0.user_id {
        Some(user) => format!("user:{user}"),
        None => format!("key:{}", caller.0.key_id),
    }
}

/// The input as a job shows it: top-level `writeOnly` properties masked.
fn shown_input(input: &Value, schema: &Value) -> Value {
    let Some(fields) = input.as_object() else {
        return input.clone();
    };
    let shown = fields
        .iter()
        .map(|(name, value)| {
            let secret = schema["properties"][name.as_str()]["writeOnly"] == json!(true);
            let value = if secret {
                json!(SECRET_MASK)
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect();
    Value::Object(shown)
}

/// A job as the API shows it.
pub fn job_json<S: Store>(app: &App<S>, job: &Job) -> Value {
    let now = chrono::Utc::now();
    let schema = app
        .runtime
        .plugin(&job.plugin)
        .and_then(|p| p.manifest().operation(&job.op))
        .map(|o| o.input_schema.clone())
        .unwrap_or(Value::Null);
    let error = match (&job.state, &job.error) {
        (crate::store::jobs::JobState::Failed, Some((kind, message))) => {
            json!({"kind": kind, "message": message})
        }
        _ => Value::Null,
    };
    json!({
        "id": job.id,
        "plugin": job.plugin,
        "op": job.op,
        "input": shown_input(&job.input, &schema),
        "selection": job.selection,
        "state": job.state,
        "total": job.total,
        "done": job.counts.done,
        "failed": job.counts.failed,
        "skipped": job.counts.skipped,
        "unknown": job.counts.unknown,
        "pending": job.counts.pending,
        "rate_per_s": job.rate_per_s(now),
        "eta_s": job.eta_s(now),
        "created_by": job.created_by,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": error,
    })
}

/// A 400 about the body of a creation.
fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// The devices a filter selects, in the device list's order.
async fn filtered<S: Store>(
    app: &App<S>,
    org_id: i64,
    filter: &Map<String, Value>,
) -> ApiResult<Vec<String>> {
    let mut query = DeviceQuery {
        limit: 500,
        ..DeviceQuery::default()
    };
    for (key, value) in filter {
        let Some(value) = value.as_str() else {
            return Err(bad(format!(
                "/devices/filter/{key}: a filter value is a string"
            )));
        };
        if key == "name" {
            query.name = Some(value.to_owned());
        } else if key.starts_with(FILTER_PREFIX) {
            query.lookup.push(crate::api::devices::lookup_filter(
                key,
                value.to_owned(),
                &app.lookup,
            )?);
        } else {
            return Err(bad(format!(
                "/devices/filter: unknown filter key {key:?}: the filters are name and \
                 ext.<plugin>.<field> (a plugin's lookup field)"
            ))
            .details(json!({"pointer": format!("/devices/filter/{key}")})));
        }
    }
    let mut ids = Vec::new();
    loop {
        let (page, next) = app.store.devices(org_id, &query).await?;
        ids.extend(page.into_iter().map(|d| d.id));
        if ids.len() > MAX_JOB_DEVICES {
            break;
        }
        match next {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    Ok(ids)
}

/// The selected devices, in order, without repeats.
async fn selected<S: Store>(
    app: &App<S>,
    org_id: i64,
    selection: &Selection,
) -> ApiResult<Vec<String>> {
    let ids = match (&selection.ids, &selection.filter) {
        (Some(ids), None) => {
            if let Some(i) = ids.iter().position(|id| id.is_empty()) {
                return Err(bad(format!("/devices/ids/{i}: a device id is not empty")));
            }
            let mut seen = std::collections::HashSet::new();
            ids.iter()
                .filter(|id| seen.insert(id.as_str()))
                .cloned()
                .collect()
        }
        (None, Some(filter)) => filtered(app, org_id, filter).await?,
        _ => {
            return Err(bad(
                "/devices: give either \"ids\" (a list of device ids) or \"filter\" (the device \
                 list's filters), not both",
            ));
        }
    };
    if ids.is_empty() {
        return Err(bad("/devices: the selection has no device"));
    }
    if ids.len() > MAX_JOB_DEVICES {
        return Err(bad(format!(
            "/devices: the selection has more than {MAX_JOB_DEVICES} devices: split it into \
             several jobs"
        )));
    }
    Ok(ids)
}

/// The selection as the audit log keeps it: the filter, or the number of ids and the first few.
fn audited_selection(selection: &Value) -> Value {
    match selection["ids"].as_array() {
        Some(ids) if ids.len() > 10 => {
            json!({"ids": ids[..10], "ids_count": ids.len()})
        }
        _ => selection.clone(),
    }
}

/// Records a job's creation or end in the audit log (once per job event).
pub(crate) async fn audit_job<S: Store>(
    app: &App<S>,
    job: &Job,
    event: &str,
    request_id: Option<&str>,
) {
    let schema = app
        .runtime
        .plugin(&job.plugin)
        .and_then(|p| p.manifest().operation(&job.op))
        .map(|o| o.input_schema.clone())
        .unwrap_or(Value::Null);
    let detail = json!({
        "job": job.id,
        "event": event,
        "input": serde_json::from_str::<Value>(&crate::api::ops::audited_input(&job.input, &schema))
            .unwrap_or(Value::Null),
        "selection": audited_selection(&job.selection),
        "total": job.total,
        "done": job.counts.done,
        "failed": job.counts.failed,
        "skipped": job.counts.skipped,
        "unknown": job.counts.unknown,
        "pending": job.counts.pending,
    })
    .to_string();
    let entry = NewAudit {
        key_id: job.key_id.as_deref(),
        user_id: job.user_id.as_deref(),
        action: "job",
        plugin: Some(&job.plugin),
        op: Some(&job.op),
        outcome: "ok",
        detail: &detail,
        request_id,
        ..Default::default()
    };
    if let Err(e) = app.store.audit(job.org_id, entry).await {
        tracing::error!(error = %e, job = %job.id, "cannot write the audit log");
    }
}

/// The 202 of a created (or replayed) job.
fn accepted(body: Value) -> Response {
    let location = body["id"]
        .as_str()
        .and_then(|id| HeaderValue::from_str(&format!("/api/v1/jobs/{id}")).ok());
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `POST /api/v1/jobs`: creates a job (202 with it, and `Location`).
pub async fn create_job<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(raw) = body?;
    let body: CreateJob =
        serde_json::from_value(raw.clone()).map_err(|e| bad(format!("the job is invalid: {e}")))?;
    let plugin = crate::api::settings::plugin_or_404(&app.runtime, &body.plugin)?;
    let Some(operation) = plugin.manifest().operation(&body.op).cloned() else {
        let mut names: Vec<&str> = plugin
            .manifest()
            .operations
            .iter()
            .filter(|o| o.scope == OpScope::Device)
            .map(|o| o.name.as_str())
            .collect();
        names.sort_unstable();
        return Err(bad(format!(
            "/op: plugin {} has no operation {:?}; its device operations are {}",
            body.plugin,
            body.op,
            names.join(", ")
        )));
    };
    if operation.scope == OpScope::Org {
        return Err(bad(format!(
            "/op: {}.{} is an organisation operation (it runs without a device): a job runs \
             device operations",
            body.plugin, body.op
        )));
    }
    let needed = role_for(&operation);
    if !caller.0.role.allows(needed) {
        return Err(ApiError::forbidden(needed, caller.0.role));
    }
    let input = body.input.clone();
    if let Some(Err(violations)) = plugin.validate_input(&body.op, &input) {
        let violations = violations
            .into_iter()
            .map(|v| devext_host::Violation {
                pointer: format!("/input{}", v.pointer),
                ..v
            })
            .collect();
        let mut e = ApiError::violations("the input is", violations);
        e.status = StatusCode::BAD_REQUEST;
        return Err(e);
    }
    let org_id = caller.0.org_id;
    let devices = selected(&app, org_id, &body.devices).await?;
    if operation.destructive
        && devices.len() > CONFIRM_ABOVE
        && body.confirm != Some(devices.len() as u64)
    {
        let message = match body.confirm {
            None => format!(
                "{}.{} is destructive and selects {} devices: send \"confirm\": {} to go ahead",
                body.plugin,
                body.op,
                devices.len(),
                devices.len()
            ),
            Some(n) => format!(
                "{}.{} is destructive and selects {} devices, not the {n} confirmed: check the \
                 selection",
                body.plugin,
                body.op,
                devices.len()
            ),
        };
        return Err(
            ApiError::new(StatusCode::CONFLICT, "confirmation_required", message)
                .details(json!({"total": devices.len()})),
        );
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| bad("Idempotency-Key must be visible ASCII"))?;
    if let Some(key) = &idempotency_key {
        if key.is_empty() || key.len() > 200 {
            return Err(bad("Idempotency-Key must have 1 to 200 characters"));
        }
        let fingerprint = json!(["job", raw]).to_string();
        match app
            .store
            .claim_idempotency(org_id, key, &fingerprint)
            .await?
        {
            IdempotencyClaim::Claimed => {}
            IdempotencyClaim::Done { status, body } if status != 202 => {
                // The stored refusal (no job was created), as it was answered.
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                let stored: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let mut response = (status, Json(stored)).into_response();
                response
                    .headers_mut()
                    .insert("idempotent-replay", HeaderValue::from_static("true"));
                return Ok(response);
            }
            IdempotencyClaim::Done { body, .. } => {
                let stored: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                // The same job, as it is now.
                let current = match stored["id"].as_str() {
                    Some(id) => app.store.job(org_id, id).await?,
                    None => None,
                };
                let body = current.map(|j| job_json(&app, &j)).unwrap_or(stored);
                let mut response = accepted(body);
                response
                    .headers_mut()
                    .insert("idempotent-replay", HeaderValue::from_static("true"));
                return Ok(response);
            }
            IdempotencyClaim::InProgress { .. } | IdempotencyClaim::Unknown { .. } => {
                return Err(ApiError::conflict(
                    "a request with this Idempotency-Key is still running, or was interrupted: \
                     list the jobs to see whether it created one",
                ));
            }
            IdempotencyClaim::Mismatch => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_input",
                    "this Idempotency-Key was used for a different request",
                ));
            }
        }
    }
    let selection = serde_json::to_value(match (&body.devices.ids, &body.devices.filter) {
        (Some(ids), _) => json!({ "ids": ids }),
        (_, Some(filter)) => json!({ "filter": filter }),
        _ => Value::Null,
    })
    .unwrap_or(Value::Null);
    let by = created_by(&caller);
    let (key_id, user_id) = match &caller.0.user_id {
        Some(user) => (None, Some(user.as_str())),
        None => (Some(caller.0.key_id.as_str()), None),
    };
    let kind = if operation.kind == OpKind::Action {
        "action"
    } else {
        "view"
    };
    let created = app
        .store
        .create_job(NewJob {
            org_id,
            plugin: &body.plugin,
            op: &body.op,
            kind,
            input: &input,
            selection: &selection,
            devices: &devices,
            created_by: &by,
            key_id,
            user_id,
        })
        .await;
    let job = match created {
        Ok(job) => job,
        Err(StoreError::NotFound(message)) => {
            let e = bad(format!("/devices/ids: {message}"));
            if let Some(key) = &idempotency_key {
                app.store
                    .complete_idempotency(org_id, key, 400, &e.body().to_string())
                    .await?;
            }
            return Err(e);
        }
        Err(e) => return Err(e.into()),
    };
    let shown = job_json(&app, &job);
    if let Some(key) = &idempotency_key {
        app.store
            .complete_idempotency(org_id, key, 202, &shown.to_string())
            .await?;
    }
    let request_id = crate::api::request_id::current();
    audit_job(&app, &job, "created", request_id.as_deref()).await;
    runner::wake();
    Ok(accepted(shown))
}

/// The query of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/jobs`: the org's jobs, newest first.
pub async fn list_jobs<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    let limit = page::limit(q.limit)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                bad(format!(
                    "query parameter \"cursor\": {c:?} is not a cursor of this listing"
                ))
            })
        })
        .transpose()?;
    let jobs = app.store.jobs(caller.0.org_id, before, limit).await?;
    let next = if jobs.len() == limit as usize {
        jobs.last().map(|j| j.seq.to_string())
    } else {
        None
    };
    let items: Vec<Value> = jobs.iter().map(|j| job_json(&app, j)).collect();
    Ok(Json(json!({"items": items, "next": next})))
}

fn no_job(id: &str) -> ApiError {
    ApiError::not_found(format!("no job {id:?}"))
}

/// `GET /api/v1/jobs/{id}`: a job and its progress.
pub async fn get_job<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let job = app
        .store
        .job(caller.0.org_id, &id)
        .await?
        .ok_or_else(|| no_job(&id))?;
    Ok(Json(job_json(&app, &job)))
}

/// One item as a JSON Lines record.
fn item_json(item: &JobItem) -> Value {
    json!({
        "device": item.device_id,
        "outcome": item.outcome,
        "error": item.error.as_ref().map(|(k, m)| json!({"kind": k, "message": m})),
        "result": item.result,
    })
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One item as a CSV record.
fn item_csv(item: &JobItem) -> String {
    let (kind, message) = item
        .error
        .as_ref()
        .map(|(k, m)| (k.as_str(), m.as_str()))
        .unwrap_or(("", ""));
    let result = item
        .result
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_default();
    format!(
        "{},{},{},{},{}\r\n",
        csv_field(&item.device_id),
        item.outcome.as_str(),
        csv_field(kind),
        csv_field(message),
        csv_field(&result)
    )
}

/// Whether the request asks for CSV.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/csv")))
}

/// `GET /api/v1/jobs/{id}/results`: one record per item in selection order, streamed a page
/// at a time: JSON Lines, or CSV with `Accept: text/csv`.
pub async fn job_results<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let job = app
        .store
        .job(caller.0.org_id, &id)
        .await?
        .ok_or_else(|| no_job(&id))?;
    let csv = wants_csv(&headers);
    let header_line = csv.then(|| "device,outcome,error_kind,error_message,result\r\n".to_owned());
    let pages = futures_util::stream::unfold(
        (app, job.id, Some(-1_i64)),
        move |(app, job_id, after)| async move {
            let after = after?;
            match app
                .store
                .job_items(&job_id, Some(after), RESULTS_PAGE)
                .await
            {
                Ok(items) if items.is_empty() => None,
                Ok(items) => {
                    let last = items.last().map(|i| i.pos);
                    let mut text = String::new();
                    for item in &items {
                        if csv {
                            text.push_str(&item_csv(item));
                        } else {
                            text.push_str(&item_json(item).to_string());
                            text.push('\n');
                        }
                    }
                    let next = if items.len() < RESULTS_PAGE as usize {
                        None
                    } else {
                        last
                    };
                    Some((Ok::<_, std::io::Error>(text), (app, job_id, next)))
                }
                Err(e) => {
                    tracing::error!(error = %e, job = %job_id, "cannot read a job's results");
                    Some((
                        Err(std::io::Error::other(e.to_string())),
                        (app, job_id, None),
                    ))
                }
            }
        },
    );
    let head = futures_util::stream::iter(header_line.map(Ok));
    let body = Body::from_stream(futures_util::StreamExt::chain(head, pages));
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

/// `POST /api/v1/jobs/{id}/cancel`: stops a job after the items in flight (the rest are
/// skipped); 409 when it had ended.
pub async fn cancel_job<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    match app.store.cancel_job(caller.0.org_id, &id).await? {
        Ok(job) => {
            let request_id = crate::api::request_id::current();
            audit_job(&app, &job, "cancelled", request_id.as_deref()).await;
            Ok(Json(job_json(&app, &job)))
        }
        Err(CancelRefused::NotFound) => Err(no_job(&id)),
        Err(CancelRefused::Finished(state)) => Err(ApiError::conflict(format!(
            "job {id} has ended ({}): there is nothing to cancel",
            state.as_str()
        ))
        .details(json!({"state": state}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::ItemOutcome;

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        let item = JobItem {
            pos: 0,
            device_id: "dev_1".into(),
            outcome: ItemOutcome::Failed,
            error: Some(("conflict".into(), "said \"no\", twice".into())),
            result: Some(json!({"a": 1, "b": "x"})),
        };
        assert_eq!(
            item_csv(&item),
            "dev_1,failed,conflict,\"said \"\"no\"\", twice\",\"{\"\"a\"\":1,\"\"b\"\":\"\"x\"\"}\"\r\n"
        );
    }

    #[test]
    fn secrets_of_the_input_are_masked_and_the_rest_shown() {
        let schema = json!({"properties": {"pin": {"writeOnly": true}, "status": {}}});
        let shown = shown_input(&json!({"pin": "1234", "status": "x"}), &schema);
        assert_eq!(shown, json!({"pin": SECRET_MASK, "status": "x"}));
    }
}
