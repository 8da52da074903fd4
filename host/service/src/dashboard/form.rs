//! Forms from JSON Schemas (an org config, an operation's input) and back: each top-level
//! property becomes a labelled control chosen from its type, `enum` or `oneOf`+`const`+`title`
//! (a select), `format` (date, uri, email), bounds and lengths, `x-devext-widget`,
//! `x-devext-default`; `description` is its help text; `writeOnly` properties (secrets) are never
//! filled in: the form says whether one is set and offers Replace and Clear. Properties the
//! form cannot show as one control (arrays, objects) are JSON text fields.

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::{Map, Value};

use super::session::Fields;

/// Errors by field name (messages for people).
pub(super) type FieldErrors = BTreeMap<String, Vec<String>>;

/// What to build a form's fields from.
pub(super) struct Spec<'a> {
    /// The object schema.
    pub(super) schema: &'a Value,
    /// Current values (non-secret).
    pub(super) values: &'a Map<String, Value>,
    /// Secret properties that have a stored value.
    pub(super) secrets_set: &'a [String],
    /// Errors to show next to their fields.
    pub(super) errors: &'a FieldErrors,
    /// A prefix making the controls' ids unique on the page.
    pub(super) id: &'a str,
    /// Read-only (a role that may not change it).
    pub(super) disabled: bool,
}

/// The type of a property: its `type` (the first one that is not `null`), else `string` when it
/// has `const` options.
fn prop_type(prop: &Value) -> &str {
    match &prop["type"] {
        Value::String(t) => t,
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ => "string",
    }
}

fn nullable(prop: &Value) -> bool {
    prop["type"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t == "null"))
}

/// The options of a select: `(value, label)` from `oneOf`/`anyOf` of `const` (with `title`) or
/// from `enum`.
pub(super) fn options(prop: &Value) -> Option<Vec<(String, String)>> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = prop[key].as_array()
            && !alts.is_empty()
            && alts.iter().all(|a| a.get("const").is_some())
        {
            return Some(
                alts.iter()
                    .map(|a| {
                        let value = text(&a["const"]);
                        let label = a["title"]
                            .as_str()
                            .map_or_else(|| value.clone(), str::to_owned);
                        (value, label)
                    })
                    .collect(),
            );
        }
    }
    prop["enum"].as_array().map(|vs| {
        vs.iter()
            .filter(|v| !v.is_null())
            .map(|v| (text(v), text(v)))
            .collect()
    })
}

/// Whether the property is secret (`writeOnly`).
pub(super) fn is_secret(prop: &Value) -> bool {
    prop["writeOnly"] == Value::Bool(true)
}

/// The value a `x-devext-default` date hint stands for, today (UTC).
fn date_default(hint: &str) -> Option<String> {
    let today = chrono::Utc::now().date_naive();
    match hint {
        "today" => Some(today.format("%Y-%m-%d").to_string()),
        "cycle-start" => Some(today.format("%Y-%m-01").to_string()),
        _ => None,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The properties of an object schema in the order to show them: the `required` ones in their
/// listed order (JSON objects keep no order here; that list does), then the others by name.
pub(super) fn property_order(schema: &Value) -> Vec<(&str, &Value)> {
    let Some(props) = schema["properties"].as_object() else {
        return Vec::new();
    };
    let mut out: Vec<(&str, &Value)> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|name| props.get_key_value(name).map(|(k, v)| (k.as_str(), v)))
        .collect();
    for (name, prop) in props {
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name, prop));
        }
    }
    out
}

/// The controls of every top-level property of `spec.schema` (see [`property_order`]).
pub(super) fn fields(spec: &Spec<'_>) -> Markup {
    let required: Vec<&str> = spec.schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    html! {
        @for (name, prop) in property_order(spec.schema) {
            @if prop["readOnly"] != Value::Bool(true) {
                (field(spec, name, prop, required.contains(&name)))
            }
        }
    }
}

fn field(spec: &Spec<'_>, name: &str, prop: &Value, required: bool) -> Markup {
    let id = format!("{}-{}", spec.id, slug(name));
    let help_id = format!("{id}-help");
    let title = prop["title"].as_str().unwrap_or(name);
    let description = prop["description"].as_str();
    let errors = spec.errors.get(name);
    let current = spec.values.get(name);
    let default = prop.get("default");
    let shown = current.or(default);
    let kind = prop_type(prop);
    let described = if description.is_some() {
        Some(help_id.clone())
    } else {
        None
    };
    let input_name = format!("f.{name}");
    let invalid = errors.is_some().then_some("true");
    let control = if is_secret(prop) {
        let set = spec.secrets_set.iter().any(|s| s == name);
        html! {
            span.secret-state { @if set { "set" } @else { "not set" } }
            input id=(id) type="password" name=(input_name) autocomplete="new-password"
                placeholder=(if set { "Replace: type a new value" } else { "" })
                aria-describedby=[described.as_deref()] aria-invalid=[invalid]
                disabled[spec.disabled];
            @if set {
                label.inline {
                    input type="checkbox" name=(format!("clear.{name}")) disabled[spec.disabled];
                    " Clear the stored value"
                }
            }
        }
    } else if let Some(options) = options(prop) {
        let selected = shown.map(value_text).unwrap_or_default();
        html! {
            select id=(id) name=(input_name) required[required] disabled[spec.disabled]
                aria-describedby=[described.as_deref()] aria-invalid=[invalid] {
                @if !required || selected.is_empty() {
                    option value="" { "—" }
                }
                @for (value, label) in &options {
                    option value=(value) selected[*value == selected] { (label) }
                }
            }
        }
    } else {
        match kind {
            "boolean" => html! {
                input id=(id) type="checkbox" name=(input_name) value="true"
                    checked[shown == Some(&Value::Bool(true))] disabled[spec.disabled]
                    aria-describedby=[described.as_deref()];
            },
            "integer" | "number" => html! {
                input id=(id) type="number" name=(input_name)
                    value=(shown.map(value_text).unwrap_or_default())
                    min=[prop["minimum"].as_f64()] max=[prop["maximum"].as_f64()]
                    step=(if kind == "integer" { "1" } else { "any" })
                    required[required] disabled[spec.disabled]
                    aria-describedby=[described.as_deref()] aria-invalid=[invalid];
            },
            "array" | "object" => html! {
                textarea.code id=(id) name=(format!("j.{name}")) rows="4" spellcheck="false"
                    disabled[spec.disabled] aria-describedby=[described.as_deref()]
                    aria-invalid=[invalid] {
                    (shown.map(|v| serde_json::to_string_pretty(v).unwrap_or_default()).unwrap_or_default())
                }
            },
            _ => {
                let format = prop["format"].as_str().unwrap_or("");
                let widget = prop["x-devext-widget"].as_str().unwrap_or("");
                let mut text = shown.map(value_text).unwrap_or_default();
                if text.is_empty()
                    && format == "date"
                    && let Some(d) = prop["x-devext-default"].as_str().and_then(date_default)
                {
                    text = d;
                }
                let max = prop["maxLength"].as_u64();
                let min = prop["minLength"].as_u64();
                let input_type = match (widget, format) {
                    ("password", _) => "password",
                    (_, "date") => "date",
                    (_, "uri") => "url",
                    (_, "email") => "email",
                    _ => "text",
                };
                let counter = max.map(|m| (format!("{id}-count"), m));
                html! {
                    @if widget == "textarea" {
                        textarea id=(id) name=(input_name) rows="4" maxlength=[max] minlength=[min]
                            required[required] disabled[spec.disabled] data-counter=[counter.as_ref().map(|c| c.0.as_str())]
                            aria-describedby=[described.as_deref()] aria-invalid=[invalid] { (text) }
                    } @else {
                        input id=(id) type=(input_type) name=(input_name) value=(text)
                            maxlength=[max] minlength=[min] pattern=[prop["pattern"].as_str().filter(|_| input_type == "text")]
                            required[required && !nullable(prop)] disabled[spec.disabled]
                            data-counter=[counter.as_ref().map(|c| c.0.as_str())]
                            aria-describedby=[described.as_deref()] aria-invalid=[invalid];
                    }
                    @if let Some((counter_id, m)) = &counter {
                        small.counter id=(counter_id) aria-live="polite" {
                            (text.chars().count()) " / " (m) " characters"
                        }
                    }
                }
            }
        }
    };
    html! {
        div class=(if errors.is_some() { "field has-error" } else { "field" }) {
            @if kind == "boolean" && !is_secret(prop) && options(prop).is_none() {
                label.inline for=(id) { (control) " " (title) }
            } @else {
                label for=(id) {
                    (title)
                    @if required { abbr.req title="required" { "*" } }
                }
                (control)
            }
            @if let Some(d) = description { small.help id=(help_id) { (d) } }
            @if let Some(errors) = errors {
                @for e in errors { p.field-error role="alert" { (e) } }
            }
        }
    }
}

/// An id fragment from a property name (letters, digits, `-`).
pub(super) fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The JSON object a posted form stands for under `schema`: `f.<name>` controls typed by the
/// schema (empty ones left out, unchecked booleans false), `j.<name>` JSON fields; a secret
/// typed in replaces, `clear.<name>` sets it to `null` (cleared), untouched it is left out (kept).
/// A value that cannot be read (a number that is not one, JSON that is not) is an error at its
/// field.
pub(super) fn read(schema: &Value, fields: &Fields) -> Result<Map<String, Value>, FieldErrors> {
    let mut out = Map::new();
    let mut errors = FieldErrors::new();
    let Some(props) = schema["properties"].as_object() else {
        return Ok(out);
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        if prop["readOnly"] == Value::Bool(true) {
            continue;
        }
        let raw = fields.get(&format!("f.{name}"));
        if is_secret(prop) {
            if fields.checked(&format!("clear.{name}")) {
                out.insert(name.clone(), Value::Null);
            } else if let Some(v) = raw.filter(|v| !v.is_empty()) {
                out.insert(name.clone(), Value::String(v.to_owned()));
            }
            continue;
        }
        let kind = prop_type(prop);
        if kind == "boolean" && options(prop).is_none() {
            out.insert(name.clone(), Value::Bool(raw.is_some()));
            continue;
        }
        if let Some(json) = fields.get(&format!("j.{name}")) {
            if json.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(json) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(e) => {
                    errors
                        .entry(name.clone())
                        .or_default()
                        .push(format!("not JSON: {e}"));
                }
            }
            continue;
        }
        let Some(raw) = raw else { continue };
        if raw.is_empty() {
            // An empty required text is sent as such, so that the schema names what is wrong;
            // an empty optional control is left out.
            if required.contains(&name.as_str()) && kind == "string" {
                out.insert(name.clone(), Value::String(String::new()));
            }
            continue;
        }
        let value = match kind {
            "integer" => raw
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| "a whole number"),
            "number" => raw
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or("a number"),
            _ => Ok(Value::String(raw.to_owned())),
        };
        match value {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(what) => {
                errors
                    .entry(name.clone())
                    .or_default()
                    .push(format!("{raw:?} is not {what}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Sorts an error's violations (`details.violations[]`, pointers under `prefix`) into errors by
/// top-level field and form-wide messages (pointers at the root or to unknown fields).
pub(super) fn violations_by_field(
    details: &Value,
    prefix: &str,
    schema: &Value,
) -> (FieldErrors, Vec<String>) {
    let mut by_field = FieldErrors::new();
    let mut general = Vec::new();
    for v in details["violations"].as_array().into_iter().flatten() {
        let pointer = v["pointer"].as_str().unwrap_or("");
        let message = v["message"].as_str().unwrap_or("invalid").to_owned();
        let rest = pointer.strip_prefix(prefix).unwrap_or(pointer);
        let field = rest
            .strip_prefix('/')
            .and_then(|r| r.split('/').next())
            .map(|f| f.replace("~1", "/").replace("~0", "~"));
        match field {
            Some(f) if schema["properties"].get(&f).is_some() => {
                by_field.entry(f).or_default().push(message);
            }
            _ => {
                // A missing required property is reported at its object: name it if we can.
                let named = schema["properties"].as_object().and_then(|props| {
                    props
                        .keys()
                        .find(|k| message.contains(&format!("\"{k}\"")))
                        .cloned()
                });
                match named {
                    Some(f) if v["keyword"] == "required" => {
                        by_field.entry(f).or_default().push(message)
                    }
                    _ => general.push(if pointer.is_empty() {
                        message
                    } else {
                        format!("{pointer}: {message}")
                    }),
                }
            }
        }
    }
    (by_field, general)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "api": {"type": "string", "oneOf": [{"const": "soap", "title": "SOAP"}, {"const": "rest", "title": "REST"}]},
                "name": {"type": "string", "title": "Name <b>", "maxLength": 20, "description": "the \"name\""},
                "count": {"type": "integer", "minimum": 1},
                "on": {"type": "boolean"},
                "token": {"type": "string", "writeOnly": true},
                "tags": {"type": "array"}
            },
            "required": ["name"]
        })
    }

    #[test]
    fn a_form_has_a_labelled_control_per_property_and_never_a_secret() {
        let values = json!({"api": "rest", "name": "x", "token": "hunter2"});
        let errors = FieldErrors::from([("count".to_owned(), vec!["too <small>".to_owned()])]);
        let html = fields(&Spec {
            schema: &schema(),
            values: values.as_object().unwrap(),
            secrets_set: &["token".to_owned()],
            errors: &errors,
            id: "p",
            disabled: false,
        })
        .into_string();
        assert!(
            html.contains(r#"<option value="rest" selected>REST</option>"#),
            "{html}"
        );
        assert!(html.contains("Name &lt;b&gt;"), "escaped title: {html}");
        assert!(html.contains(r#"maxlength="20""#));
        assert!(html.contains(r#"type="number""#) && html.contains(r#"min="1""#));
        assert!(html.contains("too &lt;small&gt;"));
        assert!(html.contains(r#"<label for="p-name">"#));
        assert!(!html.contains("hunter2"), "a secret is never sent: {html}");
        assert!(html.contains("clear.token"));
    }

    #[test]
    fn a_posted_form_reads_back_as_the_schema_types_it() {
        let posted = Fields(vec![
            ("f.api".into(), "soap".into()),
            ("f.name".into(), "n".into()),
            ("f.count".into(), "3".into()),
            ("f.token".into(), "".into()),
            ("j.tags".into(), "[1]".into()),
        ]);
        let got = read(&schema(), &posted).unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"api": "soap", "name": "n", "count": 3, "on": false, "tags": [1]})
        );
        let cleared = Fields(vec![("clear.token".into(), "on".into())]);
        assert_eq!(read(&schema(), &cleared).unwrap()["token"], Value::Null);
        let bad = Fields(vec![("f.count".into(), "three".into())]);
        assert!(read(&schema(), &bad).unwrap_err().contains_key("count"));
    }

    #[test]
    fn violations_land_at_their_fields() {
        let details = json!({"violations": [
            {"pointer": "/config/count", "keyword": "minimum", "message": "0 is less than 1"},
            {"pointer": "/config", "keyword": "required", "message": "\"name\" is a required property"},
            {"pointer": "/config", "keyword": "x", "message": "something else"}
        ]});
        let (by_field, general) = violations_by_field(&details, "/config", &schema());
        assert_eq!(by_field["count"], ["0 is less than 1"]);
        assert_eq!(by_field["name"], ["\"name\" is a required property"]);
        assert_eq!(general, ["/config: something else"]);
    }
}
