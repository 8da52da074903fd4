//! The API boundary between the devext host and its plugins.
//!
//! A plugin author implements [`Plugin`] and calls [`export_plugin!`] once; the crate is built as
//! `cdylib` (loaded by the host at run time) and `rlib` (linked into a host binary). Both reach
//! the host through the same [`abi::PluginModule`].
//!
//! This crate knows nothing of HTTP clients, async runtimes or any particular service: all I/O is
//! lent by the host through [`Host`].
#![deny(missing_docs)]

pub mod abi;
mod error;
pub mod host;
mod manifest;
pub mod plugin;
pub mod util;
pub mod wire;

pub use error::{ErrorKind, PluginError};
pub use host::{Host, HttpRequest, HttpResponse, LogLevel, Permit, PermitRequest, Priority};
pub use manifest::{DeclaredWarning, Manifest, OpKind, OpScope, Operation};
pub use plugin::{Call, CallContext, Plugin};
pub use serde_json::{self, json, Value};

/// Version of the JSON protocol spoken across the ABI (manifest, context, capabilities).
/// Bumped only for incompatible changes; additions are backward compatible.
pub const PROTOCOL_VERSION: u32 = 1;

/// The version of this crate, recorded in each plugin's manifest as `api_version`.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether a plugin built against `plugin_api` can be used by a host built against `host_api`:
/// same major version, and while the major is 0, same minor (semver caret rules); the plugin may
/// not be newer than the host within that range.
pub fn api_compatible(host_api: &str, plugin_api: &str) -> bool {
    fn parse(v: &str) -> Option<(u64, u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    }
    match (parse(host_api), parse(plugin_api)) {
        (Some(h), Some(p)) => {
            let same_line = if h.0 == 0 {
                h.0 == p.0 && h.1 == p.1
            } else {
                h.0 == p.0
            };
            same_line && p <= h
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::api_compatible;

    #[test]
    fn api_versions_follow_caret_rules() {
        assert!(api_compatible("0.1.0", "0.1.0"));
        assert!(api_compatible("0.1.5", "0.1.2"));
        assert!(
            !api_compatible("0.1.2", "0.1.5"),
            "a plugin newer than the host"
        );
        assert!(!api_compatible("0.2.0", "0.1.0"));
        assert!(api_compatible("1.4.0", "1.0.3"));
        assert!(!api_compatible("2.0.0", "1.9.0"));
        assert!(!api_compatible("0.1.0", "garbage"));
    }
}
