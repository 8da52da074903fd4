//! The plugin author's test kit: runs a plugin through the real devext host runtime, in-process.
//!
//! What a test gets is what production does: the loader's checks of the manifest and its
//! schemas, the schema checks of the org settings, device configuration, input and output of
//! every call, the call's deadline, the egress rules of the HTTP capability and the host's
//! timers. Only the network is replaced, by a scripted [`Upstream`] (expected requests and the
//! answers to give, or a function of each request), or left in place to reach a real local
//! server (a simulator) with [`HarnessBuilder::loopback`].
//!
//! ```text
//! use devext_plugin_test::{Expect, Harness, Reply, Upstream, json};
//! use my_plugin as _; // links the plugin into the test binary, where the host finds it
//!
//! #[test]
//! fn overview() {
//!     devext_plugin_test::run_paused(async {
//!         let up = Upstream::scripted();
//!         up.expect(Expect::get("/v1/things/7"), Reply::json(200, json!({"state": "on"})));
//!         let h = Harness::builder("my_plugin").upstream(&up).build().unwrap()
//!             .with_org(json!({"endpoint": Upstream::ENDPOINT, "token": "t"}));
//!         let out = h.call("overview", json!({"id": "7"}), json!({})).await.unwrap();
//!         assert_eq!(out["state"], "on");
//!         up.verify();
//!     });
//! }
//! ```
//!
//! Time: [`run_paused`] runs a test on tokio's paused clock, which jumps to the next timer
//! whenever everything waits, and the harness's host clock (`clock.now`) follows it from
//! [`START_UNIX_MS`]: retries and back-off take no real time and their waits can be asserted
//! exactly (each [`Seen`] request carries its time). Use [`run`] (real time) with a real server.

#![deny(missing_docs)]

pub mod diff;
mod logs;
mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use devext_host::egress::EgressConfig;
use devext_host::{CallRequest, HostClock, Runtime, RuntimeConfig, Violation};
pub use devext_plugin_api::{ErrorKind, Manifest, PluginError, Value, json};

pub use diff::assert_json_eq;
pub use logs::{LogLine, logs};
/// The async runtime the kit runs tests on, for `join!`, `spawn` and time control.
pub use tokio;
pub use upstream::{Expect, Reply, Seen, Upstream};

/// 2023-11-14T22:13:20Z: where the host clock of a harness starts under [`run_paused`].
pub const START_UNIX_MS: i64 = 1_700_000_000_000;

/// Runs `test` to completion on a fresh single-threaded runtime in real time, capturing the
/// host's log lines ([`logs`]). For tests against a real local server.
pub fn run<F: Future>(test: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _logs = logs::capture();
    rt.block_on(test)
}

/// Runs `test` on a fresh single-threaded runtime whose clock is paused: time stands still
/// while anything runs and jumps to the next timer when everything waits. Harnesses built inside
/// it start their host clock at [`START_UNIX_MS`]. Not for tests that use real sockets (the
/// clock would jump past their waits).
pub fn run_paused<F: Future>(test: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let _logs = logs::capture();
    struct Unpause;
    impl Drop for Unpause {
        fn drop(&mut self) {
            PAUSED.with(|p| p.set(false));
        }
    }
    PAUSED.with(|p| p.set(true));
    let _unpause = Unpause;
    rt.block_on(test)
}

/// How to build a [`Harness`].
#[derive(Debug)]
pub struct HarnessBuilder {
    plugin: String,
    plugin_dirs: Vec<PathBuf>,
    upstream: Option<Upstream>,
    loopback: bool,
    call_timeout: Duration,
    view_cache_entries: usize,
    check_schemas: bool,
    start_unix_ms: Option<i64>,
}

impl HarnessBuilder {
    /// Loads the plugin from the `*.so` files of `dir` instead of the plugins linked into the
    /// test binary (as `devext --plugins DIR` would).
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dirs.push(dir.into());
        self
    }

    /// Sends the plugin's HTTP requests to `upstream` (after the egress rules).
    pub fn upstream(mut self, upstream: &Upstream) -> Self {
        self.upstream = Some(upstream.clone());
        self
    }

    /// Lets the plugin reach plain http on loopback: for a real local server (a simulator).
    pub fn loopback(mut self) -> Self {
        self.loopback = true;
        self
    }

    /// The deadline of each call (30 s by default, as in production).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Keeps up to `entries` view results for views that declare `fresh_for_secs` (off by
    /// default, so that each call reaches the plugin).
    pub fn view_cache(mut self, entries: usize) -> Self {
        self.view_cache_entries = entries;
        self
    }

    /// Turns the host's schema checks off, to reach a plugin's own checks of what its schemas
    /// cannot express. Production hosts always check.
    pub fn without_schema_checks(mut self) -> Self {
        self.check_schemas = false;
        self
    }

    /// Starts the host clock at `unix_ms`, following tokio's clock from there.
    pub fn clock_at(mut self, unix_ms: i64) -> Self {
        self.start_unix_ms = Some(unix_ms);
        self
    }

    /// Loads the runtime. Fails, with every refusal the loader gave, when the plugin is not
    /// among the loaded ones.
    pub fn build(self) -> Result<Harness, LoadError> {
        let clock = match self.start_unix_ms {
            Some(ms) => HostClock::following_tokio(ms),
            None if paused() => HostClock::following_tokio(START_UNIX_MS),
            None => HostClock::system(),
        };
        if let Some(up) = &self.upstream {
            up.set_clock(clock);
        }
        let config = RuntimeConfig {
            static_plugins: self.plugin_dirs.is_empty(),
            plugin_dirs: self.plugin_dirs,
            call_timeout: self.call_timeout,
            view_cache_entries: self.view_cache_entries,
            check_schemas: self.check_schemas,
            clock,
            egress: EgressConfig {
                allow_loopback_http: self.loopback,
                transport: self
                    .upstream
                    .clone()
                    .map(|u| Arc::new(u) as Arc<dyn devext_host::egress::Transport>),
                ..EgressConfig::default()
            },
            ..RuntimeConfig::default()
        };
        let runtime = Runtime::load(config).map_err(|e| LoadError {
            plugin: self.plugin.clone(),
            message: e.to_string(),
        })?;
        if runtime.plugin(&self.plugin).is_none() {
            let refused: Vec<String> = runtime
                .refused()
                .iter()
                .map(|r| format!("  {}: {}", r.source, r.reason))
                .collect();
            return Err(LoadError {
                message: format!(
                    "loaded: [{}]; refused:\n{}\n(a plugin linked into the test binary must be \
                     mentioned by the test: `use my_plugin as _;`)",
                    runtime.plugin_names().join(", "),
                    if refused.is_empty() {
                        "  nothing".to_owned()
                    } else {
                        refused.join("\n")
                    }
                ),
                plugin: self.plugin,
            });
        }
        Ok(Harness {
            runtime,
            plugin: self.plugin,
            org: json!({}),
            clock,
        })
    }
}

thread_local! {
    /// Set while [`run_paused`] runs on this thread.
    static PAUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn paused() -> bool {
    PAUSED.with(|p| p.get())
}

/// The plugin under test was not loaded.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// The plugin's name.
    pub plugin: String,
    /// What the loader said.
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin {} was not loaded; {}", self.plugin, self.message)
    }
}

impl std::error::Error for LoadError {}

/// One plugin in the real host runtime, with the org settings its calls use.
#[derive(Debug, Clone)]
pub struct Harness {
    runtime: Runtime,
    plugin: String,
    org: Value,
    clock: HostClock,
}

impl Harness {
    /// A builder for plugin `name` (the manifest's name).
    pub fn builder(name: &str) -> HarnessBuilder {
        HarnessBuilder {
            plugin: name.to_owned(),
            plugin_dirs: Vec::new(),
            upstream: None,
            loopback: false,
            call_timeout: Duration::from_secs(30),
            view_cache_entries: 0,
            check_schemas: true,
            start_unix_ms: None,
        }
    }

    /// Plugin `name` linked into the test binary, with no network; panics with the loader's
    /// refusals if it cannot be loaded.
    #[track_caller]
    pub fn new(name: &str) -> Harness {
        Harness::builder(name)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Uses `org` as the org settings of the following calls.
    pub fn with_org(mut self, org: Value) -> Harness {
        self.org = org;
        self
    }

    /// Changes the org settings of the following calls.
    pub fn set_org(&mut self, org: Value) {
        self.org = org;
    }

    /// The org settings in use.
    pub fn org(&self) -> &Value {
        &self.org
    }

    /// The runtime itself.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The manifest, as the host read it.
    pub fn manifest(&self) -> &Manifest {
        self.runtime
            .plugin(&self.plugin)
            .expect("the plugin is loaded")
            .manifest()
    }

    /// The loader's warnings about the presentation hints (`x-devext-*`) in the plugin's
    /// schemas, one line each (empty when the dashboard understands every hint).
    pub fn hint_warnings(&self) -> Vec<String> {
        self.runtime
            .plugin(&self.plugin)
            .expect("the plugin is loaded")
            .hint_warnings()
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    /// The host clock's time, in milliseconds since the Unix epoch.
    pub fn now_unix_ms(&self) -> i64 {
        self.clock.now_unix_ms()
    }

    /// Runs device-scope `op` on a device configured with `device` (the plugin's object).
    pub async fn call(&self, op: &str, device: Value, input: Value) -> Result<Value, PluginError> {
        let req = CallRequest::new(&self.plugin, op, &self.org, &device, &input);
        self.checked(self.runtime.invoke(req).await)
    }

    /// [`Harness::call`] with its own deadline.
    pub async fn call_within(
        &self,
        timeout: Duration,
        op: &str,
        device: Value,
        input: Value,
    ) -> Result<Value, PluginError> {
        let req = CallRequest::new(&self.plugin, op, &self.org, &device, &input).timeout(timeout);
        self.checked(self.runtime.invoke(req).await)
    }

    /// Runs organisation-scope `op` (no device).
    pub async fn call_org(&self, op: &str, input: Value) -> Result<Value, PluginError> {
        let req = CallRequest::org(&self.plugin, op, &self.org, &input);
        self.checked(self.runtime.invoke(req).await)
    }

    /// The violations of `device` (the plugin's object of a device's extension configuration),
    /// as `devext validate` reports them (pointers from the whole configuration).
    pub fn check_device(&self, device: Value) -> Vec<Violation> {
        let mut doc = serde_json::Map::new();
        doc.insert(self.plugin.clone(), device);
        self.runtime.validate_device_extensions(&Value::Object(doc))
    }

    /// The violations of `input` against operation `op`'s input schema (panics if there is no
    /// such operation).
    #[track_caller]
    pub fn check_input(&self, op: &str, input: &Value) -> Vec<Violation> {
        self.runtime
            .plugin(&self.plugin)
            .expect("the plugin is loaded")
            .validate_input(op, input)
            .unwrap_or_else(|| panic!("plugin {} has no operation {op:?}", self.plugin))
            .err()
            .unwrap_or_default()
    }

    /// The codes of the warnings the plugin declares that `device` (its object of a device's
    /// extension configuration) raises, as `devext validate` shows them.
    pub fn device_warnings(&self, device: Value) -> Vec<String> {
        let mut doc = serde_json::Map::new();
        doc.insert(self.plugin.clone(), device);
        self.runtime
            .device_warnings(&Value::Object(doc))
            .into_iter()
            .map(|w| w.code)
            .collect()
    }

    /// The violations of `org` against the org-settings schema.
    pub fn check_org(&self, org: &Value) -> Vec<Violation> {
        self.runtime
            .validate_org_config(&self.plugin, org)
            .err()
            .unwrap_or_default()
    }

    /// Every answer passes here: no secret of the org settings (a `writeOnly` property) may
    /// appear in an output or an error.
    fn checked(&self, result: Result<Value, PluginError>) -> Result<Value, PluginError> {
        let text = match &result {
            Ok(v) => v.to_string(),
            Err(e) => format!("{} {}", e.message, e.details),
        };
        for (name, secret) in self.secrets() {
            assert!(
                !text.contains(&secret),
                "the org secret {name:?} appears in the answer of plugin {}: {text}",
                self.plugin
            );
        }
        result
    }

    fn secrets(&self) -> Vec<(String, String)> {
        let schema = &self.manifest().org_config_schema;
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        props
            .iter()
            .filter(|(_, s)| s.get("writeOnly") == Some(&Value::Bool(true)))
            .filter_map(|(name, _)| {
                let value = self.org.get(name)?.as_str()?;
                // Very short values match by accident; they are not worth hiding anyway.
                (value.len() >= 4).then(|| (name.clone(), value.to_owned()))
            })
            .collect()
    }
}

/// Panics with the error's kind, message and details unless `result` failed with `kind`;
/// returns the error.
#[track_caller]
pub fn expect_error(result: Result<Value, PluginError>, kind: ErrorKind) -> PluginError {
    match result {
        Ok(v) => panic!(
            "expected a {} error, got a result:\n{}",
            kind.as_str(),
            diff::json_text(&v)
        ),
        Err(e) if e.kind == kind => e,
        Err(e) => panic!(
            "expected a {} error, got {}: {}\ndetails: {}",
            kind.as_str(),
            e.kind.as_str(),
            e.message,
            diff::json_text(&e.details)
        ),
    }
}
