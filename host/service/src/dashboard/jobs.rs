//! Bulk jobs: devices selected in the list (ticked, or "all matching the search") → an
//! operation and its input from the schema-generated forms (`/jobs/new`) → a confirmation page
//! (destructive operations: type the number of devices, passed as the API's `confirm`) → the
//! job's page (progress, counts, per-device results, downloads as JSON Lines and CSV); and the
//! Jobs page listing them. Every step goes through the jobs API's handlers (`crate::jobs`), as
//! the signed-in user.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use devext_plugin_api::{OpKind, OpScope, Operation};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::form::{self, FieldErrors, Spec};
use super::layout::{self, notice};
use super::session::{Posted, Signed, csrf_field};
use super::words;
use crate::api::{self, App};
use crate::lookup::FILTER_PREFIX;
use crate::store::Store;

// --- The jobs API's handlers, called as the API calls them ----------------------------------

/// The status and JSON body of a jobs handler's answer.
async fn answer(result: Result<Response, api::ApiError>) -> (StatusCode, Value) {
    super::device::answer(result).await
}

async fn create_job<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    body: Value,
    idempotency_key: Option<&str>,
) -> (StatusCode, Value) {
    let mut headers = HeaderMap::new();
    if let Some(v) = idempotency_key.and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert("idempotency-key", v);
    }
    let result = crate::jobs::create_job(State(app.clone()), who.caller(), headers, Ok(Json(body)))
        .await
        .map(IntoResponse::into_response);
    answer(result).await
}

async fn get_job<S: Store>(app: &Arc<App<S>>, who: &Signed, id: &str) -> (StatusCode, Value) {
    let result = crate::jobs::get_job(State(app.clone()), who.caller(), Path(id.to_owned()))
        .await
        .map(IntoResponse::into_response);
    answer(result).await
}

async fn list_jobs<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    cursor: Option<String>,
) -> (StatusCode, Value) {
    let query = match serde_json::from_value(json!({"limit": 50, "cursor": cursor})) {
        Ok(q) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": {"message": e.to_string()}}),
            );
        }
    };
    let result = crate::jobs::list_jobs(State(app.clone()), who.caller(), Ok(Query(query)))
        .await
        .map(IntoResponse::into_response);
    answer(result).await
}

async fn cancel_job<S: Store>(app: &Arc<App<S>>, who: &Signed, id: &str) -> (StatusCode, Value) {
    let result = crate::jobs::cancel_job(State(app.clone()), who.caller(), Path(id.to_owned()))
        .await
        .map(IntoResponse::into_response);
    answer(result).await
}

/// The results handler's answer as it is (JSON Lines or CSV, by `accept`).
async fn job_results<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    id: &str,
    accept: &'static str,
) -> Result<Response, api::ApiError> {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
    crate::jobs::job_results(
        State(app.clone()),
        who.caller(),
        Path(id.to_owned()),
        headers,
    )
    .await
    .map(IntoResponse::into_response)
}

// --- The selection ----------------------------------------------------------------------------

/// The devices a job is for, as the forms carry it: ticked ids (`id`, repeated), or `all` the
/// devices matching the list's search (`q`: name contains; `by` + `value`: a lookup filter).
#[derive(Debug, Default, Clone)]
struct Selection {
    ids: Vec<String>,
    all: bool,
    name: Option<String>,
    lookup: Option<(String, String)>,
}

impl Selection {
    fn read(pairs: &[(String, String)], filters: &[String]) -> Selection {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let by = get("by").filter(|b| filters.contains(b));
        let mut ids: Vec<String> = Vec::new();
        for (n, v) in pairs {
            if n == "id" && !v.trim().is_empty() && !ids.iter().any(|i| i == v.trim()) {
                ids.push(v.trim().to_owned());
            }
        }
        Selection {
            ids,
            all: get("all").is_some(),
            name: get("q"),
            lookup: by.zip(get("value")),
        }
    }

    fn is_empty(&self) -> bool {
        !self.all && self.ids.is_empty()
    }

    /// The hidden fields that carry it to the next step.
    fn hidden(&self) -> Markup {
        html! {
            @if self.all {
                input type="hidden" name="all" value="1";
                @if let Some(n) = &self.name { input type="hidden" name="q" value=(n); }
                @if let Some((by, v)) = &self.lookup {
                    input type="hidden" name="by" value=(by);
                    input type="hidden" name="value" value=(v);
                }
            } @else {
                @for id in &self.ids { input type="hidden" name="id" value=(id); }
            }
        }
    }

    /// The device list's filter (name, lookup).
    fn filter(&self) -> Map<String, Value> {
        let mut f = Map::new();
        if let Some(n) = &self.name {
            f.insert("name".into(), json!(n));
        }
        if let Some((by, v)) = &self.lookup {
            f.insert(by.clone(), json!(v));
        }
        f
    }

    /// The API's `devices`.
    fn api(&self) -> Value {
        if self.all {
            json!({ "filter": self.filter() })
        } else {
            json!({ "ids": self.ids })
        }
    }

    /// The search in words: `whose name contains “x”`.
    fn search_words(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(n) = &self.name {
            parts.push(format!("whose name contains “{n}”"));
        }
        if let Some((by, v)) = &self.lookup {
            parts.push(format!(
                "with {} “{v}”",
                by.strip_prefix(FILTER_PREFIX).unwrap_or(by)
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }

    /// The link back to the device list with the same search.
    fn list_link(&self) -> String {
        let mut p = Vec::new();
        if let Some(n) = &self.name {
            p.push(("q", n.clone()));
        }
        if let Some((by, v)) = &self.lookup {
            p.push(("by", by.clone()));
            p.push(("value", v.clone()));
        }
        if p.is_empty() {
            "/devices".to_owned()
        } else {
            format!(
                "/devices?{}",
                serde_urlencoded::to_string(p).unwrap_or_default()
            )
        }
    }
}

/// How many devices match `filter` (the device list's keys), counted through the list's own
/// handler a page at a time, up to `max_pages` pages: `(count, true)` when it stopped there.
pub(super) async fn count_matching<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    filter: &Map<String, Value>,
    max_pages: u32,
) -> Result<(u64, bool), api::ApiError> {
    const LIMIT: u32 = 500;
    let mut count = 0u64;
    let mut cursor: Option<i64> = None;
    for _ in 0..max_pages {
        let mut pairs: Vec<(String, String)> = filter
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect();
        pairs.push(("limit".into(), LIMIT.to_string()));
        if let Some(c) = cursor {
            pairs.push(("cursor".into(), c.to_string()));
        }
        let Json(page) =
            api::devices::list_devices(State(app.clone()), who.caller(), Ok(Query(pairs))).await?;
        count += page["items"].as_array().map_or(0, Vec::len) as u64;
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => return Ok((count, false)),
        }
    }
    Ok((count, true))
}

/// The number of devices selected (ids as given; a search counted in full).
async fn selected_count<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    sel: &Selection,
) -> Result<u64, api::ApiError> {
    if sel.all {
        // 500 pages of 500: a fleet larger than this is confirmed by the API's own count.
        Ok(count_matching(app, who, &sel.filter(), 500).await?.0)
    } else {
        Ok(sel.ids.len() as u64)
    }
}

fn selection_words(sel: &Selection, count: u64) -> String {
    let devices = if count == 1 { "device" } else { "devices" };
    if sel.all {
        match sel.search_words() {
            Some(s) => format!("all {count} {devices} {s}"),
            None => format!("all {count} {devices} of the organisation"),
        }
    } else {
        format!("{count} selected {devices}")
    }
}

// --- Operations -------------------------------------------------------------------------------

/// The device-scope operations of the extensions switched on for the org, that `who` may run:
/// `(plugin, display name, operation)`.
async fn operations<S: Store>(app: &App<S>, who: &Signed) -> Vec<(String, String, Operation)> {
    let may_act = who.user.role.allows(api::ops::ACTION_ROLE);
    let stored = app
        .store
        .extensions(who.user.org_id)
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for s in stored.iter().filter(|s| s.enabled) {
        let Some(loaded) = app.runtime.plugin(&s.plugin) else {
            continue;
        };
        let m = loaded.manifest();
        for op in &m.operations {
            if op.scope == OpScope::Device && (op.kind == OpKind::View || may_act) {
                out.push((m.name.clone(), m.display_name.clone(), op.clone()));
            }
        }
    }
    out
}

fn find_op<S: Store>(app: &App<S>, plugin: &str, op: &str) -> Option<(String, Operation)> {
    let loaded = app.runtime.plugin(plugin)?;
    let operation = loaded.manifest().operation(op)?.clone();
    (operation.scope == OpScope::Device)
        .then(|| (loaded.manifest().display_name.clone(), operation))
}

// --- /jobs/new: choose the operation ----------------------------------------------------------

/// A refused operation form: which one, what was typed, the errors by field.
struct Typed {
    plugin: String,
    op: String,
    input: Map<String, Value>,
    errors: FieldErrors,
    message: Option<String>,
}

/// `GET /jobs/new?id=...&id=...` or `?all=1&q=...`: the operations to run on the selection.
pub(super) async fn new_page<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let sel = Selection::read(&pairs, &app.lookup.filter_names());
    render_new(&app, &who, &sel, None, StatusCode::OK).await
}

async fn render_new<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    sel: &Selection,
    typed: Option<Typed>,
    status: StatusCode,
) -> Response {
    if sel.is_empty() {
        let body = html! {
            p.crumbs { a href="/jobs" { "Jobs" } " / New job" }
            h1 { "New job" }
            (notice("error", "No devices are selected: tick devices in the device list (or \"all matching the search\"), then choose “Run an operation”."))
            p { a href=(sel.list_link()) { "Back to the devices" } }
        };
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            layout::page("New job", who, "/jobs", body),
        )
            .into_response();
    }
    let count = match selected_count(app, who, sel).await {
        Ok(n) => n,
        Err(e) => return layout::failure(e.status, e.message()),
    };
    let ops = operations(app, who).await;
    let may_act = who.user.role.allows(api::ops::ACTION_ROLE);
    let empty = Map::new();
    let no_errors = FieldErrors::new();
    let body = html! {
        p.crumbs { a href="/jobs" { "Jobs" } " / New job" }
        h1 { "New job" }
        p #selection { "On " strong { (selection_words(sel, count)) } ". " a href=(sel.list_link()) { "Change the selection" } }
        @if count == 0 { (notice("warning", "No device matches this selection.")) }
        @if !may_act {
            p.help { "Your role (" (who.user.role.as_str()) ") may run views on many devices, not actions." }
        }
        @if ops.is_empty() {
            p { "No operation to run: switch an extension on in Settings → Extensions." }
        }
        @for (plugin, display, op) in &ops {
            @let form_id = format!("job-{}-{}", form::slug(plugin), form::slug(&op.name));
            @let this = typed.as_ref().filter(|t| &t.plugin == plugin && t.op == op.name);
            section.card.op id=(form_id) {
                h2 { (display) ": " (op.title)
                    @if op.kind == OpKind::View { " " span.badge { "view" } }
                    @if op.destructive { " " span.badge.badge-danger { "changes the devices" } } }
                @if !op.description.is_empty() { p.help { (op.description) } }
                @if let Some(m) = this.and_then(|t| t.message.as_ref()) { (notice("error", m)) }
                form method="post" action=(format!("/jobs/confirm#{form_id}")) {
                    (csrf_field(who))
                    (sel.hidden())
                    input type="hidden" name="plugin" value=(plugin);
                    input type="hidden" name="op" value=(op.name);
                    (form::fields(&Spec {
                        schema: &op.input_schema,
                        values: this.map_or(&empty, |t| &t.input),
                        secrets_set: &[],
                        errors: this.map_or(&no_errors, |t| &t.errors),
                        id: &form_id,
                        disabled: false,
                    }))
                    button type="submit" { "Continue: " (op.title) "…" }
                }
            }
        }
    };
    (status, layout::page("New job", who, "/jobs", body)).into_response()
}

// --- /jobs/confirm and POST /jobs ---------------------------------------------------------------

/// `POST /jobs/confirm`: the operation's form read by its input schema, then the confirmation
/// page (nothing is created yet).
pub(super) async fn confirm_page<S: Store>(
    State(app): State<Arc<App<S>>>,
    posted: Posted,
) -> Response {
    let f = &posted.fields;
    let sel = Selection::read(&f.0, &app.lookup.filter_names());
    let (plugin, op) = (f.text("plugin").to_owned(), f.text("op").to_owned());
    let Some((display, operation)) = find_op(&app, &plugin, &op) else {
        return layout::failure(StatusCode::NOT_FOUND, "No such operation.");
    };
    let input = match form::read(&operation.input_schema, f) {
        Ok(input) => input,
        Err(errors) => {
            let typed = Typed {
                plugin,
                op,
                input: Map::new(),
                errors,
                message: None,
            };
            return render_new(
                &app,
                &posted.who,
                &sel,
                Some(typed),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    // The input checked against the op's schema now, so a mistake is shown at its field.
    let checked = app
        .runtime
        .plugin(&plugin)
        .and_then(|p| p.validate_input(&op, &Value::Object(input.clone())));
    if let Some(Err(violations)) = checked {
        let body = json!({"error": {"kind": "invalid_input", "message": "", "details": {"violations": violations}}});
        let (errors, rest) =
            form::violations_by_field(&body["error"]["details"], "", &operation.input_schema);
        let typed = Typed {
            plugin,
            op,
            input,
            errors,
            message: (!rest.is_empty()).then(|| rest.join("; ")),
        };
        return render_new(
            &app,
            &posted.who,
            &sel,
            Some(typed),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let job = Pending {
        plugin,
        display,
        operation,
        input,
        sel,
        idempotency_key: crate::crypto::random_bytes::<12>()
            .map(|b| crate::crypto::hex(&b))
            .unwrap_or_default(),
    };
    render_confirm(&app, &posted.who, &job, None, StatusCode::OK).await
}

/// A job about to be created.
struct Pending {
    plugin: String,
    display: String,
    operation: Operation,
    input: Map<String, Value>,
    sel: Selection,
    idempotency_key: String,
}

async fn render_confirm<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    job: &Pending,
    message: Option<String>,
    status: StatusCode,
) -> Response {
    let count = match selected_count(app, who, &job.sel).await {
        Ok(n) => n,
        Err(e) => return layout::failure(e.status, e.message()),
    };
    let op = &job.operation;
    let input_text = Value::Object(job.input.clone()).to_string();
    let body = html! {
        p.crumbs { a href="/jobs" { "Jobs" } " / New job" }
        h1 { "Confirm: " (op.title) }
        @if let Some(m) = &message { (notice("error", m)) }
        section.card {
            dl.view {
                dt { "Operation" } dd { (job.display) ": " (op.title) @if op.destructive { " " span.badge.badge-danger { "changes the devices" } } }
                dt { "Input" } dd {
                    @if job.input.is_empty() { span.none { "none" } }
                    @else { dl.view { @for (k, v) in &job.input {
                        dt { (op.input_schema["properties"][k]["title"].as_str().unwrap_or(k)) }
                        dd { code { (match v { Value::String(s) => s.clone(), other => other.to_string() }) } }
                    } } }
                }
                dt { "Devices" } dd #confirm-count { (selection_words(&job.sel, count)) }
            }
            form method="post" action="/jobs" {
                (csrf_field(who))
                (job.sel.hidden())
                input type="hidden" name="plugin" value=(job.plugin);
                input type="hidden" name="op" value=(op.name);
                input type="hidden" name="input_json" value=(input_text);
                input type="hidden" name="idempotency_key" value=(job.idempotency_key);
                @if op.destructive {
                    div.field {
                        label for="confirm" { "Type the number of devices (" (count) ") to confirm" abbr.req title="required" { "*" } }
                        small.help #confirm-help { "This operation changes the devices; a job on the wrong devices cannot be undone." }
                        input #confirm type="text" name="confirm" inputmode="numeric" pattern="[0-9]+" required autocomplete="off" aria-describedby="confirm-help";
                    }
                }
                button type="submit" class=[op.destructive.then_some("danger")] { "Start the job on " (count) (if count == 1 { " device" } else { " devices" }) }
                " "
                a.button.secondary href=(job.sel.list_link()) { "Cancel" }
            }
        }
    };
    (status, layout::page("Confirm the job", who, "/jobs", body)).into_response()
}

/// `POST /jobs`: creates the job through `POST /api/v1/jobs`'s handler (with the form's
/// Idempotency-Key, so a form sent twice creates one job) and opens its page.
pub(super) async fn create<S: Store>(State(app): State<Arc<App<S>>>, posted: Posted) -> Response {
    let f = &posted.fields;
    let who = &posted.who;
    let sel = Selection::read(&f.0, &app.lookup.filter_names());
    let (plugin, op) = (f.text("plugin").to_owned(), f.text("op").to_owned());
    let Some((display, operation)) = find_op(&app, &plugin, &op) else {
        return layout::failure(StatusCode::NOT_FOUND, "No such operation.");
    };
    let input = match serde_json::from_str::<Value>(f.text("input_json")) {
        Ok(Value::Object(m)) => m,
        _ => {
            return layout::failure(
                StatusCode::BAD_REQUEST,
                "The job's input is not a JSON object.",
            );
        }
    };
    let job = Pending {
        plugin: plugin.clone(),
        display,
        operation: operation.clone(),
        input: input.clone(),
        sel: sel.clone(),
        idempotency_key: f.text("idempotency_key").to_owned(),
    };
    if sel.is_empty() {
        return render_new(&app, who, &sel, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let mut body = json!({"plugin": plugin, "op": op, "input": input, "devices": sel.api()});
    if operation.destructive {
        let typed = f.text("confirm").trim();
        let count = match selected_count(&app, who, &sel).await {
            Ok(n) => n,
            Err(e) => return layout::failure(e.status, e.message()),
        };
        match typed.parse::<u64>() {
            Ok(n) if n == count => body["confirm"] = json!(n),
            _ => {
                let message = if typed.is_empty() {
                    format!("Not started: type {count}, the number of devices, to confirm.")
                } else {
                    format!(
                        "Not started: you typed {typed}, but the selection holds {count} \
                         devices. Check the selection, then type its number."
                    )
                };
                return render_confirm(
                    &app,
                    who,
                    &job,
                    Some(message),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            }
        }
    }
    let key = Some(job.idempotency_key.as_str())
        .filter(|k| !k.is_empty())
        .map(|k| format!("dashboard-job-{k}"));
    let (status, answer) = create_job(&app, who, body, key.as_deref()).await;
    if status.is_success() {
        let id = answer["id"].as_str().unwrap_or("");
        return Redirect::to(&format!("/jobs/{id}")).into_response();
    }
    let message = if answer["error"]["kind"] == "confirmation_required" {
        format!(
            "Not started: the selection now holds {} devices. Check it, then type its number.",
            answer["error"]["details"]["total"]
        )
    } else {
        format!(
            "Not started: {}",
            words::error_words(&job.display, status, &answer)
        )
    };
    render_confirm(&app, who, &job, Some(message), status).await
}

// --- The job's page ---------------------------------------------------------------------------

/// Result rows shown on the job's page (all of them are in the downloads).
const SHOWN_RESULTS: usize = 500;

fn count(job: &Value, field: &str) -> u64 {
    job[field].as_u64().unwrap_or(0)
}

fn finished(job: &Value) -> bool {
    matches!(job["state"].as_str(), Some("done" | "cancelled" | "failed"))
}

fn op_title<S: Store>(app: &App<S>, job: &Value) -> String {
    let plugin = job["plugin"].as_str().unwrap_or("");
    let op = job["op"].as_str().unwrap_or("");
    match find_op(app, plugin, op) {
        Some((display, o)) => format!("{display}: {}", o.title),
        None => format!("{plugin}.{op}"),
    }
}

fn progress(job: &Value) -> Markup {
    let total = count(job, "total");
    let processed = total.saturating_sub(count(job, "pending"));
    let percent = (processed * 100).checked_div(total).unwrap_or(100);
    html! {
        progress data-job-progress max=(total.max(1)) value=(if total == 0 { 1 } else { processed }) {
            (percent) "%"
        }
        " "
        span data-job-text { (processed) " of " (total) " (" (percent) "%)" }
    }
}

fn state_badge(job: &Value) -> Markup {
    let state = job["state"].as_str().unwrap_or("?");
    html! { span class={"badge badge-job-" (state)} data-job-field="state" { (state) } }
}

/// `GET /jobs/{id}`.
pub(super) async fn page<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Path(id): Path<String>,
) -> Response {
    render_job(&app, &who, &id, None, StatusCode::OK).await
}

async fn render_job<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    id: &str,
    message: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let (s, job) = get_job(app, who, id).await;
    if !s.is_success() {
        return layout::failure(
            s,
            job["error"]["message"].as_str().unwrap_or("No such job."),
        );
    }
    let results = read_results(app, who, id).await;
    let done = finished(&job);
    let may_cancel = !done && who.user.role.allows(api::ops::ACTION_ROLE);
    let title = op_title(app, &job);
    let number = |f: &str| {
        html! { span data-job-field=(f) { (count(&job, f)) } }
    };
    let float = |f: &str, unit: &str| match job[f].as_f64() {
        Some(x) => format!("{x:.1}{unit}"),
        None => "—".to_owned(),
    };
    let text = |f: &str| job[f].as_str().unwrap_or("").to_owned();
    let body = html! {
        p.crumbs { a href="/jobs" { "Jobs" } " / " (id) }
        h1 { (title) }
        @if let Some((kind, m)) = &message { (notice(kind, m)) }
        section.card #job data-job=(id) data-finished=[done.then_some("1")] {
            p.job-progress { (progress(&job)) " " (state_badge(&job)) }
            @if !done {
                p.help { "The page follows the job. " a href=(format!("/jobs/{id}")) { "Reload" } }
            }
            dl.view {
                dt { "Done" } dd { (number("done")) }
                dt { "Failed" } dd { (number("failed")) }
                dt { "Skipped" } dd { (number("skipped")) }
                dt { "Unknown outcome" } dd { (number("unknown")) }
                dt { "Pending" } dd { (number("pending")) }
                dt { "Rate" } dd { span data-job-field="rate_per_s" { (float("rate_per_s", " per second")) } }
                dt { "Time left" } dd { span data-job-field="eta_s" { (float("eta_s", " s")) } }
                dt { "Input" } dd { code { (job["input"].to_string()) } }
                dt { "Selection" } dd { code { (job["selection"].to_string()) } }
                dt { "Started by" } dd { (text("created_by")) }
                dt { "Created" } dd { time datetime=(text("created_at")) { (text("created_at")) } }
                @if let Some(t) = job["finished_at"].as_str() { dt { "Finished" } dd { time datetime=(t) { (t) } } }
            }
            @if let Some(e) = job["error"].as_object() {
                (notice("error", &format!("The job could not run: {}", e.get("message").and_then(Value::as_str).unwrap_or(""))))
            }
            @if may_cancel {
                form.inline method="post" action=(format!("/jobs/{id}/cancel")) data-confirm="Cancel this job? Items in flight finish, the rest are skipped." {
                    (csrf_field(who))
                    button.danger type="submit" { "Cancel the job" }
                }
            }
        }
        section.card aria-labelledby="results-title" {
            h2 #results-title { "Results" }
            p { "Download: " a href=(format!("/jobs/{id}/results.jsonl")) download { "JSON Lines" } " · " a href=(format!("/jobs/{id}/results.csv")) download { "CSV" } }
            @match &results {
                Err(m) => { (notice("error", m)) }
                Ok(rows) => {
                    @if count(&job, "total") > rows.len() as u64 {
                        p.help { "The first " (rows.len()) " of " (count(&job, "total")) " devices; the downloads hold them all." }
                    }
                    div.table-wrap {
                        table #results {
                            thead { tr { th scope="col" { "Device" } th scope="col" { "Outcome" } th scope="col" { "Error" } th scope="col" { "Result" } } }
                            tbody {
                                @for r in rows {
                                    @let device = r["device"].as_str().unwrap_or("");
                                    @let outcome = r["outcome"].as_str().unwrap_or("");
                                    tr {
                                        td { a href=(format!("/devices/{device}")) { code { (device) } } }
                                        td { span class={"badge badge-outcome-" (outcome)} { (outcome) } }
                                        td { @if let Some(e) = r["error"].as_object() {
                                            (e.get("kind").and_then(Value::as_str).unwrap_or("")) ": " (e.get("message").and_then(Value::as_str).unwrap_or(""))
                                        } }
                                        td.detail { @if !r["result"].is_null() { code { (truncate(&r["result"].to_string(), 300)) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let head = if done {
        html! {}
    } else {
        // Without the script, the page reloads itself while the job runs.
        html! { noscript { meta http-equiv="refresh" content="3"; } }
    };
    (
        status,
        layout::page_with_head(&format!("Job {id}"), who, "/jobs", head, body),
    )
        .into_response()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// The first [`SHOWN_RESULTS`] result lines, read from the results handler's stream (the rest is
/// not read: a large job's page stays cheap).
async fn read_results<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    id: &str,
) -> Result<Vec<Value>, String> {
    use futures_util::StreamExt as _;
    let response = job_results(app, who, id, "application/x-ndjson")
        .await
        .map_err(|e| format!("The results cannot be read: {}", e.message()))?;
    let mut stream = response.into_body().into_data_stream();
    let mut rows = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let push = |line: &[u8], rows: &mut Vec<Value>| {
        if rows.len() < SHOWN_RESULTS && !line.iter().all(u8::is_ascii_whitespace) {
            rows.push(serde_json::from_slice(line).unwrap_or(Value::Null));
        }
    };
    while rows.len() < SHOWN_RESULTS {
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(format!("The results cannot be read: {e}")),
            None => {
                push(&buf, &mut rows);
                break;
            }
        }
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            push(&line, &mut rows);
        }
    }
    Ok(rows)
}

/// `POST /jobs/{id}/cancel`.
pub(super) async fn cancel<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let (status, body) = cancel_job(&app, &posted.who, &id).await;
    if status.is_success() {
        return Redirect::to(&format!("/jobs/{id}")).into_response();
    }
    let message = format!(
        "Not cancelled: {}",
        body["error"]["message"]
            .as_str()
            .unwrap_or("the service refused")
    );
    render_job(&app, &posted.who, &id, Some(("error", message)), status).await
}

/// `GET /jobs/{id}/results.jsonl`: the results as a JSON Lines download.
pub(super) async fn download_jsonl<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Path(id): Path<String>,
) -> Response {
    download(&app, &who, &id, "application/x-ndjson", "jsonl").await
}

/// `GET /jobs/{id}/results.csv`: the results as a CSV download.
pub(super) async fn download_csv<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Path(id): Path<String>,
) -> Response {
    download(&app, &who, &id, "text/csv", "csv").await
}

/// The results handler's answer as a download (`Content-Disposition: attachment`).
async fn download<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    id: &str,
    accept: &'static str,
    ext: &str,
) -> Response {
    match job_results(app, who, id, accept).await {
        Ok(mut response) => {
            let safe: String = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"{safe}-results.{ext}\""))
            {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => layout::failure(e.status, e.message()),
    }
}

// --- The Jobs page ----------------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct ListQuery {
    cursor: Option<String>,
}

/// `GET /jobs`: the org's jobs, newest first, with their progress.
pub(super) async fn list<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let (status, page) = list_jobs(&app, &who, q.cursor.filter(|c| !c.is_empty())).await;
    if !status.is_success() {
        return layout::failure(
            status,
            page["error"]["message"]
                .as_str()
                .unwrap_or("The jobs cannot be listed."),
        );
    }
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let next = page["next"].as_str().map(|c| {
        format!(
            "/jobs?{}",
            serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default()
        )
    });
    let body = html! {
        h1 { "Jobs" }
        p.help { "A job runs one operation on many devices. Start one from the device list: tick devices (or all matching a search), then “Run an operation”." }
        @if items.is_empty() {
            p { "No jobs yet." }
        } @else {
            div.table-wrap {
                table #jobs {
                    thead { tr { th scope="col" { "Job" } th scope="col" { "Operation" } th scope="col" { "State" } th scope="col" { "Progress" } th scope="col" { "Failed" } th scope="col" { "Started by" } th scope="col" { "Created" } } }
                    tbody {
                        @for job in &items {
                            @let id = job["id"].as_str().unwrap_or("");
                            tr {
                                td { a href=(format!("/jobs/{id}")) { code { (id) } } }
                                td { (op_title(&app, job)) }
                                td { (state_badge(job)) }
                                td { (progress(job)) }
                                td { (count(job, "failed") + count(job, "unknown")) }
                                td { (job["created_by"].as_str().unwrap_or("")) }
                                td { time datetime=(job["created_at"].as_str().unwrap_or("")) { (job["created_at"].as_str().unwrap_or("")) } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(link) = &next {
            nav.pager aria-label="Pages" { a href=(link) rel="next" { "Older jobs →" } }
        }
    };
    (StatusCode::OK, layout::page("Jobs", &who, "/jobs", body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn a_selection_is_ids_or_all_matching_the_search() {
        let filters = vec!["ext.p.serial".to_owned()];
        let s = Selection::read(
            &pairs(&[
                ("id", "dev_1"),
                ("id", " dev_2 "),
                ("id", "dev_1"),
                ("q", "x"),
            ]),
            &filters,
        );
        assert_eq!(s.api(), json!({"ids": ["dev_1", "dev_2"]}));
        let s = Selection::read(
            &pairs(&[
                ("id", "dev_1"),
                ("all", "1"),
                ("q", " pump "),
                ("by", "ext.p.serial"),
                ("value", "42"),
            ]),
            &filters,
        );
        assert_eq!(
            s.api(),
            json!({"filter": {"name": "pump", "ext.p.serial": "42"}})
        );
        assert_eq!(
            selection_words(&s, 3),
            "all 3 devices whose name contains “pump” and with p.serial “42”"
        );
        // An unknown lookup filter is dropped, not passed on.
        let s = Selection::read(
            &pairs(&[("all", "1"), ("by", "evil"), ("value", "1")]),
            &filters,
        );
        assert_eq!(s.api(), json!({"filter": {}}));
        assert!(Selection::read(&pairs(&[("q", "x")]), &filters).is_empty());
    }
}
