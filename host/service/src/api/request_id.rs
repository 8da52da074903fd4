//! Every request's id: the caller's `x-request-id` when it is a sensible one, else a new one;
//! answered in `x-request-id`, carried by every log line of the request (a `request` span, so
//! the runtime's and the plugins' lines too) and written into the audit entries it makes, so one
//! request can be followed end to end.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The header that carries it, both ways.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The id of the request being handled by this task, if any.
pub(crate) fn current() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// An id a caller may choose: 1 to 64 of `A-Z a-z 0-9 . _ -` (it goes into logs and headers).
fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A new id: `req_` and 16 hex digits of randomness.
fn fresh() -> String {
    let bytes = crate::crypto::random_bytes::<8>().unwrap_or_else(|_| {
        // No randomness: unique enough within the process.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes()
    });
    format!("req_{}", crate::crypto::hex(&bytes))
}

/// The middleware (outermost): gives the request its id and runs it inside its span.
pub(super) async fn assign(req: Request, next: Next) -> Response {
    let id: Arc<str> = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| fresh().into(), Arc::from);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = req.uri().path()
    );
    let mut response = CURRENT
        .scope(id.clone(), next.run(req).instrument(span))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sensible_ids_are_taken_from_the_caller() {
        assert!(acceptable("b6f1-42.x_y"));
        for bad in ["", "a b", "x\ny", "é", &"a".repeat(65)] {
            assert!(!acceptable(bad), "{bad:?}");
        }
        let id = fresh();
        assert!(
            id.starts_with("req_") && id.len() == 20 && acceptable(&id),
            "{id}"
        );
        assert_ne!(fresh(), id);
    }
}
