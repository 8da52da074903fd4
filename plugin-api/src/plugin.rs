//! The authoring layer: a plugin is a plain [`Plugin`] impl plus one [`crate::export_plugin!`].

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RString},
};
use async_ffi::{FfiFuture, FutureExt as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::abi::{AbiError, AbiResult, HostCapsBox, PluginModule, PluginModule_Ref};
use crate::error::PluginError;
use crate::host::Host;
use crate::manifest::Manifest;

/// Facts about the call the host is making, beyond its arguments. Built by the host (and by a
/// plugin's own tests) with [`CallContext::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallContext {
    /// The JSON protocol version of the host.
    pub protocol: u32,
    /// A unique id for this call, for logs and correlation.
    pub call_id: String,
    /// When the host will cancel the call, in milliseconds since the Unix epoch.
    pub deadline_unix_ms: i64,
    /// An opaque key for the upstream account the org's settings reach: a digest of the plugin
    /// name, the endpoint and the manifest's `account_fields`. Stable across restarts and
    /// processes (key per-account state on it, e.g. rate limits), never derived from secrets:
    /// two orgs configured with the same account share it. Empty from a host that does not
    /// derive one.
    #[serde(default)]
    pub account_key: String,
    /// Whose call it is: `interactive` (a person waits; the default) or `bulk` (a background
    /// job). The host's limiter serves interactive callers of an account first (see
    /// [`crate::host::PermitRequest`]).
    #[serde(default)]
    pub priority: crate::host::Priority,
}

impl CallContext {
    /// The context of call `call_id`, due by `deadline_unix_ms`, speaking this crate's
    /// [`crate::PROTOCOL_VERSION`], without an account key.
    pub fn new(call_id: impl Into<String>, deadline_unix_ms: i64) -> Self {
        CallContext {
            protocol: crate::PROTOCOL_VERSION,
            call_id: call_id.into(),
            deadline_unix_ms,
            account_key: String::new(),
            priority: crate::host::Priority::Interactive,
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: crate::host::Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the account key.
    pub fn account_key(mut self, account_key: impl Into<String>) -> Self {
        self.account_key = account_key.into();
        self
    }
}

/// One operation call. Built by the glue of [`crate::export_plugin!`] (and by a plugin's own
/// tests) with [`Call::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Call {
    /// Context of the call.
    pub context: CallContext,
    /// The operation's name, one of the manifest's.
    pub op: String,
    /// The org's settings for the plugin, valid against the org-config schema.
    pub org_config: Value,
    /// The device's configuration for the plugin, valid against the device-config schema; `null`
    /// for an organisation-scope operation (`scope: org`).
    pub device_config: Value,
    /// The input, valid against the operation's input schema.
    pub input: Value,
}

impl Call {
    /// A call of `op` (pass `Value::Null` as `device_config` for an org-scope operation).
    pub fn new(
        context: CallContext,
        op: impl Into<String>,
        org_config: Value,
        device_config: Value,
        input: Value,
    ) -> Self {
        Call {
            context,
            op: op.into(),
            org_config,
            device_config,
            input,
        }
    }
}

/// What a plugin author implements.
///
/// The host has already checked the org config, device config and input against the manifest's
/// schemas, and checks the output against the operation's output schema. Use [`Host`] for all I/O:
/// a plugin must not start its own runtime, threads that block, or network clients.
pub trait Plugin: Send + Sync + 'static {
    /// The manifest. Called once when the plugin is loaded.
    fn manifest(&self) -> Manifest;

    /// Runs one operation. Write it as an `async fn`. A panic becomes an `internal` error.
    fn invoke(
        &self,
        host: Host,
        call: Call,
    ) -> impl Future<Output = Result<Value, PluginError>> + Send;
}

/// Glue used by [`crate::export_plugin!`]; not part of the stable API.
#[doc(hidden)]
pub mod export {
    pub use abi_stable;
    pub use inventory;

    use super::*;

    /// Gives the glue the plugin's single instance.
    pub trait Exported: Plugin {
        fn instance() -> &'static Self;
    }

    /// The prefix of the symbol under which a plugin library exports its root module; the rest
    /// is the crate name (see [`crate::export_plugin!`]).
    pub const ROOT_MODULE_SYMBOL_PREFIX: &str = "devext_plugin_root__";

    /// Builds the root module of plugin `P`.
    pub fn root_module<P: Exported>() -> PluginModule_Ref {
        PluginModule {
            manifest: manifest_glue::<P>,
            invoke: invoke_glue::<P>,
        }
        .leak_into_prefix()
    }

    extern "C" fn manifest_glue<P: Exported>() -> AbiResult {
        match guarded(|| serde_json::to_string(&P::instance().manifest())) {
            Ok(Ok(json)) => RResult::ROk(json.into()),
            Ok(Err(e)) => RResult::RErr(
                PluginError::internal(format!("the manifest cannot be encoded: {e}")).to_abi(),
            ),
            Err(panic) => {
                let what = payload_text(&*panic);
                let at = take_location();
                RResult::RErr(
                    PluginError::internal(format!(
                        "the plugin panicked while building the manifest: {what}{at}"
                    ))
                    .with_details(serde_json::json!({ "panic": what }))
                    .to_abi(),
                )
            }
        }
    }

    extern "C" fn invoke_glue<P: Exported>(
        host: HostCapsBox,
        context: RString,
        op: RString,
        org_config: RString,
        device_config: RString,
        input: RString,
    ) -> FfiFuture<AbiResult> {
        // The host's log, for a panic: kept before `host` moves into the plugin.
        let reporter = Host::from_caps(host.clone());
        let op_name = op.as_str().to_owned();
        let started = guarded(AssertUnwindSafe(move || {
            let call = Call::new(
                parse("call context", &context)?,
                op.into_string(),
                parse("org config", &org_config)?,
                parse("device config", &device_config)?,
                parse("input", &input)?,
            );
            Ok::<_, PluginError>(P::instance().invoke(Host::from_caps(host), call))
        }));
        let future = match started {
            Ok(Ok(future)) => future,
            Ok(Err(e)) => return std::future::ready(RResult::RErr(e.to_abi())).into_ffi(),
            Err(panic) => {
                let e = panic_error(&*panic, "starting the operation", &reporter, &op_name);
                return std::future::ready(RResult::RErr(e)).into_ffi();
            }
        };
        async move {
            match catch_unwind_future(future).await {
                // `to_string` writes into one buffer (`Value`'s `Display` goes through
                // `fmt::Write` a piece at a time and costs twice as much).
                Ok(Ok(value)) => match serde_json::to_string(&value) {
                    Ok(text) => RResult::ROk(text.into()),
                    Err(e) => RResult::RErr(
                        PluginError::internal(format!("the output cannot be encoded: {e}"))
                            .to_abi(),
                    ),
                },
                Ok(Err(e)) => RResult::RErr(e.to_abi()),
                Err(panic) => RResult::RErr(panic_error(
                    &*panic,
                    "running the operation",
                    &reporter,
                    &op_name,
                )),
            }
        }
        .into_ffi()
    }

    fn parse<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, PluginError> {
        serde_json::from_str(json)
            .map_err(|e| PluginError::internal(format!("the host sent an unreadable {what}: {e}")))
    }

    /// Polls `future`, turning a panic in any poll into `Err(payload)`.
    async fn catch_unwind_future<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
        let mut future = pin!(future);
        std::future::poll_fn(move |cx| {
            match guarded(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(panic) => Poll::Ready(Err(panic)),
            }
        })
        .await
    }

    fn payload_text(payload: &(dyn Any + Send)) -> String {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic payload".to_owned())
    }

    /// The error a caught panic becomes, reported once through the host's log (which tags it
    /// with the plugin's name and the call); the panic hook printed nothing.
    fn panic_error(payload: &(dyn Any + Send), doing: &str, host: &Host, op: &str) -> AbiError {
        let what = payload_text(payload);
        let at = take_location();
        host.log(
            crate::host::LogLevel::Error,
            format!("panicked while {doing} {op}: {what}{at}"),
        );
        PluginError::internal(format!("the plugin panicked while {doing}: {what}"))
            .with_details(serde_json::json!({ "panic": what }))
            .to_abi()
    }

    thread_local! {
        /// How deep this thread is in plugin code run by the glue (calls can nest when a
        /// static plugin's future is polled inside another's).
        static IN_PLUGIN: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        /// Where the last panic in plugin code happened, for the report.
        static LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    }

    /// ` (at file:line:col)` of the last panic caught on this thread, or nothing.
    fn take_location() -> String {
        LOCATION
            .with(|l| l.borrow_mut().take())
            .map(|at| format!(" (at {at})"))
            .unwrap_or_default()
    }

    /// Runs plugin code with the panic hook silenced, catching a panic.
    fn guarded<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> std::thread::Result<R> {
        install_hook();
        struct Depth;
        impl Drop for Depth {
            fn drop(&mut self) {
                IN_PLUGIN.with(|d| d.set(d.get().saturating_sub(1)));
            }
        }
        IN_PLUGIN.with(|d| d.set(d.get() + 1));
        let _depth = Depth;
        catch_unwind(f)
    }

    /// Installs, once per copy of this crate, a panic hook that keeps panics in plugin code off
    /// stderr (the glue reports them through the host's log instead, with the plugin's name)
    /// and hands every other panic to the hook that was there before. A dynamic plugin has its
    /// own copy of std, hence its own hook; a static plugin shares the host's std and hook,
    /// which is why panics outside plugin calls must reach the previous hook unchanged.
    fn install_hook() {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if IN_PLUGIN.with(|d| d.get()) > 0 {
                    let at = info
                        .location()
                        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                    LOCATION.with(|l| *l.borrow_mut() = at);
                } else {
                    previous(info);
                }
            }));
        });
    }
}

/// Exports a [`Plugin`] both as a dynamic library's root module and as a static plugin.
///
/// ```text
/// pub struct Echo;
/// impl devext_plugin_api::Plugin for Echo { /* ... */ }
/// devext_plugin_api::export_plugin!(Echo, Echo);
/// ```
///
/// The second argument builds the single instance; it runs once, on first use. Works in crates
/// of any edition. Build the crate with `crate-type = ["cdylib", "rlib"]`: the `cdylib` is loaded
/// with `--plugins DIR`, the `rlib` links the plugin into a host binary that mentions the crate
/// (`use my_plugin as _;`).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, $init:expr) => {
        const _: () = {
            static INSTANCE: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();

            impl $crate::plugin::export::Exported for $plugin {
                fn instance() -> &'static Self {
                    INSTANCE.get_or_init(|| $init)
                }
            }

            // The dynamic library's root module, in abi_stable's `LibHeader` format (what
            // `#[export_root_module]` generates), under a symbol unique to the plugin crate:
            // `devext_plugin_root__<crate name>`. A fixed name would collide when two plugins
            // are linked statically into one binary; the host finds the symbol by its prefix.
            // Written out here so that plugin crates need no direct dependency on abi_stable and
            // may use edition 2024.
            #[unsafe(export_name = concat!("devext_plugin_root__", env!("CARGO_CRATE_NAME")))]
            #[allow(unsafe_code, non_upper_case_globals)]
            static DEVEXT_LIB_HEADER: $crate::plugin::export::abi_stable::library::LibHeader = {
                extern "C" fn erased_root_module(
                ) -> $crate::plugin::export::abi_stable::library::RootModuleResult {
                    $crate::plugin::export::abi_stable::library::__call_root_module_loader(
                        $crate::plugin::export::root_module::<$plugin>,
                    )
                }
                // SAFETY: `erased_root_module` returns the `PluginModule_Ref` the header is
                // typed with; this is what `#[export_root_module]` generates.
                unsafe {
                    $crate::plugin::export::abi_stable::library::LibHeader::from_constructor::<
                        $crate::abi::PluginModule_Ref,
                    >(
                        erased_root_module,
                        $crate::plugin::export::abi_stable::library::CheckTypeLayout::Yes,
                    )
                }
            };

            $crate::plugin::export::inventory::submit! {
                $crate::abi::StaticPlugin::new($crate::plugin::export::root_module::<$plugin>)
            }
        };
    };
}
