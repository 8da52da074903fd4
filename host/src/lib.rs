//! The devext host runtime, as a library.
//!
//! A platform embeds a [`Runtime`]: it loads plugins (linked statically or from shared libraries),
//! validates organisations' settings and devices' extension configurations against the schemas
//! each plugin declares, and runs the plugins' operations under a deadline, with the I/O the host
//! lends them (see [`egress`] for the network rules). The `devext` binary is a thin shell over it.

pub mod egress;
pub mod loader;
pub mod metrics;
pub mod runtime;
pub mod schema;
pub mod schema_export;
pub mod service;
pub mod validate;

mod cache;
mod caps;

pub use devext_plugin_api::{ErrorKind, Manifest, OpKind, Operation, PluginError};
pub use loader::{LoadedPlugin, PluginSource, Refusal};
pub use metrics::OpStats;
pub use runtime::{CallRequest, ConfigWarning, Runtime, RuntimeConfig};
pub use schema::Violation;
