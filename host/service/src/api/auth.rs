//! Who is calling: the bearer key, checked against the role the route table gives the route
//! ([`authorize`], a per-route middleware), and [`Caller`], the handlers' view of the result.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, header, request::Parts};
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
    let principal = match authenticate(&app, req.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if !principal.role.allows(role) {
        return ApiError::forbidden(role, principal.role).into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The principal of `Authorization: Bearer <key>`.
async fn authenticate<S: Store>(app: &App<S>, headers: &HeaderMap) -> ApiResult<Principal> {
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
