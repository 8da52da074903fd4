//! What a plugin declares about itself: identity, configuration schemas and operations.
//!
//! The manifest crosses the boundary as JSON (protocol [`crate::PROTOCOL_VERSION`]); fields a
//! reader does not know are ignored, so new declarations never need a new ABI field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A plugin's self-description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The JSON protocol version the plugin speaks (see [`crate::PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// Identifier (`[a-z][a-z0-9_]*`); the key of the plugin's object in a device's extension
    /// configuration.
    pub name: String,
    /// Name for people ("Cisco Jasper Control Center").
    pub display_name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// The `devext-plugin-api` version the plugin was built against (semver); the host accepts
    /// the same major version (same minor while the major is 0).
    pub api_version: String,
    /// One paragraph for people.
    #[serde(default)]
    pub description: String,
    /// JSON Schema (draft 2020-12) of the org-level settings. Secret properties carry
    /// `"writeOnly": true`.
    pub org_config_schema: Value,
    /// JSON Schema (draft 2020-12) of the plugin's object in a device's extension configuration.
    pub device_config_schema: Value,
    /// The org-config property (a top-level property name) holding the service's endpoint URL.
    /// The host allows the plugin's HTTP requests to that origin only. `None`: no network access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_field: Option<String>,
    /// Top-level properties of the device configuration that identify the device in the external
    /// service (Jasper: `iccid`). A value is unique within an organisation: the service indexes
    /// them and finds devices by them (`?ext.<plugin>.<field>=value`). Each must be a declared
    /// property of the device-config schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookup_fields: Vec<String>,
    /// Top-level, non-secret org-config properties that, with the endpoint, identify the upstream
    /// account (Jasper: `api`, `username`). The host derives [`crate::CallContext::account_key`]
    /// from them: stable across restarts and processes, never from secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub account_fields: Vec<String>,
    /// The operations shown in a device's drilldown.
    pub operations: Vec<Operation>,
    /// Advisory checks of a device configuration that the host evaluates without calling the
    /// plugin; a failed check is a warning, not an error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<DeclaredWarning>,
}

impl Manifest {
    /// The operation called `name`.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|op| op.name == name)
    }
}

/// Whether an operation only reads or changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Reads; safe to repeat.
    View,
    /// Changes state in the external service.
    Action,
}

impl OpKind {
    /// `view` or `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::View => "view",
            OpKind::Action => "action",
        }
    }
}

/// One operation of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Identifier (`[a-z][a-z0-9_]*`), unique within the plugin.
    pub name: String,
    /// Short label for a button or a tab.
    pub title: String,
    /// One sentence for people.
    #[serde(default)]
    pub description: String,
    /// View or action.
    pub kind: OpKind,
    /// Whether the action is hard to undo (a UI asks for confirmation).
    #[serde(default)]
    pub destructive: bool,
    /// JSON Schema of the input.
    pub input_schema: Value,
    /// JSON Schema of the output; the host checks every output against it.
    pub output_schema: Value,
    /// For a view: how long its result stays fresh, so the host may serve repeats from a cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_for_secs: Option<u64>,
}

/// An advisory check: the device configuration should match `schema`; when it does not, the host
/// reports `message` as a warning. Besides the standard formats the host provides `luhn` (a string
/// of digits whose last digit is a valid Luhn check digit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclaredWarning {
    /// Identifier of the check (`iccid_check_digit`).
    pub code: String,
    /// What the warning means and what to do about it.
    pub message: String,
    /// JSON Schema the device configuration should satisfy.
    pub schema: Value,
}
