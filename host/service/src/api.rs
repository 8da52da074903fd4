//! The HTTP API (`/api/v1`): plugins, keys, extension settings, devices, the drilldown and its
//! operations, the audit log; plus `/healthz`, `/readyz`, `/metrics` and the OpenAPI document.
//!
//! Every route is declared once in [`routes`], which both builds the router and generates the
//! OpenAPI document, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use devext_plugin_api::{ErrorKind, OpKind, PluginError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::memo::Memo;
use crate::metrics::HttpMetrics;
use crate::store::{
    DeviceQuery, ExtensionSettings, IdempotencyClaim, NewAudit, Principal, Role, Store, StoreError,
};
use devext_host::{CallRequest, Runtime, Violation};

/// What a secret looks like when a client sends a masked value back.
pub const SECRET_MASK: &str = "********";

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The service's shared state.
pub struct App<S> {
    /// The plugins.
    pub runtime: Runtime,
    /// The store.
    pub store: S,
    /// HTTP counters.
    pub metrics: HttpMetrics,
    /// False once shutdown began (`/readyz` turns 503).
    pub ready: AtomicBool,
    /// SHA-256 of an API key -> its principal (`None`: not a valid key).
    keys: Memo<Vec<u8>, Option<Principal>>,
    /// (org, plugin) -> the org's settings for the plugin.
    settings: Memo<(i64, String), Option<ExtensionSettings>>,
    /// (org, device id) -> the device, for running operations.
    devices: Memo<(i64, String), Option<crate::store::Device>>,
}

/// Devices memoised for running operations (see [`App::device_for_op`]).
const DEVICE_MEMO_ENTRIES: usize = 1_000;

impl<S: Store> App<S> {
    /// Shared state over `runtime` and `store`.
    pub fn new(runtime: Runtime, store: S) -> Arc<Self> {
        Arc::new(App {
            runtime,
            store,
            metrics: HttpMetrics::default(),
            ready: AtomicBool::new(true),
            keys: Memo::default(),
            settings: Memo::default(),
            // Enough for the devices someone is looking at right now; a scan over many devices
            // (each read once) must not fill memory with memos nobody reads again.
            devices: Memo::with_capacity(DEVICE_MEMO_ENTRIES),
        })
    }

    /// A device of the org, for running an operation (memoised; see [`crate::memo`]).
    async fn device_for_op(
        &self,
        org_id: i64,
        id: &str,
    ) -> Result<Option<crate::store::Device>, StoreError> {
        let key = (org_id, id.to_owned());
        if let Some(known) = self.devices.get(&key) {
            return Ok(known);
        }
        let found = self.store.device(org_id, id).await?;
        self.devices.put(key, found.clone());
        Ok(found)
    }

    /// The principal of an API key (memoised; see [`crate::memo`]).
    async fn principal(&self, key: &str) -> Result<Option<Principal>, StoreError> {
        let hash = crate::crypto::key_hash(key);
        if let Some(known) = self.keys.get(&hash) {
            return Ok(known);
        }
        let found = self.store.authenticate(key).await?;
        self.keys.put(hash, found.clone());
        Ok(found)
    }

    /// The org's settings for `plugin` (memoised; see [`crate::memo`]).
    async fn settings(
        &self,
        org_id: i64,
        plugin: &str,
    ) -> Result<Option<ExtensionSettings>, StoreError> {
        let key = (org_id, plugin.to_owned());
        if let Some(known) = self.settings.get(&key) {
            return Ok(known);
        }
        let found = self.store.extension(org_id, plugin).await?;
        self.settings.put(key, found.clone());
        Ok(found)
    }
}

type AppState<S> = State<Arc<App<S>>>;

// ----------------------------------------------------------------------------------------------
// Errors

/// An error response: `{"error": {"kind", "message", "details"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            details: Value::Null,
        }
    }

    fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid API key is required: Authorization: Bearer dvx_...",
        )
    }

    fn forbidden(needed: Role, have: Role) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs the {} role; the key has {}",
                needed.as_str(),
                have.as_str()
            ),
        )
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn violations(message: impl Into<String>, violations: Vec<Violation>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
            .details(json!({ "violations": violations }))
    }

    /// The HTTP form of an operation's error.
    fn from_plugin(e: PluginError) -> Self {
        let status = match e.kind {
            ErrorKind::InvalidInput if e.details.get("violations").is_some() => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            // The service rejected the org's credentials, failed, or was out of reach: never
            // 401/403, which are about the devext key.
            ErrorKind::Unauthorized | ErrorKind::Upstream | ErrorKind::Forbidden => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut details = if e.details.is_object() {
            e.details
        } else {
            json!({})
        };
        details["retryable"] = json!(e.retryable);
        ApiError {
            status,
            kind: e.kind.as_str(),
            message: e.message,
            details,
        }
    }

    fn body(&self) -> Value {
        let mut error = json!({"kind": self.kind, "message": self.message});
        if !self.details.is_null() {
            error["details"] = self.details.clone();
        }
        json!({ "error": error })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the store failed; nothing was changed",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        ApiError::new(
            if status == StatusCode::UNPROCESSABLE_ENTITY {
                StatusCode::BAD_REQUEST
            } else {
                status
            },
            kind,
            r.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ----------------------------------------------------------------------------------------------
// Authentication

/// The caller, from `Authorization: Bearer <key>`.
pub struct Caller(pub Principal);

impl Caller {
    fn require(&self, role: Role) -> ApiResult<()> {
        if self.0.role.allows(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(role, self.0.role))
        }
    }
}

impl<S: Store> FromRequestParts<Arc<App<S>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App<S>>) -> ApiResult<Self> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        if !key.starts_with("dvx_") {
            return Err(ApiError::unauthorized());
        }
        match app.principal(key).await? {
            Some(p) => Ok(Caller(p)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Route table

/// One documented route.
pub struct Route<S> {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// Axum path (`/api/v1/devices/{id}`).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// The least role needed; `None`: no key needed.
    pub role: Option<Role>,
    /// JSON Schema of the request body, if any.
    pub body: Option<Value>,
    /// The success status.
    pub ok: u16,
    handler: MethodRouter<Arc<App<S>>>,
}

fn route<S>(
    method: Method,
    path: &'static str,
    summary: &'static str,
    role: Option<Role>,
    body: Option<Value>,
    ok: u16,
    handler: MethodRouter<Arc<App<S>>>,
) -> Route<S> {
    Route {
        method,
        path,
        summary,
        role,
        body,
        ok,
        handler,
    }
}

/// Every route of the service.
pub fn routes<S: Store>() -> Vec<Route<S>> {
    use Role::{Admin, Viewer};
    let settings_body = json!({
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean"},
            "config": {"type": "object", "description": "The plugin's org settings; secrets left out (or sent as \"********\") keep their stored value"}
        },
        "required": ["enabled"],
        "additionalProperties": false
    });
    let device_body = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "type": {"type": ["string", "null"], "maxLength": 100},
            "extensions": {"type": "object", "description": "Extension configuration keyed by plugin name"}
        },
        "required": ["name"],
        "additionalProperties": false
    });
    vec![
        route(
            Method::GET,
            "/healthz",
            "Liveness",
            None,
            None,
            200,
            get(healthz),
        ),
        route(
            Method::GET,
            "/readyz",
            "Readiness (503 while shutting down)",
            None,
            None,
            200,
            get(readyz::<S>),
        ),
        route(
            Method::GET,
            "/metrics",
            "Prometheus metrics",
            None,
            None,
            200,
            get(metrics::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/openapi.json",
            "This document",
            None,
            None,
            200,
            get(openapi::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/plugins",
            "Loaded plugins: manifests and schemas",
            Some(Viewer),
            None,
            200,
            get(list_plugins::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/keys",
            "The org's API keys",
            Some(Admin),
            None,
            200,
            get(list_keys::<S>),
        ),
        route(
            Method::POST,
            "/api/v1/keys",
            "Create an API key (shown once)",
            Some(Admin),
            Some(json!({
                "type": "object",
                "properties": {"role": {"enum": ["admin", "operator", "viewer"]}, "name": {"type": "string", "maxLength": 100}},
                "required": ["role"], "additionalProperties": false
            })),
            201,
            post(create_key::<S>),
        ),
        route(
            Method::DELETE,
            "/api/v1/keys/{id}",
            "Revoke an API key",
            Some(Admin),
            None,
            204,
            delete(revoke_key::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/extensions",
            "The org's settings for every loaded plugin (secrets masked)",
            Some(Viewer),
            None,
            200,
            get(list_extensions::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/extensions/{plugin}",
            "The org's settings for a plugin (secrets masked)",
            Some(Viewer),
            None,
            200,
            get(get_extension::<S>),
        ),
        route(
            Method::PUT,
            "/api/v1/extensions/{plugin}",
            "Switch a plugin on or off and set its org settings",
            Some(Admin),
            Some(settings_body),
            200,
            put(put_extension::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/devices",
            "Devices, paged; filter by name or ICCID",
            Some(Viewer),
            None,
            200,
            get(list_devices::<S>),
        ),
        route(
            Method::POST,
            "/api/v1/devices",
            "Create a device",
            Some(Admin),
            Some(device_body.clone()),
            201,
            post(create_device::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/devices/{id}",
            "A device",
            Some(Viewer),
            None,
            200,
            get(get_device::<S>),
        ),
        route(
            Method::PUT,
            "/api/v1/devices/{id}",
            "Replace a device",
            Some(Admin),
            Some(device_body),
            200,
            put(update_device::<S>),
        ),
        route(
            Method::DELETE,
            "/api/v1/devices/{id}",
            "Delete a device",
            Some(Admin),
            None,
            204,
            delete(delete_device::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/devices/{id}/extensions",
            "The device's drilldown: usable extensions and their operations",
            Some(Viewer),
            None,
            200,
            get(drilldown::<S>),
        ),
        route(
            Method::POST,
            "/api/v1/devices/{id}/extensions/{plugin}/{op}",
            "Run an operation (views: viewer; actions: operator; actions accept Idempotency-Key)",
            Some(Viewer),
            Some(
                json!({"type": "object", "description": "The operation's input (see its input_schema)"}),
            ),
            200,
            post(run_op::<S>),
        ),
        route(
            Method::GET,
            "/api/v1/audit",
            "The org's audit log, newest first",
            Some(Admin),
            None,
            200,
            get(audit_log::<S>),
        ),
    ]
}

/// The router of the whole service.
pub fn router<S: Store>(app: Arc<App<S>>) -> Router {
    let mut router = Router::new();
    for r in routes::<S>() {
        router = router.route(r.path, r.handler);
    }
    router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(
            app.clone(),
            count_requests::<S>,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

async fn count_requests<S: Store>(State(app): AppState<S>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    app.metrics
        .record(method.as_str(), &route, response.status().as_u16());
    response
}

// ----------------------------------------------------------------------------------------------
// Open endpoints

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz<S: Store>(State(app): AppState<S>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        Json(json!({"status": "ready", "plugins": app.runtime.plugin_names()})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting down"})),
        )
            .into_response()
    }
}

async fn metrics<S: Store>(State(app): AppState<S>) -> Response {
    let text = app.metrics.render(&app.runtime);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi<S: Store>() -> Json<Value> {
    Json(openapi_document::<S>())
}

/// The OpenAPI 3.1 document, generated from [`routes`].
pub fn openapi_document<S: Store>() -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for r in routes::<S>() {
        let mut op = json!({
            "summary": r.summary,
            "responses": {
                r.ok.to_string(): {"description": "success"},
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(body) = r.body {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": body}}});
        }
        match r.role {
            Some(role) => {
                op["security"] = json!([{"bearer": []}]);
                op["x-devext-role"] = json!(role.as_str());
            }
            None => op["security"] = json!([]),
        }
        paths
            .entry(r.path)
            .or_default()
            .insert(r.method.as_str().to_ascii_lowercase(), op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "devext", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Extensions for IoT devices: settings, devices, drilldown operations."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "API key dvx_..."}},
            "schemas": {"Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "kind": {"type": "string"}, "message": {"type": "string"}, "details": {}
                }, "required": ["kind", "message"]}},
                "required": ["error"]
            }}
        }
    })
}

// ----------------------------------------------------------------------------------------------
// Plugins and keys

async fn list_plugins<S: Store>(State(app): AppState<S>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Role::Viewer)?;
    let plugins: Vec<Value> = app
        .runtime
        .plugins()
        .map(|p| json!({"manifest": p.manifest(), "source": p.source().to_string()}))
        .collect();
    Ok(Json(json!({ "items": plugins })))
}

async fn list_keys<S: Store>(State(app): AppState<S>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Role::Admin)?;
    let keys = app.store.list_keys(caller.0.org_id).await?;
    Ok(Json(json!({ "items": keys })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    role: Role,
    #[serde(default)]
    name: String,
}

async fn create_key<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    body: Result<Json<NewKey>, JsonRejection>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
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

async fn revoke_key<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
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

async fn audit<S: Store>(app: &App<S>, caller: &Caller, entry: NewAudit<'_>) {
    let entry = NewAudit {
        key_id: Some(&caller.0.key_id),
        ..entry
    };
    if let Err(e) = app.store.audit(caller.0.org_id, entry).await {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

// ----------------------------------------------------------------------------------------------
// Extension settings

/// Top-level org-config properties marked `writeOnly` in the plugin's schema.
pub fn secret_fields(schema: &Value) -> Vec<String> {
    schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| p["writeOnly"] == json!(true))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn settings_view(plugin: &str, settings: Option<&ExtensionSettings>) -> Value {
    match settings {
        Some(s) => {
            let mut set: Vec<&String> = s.secrets.keys().collect();
            set.sort();
            json!({"plugin": plugin, "enabled": s.enabled, "config": s.config, "secrets_set": set})
        }
        None => json!({"plugin": plugin, "enabled": false, "config": {}, "secrets_set": []}),
    }
}

fn plugin_or_404<'a>(app: &'a Runtime, plugin: &str) -> ApiResult<&'a devext_host::LoadedPlugin> {
    app.plugin(plugin).ok_or_else(|| {
        ApiError::not_found(format!(
            "no plugin {plugin:?}; loaded plugins are {}",
            app.plugin_names().join(", ")
        ))
    })
}

async fn list_extensions<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Viewer)?;
    let stored = app.store.extensions(caller.0.org_id).await?;
    let items: Vec<Value> = app
        .runtime
        .plugin_names()
        .into_iter()
        .map(|name| settings_view(name, stored.iter().find(|s| s.plugin == name)))
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn get_extension<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    Path(plugin): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Viewer)?;
    plugin_or_404(&app.runtime, &plugin)?;
    let stored = app.store.extension(caller.0.org_id, &plugin).await?;
    Ok(Json(settings_view(&plugin, stored.as_ref())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    enabled: bool,
    #[serde(default)]
    config: Map<String, Value>,
}

async fn put_extension<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    Path(plugin): Path<String>,
    body: Result<Json<SettingsBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Admin)?;
    let Json(body) = body?;
    let loaded = plugin_or_404(&app.runtime, &plugin)?;
    let secret_names = secret_fields(&loaded.manifest().org_config_schema);
    let stored = app.store.extension(caller.0.org_id, &plugin).await?;
    let mut config = Map::new();
    let mut secrets = stored
        .as_ref()
        .map(|s| s.secrets.clone())
        .unwrap_or_default();
    for (name, value) in body.config {
        if secret_names.contains(&name) {
            match value {
                // A mask sent back never overwrites the stored secret.
                Value::String(s) if s == SECRET_MASK => {}
                Value::Null => {
                    secrets.remove(&name);
                }
                v => {
                    secrets.insert(name, v);
                }
            }
        } else {
            config.insert(name, value);
        }
    }
    let settings = ExtensionSettings {
        plugin: plugin.clone(),
        enabled: body.enabled,
        config,
        secrets,
    };
    if let Err(violations) = app.runtime.validate_org_config(&plugin, &settings.merged()) {
        let violations: Vec<Violation> = violations
            .into_iter()
            .map(|v| Violation {
                pointer: format!("/config{}", v.pointer),
                ..v
            })
            .collect();
        audit(
            &app,
            &caller,
            NewAudit {
                action: "settings",
                plugin: Some(&plugin),
                op: Some("update"),
                outcome: "invalid_input",
                ..Default::default()
            },
        )
        .await;
        return Err(ApiError::violations(
            format!("the settings for {plugin} are invalid"),
            violations,
        ));
    }
    app.store.put_extension(caller.0.org_id, &settings).await?;
    app.settings.forget(&(caller.0.org_id, plugin.clone()));
    let changed = format!(
        "enabled={}; secrets set: {}",
        settings.enabled,
        settings
            .secrets
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    );
    audit(
        &app,
        &caller,
        NewAudit {
            action: "settings",
            plugin: Some(&plugin),
            op: Some("update"),
            outcome: "ok",
            detail: &changed,
            ..Default::default()
        },
    )
    .await;
    Ok(Json(settings_view(&plugin, Some(&settings))))
}

// ----------------------------------------------------------------------------------------------
// Devices

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    name: String,
    #[serde(default, rename = "type")]
    device_type: Option<String>,
    #[serde(default)]
    extensions: Option<Value>,
}

impl DeviceBody {
    fn check(&self, runtime: &Runtime) -> ApiResult<Value> {
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
        for v in runtime.validate_device_extensions(&extensions) {
            violations.push(Violation {
                pointer: format!("/extensions{}", v.pointer),
                ..v
            });
        }
        if violations.is_empty() {
            Ok(extensions)
        } else {
            Err(ApiError::violations("the device is invalid", violations))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceListQuery {
    name: Option<String>,
    iccid: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

async fn list_devices<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    query: Result<Query<DeviceListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Viewer)?;
    let Query(q) = query?;
    let (items, next) = app
        .store
        .devices(
            caller.0.org_id,
            &DeviceQuery {
                name: q.name,
                iccid: q.iccid,
                cursor: q.cursor,
                limit: q.limit.unwrap_or(50).clamp(1, 500),
            },
        )
        .await?;
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

async fn create_device<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    body: Result<Json<DeviceBody>, JsonRejection>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let Json(body) = body?;
    let extensions = body.check(&app.runtime)?;
    let device = app
        .store
        .create_device(
            caller.0.org_id,
            &body.name,
            body.device_type.as_deref(),
            &extensions,
        )
        .await?;
    audit(
        &app,
        &caller,
        NewAudit {
            action: "device",
            device_id: Some(&device.id),
            op: Some("create"),
            outcome: "ok",
            ..Default::default()
        },
    )
    .await;
    Ok((StatusCode::CREATED, Json(device)).into_response())
}

async fn device_or_404<S: Store>(
    app: &App<S>,
    caller: &Caller,
    id: &str,
) -> ApiResult<crate::store::Device> {
    app.store
        .device(caller.0.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id:?}")))
}

async fn get_device<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::store::Device>> {
    caller.require(Role::Viewer)?;
    Ok(Json(device_or_404(&app, &caller, &id).await?))
}

async fn update_device<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<DeviceBody>, JsonRejection>,
) -> ApiResult<Json<crate::store::Device>> {
    caller.require(Role::Admin)?;
    let Json(body) = body?;
    let extensions = body.check(&app.runtime)?;
    let device = app
        .store
        .update_device(
            caller.0.org_id,
            &id,
            &body.name,
            body.device_type.as_deref(),
            &extensions,
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id:?}")))?;
    app.devices.forget(&(caller.0.org_id, id.clone()));
    audit(
        &app,
        &caller,
        NewAudit {
            action: "device",
            device_id: Some(&id),
            op: Some("update"),
            outcome: "ok",
            ..Default::default()
        },
    )
    .await;
    Ok(Json(device))
}

async fn delete_device<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let deleted = app.store.delete_device(caller.0.org_id, &id).await?;
    app.devices.forget(&(caller.0.org_id, id.clone()));
    if !deleted {
        return Err(ApiError::not_found(format!("no device {id:?}")));
    }
    audit(
        &app,
        &caller,
        NewAudit {
            action: "device",
            device_id: Some(&id),
            op: Some("delete"),
            outcome: "ok",
            ..Default::default()
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ----------------------------------------------------------------------------------------------
// Drilldown and operations

async fn drilldown<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Viewer)?;
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
                .filter(|o| o.scope == devext_host::OpScope::Device)
                .map(|o| {
                    let needed = if o.kind == OpKind::Action {
                        Role::Operator
                    } else {
                        Role::Viewer
                    };
                    json!({
                        "name": o.name, "title": o.title, "description": o.description,
                        "kind": o.kind.as_str(), "destructive": o.destructive,
                        "input_schema": o.input_schema, "output_schema": o.output_schema,
                        "allowed": caller_role.allows(needed),
                    })
                })
                .collect();
        }
        items.push(item);
    }
    Ok(Json(json!({"device": device.id, "extensions": items})))
}

async fn run_op<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    Path((id, plugin, op)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let device = app
        .device_for_op(caller.0.org_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id:?}")))?;
    let loaded = plugin_or_404(&app.runtime, &plugin)?;
    let Some(operation) = loaded.manifest().operation(&op) else {
        return Err(ApiError::not_found(format!(
            "plugin {plugin} has no operation {op:?}"
        )));
    };
    let is_action = operation.kind == OpKind::Action;
    caller.require(if is_action {
        Role::Operator
    } else {
        Role::Viewer
    })?;
    let Some(device_config) = device.extensions.get(&plugin).cloned() else {
        return Err(ApiError::not_found(format!(
            "device {id} has no {plugin} configuration"
        )));
    };
    let settings = app
        .settings(caller.0.org_id, &plugin)
        .await?
        .filter(|s| s.enabled)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("the {plugin} extension is not switched on for this organisation"),
            )
        })?;
    let input = match body {
        Ok(Json(v)) => v,
        // An empty body is an empty input.
        Err(JsonRejection::MissingJsonContentType(_))
            if headers.get(header::CONTENT_LENGTH).is_none_or(|l| l == "0") =>
        {
            json!({})
        }
        Err(e) => return Err(e.into()),
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
        let fingerprint = json!([id, plugin, op, input]).to_string();
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
                return Err(ApiError::new(StatusCode::CONFLICT, "conflict", message));
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

    let result = app
        .runtime
        .invoke(CallRequest {
            plugin: &plugin,
            op: &op,
            org_config: &settings.merged(),
            device_config: &device_config,
            input: &input,
            timeout: None,
        })
        .await;
    let (status, body, outcome) = match result {
        Ok(output) => (StatusCode::OK, output, "ok".to_owned()),
        Err(e) => {
            let kind = e.kind.as_str().to_owned();
            let err = ApiError::from_plugin(e);
            (err.status, err.body(), kind)
        }
    };
    if is_action {
        audit(
            &app,
            &caller,
            NewAudit {
                action: "operation",
                device_id: Some(&id),
                plugin: Some(&plugin),
                op: Some(&op),
                outcome: &outcome,
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

// ----------------------------------------------------------------------------------------------
// Audit

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

async fn audit_log<S: Store>(
    State(app): AppState<S>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Admin)?;
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let items = app
        .store
        .audit_log(caller.0.org_id, q.before, limit)
        .await?;
    let next = if items.len() == limit as usize {
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(json!({"items": items, "next_cursor": next})))
}
