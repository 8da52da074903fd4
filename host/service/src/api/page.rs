//! Paged listings (devices, the audit log): the page size a request may ask for.

use serde_json::json;

use super::error::{ApiError, ApiResult};

/// The page size when the request gives none.
pub(super) const DEFAULT_LIMIT: u32 = 50;
/// The smallest page size a request may ask for.
pub(super) const MIN_LIMIT: u32 = 1;
/// The largest page size a request may ask for.
pub(super) const MAX_LIMIT: u32 = 500;

/// The page size of a request's `limit` ([`DEFAULT_LIMIT`] if not given); one out of
/// [`MIN_LIMIT`]..=[`MAX_LIMIT`] is a 400 naming the parameter and its range, never bent into it.
pub(crate) fn limit(requested: Option<u32>) -> ApiResult<u32> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (MIN_LIMIT..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "query parameter \"limit\": {n} is out of range: a page has {MIN_LIMIT} to \
             {MAX_LIMIT} items"
        ))
        .details(json!({"parameter": "limit", "minimum": MIN_LIMIT, "maximum": MAX_LIMIT}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_pages_and_beyond_them_is_an_error() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some(MIN_LIMIT)).unwrap(), MIN_LIMIT);
        assert_eq!(limit(Some(MAX_LIMIT)).unwrap(), MAX_LIMIT);
        for n in [0, MAX_LIMIT + 1, u32::MAX] {
            let e = limit(Some(n)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{n}");
        }
    }
}
