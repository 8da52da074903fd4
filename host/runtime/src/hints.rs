//! Presentation hints: the `x-devext-*` annotations plugins put in their schemas, checked at load.
//!
//! JSON Schema says what a value may be, not how a person should see it. Plugins add that as
//! annotations with the `x-devext-` prefix (see `docs/presentation-hints.md`):
//!
//! | key | where | value |
//! |---|---|---|
//! | `x-devext-unit` | number/integer property | `"bytes"`, `"seconds"`, `"count"`, `"percent"` |
//! | `x-devext-badge` | string property of a view's output | `true` |
//! | `x-devext-widget` | string property of an input or a configuration | `"textarea"`, `"password"` |
//! | `x-devext-default` | string property with `format: date` | `"today"`, `"cycle-start"` |
//! | `x-devext-chart` | root of a view's output schema | `{kind, series, x, y}` |
//! | `x-devext-audit` | top-level property of an operation's input | `"length"`, `"omit"` |
//!
//! An unknown `x-devext-*` key, a known key with a bad value, or a key where it means nothing is
//! a [`HintWarning`]: the plugin still loads (a hint only changes how things look), and the
//! warning is logged, listed by `devext plugins check` and by the service's plugin list.

use serde::Serialize;
use serde_json::{Map, Value};

use devext_plugin_api::{Manifest, OpKind};

/// The prefix of every presentation hint.
pub const PREFIX: &str = "x-devext-";

/// The units `x-devext-unit` knows.
pub const UNITS: &[&str] = &["bytes", "seconds", "count", "percent"];
/// The widgets `x-devext-widget` knows.
pub const WIDGETS: &[&str] = &["textarea", "password"];
/// The computed defaults `x-devext-default` knows.
pub const DEFAULTS: &[&str] = &["today", "cycle-start"];
/// The chart kinds `x-devext-chart` knows.
pub const CHART_KINDS: &[&str] = &["bar", "line"];
/// The values `x-devext-audit` knows.
pub const AUDITS: &[&str] = &["length", "omit"];

/// One hint that a UI will ignore, and why.
///
/// Serialised as `{"plugin", "schema", "pointer", "message"}` (`message` is the one line of
/// [`HintProblem`]'s `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintWarning {
    /// The plugin's name.
    pub plugin: String,
    /// Which schema: `org config`, `device config`, `operation usage input`, `operation usage
    /// output`, `warning serial_check` (the names the load errors use).
    pub schema: String,
    /// JSON pointer to the hint's key within that schema (`/properties/data/x-devext-unit`).
    pub pointer: String,
    /// What is wrong.
    pub problem: HintProblem,
}

impl std::fmt::Display for HintWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin {}: {} schema at {}: {}",
            self.plugin, self.schema, self.pointer, self.problem
        )
    }
}

impl Serialize for HintWarning {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("HintWarning", 4)?;
        s.serialize_field("plugin", &self.plugin)?;
        s.serialize_field("schema", &self.schema)?;
        s.serialize_field("pointer", &self.pointer)?;
        s.serialize_field("message", &self.problem.to_string())?;
        s.end()
    }
}

/// What is wrong with a hint. `Display` is one line for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HintProblem {
    /// An `x-devext-*` key this host does not know (a typo, or a hint of a newer host).
    #[error("unknown presentation hint {key:?} (known: {})", known_keys())]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A known key with a value outside its vocabulary.
    #[error("{key} is {found}; expected {expected}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value found, as compact JSON (shortened).
        found: String,
        /// What it may be.
        expected: String,
    },
    /// A known key where it means nothing (a unit on a string, a chart below the root, ...).
    #[error("{key} {reason}")]
    Misplaced {
        /// The key.
        key: &'static str,
        /// Where it applies, or what is missing.
        reason: String,
    },
}

/// The hint keys this host knows, for the unknown-key message.
fn known_keys() -> String {
    KNOWN.join(", ")
}

const UNIT: &str = "x-devext-unit";
const BADGE: &str = "x-devext-badge";
const WIDGET: &str = "x-devext-widget";
const DEFAULT: &str = "x-devext-default";
const CHART: &str = "x-devext-chart";
const AUDIT: &str = "x-devext-audit";
const KNOWN: &[&str] = &[UNIT, BADGE, WIDGET, DEFAULT, CHART, AUDIT];
const FORMS_ONLY: &str = "applies to properties of an operation's input or of a configuration";

/// Which kind of schema is walked: what a hint may do there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An organisation's settings or a device's configuration: a form.
    Config,
    /// An operation's input: a form, and for an action what the audit log keeps.
    Input,
    /// A view's output: shown.
    ViewOutput,
    /// An action's output: shown.
    ActionOutput,
    /// A declared warning's schema: nothing is shown from it.
    Check,
}

/// Every hint problem in `manifest`'s schemas, in a stable order (org config, device config,
/// operations in their order with input then output, declared warnings).
pub fn check_hints(manifest: &Manifest) -> Vec<HintWarning> {
    let mut out = Vec::new();
    let mut walk = |schema_name: String, schema: &Value, role: Role| {
        let mut w = Walker {
            plugin: &manifest.name,
            schema_name: &schema_name,
            role,
            root: schema,
            out: &mut out,
        };
        w.schema(schema, &mut String::new(), 0);
    };
    walk(
        "org config".into(),
        &manifest.org_config_schema,
        Role::Config,
    );
    walk(
        "device config".into(),
        &manifest.device_config_schema,
        Role::Config,
    );
    for op in &manifest.operations {
        walk(
            format!("operation {} input", op.name),
            &op.input_schema,
            Role::Input,
        );
        let role = match op.kind {
            OpKind::View => Role::ViewOutput,
            OpKind::Action => Role::ActionOutput,
        };
        walk(
            format!("operation {} output", op.name),
            &op.output_schema,
            role,
        );
    }
    for w in &manifest.warnings {
        walk(format!("warning {}", w.code), &w.schema, Role::Check);
    }
    out
}

/// Appends `token` to a JSON pointer, escaped (RFC 6901).
fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// A value as compact JSON, at most about 60 characters, for a message.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 60 {
        return text;
    }
    let mut short: String = text.chars().take(57).collect();
    short.push_str("...");
    short
}

fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

/// The types a schema object declares (`type` as a string or a list); empty when it says none.
fn declared_types(schema: &Map<String, Value>) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether the schema may be of one of `wanted` (true when it declares no type).
fn may_be(schema: &Map<String, Value>, wanted: &[&str]) -> bool {
    let types = declared_types(schema);
    types.is_empty() || types.iter().any(|t| wanted.contains(t))
}

/// Whether the schema is of an array: `type` includes `array`, or no type but `items`.
fn is_array(schema: &Map<String, Value>) -> bool {
    if declared_types(schema).is_empty() {
        schema.contains_key("items")
    } else {
        may_be(schema, &["array"])
    }
}

/// Keywords whose value is one subschema.
const ONE: &[&str] = &[
    "items",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
    // draft 2019-09 and earlier spellings still seen in the wild
    "additionalItems",
];
/// Keywords whose value is a list of subschemas.
const LIST: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const MAP: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

struct Walker<'a> {
    plugin: &'a str,
    schema_name: &'a str,
    role: Role,
    root: &'a Value,
    out: &'a mut Vec<HintWarning>,
}

impl Walker<'_> {
    fn warn(&mut self, pointer: &str, key: &str, problem: HintProblem) {
        let mut at = pointer.to_owned();
        push_token(&mut at, key);
        self.out.push(HintWarning {
            plugin: self.plugin.to_owned(),
            schema: self.schema_name.to_owned(),
            pointer: at,
            problem,
        });
    }

    /// Walks one (sub)schema at `pointer`; `depth` counts the `properties` levels from the root
    /// (1: a top-level property).
    fn schema(&mut self, schema: &Value, pointer: &mut String, depth: usize) {
        let Value::Object(obj) = schema else {
            return;
        };
        for (key, value) in obj {
            if key.starts_with(PREFIX) {
                self.hint(obj, key, value, pointer, depth);
            }
        }
        let len = pointer.len();
        for (key, value) in obj {
            let k = key.as_str();
            if ONE.contains(&k) {
                push_token(pointer, k);
                // `items` as a list is the pre-2020 tuple form.
                if let Value::Array(list) = value {
                    self.list(list, pointer, depth);
                } else {
                    self.schema(value, pointer, depth);
                }
            } else if LIST.contains(&k) {
                push_token(pointer, k);
                if let Value::Array(list) = value {
                    self.list(list, pointer, depth);
                }
            } else if MAP.contains(&k) {
                push_token(pointer, k);
                if let Value::Object(map) = value {
                    let child_depth = if k == "properties" { depth + 1 } else { depth };
                    for (name, sub) in map {
                        let l = pointer.len();
                        push_token(pointer, name);
                        self.schema(sub, pointer, child_depth);
                        pointer.truncate(l);
                    }
                }
            }
            pointer.truncate(len);
        }
    }

    fn list(&mut self, list: &[Value], pointer: &mut String, depth: usize) {
        for (i, sub) in list.iter().enumerate() {
            let l = pointer.len();
            push_token(pointer, &i.to_string());
            self.schema(sub, pointer, depth);
            pointer.truncate(l);
        }
    }

    fn bad_value(&mut self, pointer: &str, key: &'static str, found: &Value, expected: String) {
        let found = shown(found);
        self.warn(
            pointer,
            key,
            HintProblem::BadValue {
                key,
                found,
                expected,
            },
        );
    }

    fn misplaced(&mut self, pointer: &str, key: &'static str, reason: impl Into<String>) {
        let reason = reason.into();
        self.warn(pointer, key, HintProblem::Misplaced { key, reason });
    }

    /// Checks the vocabulary string `value` of `key`; whether it was one.
    fn word(&mut self, pointer: &str, key: &'static str, value: &Value, words: &[&str]) -> bool {
        if value.as_str().is_some_and(|v| words.contains(&v)) {
            return true;
        }
        self.bad_value(pointer, key, value, one_of(words));
        false
    }

    fn hint(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        value: &Value,
        pointer: &str,
        depth: usize,
    ) {
        let is_form = matches!(self.role, Role::Config | Role::Input);
        match key {
            UNIT => {
                if self.word(pointer, UNIT, value, UNITS) && !may_be(obj, &["integer", "number"]) {
                    self.misplaced(pointer, UNIT, "applies to number and integer properties");
                }
            }
            BADGE => {
                if value != &Value::Bool(true) && value != &Value::Bool(false) {
                    self.bad_value(pointer, BADGE, value, "true".into());
                } else if self.role != Role::ViewOutput {
                    self.misplaced(
                        pointer,
                        BADGE,
                        "applies to string properties of a view's output",
                    );
                } else if !may_be(obj, &["string"]) {
                    self.misplaced(pointer, BADGE, "applies to string properties");
                }
            }
            WIDGET => {
                if self.word(pointer, WIDGET, value, WIDGETS) {
                    if !is_form {
                        self.misplaced(pointer, WIDGET, FORMS_ONLY);
                    } else if !may_be(obj, &["string"]) {
                        self.misplaced(pointer, WIDGET, "applies to string properties");
                    }
                }
            }
            DEFAULT => {
                if self.word(pointer, DEFAULT, value, DEFAULTS) {
                    if !is_form {
                        self.misplaced(pointer, DEFAULT, FORMS_ONLY);
                    } else if obj.get("format").and_then(Value::as_str) != Some("date") {
                        self.misplaced(
                            pointer,
                            DEFAULT,
                            "applies to string properties with format date",
                        );
                    }
                }
            }
            AUDIT => {
                if self.word(pointer, AUDIT, value, AUDITS)
                    && (self.role != Role::Input || depth != 1)
                {
                    self.misplaced(
                        pointer,
                        AUDIT,
                        "applies to top-level properties of an operation's input",
                    );
                }
            }
            CHART => {
                if self.role != Role::ViewOutput || !pointer.is_empty() {
                    self.misplaced(
                        pointer,
                        CHART,
                        "applies at the root of a view's output schema",
                    );
                } else {
                    self.chart(value);
                }
            }
            unknown => self.warn(
                pointer,
                unknown,
                HintProblem::UnknownKey {
                    key: unknown.to_owned(),
                },
            ),
        }
    }

    /// Checks `x-devext-chart` at the root of a view's output schema.
    fn chart(&mut self, value: &Value) {
        let Value::Object(chart) = value else {
            self.bad_value(
                "",
                CHART,
                value,
                "an object {\"kind\", \"series\", \"x\", \"y\"}".into(),
            );
            return;
        };
        let at = format!("/{CHART}");
        let problem = |w: &mut Self, field: &str, reason: String| {
            w.out.push(HintWarning {
                plugin: w.plugin.to_owned(),
                schema: w.schema_name.to_owned(),
                pointer: format!("{at}/{field}"),
                problem: HintProblem::Misplaced { key: CHART, reason },
            });
        };
        for k in chart.keys() {
            if !["kind", "series", "x", "y"].contains(&k.as_str()) {
                problem(
                    self,
                    k,
                    format!("has an unknown field {k:?} (known: kind, series, x, y)"),
                );
            }
        }
        match chart.get("kind") {
            Some(Value::String(k)) if CHART_KINDS.contains(&k.as_str()) => {}
            other => problem(
                self,
                "kind",
                format!(
                    "kind is {}; expected {}",
                    other.map_or("missing".into(), shown),
                    one_of(CHART_KINDS)
                ),
            ),
        }
        // The series: a JSON pointer into the output, to an array of objects.
        let items = match chart.get("series") {
            Some(Value::String(p)) if p.is_empty() || p.starts_with('/') => {
                match resolve_output_pointer(self.root, p) {
                    Some(array) if is_array(array) => array.get("items").and_then(Value::as_object),
                    Some(_) => {
                        problem(
                            self,
                            "series",
                            format!("series {p:?} is not an array in the output schema"),
                        );
                        None
                    }
                    None => {
                        problem(
                            self,
                            "series",
                            format!("series {p:?} names no property of the output schema"),
                        );
                        None
                    }
                }
            }
            other => {
                problem(
                    self,
                    "series",
                    format!(
                        "series is {}; expected a JSON pointer to an array of the output (\"/cycles\")",
                        other.map_or("missing".into(), shown)
                    ),
                );
                None
            }
        };
        let item_props = items
            .and_then(|i| i.get("properties"))
            .and_then(Value::as_object);
        let field = |name: &str| {
            item_props
                .and_then(|p| p.get(name))
                .and_then(Value::as_object)
        };
        let series_known = items.is_some();
        match chart.get("x") {
            Some(Value::String(x)) => {
                if series_known && field(x).is_none() {
                    problem(
                        self,
                        "x",
                        format!("x {x:?} is not a property of the series' items"),
                    );
                }
            }
            other => problem(
                self,
                "x",
                format!(
                    "x is {}; expected the name of an item property",
                    other.map_or("missing".into(), shown)
                ),
            ),
        }
        match chart.get("y") {
            Some(Value::Array(ys)) if !ys.is_empty() => {
                for (i, y) in ys.iter().enumerate() {
                    let Some(name) = y.as_str() else {
                        problem(
                            self,
                            &format!("y/{i}"),
                            format!("y/{i} is {}; expected a property name", shown(y)),
                        );
                        continue;
                    };
                    if !series_known {
                        continue;
                    }
                    match field(name) {
                        None => problem(
                            self,
                            &format!("y/{i}"),
                            format!("y {name:?} is not a property of the series' items"),
                        ),
                        Some(f) if !may_be(f, &["integer", "number"]) => problem(
                            self,
                            &format!("y/{i}"),
                            format!("y {name:?} is not a number or integer property"),
                        ),
                        Some(_) => {}
                    }
                }
            }
            other => problem(
                self,
                "y",
                format!(
                    "y is {}; expected a non-empty list of numeric item properties",
                    other.map_or("missing".into(), shown)
                ),
            ),
        }
    }
}

/// The subschema of the output property that `pointer` (a pointer into the output *value*,
/// `/cycles` or `/usage/cycles`) designates, following `properties`.
pub fn resolve_output_pointer<'a>(
    root: &'a Value,
    pointer: &str,
) -> Option<&'a Map<String, Value>> {
    let mut at = root.as_object()?;
    if pointer.is_empty() {
        return Some(at);
    }
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = at.get("properties")?.get(&token)?.as_object()?;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use devext_plugin_api::{DeclaredWarning, Operation, json};

    /// The warnings of a manifest whose `op` view (or action) has these schemas.
    fn check(org: Value, input: Value, output: Value, view: bool) -> Vec<HintWarning> {
        let op = if view {
            Operation::view("op", "Op")
        } else {
            Operation::action("op", "Op")
        };
        let m = Manifest::new("demo", "Demo", "1.0.0")
            .org_config_schema(org)
            .with_operation(op.input_schema(input).output_schema(output));
        check_hints(&m)
    }

    fn output(output: Value) -> Vec<HintWarning> {
        check(json!({"type": "object"}), json!({}), output, true)
    }

    fn input(input: Value) -> Vec<HintWarning> {
        check(json!({"type": "object"}), input, json!({}), true)
    }

    fn prop(p: Value) -> Value {
        json!({"type": "object", "properties": {"p": p}})
    }

    fn messages(ws: &[HintWarning]) -> Vec<String> {
        ws.iter().map(ToString::to_string).collect()
    }

    fn chart_output(chart: Value) -> Value {
        json!({
            "type": "object",
            "x-devext-chart": chart,
            "properties": {
                "cycles": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "cycle_start": {"type": "string", "format": "date"},
                            "data_bytes": {"type": "integer", "x-devext-unit": "bytes"},
                            "sms_count": {"type": ["integer", "null"], "x-devext-unit": "count"},
                            "label": {"type": "string"}
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn good_hints_raise_nothing() {
        let org = json!({"type": "object", "properties": {
            "password": {"type": "string", "writeOnly": true, "x-devext-widget": "password"},
            "notes": {"type": "string", "x-devext-widget": "textarea"},
            "since": {"type": "string", "format": "date", "x-devext-default": "today"}
        }});
        let input = json!({"type": "object", "properties": {
            "text": {"type": "string", "x-devext-widget": "textarea", "x-devext-audit": "length"},
            "token": {"type": "string", "x-devext-audit": "omit"},
            "start": {"type": "string", "format": "date", "x-devext-default": "cycle-start"}
        }});
        let mut output = chart_output(json!({
            "kind": "bar", "series": "/cycles", "x": "cycle_start", "y": ["data_bytes", "sms_count"]
        }));
        output["properties"]["status"] = json!({"type": "string", "x-devext-badge": true});
        output["properties"]["share"] = json!({"type": "number", "x-devext-unit": "percent"});
        output["properties"]["secs"] =
            json!({"type": ["integer", "null"], "x-devext-unit": "seconds"});
        let ws = check(org, input, output, true);
        assert!(ws.is_empty(), "{:?}", messages(&ws));
    }

    #[test]
    fn an_unknown_key_is_named_with_plugin_schema_and_pointer() {
        let ws = output(json!({"type": "object", "properties": {
            "a/b": {"type": "object", "properties": {"x": {"type": "integer", "x-devext-units": "bytes"}}}
        }}));
        assert_eq!(ws.len(), 1, "{:?}", messages(&ws));
        assert_eq!(ws[0].plugin, "demo");
        assert_eq!(ws[0].schema, "operation op output");
        assert_eq!(
            ws[0].pointer,
            "/properties/a~1b/properties/x/x-devext-units"
        );
        assert_eq!(
            ws[0].problem,
            HintProblem::UnknownKey {
                key: "x-devext-units".into()
            }
        );
        let text = ws[0].to_string();
        assert!(
            text.starts_with(
                "plugin demo: operation op output schema at /properties/a~1b/properties/x/x-devext-units: \
                 unknown presentation hint \"x-devext-units\" (known: x-devext-unit,"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&ws[0]).unwrap();
        assert_eq!(
            json["pointer"],
            "/properties/a~1b/properties/x/x-devext-units"
        );
        assert_eq!(json["plugin"], "demo");
        assert_eq!(json["message"], ws[0].problem.to_string());
    }

    #[test]
    fn hints_are_found_in_every_kind_of_subschema_but_not_in_data() {
        let ws = output(json!({
            "type": "object",
            "$defs": {"d": {"x-devext-a": 1}},
            "allOf": [{"x-devext-b": 1}],
            "items": {"x-devext-c": 1},
            "if": {"x-devext-d": 1},
            "patternProperties": {"^x": {"x-devext-e": 1}},
            // Data, not schemas: no hint is looked for there.
            "default": {"x-devext-no": 1},
            "examples": [{"x-devext-no": 1}],
            "const": {"x-devext-no": 1},
            // A property may be called x-devext-something: a name, not a hint.
            "properties": {"x-devext-name": {"type": "string"}}
        }));
        let mut pointers: Vec<&str> = ws.iter().map(|w| w.pointer.as_str()).collect();
        pointers.sort();
        assert_eq!(
            pointers,
            [
                "/$defs/d/x-devext-a",
                "/allOf/0/x-devext-b",
                "/if/x-devext-d",
                "/items/x-devext-c",
                "/patternProperties/^x/x-devext-e",
            ]
        );
    }

    #[test]
    fn unit_values_and_types() {
        assert!(output(prop(json!({"type": "integer", "x-devext-unit": "count"}))).is_empty());
        // No declared type: the hint is taken as meant.
        assert!(output(prop(json!({"x-devext-unit": "bytes"}))).is_empty());
        let ws = output(prop(
            json!({"type": "integer", "x-devext-unit": "furlongs"}),
        ));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-unit is \"furlongs\"; expected \"bytes\", \"seconds\", \"count\" or \"percent\""
        );
        assert_eq!(ws[0].pointer, "/properties/p/x-devext-unit");
        let ws = output(prop(json!({"type": "integer", "x-devext-unit": 3})));
        assert!(matches!(
            ws[0].problem,
            HintProblem::BadValue { key: UNIT, .. }
        ));
        let ws = output(prop(json!({"type": "string", "x-devext-unit": "bytes"})));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-unit applies to number and integer properties"
        );
    }

    #[test]
    fn badge_is_true_on_a_string_of_a_view_output() {
        assert!(output(prop(json!({"type": "string", "x-devext-badge": true}))).is_empty());
        let ws = output(prop(json!({"type": "string", "x-devext-badge": "yes"})));
        assert!(
            matches!(ws[0].problem, HintProblem::BadValue { key: BADGE, .. }),
            "{ws:?}"
        );
        let ws = output(prop(json!({"type": "integer", "x-devext-badge": true})));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-badge applies to string properties"
        );
        let ws = input(prop(json!({"type": "string", "x-devext-badge": true})));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-badge applies to string properties of a view's output"
        );
        // An action's output is shown too, but badges are for views' status fields.
        let ws = check(
            json!({}),
            json!({}),
            prop(json!({"type": "string", "x-devext-badge": true})),
            false,
        );
        assert_eq!(ws.len(), 1);
    }

    #[test]
    fn widget_values_and_places() {
        let ws = input(prop(json!({"type": "string", "x-devext-widget": "slider"})));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-widget is \"slider\"; expected \"textarea\" or \"password\""
        );
        let ws = input(prop(
            json!({"type": "integer", "x-devext-widget": "textarea"}),
        ));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-widget applies to string properties"
        );
        let ws = output(prop(
            json!({"type": "string", "x-devext-widget": "textarea"}),
        ));
        assert!(matches!(
            ws[0].problem,
            HintProblem::Misplaced { key: WIDGET, .. }
        ));
        // Configurations are forms too.
        let org = prop(json!({"type": "string", "x-devext-widget": "password"}));
        assert!(check(org, json!({}), json!({}), true).is_empty());
    }

    #[test]
    fn default_needs_a_date_and_a_known_word() {
        let date =
            |d: Value| prop(json!({"type": "string", "format": "date", "x-devext-default": d}));
        assert!(input(date(json!("today"))).is_empty());
        assert!(input(date(json!("cycle-start"))).is_empty());
        let ws = input(date(json!("yesterday")));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-default is \"yesterday\"; expected \"today\" or \"cycle-start\""
        );
        let ws = input(prop(json!({"type": "string", "x-devext-default": "today"})));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-default applies to string properties with format date"
        );
        let ws = output(date(json!("today")));
        assert!(matches!(
            ws[0].problem,
            HintProblem::Misplaced { key: DEFAULT, .. }
        ));
    }

    #[test]
    fn audit_is_for_top_level_input_properties() {
        assert!(input(prop(json!({"type": "string", "x-devext-audit": "omit"}))).is_empty());
        let ws = input(prop(json!({"type": "string", "x-devext-audit": "hash"})));
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-audit is \"hash\"; expected \"length\" or \"omit\""
        );
        let nested =
            prop(json!({"type": "object", "properties": {"q": {"x-devext-audit": "omit"}}}));
        let ws = input(nested);
        assert_eq!(ws[0].pointer, "/properties/p/properties/q/x-devext-audit");
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-audit applies to top-level properties of an operation's input"
        );
        let org = prop(json!({"type": "string", "x-devext-audit": "omit"}));
        assert_eq!(check(org, json!({}), json!({}), true).len(), 1);
    }

    #[test]
    fn chart_is_checked_against_the_output_schema() {
        let good =
            json!({"kind": "line", "series": "/cycles", "x": "cycle_start", "y": ["data_bytes"]});
        assert!(output(chart_output(good.clone())).is_empty());

        // Only at the root of a view's output.
        let ws = check(json!({}), json!({}), chart_output(good.clone()), false);
        assert_eq!(
            messages(&ws),
            [
                "plugin demo: operation op output schema at /x-devext-chart: x-devext-chart applies at the root of a view's output schema"
            ]
        );
        let mut nested = chart_output(json!(null));
        nested.as_object_mut().unwrap().remove("x-devext-chart");
        nested["properties"]["cycles"]["x-devext-chart"] = good;
        let ws = output(nested);
        assert_eq!(ws[0].pointer, "/properties/cycles/x-devext-chart");

        let ws = output(chart_output(json!("bar")));
        assert!(matches!(
            ws[0].problem,
            HintProblem::BadValue { key: CHART, .. }
        ));

        let ws = output(chart_output(json!({
            "kind": "pie", "series": "/cycles", "x": "when", "y": ["label", "nope", 3], "colour": "red"
        })));
        let mut got: Vec<(String, String)> = ws
            .iter()
            .map(|w| (w.pointer.clone(), w.problem.to_string()))
            .collect();
        got.sort();
        let want = [
            (
                "/x-devext-chart/colour",
                "x-devext-chart has an unknown field \"colour\" (known: kind, series, x, y)",
            ),
            (
                "/x-devext-chart/kind",
                "x-devext-chart kind is \"pie\"; expected \"bar\" or \"line\"",
            ),
            (
                "/x-devext-chart/x",
                "x-devext-chart x \"when\" is not a property of the series' items",
            ),
            (
                "/x-devext-chart/y/0",
                "x-devext-chart y \"label\" is not a number or integer property",
            ),
            (
                "/x-devext-chart/y/1",
                "x-devext-chart y \"nope\" is not a property of the series' items",
            ),
            (
                "/x-devext-chart/y/2",
                "x-devext-chart y/2 is 3; expected a property name",
            ),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, want);

        for (series, reason) in [
            (
                json!("/nope"),
                "series \"/nope\" names no property of the output schema",
            ),
            (
                json!("/cycles/items"),
                "series \"/cycles/items\" names no property of the output schema",
            ),
            (
                json!("cycles"),
                "series is \"cycles\"; expected a JSON pointer to an array of the output (\"/cycles\")",
            ),
        ] {
            let ws = output(chart_output(
                json!({"kind": "bar", "series": series, "x": "cycle_start", "y": ["data_bytes"]}),
            ));
            assert_eq!(messages(&ws).len(), 1, "{:?}", messages(&ws));
            assert_eq!(
                ws[0].problem.to_string(),
                format!("x-devext-chart {reason}")
            );
        }
        // An untyped array (only `items`) is taken as an array.
        let mut untyped = chart_output(
            json!({"kind": "bar", "series": "/cycles", "x": "cycle_start", "y": ["data_bytes"]}),
        );
        untyped["properties"]["cycles"]
            .as_object_mut()
            .unwrap()
            .remove("type");
        assert!(output(untyped).is_empty());
        let mut not_array =
            chart_output(json!({"kind": "bar", "series": "/cycles", "x": "a", "y": ["b"]}));
        not_array["properties"]["cycles"]["type"] = json!("object");
        let ws = output(not_array);
        assert_eq!(
            ws[0].problem.to_string(),
            "x-devext-chart series \"/cycles\" is not an array in the output schema"
        );
        let ws = output(chart_output(json!({"kind": "bar", "series": "/cycles"})));
        assert_eq!(ws.len(), 2, "{:?}", messages(&ws));
        let ws = output(chart_output(
            json!({"kind": "bar", "series": "/cycles", "x": "cycle_start", "y": []}),
        ));
        assert!(
            ws[0]
                .problem
                .to_string()
                .contains("expected a non-empty list")
        );
    }

    #[test]
    fn every_schema_of_the_manifest_is_walked() {
        let hint = json!({"type": "object", "x-devext-zzz": 1});
        let m = Manifest::new("demo", "Demo", "1.0.0")
            .org_config_schema(hint.clone())
            .device_config_schema(hint.clone())
            .with_operation(
                Operation::action("act", "Act")
                    .input_schema(hint.clone())
                    .output_schema(hint.clone()),
            )
            .with_warning(DeclaredWarning::new("w", "m", hint));
        let schemas: Vec<String> = check_hints(&m).into_iter().map(|w| w.schema).collect();
        assert_eq!(
            schemas,
            [
                "org config",
                "device config",
                "operation act input",
                "operation act output",
                "warning w"
            ]
        );
    }

    #[test]
    fn output_pointers_follow_properties() {
        let s = json!({"properties": {"a": {"properties": {"b/c": {"type": "array"}}}}});
        assert_eq!(
            resolve_output_pointer(&s, "/a/b~1c").and_then(|o| o.get("type")),
            Some(&json!("array"))
        );
        assert!(resolve_output_pointer(&s, "/a/x").is_none());
        assert!(resolve_output_pointer(&s, "a").is_none());
        assert!(resolve_output_pointer(&s, "").is_some());
    }
}
