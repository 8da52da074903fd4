//! The binary interface between the host and a plugin: the only types that cross a library boundary.
//!
//! Everything here is `#[repr(C)]` and checked by `abi_stable` when a library is loaded. The surface
//! is kept deliberately tiny: one root module with two functions, one error struct and one host
//! capability object. Everything else travels as versioned JSON (the manifest, the call context,
//! capability requests), so adding a host capability or a plugin feature never adds a field here.
//!
//! Compatibility rules (see `ARCHITECTURE.md`):
//! - [`PluginModule`] is a prefix type. Its prefix — the fields up to and including the one
//!   marked `#[sabi(last_prefix_field)]` (`invoke`) — is what protocol 1 guarantees: every
//!   plugin has it, its accessors return the field itself, and it never changes (changing or
//!   moving it is a breaking change that needs a new [`crate::PROTOCOL_VERSION`]).
//!   A field may only be appended after the last one, never between others, and an appended field
//!   is optional: the struct carries `#[sabi(missing_field(option))]`, so abi_stable generates
//!   an accessor returning `Option<FieldType>` for every field after the prefix, `None` for a
//!   plugin built against an older `devext-plugin-api` that did not have it. The host must handle
//!   that `None` (fall back to the older behaviour), never `unwrap` it. Do not put
//!   `missing_field(panic)` (or a per-field `missing_field`) on an appended field: an older
//!   plugin would then crash the host on first access instead of being served the old way.
//!   (abi_stable 0.11 docs, `docs::prefix_types`: "Getter methods for fields after the one to
//!   which `#[sabi(last_prefix_field)]` was applied to will return `Option<FieldType>` by
//!   default, because those fields might not exist"; `#[sabi(missing_field(..))]` overrides that
//!   on the struct or a field.) Before appending a field, prefer what needs none: a new
//!   capability name, a new manifest field, a new error kind string.
//! - [`HostCaps`] methods are a prefix vtable: methods may only be appended.
//! - [`AbiError`] is never changed; new error information goes into its `details` JSON.

// The derive and trait-object macros of abi_stable expand to unsafe impls and old-style items.
#![allow(unsafe_code, non_local_definitions, non_camel_case_types, missing_docs)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RResult, RStr, RString},
    StableAbi,
};
use async_ffi::FfiFuture;

/// An error crossing the boundary, in either direction.
///
/// `kind` is one of the strings of [`crate::ErrorKind`]; a kind the receiver does not know is
/// treated as `internal`. `details` is a JSON document (or empty).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct AbiError {
    pub kind: RString,
    pub message: RString,
    pub details: RString,
    pub retryable: bool,
}

/// The result of every call across the boundary: a JSON document or an error.
pub type AbiResult = RResult<RString, AbiError>;

/// What the host lends a plugin for one call: its I/O, named by capability strings
/// (see [`crate::host`] for the names and their JSON request/response shapes).
///
/// The plugin never sees the host's runtime: an async capability returns an [`FfiFuture`] that the
/// host's executor drives while it polls the plugin's future.
#[sabi_trait]
pub trait HostCaps: Send + Sync + Clone {
    /// A capability that answers at once (clock, logging).
    fn call(&self, capability: RStr<'_>, request: RStr<'_>) -> AbiResult;

    /// A capability that waits (HTTP, timers). The future owns everything it needs.
    #[sabi(last_prefix_field)]
    fn call_async(&self, capability: RStr<'_>, request: RString) -> FfiFuture<AbiResult>;
}

/// The host capability object as handed to a plugin.
pub type HostCapsBox = HostCaps_TO<'static, RArc<()>>;

/// The root module every plugin exports (and every static plugin registers).
///
/// Fields after `invoke` (the last prefix field) are optional: their accessors on
/// [`PluginModule_Ref`] return `Option` (see the module's compatibility rules). Only
/// [`crate::export_plugin!`] builds this struct, hence `#[non_exhaustive]`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(option))]
#[non_exhaustive]
pub struct PluginModule {
    /// The manifest as JSON (see [`crate::Manifest`]).
    pub manifest: extern "C" fn() -> AbiResult,

    /// Runs one operation. All arguments are JSON text: the call context, the operation name (a
    /// plain string), the org's extension config, the device's extension config and the input.
    #[sabi(last_prefix_field)]
    pub invoke: extern "C" fn(
        host: HostCapsBox,
        context: RString,
        op: RString,
        org_config: RString,
        device_config: RString,
        input: RString,
    ) -> FfiFuture<AbiResult>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "devext_plugin";
    const NAME: &'static str = "devext plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A plugin linked into the host binary, registered with `inventory` by [`crate::export_plugin!`].
///
/// The host reaches a static plugin through the same [`PluginModule_Ref`] as a dynamic one.
#[non_exhaustive]
pub struct StaticPlugin {
    /// Returns the plugin's root module.
    pub module: fn() -> PluginModule_Ref,
}

impl StaticPlugin {
    /// The registration of the plugin whose root module `module` returns.
    pub const fn new(module: fn() -> PluginModule_Ref) -> Self {
        StaticPlugin { module }
    }
}

inventory::collect!(StaticPlugin);

/// Every statically registered plugin, in no particular order.
pub fn static_plugins() -> impl Iterator<Item = &'static StaticPlugin> {
    inventory::iter::<StaticPlugin>.into_iter()
}
