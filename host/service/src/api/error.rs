//! [`ApiError`]: every error answer, `{"error": {"kind", "message", "details"}}`, and how plugin
//! errors, store errors and rejected requests map to HTTP statuses.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devext_host::Violation;
use devext_plugin_api::{ErrorKind, PluginError};
use serde_json::{Value, json};

use crate::store::{Role, StoreError};

/// An error response: `{"error": {"kind", "message", "details"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    kind: &'static str,
    message: String,
    details: Value,
}

/// A handler's result.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub(crate) fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid API key is required: Authorization: Bearer dvx_...",
        )
    }

    pub(crate) fn forbidden(needed: Role, have: Role) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs the {} role; the key has {}",
                needed.as_str(),
                have.as_str()
            ),
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The 422 of a document with `violations`: the message, `"{what} invalid: "` and the first
    /// violation (its pointer and what is wrong), says how many more there are, as an
    /// operation's does; all of them are in `details.violations`.
    pub(crate) fn violations(what: impl std::fmt::Display, violations: Vec<Violation>) -> Self {
        let first = violations
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let more = match violations.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("{what} invalid: {first}{more}"),
        )
        .details(json!({ "violations": violations }))
    }

    /// The HTTP form of an operation's error.
    pub(crate) fn from_plugin(e: PluginError) -> Self {
        let status = match e.kind {
            // One rule for one kind: the request was read, and what it asks is invalid (a
            // schema violation, with pointers, or a check of the plugin's own). 400 is kept for
            // requests the service cannot read (not JSON, an unknown parameter).
            ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            // The service rejected the org's credentials, failed, or was out of reach: never
            // 401/403, which are about the devext key.
            ErrorKind::Unauthorized | ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            // The host's own refusal (an egress rule against the org's endpoint): no gateway
            // was involved; the org's settings conflict with this host's rules.
            ErrorKind::Forbidden => StatusCode::CONFLICT,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut details = if e.details.is_object() {
            e.details
        } else {
            json!({})
        };
        details["retryable"] = json!(e.retryable);
        ApiError {
            status,
            kind: e.kind.as_str(),
            message: e.message,
            details,
        }
    }

    /// The message for people.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The details (`Null` if none).
    pub(crate) fn detail_value(&self) -> &Value {
        &self.details
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        let mut error = json!({"kind": self.kind, "message": self.message});
        if !self.details.is_null() {
            error["details"] = self.details.clone();
        }
        json!({ "error": error })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::LookupTaken {
                ref entry,
                ref owner,
            } => {
                let details = json!({"pointer": entry.pointer(), "device": owner});
                ApiError::conflict(e.to_string()).details(details)
            }
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::PreconditionFailed(m) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", m)
            }
            // The database, the key or stored data: the operator's to fix, never the caller's.
            e => {
                tracing::error!(error = %e, "store failure");
                ApiError::internal("the store failed; nothing was changed")
            }
        }
    }
}

impl ApiError {
    /// The 408 of a body that did not arrive within the server's body read timeout.
    pub(crate) fn body_timeout(rejection: &(dyn std::error::Error + 'static)) -> Option<Self> {
        crate::server::is_body_timeout(rejection).then(|| {
            Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )
        })
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if let Some(e) = ApiError::body_timeout(&r) {
            return e;
        }
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        ApiError::new(
            if status == StatusCode::UNPROCESSABLE_ENTITY {
                StatusCode::BAD_REQUEST
            } else {
                status
            },
            kind,
            r.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
