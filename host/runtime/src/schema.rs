//! JSON Schema compilation and the host's validation errors.
//!
//! Every schema a plugin declares is compiled once, when the plugin is loaded, with formats
//! asserted (draft 2020-12 only annotates them by default) and the host's own formats (`luhn`).

use std::fmt;

use jsonschema::{Draft, Validator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One reason an instance does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer of the offending value in the validated document (`""` is the root).
    pub pointer: String,
    /// The schema keyword that failed (`required`, `type`, `pattern`, ...).
    pub keyword: String,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{pointer}: {} ({})", self.message, self.keyword)
    }
}

/// Why a schema does not compile (`Display` is the compiler's message).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SchemaError(jsonschema::ValidationError<'static>);

/// A compiled schema, shared by every validation that uses it.
pub struct Schema {
    validator: Validator,
    /// The schema as written, to word some messages from it (a `oneOf` of constants).
    source: Value,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Schema")
    }
}

impl Schema {
    /// Compiles `schema` (draft 2020-12 unless it says otherwise), asserting formats.
    pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .with_format("luhn", is_luhn)
            .build(schema)
            .map_err(SchemaError)?;
        Ok(Schema {
            validator,
            source: schema.clone(),
        })
    }

    /// Whether `instance` is valid (the fast path: no error is built).
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }

    /// Every violation, with pointers relative to `prefix` (a JSON pointer, `""` for none).
    pub fn violations(&self, instance: &Value, prefix: &str) -> Vec<Violation> {
        self.validator
            .iter_errors(instance)
            .map(|e| {
                let pointer = format!("{prefix}{}", e.instance_path().as_str());
                self.violation(&e, pointer, None)
            })
            .collect()
    }

    /// Every violation, each with the property names an `additionalProperties` or
    /// `unevaluatedProperties` violation refuses (empty for other keywords).
    ///
    /// `echo` gives, for the JSON pointer of a violation (`prefix` included), the text to show
    /// for the offending instance in its message instead of serde_json's rendering of the parsed
    /// value (which turns an integer beyond 64 bits into a float): the instance as written in
    /// the document. `None` keeps the rendering. Which violations there are, and the rest of
    /// each message, do not depend on it.
    #[cfg(feature = "bulk-validate")]
    pub(crate) fn violations_with_unexpected<'t>(
        &self,
        instance: &Value,
        prefix: &str,
        echo: &dyn Fn(&str) -> Option<std::borrow::Cow<'t, str>>,
    ) -> Vec<(Violation, Vec<String>)> {
        use jsonschema::error::ValidationErrorKind as K;
        self.validator
            .iter_errors(instance)
            .map(|e| {
                let unexpected = match e.kind() {
                    K::AdditionalProperties { unexpected }
                    | K::UnevaluatedProperties { unexpected } => unexpected.clone(),
                    _ => Vec::new(),
                };
                let path = e.instance_path().as_str();
                let mut pointer = String::with_capacity(prefix.len() + path.len());
                pointer.push_str(prefix);
                pointer.push_str(path);
                // The masked message is the message with the instance replaced by the
                // placeholder, except for these two, which the mask words differently (a count
                // instead of the items).
                let echoes = !matches!(
                    e.kind(),
                    K::AdditionalItems { .. } | K::UnevaluatedItems { .. }
                );
                let written = if echoes { echo(&pointer) } else { None };
                (self.violation(&e, pointer, written.as_deref()), unexpected)
            })
            .collect()
    }

    /// `Ok` or every violation.
    pub fn check(&self, instance: &Value, prefix: &str) -> Result<(), Vec<Violation>> {
        if self.is_valid(instance) {
            Ok(())
        } else {
            Err(self.violations(instance, prefix))
        }
    }
}

impl Schema {
    /// `e` as a violation at `pointer` (the prefix and the error's instance path); `written` is
    /// the offending instance as the document writes it, to show instead of serde_json's
    /// rendering of the parsed value.
    fn violation(
        &self,
        e: &jsonschema::ValidationError<'_>,
        pointer: String,
        written: Option<&str>,
    ) -> Violation {
        use std::fmt::Write as _;
        let shown = || written.map_or_else(|| e.instance().to_string(), str::to_owned);
        let message = match self.one_of_constants(e) {
            // "not valid under any of the schemas listed in the 'oneOf' keyword" says nothing
            // to a person when each choice is one value: name them.
            Some(allowed) => format!("{} is not one of {allowed}", shown()),
            None => {
                // Sized once: messages are short, but `to_string` would grow them in steps.
                let mut message = String::with_capacity(128);
                let _ = match written {
                    Some(text) => write!(message, "{}", e.masked_with(text)),
                    None => write!(message, "{e}"),
                };
                message
            }
        };
        Violation {
            pointer,
            keyword: e.kind().keyword().to_owned(),
            message,
        }
    }

    /// For a failed `oneOf` whose every choice is a `{"const": ...}` (with a title, say): the
    /// constants, as JSON, comma-separated.
    fn one_of_constants(&self, e: &jsonschema::ValidationError<'_>) -> Option<String> {
        if !matches!(
            e.kind(),
            jsonschema::error::ValidationErrorKind::OneOfNotValid { .. }
        ) {
            return None;
        }
        // The keyword's place in the schema as written (`$ref`s not followed: a `oneOf` reached
        // through one is not found here and keeps the general message).
        let choices = self.source.pointer(e.schema_path().as_str())?.as_array()?;
        let constants: Option<Vec<String>> = choices
            .iter()
            .map(|c| c.get("const").map(Value::to_string))
            .collect();
        constants.filter(|c| !c.is_empty()).map(|c| c.join(", "))
    }
}

/// Checks `schema` against the draft 2020-12 meta-schema; returns every error.
pub fn meta_check(schema: &Value) -> Vec<Violation> {
    let meta = jsonschema::draft202012::meta::validator();
    meta.iter_errors(schema)
        .map(|e| Violation {
            pointer: e.instance_path().as_str().to_owned(),
            keyword: e.kind().keyword().to_owned(),
            message: e.to_string(),
        })
        .collect()
}

/// The secrets of an org-config schema: its top-level properties marked `"writeOnly": true`.
/// The host never lets an account key derive from them; the service encrypts them at rest and
/// never returns them.
pub fn secret_properties(schema: &Value) -> Vec<&str> {
    schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| p["writeOnly"] == Value::Bool(true))
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Escapes one JSON-pointer reference token (RFC 6901).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The `luhn` format: ASCII digits whose last one is a valid Luhn check digit.
pub fn is_luhn(s: &str) -> bool {
    if s.len() < 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = s
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_one_of_of_constants_names_the_allowed_values() {
        let schema = Schema::compile(&json!({
            "type": "object",
            "properties": {
                "status": {"oneOf": [
                    {"const": "activated", "title": "Activated"},
                    {"const": "deactivated", "title": "Deactivated"}
                ]},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            }
        }))
        .unwrap();
        let v = schema.violations(&json!({"status": "suspended"}), "/acme");
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].pointer, "/acme/status");
        assert_eq!(v[0].keyword, "oneOf");
        assert_eq!(
            v[0].message,
            r#""suspended" is not one of "activated", "deactivated""#
        );
        // Choices that are not single values keep the general message.
        let v = schema.violations(&json!({"either": true}), "");
        assert!(v[0].message.contains("'oneOf'"), "{v:?}");
    }

    #[test]
    fn luhn_accepts_valid_check_digits_only() {
        assert!(is_luhn("79927398713"));
        assert!(!is_luhn("79927398710"));
        // A 19-digit number stored without its check digit fails.
        assert!(!is_luhn("8988216716970004975"));
        assert!(!is_luhn("12a4"));
        assert!(!is_luhn(""));
    }

    #[test]
    fn formats_are_asserted() {
        let s = Schema::compile(&json!({"type": "string", "format": "date"})).unwrap();
        assert!(s.is_valid(&json!("2024-02-29")));
        let v = s.violations(&json!("2023-02-29"), "/d");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].pointer, "/d");
        assert_eq!(v[0].keyword, "format");
    }

    #[cfg(feature = "bulk-validate")]
    #[test]
    fn refused_properties_are_named_by_the_validator() {
        let s = Schema::compile(&json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "additionalProperties": false
        }))
        .unwrap();
        let found =
            s.violations_with_unexpected(&json!({"a": "x", "b": 1, "c'd": 2}), "/p", &|_| None);
        assert_eq!(found.len(), 2, "{found:?}");
        let (type_error, none) = found.iter().find(|(v, _)| v.keyword == "type").unwrap();
        assert_eq!(type_error.pointer, "/p/a");
        assert!(none.is_empty());
        let (_, names) = found
            .iter()
            .find(|(v, _)| v.keyword == "additionalProperties")
            .unwrap();
        assert_eq!(names, &["b".to_owned(), "c'd".to_owned()]);
    }

    #[cfg(feature = "bulk-validate")]
    #[test]
    fn echoed_instances_replace_the_rendering_only() {
        let s = Schema::compile(&json!({
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "pair": {"type": "array", "prefixItems": [{}], "unevaluatedItems": false}
            }
        }))
        .unwrap();
        // serde_json has turned the integer into a float.
        let doc: Value =
            serde_json::from_str(r#"{"id": 89460715903439706236, "pair": [1, 2]}"#).unwrap();
        let plain = s.violations_with_unexpected(&doc, "/p", &|_| None);
        assert_eq!(plain.len(), 2, "{plain:?}");
        let echoed = s.violations_with_unexpected(&doc, "/p", &|pointer| {
            Some(format!("<{pointer} as written>").into())
        });
        let message = |found: &[(Violation, Vec<String>)], keyword: &str| {
            let (v, _) = found
                .iter()
                .find(|(v, _)| v.keyword == keyword)
                .expect(keyword);
            v.message.clone()
        };
        assert_eq!(
            message(&plain, "type"),
            r#"8.94607159034397e+19 is not of type "string""#
        );
        assert_eq!(
            message(&echoed, "type"),
            r#"</p/id as written> is not of type "string""#
        );
        // An unevaluated items message names the items, not the instance: left as it is.
        let items = |found: &[(Violation, Vec<String>)]| {
            let (v, _) = found.iter().find(|(v, _)| v.pointer == "/p/pair").unwrap();
            v.message.clone()
        };
        assert_eq!(
            items(&plain),
            "Unevaluated items are not allowed ('2' was unexpected)"
        );
        assert_eq!(items(&echoed), items(&plain));
        assert_eq!(plain.len(), echoed.len());
    }

    #[test]
    fn meta_check_reports_every_error() {
        let errors = meta_check(&json!({
            "type": "objekt",
            "properties": {"a": {"minLength": -1}}
        }));
        assert!(errors.len() >= 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.pointer == "/type"));
        assert!(
            errors
                .iter()
                .any(|e| e.pointer == "/properties/a/minLength")
        );
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }
}
