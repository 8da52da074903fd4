//! The route table: every route of the service declared once, with its least role, its body
//! schema and limit, and its query parameters. [`router`] builds the router from it (each
//! route's role and body limit enforced by layers from its entry) and [`openapi_document`] the
//! OpenAPI document (`/api/v1/openapi.json`), so that neither can drift from the other.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use devext_host::Runtime;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::state::App;
use super::{audit, auth, devices, health, keys, ops, page, plugins, request_id, settings};
use crate::lookup::FILTER_PREFIX;
use crate::store::{Role, Store};

/// Largest accepted request body (the limit of every route that takes one).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// One documented route.
pub struct Route<S> {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// Axum path (`/api/v1/devices/{id}`).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// More about the route (e.g. a role that depends on the request's data), if anything.
    pub description: Option<&'static str>,
    /// The least role needed, checked before the handler runs; `None`: no key needed.
    pub role: Option<Role>,
    /// The role an operation of kind `action` needs on this route, checked by the handler
    /// (it depends on the operation named in the path).
    pub action_role: Option<Role>,
    /// JSON Schema of the request body, if any.
    pub body: Option<Value>,
    /// Largest accepted body, bytes (0 for routes without a body).
    pub body_limit: usize,
    /// Query parameters (besides the lookup filters).
    pub query: Vec<QueryParam>,
    /// Whether the route takes the device lookup filters `ext.<plugin>.<field>=value`.
    pub lookup_filters: bool,
    /// The success status.
    pub ok: u16,
    handler: MethodRouter<Arc<App<S>>>,
}

/// A documented query parameter.
#[derive(Debug, Clone)]
pub struct QueryParam {
    /// Its name.
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// JSON Schema of its value.
    pub schema: Value,
}

fn param(name: &'static str, description: &'static str, schema: Value) -> QueryParam {
    QueryParam {
        name,
        description,
        schema,
    }
}

/// A route without role, body or query parameters, answering 200.
fn route<S>(
    method: Method,
    path: &'static str,
    summary: &'static str,
    handler: MethodRouter<Arc<App<S>>>,
) -> Route<S> {
    Route {
        method,
        path,
        summary,
        description: None,
        role: None,
        action_role: None,
        body: None,
        body_limit: 0,
        query: Vec::new(),
        lookup_filters: false,
        ok: 200,
        handler,
    }
}

impl<S> Route<S> {
    fn role(self, role: Role) -> Self {
        Route {
            role: Some(role),
            ..self
        }
    }

    fn action_role(self, role: Role) -> Self {
        Route {
            action_role: Some(role),
            ..self
        }
    }

    fn body(self, schema: Value, limit: usize) -> Self {
        Route {
            body: Some(schema),
            body_limit: limit,
            ..self
        }
    }

    fn ok(self, ok: u16) -> Self {
        Route { ok, ..self }
    }

    fn description(self, description: &'static str) -> Self {
        Route {
            description: Some(description),
            ..self
        }
    }

    fn query(self, query: Vec<QueryParam>) -> Self {
        Route { query, ..self }
    }

    fn lookup_filters(self) -> Self {
        Route {
            lookup_filters: true,
            ..self
        }
    }
}

/// Every route of the service.
pub fn routes<S: Store>() -> Vec<Route<S>> {
    use Method as M;
    use Role::{Admin, Viewer};
    let settings_body = json!({
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean"},
            "config": {"type": "object", "description": "The plugin's org settings, replacing the stored ones; secrets left out (or sent as \"********\") keep their stored value. Left out: the stored settings, secrets included, stay as they are (`{\"enabled\": false}` switches the plugin off and nothing else)"}
        },
        "required": ["enabled"],
        "additionalProperties": false
    });
    let device_body = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "type": {"type": ["string", "null"], "maxLength": 100},
            "extensions": {"type": "object", "description": "Extension configuration keyed by plugin name; a plugin's lookup fields are unique within the organisation (409 otherwise)"}
        },
        "required": ["name"],
        "additionalProperties": false
    });
    let key_body = json!({
        "type": "object",
        "properties": {"role": {"enum": ["admin", "operator", "viewer"]}, "name": {"type": "string", "maxLength": 100}},
        "required": ["role"], "additionalProperties": false
    });
    let op_body =
        json!({"type": "object", "description": "The operation's input (see its input_schema)"});
    let page = |next: &'static str| {
        vec![
            param(
                next,
                "Continue after this cursor (`next_cursor` of the previous page)",
                json!({"type": "integer"}),
            ),
            param(
                "limit",
                "Page size: 1 to 500 (another value is a 400); 50 if not given",
                json!({"type": "integer", "minimum": page::MIN_LIMIT, "maximum": page::MAX_LIMIT,
                       "default": page::DEFAULT_LIMIT}),
            ),
        ]
    };
    let mut device_query = vec![param(
        "name",
        "Devices whose name contains this (case-insensitive)",
        json!({"type": "string"}),
    )];
    device_query.extend(page("cursor"));
    vec![
        route(M::GET, "/healthz", "Liveness", get(health::healthz)),
        route(
            M::GET,
            "/readyz",
            "Readiness (503 while shutting down)",
            get(health::readyz::<S>),
        ),
        route(
            M::GET,
            "/metrics",
            "Prometheus metrics",
            get(health::metrics::<S>),
        ),
        route(
            M::GET,
            "/api/v1/openapi.json",
            "This document",
            get(openapi::<S>),
        ),
        route(
            M::GET,
            "/api/v1/plugins",
            "Loaded plugins: manifests and schemas",
            get(plugins::list_plugins::<S>),
        )
        .role(Viewer),
        route(
            M::GET,
            "/api/v1/keys",
            "The org's API keys",
            get(keys::list_keys::<S>),
        )
        .role(Admin),
        route(
            M::POST,
            "/api/v1/keys",
            "Create an API key (shown once)",
            post(keys::create_key::<S>),
        )
        .role(Admin)
        .body(key_body, MAX_BODY_BYTES)
        .ok(201),
        route(
            M::DELETE,
            "/api/v1/keys/{id}",
            "Revoke an API key",
            delete(keys::revoke_key::<S>),
        )
        .role(Admin)
        .ok(204),
        route(
            M::GET,
            "/api/v1/extensions",
            "The org's settings for every loaded plugin (secrets masked)",
            get(settings::list_extensions::<S>),
        )
        .role(Viewer),
        route(
            M::GET,
            "/api/v1/extensions/{plugin}",
            "The org's settings for a plugin (secrets masked)",
            get(settings::get_extension::<S>),
        )
        .role(Viewer),
        route(
            M::PUT,
            "/api/v1/extensions/{plugin}",
            "Switch a plugin on or off and set its org settings",
            put(settings::put_extension::<S>),
        )
        .role(Admin)
        .body(settings_body, MAX_BODY_BYTES),
        route(
            M::GET,
            "/api/v1/devices",
            "Devices, paged; filter by name or by a plugin's lookup field",
            get(devices::list_devices::<S>),
        )
        .role(Viewer)
        .description(
            "Lookup filters are `ext.{plugin}.{field}=value`, one per lookup field a loaded \
             plugin declares (`lookup_fields` in its manifest); several filters must all match.",
        )
        .query(device_query)
        .lookup_filters(),
        route(
            M::POST,
            "/api/v1/devices",
            "Create a device",
            post(devices::create_device::<S>),
        )
        .role(Admin)
        .body(device_body.clone(), MAX_BODY_BYTES)
        .ok(201),
        route(
            M::GET,
            "/api/v1/devices/{id}",
            "A device",
            get(devices::get_device::<S>),
        )
        .role(Viewer),
        route(
            M::PUT,
            "/api/v1/devices/{id}",
            "Replace a device",
            put(devices::update_device::<S>),
        )
        .role(Admin)
        .body(device_body, MAX_BODY_BYTES),
        route(
            M::DELETE,
            "/api/v1/devices/{id}",
            "Delete a device",
            delete(devices::delete_device::<S>),
        )
        .role(Admin)
        .ok(204),
        route(
            M::POST,
            "/api/v1/validate/extensions",
            "Check an extension configuration without saving it",
            post(devices::validate_extensions::<S>),
        )
        .role(Viewer)
        .description(
            "The body is the configuration as JSON text, checked as `devext validate` checks a \
             file: 200 (with declared warnings) when valid, else 422 with \
             `details.diagnostics[]` (kind, line, column, pointer, keyword, message).",
        )
        .body(
            json!({"type": "object", "description": "Extension configuration keyed by plugin name"}),
            MAX_BODY_BYTES,
        ),
        route(
            M::GET,
            "/api/v1/devices/{id}/extensions",
            "The device's drilldown: usable extensions and their operations",
            get(ops::drilldown::<S>),
        )
        .role(Viewer)
        .description(
            "Each configured extension, whether it can be used (and why not), and its device \
             operations (name, kind, whether the caller may run it). The operations' input \
             and output schemas are in the plugins' manifests (`GET /api/v1/plugins`), fetched \
             once rather than with every device.",
        )
        .query(vec![param(
            "include",
            "`views`: also run every view of each usable extension that needs no input (served \
             from the view cache while fresh, with `as_of`), under `views` by name: \
             `{\"result\": ...}` or `{\"error\": ...}`",
            json!({"type": "string", "enum": ["views"]}),
        )]),
        route(
            M::POST,
            "/api/v1/devices/{id}/extensions/{plugin}/{op}",
            "Run an operation (views: viewer; actions: operator; actions accept Idempotency-Key)",
            post(ops::run_op::<S>),
        )
        .role(Viewer)
        .action_role(ops::ACTION_ROLE)
        .description(
            "The route needs viewer; running an operation of kind `action` needs operator \
             (`x-devext-action-role`; the operation's kind is in the drilldown and the plugin's \
             manifest).",
        )
        .body(op_body.clone(), MAX_BODY_BYTES),
        route(
            M::POST,
            "/api/v1/extensions/{plugin}/{op}",
            "Run an organisation operation (`scope: org`): the org's settings only, no device \
             (views: viewer; actions: operator; actions accept Idempotency-Key)",
            post(ops::run_org_op::<S>),
        )
        .role(Viewer)
        .action_role(ops::ACTION_ROLE)
        .description(
            "For operations whose manifest entry says `\"scope\": \"org\"` (a connection test, a \
             list of the account's rate plans). The route needs viewer; an `action` needs \
             operator (`x-devext-action-role`).",
        )
        .body(op_body, MAX_BODY_BYTES),
        route(
            M::POST,
            "/api/v1/jobs",
            "Create a bulk job: one operation on many devices, run in the background",
            post(crate::jobs::create_job::<S>),
        )
        .role(Viewer)
        .action_role(ops::ACTION_ROLE)
        .description(
            "Answers 202 with the job at once. The operation's role applies (a view: viewer; an \
             action: operator, `x-devext-action-role`), checked now, as is the input against \
             the operation's input schema. A destructive operation selecting more than 5 \
             devices needs `confirm` equal to the selected count (else 409 \
             `confirmation_required` with `details.total`). Accepts Idempotency-Key.",
        )
        .body(crate::jobs::create_body_schema(), MAX_BODY_BYTES)
        .ok(202),
        route(
            M::GET,
            "/api/v1/jobs",
            "The org's bulk jobs, newest first, with their progress",
            get(crate::jobs::list_jobs::<S>),
        )
        .role(Viewer)
        .query(vec![
            param(
                "cursor",
                "Continue after this cursor (`next` of the previous page)",
                json!({"type": "string"}),
            ),
            param(
                "limit",
                "Page size: 1 to 500 (another value is a 400); 50 if not given",
                json!({"type": "integer", "minimum": page::MIN_LIMIT, "maximum": page::MAX_LIMIT,
                       "default": page::DEFAULT_LIMIT}),
            ),
        ]),
        route(
            M::GET,
            "/api/v1/jobs/{id}",
            "A bulk job and its progress (counts, rate, time left)",
            get(crate::jobs::get_job::<S>),
        )
        .role(Viewer),
        route(
            M::GET,
            "/api/v1/jobs/{id}/results",
            "A bulk job's results, one record per device in selection order: JSON Lines, or \
             CSV with `Accept: text/csv`",
            get(crate::jobs::job_results::<S>),
        )
        .role(Viewer),
        route(
            M::POST,
            "/api/v1/jobs/{id}/cancel",
            "Cancel a bulk job: items in flight finish, the rest are skipped (409 if it ended)",
            post(crate::jobs::cancel_job::<S>),
        )
        .role(Role::Operator),
        route(
            M::GET,
            "/api/v1/audit",
            "The org's audit log, newest first",
            get(audit::audit_log::<S>),
        )
        .role(Admin)
        .query({
            let mut q = vec![param(
                "device",
                "Only this device's entries (its id)",
                json!({"type": "string"}),
            )];
            q.extend(page("before"));
            q
        }),
    ]
}

/// The router of the whole service: each route of [`routes`] with its body limit and, when it
/// has a role, the middleware that authenticates the key and checks the role.
pub fn router<S: Store>(app: Arc<App<S>>) -> Router {
    let mut router = Router::new();
    let mut methods: BTreeMap<&'static str, Vec<Method>> = BTreeMap::new();
    for r in routes::<S>() {
        methods.entry(r.path).or_default().push(r.method.clone());
        let mut handler = r.handler.layer(DefaultBodyLimit::max(r.body_limit));
        if let Some(role) = r.role {
            // `route_layer`: a method the route does not have still answers 405, not 401.
            handler = handler.route_layer(middleware::from_fn_with_state(
                (app.clone(), role),
                auth::authorize::<S>,
            ));
        }
        router = router.route(r.path, handler);
    }
    // The dashboard's pages, beside the API (outside the route table: HTML, session-signed).
    router = router.merge(crate::dashboard::routes::<S>());
    // The same JSON error body as every other error: a path with no route is a 404, a method a
    // path does not have a 405 (axum keeps its `Allow` header). Both after every route: the 405
    // fallback is set on the routes registered before it, outside their role check.
    let methods = Arc::new(methods);
    router
        .method_not_allowed_fallback(move |method: Method, matched: Option<MatchedPath>| {
            let methods = methods.clone();
            async move { method_not_allowed(&method, matched.as_ref(), &methods) }
        })
        .fallback(|method: Method, uri: Uri| async move { no_route(&method, &uri) })
        .layer(middleware::from_fn_with_state(
            app.clone(),
            count_requests::<S>,
        ))
        // Outermost: every log line and audit entry of the request carries its id.
        .layer(middleware::from_fn(request_id::assign))
        .with_state(app)
}

/// The 404 of a request no route matches.
fn no_route(method: &Method, uri: &Uri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint {method} {}: the endpoints are listed in /api/v1/openapi.json",
        uri.path()
    ))
}

/// The 405 of a request whose path has routes, none of them for its method.
fn method_not_allowed(
    method: &Method,
    matched: Option<&MatchedPath>,
    methods: &BTreeMap<&'static str, Vec<Method>>,
) -> ApiError {
    let path = matched.map_or("this path", MatchedPath::as_str);
    let allowed = methods
        .get(path)
        .map(|ms| ms.iter().map(Method::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not a method of {path}: it takes {} (as the Allow header says)",
            allowed.join(", ")
        ),
    )
    .details(json!({"method": method.as_str(), "allowed": allowed}))
}

async fn count_requests<S: Store>(
    State(app): State<Arc<App<S>>>,
    req: Request,
    next: Next,
) -> Response {
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

async fn openapi<S: Store>(State(app): State<Arc<App<S>>>) -> Json<Value> {
    Json(openapi_document::<S>(&app.runtime))
}

/// The OpenAPI 3.1 document, generated from [`routes`]; the lookup filters are those of the
/// plugins `runtime` has loaded.
pub fn openapi_document<S: Store>(runtime: &Runtime) -> Value {
    let lookup = crate::lookup::LookupFields::of(runtime);
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for r in routes::<S>() {
        let mut op = json!({
            "summary": r.summary,
            "responses": {
                r.ok.to_string(): {"description": "success"},
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if let Some(description) = r.description {
            op["description"] = json!(description);
        }
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(r.query.iter().map(|q| {
            json!({"name": q.name, "in": "query", "required": false,
                   "description": q.description, "schema": q.schema})
        }));
        if r.lookup_filters {
            params.extend(lookup.iter().map(|(plugin, field)| {
                json!({
                    "name": format!("{FILTER_PREFIX}{plugin}.{field}"), "in": "query", "required": false,
                    "description": format!("The device whose {plugin} configuration has this {field} (a lookup field of the {plugin} plugin)"),
                    "schema": {"type": "string"}
                })
            }));
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": body}},
                "x-devext-max-bytes": r.body_limit,
            });
        }
        match r.role {
            Some(role) => {
                op["security"] = json!([{"bearer": []}]);
                op["x-devext-role"] = json!(role.as_str());
                if let Some(action) = r.action_role {
                    op["x-devext-action-role"] = json!(action.as_str());
                }
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
