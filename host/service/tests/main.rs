//! The service's integration tests: the HTTP API in-process over an SQLite store.

// Links the echo plugin into this binary so it registers as a static plugin (with `meter`,
// defined here).
use devext_echo as _;

/// The store this binary runs the suite on (`tests/postgres.rs` runs it on PostgreSQL).
pub(crate) const BACKEND: devext_service::testing::Backend =
    devext_service::testing::Backend::Sqlite;

mod api;
mod api_env;
mod backends;
mod dashboard;
mod jobs;
mod lookup;
mod meter;
mod route_table;
