//! A device's drilldown: name and type, the Extension Configuration as a JSON editor with
//! "Confirm changes" (checked like `devext validate` does, with line:column and JSON pointer,
//! before anything is saved), and the Extensions section: a panel per usable extension with its
//! views rendered from their output schemas and forms for its operations, or why it is not
//! shown. Reads and writes go through the API's handlers (`GET /api/v1/devices/{id}`,
//! `GET .../extensions?include=views`, `PUT /api/v1/devices/{id}`, `DELETE`, `POST
//! .../extensions/{plugin}/{op}`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use devext_host::validate::{self, Diagnostic, Kind};
use devext_plugin_api::{OpKind, OpScope, Operation};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::form::{self, FieldErrors, Spec};
use super::layout::{self, notice};
use super::session::{Posted, Signed, csrf_field};
use super::{view, words};
use crate::api::{self, App};
use crate::store::{Role, Store, device_etag};

/// The status and JSON body of an API handler's answer.
pub(super) async fn answer(result: Result<Response, api::ApiError>) -> (StatusCode, Value) {
    match result {
        Ok(response) => {
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
                .await
                .unwrap_or_default();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }
        Err(e) => (e.status, e.body()),
    }
}

/// The editor's state after a refused "Confirm changes".
struct Editor {
    name: String,
    device_type: String,
    text: String,
    diagnostics: Vec<Diagnostic>,
    message: Option<String>,
}

/// The result of running an operation, shown in its panel.
struct Run {
    plugin: String,
    op: String,
    status: StatusCode,
    body: Value,
    input: Map<String, Value>,
    errors: FieldErrors,
}

#[derive(Default)]
struct Extra {
    notices: Vec<(&'static str, String)>,
    editor: Option<Editor>,
    run: Option<Run>,
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    saved: Option<String>,
    created: Option<String>,
}

/// `GET /devices/{id}`.
pub(super) async fn page<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut extra = Extra::default();
    if q.saved.is_some() {
        extra
            .notices
            .push(("ok", "Changes confirmed and saved.".into()));
    }
    if q.created.is_some() {
        extra.notices.push((
            "ok",
            "Device created. Type its Extension Configuration below and confirm.".into(),
        ));
    }
    render(&app, &who, &id, extra, StatusCode::OK).await
}

async fn render<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    id: &str,
    extra: Extra,
    status: StatusCode,
) -> Response {
    // The handler of `GET /api/v1/devices/{id}` reads it this way too.
    let device = match api::devices::device_or_404(app, &who.caller(), id).await {
        Ok(d) => d,
        Err(e) => return layout::failure(e.status, e.message()),
    };
    // The form carries the version it shows: a save over someone else's change is refused.
    let etag = device_etag(&device);
    let Ok(query) = serde_json::from_value(json!({"include": "views"})) else {
        return layout::failure(StatusCode::INTERNAL_SERVER_ERROR, "the drilldown query");
    };
    let query = Ok(Query(query));
    let drill =
        match api::ops::drilldown(State(app.clone()), who.caller(), Path(id.to_owned()), query)
            .await
        {
            Ok(Json(v)) => v,
            Err(e) => return layout::failure(e.status, e.message()),
        };
    let admin = who.user.role.allows(Role::Admin);
    let (name, device_type, text, diagnostics, editor_message) = match extra.editor {
        Some(e) => (e.name, e.device_type, e.text, e.diagnostics, e.message),
        None => (
            device.name.clone(),
            device.device_type.clone().unwrap_or_default(),
            serde_json::to_string_pretty(&device.extensions).unwrap_or_default(),
            Vec::new(),
            None,
        ),
    };
    let warnings: Vec<&Value> = drill["extensions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["warnings"].as_array().into_iter().flatten())
        .collect();
    let rows = text.lines().count().clamp(6, 30);
    let body = html! {
        p.crumbs { a href="/devices" { "Devices" } " / " (device.name) }
        h1 { (device.name) }
        @for (kind, m) in &extra.notices { (notice(kind, m)) }
        section.card aria-labelledby="device-title" {
            h2 #device-title { "Device" }
            form #device-form method="post" action=(format!("/devices/{id}")) {
                (csrf_field(who))
                input type="hidden" name="etag" value=(etag);
                div.field {
                    label for="name" { "Name" abbr.req title="required" { "*" } }
                    input #name type="text" name="name" value=(name) required maxlength="200" disabled[!admin];
                }
                div.field {
                    label for="type" { "Type" }
                    input #type type="text" name="type" value=(device_type) maxlength="100" disabled[!admin];
                }
                div.field {
                    label for="extensions" { "Extension Configuration" }
                    small.help #extensions-help {
                        "JSON: an object keyed by extension name, for example "
                        code { "{\"" (app.runtime.plugin_names().first().copied().unwrap_or("plugin")) "\": {…}}" } "."
                    }
                    textarea.code #extensions name="extensions" rows=(rows) spellcheck="false"
                        aria-describedby="extensions-help extensions-problems"
                        aria-invalid=[(!diagnostics.is_empty()).then_some("true")]
                        readonly[!admin] { (text) }
                    div #extensions-problems aria-live="polite" {
                        @if let Some(m) = &editor_message { p.field-error role="alert" { (m) } }
                        @if !diagnostics.is_empty() {
                            ul.problems {
                                @for d in &diagnostics {
                                    li class=(if d.kind == Kind::Warning { "warning" } else { "field-error" }) {
                                        @if d.kind == Kind::Warning { "Warning: " }
                                        "line " (d.line.unwrap_or(1)) ":" (d.column.unwrap_or(1))
                                        @if let Some(p) = &d.pointer { " at " code { (p) } }
                                        " — " (d.message)
                                    }
                                }
                            }
                        }
                    }
                    @if diagnostics.is_empty() && !warnings.is_empty() {
                        ul.problems {
                            @for w in &warnings {
                                li.warning { "Warning" @if let Some(p) = w["pointer"].as_str() { " at " code { (p) } } " — " (w["message"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
                @if admin { button type="submit" { "Confirm changes" } }
            }
            @if admin {
                (plugin_forms(app, who, id, &device.extensions))
            }
            @if admin {
                form.danger method="post" action=(format!("/devices/{id}/delete")) {
                    (csrf_field(who))
                    label.inline { input type="checkbox" name="confirm" required; " Yes, delete this device" }
                    button.danger type="submit" { "Delete device" }
                }
            }
        }
        section #extensions-section aria-labelledby="ext-title" {
            h2 #ext-title { "Extensions" }
            (panels(app, who, id, &drill, extra.run.as_ref()).await)
        }
    };
    (status, layout::page(&device.name, who, "/devices", body)).into_response()
}

async fn panels<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    id: &str,
    drill: &Value,
    run: Option<&Run>,
) -> Markup {
    let items = drill["extensions"].as_array().cloned().unwrap_or_default();
    let configured: Vec<&str> = items.iter().filter_map(|i| i["plugin"].as_str()).collect();
    let stored = app
        .store
        .extensions(who.user.org_id)
        .await
        .unwrap_or_default();
    // Extensions switched on for the org that this device has no configuration for.
    let unconfigured: Vec<&str> = stored
        .iter()
        .filter(|s| s.enabled && !configured.contains(&s.plugin.as_str()))
        .filter_map(|s| {
            app.runtime
                .plugin(&s.plugin)
                .map(|p| p.manifest().name.as_str())
        })
        .collect();
    html! {
        @if items.is_empty() && unconfigured.is_empty() {
            p { "No extension is configured on this device, and none is switched on for the organisation (Settings → Extensions)." }
        }
        @for item in &items {
            @let name = item["plugin"].as_str().unwrap_or("");
            @let title = item["display_name"].as_str().unwrap_or(name);
            @if item["available"] == json!(true) {
                @let settings = stored.iter().find(|s| s.plugin == name);
                @let settings_problem = settings.and_then(|s| app.runtime.validate_org_config(name, &s.merged()).err());
                @if let Some(problems) = settings_problem {
                    section.card.panel.unavailable {
                        h3 { (title) }
                        p { "Not shown: the organisation's settings for " (title) " are incomplete or invalid ("
                            (problems.first().map(|v| v.to_string()).unwrap_or_default()) "). "
                            a href=(format!("/settings/extensions#ext-{}", form::slug(name))) { "Complete them in Settings → Extensions" } "." }
                    }
                } @else {
                    (panel(app, who, id, name, title, item, run))
                }
            } @else {
                section.card.panel.unavailable {
                    h3 { (title) }
                    p { "Not shown: " (item["reason"].as_str().unwrap_or("unavailable")) "." }
                    @for v in item["violations"].as_array().into_iter().flatten() {
                        p.field-error { code { (v["pointer"].as_str().unwrap_or("")) } " — " (v["message"].as_str().unwrap_or("")) }
                    }
                }
            }
        }
        @for name in &unconfigured {
            @let title = app.runtime.plugin(name).map_or(*name, |p| p.manifest().display_name.as_str());
            section.card.panel.unavailable {
                h3 { (title) }
                p { "Not shown: this device has no " (title) " configuration. Add "
                    code { "\"" (name) "\": {…}" } " to its Extension Configuration." }
            }
        }
    }
}

fn panel<S: Store>(
    app: &App<S>,
    who: &Signed,
    id: &str,
    name: &str,
    title: &str,
    item: &Value,
    run: Option<&Run>,
) -> Markup {
    let Some(loaded) = app.runtime.plugin(name) else {
        return html! {};
    };
    let may_act = who.user.role.allows(api::ops::ACTION_ROLE);
    let ops: Vec<&Operation> = loaded
        .manifest()
        .operations
        .iter()
        .filter(|o| o.scope == OpScope::Device)
        .collect();
    let views = &item["views"];
    html! {
        section.card.panel id=(format!("panel-{}", form::slug(name))) aria-label=(title) {
            h3 { (title) }
            @for op in &ops {
                @let this_run = run.filter(|r| r.plugin == name && r.op == op.name);
                @if op.kind == OpKind::View && views.get(&op.name).is_some() {
                    (view_block(id, op, &views[op.name.as_str()]))
                } @else if op.kind == OpKind::View || may_act {
                    (op_form(who, id, name, title, op, this_run))
                }
            }
            @if !may_act && ops.iter().any(|o| o.kind == OpKind::Action) {
                p.help { "Your role (" (who.user.role.as_str()) ") may view but not run actions." }
            }
        }
    }
}

fn view_block(id: &str, op: &Operation, got: &Value) -> Markup {
    html! {
        div.view-block id=(format!("view-{}", form::slug(&op.name))) {
            h4 { (op.title) }
            @if let Some(result) = got.get("result") {
                @if let Some((at, ago)) = view::as_of(result) {
                    p.as-of {
                        "as of " time datetime=(at) data-ago { (ago) } " "
                        a.button.secondary href=(format!("/devices/{id}#view-{}", form::slug(&op.name))) { "Reload" }
                    }
                }
                @if op.output_schema.get("x-devext-chart").is_some() {
                    @match crate::chart::render(result, &op.output_schema) {
                        // The chart module escapes every text it draws (`chart::escape`).
                        Ok(svg) => { div.chart { (maud::PreEscaped(svg)) } }
                        Err(e) => { (notice("warning", &format!("No chart: {e}"))) }
                    }
                }
                (view::render(result, &op.output_schema))
            } @else {
                (notice("error", &words::error_words(&op.title, status_of(got), got)))
            }
        }
    }
}

/// The status an error body stands for (the drilldown keeps only the body).
fn status_of(body: &Value) -> StatusCode {
    match body["error"]["kind"].as_str().unwrap_or("") {
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "unauthorized" | "upstream" => StatusCode::BAD_GATEWAY,
        "conflict" | "forbidden" => StatusCode::CONFLICT,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "not_found" => StatusCode::NOT_FOUND,
        "invalid_input" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn op_form(
    who: &Signed,
    id: &str,
    plugin: &str,
    display: &str,
    op: &Operation,
    run: Option<&Run>,
) -> Markup {
    let form_id = format!("op-{}-{}", form::slug(plugin), form::slug(&op.name));
    let empty = Map::new();
    let no_errors = FieldErrors::new();
    let idempotency = crate::crypto::random_bytes::<12>()
        .map(|b| crate::crypto::hex(&b))
        .unwrap_or_default();
    html! {
        div.op id=(form_id) {
            h4 { (op.title) @if op.destructive { " " span.badge.badge-danger { "changes the device" } } }
            @if !op.description.is_empty() { p.help { (op.description) } }
            @if let Some(r) = run {
                @if r.status.is_success() {
                    (notice("ok", &format!("{}: done.", op.title)))
                    @if let Ok(svg) = crate::chart::render(&r.body, &op.output_schema) {
                        // The chart module escapes every text it draws (`chart::escape`).
                        div.chart { (maud::PreEscaped(svg)) }
                    }
                    (view::render(&r.body, &op.output_schema))
                } @else if r.status != StatusCode::UNPROCESSABLE_ENTITY || r.errors.is_empty() {
                    (notice("error", &words::error_words(display, r.status, &r.body)))
                }
            }
            form method="post" action=(format!("/devices/{id}/run/{plugin}/{}#{form_id}", op.name))
                data-confirm=[op.destructive.then(|| format!("{}: are you sure?", op.title))] {
                (csrf_field(who))
                @if op.kind == OpKind::Action { input type="hidden" name="idempotency_key" value=(idempotency); }
                (form::fields(&Spec {
                    schema: &op.input_schema,
                    values: run.map_or(&empty, |r| &r.input),
                    secrets_set: &[],
                    errors: run.map_or(&no_errors, |r| &r.errors),
                    id: &form_id,
                    disabled: false,
                }))
                @if op.destructive {
                    div.field {
                        label.inline {
                            input type="checkbox" name="confirm" required;
                            " I confirm: " (op.title)
                        }
                    }
                }
                button type="submit" class=[op.destructive.then_some("danger")] { (op.title) }
            }
        }
    }
}

/// `POST /devices/{id}`: "Confirm changes" of the typed JSON (see [`confirm`]).
pub(super) async fn save<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let f = &posted.fields;
    let (name, device_type) = (f.text("name").to_owned(), f.text("type").to_owned());
    let text = f.text("extensions").to_owned();
    let etag = Some(f.text("etag").to_owned()).filter(|t| !t.is_empty());
    confirm(&app, &posted.who, &id, name, device_type, text, etag).await
}

/// `POST /devices/{id}/form/{plugin}`: one extension's part from the form generated from its
/// device-config schema (the alternative to typing JSON), merged into the device's Extension
/// Configuration, then confirmed exactly as typed JSON is.
pub(super) async fn save_form<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, plugin)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let Some(loaded) = app.runtime.plugin(&plugin) else {
        return layout::failure(StatusCode::NOT_FOUND, "No such extension.");
    };
    let device = match api::devices::device_or_404(&app, &posted.who.caller(), &id).await {
        Ok(d) => d,
        Err(e) => return layout::failure(e.status, e.message()),
    };
    let mut extensions = device.extensions.as_object().cloned().unwrap_or_default();
    if posted.fields.checked("remove") {
        extensions.remove(&plugin);
    } else {
        match form::read(&loaded.manifest().device_config_schema, &posted.fields) {
            Ok(part) => {
                extensions.insert(plugin.clone(), Value::Object(part));
            }
            Err(errors) => {
                let message = errors
                    .iter()
                    .map(|(field, es)| format!("{field}: {}", es.join("; ")))
                    .collect::<Vec<_>>()
                    .join(" · ");
                let extra = Extra {
                    notices: vec![("error", format!("Not saved: {message}"))],
                    ..Extra::default()
                };
                return render(
                    &app,
                    &posted.who,
                    &id,
                    extra,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            }
        }
    }
    let text = serde_json::to_string_pretty(&Value::Object(extensions)).unwrap_or_default();
    // Merged into the device as just read: its version is the one to overwrite.
    let etag = Some(device_etag(&device));
    let device_type = device.device_type.unwrap_or_default();
    confirm(&app, &posted.who, &id, device.name, device_type, text, etag).await
}

/// "Confirm changes": the JSON text is checked as `devext validate` checks a file
/// (line:column, pointer); nothing is saved unless it passes, then it is saved through
/// `PUT /api/v1/devices/{id}`'s handler.
async fn confirm<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    id: &str,
    name: String,
    device_type: String,
    text: String,
    etag: Option<String>,
) -> Response {
    let editor = |diagnostics: Vec<Diagnostic>, message: Option<String>| Editor {
        name: name.clone(),
        device_type: device_type.clone(),
        text: text.clone(),
        diagnostics,
        message,
    };
    let source = if text.trim().is_empty() {
        "{}"
    } else {
        text.as_str()
    };
    let diagnostics = validate::document_diagnostics(&app.runtime, source.as_bytes());
    if diagnostics.iter().any(|d| d.kind != Kind::Warning) {
        let extra = Extra {
            editor: Some(editor(
                diagnostics,
                Some("Not saved: the Extension Configuration has problems.".into()),
            )),
            ..Extra::default()
        };
        return render(app, who, id, extra, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let extensions: Value = serde_json::from_str(source).unwrap_or_else(|_| json!({}));
    let kind = Some(device_type.trim()).filter(|t| !t.is_empty());
    let body: api::devices::DeviceBody = match serde_json::from_value(
        json!({"name": name.trim(), "type": kind, "extensions": extensions}),
    ) {
        Ok(b) => b,
        Err(e) => return layout::failure(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut headers = axum::http::HeaderMap::new();
    if let Some(tag) = etag.and_then(|t| axum::http::HeaderValue::from_str(&t).ok()) {
        headers.insert(axum::http::header::IF_MATCH, tag);
    }
    match api::devices::update_device(
        State(app.clone()),
        who.caller(),
        Path(id.to_owned()),
        headers,
        Ok(Json(body)),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/devices/{id}?saved=1")).into_response(),
        Err(e) => {
            let mut message = if e.status == StatusCode::PRECONDITION_FAILED {
                "Not saved: the device was changed by someone else since you opened it. \
                 Reload the page to see the current version (your text is kept below)."
                    .to_owned()
            } else {
                format!("Not saved: {}", e.message())
            };
            if let Some(p) = e.detail_value()["pointer"].as_str() {
                message.push_str(&format!(" (at {p})"));
            }
            let extra = Extra {
                editor: Some(editor(Vec::new(), Some(message))),
                ..Extra::default()
            };
            render(app, who, id, extra, e.status).await
        }
    }
}

/// For each loaded plugin, a form from its device-config schema: an alternative to typing its
/// part of the JSON.
fn plugin_forms<S: Store>(app: &App<S>, who: &Signed, id: &str, extensions: &Value) -> Markup {
    let no_errors = FieldErrors::new();
    html! {
        @for loaded in app.runtime.plugins() {
            @let m = loaded.manifest();
            @let current = extensions.get(&m.name).and_then(Value::as_object).cloned();
            @let form_id = format!("devform-{}", form::slug(&m.name));
            details.devform {
                summary { "Edit the " (m.display_name) " part with a form" }
                form method="post" action=(format!("/devices/{id}/form/{}", m.name)) {
                    (csrf_field(who))
                    (form::fields(&Spec {
                        schema: &m.device_config_schema,
                        values: current.as_ref().unwrap_or(&Map::new()),
                        secrets_set: &[],
                        errors: &no_errors,
                        id: &form_id,
                        disabled: false,
                    }))
                    @if current.is_some() {
                        label.inline { input type="checkbox" name="remove"; " Remove the " (m.display_name) " part" }
                    }
                    button.secondary type="submit" { "Confirm " (m.display_name) " changes" }
                }
            }
        }
    }
}

/// `POST /devices/{id}/delete` (with the confirmation box ticked).
pub(super) async fn delete<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    if !posted.fields.checked("confirm") {
        let extra = Extra {
            notices: vec![(
                "error",
                "Tick \"Yes, delete this device\" to delete it.".into(),
            )],
            ..Extra::default()
        };
        return render(
            &app,
            &posted.who,
            &id,
            extra,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match api::devices::delete_device(State(app.clone()), posted.who.caller(), Path(id)).await {
        Ok(_) => Redirect::to("/devices").into_response(),
        Err(e) => layout::failure(e.status, e.message()),
    }
}

/// `POST /devices/{id}/run/{plugin}/{op}`: the operation's form read by its input schema, run
/// through the API's handler (an action with the form's Idempotency-Key, so a form sent twice
/// runs once); the result or the error appears in the operation's place.
pub(super) async fn run<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, plugin, op)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let Some(operation) = app
        .runtime
        .plugin(&plugin)
        .and_then(|p| p.manifest().operation(&op).cloned())
    else {
        return layout::failure(StatusCode::NOT_FOUND, "No such operation.");
    };
    let mut run = Run {
        plugin: plugin.clone(),
        op: op.clone(),
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: Value::Null,
        input: Map::new(),
        errors: FieldErrors::new(),
    };
    let input = match form::read(&operation.input_schema, &posted.fields) {
        Ok(input) => input,
        Err(errors) => {
            run.errors = errors;
            let extra = Extra {
                run: Some(run),
                ..Extra::default()
            };
            return render(
                &app,
                &posted.who,
                &id,
                extra,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    run.input = input.clone();
    if operation.destructive && !posted.fields.checked("confirm") {
        run.body = json!({"error": {"kind": "invalid_input", "message": "tick the confirmation box: this operation changes the device"}});
        let extra = Extra {
            run: Some(run),
            ..Extra::default()
        };
        return render(
            &app,
            &posted.who,
            &id,
            extra,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let mut headers = HeaderMap::new();
    if operation.kind == OpKind::Action
        && let Some(key) = posted
            .fields
            .get("idempotency_key")
            .filter(|k| !k.is_empty())
        && let Ok(value) = HeaderValue::from_str(&format!("dashboard-{key}"))
    {
        headers.insert("idempotency-key", value);
    }
    let result = api::ops::run_op(
        State(app.clone()),
        posted.who.caller(),
        Path((id.clone(), plugin, op)),
        headers,
        Ok(Json(Value::Object(input))),
    )
    .await;
    let (status, body) = answer(result).await;
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        let (errors, _) =
            form::violations_by_field(&body["error"]["details"], "", &operation.input_schema);
        run.errors = errors;
    }
    run.status = status;
    run.body = body;
    let extra = Extra {
        run: Some(run),
        ..Extra::default()
    };
    render(&app, &posted.who, &id, extra, StatusCode::OK).await
}
