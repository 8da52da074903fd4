//! What a plugin declares about itself: identity, configuration schemas and operations.
//!
//! The manifest crosses the boundary as JSON (protocol [`crate::PROTOCOL_VERSION`]); fields a
//! reader does not know are ignored, so new declarations never need a new ABI field.
//!
//! The structs are `#[non_exhaustive]`: build them with their constructors and chained setters
//! ([`Manifest::new`], [`Operation::view`], [`Operation::action`], [`DeclaredWarning::new`]), so
//! that a field added in a later version of this crate does not break a plugin's code. Every
//! field stays public for reading (and for adjusting a built value in place).
//!
//! ```
//! use devext_plugin_api::{json, Manifest, Operation};
//!
//! let m = Manifest::new("demo", "Demo", "1.0.0")
//!     .description("A demonstration.")
//!     .org_config_schema(json!({
//!         "type": "object",
//!         "properties": {"endpoint": {"type": "string", "format": "uri"}}
//!     }))
//!     .endpoint_field("endpoint")
//!     .with_operation(
//!         Operation::view("status", "Status")
//!             .output_schema(json!({"type": "object"}))
//!             .fresh_for_secs(30),
//!     );
//! assert_eq!(m.protocol, devext_plugin_api::PROTOCOL_VERSION);
//! assert_eq!(m.operation("status").unwrap().title, "Status");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A plugin's self-description. Build it with [`Manifest::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// The JSON protocol version the plugin speaks (see [`crate::PROTOCOL_VERSION`]); filled by
    /// [`Manifest::new`].
    pub protocol: u32,
    /// Identifier (`[a-z][a-z0-9_]*`); the key of the plugin's object in a device's extension
    /// configuration.
    pub name: String,
    /// Name for people ("Cisco Jasper Control Center").
    pub display_name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// The `devext-plugin-api` version the plugin was built against (semver), filled by
    /// [`Manifest::new`]; the host accepts the same major version (same minor while the major
    /// is 0).
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
    /// The operations: device-scope ones are shown in a device's drilldown, org-scope ones on
    /// the organisation's settings of the plugin.
    pub operations: Vec<Operation>,
    /// Advisory checks of a device configuration that the host evaluates without calling the
    /// plugin; a failed check is a warning, not an error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<DeclaredWarning>,
    /// The organisation-scope view (`scope: org`, kind view) that tests the org's settings with
    /// the cheapest authenticated upstream call; a UI offers "Test connection" when it is set.
    /// Its errors carry `details.code` among `bad_credentials`, `license_refused`,
    /// `unreachable`, `egress_refused`, `timeout` and `upstream_error` (plus the plugin's own).
    /// The host refuses a manifest whose `connection_check` names no org-scope view. Absent from
    /// manifests written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_check: Option<String>,
}

/// The schema of an object that accepts any properties: the default of the configuration
/// schemas and of an operation's output.
fn any_object() -> Value {
    json!({"type": "object"})
}

/// The schema of an empty input: an object without properties.
fn no_input() -> Value {
    json!({"type": "object", "properties": {}, "additionalProperties": false})
}

impl Manifest {
    /// A manifest for the plugin `name` (an identifier), with this crate's
    /// [`crate::PROTOCOL_VERSION`] and [`crate::API_VERSION`], open org and device schemas
    /// (`{"type": "object"}`), no endpoint (no network access) and no operations yet.
    pub fn new(
        name: impl Into<String>,
        display_name: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Manifest {
            protocol: crate::PROTOCOL_VERSION,
            name: name.into(),
            display_name: display_name.into(),
            version: version.into(),
            api_version: crate::API_VERSION.to_owned(),
            description: String::new(),
            org_config_schema: any_object(),
            device_config_schema: any_object(),
            endpoint_field: None,
            lookup_fields: Vec::new(),
            account_fields: Vec::new(),
            operations: Vec::new(),
            warnings: Vec::new(),
            connection_check: None,
        }
    }

    /// Sets the paragraph for people.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the JSON Schema of the org-level settings (secrets carry `"writeOnly": true`).
    pub fn org_config_schema(mut self, schema: Value) -> Self {
        self.org_config_schema = schema;
        self
    }

    /// Sets the JSON Schema of the plugin's object in a device's extension configuration.
    pub fn device_config_schema(mut self, schema: Value) -> Self {
        self.device_config_schema = schema;
        self
    }

    /// Names the org-config property that holds the service's endpoint URL (the only origin
    /// the plugin may reach).
    pub fn endpoint_field(mut self, field: impl Into<String>) -> Self {
        self.endpoint_field = Some(field.into());
        self
    }

    /// Sets the device-config properties that identify a device in the external service.
    pub fn lookup_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.lookup_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the non-secret org-config properties that, with the endpoint, identify the upstream
    /// account (see [`crate::CallContext::account_key`]).
    pub fn account_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.account_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Appends an operation.
    pub fn with_operation(mut self, operation: Operation) -> Self {
        self.operations.push(operation);
        self
    }

    /// Appends operations.
    pub fn with_operations(mut self, operations: impl IntoIterator<Item = Operation>) -> Self {
        self.operations.extend(operations);
        self
    }

    /// Appends an advisory check of device configurations.
    pub fn with_warning(mut self, warning: DeclaredWarning) -> Self {
        self.warnings.push(warning);
        self
    }

    /// Appends advisory checks of device configurations.
    pub fn with_warnings(mut self, warnings: impl IntoIterator<Item = DeclaredWarning>) -> Self {
        self.warnings.extend(warnings);
        self
    }

    /// Names the organisation-scope view that tests the org's settings ("Test connection").
    pub fn connection_check(mut self, view: impl Into<String>) -> Self {
        self.connection_check = Some(view.into());
        self
    }

    /// The operation called `name`.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|op| op.name == name)
    }
}

/// Whether an operation only reads or changes something.
///
/// Deliberately exhaustive: a host must decide per kind how to run an operation (caching,
/// idempotency, audit, timeouts), so a new kind is a protocol change (a new
/// [`crate::PROTOCOL_VERSION`]) and hosts matching on it are meant to stop compiling then.
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

/// What an operation runs on.
///
/// Deliberately exhaustive, like [`OpKind`]: whether a call needs a device is something every
/// host must decide, so a new scope is a protocol change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpScope {
    /// On one device: the plugin gets the org's settings and the device's configuration.
    #[default]
    Device,
    /// On the organisation only ("Test connection", "List rate plans"): the plugin gets the
    /// org's settings and `device_config` is `null`.
    Org,
}

impl OpScope {
    /// `device` or `org`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpScope::Device => "device",
            OpScope::Org => "org",
        }
    }

    /// Whether this is the default scope (which the manifest's JSON omits).
    pub fn is_device(&self) -> bool {
        *self == OpScope::Device
    }
}

/// One operation of a plugin. Build it with [`Operation::view`] or [`Operation::action`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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
    /// Device (the default; omitted from the JSON) or organisation.
    #[serde(default, skip_serializing_if = "OpScope::is_device")]
    pub scope: OpScope,
    /// Whether the action is hard to undo (a UI asks for confirmation).
    #[serde(default)]
    pub destructive: bool,
    /// JSON Schema of the input. For the audit log of an action, a top-level property may say
    /// what is safe to keep: `"writeOnly": true` (kept as `<secret>`) or the annotation
    /// `"x-devext-audit": "length"` (only its length, e.g. a message body) or `"omit"`.
    pub input_schema: Value,
    /// JSON Schema of the output; the host checks every output against it.
    pub output_schema: Value,
    /// For a device-scope view: how long its result stays fresh, so the host may serve repeats
    /// from a cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_for_secs: Option<u64>,
}

impl Operation {
    fn new(kind: OpKind, name: String, title: String) -> Self {
        Operation {
            name,
            title,
            description: String::new(),
            kind,
            scope: OpScope::Device,
            destructive: false,
            input_schema: no_input(),
            output_schema: any_object(),
            fresh_for_secs: None,
        }
    }

    /// A view (reads only) on a device, with no input and any object as output until
    /// [`Operation::input_schema`] and [`Operation::output_schema`] say otherwise.
    pub fn view(name: impl Into<String>, title: impl Into<String>) -> Self {
        Operation::new(OpKind::View, name.into(), title.into())
    }

    /// An action (changes something) on a device, with the same defaults as
    /// [`Operation::view`].
    pub fn action(name: impl Into<String>, title: impl Into<String>) -> Self {
        Operation::new(OpKind::Action, name.into(), title.into())
    }

    /// Sets the sentence for people.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the scope ([`OpScope::Org`]: the operation needs no device).
    pub fn scope(mut self, scope: OpScope) -> Self {
        self.scope = scope;
        self
    }

    /// Marks the action as hard to undo (a UI asks for confirmation).
    pub fn destructive(mut self, destructive: bool) -> Self {
        self.destructive = destructive;
        self
    }

    /// Sets the JSON Schema of the input.
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.input_schema = schema;
        self
    }

    /// Sets the JSON Schema of the output.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = schema;
        self
    }

    /// For a device-scope view: lets the host serve repeats from its cache for `secs` seconds.
    pub fn fresh_for_secs(mut self, secs: u64) -> Self {
        self.fresh_for_secs = Some(secs);
        self
    }
}

/// An advisory check: the device configuration should match `schema`; when it does not, the host
/// reports `message` as a warning. Besides the standard formats the host provides `luhn` (a string
/// of digits whose last digit is a valid Luhn check digit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeclaredWarning {
    /// Identifier of the check (`iccid_check_digit`).
    pub code: String,
    /// What the warning means and what to do about it.
    pub message: String,
    /// JSON Schema the device configuration should satisfy.
    pub schema: Value,
}

impl DeclaredWarning {
    /// A check named `code` that raises `message` when a device configuration does not match
    /// `schema`.
    pub fn new(code: impl Into<String>, message: impl Into<String>, schema: Value) -> Self {
        DeclaredWarning {
            code: code.into(),
            message: message.into(),
            schema,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_fills_protocol_and_api_version() {
        let m = Manifest::new("demo", "Demo", "1.2.3")
            .description("d")
            .endpoint_field("endpoint")
            .lookup_fields(["serial"])
            .account_fields(vec!["tenant".to_owned()])
            .with_operation(Operation::view("look", "Look").fresh_for_secs(5))
            .with_operation(
                Operation::action("ping", "Ping")
                    .scope(OpScope::Org)
                    .destructive(true),
            )
            .with_warning(DeclaredWarning::new("w", "m", json!({})));
        assert_eq!(m.protocol, crate::PROTOCOL_VERSION);
        assert_eq!(m.api_version, crate::API_VERSION);
        assert_eq!((m.name.as_str(), m.version.as_str()), ("demo", "1.2.3"));
        assert_eq!(m.endpoint_field.as_deref(), Some("endpoint"));
        assert_eq!(m.lookup_fields, ["serial"]);
        assert_eq!(m.account_fields, ["tenant"]);
        let look = m.operation("look").unwrap();
        assert_eq!(
            (look.kind, look.scope, look.fresh_for_secs),
            (OpKind::View, OpScope::Device, Some(5))
        );
        assert_eq!(look.input_schema, no_input());
        let ping = m.operation("ping").unwrap();
        assert_eq!(
            (ping.kind, ping.scope, ping.destructive),
            (OpKind::Action, OpScope::Org, true)
        );
        assert_eq!(m.warnings[0].code, "w");
    }

    #[test]
    fn the_scope_is_omitted_when_device_and_defaults_to_it() {
        let m = Manifest::new("demo", "Demo", "1.0.0")
            .with_operation(Operation::view("look", "Look"))
            .with_operation(Operation::view("ping", "Ping").scope(OpScope::Org));
        let json = serde_json::to_value(&m).unwrap();
        assert!(json["operations"][0].get("scope").is_none(), "{json}");
        assert_eq!(json["operations"][1]["scope"], "org");
        // A manifest written before scopes existed reads as device-scope.
        let mut old = json.clone();
        old["operations"][1]
            .as_object_mut()
            .unwrap()
            .remove("scope");
        let back: Manifest = serde_json::from_value(old).unwrap();
        assert_eq!(back.operations[1].scope, OpScope::Device);
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn the_connection_check_is_optional_and_omitted_when_unset() {
        let m = Manifest::new("demo", "Demo", "1.0.0")
            .with_operation(Operation::view("ping", "Ping").scope(OpScope::Org));
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("connection_check").is_none(), "{json}");
        // A manifest written before the field existed reads as having none.
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back.connection_check, None);

        let m = m.connection_check("ping");
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["connection_check"], "ping");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back.connection_check.as_deref(), Some("ping"));
    }
}
