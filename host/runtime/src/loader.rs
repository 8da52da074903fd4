//! Finding plugins, loading them through the ABI, and checking their manifests.
//!
//! A file that cannot be used is refused with a one-line reason; the others still load.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use abi_stable::library::{AbiHeaderRef, LibraryError, RawLibrary, RootModuleError};
use abi_stable::std_types::RResult;
use devext_plugin_api::abi::{CallModule_Ref, PluginModule_Ref};
use devext_plugin_api::plugin::export::{CALLS_MODULE_SYMBOL_PREFIX, ROOT_MODULE_SYMBOL_PREFIX};
use devext_plugin_api::{API_VERSION, Manifest, PROTOCOL_VERSION, PluginError, api_compatible};
use serde::Serialize;
use serde_json::Value;

use crate::schema::{Schema, SchemaError, Violation, meta_check};

pub mod trust;
pub use trust::TrustProblem;

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

/// What a refusal is about: a static plugin, a library file or a plugin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusedSource {
    /// A plugin linked into the binary; its name once its manifest could be read. Shown as
    /// `static:<name>` (or `static`).
    Static {
        /// The plugin's name, if known.
        name: Option<String>,
    },
    /// A shared library.
    File(PathBuf),
    /// A plugin directory that could not be listed.
    Directory(PathBuf),
}

impl std::fmt::Display for RefusedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusedSource::Static { name: None } => f.write_str("static"),
            RefusedSource::Static { name: Some(name) } => write!(f, "static:{name}"),
            RefusedSource::File(p) | RefusedSource::Directory(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A file (or static plugin) that was not loaded, and why.
///
/// Serialised as `{"path": <source as text>, "reason": <reason as one line>}`.
#[derive(Debug)]
pub struct Refusal {
    /// What was refused.
    pub source: RefusedSource,
    /// Why; its `Display` is one line for people.
    pub reason: RefusalReason,
}

impl Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("Refusal", 2)?;
        s.serialize_field("path", &self.source.to_string())?;
        s.serialize_field("reason", &self.reason.to_string())?;
        s.end()
    }
}

/// What a refusal of a file that is no ELF shared library adds: the only plugin format for now.
const LINUX_ONLY: &str = "devext plugins are Linux shared libraries (ELF *.so) for now";

/// Why a plugin was not loaded. `Display` is the one line shown to people.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefusalReason {
    /// A plugin directory could not be listed.
    #[error("cannot read plugin directory {}: {source}", dir.display())]
    UnreadableDirectory {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `load_file` was given something that is not a file.
    #[error("{} is not a file", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// The library could not be read.
    #[error("cannot read the library: {0}")]
    UnreadableFile(#[source] std::io::Error),
    /// The file is not an ELF object (e.g. a text file).
    #[error("not a loadable shared library ({0}); {LINUX_ONLY}")]
    NotElf(#[source] object::Error),
    /// The dynamic loader refused the file (e.g. an executable, a library for another machine).
    #[error("not a loadable shared library ({cause}); {LINUX_ONLY}")]
    NotLoadable {
        /// The loader's own reason (the last line of its report).
        cause: String,
        /// abi_stable's error.
        source: LibraryError,
    },
    /// The library exports no devext root module.
    #[error(
        "no devext root module: this library was not built with devext_plugin_api::export_plugin!"
    )]
    NoRootModule,
    /// The library exports more than one devext root module.
    #[error("several devext root modules ({}): build one plugin per library", symbols.join(", "))]
    SeveralRootModules {
        /// The root-module symbols found.
        symbols: Vec<String>,
    },
    /// The library was built against an incompatible version of the plugin API crate.
    #[error(
        "built against devext-plugin-api {actual}, this host needs a version compatible with {expected}"
    )]
    IncompatiblePackageVersion {
        /// The version this host was built with.
        expected: String,
        /// The version the library was built with.
        actual: String,
    },
    /// abi_stable found the root module's type layout incompatible with this host's.
    #[error("ABI layout mismatch with this host: {0}")]
    AbiMismatch(AbiMismatch),
    /// The library's root-module initialiser panicked.
    #[error("cannot use this library: its root module initialiser panicked")]
    InitialiserPanicked,
    /// Another failure reported by abi_stable.
    #[error("cannot use this library: {summary}")]
    Library {
        /// The first line of abi_stable's report.
        summary: String,
        /// abi_stable's error.
        source: LibraryError,
    },
    /// The plugin's `manifest()` panicked (caught by the plugin's glue).
    #[error("the plugin failed to give its manifest: {}", error.message)]
    ManifestPanicked {
        /// The error the glue returned (details name the panic).
        error: PluginError,
    },
    /// The plugin's `manifest()` returned an error.
    #[error("the plugin failed to give its manifest: {}", error.message)]
    ManifestFailed {
        /// The plugin's error.
        error: PluginError,
    },
    /// The manifest is not JSON of the manifest's shape.
    #[error("invalid manifest: not a devext manifest ({0})")]
    NotAManifest(#[source] serde_json::Error),
    /// The manifest breaks the host's rules; every problem is listed.
    #[error("invalid manifest: {}", join(problems))]
    InvalidManifest {
        /// Every problem found.
        problems: Vec<ManifestProblem>,
    },
    /// The plugin directory or library could have been replaced by someone else (its owner or
    /// mode), or is not the one the directory's lock file pins; see [`trust`]. Every problem
    /// is listed, each with the command that fixes it.
    #[error("not trusted: {}", join_trust(problems))]
    Untrusted {
        /// Every problem found.
        problems: Vec<TrustProblem>,
    },
    /// Two static plugins have the same name.
    #[error("a static plugin named {name} is already registered")]
    DuplicateStatic {
        /// The name.
        name: String,
    },
    /// A dynamic plugin has the name of one loaded from another file.
    #[error("a plugin named {name} is already loaded from {loaded_from}")]
    DuplicateName {
        /// The name.
        name: String,
        /// Where the plugin of that name was loaded from.
        loaded_from: PluginSource,
    },
}

impl RefusalReason {
    /// The manifest's problems, if the manifest was refused for breaking the host's rules.
    pub fn manifest_problems(&self) -> &[ManifestProblem] {
        match self {
            RefusalReason::InvalidManifest { problems } => problems,
            _ => &[],
        }
    }
}

fn join_trust(problems: &[TrustProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn join(problems: &[ManifestProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The differences abi_stable reported between the host's and the library's root-module layout,
/// summarised (its report lists both full layouts, hundreds of lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiMismatch {
    /// Up to three differences, each "what (expected X, found Y)" when abi_stable names values.
    pub differences: Vec<String>,
    /// How many further differences were left out.
    pub more: usize,
}

impl std::fmt::Display for AbiMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.differences.is_empty() {
            f.write_str("incompatible type layout")?;
        } else {
            f.write_str(&self.differences.join("; "))?;
        }
        if self.more > 0 {
            write!(f, " (and {} more)", self.more)?;
        }
        Ok(())
    }
}

/// One way a manifest breaks the host's rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestProblem {
    /// Another JSON protocol version.
    #[error("speaks protocol {found}, this host speaks {PROTOCOL_VERSION}")]
    Protocol {
        /// The plugin's protocol.
        found: u32,
    },
    /// A plugin-api version this host is not compatible with (semver caret rules).
    #[error("incompatible plugin-api version {found} (this host: {API_VERSION})")]
    IncompatibleApiVersion {
        /// The plugin's `api_version`.
        found: String,
    },
    /// The plugin's name is not an identifier.
    #[error("name {name:?} is not an identifier ([a-z][a-z0-9_]*, at most 64)")]
    Name {
        /// The name.
        name: String,
    },
    /// An operation's name is not an identifier.
    #[error("operation name {name:?} is not an identifier")]
    OperationName {
        /// The name.
        name: String,
    },
    /// Two operations share a name.
    #[error("duplicate operation {name:?}")]
    DuplicateOperation {
        /// The name.
        name: String,
    },
    /// `endpoint_field` names no org-config property.
    #[error("endpoint_field {field:?} is not a property of the org config schema")]
    EndpointField {
        /// The field.
        field: String,
    },
    /// A lookup field is not a device-config property (or not an identifier).
    #[error("lookup field {field:?} is not a property of the device config schema")]
    LookupField {
        /// The field.
        field: String,
    },
    /// An account field is not an org-config property.
    #[error("account field {field:?} is not a property of the org config schema")]
    AccountFieldUndeclared {
        /// The field.
        field: String,
    },
    /// An account field is a secret.
    #[error(
        "account field {field:?} is a secret (writeOnly): the account key must never derive from secrets"
    )]
    AccountFieldSecret {
        /// The field.
        field: String,
    },
    /// An org-scope operation declares `fresh_for_secs`: the view cache keys results on the
    /// device (and an action on a device drops them), so an org-scope result would outlive the
    /// changes it may reflect.
    #[error("operation {name:?} is org-scope: fresh_for_secs applies to device-scope views only")]
    OrgScopeCached {
        /// The operation.
        name: String,
    },
    /// `connection_check` names no organisation-scope view.
    #[error(
        "connection_check {name:?} is not an organisation-scope view (an operation with kind view and scope org)"
    )]
    ConnectionCheck {
        /// The operation named.
        name: String,
    },
    /// A schema violates the draft 2020-12 meta-schema.
    #[error("{schema} schema at {violation}")]
    SchemaInvalid {
        /// Which schema (`org config`, `operation look input`, ...).
        schema: String,
        /// The meta-schema violation.
        violation: Violation,
    },
    /// A schema passes the meta-schema but does not compile.
    #[error("{schema} schema does not compile: {source}")]
    SchemaCompile {
        /// Which schema.
        schema: String,
        /// The compiler's error.
        source: SchemaError,
    },
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
    pub(crate) ops: BTreeMap<String, CompiledOp>,
    pub(crate) warnings: Vec<Schema>,
}

/// A plugin ready for calls: the module, its checked manifest and compiled schemas.
pub struct LoadedPlugin {
    manifest: Manifest,
    source: PluginSource,
    hint_warnings: Vec<crate::hints::HintWarning>,
    pub(crate) module: PluginModule_Ref,
    /// The entry points added after protocol 1 (`None`: a plugin built before them).
    pub(crate) calls: Option<CallModule_Ref>,
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

    /// Checks `input` against the input schema of operation `op`, as a call would (`None`: no
    /// such operation).
    pub fn validate_input(&self, op: &str, input: &Value) -> Option<Result<(), Vec<Violation>>> {
        self.schemas.ops.get(op).map(|o| o.input.check(input, ""))
    }

    /// The plugin's name (the key in a device's extension configuration).
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &PluginSource {
        &self.source
    }

    /// The presentation hints (`x-devext-*`) in its schemas that a UI will ignore: unknown
    /// keys, bad values, hints where they mean nothing (see [`crate::hints`]). Found, and
    /// logged as warnings, when it was loaded.
    pub fn hint_warnings(&self) -> &[crate::hints::HintWarning] {
        &self.hint_warnings
    }
}

/// Loads and checks the one plugin file at `path`, as `devext plugins check` does.
pub fn load_file(path: &Path) -> Result<LoadedPlugin, RefusalReason> {
    if !path.is_file() {
        return Err(RefusalReason::NotAFile {
            path: path.to_owned(),
        });
    }
    open_library(path).and_then(|m| describe(m, PluginSource::File(path.to_owned())))
}

/// A plugin's modules: its root module and, from a plugin built after protocol 1, its
/// [`CallModule_Ref`].
pub(crate) struct Modules {
    pub(crate) root: PluginModule_Ref,
    pub(crate) calls: Option<CallModule_Ref>,
}

/// Loads the shared library at `path` and returns its modules.
///
/// The library stays loaded for the life of the process (abi_stable never unloads).
pub(crate) fn open_library(path: &Path) -> Result<Modules, RefusalReason> {
    let raw = RawLibrary::load_at(path).map_err(library_error)?;
    let symbol = root_symbol(path)?;
    let header = |symbol: &str| {
        let mut with_nul = symbol.as_bytes().to_vec();
        with_nul.push(0);
        // SAFETY: the symbol was exported by `devext_plugin_api::export_plugin!`, which declares
        // it as a `LibHeader`, the type abi_stable's loader reads it as; abi_stable then checks
        // the header's version and the module's full type layout before anything is called.
        #[allow(unsafe_code)]
        unsafe {
            raw.get::<AbiHeaderRef>(&with_nul).map(|h| *h)
        }
    };
    let root = header(&symbol)
        .map_err(library_error)?
        .upgrade()
        .and_then(|h| h.init_root_module::<PluginModule_Ref>())
        .map_err(library_error)?;
    // The calls module's symbol names the same crate. A plugin built before it has none; one
    // that has it must pass the same checks as the root module.
    let calls_symbol = format!(
        "{CALLS_MODULE_SYMBOL_PREFIX}{}",
        &symbol[ROOT_MODULE_SYMBOL_PREFIX.len()..]
    );
    let calls = match header(&calls_symbol) {
        Err(_) => None,
        Ok(h) => Some(
            h.upgrade()
                .and_then(|h| h.init_root_module::<CallModule_Ref>())
                .map_err(library_error)?,
        ),
    };
    // The modules' functions point into the library: it must never be unloaded.
    std::mem::forget(raw);
    Ok(Modules { root, calls })
}

/// The name of the root-module symbol the library exports (`devext_plugin_root__<crate>`).
fn root_symbol(path: &Path) -> Result<String, RefusalReason> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(path).map_err(RefusalReason::UnreadableFile)?;
    let file = object::File::parse(&*data).map_err(RefusalReason::NotElf)?;
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
        0 => Err(RefusalReason::NoRootModule),
        _ => Err(RefusalReason::SeveralRootModules { symbols: found }),
    }
}

/// The refusal for one of abi_stable's errors.
fn library_error(e: LibraryError) -> RefusalReason {
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
            RefusalReason::NotLoadable { cause, source: e }
        }
        LibraryError::GetSymbolError { .. } => RefusalReason::NoRootModule,
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => RefusalReason::IncompatiblePackageVersion {
            expected: expected_version.to_string(),
            actual: actual_version.to_string(),
        },
        LibraryError::AbiInstability(ref report) => {
            RefusalReason::AbiMismatch(summarise_layout_report(&report.to_string()))
        }
        LibraryError::RootModule {
            err: RootModuleError::Unwound,
            ..
        } => RefusalReason::InitialiserPanicked,
        other => {
            let text = other.to_string();
            let summary = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned();
            RefusalReason::Library {
                summary,
                source: other,
            }
        }
    }
}

/// Summarises abi_stable's layout-mismatch report (`LibraryError::AbiInstability`).
///
/// This is the one place that reads abi_stable's text: its error values keep their details
/// private, and abi_stable is pinned (`=0.11.3`), so the shapes tested below are the ones it
/// prints. The report lists both full layouts (hundreds of lines); each `Error:<what>` line is
/// kept, with the `Expected:`/`Found:` values that follow it.
fn summarise_layout_report(text: &str) -> AbiMismatch {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut differences = Vec::new();
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
        differences.push(entry);
    }
    differences.dedup();
    let more = differences.len().saturating_sub(3);
    differences.truncate(3);
    AbiMismatch { differences, more }
}

/// Asks `module` for its manifest and checks it; compiles every schema.
pub(crate) fn describe(
    modules: Modules,
    source: PluginSource,
) -> Result<LoadedPlugin, RefusalReason> {
    let Modules {
        root: module,
        calls,
    } = modules;
    let manifest_fn = module.manifest();
    let json = match manifest_fn() {
        RResult::ROk(json) => json,
        RResult::RErr(e) => {
            let error = PluginError::from_abi(&e);
            // The plugin's glue turns a panic into an `internal` error naming it in `panic`.
            return Err(if error.details.get("panic").is_some() {
                RefusalReason::ManifestPanicked { error }
            } else {
                RefusalReason::ManifestFailed { error }
            });
        }
    };
    let mut manifest: Manifest =
        serde_json::from_str(&json).map_err(RefusalReason::NotAManifest)?;
    declare_as_of(&mut manifest);
    let schemas = check_manifest(&manifest)
        .map_err(|problems| RefusalReason::InvalidManifest { problems })?;
    let hint_warnings = crate::hints::check_hints(&manifest);
    for w in &hint_warnings {
        tracing::warn!(
            plugin = %w.plugin,
            schema = %w.schema,
            pointer = %w.pointer,
            "presentation hint ignored: {}",
            w.problem
        );
    }
    Ok(LoadedPlugin {
        manifest,
        source,
        hint_warnings,
        module,
        calls,
        schemas,
    })
}

/// The `as_of` property the host adds to the output of views it may serve from its cache
/// (`fresh_for_secs`), declared in their output schemas so that the published schemas describe
/// what callers receive. A plugin that declares it itself keeps its own declaration.
pub(crate) fn declare_as_of(manifest: &mut Manifest) {
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
pub(crate) fn check_manifest(m: &Manifest) -> Result<CompiledSchemas, Vec<ManifestProblem>> {
    let mut problems: Vec<ManifestProblem> = Vec::new();
    if m.protocol != PROTOCOL_VERSION {
        problems.push(ManifestProblem::Protocol { found: m.protocol });
    }
    if !api_compatible(API_VERSION, &m.api_version) {
        problems.push(ManifestProblem::IncompatibleApiVersion {
            found: m.api_version.clone(),
        });
    }
    if !is_identifier(&m.name) {
        problems.push(ManifestProblem::Name {
            name: m.name.clone(),
        });
    }
    let mut seen = HashSet::new();
    for op in &m.operations {
        if !is_identifier(&op.name) {
            problems.push(ManifestProblem::OperationName {
                name: op.name.clone(),
            });
        }
        if !seen.insert(op.name.as_str()) {
            problems.push(ManifestProblem::DuplicateOperation {
                name: op.name.clone(),
            });
        }
        if op.scope == devext_plugin_api::OpScope::Org && op.fresh_for_secs.is_some() {
            // The view cache keys results on the device, and an action on a device drops
            // them; an org-scope result would outlive the device changes it may reflect.
            problems.push(ManifestProblem::OrgScopeCached {
                name: op.name.clone(),
            });
        }
    }
    if let Some(name) = &m.connection_check {
        let is_org_view = m.operation(name).is_some_and(|op| {
            op.kind == devext_plugin_api::OpKind::View
                && op.scope == devext_plugin_api::OpScope::Org
        });
        if !is_org_view {
            problems.push(ManifestProblem::ConnectionCheck { name: name.clone() });
        }
    }
    if let Some(field) = &m.endpoint_field {
        let declared = m.org_config_schema["properties"].get(field).is_some();
        if !declared {
            problems.push(ManifestProblem::EndpointField {
                field: field.clone(),
            });
        }
    }

    for field in &m.lookup_fields {
        let declared = m.device_config_schema["properties"].get(field).is_some();
        if !is_identifier(field) || !declared {
            problems.push(ManifestProblem::LookupField {
                field: field.clone(),
            });
        }
    }
    let secrets = crate::schema::secret_properties(&m.org_config_schema);
    for field in &m.account_fields {
        if m.org_config_schema["properties"].get(field).is_none() {
            problems.push(ManifestProblem::AccountFieldUndeclared {
                field: field.clone(),
            });
        } else if secrets.contains(&field.as_str()) {
            problems.push(ManifestProblem::AccountFieldSecret {
                field: field.clone(),
            });
        }
    }

    let mut compile = |what: &str, schema: &Value| -> Option<Schema> {
        let errors: Vec<Violation> = meta_check(schema);
        if !errors.is_empty() {
            for violation in errors {
                problems.push(ManifestProblem::SchemaInvalid {
                    schema: what.to_owned(),
                    violation,
                });
            }
            return None;
        }
        match Schema::compile(schema) {
            Ok(s) => Some(s),
            Err(source) => {
                problems.push(ManifestProblem::SchemaCompile {
                    schema: what.to_owned(),
                    source,
                });
                None
            }
        }
    };
    let org = compile("org config", &m.org_config_schema);
    let device = compile("device config", &m.device_config_schema);
    let mut ops = BTreeMap::new();
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
        _ => Err(problems),
    }
}

/// The `*.so` files directly in `dir`, in byte-wise path order.
pub(crate) fn library_files(dir: &Path) -> Result<Vec<PathBuf>, RefusalReason> {
    let entries = std::fs::read_dir(dir).map_err(|source| RefusalReason::UnreadableDirectory {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
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
        let problems = check_manifest(&m).err().unwrap();
        assert!(problems.iter().any(|p| matches!(
            p,
            ManifestProblem::IncompatibleApiVersion { found } if found == "9.0.0"
        )));
        assert!(problems.iter().any(|p| matches!(
            p,
            ManifestProblem::OrgScopeCached { name } if name == "ping"
        )));
        let err = RefusalReason::InvalidManifest { problems }.to_string();
        assert!(err.starts_with("invalid manifest: "), "{err}");
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
    fn the_connection_check_must_name_an_org_scope_view() {
        let m = manifest()
            .with_operation(Operation::view("ping", "Ping").scope(OpScope::Org))
            .with_operation(Operation::action("sync", "Sync").scope(OpScope::Org));
        assert!(check_manifest(&m.clone().connection_check("ping")).is_ok());
        for bad in ["missing", "look", "sync"] {
            let problems = check_manifest(&m.clone().connection_check(bad))
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(
                matches!(&problems[..], [ManifestProblem::ConnectionCheck { name }] if name == bad),
                "{problems:?}"
            );
            assert!(
                problems[0].to_string().contains(&format!(
                    "connection_check \"{bad}\" is not an organisation-scope view"
                )),
                "{}",
                problems[0]
            );
        }
    }

    #[test]
    fn a_bad_presentation_hint_warns_but_never_refuses() {
        let mut m = manifest();
        m.operations[0].output_schema = json!({
            "type": "object",
            "properties": {"n": {"type": "integer", "x-devext-unit": "furlongs", "x-devext-colour": "red"}}
        });
        assert!(check_manifest(&m).is_ok());
        let warnings = crate::hints::check_hints(&m);
        let pointers: Vec<&str> = warnings.iter().map(|w| w.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/properties/n/x-devext-colour",
                "/properties/n/x-devext-unit"
            ]
        );
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
        assert!(is_identifier("acme"));
        assert!(is_identifier("set_rate_plan2"));
        for bad in ["", "2x", "Acme", "a-b", "a b", "é"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}

/// The layout-mismatch summary against real reports: abi_stable's own layout check on types
/// that differ the ways a plugin built against another interface can.
#[cfg(test)]
#[allow(unsafe_code, non_local_definitions, non_camel_case_types, dead_code)]
mod layout_report_tests {
    use super::*;
    use abi_stable::StableAbi;
    use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
    use abi_stable::std_types::RBoxError;
    use abi_stable::type_layout::TypeLayout;

    mod host {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub(super) struct Module {
            pub(super) a: u32,
            pub(super) b: u32,
        }

        #[repr(u8)]
        #[derive(abi_stable::StableAbi)]
        pub(super) enum Kind {
            One,
            Two,
        }
    }

    mod field_type {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub(super) struct Module {
            pub(super) a: u32,
            pub(super) b: u64,
        }
    }

    mod fewer_fields {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub(super) struct Module {
            pub(super) a: u32,
        }
    }

    mod more_variants {
        #[repr(u8)]
        #[derive(abi_stable::StableAbi)]
        pub(super) enum Kind {
            One,
            Two,
            Three,
        }
    }

    /// The text of the `LibraryError` abi_stable's loader returns for this pair of layouts.
    fn report(interface: &'static TypeLayout, implementation: &'static TypeLayout) -> String {
        let errors = check_layout_compatibility(interface, implementation).unwrap_err();
        LibraryError::AbiInstability(RBoxError::new(errors)).to_string()
    }

    fn summary(interface: &'static TypeLayout, implementation: &'static TypeLayout) -> String {
        let text = report(interface, implementation);
        assert!(text.lines().count() > 10, "a full report: {text}");
        summarise_layout_report(&text).to_string()
    }

    #[test]
    fn identical_layouts_are_compatible() {
        assert!(check_layout_compatibility(host::Module::LAYOUT, host::Module::LAYOUT).is_ok());
    }

    #[test]
    fn a_changed_field_type() {
        let s = summary(host::Module::LAYOUT, field_type::Module::LAYOUT);
        assert!(
            s.contains("mismatched type (expected u32, found u64)"),
            "{s}"
        );
        assert!(!s.contains('\n'), "{s}");
    }

    #[test]
    fn a_missing_field() {
        let s = summary(host::Module::LAYOUT, fewer_fields::Module::LAYOUT);
        assert!(s.contains("too many fields (expected 2, found 1)"), "{s}");
    }

    #[test]
    fn an_extra_field() {
        let s = summary(fewer_fields::Module::LAYOUT, host::Module::LAYOUT);
        assert!(s.contains("too many fields (expected 1, found 2)"), "{s}");
    }

    #[test]
    fn an_extra_enum_variant() {
        let s = summary(host::Kind::LAYOUT, more_variants::Kind::LAYOUT);
        assert!(s.contains("too many variants (expected 2, found 3)"), "{s}");
    }

    /// The interface crate at another version: the shape abi_stable prints (its formatter's
    /// `"\nError:{}\nExpected:\n{}\nFound:\n{}"`, values indented by 4), which cannot be produced
    /// within one crate.
    #[test]
    fn incompatible_package_versions() {
        let text = "\n1 error(s).\n\n\nError:incompatible package versions\nExpected:\n    0.1.0\n\
                    Found:\n    0.2.0\n";
        assert_eq!(
            summarise_layout_report(text).to_string(),
            "incompatible package versions (expected 0.1.0, found 0.2.0)"
        );
    }

    #[test]
    fn at_most_three_differences_are_shown() {
        let one = |what: &str| format!("\nError:{what}\nExpected:\n    a\nFound:\n    b\n");
        let text: String = ["w", "x", "x", "y", "z", "v"]
            .iter()
            .map(|w| one(w))
            .collect();
        let m = summarise_layout_report(&text);
        assert_eq!(
            m.differences,
            [
                "w (expected a, found b)",
                "x (expected a, found b)",
                "y (expected a, found b)"
            ]
        );
        assert_eq!(m.more, 2);
        assert_eq!(
            m.to_string(),
            "w (expected a, found b); x (expected a, found b); y (expected a, found b) (and 2 more)"
        );
    }

    #[test]
    fn a_report_without_error_lines_still_says_what_it_is() {
        let m = summarise_layout_report("Compared <this>:\n    ...\n");
        assert_eq!(m.to_string(), "incompatible type layout");
        assert_eq!(
            RefusalReason::AbiMismatch(m).to_string(),
            "ABI layout mismatch with this host: incompatible type layout"
        );
    }
}
