//! The runtime's integration tests: one binary, one module per area.

// Links the echo plugin into this binary so it registers as a static plugin.
use devext_echo as _;

#[cfg(feature = "bulk-validate")]
mod bulk;
mod contract;
mod dispatch;
mod loading;
mod trust;
mod util;
mod validation;
