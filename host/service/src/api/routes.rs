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
use serde_json::{Value, json};

use super::error::ApiError;
use super::state::App;
use super::{audit, auth, devices, health, import, keys, ops, page, plugins, request_id, settings};
use crate::store::{Role, Store};

/// Largest accepted request body (the limit of every route that takes one).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Largest device import (JSON Lines or CSV, read as a stream: about two million devices).
pub const IMPORT_MAX_BYTES: usize = 256 * 1024 * 1024;

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
    /// The media types the body may have (`application/json` unless said).
    pub media: &'static [&'static str],
    /// Query parameters (besides the lookup filters).
    pub query: Vec<QueryParam>,
    /// Whether the route takes the device lookup filters `ext.<plugin>.<field>=value`.
    pub lookup_filters: bool,
    /// The success body's media type (`application/json` unless said otherwise).
    pub content_type: &'static str,
    /// Other media types of the success body, chosen by `Accept` (each with its own schema).
    pub alt_content: Vec<(&'static str, Value)>,
    /// The success status.
    pub ok: u16,
    /// JSON Schema of the success body (`None`: a JSON body the document does not describe;
    /// ignored for 204). May `$ref` the document's components (`#/components/schemas/...`,
    /// see [`super::openapi`]).
    pub response: Option<Value>,
    /// Error statuses besides those the entry implies: every route may answer 500; one with
    /// a role 401 and 403; one with a body 400, 408, 413, 415 and 422; one with query parameters
    /// 400; one with path parameters 404; one with `If-Match` 412.
    pub errors: Vec<u16>,
    /// Request headers that matter (`If-Match`, `Idempotency-Key`, ...).
    pub headers: Vec<Header>,
    /// Response headers of the success answer (`ETag`, `Location`, ...).
    pub response_headers: Vec<Header>,
    /// The route is also documented once per loaded plugin (and operation), with the
    /// plugin's own schemas.
    pub per_plugin: Option<PerPlugin>,
    handler: MethodRouter<Arc<App<S>>>,
}

/// A documented request or response header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Its name.
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// JSON Schema of its value.
    pub schema: Value,
}

/// How a route with `{plugin}` (and `{op}`) in its path is documented again for each loaded
/// plugin: the path with the plugin's name (and operation's) in place, and its schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerPlugin {
    /// `{plugin}`: the plugin's org settings (request: its org schema; answer: the same
    /// without the secrets).
    Settings,
    /// `{plugin}/{op}`: each device-scope operation, its input and output schemas.
    DeviceOps,
    /// `{plugin}/{op}`: each organisation-scope operation, its input and output schemas.
    OrgOps,
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
        media: &["application/json"],
        query: Vec::new(),
        lookup_filters: false,
        content_type: "application/json",
        alt_content: Vec::new(),
        ok: 200,
        response: None,
        errors: Vec::new(),
        headers: Vec::new(),
        response_headers: Vec::new(),
        per_plugin: None,
        handler,
    }
}

/// A visible-ASCII header value of at most `max` characters (what `HeaderValue::to_str`
/// accepts, without surrounding blanks, which HTTP strips).
fn visible_ascii(max: u32) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": "^[!-~]([ -~]*[!-~])?$"})
}

/// `If-Match` of a conditional write.
fn if_match_header() -> Header {
    Header {
        name: "If-Match",
        description: "The ETag of the record as read: a record changed since is not \
                      overwritten (412 precondition_failed)",
        schema: visible_ascii(200),
    }
}

/// `ETag` of an answer.
fn etag_header() -> Header {
    Header {
        name: "ETag",
        description: "A digest of the stored record, for If-Match",
        schema: json!({"type": "string"}),
    }
}

/// `Idempotency-Key` of an action.
fn idempotency_header() -> Header {
    Header {
        name: "Idempotency-Key",
        description: "Actions only (ignored by views): 1 to 200 visible ASCII characters; a \
                      request repeated with the same key and body is answered with the first \
                      answer (`Idempotent-Replay: true`) instead of running again; the same key \
                      with another body is a 422, one still running a 409",
        schema: visible_ascii(200),
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

    fn media(self, media: &'static [&'static str]) -> Self {
        Route { media, ..self }
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

    /// The success body's JSON Schema (may `$ref` `#/components/schemas/...`).
    fn response(self, schema: Value) -> Self {
        Route {
            response: Some(schema),
            ..self
        }
    }

    /// The success body's media type.
    fn content_type(self, content_type: &'static str) -> Self {
        Route {
            content_type,
            ..self
        }
    }

    /// Another media type of the success body (chosen by `Accept`) and its schema.
    fn alt_content(mut self, media: &'static str, schema: Value) -> Self {
        self.alt_content.push((media, schema));
        self
    }

    /// Error statuses besides those the entry implies (see [`Route::errors`]).
    fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    /// A request header.
    fn header(mut self, header: Header) -> Self {
        self.headers.push(header);
        self
    }

    /// A response header of the success answer.
    fn response_header(mut self, header: Header) -> Self {
        self.response_headers.push(header);
        self
    }

    /// Documented again per loaded plugin (and operation).
    fn per_plugin(self, per_plugin: PerPlugin) -> Self {
        Route {
            per_plugin: Some(per_plugin),
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
            "extensions": {
                "anyOf": [{"$ref": "#/components/schemas/DeviceExtensions"}, {"type": "null"}],
                "description": "Extension configuration keyed by plugin name (null or left out: none); a plugin's lookup fields are unique within the organisation (409 otherwise)"
            }
        },
        "required": ["name"],
        "additionalProperties": false
    });
    let key_body = json!({
        "type": "object",
        "properties": {"role": {"enum": ["admin", "operator", "viewer"]}, "name": {"type": "string", "maxLength": 100}},
        "required": ["role"], "additionalProperties": false
    });
    let op_body = json!({"type": "object", "description": "The operation's input (see its input_schema; the path of each plugin's operation has it). No body: `{}`"});
    // An operation answers as its plugin does: not found, conflicts, rate limits, upstream failures.
    let op_errors = [404, 409, 429, 502, 504];
    let list = |item: &str| {
        json!({"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}},
               "required": ["items"], "additionalProperties": false})
    };
    let page_of = |item: &str| {
        json!({"type": "object", "properties": {
                   "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
                   "next_cursor": {"type": ["integer", "null"], "description": "The cursor of the next page; null on the last"}},
               "required": ["items", "next_cursor"], "additionalProperties": false})
    };
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let page = |next: &'static str| {
        vec![
            param(
                next,
                "Continue after this cursor (`next_cursor` of the previous page)",
                json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}),
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
        route(M::GET, "/healthz", "Liveness", get(health::healthz)).response(json!({
            "type": "object", "properties": {"status": {"const": "ok"}},
            "required": ["status"], "additionalProperties": false
        })),
        route(
            M::GET,
            "/readyz",
            "Readiness (503 while shutting down)",
            get(health::readyz::<S>),
        )
        .response(json!({
            "type": "object",
            "properties": {"status": {"const": "ready"}, "plugins": {"type": "array", "items": {"type": "string"}}},
            "required": ["status", "plugins"], "additionalProperties": false
        }))
        .errors(&[503]),
        route(
            M::GET,
            "/metrics",
            "Prometheus metrics",
            get(health::metrics::<S>),
        )
        .content_type("text/plain")
        .response(json!({"type": "string"})),
        route(
            M::GET,
            "/api/v1/openapi.json",
            "This document",
            get(openapi::<S>),
        )
        .response(json!({"type": "object", "required": ["openapi", "paths"]})),
        route(
            M::GET,
            "/api/v1/plugins",
            "Loaded plugins: manifests and schemas",
            get(plugins::list_plugins::<S>),
        )
        .role(Viewer)
        .response(list("Plugin")),
        route(
            M::GET,
            "/api/v1/keys",
            "The org's API keys",
            get(keys::list_keys::<S>),
        )
        .role(Admin)
        .response(list("Key")),
        route(
            M::POST,
            "/api/v1/keys",
            "Create an API key (shown once)",
            post(keys::create_key::<S>),
        )
        .role(Admin)
        .body(key_body, MAX_BODY_BYTES)
        .ok(201)
        .response(schema("CreatedKey")),
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
        .role(Viewer)
        .response(list("Settings")),
        route(
            M::GET,
            "/api/v1/extensions/{plugin}",
            "The org's settings for a plugin (secrets masked)",
            get(settings::get_extension::<S>),
        )
        .role(Viewer)
        .response(schema("Settings"))
        .response_header(etag_header())
        .per_plugin(PerPlugin::Settings),
        route(
            M::PUT,
            "/api/v1/extensions/{plugin}",
            "Switch a plugin on or off and set its org settings",
            put(settings::put_extension::<S>),
        )
        .role(Admin)
        .body(settings_body, MAX_BODY_BYTES)
        .header(if_match_header())
        .response(schema("Settings"))
        .response_header(etag_header())
        .per_plugin(PerPlugin::Settings),
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
        .lookup_filters()
        .response(page_of("Device")),
        route(
            M::POST,
            "/api/v1/devices",
            "Create a device",
            post(devices::create_device::<S>),
        )
        .role(Admin)
        .body(device_body.clone(), MAX_BODY_BYTES)
        .ok(201)
        .errors(&[409])
        .response(schema("Device"))
        .response_header(etag_header())
        .response_header(Header {
            name: "Location",
            description: "The new device's path",
            schema: json!({"type": "string"}),
        }),
        route(
            M::POST,
            "/api/v1/devices/import",
            "Import devices from JSON Lines or CSV: create, update or leave each as it is",
            post(import::import_devices::<S>),
        )
        .role(Admin)
        .description(
            "The body is JSON Lines (`application/x-ndjson`: one `{\"name\", \"type\", \
             \"extensions\"}` per line; `id` is read by `match=id`) or CSV (`text/csv`: columns \
             `name`, `type`, `id` and `<plugin>.<property>`, each cell typed by the plugin's \
             device schema), read as a stream. Each record is checked as `devext validate` \
             checks a document and matched to a device of the organisation (`match`); a \
             record that says what is stored writes nothing. All or nothing: one bad record \
             and nothing is written (422, the report in `details`), unless `partial=true`. \
             The answer: counts (`created`, `updated`, `unchanged`, `failed`) and `problems[]` \
             (line, column or CSV field, pointer, keyword, message).",
        )
        .body(
            json!({"type": "string", "description": "JSON Lines or CSV of devices"}),
            IMPORT_MAX_BYTES,
        )
        .media(&[import::JSON_LINES, import::CSV])
        .errors(&[403])
        .response(schema("ImportReport"))
        .query(vec![
            param(
                "match",
                "How a record finds its device: `name` (the default), `id`, or \
                 `ext.{plugin}.{field}` (a lookup field)",
                schema("ImportMatch"),
            ),
            param(
                "partial",
                "Write the valid records even if others are bad (each bad one reported)",
                json!({"type": "boolean", "default": false}),
            ),
            param(
                "org",
                "The organisation the key must be of (403 otherwise): a guard against a wrong key",
                json!({"type": "string"}),
            ),
        ]),
        route(
            M::GET,
            "/api/v1/devices/export",
            "Export devices as JSON Lines (or CSV with `Accept: text/csv`), streamed",
            get(import::export_devices::<S>),
        )
        .role(Viewer)
        .description(
            "Every device the filters select (`name`, `ext.{plugin}.{field}`, as the device \
             list), in the list's order; what `POST /api/v1/devices/import` reads back. CSV \
             has a column per top-level property of each loaded plugin's device schema.",
        )
        .query(vec![
            param(
                "name",
                "Devices whose name contains this (case-insensitive)",
                json!({"type": "string"}),
            ),
            param(
                "org",
                "The organisation the key must be of (403 otherwise): a guard against a wrong key",
                json!({"type": "string"}),
            ),
        ])
        .lookup_filters()
        .errors(&[403])
        .content_type(import::JSON_LINES)
        .response(json!({"type": "string", "description": "JSON Lines: one `{\"id\", \"name\", \"type\", \"extensions\"}` per device"}))
        .alt_content(
            import::CSV,
            json!({"type": "string", "description": "CSV: a header `id,name,type,<plugin>.<property>...`, then one record per device"}),
        ),
        route(
            M::GET,
            "/api/v1/devices/{id}",
            "A device",
            get(devices::get_device::<S>),
        )
        .role(Viewer)
        .response(schema("Device"))
        .response_header(etag_header()),
        route(
            M::PUT,
            "/api/v1/devices/{id}",
            "Replace a device",
            put(devices::update_device::<S>),
        )
        .role(Admin)
        .body(device_body, MAX_BODY_BYTES)
        .header(if_match_header())
        .errors(&[409])
        .response(schema("Device"))
        .response_header(etag_header()),
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
            schema("DeviceExtensions"),
            MAX_BODY_BYTES,
        )
        .response(json!({
            "type": "object",
            "properties": {"valid": {"const": true}, "diagnostics": {"type": "array", "items": {"type": "object"}}},
            "required": ["valid", "diagnostics"], "additionalProperties": false
        })),
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
        )])
        .response(schema("Drilldown")),
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
        .body(op_body.clone(), MAX_BODY_BYTES)
        .header(idempotency_header())
        .errors(&op_errors)
        .per_plugin(PerPlugin::DeviceOps),
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
        .body(op_body, MAX_BODY_BYTES)
        .header(idempotency_header())
        .errors(&op_errors)
        .per_plugin(PerPlugin::OrgOps),
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
        .body(schema("JobCreate"), MAX_BODY_BYTES)
        .header(idempotency_header())
        .ok(202)
        .errors(&[404, 409])
        .response(schema("Job"))
        .response_header(Header {
            name: "Location",
            description: "The new job's path",
            schema: json!({"type": "string"}),
        }),
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
                json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}),
            ),
            param(
                "limit",
                "Page size: 1 to 500 (another value is a 400); 50 if not given",
                json!({"type": "integer", "minimum": page::MIN_LIMIT, "maximum": page::MAX_LIMIT,
                       "default": page::DEFAULT_LIMIT}),
            ),
        ])
        .response(schema("JobPage")),
        route(
            M::GET,
            "/api/v1/jobs/{id}",
            "A bulk job and its progress (counts, rate, time left)",
            get(crate::jobs::get_job::<S>),
        )
        .role(Viewer)
        .response(schema("Job")),
        route(
            M::GET,
            "/api/v1/jobs/{id}/results",
            "A bulk job's results, one record per device in selection order: JSON Lines, or \
             CSV with `Accept: text/csv`",
            get(crate::jobs::job_results::<S>),
        )
        .role(Viewer)
        .content_type(import::JSON_LINES)
        .response(json!({"type": "string", "description": "JSON Lines: one `{\"device\", \"outcome\" (ok, failed, skipped, unknown, pending), \"error\" (null or {\"kind\", \"message\"}), \"result\" (the operation's output or null)}` per device"}))
        .alt_content(
            import::CSV,
            json!({"type": "string", "description": "CSV: a header `device,outcome,error_kind,error_message,result` (result as compact JSON), then one record per device"}),
        ),
        route(
            M::POST,
            "/api/v1/jobs/{id}/cancel",
            "Cancel a bulk job: items in flight finish, the rest are skipped (409 if it ended)",
            post(crate::jobs::cancel_job::<S>),
        )
        .role(Role::Operator)
        .errors(&[409])
        .response(schema("Job")),
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
        })
        .response(page_of("AuditEntry")),
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

/// The OpenAPI 3.1 document (see [`super::openapi::document`]).
pub fn openapi_document<S: Store>(runtime: &Runtime) -> Value {
    super::openapi::document(&routes::<S>(), runtime)
}
