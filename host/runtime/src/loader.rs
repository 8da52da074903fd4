//! Finding plugins, loading them through the ABI, and checking their manifests.
//!
//! A file that cannot be used is refused with a one-line reason; the others still load.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use abi_stable::library::{AbiHeaderRef, LibraryError, RawLibrary};
use abi_stable::std_types::RResult;
use devext_plugin_api::abi::PluginModule_Ref;
use devext_plugin_api::plugin::export::ROOT_MODULE_SYMBOL_PREFIX;
use devext_plugin_api::{API_VERSION, Manifest, PROTOCOL_VERSION, PluginError, api_compatible};
use serde::Serialize;
use serde_json::Value;

use crate::schema::{Schema, Violation, meta_check};

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum PluginSource {
    /// Linked into the host binary.
    Static,
    /// Loaded from a shared library.
    File(PathBuf),
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Static => f.write_str("static"),
            PluginSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A file (or static plugin) that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The file, or `static:<name>` for a static plugin.
    pub path: PathBuf,
    /// One line for people.
    pub reason: String,
}

/// An operation's compiled schemas.
pub(crate) struct CompiledOp {
    pub(crate) kind: devext_plugin_api::OpKind,
    pub(crate) scope: devext_plugin_api::OpScope,
    /// For a view that declared `fresh_for_secs`: how long its results may be served again.
    pub(crate) fresh_for: Option<std::time::Duration>,
    pub(crate) input: Schema,
    pub(crate) output: Schema,
    pub(crate) metrics: crate::metrics::OpMetrics,
}

/// The compiled schemas of a plugin.
pub(crate) struct CompiledSchemas {
    pub(crate) org: Schema,
    pub(crate) device: Schema,
    pub(crate) ops: HashMap<String, CompiledOp>,
    pub(crate) warnings: Vec<Schema>,
}

/// A plugin ready for calls: the module, its checked manifest and compiled schemas.
pub struct LoadedPlugin {
    manifest: Manifest,
    source: PluginSource,
    pub(crate) module: PluginModule_Ref,
    pub(crate) schemas: CompiledSchemas,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.manifest.name)
            .field("source", &self.source)
            .finish()
    }
}

impl LoadedPlugin {
    /// The plugin's manifest (checked when it was loaded).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The plugin's name (the key in a device's extension configuration).
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &PluginSource {
        &self.source
    }
}

/// What a refused non-library says: the only plugin format for now.
const LINUX_ONLY: &str = "devext plugins are Linux shared libraries (ELF *.so) for now";

/// Loads and checks the one plugin file at `path`, as `devext plugins check` does.
pub fn load_file(path: &Path) -> Result<LoadedPlugin, String> {
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    open_library(path).and_then(|m| describe(m, PluginSource::File(path.to_owned())))
}

/// Loads the shared library at `path` and returns its root module.
///
/// The library stays loaded for the life of the process (abi_stable never unloads).
pub(crate) fn open_library(path: &Path) -> Result<PluginModule_Ref, String> {
    let raw = RawLibrary::load_at(path).map_err(|e| library_error(&e))?;
    let symbol = root_symbol(path)?;
    let mut with_nul = symbol.into_bytes();
    with_nul.push(0);
    // SAFETY: the symbol was exported by `devext_plugin_api::export_plugin!`, which declares it
    // as a `LibHeader`, the type abi_stable's loader reads it as; abi_stable then checks the
    // header's version and the root module's full type layout before anything is called.
    #[allow(unsafe_code)]
    let header = unsafe {
        raw.get::<AbiHeaderRef>(&with_nul)
            .map(|h| *h)
            .map_err(|e| library_error(&e))?
    };
    let module = header
        .upgrade()
        .and_then(|h| h.init_root_module::<PluginModule_Ref>())
        .map_err(|e| library_error(&e))?;
    // The module's functions point into the library: it must never be unloaded.
    std::mem::forget(raw);
    Ok(module)
}

/// The name of the root-module symbol the library exports (`devext_plugin_root__<crate>`).
fn root_symbol(path: &Path) -> Result<String, String> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(path).map_err(|e| format!("cannot read the library: {e}"))?;
    let file = object::File::parse(&*data)
        .map_err(|e| format!("not a loadable shared library ({e}); {LINUX_ONLY}"))?;
    let mut found: Vec<String> = file
        .dynamic_symbols()
        .filter(|s| s.is_definition())
        .filter_map(|s| s.name().ok())
        .filter(|n| n.starts_with(ROOT_MODULE_SYMBOL_PREFIX))
        .map(str::to_owned)
        .collect();
    found.sort();
    found.dedup();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(
            "no devext root module: this library was not built with devext_plugin_api::export_plugin!"
                .to_owned(),
        ),
        _ => Err(format!(
            "several devext root modules ({}): build one plugin per library",
            found.join(", ")
        )),
    }
}

/// One line (or a few for layout mismatches) out of abi_stable's error.
fn library_error(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { .. } => {
            let text = e.to_string();
            let cause = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned();
            format!("not a loadable shared library ({cause}); {LINUX_ONLY}")
        }
        LibraryError::GetSymbolError { .. } => {
            "no devext root module: this library was not built with devext_plugin_api::export_plugin!"
                .to_owned()
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "built against devext-plugin-api {actual_version}, this host needs a version compatible with {expected_version}"
        ),
        LibraryError::AbiInstability(_) => {
            // abi_stable prints both full layouts (hundreds of lines); keep each
            // "Error:<what>" with its "Expected:"/"Found:" values.
            let text = e.to_string();
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            let mut errors = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                let Some(what) = line.strip_prefix("Error:") else {
                    continue;
                };
                let value_after = |label: &str| {
                    lines[i + 1..]
                        .iter()
                        .take(6)
                        .position(|l| *l == label)
                        .and_then(|j| lines.get(i + 2 + j))
                        .filter(|v| !v.is_empty())
                };
                let mut entry = what.trim().to_owned();
                if let (Some(expected), Some(found)) = (value_after("Expected:"), value_after("Found:")) {
                    entry.push_str(&format!(" (expected {expected}, found {found})"));
                }
                errors.push(entry);
            }
            errors.dedup();
            let more = errors.len().saturating_sub(3);
            errors.truncate(3);
            format!(
                "ABI layout mismatch with this host: {}{}",
                if errors.is_empty() {
                    "incompatible type layout".to_owned()
                } else {
                    errors.join("; ")
                },
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            )
        }
        other => {
            let text = other.to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            format!("cannot use this library: {}", first.trim())
        }
    }
}

/// Asks `module` for its manifest and checks it; compiles every schema.
pub(crate) fn describe(
    module: PluginModule_Ref,
    source: PluginSource,
) -> Result<LoadedPlugin, String> {
    let manifest_fn = module.manifest();
    let json = match manifest_fn() {
        RResult::ROk(json) => json,
        RResult::RErr(e) => {
            let e = PluginError::from_abi(&e);
            return Err(format!(
                "the plugin failed to give its manifest: {}",
                e.message
            ));
        }
    };
    let mut manifest: Manifest = serde_json::from_str(&json)
        .map_err(|e| format!("invalid manifest: not a devext manifest ({e})"))?;
    declare_as_of(&mut manifest);
    let schemas = check_manifest(&manifest)?;
    Ok(LoadedPlugin {
        manifest,
        source,
        module,
        schemas,
    })
}

/// The `as_of` property the host adds to the output of views it may serve from its cache
/// (`fresh_for_secs`), declared in their output schemas so that the published schemas describe
/// what callers receive. A plugin that declares it itself keeps its own declaration.
fn declare_as_of(manifest: &mut Manifest) {
    for op in &mut manifest.operations {
        if op.kind != devext_plugin_api::OpKind::View || op.fresh_for_secs.unwrap_or(0) == 0 {
            continue;
        }
        if let Some(props) = op
            .output_schema
            .get_mut("properties")
            .and_then(Value::as_object_mut)
        {
            props.entry("as_of").or_insert_with(|| {
                serde_json::json!({
                    "type": "string",
                    "format": "date-time",
                    "title": "As of",
                    "description": "Added by the host: when this result was obtained (RFC 3339, UTC); a repeat within the view's freshness period is served from the host's cache with the same time"
                })
            });
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks everything the host relies on in a manifest; returns every problem at once.
pub(crate) fn check_manifest(m: &Manifest) -> Result<CompiledSchemas, String> {
    let mut problems: Vec<String> = Vec::new();
    if m.protocol != PROTOCOL_VERSION {
        problems.push(format!(
            "speaks protocol {}, this host speaks {PROTOCOL_VERSION}",
            m.protocol
        ));
    }
    if !api_compatible(API_VERSION, &m.api_version) {
        problems.push(format!(
            "incompatible plugin-api version {} (this host: {API_VERSION})",
            m.api_version
        ));
    }
    if !is_identifier(&m.name) {
        problems.push(format!(
            "name {:?} is not an identifier ([a-z][a-z0-9_]*, at most 64)",
            m.name
        ));
    }
    let mut seen = HashSet::new();
    for op in &m.operations {
        if !is_identifier(&op.name) {
            problems.push(format!("operation name {:?} is not an identifier", op.name));
        }
        if !seen.insert(op.name.as_str()) {
            problems.push(format!("duplicate operation {:?}", op.name));
        }
        if op.scope == devext_plugin_api::OpScope::Org && op.fresh_for_secs.is_some() {
            // The view cache keys results on the device, and an action on a device drops
            // them; an org-scope result would outlive the device changes it may reflect.
            problems.push(format!(
                "operation {:?} is org-scope: fresh_for_secs applies to device-scope views only",
                op.name
            ));
        }
    }
    if let Some(field) = &m.endpoint_field {
        let declared = m.org_config_schema["properties"].get(field).is_some();
        if !declared {
            problems.push(format!(
                "endpoint_field {field:?} is not a property of the org config schema"
            ));
        }
    }

    for field in &m.lookup_fields {
        let declared = m.device_config_schema["properties"].get(field).is_some();
        if !is_identifier(field) || !declared {
            problems.push(format!(
                "lookup field {field:?} is not a property of the device config schema"
            ));
        }
    }
    let secrets = secret_properties(&m.org_config_schema);
    for field in &m.account_fields {
        if m.org_config_schema["properties"].get(field).is_none() {
            problems.push(format!(
                "account field {field:?} is not a property of the org config schema"
            ));
        } else if secrets.contains(&field.as_str()) {
            problems.push(format!(
                "account field {field:?} is a secret (writeOnly): the account key must never \
                 derive from secrets"
            ));
        }
    }

    let mut compile = |what: &str, schema: &Value| -> Option<Schema> {
        let errors: Vec<Violation> = meta_check(schema);
        if !errors.is_empty() {
            for e in errors {
                problems.push(format!("{what} schema at {e}"));
            }
            return None;
        }
        match Schema::compile(schema) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("{what} schema does not compile: {e}"));
                None
            }
        }
    };
    let org = compile("org config", &m.org_config_schema);
    let device = compile("device config", &m.device_config_schema);
    let mut ops = HashMap::new();
    for op in &m.operations {
        let input = compile(&format!("operation {} input", op.name), &op.input_schema);
        let output = compile(&format!("operation {} output", op.name), &op.output_schema);
        if let (Some(input), Some(output)) = (input, output) {
            ops.insert(
                op.name.clone(),
                CompiledOp {
                    kind: op.kind,
                    scope: op.scope,
                    fresh_for: op
                        .fresh_for_secs
                        .filter(|s| *s > 0 && op.kind == devext_plugin_api::OpKind::View)
                        .map(std::time::Duration::from_secs),
                    input,
                    output,
                    metrics: Default::default(),
                },
            );
        }
    }
    let mut warnings = Vec::new();
    for w in &m.warnings {
        if let Some(s) = compile(&format!("warning {}", w.code), &w.schema) {
            warnings.push(s);
        }
    }
    match (org, device) {
        (Some(org), Some(device)) if problems.is_empty() => Ok(CompiledSchemas {
            org,
            device,
            ops,
            warnings,
        }),
        _ => Err(format!("invalid manifest: {}", problems.join("; "))),
    }
}

/// The `*.so` files directly in `dir`, in byte-wise path order.
pub(crate) fn library_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read plugin directory {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The top-level properties of an org schema marked `writeOnly` (the secrets).
fn secret_properties(schema: &Value) -> Vec<&str> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use devext_plugin_api::{OpKind, OpScope, Operation, json};

    fn manifest() -> Manifest {
        Manifest::new("demo", "Demo", "1.0.0")
            .org_config_schema(
                json!({"type": "object", "properties": {"endpoint": {"type": "string"}}}),
            )
            .device_config_schema(json!({"type": "object"}))
            .endpoint_field("endpoint")
            .with_operation(
                Operation::view("look", "Look")
                    .input_schema(json!({}))
                    .output_schema(json!({})),
            )
    }

    #[test]
    fn a_good_manifest_passes() {
        assert!(check_manifest(&manifest()).is_ok());
        // Org-scope operations (views and actions, without fresh_for_secs) are fine.
        let m = manifest()
            .with_operation(Operation::view("ping", "Ping").scope(OpScope::Org))
            .with_operation(Operation::action("sync", "Sync").scope(OpScope::Org));
        let compiled = check_manifest(&m).unwrap();
        assert_eq!(compiled.ops["ping"].scope, OpScope::Org);
        assert_eq!(compiled.ops["look"].scope, OpScope::Device);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut m = manifest();
        m.name = "Bad-Name".into();
        m.api_version = "9.0.0".into();
        m.operations.push(m.operations[0].clone());
        m.operations[0].input_schema = json!({"type": "nope", "minimum": "x"});
        m.endpoint_field = Some("url".into());
        m.lookup_fields = vec!["serial".into()];
        m.org_config_schema["properties"]["token"] = json!({"type": "string", "writeOnly": true});
        m.account_fields = vec!["tenant".into(), "token".into()];
        m.operations.push(
            Operation::view("ping", "Ping")
                .scope(OpScope::Org)
                .fresh_for_secs(5),
        );
        m.protocol = PROTOCOL_VERSION + 1;
        let err = check_manifest(&m).err().unwrap();
        for needle in [
            "\"Bad-Name\" is not an identifier",
            "incompatible plugin-api version 9.0.0",
            "duplicate operation \"look\"",
            "operation look input schema at /type",
            "operation look input schema at /minimum",
            "endpoint_field \"url\"",
            "lookup field \"serial\" is not a property of the device config schema",
            "account field \"tenant\" is not a property of the org config schema",
            "account field \"token\" is a secret",
            "operation \"ping\" is org-scope: fresh_for_secs applies to device-scope views only",
            "speaks protocol 2, this host speaks 1",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
    }

    #[test]
    fn cached_views_declare_the_as_of_the_host_adds() {
        let mut m = manifest();
        m.operations[0].output_schema = json!({
            "type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": false
        });
        m.operations[0].fresh_for_secs = Some(60);
        let mut action = m.operations[0].clone();
        action.name = "act".into();
        action.kind = OpKind::Action;
        m.operations.push(action);
        declare_as_of(&mut m);
        assert_eq!(
            m.operations[0].output_schema["properties"]["as_of"]["format"],
            "date-time"
        );
        assert!(
            m.operations[1].output_schema["properties"]
                .get("as_of")
                .is_none()
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("jasper"));
        assert!(is_identifier("set_rate_plan2"));
        for bad in ["", "2x", "Jasper", "a-b", "a b", "é"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
