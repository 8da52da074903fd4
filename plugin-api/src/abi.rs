//! The binary interface between the host and a plugin: the only types that cross a library boundary.
//!
//! Everything here is `#[repr(C)]` and checked by `abi_stable` when a library is loaded. The surface
//! is kept deliberately small: a root module with two functions, a second module with the entry
//! points added since ([`CallModule`]), one error struct and one host capability object.
//! Everything else travels as versioned JSON (the manifest, capability requests, the call
//! context of `invoke` and `CallArgs::context_extra`) or, for a call's values through
//! [`CallModule`], as MessagePack ([`crate::wire`]), so adding a host capability or a plugin
//! feature never adds a field here.
//!
//! Compatibility rules (see `ARCHITECTURE.md`; `tests/fixtures/compat-v1` is the proof):
//! - **No type here gains a field or a method, not even at the end.** abi_stable 0.11 checks a
//!   library's layouts against the host's and refuses a prefix type (a module or a `sabi_trait`
//!   vtable) that has *fewer* fields in the library than in the host
//!   (`abi_checking::check_fields`: "too many fields (expected 3, found 2)"); only the reverse,
//!   a library newer than the host, passes. So a field appended to [`PluginModule`], or a
//!   method appended to [`HostCaps`], would lock every plugin built before it out of a newer
//!   host. Both were tried against the compat-v1 fixture and refused that way. (The `Option`
//!   accessors that `#[sabi(missing_field(option))]` gives fields after the
//!   `#[sabi(last_prefix_field)]` serve the other direction: a plugin reading a module of an
//!   older host.)
//! - A new host capability is a new capability *name* over [`HostCaps`]; a new plugin feature
//!   is a new manifest field; a new error is a new kind string or goes into `details`.
//! - A new entry point of the plugin goes into a new module under a symbol of its own, which a
//!   host looks for and does without when a plugin lacks it, as [`CallModule`] did (symbol
//!   `devext_plugin_calls2__<crate name>`; [`StaticPlugin::calls`] for static plugins).
//!   Changing or removing anything that exists is a new [`crate::PROTOCOL_VERSION`].
//! - [`AbiError`] is never changed; new error information goes into its `details` JSON.

// The derive and trait-object macros of abi_stable expand to unsafe impls and old-style items.
#![allow(unsafe_code, non_local_definitions, non_camel_case_types, missing_docs)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RResult, RSlice, RStr, RString, RVec},
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

/// The host capability object as handed to a plugin. Its methods never change, and none are
/// added (see the module's compatibility rules): new capabilities are new names.
pub type HostCapsBox = HostCaps_TO<'static, RArc<()>>;

/// The root module every plugin exports (and every static plugin registers).
///
/// Frozen at protocol 1: no field is ever added (see the module's compatibility rules; new entry
/// points go into [`CallModule`]). Only [`crate::export_plugin!`] builds this struct, hence
/// `#[non_exhaustive]`.
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

/// Entry points added after protocol 1, in a root module of their own that a library exports
/// beside [`PluginModule`], under the symbol `devext_plugin_calls2__<crate name>` (a static
/// plugin registers it in [`StaticPlugin`]). A host that finds none (a plugin built before it)
/// uses `PluginModule::invoke`; a host that does not know it never looks for it.
///
/// It is a module of its own rather than fields appended to [`PluginModule`] because
/// abi_stable 0.11 refuses a library whose prefix type has *fewer* fields than the host's
/// (`abi_checking::check_fields`: more fields in the library are accepted, fewer are not), so
/// an appended field would lock every older plugin out of a newer host.
///
/// (The `2` in the symbol: an earlier, never released layout of this module sent the arguments
/// as JSON text under `devext_plugin_calls__`. No host looks for that symbol, so a library
/// built with it is called through `invoke`.)
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = CallModule_Ref)))]
#[sabi(missing_field(option))]
#[non_exhaustive]
pub struct CallModule {
    /// Runs one operation, like `invoke`, with its arguments lent rather than given and values
    /// as MessagePack (see [`crate::wire`]) rather than JSON text. The arguments are read before
    /// the function returns; the future owns what it needs. Its `ROk` bytes are `args.output`
    /// with the output written into it, so that neither side allocates a buffer per call.
    #[sabi(last_prefix_field)]
    pub call: extern "C" fn(host: HostCapsBox, args: CallArgs<'_>) -> FfiFuture<AbiBytesResult>,
}

/// The result of [`CallModule::call`]: the output as MessagePack, or an error.
pub type AbiBytesResult = RResult<RVec<u8>, AbiError>;

impl RootModule for CallModule_Ref {
    declare_root_module_statics! {CallModule_Ref}
    const BASE_NAME: &'static str = "devext_plugin_calls2";
    const NAME: &'static str = "devext plugin calls";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The arguments of [`CallModule::call`]: what `invoke` sends, borrowed from the host for the
/// duration of the call (not of its future), and a buffer for the output.
///
/// The call context comes as its fields rather than as JSON text (reading that text cost more
/// than the rest of a small call). Context fields added later go into `context_extra`, a JSON
/// object, so that this struct never changes. The three values are MessagePack ([`crate::wire`]):
/// reading JSON text cost a small call more than all the host's own work.
#[repr(C)]
#[derive(StableAbi)]
pub struct CallArgs<'a> {
    /// [`crate::CallContext::protocol`].
    pub protocol: u32,
    /// [`crate::CallContext::call_id`].
    pub call_id: RStr<'a>,
    /// [`crate::CallContext::deadline_unix_ms`].
    pub deadline_unix_ms: i64,
    /// [`crate::CallContext::account_key`].
    pub account_key: RStr<'a>,
    /// [`crate::CallContext::priority`] as its JSON name (`interactive`, `bulk`).
    pub priority: RStr<'a>,
    /// Context fields newer than this struct, as a JSON object (empty: none).
    pub context_extra: RStr<'a>,
    /// The operation's name.
    pub op: RStr<'a>,
    /// The org's extension config (MessagePack).
    pub org_config: RSlice<'a, u8>,
    /// The device's extension config (MessagePack).
    pub device_config: RSlice<'a, u8>,
    /// The input (MessagePack).
    pub input: RSlice<'a, u8>,
    /// An empty buffer for the output; the plugin writes the output into it as MessagePack
    /// (growing it as needed) and returns it as the `ROk` bytes, or drops it.
    pub output: RVec<u8>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "devext_plugin";
    const NAME: &'static str = "devext plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A plugin linked into the host binary, registered with `inventory` by [`crate::export_plugin!`].
///
/// The host reaches a static plugin through the same [`PluginModule_Ref`] (and
/// [`CallModule_Ref`]) as a dynamic one.
#[non_exhaustive]
pub struct StaticPlugin {
    /// Returns the plugin's root module.
    pub module: fn() -> PluginModule_Ref,
    /// Returns the plugin's [`CallModule`], if it has one.
    pub calls: Option<fn() -> CallModule_Ref>,
}

impl StaticPlugin {
    /// The registration of the plugin whose root module `module` returns (and no
    /// [`CallModule`]).
    pub const fn new(module: fn() -> PluginModule_Ref) -> Self {
        StaticPlugin {
            module,
            calls: None,
        }
    }

    /// The registration of the plugin whose root module `module` and [`CallModule`] `calls`
    /// return.
    pub const fn with_calls(
        module: fn() -> PluginModule_Ref,
        calls: fn() -> CallModule_Ref,
    ) -> Self {
        StaticPlugin {
            module,
            calls: Some(calls),
        }
    }
}

inventory::collect!(StaticPlugin);

/// Every statically registered plugin, in no particular order.
pub fn static_plugins() -> impl Iterator<Item = &'static StaticPlugin> {
    inventory::iter::<StaticPlugin>.into_iter()
}
