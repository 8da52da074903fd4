//! Signing in and out, the session cookie, and the protection of every form post: the
//! session's anti-forgery token in a hidden field, plus an `Origin` (or `Sec-Fetch-Site`) check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::SESSION_COOKIE;
use super::layout;
use crate::api::{App, Caller};
use crate::store::{Principal, Store, User};
use crate::users::{self, SignIn};

/// The session token of the request's cookie, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Whether a state-changing browser request comes from this service's own pages: its `Origin`
/// is this host (`http://` or `https://` and the `Host` header); without `Origin`, its
/// `Sec-Fetch-Site` is `same-origin` or `none` (typed by the user); a request with neither (not
/// a browser's) passes, the anti-forgery token still applies.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        return host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        });
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

/// The signed-in user of a page request; without a live session, the request is sent to the
/// sign-in page (and back afterwards).
#[derive(Debug, Clone)]
pub(super) struct Signed {
    pub(super) user: User,
    /// The session token (from the cookie).
    token: String,
    /// The session's anti-forgery token, for the page's forms.
    pub(super) csrf: String,
}

impl Signed {
    /// The user as the API's handlers see callers.
    pub(super) fn caller(&self) -> Caller {
        Caller(Principal::of_user(&self.user))
    }

    pub(super) fn token_hash(&self) -> Vec<u8> {
        users::session_hash(&self.token)
    }
}

fn to_sign_in(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let next = if parts.method == axum::http::Method::GET {
        next
    } else {
        parts.uri.path().to_owned()
    };
    let query = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
    Redirect::to(&format!("/sign-in?{query}")).into_response()
}

impl<S: Store> FromRequestParts<Arc<App<S>>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App<S>>) -> Result<Self, Response> {
        let Some(token) = session_cookie(&parts.headers).map(str::to_owned) else {
            return Err(to_sign_in(parts));
        };
        match app
            .store
            .session(&users::session_hash(&token), app.web.session)
            .await
        {
            Ok(Some(session)) => Ok(Signed {
                user: session.user,
                csrf: users::csrf_token(&token),
                token,
            }),
            Ok(None) => Err(to_sign_in(parts)),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the session");
                Err(layout::failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The store failed; try again.",
                ))
            }
        }
    }
}

/// The fields of a posted form, in order.
#[derive(Debug, Clone, Default)]
pub(super) struct Fields(pub(super) Vec<(String, String)>);

impl Fields {
    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or "".
    pub(super) fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Whether a checkbox `name` was ticked.
    pub(super) fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// A form posted by a signed-in user from this service's pages: the session, the same origin
/// and the session's anti-forgery token (field `csrf`) are checked before any handler runs.
pub(super) struct Posted {
    pub(super) who: Signed,
    pub(super) fields: Fields,
}

impl<S: Store> FromRequest<Arc<App<S>>> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App<S>>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let who = Signed::from_request_parts(&mut parts, app).await?;
        if !same_origin(&parts.headers) {
            tracing::warn!(user = %who.user.id, "cross-site form post refused");
            return Err(forgery());
        }
        let req = Request::from_parts(parts, body);
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(req, app)
            .await
            .map_err(|e| layout::failure(StatusCode::BAD_REQUEST, &e.body_text()))?;
        let fields = Fields(fields);
        if fields.get("csrf") != Some(who.csrf.as_str()) {
            tracing::warn!(user = %who.user.id, "form post without the session's token refused");
            return Err(forgery());
        }
        Ok(Posted { who, fields })
    }
}

fn forgery() -> Response {
    layout::failure(
        StatusCode::FORBIDDEN,
        "This form did not come from this site's own pages (its anti-forgery token or origin is \
         wrong), so nothing was done. Reload the page and try again.",
    )
}

/// The hidden anti-forgery field of a form.
pub(super) fn csrf_field(who: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf); }
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// Only a path of this site (`/...`, not `//host`) is a place to go after signing in.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/devices",
    }
}

fn sign_in_form(next: &str, email: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form.card method="post" action="/sign-in" {
            input type="hidden" name="next" value=(next);
            label for="email" { "Email" }
            input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    }
}

/// `GET /sign-in`.
pub(super) async fn sign_in_page(Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    layout::bare("Sign in", sign_in_form(next, "", None)).into_response()
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// The client's address for throttling: the peer, or (behind a trusted proxy) the first
/// address of `X-Forwarded-For`.
fn client_address<S>(app: &App<S>, parts: &HeaderMap, peer: Option<SocketAddr>) -> String {
    if app.web.trust_forwarded_for
        && let Some(first) = parts
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
    {
        return first.trim().to_owned();
    }
    peer.map_or_else(|| "unknown".to_owned(), |p| p.ip().to_string())
}

/// `POST /sign-in`: checks the password (throttled), opens a session, sets its cookie.
pub(super) async fn sign_in<S: Store>(State(app): State<Arc<App<S>>>, req: Request) -> Response {
    let headers = req.headers().clone();
    if !same_origin(&headers) {
        return forgery();
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().cloned();
    let form = match Form::<SignInForm>::from_request(req, &app).await {
        Ok(Form(form)) => form,
        Err(e) => return layout::failure(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let next = safe_next(form.next.as_deref()).to_owned();
    let address = client_address(&app, &headers, peer.map(|c| c.0));
    let outcome = users::sign_in(&app.store, &form.email, &form.password, &address).await;
    let again = |status: StatusCode, message: &str| {
        let page = layout::bare("Sign in", sign_in_form(&next, &form.email, Some(message)));
        (status, page).into_response()
    };
    let user = match outcome {
        Ok(SignIn::Ok(user)) => user,
        Ok(SignIn::Failed) => return again(StatusCode::UNAUTHORIZED, users::SIGN_IN_FAILED),
        Ok(SignIn::Throttled) => {
            return again(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed attempts: try again in 15 minutes.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "sign-in: the store failed");
            return again(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store failed; try again.",
            );
        }
    };
    let (token, hash) = match users::new_session_token() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "sign-in: no randomness");
            return again(StatusCode::INTERNAL_SERVER_ERROR, "Try again.");
        }
    };
    if let Err(e) = app.store.create_session(&user.id, &hash).await {
        tracing::error!(error = %e, "sign-in: cannot store the session");
        return again(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The store failed; try again.",
        );
    }
    // Secure when the service says it is served over https, or a trusted proxy says so.
    let https = app.web.trust_forwarded_for
        && headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let mut response = Redirect::to(&next).into_response();
    set_cookie(&mut response, &app, &token, None, https);
    response
}

/// Sets (or with `max_age` 0, clears) the session cookie.
fn set_cookie<S>(
    response: &mut Response,
    app: &App<S>,
    token: &str,
    max_age: Option<u64>,
    https: bool,
) {
    let secure = if app.web.secure_cookies || https {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}{age}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// `POST /sign-out`: ends this session in the store and clears the cookie.
pub(super) async fn sign_out<S: Store>(State(app): State<Arc<App<S>>>, posted: Posted) -> Response {
    if let Err(e) = app.store.delete_session(&posted.who.token_hash()).await {
        tracing::error!(error = %e, "sign-out: the store failed");
    }
    let mut response = Redirect::to("/sign-in").into_response();
    set_cookie(&mut response, &app, "", Some(0), false);
    response
}

/// `POST /sign-out-everywhere`: ends every session of the user.
pub(super) async fn sign_out_everywhere<S: Store>(
    State(app): State<Arc<App<S>>>,
    posted: Posted,
) -> Response {
    if let Err(e) = app.store.delete_sessions(&posted.who.user.id).await {
        tracing::error!(error = %e, "sign-out everywhere: the store failed");
    }
    let mut response = Redirect::to("/sign-in").into_response();
    set_cookie(&mut response, &app, "", Some(0), false);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_this_hosts_origin_is_the_same_origin() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "https://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; devext_session=abc; b=2")]);
        assert_eq!(session_cookie(&h), Some("abc"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "devext_session=")])),
            None
        );
    }

    #[test]
    fn after_sign_in_only_local_paths() {
        assert_eq!(safe_next(Some("/devices/dev_1")), "/devices/dev_1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil"] {
            assert_eq!(safe_next(Some(bad)), "/devices", "{bad}");
        }
    }
}
