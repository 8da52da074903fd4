//! Devices: a paged list (paging and search run in the store: by name, or by a plugin's lookup
//! field `ext.<plugin>.<field>`) through `GET /api/v1/devices`'s handler, and creation through
//! `POST /api/v1/devices`'s. Devices ticked in the list (or all matching the search) go to a
//! bulk job (`/jobs/new`, see `jobs`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::layout::{self, notice};
use super::session::{Posted, Signed, csrf_field};
use crate::api::{self, App};
use crate::lookup::FILTER_PREFIX;
use crate::store::{Role, Store};

/// Devices per page.
const PAGE: u32 = 50;

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    /// Name contains.
    q: Option<String>,
    /// A lookup filter name (`ext.<plugin>.<field>`) and its value.
    by: Option<String>,
    value: Option<String>,
    cursor: Option<i64>,
}

/// `GET /devices`.
pub(super) async fn page<S: Store>(
    State(app): State<Arc<App<S>>>,
    who: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    render(&app, &who, &q, None, StatusCode::OK).await
}

async fn render<S: Store>(
    app: &Arc<App<S>>,
    who: &Signed,
    q: &ListQuery,
    message: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let filters = app.lookup.filter_names();
    let mut pairs = vec![("limit".to_owned(), PAGE.to_string())];
    let name = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let Some(n) = name {
        pairs.push(("name".into(), n.to_owned()));
    }
    let value = q.value.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let by = q.by.as_deref().filter(|b| filters.iter().any(|f| f == b));
    if let (Some(by), Some(v)) = (by, value) {
        pairs.push((by.to_owned(), v.to_owned()));
    }
    if let Some(c) = q.cursor {
        pairs.push(("cursor".into(), c.to_string()));
    }
    let listed = match api::devices::list_devices(
        State(app.clone()),
        who.caller(),
        Ok(Query(pairs)),
    )
    .await
    {
        Ok(Json(v)) => v,
        Err(e) => return layout::failure(e.status, e.message()),
    };
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    let next = listed["next_cursor"].as_i64();
    let admin = who.user.role.allows(Role::Admin);
    // "All N matching the search", for a job on them (counted up to 5,000).
    let mut search = serde_json::Map::new();
    if let Some(n) = name {
        search.insert("name".into(), json!(n));
    }
    if let (Some(b), Some(v)) = (by, value) {
        search.insert(b.into(), json!(v));
    }
    let matching = if items.is_empty() {
        None
    } else {
        super::jobs::count_matching(app, who, &search, 10)
            .await
            .ok()
    };
    let next_link = next.map(|c| {
        let mut p = vec![("cursor", c.to_string())];
        if let Some(n) = name {
            p.push(("q", n.to_owned()));
        }
        if let (Some(b), Some(v)) = (by, value) {
            p.push(("by", b.to_owned()));
            p.push(("value", v.to_owned()));
        }
        format!(
            "/devices?{}",
            serde_urlencoded::to_string(p).unwrap_or_default()
        )
    });
    let body = html! {
        h1 { "Devices" }
        @if let Some((kind, m)) = &message { (notice(kind, m)) }
        form.search role="search" method="get" action="/devices" {
            div.field {
                label for="q" { "Name contains" }
                input #q type="search" name="q" value=(name.unwrap_or(""));
            }
            @if !filters.is_empty() {
                div.field {
                    label for="by" { "Or find by" }
                    select #by name="by" {
                        @for f in &filters {
                            option value=(f) selected[Some(f.as_str()) == by] {
                                (f.strip_prefix(FILTER_PREFIX).unwrap_or(f))
                            }
                        }
                    }
                }
                div.field {
                    label for="value" { "Value" }
                    input #value type="search" name="value" value=(value.unwrap_or(""));
                }
            }
            button type="submit" { "Search" }
        }
        @if items.is_empty() {
            p { "No devices" @if name.is_some() || value.is_some() { " match this search" } "." }
        } @else {
            form #select-form method="get" action="/jobs/new" {
            @if let Some(n) = name { input type="hidden" name="q" value=(n); }
            @if let (Some(b), Some(v)) = (by, value) {
                input type="hidden" name="by" value=(b);
                input type="hidden" name="value" value=(v);
            }
            div.table-wrap {
                table #devices {
                    thead { tr { th.select scope="col" { span.sr-only { "Select" } } th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Extensions" } th scope="col" { "Updated" } } }
                    tbody {
                        @for d in &items {
                            tr {
                                td.select { input type="checkbox" name="id" value=(d["id"].as_str().unwrap_or("")) aria-label=(format!("Select {}", d["name"].as_str().unwrap_or(""))); }
                                td { a href=(format!("/devices/{}", d["id"].as_str().unwrap_or(""))) { (d["name"].as_str().unwrap_or("")) } }
                                td { (d["type"].as_str().unwrap_or("")) }
                                td { (d["extensions"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                                td { time datetime=(d["updated_at"].as_str().unwrap_or("")) { (d["updated_at"].as_str().unwrap_or("")) } }
                            }
                        }
                    }
                }
            }
            div.selection {
                @if let Some((n, more)) = matching {
                    label.inline {
                        input #select-all type="checkbox" name="all" value="1";
                        " All " (n) @if more { "+" } " devices"
                        @if name.is_some() || value.is_some() { " matching this search" }
                    }
                }
                button type="submit" { "Run an operation on the selected devices…" }
            }
            }
        }
        @if let Some(link) = &next_link {
            nav.pager aria-label="Pages" { a href=(link) rel="next" { "Next page →" } }
        }
        @if admin {
            section.card {
                h2 { "New device" }
                form method="post" action="/devices" {
                    (csrf_field(who))
                    div.field {
                        label for="new-name" { "Name" abbr.req title="required" { "*" } }
                        input #new-name type="text" name="name" required maxlength="200";
                    }
                    div.field {
                        label for="new-type" { "Type" }
                        input #new-type type="text" name="type" maxlength="100";
                    }
                    button type="submit" { "Create device" }
                }
            }
        }
    };
    (status, layout::page("Devices", who, "/devices", body)).into_response()
}

/// `POST /devices`: creates a device (no extension configuration yet) and opens it.
pub(super) async fn create<S: Store>(State(app): State<Arc<App<S>>>, posted: Posted) -> Response {
    let f = &posted.fields;
    let device_type = Some(f.text("type").trim()).filter(|t| !t.is_empty());
    let body: api::devices::DeviceBody =
        match serde_json::from_value(json!({"name": f.text("name").trim(), "type": device_type})) {
            Ok(b) => b,
            Err(e) => return layout::failure(StatusCode::BAD_REQUEST, &e.to_string()),
        };
    match api::devices::create_device(State(app.clone()), posted.who.caller(), Ok(Json(body))).await
    {
        Ok(response) => {
            let (_, created) = super::device::answer(Ok(response)).await;
            let id = created["id"].as_str().unwrap_or("");
            Redirect::to(&format!("/devices/{id}?created=1")).into_response()
        }
        Err(e) => {
            let q = ListQuery::default();
            let msg = Some(("error", format!("Not created: {}", e.message())));
            render(&app, &posted.who, &q, msg, e.status).await
        }
    }
}
