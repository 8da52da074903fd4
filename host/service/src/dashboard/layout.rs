//! The page shell: head (stylesheet, script), navigation by role, the signed-in user, sign-out.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::session::{Signed, csrf_field};
use crate::store::Role;

fn head(title: &str) -> Markup {
    head_with(title, html! {})
}

/// The head with `extra` elements at its end.
fn head_with(title: &str, extra: Markup) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · devext" }
            link rel="stylesheet" href=(assets::css_url());
            script src=(assets::js_url()) defer {}
            (extra)
        }
    }
}

/// A page without navigation (sign-in, errors).
pub(super) fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    header.top { a.brand href="/" { "devext" } }
                    main #main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A page of the signed-in user: `active` names the navigation entry to mark.
pub(super) fn page(title: &str, who: &Signed, active: &str, body: Markup) -> Html<String> {
    page_with_head(title, who, active, html! {}, body)
}

/// [`page`] with `extra` elements in the head.
pub(super) fn page_with_head(
    title: &str,
    who: &Signed,
    active: &str,
    extra: Markup,
    body: Markup,
) -> Html<String> {
    let admin = who.user.role.allows(Role::Admin);
    let nav: &[(&str, &str, bool)] = &[
        ("/devices", "Devices", true),
        ("/jobs", "Jobs", true),
        ("/settings/extensions", "Settings", true),
        ("/audit", "Audit log", admin),
        ("/keys", "API keys", admin),
        ("/users", "Users", admin),
    ];
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head_with(title, extra))
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/" { "devext" }
                        nav aria-label="Main" {
                            ul {
                                @for (href, label, shown) in nav {
                                    @if *shown {
                                        li {
                                            @if *href == active {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            a href="/account" title="Your account" { (who.user.email) }
                            span.role { (who.user.role.as_str()) }
                            form method="post" action="/sign-out" {
                                (csrf_field(who))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                    main #main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// An error page with a status.
pub(super) fn failure(status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { (status.canonical_reason().unwrap_or("Error")) }
        p.error role="alert" { (message) }
        p { a href="/" { "Back to the dashboard" } }
    };
    (status, bare("Error", body)).into_response()
}

/// A notice box (`kind`: `ok`, `error`, `warning`, `info`).
pub(super) fn notice(kind: &str, message: &str) -> Markup {
    let role = if kind == "error" { "alert" } else { "status" };
    html! { p class={"notice " (kind)} role=(role) { (message) } }
}
