//! A device's drilldown (its usable extensions and their operations) and running an
//! operation, on a device or (`scope: org`) on the organisation: views need viewer, actions
//! operator; an action with an `Idempotency-Key` runs once.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use devext_host::CallRequest;
use devext_plugin_api::{ErrorKind, OpKind, OpScope, Operation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::audit;
use super::auth::Caller;
use super::devices::{device_or_404, no_device};
use super::error::{ApiError, ApiResult};
use super::settings::plugin_or_404;
use super::state::App;
use crate::store::{ExtensionSettings, IdempotencyClaim, NewAudit, Role, Store};

/// The role that running an operation of kind `action` needs (views need the route's role,
/// viewer); stated in the route table as the route's `action_role`.
pub(crate) const ACTION_ROLE: Role = Role::Operator;

/// The drilldown's query: `include=views`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DrilldownQuery {
    include: Option<String>,
}

pub(crate) async fn drilldown<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<DrilldownQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query?;
    let with_views = match query.include.as_deref() {
        None => false,
        Some("views") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter \"include\": {other:?} is not one of: views"
            )));
        }
    };
    let device = device_or_404(&app, &caller, &id).await?;
    let stored = app.store.extensions(caller.0.org_id).await?;
    let mut items = Vec::new();
    let configured = device.extensions.as_object().cloned().unwrap_or_default();
    for (name, device_config) in &configured {
        let Some(plugin) = app.runtime.plugin(name) else {
            items.push(
                json!({"plugin": name, "available": false, "reason": "the plugin is not loaded"}),
            );
            continue;
        };
        let m = plugin.manifest();
        let settings = stored.iter().find(|s| &s.plugin == name);
        let reason = match settings {
            None => Some("the extension is not set up for this organisation".to_owned()),
            Some(s) if !s.enabled => {
                Some("the extension is switched off for this organisation".to_owned())
            }
            Some(_) => None,
        };
        let single = json!({ name.clone(): device_config });
        let violations = app.runtime.validate_device_extensions(&single);
        let warnings = app.runtime.device_warnings(&single);
        let mut item = json!({
            "plugin": name,
            "display_name": m.display_name,
            "config": device_config,
            "warnings": warnings,
        });
        if let Some(reason) = reason {
            item["available"] = json!(false);
            item["reason"] = json!(reason);
        } else if !violations.is_empty() {
            item["available"] = json!(false);
            item["reason"] = json!("the device's configuration for this extension is invalid");
            item["violations"] = json!(violations);
        } else {
            item["available"] = json!(true);
            let caller_role = caller.0.role;
            item["operations"] = m
                .operations
                .iter()
                // Org-scope operations need no device: not part of a device's drilldown.
                .filter(|o| o.scope == OpScope::Device)
                .map(|o| {
                    let needed = if o.kind == OpKind::Action {
                        ACTION_ROLE
                    } else {
                        Role::Viewer
                    };
                    // The schemas are in the manifest (`/api/v1/plugins`): not repeated here.
                    json!({
                        "name": o.name, "title": o.title, "description": o.description,
                        "kind": o.kind.as_str(), "destructive": o.destructive,
                        "allowed": caller_role.allows(needed),
                    })
                })
                .collect();
            if with_views && let Some(settings) = settings {
                item["views"] = views_of(&app, name, settings, device_config).await;
            }
        }
        items.push(item);
    }
    Ok(Json(json!({"device": device.id, "extensions": items})))
}

/// The results of `plugin`'s device views that need no input, on this device, with the org's
/// `settings` (the drilldown has read them): each run as `POST .../{view}` with no body would
/// run it (the view cache serves fresh results). A view whose input schema refuses `{}` needs
/// input and is left out.
async fn views_of<S: Store>(
    app: &App<S>,
    plugin: &str,
    settings: &ExtensionSettings,
    device_config: &Value,
) -> Value {
    let Some(loaded) = app.runtime.plugin(plugin) else {
        return json!({});
    };
    let org_config = settings.merged();
    let input = json!({});
    let views = loaded
        .manifest()
        .operations
        .iter()
        .filter(|o| o.kind == OpKind::View && o.scope == OpScope::Device)
        .map(|o| {
            let request = CallRequest::new(plugin, &o.name, &org_config, device_config, &input);
            let runtime = &app.runtime;
            async move { (o.name.clone(), runtime.invoke(request).await) }
        });
    let mut out = serde_json::Map::new();
    for (name, result) in futures_util::future::join_all(views).await {
        match result {
            Ok(output) => {
                out.insert(name, json!({ "result": output }));
            }
            Err(e) if e.kind == ErrorKind::InvalidInput && e.details["location"] == "input" => {}
            Err(e) => {
                out.insert(name, ApiError::from_plugin(e).body());
            }
        }
    }
    Value::Object(out)
}

/// `POST /api/v1/devices/{id}/extensions/{plugin}/{op}`: a device-scope operation on one device.
pub(crate) async fn run_op<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path((id, plugin, op)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<Response> {
    // The body first: one over the route's limit, or not JSON, is refused whatever it names.
    let input = input_of(&headers, body)?;
    let device = app
        .device_for_op(caller.0.org_id, &id)
        .await?
        .ok_or_else(|| no_device(&id))?;
    let operation = operation_or_404(&app, &plugin, &op)?;
    if operation.scope == OpScope::Org {
        return Err(ApiError::not_found(format!(
            "{plugin}.{op} is an organisation operation: it runs without a device, at \
             POST /api/v1/extensions/{plugin}/{op}"
        )));
    }
    let Some(device_config) = device.extensions.get(&plugin).cloned() else {
        return Err(ApiError::not_found(format!(
            "device {id} has no {plugin} configuration"
        )));
    };
    let target = Target::Device {
        id: &id,
        config: &device_config,
    };
    execute(&app, &caller, target, &plugin, &operation, &headers, input).await
}

/// `POST /api/v1/extensions/{plugin}/{op}`: an organisation-scope operation (`scope: org` in
/// the manifest), run with the org's settings only ("test the connection", "list rate plans").
pub(crate) async fn run_org_op<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path((plugin, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<Response> {
    let input = input_of(&headers, body)?;
    let operation = operation_or_404(&app, &plugin, &op)?;
    if operation.scope == OpScope::Device {
        return Err(ApiError::not_found(format!(
            "{plugin}.{op} runs on a device: POST /api/v1/devices/{{id}}/extensions/{plugin}/{op}"
        )));
    }
    execute(
        &app,
        &caller,
        Target::Org,
        &plugin,
        &operation,
        &headers,
        input,
    )
    .await
}

/// Longest string of an input that the audit log keeps as it is.
const AUDITED_STRING_CHARS: usize = 100;

/// An action's input as the audit log keeps it: what the operation's input schema says is safe.
/// A top-level property marked `"writeOnly": true` is `"<secret>"`; one annotated
/// `"x-devext-audit": "length"` (a message body) is its length, `"omit"` leaves it out; any
/// other string over [`AUDITED_STRING_CHARS`] characters is its length too.
pub(crate) fn audited_input(input: &Value, schema: &Value) -> String {
    let Some(fields) = input.as_object() else {
        return input.to_string();
    };
    let mut kept = serde_json::Map::new();
    for (name, value) in fields {
        let declared = &schema["properties"][name.as_str()];
        let length = || match value {
            Value::String(s) => format!("<{} characters>", s.chars().count()),
            _ => "<not kept>".to_owned(),
        };
        let shown = if declared["writeOnly"] == json!(true) {
            json!("<secret>")
        } else {
            match declared["x-devext-audit"].as_str() {
                Some("omit") => continue,
                Some("length") => json!(length()),
                _ => match value {
                    Value::String(s) if s.chars().count() > AUDITED_STRING_CHARS => json!(length()),
                    other => other.clone(),
                },
            }
        };
        kept.insert(name.clone(), shown);
    }
    Value::Object(kept).to_string()
}

/// The operation's input: the JSON body, or `{}` when there is no body at all.
fn input_of(headers: &HeaderMap, body: Result<Json<Value>, JsonRejection>) -> ApiResult<Value> {
    match body {
        Ok(Json(v)) => Ok(v),
        // An empty body is an empty input.
        Err(JsonRejection::MissingJsonContentType(_))
            if headers.get(header::CONTENT_LENGTH).is_none_or(|l| l == "0") =>
        {
            Ok(json!({}))
        }
        Err(e) => Err(e.into()),
    }
}

/// What an operation runs on.
#[derive(Clone, Copy)]
enum Target<'a> {
    Device { id: &'a str, config: &'a Value },
    Org,
}

/// The operation `op` of the loaded plugin `plugin` (a copy of its manifest entry).
fn operation_or_404<S: Store>(app: &App<S>, plugin: &str, op: &str) -> ApiResult<Operation> {
    let loaded = plugin_or_404(&app.runtime, plugin)?;
    loaded
        .manifest()
        .operation(op)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("plugin {plugin} has no operation {op:?}")))
}

/// Runs `operation` on `target` for the caller: the role an action needs, the org's settings
/// (switched on), the input, the `Idempotency-Key` claim of an action, the call, its audit entry.
async fn execute<S: Store>(
    app: &App<S>,
    caller: &Caller,
    target: Target<'_>,
    plugin: &str,
    operation: &Operation,
    headers: &HeaderMap,
    input: Value,
) -> ApiResult<Response> {
    let op = operation.name.as_str();
    let is_action = operation.kind == OpKind::Action;
    // The route's own role (viewer) is checked already; an action needs more.
    if is_action {
        caller.require(ACTION_ROLE)?;
    }
    let settings = app
        .settings(caller.0.org_id, plugin)
        .await?
        .filter(|s| s.enabled)
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "the {plugin} extension is not switched on for this organisation"
            ))
        })?;
    let device_id = match target {
        Target::Device { id, .. } => Some(id),
        Target::Org => None,
    };
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
    if let Some(key) = &idempotency_key
        && is_action
    {
        if key.is_empty() || key.len() > 200 {
            return Err(ApiError::bad_request(
                "Idempotency-Key must have 1 to 200 characters",
            ));
        }
        let fingerprint = json!([device_id, plugin, op, input]).to_string();
        match app
            .store
            .claim_idempotency(caller.0.org_id, key, &fingerprint)
            .await?
        {
            IdempotencyClaim::Claimed => {}
            IdempotencyClaim::Done { status, body } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                let mut response = (status, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                response.headers_mut().insert(
                    "idempotent-replay",
                    header::HeaderValue::from_static("true"),
                );
                return Ok(response);
            }
            IdempotencyClaim::InProgress { since } => {
                // Longer than any call may run: the service stopped while running it.
                let limit = app.runtime.config().call_timeout * 2;
                let abandoned = chrono::DateTime::parse_from_rfc3339(&since)
                    .ok()
                    .and_then(|t| (chrono::Utc::now() - t.to_utc()).to_std().ok())
                    .is_some_and(|age| age > limit);
                let message = if abandoned {
                    format!(
                        "the request with this Idempotency-Key (started {since}) was interrupted \
                         and its outcome is unknown: check the device, then use a new key"
                    )
                } else {
                    "a request with this Idempotency-Key is still running".to_owned()
                };
                return Err(ApiError::conflict(message));
            }
            IdempotencyClaim::Unknown { since } => {
                return Err(ApiError::conflict(format!(
                    "the request with this Idempotency-Key (started {since}) was interrupted \
                     (the replica running it stopped) and its outcome is unknown: check the \
                     device, then use a new key"
                ))
                .details(json!({"outcome": "unknown"})));
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

    let org_config = settings.merged();
    let request = match target {
        Target::Device { config, .. } => CallRequest::new(plugin, op, &org_config, config, &input),
        Target::Org => CallRequest::org(plugin, op, &org_config, &input),
    };
    let result = app.runtime.invoke(request).await;
    let (status, body, outcome) = match result {
        Ok(output) => (StatusCode::OK, output, "ok".to_owned()),
        Err(e) => {
            let kind = e.kind.as_str().to_owned();
            let err = ApiError::from_plugin(e);
            (err.status, err.body(), kind)
        }
    };
    if is_action {
        let detail = format!("input: {}", audited_input(&input, &operation.input_schema));
        audit(
            app,
            caller,
            NewAudit {
                action: "operation",
                device_id,
                plugin: Some(plugin),
                op: Some(op),
                outcome: &outcome,
                detail: &detail,
                ..Default::default()
            },
        )
        .await;
        if let Some(key) = &idempotency_key {
            app.store
                .complete_idempotency(caller.0.org_id, key, status.as_u16(), &body.to_string())
                .await?;
        }
    }
    Ok((status, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_keeps_what_the_input_schema_says_is_safe() {
        let schema = json!({"properties": {
            "message": {"type": "string", "x-devext-audit": "length"},
            "pin": {"type": "string", "writeOnly": true},
            "note": {"type": "string", "x-devext-audit": "omit"},
            "status": {"type": "string"}
        }});
        let input = json!({
            "message": "meet me at noon", "pin": "1234", "note": "x", "status": "activated",
            "long": "y".repeat(101)
        });
        let kept: Value = serde_json::from_str(&audited_input(&input, &schema)).unwrap();
        assert_eq!(
            kept,
            json!({
                "message": "<15 characters>", "pin": "<secret>", "status": "activated",
                "long": "<101 characters>"
            })
        );
    }
}
