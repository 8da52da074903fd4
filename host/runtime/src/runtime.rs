//! The host runtime: the loaded plugins, validation of configurations, and dispatch of calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{RSlice, RStr, RString, RVec};
use devext_plugin_api::abi::{self, static_plugins};
use devext_plugin_api::{ErrorKind, PluginError, Value, json};
use futures_util::FutureExt as _;
use futures_util::future::Either;
use serde::Serialize;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::cache::{DeviceKey, ViewCache};
use crate::caps::{CallCaps, CallLimits, PluginCaps};
use crate::egress::{EgressConfig, HttpCapability};
use crate::limiter::{Limiter, LocalLimiter};
use crate::loader::{self, LoadedPlugin, PluginSource, Refusal, RefusalReason, RefusedSource};
use crate::metrics::OpStats;
use crate::schema::{Violation, pointer_token};
use devext_plugin_api::host::Priority;

/// Settings of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directories whose `*.so` files are loaded (not recursive).
    pub plugin_dirs: Vec<PathBuf>,
    /// Whether plugins linked into the binary are used.
    pub static_plugins: bool,
    /// Deadline of one call, covering plugin code and host I/O.
    pub call_timeout: Duration,
    /// Calls of one plugin running at once; more wait (within their deadline).
    pub max_concurrent_calls_per_plugin: usize,
    /// Egress rules of the HTTP capability.
    pub egress: EgressConfig,
    /// Serve repeats of views that declare `fresh_for_secs` from a cache of at most this many
    /// results (0 turns the cache off).
    pub view_cache_entries: usize,
    /// Check org config, device config and input before each call, and the output after it.
    /// Turn off only for callers that validated everything already (and for benchmarks).
    pub check_schemas: bool,
    /// The time of day lent to plugins and used for call deadlines (the system clock unless a
    /// test kit follows tokio's paused clock).
    pub clock: crate::clock::HostClock,
    /// The limiter of upstream accounts lent to plugins (`limit.*`); `None` is an in-process
    /// [`crate::limiter::LocalLimiter`]. Replicas that share upstream accounts share one.
    pub limiter: Option<SharedLimiter>,
}

/// A [`Limiter`] handed to [`RuntimeConfig::limiter`].
#[derive(Clone)]
pub struct SharedLimiter(pub Arc<dyn Limiter>);

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLimiter")
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            plugin_dirs: Vec::new(),
            static_plugins: true,
            call_timeout: Duration::from_secs(30),
            max_concurrent_calls_per_plugin: 64,
            egress: EgressConfig::default(),
            view_cache_entries: 10_000,
            check_schemas: true,
            clock: crate::clock::HostClock::system(),
            limiter: None,
        }
    }
}

/// Settings [`Runtime::load`] refuses because they cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `call_timeout` is zero.
    #[error("the call timeout must be longer than zero")]
    ZeroCallTimeout,
    /// `egress.max_response_bytes` is zero.
    #[error("the response size cap must be at least one byte")]
    ZeroResponseCap,
}

/// A plugin in the runtime, with its call limiter.
struct Slot {
    plugin: LoadedPlugin,
    limiter: Semaphore,
    /// What every call's capabilities share (the plugin's name among them).
    caps: Arc<PluginCaps>,
    accounts: crate::account::AccountKeys,
}

/// The host runtime. Cheap to clone; share it between tasks.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Vec<Slot>,
    by_name: BTreeMap<String, usize>,
    refused: Vec<Refusal>,
    notices: Vec<String>,
    config: RuntimeConfig,
    http: Arc<HttpCapability>,
    next_call: AtomicU64,
    views: ViewCache,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("plugins", &self.plugin_names())
            .finish()
    }
}

/// One operation call, as the embedding platform makes it.
#[derive(Debug, Clone, Copy)]
pub struct CallRequest<'a> {
    /// Plugin name.
    pub plugin: &'a str,
    /// Operation name.
    pub op: &'a str,
    /// The org's settings for the plugin.
    pub org_config: &'a Value,
    /// The device's configuration for the plugin (its value in the extension configuration).
    pub device_config: &'a Value,
    /// The operation's input.
    pub input: &'a Value,
    /// Overrides the runtime's call timeout.
    pub timeout: Option<Duration>,
    /// Whose call it is (the plugin sees it; the limiter serves interactive callers first).
    pub priority: Priority,
}

/// The device configuration of an organisation-scope call: there is none.
static NO_DEVICE: Value = Value::Null;

impl<'a> CallRequest<'a> {
    /// A call of a device-scope operation (the default scope) on one device.
    pub fn new(
        plugin: &'a str,
        op: &'a str,
        org_config: &'a Value,
        device_config: &'a Value,
        input: &'a Value,
    ) -> Self {
        CallRequest {
            plugin,
            op,
            org_config,
            device_config,
            input,
            timeout: None,
            priority: Priority::Interactive,
        }
    }

    /// Sets the call's priority (a background job: [`Priority::Bulk`]).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// A call of an organisation-scope operation (`scope: org`): the org's settings only, no
    /// device.
    pub fn org(plugin: &'a str, op: &'a str, org_config: &'a Value, input: &'a Value) -> Self {
        CallRequest::new(plugin, op, org_config, &NO_DEVICE, input)
    }

    /// Overrides the runtime's call timeout for this call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// An org's endpoint setting that the egress rules refuse ([`Runtime::check_endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
#[non_exhaustive]
pub struct EndpointRefused {
    /// The org-config property holding the endpoint (the manifest's `endpoint_field`).
    pub field: String,
    /// Why, for people.
    pub message: String,
    /// Plain http to a loopback address, which the egress rules allow only when told to
    /// (`EgressConfig::allow_loopback_http`, for local simulators).
    pub plain_http_to_loopback: bool,
}

/// A warning a plugin declared for device configurations, raised by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigWarning {
    /// JSON pointer of the plugin's object in the extension configuration.
    pub pointer: String,
    /// The plugin.
    pub plugin: String,
    /// The warning's code.
    pub code: String,
    /// What it means.
    pub message: String,
}

impl Runtime {
    /// Loads the static plugins and every `*.so` in the configured directories. Unusable files
    /// are listed in [`Runtime::refused`]; this fails only on settings that cannot work (a zero
    /// call timeout or response cap).
    ///
    /// Loading runs plugin code (library initialisers, `manifest`): from async code, call it on a
    /// blocking thread.
    pub fn load(config: RuntimeConfig) -> Result<Runtime, ConfigError> {
        if config.call_timeout.is_zero() {
            return Err(ConfigError::ZeroCallTimeout);
        }
        if config.egress.max_response_bytes == 0 {
            return Err(ConfigError::ZeroResponseCap);
        }
        let http = Arc::new(HttpCapability::new(config.egress.clone()));
        let limiter: Arc<dyn Limiter> = match &config.limiter {
            Some(shared) => Arc::clone(&shared.0),
            None => Arc::new(LocalLimiter::new()),
        };
        let mut slots: Vec<Slot> = Vec::new();
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        let mut refused = Vec::new();
        let mut notices = Vec::new();
        let limit = config.max_concurrent_calls_per_plugin.max(1);
        let slot = |plugin: LoadedPlugin| Slot {
            caps: Arc::new(PluginCaps {
                plugin: Arc::from(plugin.name()),
                http: Arc::clone(&http),
                clock: config.clock,
                limiter: Arc::clone(&limiter),
            }),
            plugin,
            limiter: Semaphore::new(limit),
            accounts: crate::account::AccountKeys::default(),
        };

        if config.static_plugins {
            let mut statics: Vec<LoadedPlugin> = Vec::new();
            for entry in static_plugins() {
                let modules = loader::Modules {
                    root: (entry.module)(),
                    calls: entry.calls.map(|calls| calls()),
                };
                match loader::describe(modules, PluginSource::Static) {
                    Ok(p) => statics.push(p),
                    Err(reason) => refused.push(Refusal {
                        source: RefusedSource::Static { name: None },
                        reason,
                    }),
                }
            }
            statics.sort_by(|a, b| a.name().cmp(b.name()));
            for p in statics {
                if by_name.contains_key(p.name()) {
                    refused.push(Refusal {
                        source: RefusedSource::Static {
                            name: Some(p.name().to_owned()),
                        },
                        reason: RefusalReason::DuplicateStatic {
                            name: p.name().to_owned(),
                        },
                    });
                    continue;
                }
                by_name.insert(p.name().to_owned(), slots.len());
                slots.push(slot(p));
            }
        }

        let service_user = loader::trust::service_user();
        for dir in &config.plugin_dirs {
            // Owner and mode of the directory (and its lock file) before anything in it is read.
            let trusted = match loader::trust::check_directory(dir, service_user) {
                Ok(trusted) => trusted,
                Err(problems) => {
                    refused.push(Refusal {
                        source: RefusedSource::Directory(dir.clone()),
                        reason: RefusalReason::Untrusted { problems },
                    });
                    continue;
                }
            };
            let files = match loader::library_files(dir) {
                Ok(files) => files,
                Err(reason) => {
                    refused.push(Refusal {
                        source: RefusedSource::Directory(dir.clone()),
                        reason,
                    });
                    continue;
                }
            };
            for missing in trusted.missing(&files) {
                let notice = format!("{missing}, pinned in the lock file, is missing");
                tracing::info!("{notice}");
                notices.push(notice);
            }
            if files.is_empty() {
                // A mistyped or unbuilt directory loads nothing: say so rather than nothing.
                let notice = format!("no plugins found in {} (no *.so file)", dir.display());
                tracing::info!("{notice}");
                notices.push(notice);
            }
            for path in files {
                let loaded = loader::trust::check_library(&path, &trusted, service_user)
                    .map_err(|problems| RefusalReason::Untrusted { problems })
                    .and_then(|()| loader::open_library(&path))
                    .and_then(|m| loader::describe(m, PluginSource::File(path.clone())));
                let plugin = match loaded {
                    Ok(p) => p,
                    Err(reason) => {
                        tracing::info!(path = %path.display(), %reason, "plugin refused");
                        refused.push(Refusal {
                            source: RefusedSource::File(path),
                            reason,
                        });
                        continue;
                    }
                };
                match by_name.get(plugin.name()).copied() {
                    Some(i) if slots[i].plugin.source() == &PluginSource::Static => {
                        let notice = format!(
                            "plugin {} from {} replaces the static plugin of the same name",
                            plugin.name(),
                            path.display()
                        );
                        // Info only: notices are the caller's to show (the CLI prints them).
                        tracing::info!("{notice}");
                        notices.push(notice);
                        slots[i] = slot(plugin);
                    }
                    Some(i) => {
                        refused.push(Refusal {
                            source: RefusedSource::File(path),
                            reason: RefusalReason::DuplicateName {
                                name: plugin.name().to_owned(),
                                loaded_from: slots[i].plugin.source().clone(),
                            },
                        });
                    }
                    None => {
                        by_name.insert(plugin.name().to_owned(), slots.len());
                        slots.push(slot(plugin));
                    }
                }
            }
        }

        let views = ViewCache::new(config.view_cache_entries, config.call_timeout);
        Ok(Runtime {
            inner: Arc::new(Inner {
                views,
                slots,
                by_name,
                refused,
                notices,
                config,
                http,
                next_call: AtomicU64::new(1),
            }),
        })
    }

    /// The loaded plugins: first the static ones by name (a dynamic plugin that replaced a
    /// static one of its name takes that place), then the other dynamic ones in load order
    /// (directories in the configured order, each one's files by path).
    pub fn plugins(&self) -> impl Iterator<Item = &LoadedPlugin> {
        self.inner.slots.iter().map(|s| &s.plugin)
    }

    /// The plugin called `name`.
    pub fn plugin(&self, name: &str) -> Option<&LoadedPlugin> {
        self.slot(name).map(|s| &s.plugin)
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.inner.by_name.get(name).map(|&i| &self.inner.slots[i])
    }

    /// Names of the loaded plugins, sorted.
    pub fn plugin_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.plugins().map(|p| p.name()).collect();
        names.sort_unstable();
        names
    }

    /// Files (and static plugins) that were not loaded, with the reason.
    pub fn refused(&self) -> &[Refusal] {
        &self.inner.refused
    }

    /// Things worth telling the operator (e.g. a dynamic plugin replacing a static one).
    pub fn notices(&self) -> &[String] {
        &self.inner.notices
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Checks an org's settings for `plugin` against its org-config schema.
    pub fn validate_org_config(&self, plugin: &str, config: &Value) -> Result<(), Vec<Violation>> {
        let slot = self.slot(plugin).ok_or_else(|| {
            vec![Violation {
                pointer: String::new(),
                keyword: "plugin".into(),
                message: self.unknown_plugin_message(plugin),
            }]
        })?;
        slot.plugin.schemas.org.check(config, "")
    }

    /// Checks the endpoint an org's settings for `plugin` name against the egress rules, as far
    /// as they can be known without connecting (a URL, its scheme, an address written as a
    /// literal; names are checked on their resolved addresses at each call). `Ok` for a plugin
    /// that declares no `endpoint_field` or settings without one (the schema decides whether it
    /// is required).
    pub fn check_endpoint(&self, plugin: &str, org_config: &Value) -> Result<(), EndpointRefused> {
        let Some(field) = self
            .plugin(plugin)
            .and_then(|p| p.manifest().endpoint_field.as_deref())
        else {
            return Ok(());
        };
        let Some(endpoint) = org_config.get(field).and_then(Value::as_str) else {
            return Ok(());
        };
        match self.inner.http.check(plugin, Some(endpoint), endpoint) {
            Ok(_) => Ok(()),
            Err(e) => {
                let plain_http_to_loopback = url::Url::parse(endpoint)
                    .is_ok_and(|u| self.inner.http.refuses_loopback_http(&u));
                Err(EndpointRefused {
                    field: field.to_owned(),
                    message: e.message,
                    plain_http_to_loopback,
                })
            }
        }
    }

    /// Checks a device's extension configuration (an object keyed by plugin name). An empty
    /// list means valid.
    pub fn validate_device_extensions(&self, doc: &Value) -> Vec<Violation> {
        self.device_extension_violations(
            doc,
            false,
            |schema, value, prefix| schema.violations(value, prefix),
            |v| v,
        )
    }

    /// [`Runtime::validate_device_extensions`], each violation with the property names it
    /// refuses (for `additionalProperties`/`unevaluatedProperties`; the names are otherwise only
    /// in the message). `echo` gives the text of the offending instance at a pointer as it is
    /// written in the document, for the messages (see `Schema::violations_with_unexpected`).
    #[cfg(feature = "bulk-validate")]
    pub(crate) fn device_extension_violations_with_unexpected<'t>(
        &self,
        doc: &Value,
        echo: &dyn Fn(&str) -> Option<std::borrow::Cow<'t, str>>,
    ) -> Vec<(Violation, Vec<String>)> {
        // Asked for a document `is_valid_device_extensions` refused (the bulk validator).
        self.device_extension_violations(
            doc,
            true,
            |schema, value, prefix| schema.violations_with_unexpected(value, prefix, echo),
            |v| (v, Vec::new()),
        )
    }

    /// The violations of `doc`: `violations` for a plugin's part, `own` for the host's own.
    /// `known_invalid`: the caller has seen `doc` fail [`Runtime::is_valid_device_extensions`],
    /// so a document with one part need not check that part again before listing its
    /// violations (with several parts, each is checked first so that valid ones build nothing).
    fn device_extension_violations<T>(
        &self,
        doc: &Value,
        known_invalid: bool,
        violations: impl Fn(&crate::schema::Schema, &Value, &str) -> Vec<T>,
        own: impl Fn(Violation) -> T,
    ) -> Vec<T> {
        let Some(map) = doc.as_object() else {
            return vec![own(Violation {
                pointer: String::new(),
                keyword: "type".into(),
                message: format!(
                    "{} is not of type \"object\": an extension configuration maps plugin names to their settings",
                    short(doc)
                ),
            })];
        };
        let mut out = Vec::new();
        let check_each = !(known_invalid && map.len() == 1);
        for (key, value) in map {
            let prefix = key_pointer(key);
            match self.slot(key) {
                Some(slot) => {
                    if !check_each || !slot.plugin.schemas.device.is_valid(value) {
                        let found = violations(&slot.plugin.schemas.device, value, &prefix);
                        // The first part's list is the list (no copy).
                        if out.is_empty() {
                            out = found;
                        } else {
                            out.extend(found);
                        }
                    }
                }
                None => out.push(own(Violation {
                    pointer: prefix,
                    keyword: "additionalProperties".into(),
                    message: format!(
                        "unknown extension {key:?}: {}",
                        self.loaded_list_for_message()
                    ),
                })),
            }
        }
        out
    }

    /// Whether a device's extension configuration is valid (fast path, no error built).
    pub fn is_valid_device_extensions(&self, doc: &Value) -> bool {
        doc.as_object().is_some_and(|map| {
            map.iter().all(|(key, value)| {
                self.slot(key)
                    .is_some_and(|s| s.plugin.schemas.device.is_valid(value))
            })
        })
    }

    /// The warnings plugins declared that a (valid) extension configuration raises.
    pub fn device_warnings(&self, doc: &Value) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        let Some(map) = doc.as_object() else {
            return out;
        };
        for (key, value) in map {
            let Some(slot) = self.slot(key) else { continue };
            let declared = &slot.plugin.manifest().warnings;
            for (w, schema) in declared.iter().zip(&slot.plugin.schemas.warnings) {
                if !schema.is_valid(value) {
                    out.push(ConfigWarning {
                        pointer: format!("/{}", pointer_token(key)),
                        plugin: key.clone(),
                        code: w.code.clone(),
                        message: w.message.clone(),
                    });
                }
            }
        }
        out
    }

    /// How many warnings [`Runtime::device_warnings`] would return, without building them.
    #[cfg(feature = "bulk-validate")]
    pub(crate) fn device_warning_count(&self, doc: &Value) -> usize {
        let Some(map) = doc.as_object() else {
            return 0;
        };
        map.iter()
            .filter_map(|(key, value)| Some((self.slot(key)?, value)))
            .map(|(slot, value)| {
                let declared = slot.plugin.manifest().warnings.len();
                (slot.plugin.schemas.warnings.iter().take(declared))
                    .filter(|schema| !schema.is_valid(value))
                    .count()
            })
            .sum()
    }

    /// One JSON Schema (draft 2020-12) for whole extension configurations: each loaded plugin's
    /// device schema under its name, nothing else allowed. Deterministic.
    pub fn combined_device_schema(&self) -> Value {
        let mut properties = serde_json::Map::new();
        for name in self.plugin_names() {
            let Some(p) = self.plugin(name) else { continue };
            let mut schema = p.manifest().device_config_schema.clone();
            if let Some(obj) = schema.as_object_mut() {
                obj.insert(
                    "$id".into(),
                    Value::String(format!("urn:devext:plugin:{name}:device-config")),
                );
            }
            properties.insert(name.to_owned(), schema);
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "urn:devext:device-extensions",
            "title": "Device extension configuration",
            "description": "Maps each extension (plugin) name to the device's settings for it.",
            "type": "object",
            "properties": properties,
            "additionalProperties": false
        })
    }

    /// HTTP requests plugins made through the host, as (plugin, outcome, count); the outcome is
    /// a status class (`2xx`, `4xx`, `5xx`) or an error kind (`forbidden`, `timeout`, ...).
    pub fn upstream_metrics(&self) -> Vec<(String, String, u64)> {
        self.inner.http.counts()
    }

    /// Call counters and latency per plugin/operation/outcome.
    pub fn metrics(&self) -> Vec<OpStats> {
        let mut rows = Vec::new();
        for slot in &self.inner.slots {
            let mut ops: Vec<&String> = slot.plugin.schemas.ops.keys().collect();
            ops.sort();
            for op in ops {
                slot.plugin.schemas.ops[op]
                    .metrics
                    .snapshot(slot.plugin.name(), op, &mut rows);
            }
        }
        rows
    }

    fn loaded_list_for_message(&self) -> String {
        let names = self.plugin_names();
        if names.is_empty() {
            "no plugins are loaded".to_owned()
        } else {
            format!("loaded plugins are {}", names.join(", "))
        }
    }

    fn unknown_plugin_message(&self, plugin: &str) -> String {
        format!(
            "no plugin named {plugin:?}; {}",
            self.loaded_list_for_message()
        )
    }

    /// Runs one operation: checks that it exists and that its arguments are valid, calls the
    /// plugin under the deadline and the plugin's concurrency limit, and checks the output.
    ///
    /// Validation failures are `invalid_input` errors whose details list the violations under
    /// `violations` with `location` `org_config`, `device_config` or `input`. An output that
    /// violates the operation's schema, or a panic, is an `internal` error with details
    /// `{"fault": "plugin"}`.
    pub async fn invoke(&self, req: CallRequest<'_>) -> Result<Value, PluginError> {
        // One async fn with the waiting in it, and plain functions for the rest: the future is
        // small, and no nested future is moved into its parent's state on every call.
        let (slot, op) = self.resolve(&req)?;
        let started = Instant::now();
        let result = match self.prepare(slot, op, &req, started) {
            Err(e) => Err(e),
            Ok(Prepared::Cached(output)) => Ok(output),
            Ok(Prepared::Call(mut call)) => {
                let outcome = self.run_plugin(slot, op, &mut call).await;
                self.finish(op, call, outcome)
            }
        };
        op.metrics.record(
            result.as_ref().map(|_| ()).map_err(|e| e.kind),
            started.elapsed(),
        );
        result
    }

    /// The plugin and operation a call names.
    fn resolve(&self, req: &CallRequest<'_>) -> Result<(&Slot, &loader::CompiledOp), PluginError> {
        let Some(slot) = self.slot(req.plugin) else {
            return Err(PluginError::not_found(
                self.unknown_plugin_message(req.plugin),
            ));
        };
        let Some(op) = slot.plugin.schemas.ops.get(req.op) else {
            let mut names: Vec<&str> = slot
                .plugin
                .manifest()
                .operations
                .iter()
                .map(|o| o.name.as_str())
                .collect();
            names.sort_unstable();
            return Err(PluginError::not_found(format!(
                "plugin {} has no operation {:?}; its operations are {}",
                req.plugin,
                req.op,
                names.join(", ")
            )));
        };
        Ok((slot, op))
    }

    /// Everything before the plugin runs: the scope, the checks of the arguments, their texts,
    /// the view cache, the call context and the capabilities.
    fn prepare<'r>(
        &self,
        slot: &Slot,
        op: &loader::CompiledOp,
        req: &CallRequest<'r>,
        started: Instant,
    ) -> Result<Prepared<'r>, PluginError> {
        let req = scoped(op, req)?;
        let schemas = &slot.plugin.schemas;
        let check = self.inner.config.check_schemas;
        if check {
            for (location, schema, value) in [
                ("org_config", &schemas.org, req.org_config),
                ("device_config", &schemas.device, req.device_config),
                ("input", &op.input, req.input),
            ] {
                if location == "device_config" && op.scope == devext_plugin_api::OpScope::Org {
                    continue; // no device: nothing to check
                }
                if let Err(violations) = schema.check(value, "") {
                    return Err(invalid(location, &req, violations));
                }
            }
        }

        // Each argument is encoded once, into this thread's buffers: as MessagePack for
        // `CallModule::call`, as JSON text for protocol 1's `invoke`. The bytes cross the ABI
        // and key the view cache.
        let mut args = CallArgs::take();
        let packed = slot.plugin.calls.is_some();
        for (out, value) in [
            (&mut args.org, req.org_config),
            (&mut args.device, req.device_config),
            (&mut args.input, req.input),
        ] {
            out.clear();
            if packed {
                devext_plugin_api::wire::write(out, value).map_err(|e| {
                    PluginError::internal(format!("cannot encode a call argument: {e}"))
                })?;
            } else {
                json_text(out, value)?;
            }
        }
        let cached_view = op
            .fresh_for
            .filter(|_| self.inner.config.view_cache_entries > 0);
        let is_action = op.kind == devext_plugin_api::OpKind::Action;
        // Only views the cache may serve and actions (which drop cached views) need the key.
        let device_key = (cached_view.is_some() || is_action).then(|| DeviceKey {
            plugin: req.plugin.to_owned(),
            account: account_hash(req.plugin, &args.org),
            device: args.device.clone(),
        });
        let input_key = cached_view.map(|_| args.input.clone());
        let mut generation = 0;
        if let (Some(key), Some(input_key)) = (&device_key, &input_key) {
            match self.inner.views.lookup(key, req.op, input_key) {
                Ok(output) => {
                    // Unused: the buffers, the output's among them, serve the next call.
                    args.give_back(None);
                    return Ok(Prepared::Cached(output));
                }
                Err(g) => generation = g,
            }
        }
        if is_action && let Some(key) = &device_key {
            self.inner.views.invalidate(key);
        }
        let cache = device_key.map(|device_key| {
            Box::new(CacheUse {
                device_key,
                is_action,
                cached_view,
                input_key,
                generation,
            })
        });

        let timeout = req.timeout.unwrap_or(self.inner.config.call_timeout);
        let deadline = started + timeout;
        let deadline_unix_ms = self
            .inner
            .config
            .clock
            .unix_ms_at(started)
            .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let call_id = CallId {
            deadline_unix_ms,
            seq: self.inner.next_call.fetch_add(1, Ordering::Relaxed),
        };
        let account_key = slot.accounts.key(slot.plugin.manifest(), req.org_config);
        if packed {
            // `call` takes the context's fields; its `call_id` is this text.
            args.context.clear();
            call_id.push_to(&mut args.context);
        } else {
            call_context_json(&mut args.context, call_id, &account_key, req.priority)?;
        }
        Ok(Prepared::Call(PreparedCall {
            req,
            args,
            context: ContextFields {
                call_id,
                account_key,
            },
            deadline,
            timeout,
            check,
            cache,
        }))
    }

    /// Runs the plugin under its concurrency limit and the deadline: its encoded output.
    async fn run_plugin(
        &self,
        slot: &Slot,
        op: &loader::CompiledOp,
        call: &mut PreparedCall<'_>,
    ) -> Result<Output, PluginError> {
        let closed = || PluginError::internal("the plugin's call limiter is closed");
        // Waiting for a permit counts against the deadline.
        let _permit = match slot.limiter.try_acquire() {
            Ok(permit) => permit,
            // Boxed: only a call that waits pays for the waiter's room in the future.
            Err(TryAcquireError::NoPermits) => {
                match until_deadline(call.deadline, Box::pin(slot.limiter.acquire())).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(closed()),
                    Err(DeadlinePassed) => return Err(timeout_error(op, &call.req, call.timeout)),
                }
            }
            Err(TryAcquireError::Closed) => return Err(closed()),
        };
        let future = self.start_plugin(slot, call);
        // The plugin catches its own panics; this is the backstop for one that re-raises
        // through the FFI future.
        let outcome = until_deadline(
            call.deadline,
            std::panic::AssertUnwindSafe(future).catch_unwind(),
        )
        .await;
        let req = &call.req;
        match outcome {
            Ok(Ok(Ok(output))) => Ok(output),
            Ok(Ok(Err(e))) => Err(PluginError::from_abi(&e)),
            Ok(Err(_)) => Err(PluginError::internal(format!(
                "plugin {} panicked in operation {}",
                req.plugin, req.op
            ))
            .with_details(json!({"fault": "plugin"}))),
            Err(DeadlinePassed) => Err(timeout_error(op, req, call.timeout)),
        }
    }

    /// Lends the plugin its capabilities and arguments and starts the call: the plugin reads
    /// the arguments before this returns.
    fn start_plugin(
        &self,
        slot: &Slot,
        call: &mut PreparedCall<'_>,
    ) -> impl Future<Output = Result<Output, abi::AbiError>> + use<> {
        let req = &call.req;
        let endpoint = slot
            .plugin
            .manifest()
            .endpoint_field
            .as_ref()
            .and_then(|f| req.org_config.get(f))
            .and_then(Value::as_str)
            .map(Arc::from);
        let caps = CallCaps::new(
            Arc::clone(&slot.caps),
            call.context.call_id,
            endpoint,
            call.deadline,
            CallLimits {
                account_key: Arc::clone(&call.context.account_key),
                priority: req.priority,
            },
        );
        let module = &slot.plugin.module;
        let CallArgs {
            context: lent_context,
            org,
            device,
            input,
            output,
        } = &mut *call.args;
        let context = &call.context;
        match slot.plugin.calls.map(|calls| calls.call()) {
            // The plugin writes its output into the buffer lent (`invoke` takes none: it stays
            // for the next call).
            Some(call_fn) => Either::Left(
                call_fn(
                    caps.into_abi(),
                    abi::CallArgs {
                        protocol: devext_plugin_api::PROTOCOL_VERSION,
                        call_id: RStr::from_str(lent_context),
                        deadline_unix_ms: context.call_id.deadline_unix_ms,
                        account_key: RStr::from_str(&context.account_key),
                        priority: RStr::from_str(req.priority.as_str()),
                        context_extra: RStr::from_str(""),
                        op: RStr::from_str(req.op),
                        org_config: RSlice::from_slice(org),
                        device_config: RSlice::from_slice(device),
                        input: RSlice::from_slice(input),
                        output: std::mem::take(output),
                    },
                )
                .map(|r| r.into_result().map(Output::Packed)),
            ),
            // A plugin built before `CallModule` existed: protocol 1's own entry point.
            None => Either::Right(
                (module.invoke())(
                    caps.into_abi(),
                    lent_context.as_str().into(),
                    req.op.into(),
                    text_of(org).into(),
                    text_of(device).into(),
                    text_of(input).into(),
                )
                .map(|r| r.into_result().map(Output::Json)),
            ),
        }
    }

    /// Everything after the plugin ran: the output's parse and check, its time, the view cache.
    fn finish(
        &self,
        op: &loader::CompiledOp,
        call: PreparedCall<'_>,
        outcome: Result<Output, PluginError>,
    ) -> Result<Value, PluginError> {
        let PreparedCall {
            req,
            args,
            check,
            cache,
            ..
        } = call;
        let result = outcome.and_then(|output| {
            let read = self.read_output(op, &req, check, &output);
            // The buffers serve this thread's next call.
            args.give_back(match output {
                Output::Packed(bytes) => Some(bytes),
                Output::Json(_) => None,
            });
            read
        });
        if let Some(cache) = cache {
            match (cache.cached_view, &cache.input_key) {
                _ if cache.is_action => self.inner.views.invalidate(&cache.device_key),
                (Some(fresh_for), Some(input_key)) => {
                    if let Ok(output) = &result {
                        self.inner.views.store(
                            &cache.device_key,
                            cache.generation,
                            req.op,
                            input_key,
                            output,
                            fresh_for,
                        );
                    }
                }
                _ => {}
            }
        }
        result
    }

    /// The plugin's output as a value, checked against the operation's schema.
    fn read_output(
        &self,
        op: &loader::CompiledOp,
        req: &CallRequest<'_>,
        check: bool,
        output: &Output,
    ) -> Result<Value, PluginError> {
        // Read in place (see `devext_plugin_api::wire::read_into`).
        let mut value = Value::Null;
        let read = match output {
            Output::Packed(bytes) => {
                devext_plugin_api::wire::read_into(bytes, &mut value).map_err(|e| {
                    format!(
                        "plugin {} returned output that is not MessagePack ({e})",
                        req.plugin
                    )
                })
            }
            Output::Json(text) => serde_json::from_str(text).map(|v| value = v).map_err(|e| {
                format!(
                    "plugin {} returned output that is not JSON ({e})",
                    req.plugin
                )
            }),
        };
        if let Err(message) = read {
            return Err(PluginError::internal(message).with_details(json!({"fault": "plugin"})));
        }
        let output = value;
        if check && let Err(violations) = op.output.check(&output, "") {
            tracing::error!(
                plugin = req.plugin,
                op = req.op,
                "plugin output violates its schema"
            );
            return Err(PluginError::internal(format!(
                "plugin {} returned output that violates the schema of {}: {}",
                req.plugin,
                req.op,
                violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
            .with_details(json!({"fault": "plugin", "violations": violations})));
        }
        let mut output = output;
        if op.fresh_for.is_some()
            && let Some(obj) = output.as_object_mut()
        {
            // When the result was obtained; repeats served from the cache keep this time.
            obj.insert(
                "as_of".into(),
                Value::String(
                    chrono::DateTime::from_timestamp_millis(self.inner.config.clock.now_unix_ms())
                        .unwrap_or_default()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
            );
        }
        Ok(output)
    }
}

/// The call context's fields (the call id carries the deadline; its text is in
/// [`CallArgs::context`]).
struct ContextFields {
    call_id: CallId,
    account_key: Arc<str>,
}

/// What [`Runtime::prepare`] leaves to do.
#[allow(clippy::large_enum_variant)] // made and taken apart once per call, never stored
enum Prepared<'r> {
    /// The view cache had the answer.
    Cached(Value),
    /// The plugin is to be called.
    Call(PreparedCall<'r>),
}

/// A call ready to go to the plugin, and what its end needs.
struct PreparedCall<'r> {
    req: CallRequest<'r>,
    args: Box<CallArgs>,
    context: ContextFields,
    deadline: Instant,
    timeout: Duration,
    check: bool,
    /// For calls the view cache is concerned with (views it may serve, actions).
    cache: Option<Box<CacheUse>>,
}

/// What the end of a call does with the view cache.
struct CacheUse {
    device_key: DeviceKey,
    is_action: bool,
    /// How long the view's result may be served.
    cached_view: Option<Duration>,
    input_key: Option<Vec<u8>>,
    /// The device's generation when the view started.
    generation: u64,
}

/// The error of a call whose deadline passed.
fn timeout_error(op: &loader::CompiledOp, req: &CallRequest<'_>, timeout: Duration) -> PluginError {
    let waited = format!(
        "{}.{} did not finish within {} ms; the call was cancelled",
        req.plugin,
        req.op,
        timeout.as_millis()
    );
    // An action cancelled mid-way may have been carried out by the service already: say so,
    // and do not invite a blind retry.
    if op.kind == devext_plugin_api::OpKind::Action {
        PluginError::new(
            ErrorKind::Timeout,
            format!(
                "{waited}; the action may still have been processed by the service: check \
                 before repeating it"
            ),
        )
        .retryable(false)
    } else {
        PluginError::new(ErrorKind::Timeout, waited)
    }
}

fn invalid(location: &str, req: &CallRequest<'_>, violations: Vec<Violation>) -> PluginError {
    let what = match location {
        "org_config" => format!("the org settings for {} are", req.plugin),
        "device_config" => format!("the device's {} configuration is", req.plugin),
        _ => format!("the input of {}.{} is", req.plugin, req.op),
    };
    let first = violations
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let more = if violations.len() > 1 {
        format!(" (and {} more)", violations.len() - 1)
    } else {
        String::new()
    };
    PluginError::invalid_input(format!("{what} invalid: {first}{more}"))
        .with_details(json!({"location": location, "violations": violations}))
}

/// The call as the operation's scope has it: an org-scope operation runs without a device (a
/// device config passed along is ignored, neither checked nor handed over); a device-scope one
/// needs a device config.
fn scoped<'a>(
    op: &loader::CompiledOp,
    req: &CallRequest<'a>,
) -> Result<CallRequest<'a>, PluginError> {
    match op.scope {
        devext_plugin_api::OpScope::Org => Ok(CallRequest {
            device_config: &NO_DEVICE,
            ..*req
        }),
        devext_plugin_api::OpScope::Device if req.device_config.is_null() => {
            Err(PluginError::invalid_input(format!(
                "{}.{} is a device operation: it needs a device (call it on one of the org's \
                 devices)",
                req.plugin, req.op
            ))
            .with_details(json!({"location": "device_config"})))
        }
        devext_plugin_api::OpScope::Device => Ok(*req),
    }
}

/// A plugin's output as it crossed the ABI.
enum Output {
    /// From `CallModule::call`, in the buffer the host lent.
    Packed(RVec<u8>),
    /// From protocol 1's `invoke`.
    Json(RString),
}

/// Writes `value` as compact JSON text into `out`.
fn json_text(out: &mut Vec<u8>, value: &Value) -> Result<(), PluginError> {
    // `serde_json` writes into one buffer; `Value`'s `Display` goes through `fmt::Write` a piece
    // at a time and costs several times more.
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| PluginError::internal(format!("cannot encode a call argument: {e}")))
}

/// Text that `serde_json` wrote (always UTF-8; checked rather than assumed).
fn text_of(json: &[u8]) -> &str {
    std::str::from_utf8(json).unwrap_or_default()
}

/// The call context the plugin reads (`devext_plugin_api::CallContext`), as JSON text:
/// `{"protocol":1,"call_id":"…","deadline_unix_ms":…,"account_key":"…"}`.
/// Written into `text` (cleared first).
fn call_context_json(
    text: &mut String,
    call_id: CallId,
    account_key: &str,
    priority: Priority,
) -> Result<(), PluginError> {
    // Numbers go through `itoa` (as serde_json writes them): `fmt` machinery costs more than
    // the rest of this.
    let mut digits = itoa::Buffer::new();
    text.clear();
    text.reserve(112 + account_key.len());
    text.push_str("{\"protocol\":");
    text.push_str(digits.format(devext_plugin_api::PROTOCOL_VERSION));
    text.push_str(",\"call_id\":\"");
    call_id.push_to(text);
    text.push_str("\",\"deadline_unix_ms\":");
    text.push_str(digits.format(call_id.deadline_unix_ms));
    text.push_str(",\"account_key\":");
    if account_key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        // Nothing to escape (today's keys are hex).
        text.push('"');
        text.push_str(account_key);
        text.push('"');
    } else {
        let key = serde_json::to_string(account_key)
            .map_err(|e| PluginError::internal(format!("cannot encode the call context: {e}")))?;
        text.push_str(&key);
    }
    if priority != Priority::Interactive {
        // The default is left out.
        text.push_str(",\"priority\":\"");
        text.push_str(priority.as_str());
        text.push('"');
    }
    text.push('}');
    Ok(())
}

/// Appends `n` in lower-case hex, as `{:x}` prints it.
/// The JSON pointer of a top-level key (`/` and the escaped key), in one allocation.
fn key_pointer(key: &str) -> String {
    let mut pointer = String::with_capacity(key.len() + 1);
    pointer.push('/');
    if key.contains(['~', '/']) {
        pointer.push_str(&pointer_token(key));
    } else {
        pointer.push_str(key);
    }
    pointer
}

fn push_hex(text: &mut String, mut n: u64) {
    let mut digits = [b'0'; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    // Only ASCII hex digits were written, so the conversion never fails.
    text.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// A call's id: its deadline (hex milliseconds since the epoch) and a per-runtime sequence
/// number, shown as `<deadline>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallId {
    deadline_unix_ms: i64,
    seq: u64,
}

impl CallId {
    #[cfg(test)]
    pub(crate) fn for_tests() -> CallId {
        CallId {
            deadline_unix_ms: 0,
            seq: 0,
        }
    }

    fn push_to(self, text: &mut String) {
        // As `{:x}` prints an `i64`: two's complement (deadlines are never negative anyway).
        push_hex(text, self.deadline_unix_ms as u64);
        text.push('-');
        text.push_str(itoa::Buffer::new().format(self.seq));
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}-{}", self.deadline_unix_ms, self.seq)
    }
}

/// The deadline passed before the call finished.
struct DeadlinePassed;

/// Runs `future` until `deadline`, like `tokio::time::timeout_at`, except that the timer is
/// only created and registered once the future is `Pending`: most calls finish on their first
/// poll and never need one. Cancellation is the same: on `Err` the future has been dropped
/// (it is owned here).
async fn until_deadline<F: std::future::Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, DeadlinePassed> {
    let mut future = std::pin::pin!(future);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(cx) {
            return std::task::Poll::Ready(Ok(output));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().poll(cx).map(|()| Err(DeadlinePassed))
    })
    .await
}

/// A call's arguments as they cross the ABI (MessagePack for [`abi::CallModule::call`], JSON
/// text for `invoke`; `context` is the call id's text for `call`, the context's JSON for
/// `invoke`), and the buffer the output of `call` comes back in. Kept per thread between calls
/// ([`CallArgs::take`], [`CallArgs::give_back`]), so a call allocates none of them.
#[derive(Default)]
struct CallArgs {
    context: String,
    org: Vec<u8>,
    device: Vec<u8>,
    input: Vec<u8>,
    output: RVec<u8>,
}

/// Buffers larger than this are freed after the call rather than kept for the next.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    /// Idle [`CallArgs`] of this thread (more than one while calls nest or interleave).
    // The boxes themselves are lent to calls and come back (a call's future holds a pointer).
    #[allow(clippy::vec_box)]
    static IDLE_ARGS: std::cell::RefCell<Vec<Box<CallArgs>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl CallArgs {
    /// An idle set of this thread's buffers, or a new one (boxed, so that a call's future
    /// carries a pointer rather than the buffers).
    fn take() -> Box<CallArgs> {
        IDLE_ARGS
            .with(|idle| idle.borrow_mut().pop())
            .unwrap_or_else(|| {
                Box::new(CallArgs {
                    output: RVec::with_capacity(256),
                    ..CallArgs::default()
                })
            })
    }

    /// Keeps the buffers (and `output`, the text the plugin returned) for this thread's next
    /// call, unless one grew large or enough are idle already.
    fn give_back(mut self: Box<Self>, output: Option<RVec<u8>>) {
        if let Some(mut output) = output {
            output.clear();
            self.output = output;
        }
        let large = self.context.capacity() > KEEP_BUFFER_BYTES
            || [&self.org, &self.device, &self.input]
                .iter()
                .any(|b| b.capacity() > KEEP_BUFFER_BYTES)
            || self.output.capacity() > KEEP_BUFFER_BYTES;
        if !large {
            IDLE_ARGS.with(|idle| {
                let mut idle = idle.borrow_mut();
                if idle.len() < 4 {
                    idle.push(self);
                }
            });
        }
    }
}

/// The view cache's key for the org settings a call uses (a hash: it never carries the secrets;
/// not the plugin's account key, see `account.rs`).
fn account_hash(plugin: &str, org_config_json: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    plugin.hash(&mut h);
    org_config_json.hash(&mut h);
    h.finish()
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after it).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..s.floor_char_boundary(37)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The echo plugin, linked in as a static plugin.
    use devext_echo as _;

    #[test]
    fn output_is_read_from_either_encoding_and_a_bad_one_is_the_plugins_fault() {
        let rt = Runtime::load(RuntimeConfig::default()).unwrap();
        let (org, device, input) = (json!({}), json!({"id": "d-1"}), json!({"message": "m"}));
        let req = CallRequest {
            plugin: "echo",
            op: "echo",
            org_config: &org,
            device_config: &device,
            input: &input,
            timeout: None,
            priority: Priority::Interactive,
        };
        let (_, op) = rt.resolve(&req).unwrap();
        let output = json!({"message": "m", "greeting": "hello", "device": "d-1"});
        let mut packed = Vec::new();
        devext_plugin_api::wire::write(&mut packed, &output).unwrap();
        for encoded in [
            Output::Packed(packed.as_slice().into()),
            Output::Json(output.to_string().into()),
        ] {
            assert_eq!(rt.read_output(op, &req, true, &encoded).unwrap(), output);
        }
        for (encoded, says) in [
            (
                Output::Packed(packed[..packed.len() - 1].into()),
                "plugin echo returned output that is not MessagePack (the bytes end inside a string at byte",
            ),
            (
                Output::Json("{".into()),
                "plugin echo returned output that is not JSON (",
            ),
        ] {
            let e = rt.read_output(op, &req, true, &encoded).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Internal);
            assert!(e.message.starts_with(says), "{}", e.message);
            assert_eq!(e.details, json!({"fault": "plugin"}));
        }
    }

    #[test]
    fn the_call_context_is_the_plugin_apis_call_context() {
        let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        for (deadline, seq, key) in [
            (1_767_000_000_123_i64, 7_u64, digest),
            (0, 0, ""),
            (i64::MAX, u64::MAX, "0"),
            (-5, 1, "a-b_C"),
        ] {
            let id = CallId {
                deadline_unix_ms: deadline,
                seq,
            };
            let mut text = String::new();
            call_context_json(&mut text, id, key, Priority::Interactive).unwrap();
            let context: devext_plugin_api::CallContext = serde_json::from_str(&text).unwrap();
            assert_eq!(
                context,
                devext_plugin_api::CallContext::new(format!("{deadline:x}-{seq}"), deadline)
                    .account_key(key)
            );
            assert_eq!(id.to_string(), context.call_id);
        }
        let mut text = String::new();
        call_context_json(
            &mut text,
            CallId {
                deadline_unix_ms: 1,
                seq: 2,
            },
            "a\"b",
            Priority::Bulk,
        )
        .unwrap();
        let context: devext_plugin_api::CallContext = serde_json::from_str(&text).unwrap();
        assert_eq!(context.account_key, "a\"b");
        assert_eq!(context.priority, Priority::Bulk);
    }
}
