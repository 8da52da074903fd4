//! `echo`: the smallest useful devext plugin, and the template to copy for a new one.
//!
//! It has two device views (`echo`, which returns what it was given, and `counter`, which reads a
//! per-device counter kept in memory and shows how a view declares that its result may be
//! cached), one action (`count`, which increments the counter) and one organisation-scope view
//! (`ping`, which needs no device and answers with the org's greeting). To start a new plugin,
//! run `devext plugins new NAME` (a standalone crate that builds outside this workspace, with a
//! test on the test kit; see `docs/plugin-authoring.md`), or by hand:
//!
//! 1. copy this crate, rename the package (`devext-<name>`) and the plugin `name` in the manifest;
//! 2. describe the org-level settings and the per-device configuration as JSON Schemas (mark
//!    secrets with `"writeOnly": true`; name the endpoint property in `endpoint_field` if the
//!    plugin talks to a service, so the host can allow exactly that origin);
//! 3. declare each operation with input and output schemas, then implement it in `invoke`;
//! 4. test it through the real host with `devext-plugin-test` (as `tests/echo.rs` does);
//! 5. `cargo build --release` and drop `target/release/lib<crate>.so` into a `--plugins`
//!    directory, or check it first with `devext plugins check <file>`.
//!
//! The host has validated every argument against the schemas before `invoke` runs, and validates
//! the output afterwards, so the plugin only handles what the schemas cannot express.

use std::collections::HashMap;
use std::sync::Mutex;

use devext_plugin_api::{
    Call, Host, LogLevel, Manifest, OpScope, Operation, Plugin, PluginError, Value, json,
};

/// The plugin's state. One instance serves every call, concurrently, so state needs a lock.
#[derive(Default)]
pub struct Echo {
    /// `count` action: device id -> number of times it ran.
    counters: Mutex<HashMap<String, u64>>,
    /// How many times `counter` really ran (the host serves repeats from its cache).
    reads: std::sync::atomic::AtomicU64,
}

impl Plugin for Echo {
    fn manifest(&self) -> Manifest {
        // `Manifest::new` fills the protocol and plugin-api versions; everything else is chained.
        Manifest::new("echo", "Echo", env!("CARGO_PKG_VERSION"))
            .description("Returns what it is given; a template for plugin authors.")
            .org_config_schema(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "Echo settings",
                "type": "object",
                "properties": {
                    "greeting": {
                        "type": "string", "title": "Greeting", "maxLength": 100,
                        "default": "hello"
                    },
                    "token": {
                        "type": "string", "title": "Token",
                        "description": "An example secret: never returned by the host",
                        "writeOnly": true
                    }
                },
                "additionalProperties": false
            }))
            .device_config_schema(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "Echo device settings",
                "type": "object",
                "properties": {
                    "id": {
                        "type": "string", "title": "Device id", "minLength": 1, "maxLength": 64,
                        "pattern": "^[A-Za-z0-9_.-]+$"
                    }
                },
                "required": ["id"],
                "additionalProperties": false
            }))
            // Echo talks to no service (no `endpoint_field`): the host refuses any HTTP request
            // it makes. Its "account" is the greeting: orgs with the same greeting share an
            // account key (a plugin with a service names, say, its username here).
            .account_fields(["greeting"])
            .with_operation(
                Operation::view("echo", "Echo")
                    .description("Returns the message, the org's greeting and the device id.")
                    .input_schema(json!({
                        "type": "object",
                        "properties": {
                            "message": {"type": "string", "title": "Message", "maxLength": 1000},
                            "tags": {
                                "type": "array", "items": {"type": "string"}, "maxItems": 16
                            }
                        },
                        "required": ["message"],
                        "additionalProperties": false
                    }))
                    .output_schema(json!({
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "greeting": {"type": "string"},
                            "device": {"type": "string"},
                            "tags": {"type": "array", "items": {"type": "string"}}
                        },
                        "required": ["message", "greeting", "device"],
                        "additionalProperties": false
                    })),
            )
            .with_operation(
                Operation::action("count", "Count")
                    .description("Increments the device's counter and returns its new value.")
                    .input_schema(json!({
                        "type": "object",
                        "properties": {
                            "by": {
                                "type": "integer", "title": "Step", "minimum": 1,
                                "maximum": 1000, "default": 1
                            }
                        },
                        "additionalProperties": false
                    }))
                    .output_schema(json!({
                        "type": "object",
                        "properties": {"count": {"type": "integer", "minimum": 1}},
                        "required": ["count"],
                        "additionalProperties": false
                    })),
            )
            .with_operation(
                Operation::view("counter", "Counter")
                    .description("Reads the device's counter.")
                    .output_schema(json!({
                        "type": "object",
                        "properties": {
                            "count": {"type": "integer", "minimum": 0},
                            "reads": {
                                "type": "integer",
                                "description": "How many times the plugin really ran this view"
                            },
                            "as_of": {"type": "string", "format": "date-time"}
                        },
                        "required": ["count", "reads"],
                        "additionalProperties": false
                    }))
                    // The host may serve this view again for 5 s (and adds `as_of`); an
                    // action on the same device drops the cached result.
                    .fresh_for_secs(5),
            )
            .with_operation(
                // An organisation-scope operation needs no device: it runs with the org's
                // settings only (think "Test connection"); `device_config` is `null`.
                Operation::view("ping", "Ping")
                    .scope(OpScope::Org)
                    .description("Answers with the org's greeting, without a device.")
                    .output_schema(json!({
                        "type": "object",
                        "properties": {
                            "greeting": {"type": "string"},
                            "account_key": {"type": "string"}
                        },
                        "required": ["greeting", "account_key"],
                        "additionalProperties": false
                    })),
            )
    }

    async fn invoke(&self, host: Host, call: Call) -> Result<Value, PluginError> {
        // The schemas guarantee the shapes, so plain indexing is safe here.
        let device = call.device_config["id"].as_str().unwrap_or_default();
        match call.op.as_str() {
            "echo" => {
                let greeting = call.org_config["greeting"].as_str().unwrap_or("hello");
                let mut out = json!({
                    "message": call.input["message"],
                    "greeting": greeting,
                    "device": device,
                });
                if let Some(tags) = call.input.get("tags") {
                    out["tags"] = tags.clone();
                }
                Ok(out)
            }
            "count" => {
                let by = call.input["by"].as_u64().unwrap_or(1);
                let count = {
                    let mut counters = self
                        .counters
                        .lock()
                        .map_err(|_| PluginError::internal("counter state is poisoned"))?;
                    let c = counters.entry(device.to_owned()).or_insert(0);
                    *c += by;
                    *c
                };
                host.log(
                    LogLevel::Info,
                    format!("device {device} counted to {count}"),
                );
                Ok(json!({ "count": count }))
            }
            "ping" => {
                // An org-scope operation gets no device configuration (`null`).
                let greeting = call.org_config["greeting"].as_str().unwrap_or("hello");
                Ok(json!({
                    "greeting": greeting,
                    "account_key": call.context.account_key,
                }))
            }
            "counter" => {
                let count = self
                    .counters
                    .lock()
                    .map_err(|_| PluginError::internal("counter state is poisoned"))?
                    .get(device)
                    .copied()
                    .unwrap_or(0);
                let reads = 1 + self
                    .reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(json!({ "count": count, "reads": reads }))
            }
            // The host only dispatches declared operations; this is a defensive answer.
            other => Err(PluginError::not_found(format!(
                "echo has no operation {other:?}"
            ))),
        }
    }
}

devext_plugin_api::export_plugin!(Echo, Echo::default());
