//! The OpenAPI 3.1 document (`/api/v1/openapi.json`), generated from the route table
//! ([`super::routes`]) and the loaded plugins' manifests, so that it cannot drift from either.
//!
//! Each route is one operation, with its parameters (path, query with their real bounds, the
//! lookup filters of the loaded plugins, the headers that matter), its body schema, its success
//! answer (schema and headers) and every error status it can answer, each with the error body.
//! A route marked [`PerPlugin`] is documented again once per loaded plugin (settings) or per
//! plugin and operation, with the plugin's own schemas: the org schema for settings (secrets
//! `writeOnly`, and left out of answers), each operation's input and output schema. The
//! device's `extensions` are the combined device schema of the loaded plugins
//! (`#/components/schemas/DeviceExtensions`).

use std::collections::BTreeMap;

use devext_host::Runtime;
use devext_plugin_api::{OpKind, OpScope, Operation};
use serde_json::{Map, Value, json};

use super::ops::ACTION_ROLE;
use super::routes::{PerPlugin, Route};
use crate::lookup::{FILTER_PREFIX, LookupFields};
use crate::store::Role;

/// What each error status means, in the document.
fn status_text(status: u16) -> &'static str {
    match status {
        400 => "The request cannot be read (not JSON, a bad parameter or header)",
        401 => "No valid API key",
        403 => "The key's role is too low",
        404 => "Not found (the error names what)",
        408 => "The body did not arrive within the server's body read timeout",
        409 => "Conflict (the error says with what)",
        412 => "If-Match does not match the stored record: it changed since it was read",
        413 => "The body is larger than the route's limit",
        415 => "The body is not sent as application/json",
        422 => "The body was read and is invalid (details.violations with JSON pointers)",
        429 => "The upstream service's rate limit",
        500 => "The service failed",
        502 => "The upstream service failed, refused the org's credentials or was out of reach",
        503 => "Shutting down",
        504 => "The operation ran out of time",
        _ => "Error",
    }
}

/// The document, from `routes` and the plugins `runtime` has loaded.
pub(crate) fn document<S>(routes: &[Route<S>], runtime: &Runtime) -> Value {
    let lookup = LookupFields::of(runtime);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut components = base_components(runtime);
    components.extend(job_components(runtime, &lookup));
    for r in routes {
        let method = r.method.as_str().to_ascii_lowercase();
        let op = operation(r, &lookup, &Generic);
        paths
            .entry(r.path.to_owned())
            .or_default()
            .insert(method.clone(), op);
        let Some(per_plugin) = r.per_plugin else {
            continue;
        };
        for plugin in runtime.plugins() {
            let m = plugin.manifest();
            let name = m.name.as_str();
            match per_plugin {
                PerPlugin::Settings => {
                    let settings = settings_components(name, &m.org_config_schema);
                    let (input, answer) =
                        (format!("SettingsInput.{name}"), format!("Settings.{name}"));
                    components.insert(input.clone(), settings.0);
                    components.insert(answer.clone(), settings.1);
                    let one = OnePlugin {
                        plugin: name,
                        op: None,
                        body: Some(schema_ref(&input)),
                        response: Some(schema_ref(&answer)),
                        summary: format!("{} ({name})", r.summary),
                        body_required: true,
                        role: None,
                    };
                    let path = r.path.replace("{plugin}", name);
                    let op = operation(r, &lookup, &one);
                    paths.entry(path).or_default().insert(method.clone(), op);
                }
                PerPlugin::DeviceOps | PerPlugin::OrgOps => {
                    let scope = if per_plugin == PerPlugin::DeviceOps {
                        OpScope::Device
                    } else {
                        OpScope::Org
                    };
                    for o in m.operations.iter().filter(|o| o.scope == scope) {
                        let one = one_operation(r, name, o);
                        let path = r.path.replace("{plugin}", name).replace("{op}", &o.name);
                        let op = operation(r, &lookup, &one);
                        paths.entry(path).or_default().insert(method.clone(), op);
                    }
                }
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "devext", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Extensions for IoT devices: settings, devices, drilldown operations. \
                                 Generated from the service's route table and the loaded plugins' \
                                 manifests."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "API key dvx_..."}},
            "schemas": components,
        }
    })
}

/// The per-plugin part of an operation (or, [`Generic`], none).
trait Variant {
    /// The plugin and operation in place of `{plugin}` and `{op}`, if any.
    fn fixed(&self) -> (Option<&str>, Option<&str>) {
        (None, None)
    }
    fn body<'a>(&'a self, route: &'a Option<Value>) -> Option<&'a Value> {
        route.as_ref()
    }
    fn body_required(&self) -> bool {
        true
    }
    fn response<'a>(&'a self, route: &'a Option<Value>) -> Option<&'a Value> {
        route.as_ref()
    }
    fn summary<'a>(&'a self, route: &'a str) -> &'a str {
        route
    }
    fn description(&self) -> Option<&str> {
        None
    }
    /// The least role, if the operation needs another than the route's.
    fn role(&self) -> Option<Role> {
        None
    }
    /// Whether a header of the route applies (`Idempotency-Key` only to actions).
    fn header_applies(&self, _name: &str) -> bool {
        true
    }
}

/// The route as it is.
struct Generic;
impl Variant for Generic {}

/// The route for one plugin (and operation).
struct OnePlugin<'a> {
    plugin: &'a str,
    op: Option<&'a Operation>,
    body: Option<Value>,
    response: Option<Value>,
    summary: String,
    body_required: bool,
    role: Option<Role>,
}

impl Variant for OnePlugin<'_> {
    fn fixed(&self) -> (Option<&str>, Option<&str>) {
        (Some(self.plugin), self.op.map(|o| o.name.as_str()))
    }
    fn body<'a>(&'a self, route: &'a Option<Value>) -> Option<&'a Value> {
        route.as_ref().and(self.body.as_ref())
    }
    fn body_required(&self) -> bool {
        self.body_required
    }
    fn response<'a>(&'a self, _route: &'a Option<Value>) -> Option<&'a Value> {
        self.response.as_ref()
    }
    fn summary<'a>(&'a self, _route: &'a str) -> &'a str {
        &self.summary
    }
    fn description(&self) -> Option<&str> {
        self.op
            .map(|o| o.description.as_str())
            .filter(|d| !d.is_empty())
    }
    fn role(&self) -> Option<Role> {
        self.role
    }
    fn header_applies(&self, name: &str) -> bool {
        !name.eq_ignore_ascii_case("idempotency-key")
            || self.op.is_some_and(|o| o.kind == OpKind::Action)
    }
}

/// The route `r` for operation `o` of plugin `plugin`: its input and output schemas; an action
/// needs [`ACTION_ROLE`].
fn one_operation<'a, S>(r: &Route<S>, plugin: &'a str, o: &'a Operation) -> OnePlugin<'a> {
    let title = if o.title.is_empty() {
        &o.name
    } else {
        &o.title
    };
    let kind = o.kind.as_str();
    // No body is `{}`: a body is needed only when the input schema requires something.
    let body_required = o
        .input_schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
        || o.input_schema.get("minProperties").is_some();
    OnePlugin {
        plugin,
        op: Some(o),
        body: Some(plugin_schema(&o.input_schema)),
        response: Some(plugin_schema(&o.output_schema)),
        summary: format!("{title} ({plugin} {kind})"),
        body_required,
        role: (o.kind == OpKind::Action).then_some(ACTION_ROLE).or(r.role),
    }
}

/// A plugin's schema as part of the document: its `$schema` and `$id` left out (the document
/// is 2020-12 already; an `$id` would make its `$ref`s resolve elsewhere, so it stays when the
/// schema has any).
fn plugin_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    let has_ref = schema.to_string().contains("\"$ref\"");
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        if !has_ref {
            obj.remove("$id");
        }
    }
    schema
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The body of `PUT /api/v1/extensions/{plugin}` and its answer, for `plugin`: the request's
/// `config` is the org schema; the answer's is the same without the secrets (`writeOnly`),
/// which are never returned (`secrets_set` names those that are set).
fn settings_components(plugin: &str, org_schema: &Value) -> (Value, Value) {
    let secrets = devext_host::schema::secret_properties(org_schema);
    let mut config = plugin_schema(org_schema);
    config["description"] = json!(format!(
        "{} Secrets (writeOnly) left out, or sent as \"********\", keep their stored value; null \
         removes one. Left out altogether: the stored settings stay as they are.",
        org_schema["description"].as_str().unwrap_or_default()
    ));
    let input = json!({
        "type": "object",
        "properties": {"enabled": {"type": "boolean"}, "config": config},
        "required": ["enabled"],
        "additionalProperties": false
    });
    let mut shown = Map::new();
    if let Some(props) = org_schema["properties"].as_object() {
        for (name, schema) in props {
            if !secrets.contains(&name.as_str()) {
                shown.insert(name.clone(), plugin_schema(schema));
            }
        }
    }
    let answer = json!({
        "type": "object",
        "properties": {
            "plugin": {"const": plugin},
            "enabled": {"type": "boolean"},
            "config": {
                "type": "object", "properties": shown, "additionalProperties": false,
                "description": "The stored settings without the secrets ({} when none are stored)"
            },
            "secrets_set": {"type": "array", "items": {"enum": secrets}, "uniqueItems": true}
        },
        "required": ["plugin", "enabled", "config", "secrets_set"],
        "additionalProperties": false
    });
    (input, answer)
}

/// The error statuses of route `r` as `variant` documents it.
fn error_statuses<S>(r: &Route<S>, path: &str, variant: &dyn Variant, has_query: bool) -> Vec<u16> {
    let mut statuses: Vec<u16> = r.errors.clone();
    if r.role.is_some() {
        statuses.extend([401, 403, 500]);
    }
    if r.body.is_some() {
        statuses.extend([400, 408, 413, 415, 422]);
    }
    if has_query {
        statuses.push(400);
    }
    if path.contains('{') {
        statuses.push(404);
    }
    if r.headers.iter().any(|h| variant.header_applies(h.name)) {
        // A header that is not visible ASCII.
        statuses.push(400);
    }
    if r.headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("if-match"))
    {
        statuses.push(412);
    }
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// One operation of the document: route `r` as `variant` has it.
fn operation<S>(r: &Route<S>, lookup: &LookupFields, variant: &dyn Variant) -> Value {
    let (plugin, op_name) = variant.fixed();
    let mut path = r.path.to_owned();
    if let Some(p) = plugin {
        path = path.replace("{plugin}", p);
    }
    if let Some(o) = op_name {
        path = path.replace("{op}", o);
    }
    let mut params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                   "schema": {"type": "string", "minLength": 1}})
        })
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
    let has_query = !r.query.is_empty() || r.lookup_filters;
    params.extend(
        r.headers
            .iter()
            .filter(|h| variant.header_applies(h.name))
            .map(|h| {
                json!({"name": h.name, "in": "header", "required": false,
                   "description": h.description, "schema": h.schema})
            }),
    );

    let mut responses = Map::new();
    let mut ok = json!({"description": "Success"});
    if r.ok != 204 {
        let schema = variant.response(&r.response).cloned().unwrap_or(json!({}));
        ok["content"] = json!({ r.content_type: {"schema": schema} });
        for (media, schema) in &r.alt_content {
            ok["content"][*media] = json!({"schema": schema});
        }
    }
    let mut headers = Map::new();
    for h in &r.response_headers {
        headers.insert(
            h.name.to_owned(),
            json!({"description": h.description, "schema": h.schema}),
        );
    }
    if op_name.is_some()
        || r.path.ends_with("{op}")
        || r.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("idempotency-key"))
    {
        headers.insert(
            "Idempotent-Replay".into(),
            json!({"description": "`true` when this is the stored answer of an earlier request with the same Idempotency-Key",
                   "schema": {"const": "true"}}),
        );
    }
    if !headers.is_empty() {
        ok["headers"] = Value::Object(headers);
    }
    responses.insert(r.ok.to_string(), ok);
    for status in error_statuses(r, &path, variant, has_query) {
        let schema = if status == 503 {
            json!({"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]})
        } else {
            schema_ref("Error")
        };
        responses.insert(
            status.to_string(),
            json!({"description": status_text(status),
                   "content": {"application/json": {"schema": schema}}}),
        );
    }

    let mut op = json!({
        "summary": variant.summary(r.summary),
        "operationId": operation_id(r.method.as_str(), &path),
        "responses": responses,
    });
    if let Some(description) = variant.description().or(r.description) {
        op["description"] = json!(description);
    }
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(body) = variant.body(&r.body) {
        let content: serde_json::Map<String, Value> = r
            .media
            .iter()
            .map(|m| ((*m).to_owned(), json!({"schema": body})))
            .collect();
        op["requestBody"] = json!({
            "required": variant.body_required(),
            "content": content,
            "x-devext-max-bytes": r.body_limit,
        });
    }
    let role = variant.role().or(r.role);
    match role {
        Some(role) => {
            op["security"] = json!([{"bearer": []}]);
            op["x-devext-role"] = json!(role.as_str());
            // On the generic route, the role depends on the operation named in the path.
            if op_name.is_none()
                && let Some(action) = r.action_role
            {
                op["x-devext-action-role"] = json!(action.as_str());
            }
        }
        None => op["security"] = json!([]),
    }
    op
}

/// `get_api_v1_devices_id`: the method and the path's words.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for word in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !word.is_empty() {
            id.push('_');
            id.push_str(word);
        }
    }
    id
}

/// The bulk jobs' schemas: the creation's body (`JobCreate`: one variant per loaded plugin and
/// device operation, its input that operation's input schema), the selection (`JobSelection`:
/// ids, or the device list's filters of the loaded plugins), a job (`Job`) and a page of them.
fn job_components(runtime: &Runtime, lookup: &LookupFields) -> Map<String, Value> {
    let mut variants = Vec::new();
    for plugin in runtime.plugins() {
        let m = plugin.manifest();
        for o in m.operations.iter().filter(|o| o.scope == OpScope::Device) {
            let mut required = vec!["plugin", "op", "devices"];
            // Left out, the input is `{}`: required when the schema does not take that.
            if !devext_host::schema::Schema::compile(&o.input_schema)
                .is_ok_and(|s| s.is_valid(&json!({})))
            {
                required.push("input");
            }
            let input = plugin_schema(&o.input_schema);
            let confirm = if o.destructive {
                format!(
                    "{}.{} is destructive: on more than {} devices, the selected count (else 409                      confirmation_required with details.total)",
                    m.name,
                    o.name,
                    crate::jobs::CONFIRM_ABOVE
                )
            } else {
                "Checked only for destructive operations".to_owned()
            };
            variants.push(json!({
                "title": format!("{}.{} ({})", m.name, o.name, o.kind.as_str()),
                "type": "object",
                "properties": {
                    "plugin": {"const": m.name},
                    "op": {"const": o.name},
                    "input": input,
                    "devices": schema_ref("JobSelection"),
                    "confirm": {"type": "integer", "minimum": 0, "maximum": u64::MAX, "description": confirm}
                },
                "required": required,
                "additionalProperties": false,
                "x-devext-role": crate::jobs::role_for(o).as_str(),
                "x-devext-destructive": o.destructive
            }));
        }
    }
    let mut filters = Map::new();
    filters.insert(
        "name".into(),
        json!({"type": "string", "description": "Devices whose name contains this (case-insensitive)"}),
    );
    for (plugin, field) in lookup.iter() {
        filters.insert(
            format!("{FILTER_PREFIX}{plugin}.{field}"),
            json!({"type": "string", "description": format!("The device whose {plugin} configuration has this {field}")}),
        );
    }
    let time = json!({"type": "string", "format": "date-time"});
    let maybe_time = json!({"type": ["string", "null"], "format": "date-time"});
    let error = json!({"type": "object", "properties": {"kind": {"type": "string"}, "message": {"type": "string"}},
                       "required": ["kind", "message"], "additionalProperties": false});
    let count = json!({"type": "integer", "minimum": 0});
    let mut matches = vec!["name".to_owned(), "id".to_owned()];
    matches.extend(lookup.filter_names());
    let problem = json!({
        "type": "object",
        "properties": {
            "line": {"type": "integer", "minimum": 1},
            "kind": {"enum": ["error", "warning"]},
            "column": {"type": "integer", "minimum": 1},
            "field": {"type": "string"},
            "pointer": {"type": "string"},
            "keyword": {"type": "string"},
            "message": {"type": "string"}
        },
        "required": ["line", "kind", "message"],
        "additionalProperties": false
    });
    let components = json!({
        "ImportMatch": {
            "enum": matches,
            "default": "name",
            "description": "name, id, or a lookup field of a loaded plugin (ext.<plugin>.<field>)"
        },
        "ImportReport": {
            "type": "object",
            "properties": {
                "records": count, "created": count, "updated": count, "unchanged": count,
                "failed": count, "warnings": count,
                "committed": {"type": "boolean", "description": "Whether the writes were kept"},
                "problems": {"type": "array", "items": problem, "maxItems": 1000},
                "problems_omitted": count
            },
            "required": ["records", "created", "updated", "unchanged", "failed", "warnings",
                         "committed", "problems", "problems_omitted"],
            "additionalProperties": false
        },
        "JobCreate": {
            "description": "One operation of one plugin, with one input, on the selected devices",
            "oneOf": variants
        },
        "JobSelection": {
            "description": "Either `ids` (device ids of the organisation: one not in it is a 400) or `filter` (the device list's filters, all to match: a filter selecting no device is a 400)",
            "oneOf": [
                {"type": "object",
                 "properties": {"ids": {"type": "array", "items": {"type": "string", "minLength": 1},
                                        "minItems": 1, "maxItems": crate::jobs::MAX_JOB_DEVICES}},
                 "required": ["ids"], "additionalProperties": false},
                {"type": "object",
                 "properties": {"filter": {"type": "object", "properties": filters, "additionalProperties": false}},
                 "required": ["filter"], "additionalProperties": false}
            ]
        },
        "Job": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": "^job_"},
                "plugin": {"type": "string"},
                "op": {"type": "string"},
                "input": {"type": "object", "description": "The input (its secrets, writeOnly, masked)"},
                "selection": {"type": "object", "description": "The selection as given"},
                "state": {"enum": ["queued", "running", "done", "cancelled", "failed"]},
                "total": count,
                "done": count,
                "failed": count,
                "skipped": count,
                "unknown": count,
                "pending": count,
                "rate_per_s": {"type": ["number", "null"], "minimum": 0},
                "eta_s": {"type": ["number", "null"], "minimum": 0},
                "created_by": {"type": "string", "pattern": "^(key|user):"},
                "created_at": time,
                "started_at": maybe_time,
                "finished_at": maybe_time,
                "error": {"anyOf": [error, {"type": "null"}], "description": "Why the job failed (state failed); null otherwise"}
            },
            "required": ["id", "plugin", "op", "input", "selection", "state", "total", "done",
                         "failed", "skipped", "unknown", "pending", "rate_per_s", "eta_s",
                         "created_by", "created_at", "started_at", "finished_at", "error"],
            "additionalProperties": false
        },
        "JobPage": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": schema_ref("Job")},
                "next": {"type": ["string", "null"], "description": "The cursor of the next page; null on the last"}
            },
            "required": ["items", "next"],
            "additionalProperties": false
        }
    });
    match components {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The shared schemas: the error body, and the records the API answers with.
fn base_components(runtime: &Runtime) -> Map<String, Value> {
    let mut extensions = runtime.combined_device_schema();
    if let Some(obj) = extensions.as_object_mut() {
        obj.remove("$schema");
        obj.remove("$id");
        if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
            for schema in props.values_mut() {
                *schema = plugin_schema(schema);
            }
        }
    }
    let time = json!({"type": "string", "format": "date-time"});
    let components = json!({
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "object", "properties": {
                "kind": {"type": "string"}, "message": {"type": "string"}, "details": {}
            }, "required": ["kind", "message"]}},
            "required": ["error"]
        },
        "DeviceExtensions": extensions,
        "Device": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "type": {"type": ["string", "null"]},
                "extensions": {"type": "object", "description": "The stored extension configuration (DeviceExtensions when written; parts for plugins not loaded are kept as stored)"},
                "created_at": time,
                "updated_at": time,
                "unchecked_extensions": {"type": "array", "items": {"type": "string"},
                                         "description": "After an update: parts kept as stored, unchecked, for plugins this service does not load"}
            },
            "required": ["id", "name", "type", "extensions", "created_at", "updated_at"],
            "additionalProperties": false
        },
        "Settings": {
            "type": "object",
            "properties": {
                "plugin": {"type": "string"},
                "enabled": {"type": "boolean"},
                "config": {"type": "object", "description": "The stored settings without the secrets"},
                "secrets_set": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["plugin", "enabled", "config", "secrets_set"],
            "additionalProperties": false
        },
        "Key": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "role": {"enum": ["admin", "operator", "viewer"]},
                "name": {"type": "string"},
                "created_at": time,
                "last_used_at": {"type": ["string", "null"], "format": "date-time"}
            },
            "required": ["id", "role", "name", "created_at", "last_used_at"],
            "additionalProperties": false
        },
        "CreatedKey": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "role": {"enum": ["admin", "operator", "viewer"]},
                "name": {"type": "string"},
                "created_at": time,
                "last_used_at": {"type": ["string", "null"], "format": "date-time"},
                "key": {"type": "string", "pattern": "^dvx_[0-9a-f]{64}$", "description": "The key itself, shown this once"}
            },
            "required": ["id", "role", "name", "created_at", "last_used_at", "key"],
            "additionalProperties": false
        },
        "Plugin": {
            "type": "object",
            "properties": {
                "manifest": {"type": "object"},
                "source": {"type": "string"},
                "hint_warnings": {"type": "array"}
            },
            "required": ["manifest", "source", "hint_warnings"],
            "additionalProperties": false
        },
        "Drilldown": {
            "type": "object",
            "properties": {
                "device": {"type": "string"},
                "extensions": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "plugin": {"type": "string"},
                        "available": {"type": "boolean"},
                        "reason": {"type": "string"},
                        "display_name": {"type": "string"},
                        "config": {},
                        "warnings": {"type": "array"},
                        "violations": {"type": "array"},
                        "operations": {"type": "array", "items": {"type": "object"}},
                        "views": {"type": "object"}
                    },
                    "required": ["plugin", "available"]
                }}
            },
            "required": ["device", "extensions"],
            "additionalProperties": false
        },
        "AuditEntry": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "at": time,
                "key_id": {"type": ["string", "null"]},
                "user_id": {"type": ["string", "null"]},
                "user_email": {"type": ["string", "null"]},
                "action": {"type": "string"},
                "device_id": {"type": ["string", "null"]},
                "plugin": {"type": ["string", "null"]},
                "op": {"type": ["string", "null"]},
                "outcome": {"type": "string"},
                "detail": {"type": "string"},
                "request_id": {"type": ["string", "null"]},
                "key_name": {"type": ["string", "null"]}
            },
            "required": ["id", "at", "action", "outcome", "detail"],
            "additionalProperties": false
        }
    });
    match components {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
