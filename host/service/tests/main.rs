//! The service's integration tests: the HTTP API in-process over an SQLite store.

// Links the echo plugin into this binary so it registers as a static plugin (with `meter`,
// defined here).
use devext_echo as _;

mod api;
mod api_env;
mod dashboard;
mod lookup;
mod meter;
mod route_table;
