//! `echo`: the smallest useful devext plugin, and the template to copy for a new one.
//!
//! It has two views (`echo`, which returns what it was given, and `counter`, which reads a
//! per-device counter kept in memory and shows how a view declares that its result may be cached)
//! and one action (`count`, which increments the counter). To start a new plugin:
//!
//! 1. copy this crate, rename the package (`devext-<name>`) and the plugin `name` in the manifest;
//! 2. describe the org-level settings and the per-device configuration as JSON Schemas (mark
//!    secrets with `"writeOnly": true`; name the endpoint property in `endpoint_field` if the
//!    plugin talks to a service, so the host can allow exactly that origin);
//! 3. declare each operation with input and output schemas, then implement it in `invoke`;
//! 4. `cargo build --release` and drop `target/release/lib<crate>.so` into a `--plugins`
//!    directory, or check it first with `devext plugins check <file>`.
//!
//! The host has validated every argument against the schemas before `invoke` runs, and validates
//! the output afterwards, so the plugin only handles what the schemas cannot express.

use std::collections::HashMap;
use std::sync::Mutex;

use devext_plugin_api::{
    Call, Host, LogLevel, Manifest, OpKind, Operation, Plugin, PluginError, Value, json,
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
        Manifest {
            protocol: devext_plugin_api::PROTOCOL_VERSION,
            name: "echo".into(),
            display_name: "Echo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: devext_plugin_api::API_VERSION.into(),
            description: "Returns what it is given; a template for plugin authors.".into(),
            org_config_schema: json!({
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
            }),
            device_config_schema: json!({
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
            }),
            // Echo talks to no service: the host refuses any HTTP request it makes.
            endpoint_field: None,
            lookup_fields: Vec::new(),
            account_fields: Vec::new(),
            operations: vec![
                Operation {
                    name: "echo".into(),
                    title: "Echo".into(),
                    description: "Returns the message, the org's greeting and the device id."
                        .into(),
                    kind: OpKind::View,
                    destructive: false,
                    input_schema: json!({
                        "type": "object",
                        "properties": {
                            "message": {"type": "string", "title": "Message", "maxLength": 1000},
                            "tags": {
                                "type": "array", "items": {"type": "string"}, "maxItems": 16
                            }
                        },
                        "required": ["message"],
                        "additionalProperties": false
                    }),
                    output_schema: json!({
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "greeting": {"type": "string"},
                            "device": {"type": "string"},
                            "tags": {"type": "array", "items": {"type": "string"}}
                        },
                        "required": ["message", "greeting", "device"],
                        "additionalProperties": false
                    }),
                    fresh_for_secs: None,
                },
                Operation {
                    name: "count".into(),
                    title: "Count".into(),
                    description: "Increments the device's counter and returns its new value."
                        .into(),
                    kind: OpKind::Action,
                    destructive: false,
                    input_schema: json!({
                        "type": "object",
                        "properties": {
                            "by": {
                                "type": "integer", "title": "Step", "minimum": 1,
                                "maximum": 1000, "default": 1
                            }
                        },
                        "additionalProperties": false
                    }),
                    output_schema: json!({
                        "type": "object",
                        "properties": {"count": {"type": "integer", "minimum": 1}},
                        "required": ["count"],
                        "additionalProperties": false
                    }),
                    fresh_for_secs: None,
                },
                Operation {
                    name: "counter".into(),
                    title: "Counter".into(),
                    description: "Reads the device's counter.".into(),
                    kind: OpKind::View,
                    destructive: false,
                    input_schema: json!({"type": "object", "additionalProperties": false}),
                    output_schema: json!({
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
                    }),
                    // The host may serve this view again for 5 s (and adds `as_of`); an
                    // action on the same device drops the cached result.
                    fresh_for_secs: Some(5),
                },
            ],
            warnings: Vec::new(),
        }
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
