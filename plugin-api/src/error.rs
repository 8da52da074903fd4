//! The structured error a plugin returns (and the host returns to its callers).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

use crate::abi::AbiError;

/// What went wrong, in terms a caller can act on.
///
/// Non-exhaustive: new kinds are new wire names, and a receiver reads a name it does not know as
/// [`ErrorKind::Internal`]; a host matching on kinds needs a fallback arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input, or a configuration, is not acceptable (fix the request).
    InvalidInput,
    /// The thing named (device, SIM, operation, plugin) does not exist.
    NotFound,
    /// The request conflicts with the current state (e.g. a refused state transition).
    Conflict,
    /// The external service rejected the org's credentials.
    Unauthorized,
    /// The external service (or the plugin's own limiter) asked to slow down.
    RateLimited,
    /// The external service failed or answered something unusable.
    Upstream,
    /// The call's deadline passed.
    Timeout,
    /// A host capability was refused (e.g. an egress rule).
    Forbidden,
    /// The host lacks a capability the plugin asked for.
    Unsupported,
    /// A bug: a panic, an invalid output, an unexpected state.
    Internal,
}

impl ErrorKind {
    /// Every kind, for exhaustive tables (metrics, docs).
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unauthorized,
        ErrorKind::RateLimited,
        ErrorKind::Upstream,
        ErrorKind::Timeout,
        ErrorKind::Forbidden,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
    ];

    /// The wire name (`invalid_input`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        }
    }

    /// Parses a wire name; an unknown name (from a newer peer) is `Internal`.
    pub fn parse(name: &str) -> ErrorKind {
        ErrorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(ErrorKind::Internal)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation's failure: a kind, a message for humans, optional JSON details, and whether trying
/// again later may succeed. Build it with [`PluginError::new`] or a shorthand
/// ([`PluginError::invalid_input`], ...), then [`PluginError::with_details`] and
/// [`PluginError::retryable`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PluginError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// A sentence for the person who will act on it. Never contains secrets.
    pub message: String,
    /// Machine-readable details (e.g. the upstream error code); `null` when there are none.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
    /// Whether the same call may succeed later.
    #[serde(default)]
    pub retryable: bool,
}

impl PluginError {
    /// An error of `kind` with `message`, no details, not retryable (except for the kinds that are
    /// retryable by nature: `rate_limited` and `timeout`).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: message.into(),
            details: Value::Null,
            retryable: matches!(kind, ErrorKind::RateLimited | ErrorKind::Timeout),
        }
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for [`ErrorKind::Upstream`].
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Attaches machine-readable details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Sets the retryable flag.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Converts to the boundary type.
    pub fn to_abi(&self) -> AbiError {
        AbiError {
            kind: self.kind.as_str().into(),
            message: self.message.as_str().into(),
            details: if self.details.is_null() {
                Default::default()
            } else {
                self.details.to_string().into()
            },
            retryable: self.retryable,
        }
    }

    /// Converts from the boundary type; details that are not JSON are kept as a string.
    pub fn from_abi(e: &AbiError) -> Self {
        let details = if e.details.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&e.details)
                .unwrap_or_else(|_| Value::String(e.details.to_string()))
        };
        PluginError {
            kind: ErrorKind::parse(&e.kind),
            message: e.message.to_string(),
            details,
            retryable: e.retryable,
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for PluginError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_wire_names() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), kind);
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, Value::String(kind.as_str().to_owned()));
        }
        assert_eq!(ErrorKind::parse("from_the_future"), ErrorKind::Internal);
    }

    #[test]
    fn errors_round_trip_through_the_abi() {
        let e = PluginError::conflict("refused")
            .with_details(serde_json::json!({"code": "100300"}))
            .retryable(true);
        assert_eq!(PluginError::from_abi(&e.to_abi()), e);
        let plain = PluginError::not_found("gone");
        assert_eq!(plain.to_abi().details.as_str(), "");
        assert_eq!(PluginError::from_abi(&plain.to_abi()), plain);
    }
}
