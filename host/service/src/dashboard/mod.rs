//! The web dashboard, served at `/` next to the API: server-rendered HTML (maud: every value
//! is escaped unless a template says otherwise, and no template does for plugin data), our own
//! small stylesheet and script (served from the binary under content-hashed names), forms that
//! work without JavaScript.
//!
//! Everything a page shows of an extension comes from the plugins' manifests and schemas
//! ([`form`] builds forms from JSON Schemas, [`view`] renders view outputs); no plugin is named
//! here. Every action goes through the API's own handler (`crate::api::*`), called with the
//! signed-in user as its [`Caller`](crate::api::Caller): the same checks, the same audit entry.
//!
//! Modules: `session` (the cookie, sign-in, the anti-forgery token and `Origin` check),
//! `layout` (the page shell), `assets`, `form`, `view`, `words` (errors in words), and one per
//! page group: `settings`, `devices`, `device`, `jobs` (bulk jobs),
//! `admin` (audit log, API keys, users, account).

mod admin;
mod assets;
mod device;
mod devices;
mod form;
mod jobs;
mod layout;
mod session;
mod settings;
mod view;
mod words;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};

use crate::api::App;
use crate::store::Store;

pub(crate) use session::{same_origin, session_cookie};

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "devext_session";

/// The dashboard's routes (merged into the service's router, which adds the state).
pub(crate) fn routes<S: Store>() -> Router<Arc<App<S>>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/devices") }))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in::<S>),
        )
        .route("/sign-out", post(session::sign_out::<S>))
        .route(
            "/sign-out-everywhere",
            post(session::sign_out_everywhere::<S>),
        )
        .route(
            "/account",
            get(admin::account_page).post(admin::change_password::<S>),
        )
        .route("/settings/extensions", get(settings::page::<S>))
        .route("/settings/extensions/{plugin}", post(settings::save::<S>))
        .route(
            "/settings/extensions/{plugin}/test",
            post(settings::test_connection::<S>),
        )
        .route(
            "/devices",
            get(devices::page::<S>).post(devices::create::<S>),
        )
        .route(
            "/devices/{id}",
            get(device::page::<S>).post(device::save::<S>),
        )
        .route("/devices/{id}/delete", post(device::delete::<S>))
        .route("/devices/{id}/form/{plugin}", post(device::save_form::<S>))
        .route("/devices/{id}/run/{plugin}/{op}", post(device::run::<S>))
        .route("/jobs", get(jobs::list::<S>).post(jobs::create::<S>))
        .route("/jobs/new", get(jobs::new_page::<S>))
        .route("/jobs/confirm", post(jobs::confirm_page::<S>))
        .route("/jobs/{id}", get(jobs::page::<S>))
        .route("/jobs/{id}/cancel", post(jobs::cancel::<S>))
        .route("/jobs/{id}/results.jsonl", get(jobs::download_jsonl::<S>))
        .route("/jobs/{id}/results.csv", get(jobs::download_csv::<S>))
        .route("/audit", get(admin::audit_page::<S>))
        .route(
            "/keys",
            get(admin::keys_page::<S>).post(admin::create_key::<S>),
        )
        .route("/keys/{id}/revoke", post(admin::revoke_key::<S>))
        .route(
            "/users",
            get(admin::users_page::<S>).post(admin::create_user::<S>),
        )
        .route("/users/{id}/{change}", post(admin::change_user::<S>))
        .route("/assets/{name}", get(assets::serve))
        .layer(middleware::from_fn(security_headers))
}

/// The content security policy: our own scripts, styles and images only (no inline script or
/// style), no framing, forms posting only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every dashboard answer.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages hold the user's data: never kept by shared caches, never shown from history
        // after sign-out.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
