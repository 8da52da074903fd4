//! The devext host runtime, as a library.
//!
//! A platform embeds a [`Runtime`]: it loads plugins (linked statically or from shared libraries),
//! validates organisations' settings and devices' extension configurations against the schemas
//! each plugin declares, and runs the plugins' operations under a deadline, with the I/O the host
//! lends them (see [`egress`] for the network rules). It knows no plugin, no store and no HTTP server:
//! the service (`devext-service`) and the `devext` binary are built on it.
//!
//! Cargo features: `bulk-validate` (the streaming engine of `devext validate`) and `schema-tools`
//! (schema export, drift check and breaking-change diff); both off by default.

pub mod egress;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod hints;
pub mod limiter;
pub mod loader;
pub mod metrics;
pub mod runtime;
pub mod schema;
#[cfg(feature = "schema-tools")]
pub mod schema_export;
#[cfg(feature = "bulk-validate")]
pub mod validate;

mod account;
mod cache;
mod caps;
pub mod clock;

pub use clock::HostClock;
pub use devext_plugin_api::Priority;
pub use devext_plugin_api::{ErrorKind, Manifest, OpKind, OpScope, Operation, PluginError};
pub use hints::{HintProblem, HintWarning};
pub use loader::{
    AbiMismatch, LoadedPlugin, ManifestProblem, PluginSource, Refusal, RefusalReason, RefusedSource,
};
pub use metrics::OpStats;
pub use runtime::{
    CallRequest, ConfigError, ConfigWarning, EndpointRefused, Runtime, RuntimeConfig, SharedLimiter,
};
pub use schema::{SchemaError, Violation};
