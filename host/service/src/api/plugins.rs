//! The loaded plugins.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::state::App;
use crate::store::Store;

pub(super) async fn list_plugins<S: Store>(State(app): State<Arc<App<S>>>) -> Json<Value> {
    let plugins: Vec<Value> = app
        .runtime
        .plugins()
        .map(|p| {
            json!({
                "manifest": p.manifest(),
                "source": p.source().to_string(),
                // Presentation hints a UI will ignore (unknown keys, bad values), found at load.
                "hint_warnings": p.hint_warnings(),
            })
        })
        .collect();
    Json(json!({ "items": plugins }))
}
