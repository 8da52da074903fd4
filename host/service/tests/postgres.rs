//! The service's integration tests on PostgreSQL: the same modules as `main.rs` (one suite, run
//! on both stores), each test on a fresh database of the test server.

// Links the echo plugin into this binary so it registers as a static plugin (with `meter`,
// defined here).
use devext_echo as _;

/// The store this binary runs the suite on (`tests/postgres.rs` runs it on PostgreSQL).
pub(crate) const BACKEND: devext_service::testing::Backend =
    devext_service::testing::Backend::Postgres;

#[path = "api.rs"]
mod api;
#[path = "api_env.rs"]
mod api_env;
#[path = "backends.rs"]
mod backends;
#[path = "dashboard.rs"]
mod dashboard;
#[path = "jobs.rs"]
mod jobs;
#[path = "lookup.rs"]
mod lookup;
#[path = "meter.rs"]
mod meter;
mod replicas;
#[path = "route_table.rs"]
mod route_table;
