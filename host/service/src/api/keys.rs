//! The org's API keys: listing, creation (the key is shown once) and revocation.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::audit;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::state::App;
use crate::store::{NewAudit, Role, Store};

pub(crate) async fn list_keys<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let keys = app.store.list_keys(caller.0.org_id).await?;
    Ok(Json(json!({ "items": keys })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    role: Role,
    #[serde(default)]
    name: String,
}

pub(crate) async fn create_key<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    body: Result<Json<NewKey>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    if body.name.chars().count() > 100 {
        return Err(ApiError::bad_request("name: at most 100 characters"));
    }
    let (info, key) = app
        .store
        .create_key(caller.0.org_id, body.role, &body.name)
        .await?;
    audit(
        &app,
        &caller,
        NewAudit {
            action: "key",
            op: Some("create"),
            outcome: "ok",
            detail: &format!("{} {}", info.id, info.role.as_str()),
            ..Default::default()
        },
    )
    .await;
    let mut out = serde_json::to_value(&info).unwrap_or_default();
    out["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub(crate) async fn revoke_key<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let revoked = app.store.revoke_key(caller.0.org_id, &id).await?;
    // The memo is keyed by key hashes, which a revocation does not name: start over.
    app.keys.clear();
    if !revoked {
        return Err(ApiError::not_found(format!("no key {id:?}")));
    }
    audit(
        &app,
        &caller,
        NewAudit {
            action: "key",
            op: Some("revoke"),
            outcome: "ok",
            detail: &id,
            ..Default::default()
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
