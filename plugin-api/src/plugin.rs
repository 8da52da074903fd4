//! The authoring layer: a plugin is a plain [`Plugin`] impl plus one [`crate::export_plugin!`].

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RString, RVec},
};
use async_ffi::{FfiFuture, FutureExt as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::abi::{
    AbiBytesResult, AbiError, AbiResult, CallArgs, CallModule, CallModule_Ref, HostCapsBox,
    PluginModule, PluginModule_Ref,
};
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

        /// The names of the plugin's operations, kept when its manifest is first encoded (so
        /// that a call names its operation without a copy of its own).
        fn op_names() -> &'static std::sync::OnceLock<Vec<String>>;
    }

    /// The prefix of the symbol under which a plugin library exports its root module; the rest
    /// is the crate name (see [`crate::export_plugin!`]).
    pub const ROOT_MODULE_SYMBOL_PREFIX: &str = "devext_plugin_root__";

    /// The prefix of the symbol under which a plugin library exports its [`CallModule`]; the
    /// rest is the crate name, as for the root module.
    pub const CALLS_MODULE_SYMBOL_PREFIX: &str = "devext_plugin_calls2__";

    /// Builds the root module of plugin `P`.
    pub fn root_module<P: Exported>() -> PluginModule_Ref {
        PluginModule {
            manifest: manifest_glue::<P>,
            invoke: invoke_glue::<P>,
        }
        .leak_into_prefix()
    }

    /// Builds the [`CallModule`] of plugin `P`.
    pub fn calls_module<P: Exported>() -> CallModule_Ref {
        CallModule {
            call: call_glue::<P>,
        }
        .leak_into_prefix()
    }

    extern "C" fn manifest_glue<P: Exported>() -> AbiResult {
        let encoded = guarded(|| {
            let manifest = P::instance().manifest();
            P::op_names()
                .get_or_init(|| manifest.operations.iter().map(|o| o.name.clone()).collect());
            serde_json::to_string(&manifest)
        });
        match encoded {
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

    /// Protocol 1's entry point, for hosts that do not know [`CallModule::call`].
    extern "C" fn invoke_glue<P: Exported>(
        host: HostCapsBox,
        context: RString,
        op: RString,
        org_config: RString,
        device_config: RString,
        input: RString,
    ) -> FfiFuture<AbiResult> {
        start::<P, _>(
            host,
            Args {
                context: parse("call context", context.as_str()),
                op: op.as_str(),
                values: Values::Json {
                    org_config: org_config.as_str(),
                    device_config: device_config.as_str(),
                    input: input.as_str(),
                },
            },
            encode_json,
        )
    }

    extern "C" fn call_glue<P: Exported>(
        host: HostCapsBox,
        args: CallArgs<'_>,
    ) -> FfiFuture<AbiBytesResult> {
        // `context_extra` holds only context fields newer than this crate: nothing to read.
        let CallArgs {
            protocol,
            call_id,
            deadline_unix_ms,
            account_key,
            priority,
            context_extra: _,
            op,
            org_config,
            device_config,
            input,
            output,
        } = args;
        start::<P, _>(
            host,
            Args {
                context: context_of_fields(
                    protocol,
                    call_id.as_str(),
                    deadline_unix_ms,
                    account_key.as_str(),
                    priority.as_str(),
                ),
                op: op.as_str(),
                values: Values::Packed {
                    org_config: org_config.as_slice(),
                    device_config: device_config.as_slice(),
                    input: input.as_slice(),
                },
            },
            move |value| encode_packed(value, output),
        )
    }

    /// The call context [`CallModule::call`] sends as fields.
    fn context_of_fields(
        protocol: u32,
        call_id: &str,
        deadline_unix_ms: i64,
        account_key: &str,
        priority: &str,
    ) -> Result<CallContext, PluginError> {
        let priority = match priority {
            "" | "interactive" => crate::host::Priority::Interactive,
            "bulk" => crate::host::Priority::Bulk,
            other => {
                return Err(PluginError::internal(format!(
                    "the host sent an unreadable call context: unknown priority {other:?}"
                )));
            }
        };
        Ok(CallContext {
            protocol,
            call_id: call_id.to_owned(),
            deadline_unix_ms,
            account_key: account_key.to_owned(),
            priority,
        })
    }

    /// A call's arguments as the host sent them.
    struct Args<'a> {
        /// The call context, read (its errors are reported before the other arguments').
        context: Result<CallContext, PluginError>,
        op: &'a str,
        values: Values<'a>,
    }

    /// The org config, device config and input, as `invoke` (JSON text) or `call`
    /// (MessagePack) sends them.
    enum Values<'a> {
        Json {
            org_config: &'a str,
            device_config: &'a str,
            input: &'a str,
        },
        Packed {
            org_config: &'a [u8],
            device_config: &'a [u8],
            input: &'a [u8],
        },
    }

    impl Values<'_> {
        /// Reads the org config, the device config and the input into `call` (in place: see
        /// [`crate::wire::read_into`]).
        fn read_into(&self, call: &mut Call) -> Result<(), PluginError> {
            match *self {
                Values::Json {
                    org_config,
                    device_config,
                    input,
                } => {
                    call.org_config = parse("org config", org_config)?;
                    call.device_config = parse("device config", device_config)?;
                    call.input = parse("input", input)?;
                }
                Values::Packed {
                    org_config,
                    device_config,
                    input,
                } => {
                    unpack("org config", org_config, &mut call.org_config)?;
                    unpack("device config", device_config, &mut call.device_config)?;
                    unpack("input", input, &mut call.input)?;
                }
            }
            Ok(())
        }
    }

    /// Reads the arguments and starts the operation (both before returning), then returns the
    /// future that runs it and hands its output to `encode`.
    fn start<P: Exported, T: Send + 'static>(
        host: HostCapsBox,
        args: Args<'_>,
        encode: impl FnOnce(&Value) -> RResult<T, AbiError> + Send + 'static,
    ) -> FfiFuture<RResult<T, AbiError>> {
        // The host's log, for a panic: kept before `host` moves into the plugin.
        let reporter = Host::from_caps(host.clone());
        // The operation's name for a panic report: the manifest's (no copy), or the host's.
        let op_name: std::borrow::Cow<'static, str> = match P::op_names()
            .get()
            .and_then(|names| names.iter().find(|n| *n == args.op))
        {
            Some(name) => name.as_str().into(),
            None => args.op.to_owned().into(),
        };
        let started = guarded(AssertUnwindSafe(|| {
            let mut call = Call::new(
                args.context?,
                args.op,
                Value::Null,
                Value::Null,
                Value::Null,
            );
            args.values.read_into(&mut call)?;
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
                Ok(Ok(value)) => encode(&value),
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

    /// `value` as JSON text, for `invoke`. (`serde_json` writes into one buffer; `Value`'s
    /// `Display` goes through `fmt::Write` a piece at a time and costs twice as much.)
    fn encode_json(value: &Value) -> AbiResult {
        match serde_json::to_string(value) {
            Ok(text) => RResult::ROk(text.into()),
            Err(e) => RResult::RErr(
                PluginError::internal(format!("the output cannot be encoded: {e}")).to_abi(),
            ),
        }
    }

    /// `value` as MessagePack, for `call`: written into the buffer the host lent.
    fn encode_packed(value: &Value, mut output: RVec<u8>) -> AbiBytesResult {
        output.clear();
        match crate::wire::write(&mut output, value) {
            Ok(()) => RResult::ROk(output),
            Err(e) => RResult::RErr(
                PluginError::internal(format!("the output cannot be encoded: {e}")).to_abi(),
            ),
        }
    }

    fn unpack(what: &str, bytes: &[u8], slot: &mut Value) -> Result<(), PluginError> {
        crate::wire::read_into(bytes, slot)
            .map_err(|e| PluginError::internal(format!("the host sent an unreadable {what}: {e}")))
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
        // One look-up of the thread-local for both the increment and the decrement (in a
        // dynamic library each look-up is a call into the dynamic linker). `catch_unwind`
        // returns on a panic too, so the decrement always runs.
        IN_PLUGIN.with(|depth| {
            depth.set(depth.get() + 1);
            let result = catch_unwind(f);
            depth.set(depth.get().saturating_sub(1));
            result
        })
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

            static OP_NAMES: ::std::sync::OnceLock<::std::vec::Vec<::std::string::String>> =
                ::std::sync::OnceLock::new();

            impl $crate::plugin::export::Exported for $plugin {
                fn instance() -> &'static Self {
                    INSTANCE.get_or_init(|| $init)
                }

                fn op_names(
                ) -> &'static ::std::sync::OnceLock<::std::vec::Vec<::std::string::String>>
                {
                    &OP_NAMES
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

            // The entry points added after protocol 1 ([`$crate::abi::CallModule`]), under a
            // symbol of their own in the same format.
            #[unsafe(export_name = concat!("devext_plugin_calls2__", env!("CARGO_CRATE_NAME")))]
            #[allow(unsafe_code, non_upper_case_globals)]
            static DEVEXT_CALLS_HEADER: $crate::plugin::export::abi_stable::library::LibHeader = {
                extern "C" fn erased_calls_module(
                ) -> $crate::plugin::export::abi_stable::library::RootModuleResult {
                    $crate::plugin::export::abi_stable::library::__call_root_module_loader(
                        $crate::plugin::export::calls_module::<$plugin>,
                    )
                }
                // SAFETY: `erased_calls_module` returns the `CallModule_Ref` the header is typed
                // with, as for the root module above.
                unsafe {
                    $crate::plugin::export::abi_stable::library::LibHeader::from_constructor::<
                        $crate::abi::CallModule_Ref,
                    >(
                        erased_calls_module,
                        $crate::plugin::export::abi_stable::library::CheckTypeLayout::Yes,
                    )
                }
            };

            $crate::plugin::export::inventory::submit! {
                $crate::abi::StaticPlugin::with_calls(
                    $crate::plugin::export::root_module::<$plugin>,
                    $crate::plugin::export::calls_module::<$plugin>,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::export::{calls_module, root_module};
    use super::*;
    use crate::host::Priority;
    use abi_stable::std_types::RStr;
    use std::task::{Context, Waker};

    /// Answers with everything it was handed.
    struct Mirror;

    impl Plugin for Mirror {
        fn manifest(&self) -> Manifest {
            Manifest::new("mirror", "Mirror", "0.1.0")
        }

        async fn invoke(&self, _host: Host, call: Call) -> Result<Value, PluginError> {
            Ok(serde_json::json!({
                "context": serde_json::to_value(&call.context)
                    .map_err(|e| PluginError::internal(e.to_string()))?,
                "op": call.op,
                "org": call.org_config,
                "device": call.device_config,
                "input": call.input,
            }))
        }
    }

    crate::export_plugin!(Mirror, Mirror);

    /// The result of a future that is ready on its first poll.
    fn ready<T>(future: FfiFuture<RResult<T, AbiError>>) -> Result<T, AbiError> {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(result) => result.into_result(),
            Poll::Pending => panic!("the mirror's future waited"),
        }
    }

    fn caps() -> HostCapsBox {
        Host::offline().into_caps()
    }

    /// `value` as MessagePack, leaked (the tests' arguments borrow it).
    fn packed(value: Value) -> &'static [u8] {
        let mut bytes = Vec::new();
        crate::wire::write(&mut bytes, &value).unwrap();
        bytes.leak()
    }

    fn args<'a>(priority: &'a str, output: RVec<u8>) -> CallArgs<'a> {
        CallArgs {
            protocol: crate::PROTOCOL_VERSION,
            call_id: RStr::from_str("19ad-7"),
            deadline_unix_ms: 1_700_000_000_000,
            account_key: RStr::from_str("k1"),
            priority: RStr::from_str(priority),
            context_extra: RStr::from_str(""),
            op: RStr::from_str("look"),
            org_config: packed(serde_json::json!({"greeting": "hi"})).into(),
            device_config: packed(serde_json::json!({"id": "d-1"})).into(),
            input: packed(serde_json::json!({"n": [1, 2]})).into(),
            output,
        }
    }

    #[test]
    fn both_entry_points_hand_the_plugin_the_same_call() {
        let context = CallContext::new("19ad-7", 1_700_000_000_000)
            .account_key("k1")
            .priority(Priority::Bulk);
        let via_invoke = ready((root_module::<Mirror>().invoke())(
            caps(),
            serde_json::to_string(&context).unwrap().into(),
            "look".into(),
            r#"{"greeting":"hi"}"#.into(),
            r#"{"id":"d-1"}"#.into(),
            r#"{"n":[1,2]}"#.into(),
        ))
        .unwrap();
        let buffer = RVec::with_capacity(1024);
        let lent = buffer.as_ptr();
        let via_call = ready((calls_module::<Mirror>().call())(
            caps(),
            args("bulk", buffer),
        ))
        .unwrap();
        // The output was written into the buffer the host lent.
        assert_eq!(via_call.as_ptr(), lent);
        let via_invoke: Value = serde_json::from_str(&via_invoke).unwrap();
        let via_call = crate::wire::read(&via_call).unwrap();
        assert_eq!(via_invoke, via_call);
        assert_eq!(
            serde_json::from_value::<CallContext>(via_call["context"].clone()).unwrap(),
            context
        );
        assert_eq!(via_call["org"]["greeting"], "hi");
        assert_eq!(via_call["device"]["id"], "d-1");
        assert_eq!(via_call["input"]["n"][1], 2);
        assert_eq!(via_call["op"], "look");
    }

    #[test]
    fn call_reads_the_default_priority_and_refuses_an_unknown_one() {
        for priority in ["", "interactive"] {
            let out = ready((calls_module::<Mirror>().call())(
                caps(),
                args(priority, RVec::new()),
            ))
            .unwrap();
            let out = crate::wire::read(&out).unwrap();
            assert_eq!(out["context"]["priority"], "interactive", "{priority:?}");
        }
        let e = ready((calls_module::<Mirror>().call())(
            caps(),
            args("urgent", RVec::new()),
        ))
        .unwrap_err();
        assert_eq!(e.kind.as_str(), "internal");
        assert!(
            e.message.contains("unknown priority \"urgent\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn call_reports_an_unreadable_argument() {
        let mut bad = args("", RVec::new());
        bad.input = b"{not msgpack"[..].into();
        let e = ready((calls_module::<Mirror>().call())(caps(), bad)).unwrap_err();
        assert_eq!(
            e.message.as_str(),
            "the host sent an unreadable input: bytes after the value at byte 1"
        );
    }
}
