//! The admin pages: the audit log (who, when, device, plugin, operation, outcome; filter by
//! device), API keys (created keys shown once; revoke), users (create, disable, enable, reset a
//! password, which ends their sessions), and every user's own account page (change password,
//! sign out everywhere). Keys and the audit log go through the API's handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::layout::{self, notice};
use super::session::{Posted, Signed, csrf_field};
use crate::api::{self, App};
use crate::store::{NewAudit, Role, Store};
use crate::users;

fn admin_only(who: &Signed) -> Option<Response> {
    (!who.user.role.allows(Role::Admin)).then(|| {
        layout::failure(
            StatusCode::FORBIDDEN,
            "This page is for admins of the organisation.",
        )
    })
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    device: Option<String>,
    before: Option<i64>,
}

/// `GET /audit` (`?device=`: one device's entries, filtered in the store).
pub(super) async fn audit_page<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Some(denied) = admin_only(&who) {
        return denied;
    }
    let device = q.device.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let query =
        serde_json::from_value(json!({"device": device, "before": q.before, "limit": 100})).ok();
    let Some(query) = query else {
        return layout::failure(StatusCode::BAD_REQUEST, "bad query");
    };
    let listed =
        match api::audit::audit_log(State(app.clone()), who.caller(), Ok(Query(query))).await {
            Ok(Json(v)) => v,
            Err(e) => return layout::failure(e.status, e.message()),
        };
    let items: Vec<&Value> = listed["items"].as_array().into_iter().flatten().collect();
    let next_link = listed["next_cursor"].as_i64().map(|n| {
        let mut p = vec![("before", n.to_string())];
        if let Some(d) = device {
            p.push(("device", d.to_owned()));
        }
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(p).unwrap_or_default()
        )
    });
    let body = html! {
        h1 { "Audit log" }
        form.search method="get" action="/audit" {
            div.field { label for="device" { "Device id" } input #device type="search" name="device" value=(device.unwrap_or("")); }
            button type="submit" { "Filter" }
        }
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Device" } th scope="col" { "Extension" } th scope="col" { "What" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
                tbody {
                    @for e in &items {
                        tr {
                            td { time datetime=(e["at"].as_str().unwrap_or("")) { (e["at"].as_str().unwrap_or("")) } }
                            td { (who_acted(e)) }
                            td { @if let Some(d) = e["device_id"].as_str() { a href=(format!("/devices/{d}")) { (d) } } }
                            td { (e["plugin"].as_str().unwrap_or("")) }
                            td { (e["action"].as_str().unwrap_or("")) " " (e["op"].as_str().unwrap_or("")) }
                            td { span class=(if e["outcome"] == "ok" { "badge badge-on" } else { "badge badge-danger" }) { (e["outcome"].as_str().unwrap_or("")) } }
                            td.detail { (e["detail"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        @if items.is_empty() { p { "No entries." } }
        @if let Some(link) = &next_link {
            nav.pager { a href=(link) rel="next" { "Older entries →" } }
        }
    };
    layout::page("Audit log", &who, "/audit", body).into_response()
}

fn who_acted(e: &Value) -> String {
    if let Some(email) = e["user_email"].as_str() {
        return format!("user {email}");
    }
    match (e["key_name"].as_str(), e["key_id"].as_str()) {
        (Some(name), Some(id)) if !name.is_empty() => format!("key {name} ({id})"),
        (_, Some(id)) => format!("key {id}"),
        _ => "—".to_owned(),
    }
}

async fn keys_render<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    created: Option<Value>,
    message: Option<(&str, String)>,
) -> Response {
    let listed = match api::keys::list_keys(State(app.clone()), who.caller()).await {
        Ok(Json(v)) => v,
        Err(e) => return layout::failure(e.status, e.message()),
    };
    let body = html! {
        h1 { "API keys" }
        @if let Some((k, m)) = &message { (notice(k, m)) }
        @if let Some(c) = &created {
            div.notice.ok role="status" {
                p { "Key created. Copy it now: it is shown only once." }
                p { code.key { (c["key"].as_str().unwrap_or("")) } }
            }
        }
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { span.sr-only { "Revoke" } } } }
                tbody {
                    @for k in listed["items"].as_array().into_iter().flatten() {
                        @let id = k["id"].as_str().unwrap_or("");
                        tr {
                            td { (k["name"].as_str().unwrap_or("")) }
                            td { code { (id) } }
                            td { (k["role"].as_str().unwrap_or("")) }
                            td { (k["created_at"].as_str().unwrap_or("")) }
                            td { (k["last_used_at"].as_str().unwrap_or("never")) }
                            td {
                                form method="post" action=(format!("/keys/{id}/revoke")) data-confirm="Revoke this key? Programs using it stop working." {
                                    (csrf_field(who))
                                    button.danger type="submit" aria-label=(format!("Revoke key {id}")) { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "New key" }
            form method="post" action="/keys" {
                (csrf_field(who))
                div.field { label for="key-name" { "Name" } input #key-name type="text" name="name" maxlength="100"; }
                div.field {
                    label for="key-role" { "Role" }
                    select #key-role name="role" { option value="viewer" { "viewer" } option value="operator" { "operator" } option value="admin" { "admin" } }
                }
                button type="submit" { "Create key" }
            }
        }
    };
    layout::page("API keys", who, "/keys", body).into_response()
}

/// `GET /keys`.
pub(super) async fn keys_page<S: Store>(State(app): State<Arc<App<S>>>, who: Signed) -> Response {
    if let Some(denied) = admin_only(&who) {
        return denied;
    }
    keys_render(&app, &who, None, None).await
}

/// `POST /keys`: creates a key through the API's handler and shows it once.
pub(super) async fn create_key<S: Store>(
    State(app): State<Arc<App<S>>>,
    posted: Posted,
) -> Response {
    let body = serde_json::from_value(
        json!({"role": posted.fields.text("role"), "name": posted.fields.text("name")}),
    );
    let Ok(body) = body else {
        return keys_render(
            &app,
            &posted.who,
            None,
            Some(("error", "Choose a role.".into())),
        )
        .await;
    };
    let result =
        api::keys::create_key(State(app.clone()), posted.who.caller(), Ok(Json(body))).await;
    match super::device::answer(result).await {
        (s, created) if s.is_success() => keys_render(&app, &posted.who, Some(created), None).await,
        (_, e) => {
            let m = e["error"]["message"]
                .as_str()
                .unwrap_or("failed")
                .to_owned();
            keys_render(&app, &posted.who, None, Some(("error", m))).await
        }
    }
}

/// `POST /keys/{id}/revoke`.
pub(super) async fn revoke_key<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let message = match api::keys::revoke_key(
        State(app.clone()),
        posted.who.caller(),
        Path(id.clone()),
    )
    .await
    {
        Ok(_) => ("ok", format!("Key {id} revoked.")),
        Err(e) => ("error", e.message().to_owned()),
    };
    keys_render(&app, &posted.who, None, Some(message)).await
}

async fn users_render<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    message: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let list = match app.store.users(who.user.org_id).await {
        Ok(l) => l,
        Err(e) => return layout::failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let body = html! {
        h1 { "Users" }
        @if let Some((k, m)) = &message { (notice(k, m)) }
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "Manage" } } }
                tbody {
                    @for u in &list {
                        tr {
                            td { (u.email) }
                            td { (u.role.as_str()) }
                            td { @if u.disabled { span.badge.badge-off { "disabled" } } @else { span.badge.badge-on { "active" } } }
                            td.actions {
                                @if u.id != who.user.id {
                                    form.inline method="post" action=(format!("/users/{}/{}", u.id, if u.disabled { "enable" } else { "disable" })) {
                                        (csrf_field(who))
                                        button.secondary type="submit" aria-label=(format!("{} {}", if u.disabled { "Enable" } else { "Disable" }, u.email)) { @if u.disabled { "Enable" } @else { "Disable" } }
                                    }
                                }
                                form.inline method="post" action=(format!("/users/{}/password", u.id)) {
                                    (csrf_field(who))
                                    label.sr-only for=(format!("pw-{}", u.id)) { "New password for " (u.email) }
                                    input id=(format!("pw-{}", u.id)) type="password" name="password" autocomplete="new-password" placeholder="new password" minlength=(users::MIN_PASSWORD_CHARS) required;
                                    button.secondary type="submit" { "Reset password" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "New user" }
            form method="post" action="/users" {
                (csrf_field(who))
                div.field { label for="u-email" { "Email" abbr.req title="required" { "*" } } input #u-email type="email" name="email" required; }
                div.field {
                    label for="u-role" { "Role" }
                    select #u-role name="role" { option value="viewer" { "viewer" } option value="operator" { "operator" } option value="admin" { "admin" } }
                }
                div.field {
                    label for="u-password" { "Initial password" abbr.req title="required" { "*" } }
                    input #u-password type="password" name="password" autocomplete="new-password" minlength=(users::MIN_PASSWORD_CHARS) required aria-describedby="u-password-help";
                    small.help #u-password-help { (users::MIN_PASSWORD_CHARS) " to " (users::MAX_PASSWORD_CHARS) " characters; give it to the user in person." }
                }
                button type="submit" { "Create user" }
            }
        }
    };
    (status, layout::page("Users", who, "/users", body)).into_response()
}

/// Records a change of a user by an admin (never a password).
async fn audit_user<S: Store>(app: &App<S>, who: &Signed, op: &str, detail: &str) {
    let entry = NewAudit {
        action: "user",
        op: Some(op),
        outcome: "ok",
        detail,
        ..Default::default()
    };
    api::audit::audit(app, &who.caller(), entry).await;
}

/// `GET /users`.
pub(super) async fn users_page<S: Store>(State(app): State<Arc<App<S>>>, who: Signed) -> Response {
    if let Some(denied) = admin_only(&who) {
        return denied;
    }
    users_render(&app, &who, None, StatusCode::OK).await
}

/// `POST /users`.
pub(super) async fn create_user<S: Store>(
    State(app): State<Arc<App<S>>>,
    posted: Posted,
) -> Response {
    if let Some(denied) = admin_only(&posted.who) {
        return denied;
    }
    let f = &posted.fields;
    let Ok(role) = f.text("role").parse::<Role>() else {
        return users_render(
            &app,
            &posted.who,
            Some(("error", "Choose a role.".into())),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    match users::create_user(
        &app.store,
        posted.who.user.org_id,
        f.text("email"),
        role,
        f.text("password"),
    )
    .await
    {
        Ok(u) => {
            audit_user(
                &app,
                &posted.who,
                "create",
                &format!("{} {}", u.email, u.role.as_str()),
            )
            .await;
            users_render(
                &app,
                &posted.who,
                Some(("ok", format!("User {} created.", u.email))),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            users_render(
                &app,
                &posted.who,
                Some(("error", format!("Not created: {e}"))),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

/// `POST /users/{id}/{disable|enable|password}`.
pub(super) async fn change_user<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, change)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    if let Some(denied) = admin_only(&posted.who) {
        return denied;
    }
    let org = posted.who.user.org_id;
    let Ok(Some(user)) = app.store.user(org, &id).await else {
        return layout::failure(StatusCode::NOT_FOUND, "No such user in this organisation.");
    };
    let outcome = match change.as_str() {
        "disable" | "enable" if id == posted.who.user.id => {
            Err("You cannot disable yourself.".to_owned())
        }
        "disable" | "enable" => {
            let disabled = change == "disable";
            match app.store.set_user_disabled(org, &id, disabled).await {
                Ok(_) => Ok(format!(
                    "{} {}.",
                    user.email,
                    if disabled {
                        "disabled; their sessions ended"
                    } else {
                        "enabled"
                    }
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        "password" => match users::hash_password(posted.fields.text("password")) {
            Ok(hash) => match app.store.set_password(org, &id, &hash, None).await {
                Ok(_) => Ok(format!(
                    "Password of {} reset; their sessions ended.",
                    user.email
                )),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        },
        _ => return layout::failure(StatusCode::NOT_FOUND, "No such change."),
    };
    match outcome {
        Ok(m) => {
            audit_user(&app, &posted.who, &change, &user.email).await;
            users_render(&app, &posted.who, Some(("ok", m)), StatusCode::OK).await
        }
        Err(m) => {
            users_render(
                &app,
                &posted.who,
                Some(("error", m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

fn account_body(who: &Signed, message: Option<(&str, String)>) -> maud::Markup {
    html! {
        h1 { "Your account" }
        @if let Some((k, m)) = &message { (notice(k, m)) }
        p { (who.user.email) " · " (who.user.role.as_str()) }
        section.card {
            h2 { "Change password" }
            form method="post" action="/account" {
                (csrf_field(who))
                div.field { label for="current" { "Current password" } input #current type="password" name="current" autocomplete="current-password" required; }
                div.field { label for="new" { "New password" } input #new type="password" name="new" autocomplete="new-password" minlength=(users::MIN_PASSWORD_CHARS) required; }
                button type="submit" { "Change password" }
            }
        }
        section.card {
            h2 { "Sessions" }
            form method="post" action="/sign-out-everywhere" {
                (csrf_field(who))
                button.secondary type="submit" { "Sign out everywhere" }
            }
        }
    }
}

/// `GET /account`.
pub(super) async fn account_page(who: Signed) -> Response {
    layout::page("Account", &who, "/account", account_body(&who, None)).into_response()
}

/// `POST /account`: changes one's own password (the current one first); other sessions end.
pub(super) async fn change_password<S: Store>(
    State(app): State<Arc<App<S>>>,
    posted: Posted,
) -> Response {
    let who = &posted.who;
    let f = &posted.fields;
    let current_ok = match app.store.user_credentials(&who.user.email).await {
        Ok(Some(c)) => {
            let (pw, hash) = (f.text("current").to_owned(), c.password_hash);
            tokio::task::spawn_blocking(move || users::verify_password(&pw, &hash))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    let message = if !current_ok {
        ("error", "The current password is wrong.".to_owned())
    } else {
        match users::hash_password(f.text("new")) {
            Ok(hash) => match app
                .store
                .set_password(
                    who.user.org_id,
                    &who.user.id,
                    &hash,
                    Some(&who.token_hash()),
                )
                .await
            {
                Ok(_) => (
                    "ok",
                    "Password changed; your other sessions ended.".to_owned(),
                ),
                Err(e) => ("error", e.to_string()),
            },
            Err(e) => ("error", e.to_string()),
        }
    };
    if message.0 == "ok" {
        return Redirect::to("/account").into_response();
    }
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        layout::page("Account", who, "/account", account_body(who, Some(message))),
    )
        .into_response()
}
