//! The stylesheet and script, compiled into the binary and served under names that carry a
//! hash of their content (`app.3f2a9c1b0d.css`), so that they are cached for a year and a new
//! build's are fetched at once.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    stem: &'static str,
    ext: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 2] = [
    Asset {
        stem: "app",
        ext: "css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
    },
    Asset {
        stem: "app",
        ext: "js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
];

fn hashed_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                let hash: String = crate::crypto::hex(&digest[..5]);
                format!("{}.{hash}.{}", a.stem, a.ext)
            })
            .collect()
    })
}

/// The URL of the stylesheet.
pub(super) fn css_url() -> String {
    format!("/assets/{}", hashed_names()[0])
}

/// The URL of the script.
pub(super) fn js_url() -> String {
    format!("/assets/{}", hashed_names()[1])
}

/// `GET /assets/{name}`: an asset under its hashed name (cached for a year), else 404.
pub(super) async fn serve(Path(name): Path<String>) -> Response {
    let Some(i) = hashed_names().iter().position(|n| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let asset = &ASSETS[i];
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
