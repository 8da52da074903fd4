//! The open endpoints: liveness, readiness and metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::App;
use crate::store::Store;

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        Json(json!({"status": "ready", "plugins": app.runtime.plugin_names()})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting down"})),
        )
            .into_response()
    }
}

pub(super) async fn metrics<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    let text = app.metrics.render(&app.runtime);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
