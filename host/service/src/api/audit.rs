//! The audit log: recording (never secrets) and reading it.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::ApiResult;
use super::page;
use super::state::App;
use crate::store::{NewAudit, Store};

/// Appends to the org's audit log on behalf of `caller`; a failure is logged, never the
/// request's failure.
pub(crate) async fn audit<S: Store>(app: &App<S>, caller: &Caller, entry: NewAudit<'_>) {
    let request_id = super::request_id::current();
    // A signed-in user, or a key: whoever acted.
    let (key_id, user_id) = match &caller.0.user_id {
        Some(user) => (None, Some(user.as_str())),
        None => (Some(caller.0.key_id.as_str()), None),
    };
    let entry = NewAudit {
        key_id,
        user_id,
        request_id: request_id.as_deref(),
        ..entry
    };
    if let Err(e) = app.store.audit(caller.0.org_id, entry).await {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    device: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub(crate) async fn audit_log<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    let limit = page::limit(q.limit)?;
    let items = app
        .store
        .audit_log(
            caller.0.org_id,
            q.device.as_deref().filter(|d| !d.is_empty()),
            q.before,
            limit,
        )
        .await?;
    let next = if items.len() == limit as usize {
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(json!({"items": items, "next_cursor": next})))
}
