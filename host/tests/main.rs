//! The host's integration tests: one binary, one module per area.

// Links the echo plugin into this binary so it registers as a static plugin.
use devext_echo as _;

mod api;
mod api_env;
mod cli;
mod contract;
mod dispatch;
mod loading;
mod serve_cli;
mod util;
mod validate_cli;
mod validation;
