//! Settings → Extensions: every loaded plugin with its description, an On/Off switch and a form
//! from its org-config schema; "Test connection" when its manifest names a `connection_check`.
//! Saving is `PUT /api/v1/extensions/{plugin}` (its handler), testing is
//! `POST /api/v1/extensions/{plugin}/{check}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::form::{self, FieldErrors, Spec};
use super::layout::{self, notice};
use super::session::{Posted, Signed, csrf_field};
use super::words;
use crate::api::{self, App};
use crate::store::{Role, Store};

/// What to show on one plugin's section after a post.
#[derive(Default)]
struct Outcome {
    plugin: String,
    notices: Vec<(&'static str, String)>,
    errors: FieldErrors,
    /// The values posted (shown again after an error, so nothing typed is lost).
    posted: Option<(bool, Map<String, Value>)>,
}

#[derive(Deserialize)]
pub(super) struct SavedQuery {
    saved: Option<String>,
}

/// `GET /settings/extensions`.
pub(super) async fn page<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Query(q): Query<SavedQuery>,
) -> Response {
    let outcome = q.saved.map(|plugin| Outcome {
        notices: vec![("ok", "Saved.".to_owned())],
        plugin,
        ..Outcome::default()
    });
    render(&app, &who, outcome, StatusCode::OK).await
}

async fn render<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    outcome: Option<Outcome>,
    status: StatusCode,
) -> Response {
    let listed = match api::settings::list_extensions(State(app.clone()), who.caller()).await {
        Ok(Json(v)) => v,
        Err(e) => return layout::failure(e.status, e.message()),
    };
    let admin = who.user.role.allows(Role::Admin);
    // Each form carries the version of the settings it shows (the API's `ETag`): a save over
    // someone else's change is refused with 412.
    let mut etags = std::collections::HashMap::new();
    for item in listed["items"].as_array().into_iter().flatten() {
        let name = item["plugin"].as_str().unwrap_or("");
        match app.store.extension_etag(who.user.org_id, name).await {
            Ok(Some(tag)) => {
                etags.insert(name.to_owned(), tag);
            }
            Ok(None) => {}
            Err(e) => {
                let e = api::ApiError::from(e);
                return layout::failure(e.status, e.message());
            }
        }
    }
    let body = html! {
        h1 { "Settings → Extensions" }
        @if !admin { (notice("info", "Only an admin can change these settings.")) }
        @for item in listed["items"].as_array().into_iter().flatten() {
            @let name = item["plugin"].as_str().unwrap_or("");
            @let mine = outcome.as_ref().filter(|o| o.plugin == name);
            (section(app, who, item, mine, admin, etags.get(name).map(String::as_str)))
        }
    };
    (
        status,
        layout::page("Extensions", who, "/settings/extensions", body),
    )
        .into_response()
}

fn section<S: Store>(
    app: &App<S>,
    who: &Signed,
    item: &Value,
    outcome: Option<&Outcome>,
    admin: bool,
    etag: Option<&str>,
) -> Markup {
    let name = item["plugin"].as_str().unwrap_or("");
    let Some(loaded) = app.runtime.plugin(name) else {
        return html! {};
    };
    let m = loaded.manifest();
    let id = format!("ext-{}", form::slug(name));
    let secrets_set: Vec<String> = item["secrets_set"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    let stored = item["config"].as_object().cloned().unwrap_or_default();
    let (enabled, values) = match outcome.and_then(|o| o.posted.clone()) {
        Some((on, posted)) => (on, posted),
        None => (item["enabled"] == json!(true), stored),
    };
    let no_errors = FieldErrors::new();
    let errors = outcome.map_or(&no_errors, |o| &o.errors);
    html! {
        section.card.extension id=(id) aria-labelledby=(format!("{id}-title")) {
            h2 id=(format!("{id}-title")) {
                (m.display_name)
                " "
                @if item["enabled"] == json!(true) { span.badge.badge-on { "On" } }
                @else { span.badge.badge-off { "Off" } }
            }
            @if !m.description.is_empty() { p.description { (m.description) } }
            @if let Some(o) = outcome {
                @for (kind, message) in &o.notices { (notice(kind, message)) }
            }
            form method="post" action=(format!("/settings/extensions/{name}")) novalidate {
                (csrf_field(who))
                @if let Some(tag) = etag { input type="hidden" name="etag" value=(tag); }
                div.field.switch {
                    label.inline for=(format!("{id}-enabled")) {
                        input id=(format!("{id}-enabled")) type="checkbox" name="enabled" value="on"
                            checked[enabled] disabled[!admin];
                        " On for this organisation"
                    }
                }
                @if let Some(title) = m.org_config_schema["title"].as_str() { h3 { (title) } }
                @if let Some(d) = m.org_config_schema["description"].as_str() { p.help { (d) } }
                (form::fields(&Spec {
                    schema: &m.org_config_schema,
                    values: &values,
                    secrets_set: &secrets_set,
                    errors,
                    id: &id,
                    disabled: !admin,
                }))
                @if admin { button type="submit" { "Save " (m.display_name) " settings" } }
            }
            @if let Some(check) = &m.connection_check {
                form.inline method="post" action=(format!("/settings/extensions/{name}/test")) {
                    (csrf_field(who))
                    input type="hidden" name="op" value=(check);
                    button.secondary type="submit" { "Test connection" }
                }
            }
        }
    }
}

/// `POST /settings/extensions/{plugin}`: the form read by the plugin's schema, saved through the
/// API's handler; its violations land next to their fields.
pub(super) async fn save<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(plugin): Path<String>,
    posted: Posted,
) -> Response {
    let Some(loaded) = app.runtime.plugin(&plugin) else {
        return layout::failure(StatusCode::NOT_FOUND, "No such extension.");
    };
    let schema = loaded.manifest().org_config_schema.clone();
    let enabled = posted.fields.checked("enabled");
    let config = match form::read(&schema, &posted.fields) {
        Ok(c) => c,
        Err(errors) => {
            let outcome = Outcome {
                plugin,
                notices: vec![(
                    "error",
                    "Some fields need fixing; nothing was saved.".into(),
                )],
                errors,
                posted: None,
            };
            return render(
                &app,
                &posted.who,
                Some(outcome),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let body = match serde_json::from_value(json!({"enabled": enabled, "config": config})) {
        Ok(b) => b,
        Err(e) => return layout::failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut headers = axum::http::HeaderMap::new();
    if let Some(tag) = posted
        .fields
        .get("etag")
        .and_then(|t| axum::http::HeaderValue::from_str(t).ok())
    {
        headers.insert(axum::http::header::IF_MATCH, tag);
    }
    let result = api::settings::put_extension(
        State(app.clone()),
        posted.who.caller(),
        Path(plugin.clone()),
        headers,
        Ok(Json(body)),
    )
    .await;
    match result {
        Ok(_) => Redirect::to(&format!(
            "/settings/extensions?saved={plugin}#ext-{}",
            form::slug(&plugin)
        ))
        .into_response(),
        Err(e) => {
            let (errors, general) = form::violations_by_field(e.detail_value(), "/config", &schema);
            let first = if e.status == StatusCode::PRECONDITION_FAILED {
                "Not saved: these settings were changed by someone else since you opened the \
                 page. Reload it to see the current settings."
                    .to_owned()
            } else {
                format!("Not saved: {}", e.message())
            };
            let mut notices = vec![("error", first)];
            notices.extend(general.into_iter().map(|g| ("error", g)));
            // Secrets are never shown again, even as typed.
            let mut shown = config;
            for s in crate::api::secret_fields(&schema) {
                shown.remove(&s);
            }
            let outcome = Outcome {
                plugin,
                notices,
                errors,
                posted: Some((enabled, shown)),
            };
            render(&app, &posted.who, Some(outcome), e.status).await
        }
    }
}

/// `POST /settings/extensions/{plugin}/test`: runs the manifest's `connection_check` view
/// through the API's handler and says what went wrong in words.
pub(super) async fn test_connection<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(plugin): Path<String>,
    posted: Posted,
) -> Response {
    let Some(loaded) = app.runtime.plugin(&plugin) else {
        return layout::failure(StatusCode::NOT_FOUND, "No such extension.");
    };
    let display = loaded.manifest().display_name.clone();
    let Some(check) = loaded.manifest().connection_check.clone() else {
        return layout::failure(
            StatusCode::NOT_FOUND,
            "This extension has no connection test.",
        );
    };
    let result = api::ops::run_org_op(
        State(app.clone()),
        posted.who.caller(),
        Path((plugin.clone(), check)),
        HeaderMap::new(),
        Ok(Json(json!({}))),
    )
    .await;
    let (status, body) = super::device::answer(result).await;
    let message = if status.is_success() {
        (
            "ok",
            format!("Connection test passed: {display} accepted the settings."),
        )
    } else {
        let code = body["error"]["details"]["code"].as_str().unwrap_or("");
        let text = match words::check_code(code) {
            Some(meaning) => format!(
                "Connection test failed: {meaning}. ({})",
                body["error"]["message"].as_str().unwrap_or("")
            ),
            None => format!(
                "Connection test failed: {}",
                words::error_words(&display, status, &body)
            ),
        };
        ("error", text)
    };
    let outcome = Outcome {
        plugin,
        notices: vec![message],
        ..Outcome::default()
    };
    render(&app, &posted.who, Some(outcome), StatusCode::OK).await
}
