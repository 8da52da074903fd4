//! Who is calling: the bearer key, or a dashboard session's cookie, checked against the role the
//! route table gives the route ([`authorize`], a per-route middleware), and [`Caller`], the
//! handlers' view of the result.
//!
//! A request authenticated by its session cookie (the dashboard's script calling the API) that
//! changes state (any method but GET and HEAD) must also carry the session's anti-forgery token
//! in `x-csrf-token` and, when it sends one, an `Origin` of this service: a browser sends the
//! cookie with a forged cross-site request, never the token.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiResult};
use super::state::App;
use crate::store::{Principal, Role, Store};

/// The caller of a route that needs a key: the principal the route's role check found.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Checks a role that depends on the request's data, beyond the route's own (which
    /// the route layer checked): running an action needs `operator` on a route open to viewers.
    pub(super) fn require(&self, role: Role) -> ApiResult<()> {
        if self.0.role.allows(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(role, self.0.role))
        }
    }
}

impl<T: Send + Sync> FromRequestParts<T> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &T) -> ApiResult<Self> {
        match parts.extensions.get::<Principal>() {
            Some(p) => Ok(Caller(p.clone())),
            // A handler that names its caller on a route the table gives no role: a wiring
            // mistake, never the client's.
            None => {
                let path = parts.uri.path();
                tracing::error!(%path, "a handler needs a caller on a route without a role");
                Err(ApiError::internal(
                    "this route is not set up to identify its caller",
                ))
            }
        }
    }
}

/// The middleware of a route that needs `role`: answers 401 without a valid key and 403 when
/// the key's role does not include `role`; otherwise hands the request on with the key's
/// [`Principal`] in its extensions (for [`Caller`]).
pub(super) async fn authorize<S: Store>(
    State((app, role)): State<(Arc<App<S>>, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match authenticate(&app, req.method(), req.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if !principal.role.allows(role) {
        return ApiError::forbidden(role, principal.role).into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The principal of `Authorization: Bearer <key>`, else of the session cookie.
async fn authenticate<S: Store>(
    app: &App<S>,
    method: &Method,
    headers: &HeaderMap,
) -> ApiResult<Principal> {
    if headers.get(header::AUTHORIZATION).is_none()
        && let Some(token) = crate::dashboard::session_cookie(headers)
    {
        let session = app
            .store
            .session(&crate::users::session_hash(token), app.web.session)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if method != Method::GET && method != Method::HEAD {
            let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
            if csrf != Some(crate::users::csrf_token(token).as_str())
                || !crate::dashboard::same_origin(headers)
            {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "forbidden",
                    "a request with a session cookie that changes something needs the session's \
                     x-csrf-token and this service's Origin",
                ));
            }
        }
        return Ok(Principal::of_user(&session.user));
    }
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthorized)?;
    if !key.starts_with("dvx_") {
        return Err(ApiError::unauthorized());
    }
    app.principal(key).await?.ok_or_else(ApiError::unauthorized)
}
