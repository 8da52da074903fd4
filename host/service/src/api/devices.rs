//! Devices: creation, listing (by name, or by a plugin's lookup field), reading, replacing and
//! deleting. Every write carries the device's lookup index entries, from the loaded plugins'
//! manifests ([`crate::lookup`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devext_host::{Runtime, Violation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::audit;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::page;
use super::state::App;
use crate::lookup::{FILTER_PREFIX, LookupFields};
use crate::store::{Device, DeviceQuery, LookupEntry, NewAudit, Store, device_etag};

/// The `If-Match` of a request, if any (visible ASCII, else 400).
pub(super) fn if_match(headers: &axum::http::HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get(axum::http::header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad_request("If-Match must be visible ASCII"))
        })
        .transpose()
}

/// `body` as JSON with an `ETag` header.
pub(super) fn with_etag(status: StatusCode, etag: Option<&str>, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Some(tag) = etag.and_then(|t| axum::http::HeaderValue::from_str(t).ok()) {
        response.headers_mut().insert(axum::http::header::ETAG, tag);
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceBody {
    name: String,
    #[serde(default, rename = "type")]
    device_type: Option<String>,
    #[serde(default)]
    extensions: Option<Value>,
}

/// A device's extension configuration as checked: the plugins whose part was kept unchecked.
struct Checked {
    extensions: Value,
    /// Parts for plugins that are not loaded, left as they were stored (sorted).
    unchecked: Vec<String>,
}

impl DeviceBody {
    /// Checks the body. `stored`: the device's extension configuration before an update; a part
    /// for a plugin that is not loaded is accepted unchecked when it is left as stored (the
    /// plugin may be loaded again later), and refused otherwise, as on creation.
    fn check(&self, runtime: &Runtime, stored: Option<&Value>) -> ApiResult<Checked> {
        let mut violations = Vec::new();
        let name_len = self.name.chars().count();
        if name_len == 0 || name_len > 200 {
            violations.push(Violation {
                pointer: "/name".into(),
                keyword: if name_len == 0 {
                    "minLength"
                } else {
                    "maxLength"
                }
                .into(),
                message: "a device name has 1 to 200 characters".into(),
            });
        }
        if self
            .device_type
            .as_ref()
            .is_some_and(|t| t.chars().count() > 100)
        {
            violations.push(Violation {
                pointer: "/type".into(),
                keyword: "maxLength".into(),
                message: "a device type has at most 100 characters".into(),
            });
        }
        let extensions = self.extensions.clone().unwrap_or_else(|| json!({}));
        let mut checked = extensions.clone();
        let mut unchecked = Vec::new();
        if let (Some(parts), Some(stored)) = (checked.as_object_mut(), stored) {
            parts.retain(|plugin, part| {
                let kept = runtime.plugin(plugin).is_none() && stored.get(plugin) == Some(part);
                if kept {
                    unchecked.push(plugin.clone());
                }
                !kept
            });
        }
        for v in runtime.validate_device_extensions(&checked) {
            violations.push(Violation {
                pointer: format!("/extensions{}", v.pointer),
                ..v
            });
        }
        if violations.is_empty() {
            unchecked.sort();
            Ok(Checked {
                extensions,
                unchecked,
            })
        } else {
            Err(ApiError::violations("the device is", violations))
        }
    }
}

/// The query of a device listing: `name`, `cursor`, `limit` and lookup filters
/// `ext.<plugin>.<field>=value` (the loaded plugins' lookup fields only).
fn device_query(pairs: Vec<(String, String)>, lookup: &LookupFields) -> ApiResult<DeviceQuery> {
    let mut q = DeviceQuery {
        limit: page::DEFAULT_LIMIT,
        ..DeviceQuery::default()
    };
    let mut seen = Vec::new();
    for (key, value) in pairs {
        if seen.contains(&key) {
            return Err(ApiError::bad_request(format!(
                "query parameter {key:?} is given more than once"
            )));
        }
        match key.as_str() {
            "name" => q.name = Some(value),
            "cursor" => q.cursor = Some(number(&key, &value)?),
            "limit" => q.limit = page::limit(Some(number(&key, &value)?))?,
            _ if key.starts_with(FILTER_PREFIX) => {
                q.lookup.push(lookup_filter(&key, value, lookup)?)
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {key:?}: use name, cursor, limit or a lookup \
                     filter ext.<plugin>.<field>"
                )));
            }
        }
        seen.push(key);
    }
    Ok(q)
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> ApiResult<T> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "query parameter {key:?}: {value:?} is not a whole number in range"
        ))
    })
}

/// The filter `ext.<plugin>.<field>=value`, if `plugin` declares `field` as a lookup field.
pub(crate) fn lookup_filter(
    key: &str,
    value: String,
    lookup: &LookupFields,
) -> ApiResult<LookupEntry> {
    let known = lookup.filter_names();
    let entry = key[FILTER_PREFIX.len()..]
        .rsplit_once('.')
        .filter(|(plugin, field)| lookup.contains(plugin, field))
        .map(|(plugin, field)| LookupEntry {
            plugin: plugin.to_owned(),
            field: field.to_owned(),
            value,
        });
    entry.ok_or_else(|| {
        let message = if known.is_empty() {
            format!("unknown lookup filter {key:?}: no loaded plugin declares lookup fields")
        } else {
            format!(
                "unknown lookup filter {key:?}: the lookup filters are {}",
                known.join(", ")
            )
        };
        ApiError::bad_request(message).details(json!({"parameter": key, "known": known}))
    })
}

pub(crate) async fn list_devices<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(pairs) = query?;
    let q = device_query(pairs, &app.lookup)?;
    let (items, next) = app.store.devices(caller.0.org_id, &q).await?;
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

pub(crate) async fn create_device<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    body: Result<Json<DeviceBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let Checked { extensions, .. } = body.check(&app.runtime, None)?;
    let device = app
        .store
        .create_device(
            caller.0.org_id,
            &body.name,
            body.device_type.as_deref(),
            &extensions,
            &app.lookup.entries(&extensions),
        )
        .await?;
    audit_change(&app, &caller, &device.id, "create").await;
    let etag = device_etag(&device);
    Ok(with_etag(StatusCode::CREATED, Some(&etag), json!(device)))
}

/// The 404 of a device that is not the org's.
pub(crate) fn no_device(id: &str) -> ApiError {
    ApiError::not_found(format!("no device {id:?}"))
}

/// Records a successful change of device `id` (`create`, `update`, `delete`).
async fn audit_change<S: Store>(app: &App<S>, caller: &Caller, id: &str, op: &str) {
    let entry = NewAudit {
        action: "device",
        device_id: Some(id),
        op: Some(op),
        outcome: "ok",
        ..Default::default()
    };
    audit(app, caller, entry).await;
}

pub(crate) async fn device_or_404<S: Store>(
    app: &App<S>,
    caller: &Caller,
    id: &str,
) -> ApiResult<Device> {
    app.store
        .device(caller.0.org_id, id)
        .await?
        .ok_or_else(|| no_device(id))
}

pub(crate) async fn get_device<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let device = device_or_404(&app, &caller, &id).await?;
    let etag = device_etag(&device);
    Ok(with_etag(StatusCode::OK, Some(&etag), json!(device)))
}

pub(crate) async fn update_device<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Json<DeviceBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    // With `If-Match` (the ETag of the device as read), a device changed since is not
    // overwritten: 412.
    let if_match = if_match(&headers)?;
    // The stored configuration matters only for parts of plugins this service does not load:
    // read it only then.
    let names_unloaded = body
        .extensions
        .as_ref()
        .and_then(Value::as_object)
        .is_some_and(|parts| parts.keys().any(|p| app.runtime.plugin(p).is_none()));
    let stored = if names_unloaded {
        let device = app.store.device(caller.0.org_id, &id).await?;
        Some(device.ok_or_else(|| no_device(&id))?.extensions)
    } else {
        None
    };
    let Checked {
        extensions,
        unchecked,
    } = body.check(&app.runtime, stored.as_ref())?;
    let device = app
        .store
        .update_device_if(
            caller.0.org_id,
            &id,
            &body.name,
            body.device_type.as_deref(),
            &extensions,
            &app.lookup.entries(&extensions),
            if_match.as_deref(),
        )
        .await?
        .ok_or_else(|| no_device(&id))?;
    app.devices.forget(&(caller.0.org_id, id.clone()));
    audit_change(&app, &caller, &id, "update").await;
    let etag = device_etag(&device);
    let mut answer = json!(device);
    if !unchecked.is_empty() {
        // Kept as stored, for plugins this service does not load: say so.
        answer["unchecked_extensions"] = json!(unchecked);
    }
    Ok(with_etag(StatusCode::OK, Some(&etag), answer))
}

pub(crate) async fn delete_device<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let deleted = app.store.delete_device(caller.0.org_id, &id).await?;
    app.devices.forget(&(caller.0.org_id, id.clone()));
    if !deleted {
        return Err(no_device(&id));
    }
    audit_change(&app, &caller, &id, "delete").await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/validate/extensions`: checks an extension configuration sent as JSON text,
/// saving nothing, as `devext validate` checks a file: 200 with its declared warnings when it
/// passes, 422 with every problem (`details.diagnostics[]`: kind, line, column, pointer,
/// keyword, message) when it does not. The dashboard's editor calls it as you type.
pub(crate) async fn validate_extensions<S: Store>(
    State(app): State<Arc<App<S>>>,
    _caller: Caller,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let text = body.map_err(|r| {
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, kind, r.body_text())
    })?;
    let diagnostics = devext_host::validate::document_diagnostics(&app.runtime, &text);
    let listed: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            json!({"kind": d.kind, "line": d.line, "column": d.column, "pointer": d.pointer,
                   "keyword": d.keyword, "message": d.message})
        })
        .collect();
    let invalid = diagnostics
        .iter()
        .any(|d| d.kind != devext_host::validate::Kind::Warning);
    if invalid {
        let first = diagnostics
            .iter()
            .find(|d| d.kind != devext_host::validate::Kind::Warning)
            .map(|d| d.message.clone())
            .unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("the extension configuration is invalid: {first}"),
        )
        .details(json!({ "diagnostics": listed })));
    }
    Ok(Json(json!({"valid": true, "diagnostics": listed})).into_response())
}
