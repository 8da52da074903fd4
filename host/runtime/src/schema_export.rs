//! The loaded plugins' schemas as files, for editors and other validators: export, drift check
//! against committed copies, and breaking changes between two versions of a schema.
//!
//! The files are `<plugin>.org-config.schema.json`, `<plugin>.device-config.schema.json`,
//! `<plugin>.op.<operation>.input.schema.json`, `<plugin>.op.<operation>.output.schema.json`
//! and `device-extensions.schema.json` (every plugin's device schema under its name, from
//! [`Runtime::combined_device_schema`]). Each has a `urn:devext:...` `$id`; the output depends
//! only on the plugins, so committed copies can be checked for drift.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::Runtime;
use crate::schema::pointer_token;

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";
/// The `$id` prefix of every exported file (how stale exported files are recognised).
const ID_PREFIX: &str = "urn:devext:";
/// The name of the combined schema.
pub const COMBINED: &str = "device-extensions.schema.json";

/// The exported files of `runtime`'s plugins: file name → contents (pretty JSON and a newline).
pub fn export(runtime: &Runtime) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut add = |name: String, schema: &Value, id: String| {
        let mut schema = schema.clone();
        if let Some(obj) = schema.as_object_mut() {
            obj.entry("$schema")
                .or_insert_with(|| Value::String(DRAFT.to_owned()));
            obj.insert("$id".to_owned(), Value::String(id));
        }
        files.insert(name, pretty(&schema));
    };
    for name in runtime.plugin_names() {
        let Some(plugin) = runtime.plugin(name) else {
            continue;
        };
        let m = plugin.manifest();
        let id = |what: &str| format!("{ID_PREFIX}plugin:{name}:{what}");
        add(
            format!("{name}.org-config.schema.json"),
            &m.org_config_schema,
            id("org-config"),
        );
        add(
            format!("{name}.device-config.schema.json"),
            &m.device_config_schema,
            id("device-config"),
        );
        for op in &m.operations {
            for (what, schema) in [("input", &op.input_schema), ("output", &op.output_schema)] {
                add(
                    format!("{name}.op.{}.{what}.schema.json", op.name),
                    schema,
                    id(&format!("op:{}:{what}", op.name)),
                );
            }
        }
    }
    files.insert(
        COMBINED.to_owned(),
        pretty(&runtime.combined_device_schema()),
    );
    files
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// What [`write`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// Files written (created or changed).
    pub written: Vec<PathBuf>,
    /// Files already up to date.
    pub unchanged: usize,
    /// Exported files of plugins that are gone, removed.
    pub removed: Vec<PathBuf>,
}

/// Writes `files` into `dir` (created if needed) and removes exported files (`$id`
/// `urn:devext:...`) that are no longer produced. Other files are left alone.
pub fn write(dir: &Path, files: &BTreeMap<String, String>) -> io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let mut out = Written::default();
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            out.unchanged += 1;
            continue;
        }
        std::fs::write(&path, text)?;
        out.written.push(path);
    }
    for path in stale(dir, files)? {
        std::fs::remove_file(&path)?;
        out.removed.push(path);
    }
    Ok(out)
}

/// Exported files in `dir` that `files` no longer has, sorted.
fn stale(dir: &Path, files: &BTreeMap<String, String>) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(".json") || files.contains_key(name) {
            continue;
        }
        let exported = std::fs::read(entry.path())
            .ok()
            .and_then(|text| serde_json::from_slice::<Value>(&text).ok())
            .and_then(|v| v.get("$id").and_then(Value::as_str).map(str::to_owned))
            .is_some_and(|id| id.starts_with(ID_PREFIX));
        if exported {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// How a committed file differs from the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// The export has it, the directory does not.
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The contents differ, first at `line`.
    Differs {
        /// The file.
        path: PathBuf,
        /// The first line (1-based) that differs.
        line: usize,
    },
    /// An exported file of a plugin (or operation) that no longer exists.
    Stale {
        /// The file.
        path: PathBuf,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Missing { path } => write!(f, "{}: missing", path.display()),
            Drift::Differs { path, line } => write!(
                f,
                "{}:{line}: differs from the plugins' schema",
                path.display()
            ),
            Drift::Stale { path } => write!(
                f,
                "{}: no longer exported (its plugin or operation is gone)",
                path.display()
            ),
        }
    }
}

/// Compares `dir` with `files`; an empty list means up to date.
pub fn check(dir: &Path, files: &BTreeMap<String, String>) -> io::Result<Vec<Drift>> {
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mut out = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(old) if old == *text => {}
            Ok(old) => {
                let line = old
                    .lines()
                    .zip(text.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| old.lines().count().min(text.lines().count()))
                    + 1;
                out.push(Drift::Differs { path, line });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => out.push(Drift::Missing { path }),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    out.extend(
        stale(dir, files)?
            .into_iter()
            .map(|path| Drift::Stale { path }),
    );
    Ok(out)
}

/// A change from an old to a new version of a schema that can invalidate documents the old one
/// accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breaking {
    /// JSON pointer of the changed subschema in the new schema (`""` is the root).
    pub pointer: String,
    /// What kind of change: `property_removed`, `newly_required`, `type_narrowed`,
    /// `enum_narrowed`, `const_changed`, `pattern_changed`, `format_changed`,
    /// `additional_properties_closed`, `limit_tightened`, `schema_false`.
    pub kind: &'static str,
    /// What changed, for people.
    pub message: String,
}

impl std::fmt::Display for Breaking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{p}: {} ({})", self.message, self.kind)
    }
}

/// The breaking changes from `old` to `new` (two versions of one schema), in schema order.
///
/// Structural: subschemas are compared at the same place (properties by name, `items`,
/// `prefixItems`, `allOf`/`anyOf`/`oneOf` by index when both have as many, `$defs` by name).
/// A local `$ref` (`#...`) that differs between the versions, or replaces an inline schema (or
/// the reverse), is followed and its target compared at the referring place, once per pair of
/// references; equal references are not, their targets being compared where they stand.
/// Loosening (a property added, a requirement dropped, a type widened) is never reported.
pub fn diff(old: &Value, new: &Value) -> Vec<Breaking> {
    let mut cx = Cx {
        old_root: old,
        new_root: new,
        followed: std::collections::HashSet::new(),
        out: Vec::new(),
    };
    compare(old, new, "", &mut cx);
    cx.out
}

/// What [`compare`] carries down.
struct Cx<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// Pairs of references (old, new; "" for an inline schema) already followed.
    followed: std::collections::HashSet<(String, String)>,
    out: Vec<Breaking>,
}

/// The local `$ref` of a schema and its target in `root`, if it has one that resolves.
fn local_ref<'a>(schema: &'a Value, root: &'a Value) -> Option<(&'a str, &'a Value)> {
    let r = schema.get("$ref")?.as_str()?;
    let target = root.pointer(r.strip_prefix('#')?)?;
    Some((r, target))
}

fn compare(old: &Value, new: &Value, ptr: &str, cx: &mut Cx<'_>) {
    let old_ref = local_ref(old, cx.old_root);
    let new_ref = local_ref(new, cx.new_root);
    if old_ref.map(|r| r.0) != new_ref.map(|r| r.0) {
        let key = (
            old_ref.map_or("", |r| r.0).to_owned(),
            new_ref.map_or("", |r| r.0).to_owned(),
        );
        if cx.followed.insert(key) {
            let (o, n) = (old_ref.map_or(old, |r| r.1), new_ref.map_or(new, |r| r.1));
            compare(o, n, ptr, cx);
        }
    }
    let out = &mut cx.out;
    let mut push = |kind: &'static str, message: String| {
        out.push(Breaking {
            pointer: ptr.to_owned(),
            kind,
            message,
        });
    };
    let empty = Map::new();
    let old_obj = match old {
        Value::Bool(false) => return,
        Value::Object(o) => o,
        _ => &empty,
    };
    let new_obj = match new {
        Value::Bool(false) => {
            push("schema_false", "the schema now rejects everything".into());
            return;
        }
        Value::Object(o) => o,
        _ => return,
    };

    // type
    if let Some(new_types) = types(new_obj) {
        let old_types = types(old_obj).unwrap_or_else(|| {
            ["null", "boolean", "object", "array", "number", "string"]
                .map(str::to_owned)
                .to_vec()
        });
        let allowed = |t: &str| {
            new_types.iter().any(|n| n == t)
                || (t == "integer" && new_types.iter().any(|n| n == "number"))
        };
        let lost: Vec<&String> = old_types.iter().filter(|t| !allowed(t)).collect();
        if !lost.is_empty() {
            push(
                "type_narrowed",
                format!(
                    "type narrowed from {} to {} ({} no longer accepted)",
                    list(&old_types),
                    list(&new_types),
                    list(&lost)
                ),
            );
        }
    }

    // enum and const
    if let Some(new_enum) = new_obj.get("enum").and_then(Value::as_array) {
        match old_obj.get("enum").and_then(Value::as_array) {
            None => push(
                "enum_narrowed",
                format!(
                    "now limited to the values {}",
                    Value::Array(new_enum.clone())
                ),
            ),
            Some(old_enum) => {
                let removed: Vec<&Value> =
                    old_enum.iter().filter(|v| !new_enum.contains(v)).collect();
                if !removed.is_empty() {
                    push(
                        "enum_narrowed",
                        format!(
                            "enum narrowed: {} no longer accepted",
                            removed
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }
    }
    if let Some(c) = new_obj.get("const") {
        let same = old_obj.get("const") == Some(c)
            || old_obj
                .get("enum")
                .and_then(Value::as_array)
                .is_some_and(|e| e.iter().all(|v| v == c));
        if !same {
            push("const_changed", format!("now only {c} is accepted"));
        }
    }

    // string constraints
    for (keyword, kind) in [("pattern", "pattern_changed"), ("format", "format_changed")] {
        if let Some(n) = new_obj.get(keyword)
            && old_obj.get(keyword) != Some(n)
        {
            let message = match old_obj.get(keyword) {
                Some(o) => format!("{keyword} changed from {o} to {n}"),
                None => format!("{keyword} {n} added"),
            };
            push(kind, message);
        }
    }

    // numeric and size limits
    for (keyword, lower) in [
        ("minimum", true),
        ("exclusiveMinimum", true),
        ("minLength", true),
        ("minItems", true),
        ("minProperties", true),
        ("maximum", false),
        ("exclusiveMaximum", false),
        ("maxLength", false),
        ("maxItems", false),
        ("maxProperties", false),
    ] {
        let Some(n) = new_obj.get(keyword).and_then(Value::as_f64) else {
            continue;
        };
        let tightened = match old_obj.get(keyword).and_then(Value::as_f64) {
            None => true,
            Some(o) if lower => n > o,
            Some(o) => n < o,
        };
        if tightened {
            let message = match old_obj.get(keyword) {
                Some(o) => format!("{keyword} tightened from {o} to {}", new_obj[keyword]),
                None => format!("{keyword} {} added", new_obj[keyword]),
            };
            push("limit_tightened", message);
        }
    }

    // required
    let names = |o: &Map<String, Value>, k: &str| -> Vec<String> {
        o.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let old_required = names(old_obj, "required");
    for r in names(new_obj, "required") {
        if !old_required.contains(&r) {
            push("newly_required", format!("property {r:?} is now required"));
        }
    }

    // properties
    let props = |o: &Map<String, Value>| o.get("properties").and_then(Value::as_object).cloned();
    let old_props = props(old_obj).unwrap_or_default();
    let new_props = props(new_obj).unwrap_or_default();
    for name in old_props.keys() {
        if !new_props.contains_key(name) {
            push("property_removed", format!("property {name:?} removed"));
        }
    }

    // additionalProperties / unevaluatedProperties closed
    for keyword in ["additionalProperties", "unevaluatedProperties"] {
        if new_obj.get(keyword) == Some(&Value::Bool(false))
            && old_obj.get(keyword) != Some(&Value::Bool(false))
        {
            push(
                "additional_properties_closed",
                format!(
                    "{keyword} closed: only {} allowed now",
                    if new_props.is_empty() {
                        "no properties".to_owned()
                    } else {
                        new_props.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            );
        }
    }

    // subschemas
    for (name, o) in &old_props {
        if let Some(n) = new_props.get(name) {
            compare(
                o,
                n,
                &format!("{ptr}/properties/{}", pointer_token(name)),
                cx,
            );
        }
    }
    for keyword in ["items", "additionalProperties", "unevaluatedProperties"] {
        if let (Some(o @ Value::Object(_)), Some(n)) = (old_obj.get(keyword), new_obj.get(keyword))
        {
            compare(o, n, &format!("{ptr}/{keyword}"), cx);
        }
    }
    for keyword in ["prefixItems", "allOf", "anyOf", "oneOf"] {
        if let (Some(o), Some(n)) = (
            old_obj.get(keyword).and_then(Value::as_array),
            new_obj.get(keyword).and_then(Value::as_array),
        ) && (o.len() == n.len() || keyword == "prefixItems")
        {
            for (i, (o, n)) in o.iter().zip(n).enumerate() {
                compare(o, n, &format!("{ptr}/{keyword}/{i}"), cx);
            }
        }
    }
    for keyword in ["$defs", "definitions"] {
        if let (Some(o), Some(n)) = (
            old_obj.get(keyword).and_then(Value::as_object),
            new_obj.get(keyword).and_then(Value::as_object),
        ) {
            for (name, o) in o {
                if let Some(n) = n.get(name) {
                    compare(
                        o,
                        n,
                        &format!("{ptr}/{keyword}/{}", pointer_token(name)),
                        cx,
                    );
                }
            }
        }
    }
}

fn types(o: &Map<String, Value>) -> Option<Vec<String>> {
    match o.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

fn list<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(old: Value, new: Value) -> Vec<(String, &'static str)> {
        diff(&old, &new)
            .into_iter()
            .map(|b| (b.pointer, b.kind))
            .collect()
    }

    #[test]
    fn references_that_change_are_followed() {
        let defs = json!({
            "loose": {"type": "string"},
            "strict": {"type": "string", "maxLength": 5},
            "number": {"type": "integer"}
        });
        // Pointing at a stricter definition.
        let old = json!({"$defs": defs, "properties": {"a": {"$ref": "#/$defs/loose"}}});
        let new = json!({"$defs": defs, "properties": {"a": {"$ref": "#/$defs/strict"}}});
        assert_eq!(
            kinds(old.clone(), new.clone()),
            [("/properties/a".to_owned(), "limit_tightened")]
        );
        // The other way round loosens.
        assert_eq!(kinds(new, old), []);
        // An inline schema replaced by a reference to a narrower one.
        let old = json!({"$defs": defs, "properties": {"a": {"type": "string"}}});
        let new = json!({"$defs": defs, "properties": {"a": {"$ref": "#/$defs/number"}}});
        assert_eq!(
            kinds(old, new),
            [("/properties/a".to_owned(), "type_narrowed")]
        );
        // Equal references are compared where their target stands, once.
        let old =
            json!({"$defs": {"d": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/d"}}});
        let new = json!({"$defs": {"d": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/d"}}});
        assert_eq!(kinds(old, new), [("/$defs/d".to_owned(), "type_narrowed")]);
    }

    #[test]
    fn recursive_references_end() {
        let old = json!({"type": "object", "properties": {"child": {"$ref": "#"}}});
        let new = json!({
            "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}, "required": ["child"]}},
            "$ref": "#/$defs/node"
        });
        let found = kinds(old, new);
        assert!(
            found.contains(&("".to_owned(), "newly_required")),
            "{found:?}"
        );
    }

    #[test]
    fn loosening_is_not_breaking() {
        let old = json!({
            "type": "object",
            "properties": {"a": {"type": "integer", "enum": [1, 2], "maxLength": 3}},
            "required": ["a"],
            "additionalProperties": false
        });
        let new = json!({
            "type": ["object", "null"],
            "properties": {"a": {"type": "number", "enum": [1, 2, 3], "maxLength": 9}, "b": {}},
            "additionalProperties": true
        });
        assert_eq!(kinds(old.clone(), new), []);
        assert_eq!(kinds(old.clone(), old), []);
    }

    #[test]
    fn each_breaking_kind_is_found_where_it_happens() {
        let old = json!({
            "type": "object",
            "properties": {
                "gone": {"type": "string"},
                "t": {"type": ["string", "integer"]},
                "e": {"enum": ["a", "b"]},
                "p": {"type": "string", "pattern": "^a"},
                "n": {"type": "integer", "minimum": 0},
                "o": {"type": "object", "properties": {"x": {}}},
                "arr": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["t"]
        });
        let new = json!({
            "type": "object",
            "properties": {
                "t": {"type": "string"},
                "e": {"enum": ["a"]},
                "p": {"type": "string", "pattern": "^b"},
                "n": {"type": "integer", "minimum": 1},
                "o": {"type": "object", "properties": {"x": {}}, "additionalProperties": false},
                "arr": {"type": "array", "items": {"type": "string", "format": "email"}}
            },
            "required": ["t", "e"]
        });
        assert_eq!(
            kinds(old, new),
            [
                ("".to_owned(), "newly_required"),
                ("".to_owned(), "property_removed"),
                ("/properties/arr/items".to_owned(), "format_changed"),
                ("/properties/e".to_owned(), "enum_narrowed"),
                ("/properties/n".to_owned(), "limit_tightened"),
                ("/properties/o".to_owned(), "additional_properties_closed"),
                ("/properties/p".to_owned(), "pattern_changed"),
                ("/properties/t".to_owned(), "type_narrowed"),
            ]
        );
    }

    #[test]
    fn messages_name_what_changed() {
        let d = diff(
            &json!({"properties": {"serial": {"pattern": "^[0-9]{19,20}$"}}}),
            &json!({"properties": {"serial": {"pattern": "^[0-9]{20}$"}}}),
        );
        assert_eq!(
            d[0].to_string(),
            r#"/properties/serial: pattern changed from "^[0-9]{19,20}$" to "^[0-9]{20}$" (pattern_changed)"#
        );
        let d = diff(&json!({"type": "string"}), &json!(false));
        assert_eq!(d[0].kind, "schema_false");
        let d = diff(&json!({}), &json!({"const": 1}));
        assert_eq!(d[0].kind, "const_changed");
        let d = diff(
            &json!({"properties": {"a": {}}}),
            &json!({"additionalProperties": false}),
        );
        let k: Vec<_> = d.iter().map(|b| b.kind).collect();
        assert_eq!(k, ["property_removed", "additional_properties_closed"]);
    }
}
