//! An API error in words a person understands, from its status, kind, message and details
//! (never a raw JSON body).

use axum::http::StatusCode;
use serde_json::Value;

/// A sentence for the error `body` (`{"error": {...}}`) of an answer with `status` from the
/// extension called `display_name`.
pub(super) fn error_words(display_name: &str, status: StatusCode, body: &Value) -> String {
    let e = &body["error"];
    let message = e["message"].as_str().unwrap_or("no message");
    let kind = e["kind"].as_str().unwrap_or("");
    let d = &e["details"];
    match (status.as_u16(), kind) {
        (429, _) => {
            let wait = d["retry_after_ms"]
                .as_u64()
                .map(|ms| ms.div_ceil(1000))
                .or_else(|| d["retry_after_secs"].as_u64());
            match wait {
                Some(s) => format!(
                    "{display_name} is rate limiting these requests: try again in {s} s. ({message})"
                ),
                None => format!(
                    "{display_name} is rate limiting these requests: try again shortly. ({message})"
                ),
            }
        }
        (502, "unauthorized") => format!(
            "{display_name} rejected the organisation's credentials: check the settings. ({message})"
        ),
        (502, _) => format!("{display_name} failed or could not be reached: {message}"),
        (504, _) => format!("{display_name} did not answer in time: {message}"),
        (409, "forbidden") => {
            format!("This service's egress rules refuse the extension's endpoint: {message}")
        }
        (409, _) => format!("{display_name} refused: {message}"),
        (404, _) => format!("Not found: {message}"),
        (422, _) => format!("Not accepted: {message}"),
        (403, _) => format!("Your role may not do this: {message}"),
        _ => format!("Failed ({}): {message}", status.as_u16()),
    }
}

/// What a connection check's `details.code` means, if it is one of the agreed codes.
pub(super) fn check_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "bad_credentials" => "the username or password (or API key) is wrong",
        "license_refused" => "the license key was refused",
        "unreachable" => "the API endpoint cannot be reached",
        "egress_refused" => "this service's egress rules refuse the endpoint",
        "timeout" => "the endpoint did not answer in time",
        "upstream_error" => "the service answered with an error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_read_as_sentences() {
        let limited = json!({"error": {"kind": "rate_limited", "message": "slow down", "details": {"retry_after_ms": 2100}}});
        assert_eq!(
            error_words("Acme SIMs", StatusCode::TOO_MANY_REQUESTS, &limited),
            "Acme SIMs is rate limiting these requests: try again in 3 s. (slow down)"
        );
        let creds = json!({"error": {"kind": "unauthorized", "message": "401"}});
        assert!(
            error_words("Acme SIMs", StatusCode::BAD_GATEWAY, &creds)
                .contains("rejected the organisation's credentials")
        );
        let refused =
            json!({"error": {"kind": "conflict", "message": "cannot go back from Retired"}});
        assert_eq!(
            error_words("Acme SIMs", StatusCode::CONFLICT, &refused),
            "Acme SIMs refused: cannot go back from Retired"
        );
    }
}
