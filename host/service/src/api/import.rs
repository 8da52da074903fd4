//! Device import and export: `POST /api/v1/devices/import` (JSON Lines or CSV, streamed, each
//! record checked as `devext validate` checks a document, written in one transaction) and
//! `GET /api/v1/devices/export` (the device list with its filters, streamed page by page).
//!
//! The import reads the body on a blocking thread (parsing and schema checks are CPU work),
//! through a bounded channel of body chunks, and hands checked records to the request's task
//! through another bounded channel: memory holds a few chunks and one batch of records,
//! whatever the size of the file.

use std::io::{BufRead, Read};
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use devext_host::Runtime;
use devext_host::validate::{Diagnostic, Kind};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::audit::audit;
use super::auth::Caller;
use super::devices::{device_query, field_violations};
use super::error::{ApiError, ApiResult};
use super::state::App;
use crate::lookup::{FILTER_PREFIX, LookupFields};
use crate::store::import::{ImportRow, MatchKey, RowOutcome};
use crate::store::{Device, DeviceQuery, LookupEntry, NewAudit, Store};

/// The media type of JSON Lines (one JSON document per line).
pub(crate) const JSON_LINES: &str = "application/x-ndjson";
/// The media type of CSV.
pub(crate) const CSV: &str = "text/csv";

/// Records written per batch (one read of the matches, a few writes).
const BATCH: usize = 500;
/// Largest record (a line of JSON Lines, a CSV record), bytes: the limit of a device's body.
const MAX_RECORD_BYTES: usize = super::routes::MAX_BODY_BYTES;
/// Problems listed in a report (the others are counted).
const MAX_LISTED: usize = 1000;

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonLines,
    Csv,
}

/// The format a media type names (`None`: neither).
fn format_of(media: &str) -> Option<Format> {
    let essence = media.split(';').next().unwrap_or("").trim();
    match essence.to_ascii_lowercase().as_str() {
        "application/x-ndjson"
        | "application/jsonl"
        | "application/json-lines"
        | "application/jsonlines" => Some(Format::JsonLines),
        "text/csv" => Some(Format::Csv),
        _ => None,
    }
}

/// How records find their devices: `name`, `id` or `ext.<plugin>.<field>` (a lookup field).
#[derive(Debug, Clone, PartialEq, Eq)]
enum MatchBy {
    Name,
    Id,
    Lookup { plugin: String, field: String },
}

impl MatchBy {
    fn parse(text: &str, lookup: &LookupFields) -> ApiResult<MatchBy> {
        match text {
            "name" => return Ok(MatchBy::Name),
            "id" => return Ok(MatchBy::Id),
            _ => {}
        }
        let pair = text
            .strip_prefix(FILTER_PREFIX)
            .and_then(|rest| rest.rsplit_once('.'))
            .filter(|(p, f)| lookup.contains(p, f));
        match pair {
            Some((plugin, field)) => Ok(MatchBy::Lookup {
                plugin: plugin.to_owned(),
                field: field.to_owned(),
            }),
            None => {
                let mut known = vec!["name".to_owned(), "id".to_owned()];
                known.extend(lookup.filter_names());
                Err(ApiError::bad_request(format!(
                    "match={text:?} is not a way to match devices: use {}",
                    known.join(", ")
                ))
                .details(json!({"parameter": "match", "known": known})))
            }
        }
    }

    fn text(&self) -> String {
        match self {
            MatchBy::Name => "name".into(),
            MatchBy::Id => "id".into(),
            MatchBy::Lookup { plugin, field } => format!("{FILTER_PREFIX}{plugin}.{field}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportQuery {
    #[serde(default, rename = "match")]
    match_by: Option<String>,
    #[serde(default)]
    partial: Option<bool>,
    #[serde(default)]
    org: Option<String>,
}

/// With `org` given (the CLI's `--org`), the caller's key must be one of that organisation: a
/// file meant for one organisation is not imported into another by a wrong key.
async fn check_org<S: Store>(app: &App<S>, caller: &Caller, org: Option<&str>) -> ApiResult<()> {
    let Some(name) = org else { return Ok(()) };
    match app.store.org_by_name(name).await? {
        Some(o) if o.id == caller.0.org_id => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("org={name:?}: this key is not a key of that organisation"),
        )),
    }
}

/// A problem of one record (or of the file, on line 1 for a CSV header).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Problem {
    /// 1-based line of the file where the record starts.
    line: u64,
    /// `error` or `warning`.
    kind: &'static str,
    /// 1-based column (characters) in the line (JSON Lines), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u64>,
    /// The CSV column (its header), when one is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// JSON pointer in the record (`/extensions/<plugin>/...`, `/name`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pointer: Option<String>,
    /// The schema keyword that failed, or a warning's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    keyword: Option<String>,
    /// What is wrong.
    message: String,
}

impl Problem {
    fn error(line: u64, message: impl Into<String>) -> Problem {
        Problem {
            line,
            kind: "error",
            column: None,
            field: None,
            pointer: None,
            keyword: None,
            message: message.into(),
        }
    }

    fn at(self, pointer: impl Into<String>) -> Problem {
        Problem {
            pointer: Some(pointer.into()),
            ..self
        }
    }

    /// `line: [column: ]pointer: message`, as `devext validate` prints a diagnostic.
    fn summary(&self) -> String {
        let mut s = format!("line {}", self.line);
        if let Some(c) = self.column {
            s.push_str(&format!(":{c}"));
        }
        if let Some(f) = &self.field {
            s.push_str(&format!(" ({f})"));
        }
        if let Some(p) = &self.pointer {
            s.push_str(&format!(": {p}"));
        }
        format!("{s}: {}", self.message)
    }
}

/// What the reading thread hands over.
enum Parsed {
    /// A record that passed its checks (with its declared warnings).
    Row {
        line: u64,
        row: ImportRow,
        warnings: Vec<Problem>,
    },
    /// A record that did not.
    Bad(Vec<Problem>),
    /// The file cannot be read on (a CSV header that names no column, unreadable bytes).
    Fatal(ApiError),
}

/// The body as a [`Read`], from chunks sent by the request's task.
struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                // The body ended (or its reading failed: the request's task says which).
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Why the body could not be read to its end.
#[derive(Debug)]
enum BodyFailure {
    TooLarge(usize),
    Read(String),
}

/// Sends `body`'s chunks to the reading thread, at most `limit` bytes.
async fn forward(body: Body, limit: usize, tx: mpsc::Sender<Bytes>) -> Result<(), BodyFailure> {
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyFailure::Read(e.to_string()))?;
        seen += chunk.len();
        if seen > limit {
            return Err(BodyFailure::TooLarge(limit));
        }
        if tx.send(chunk).await.is_err() {
            // The reader stopped (a fatal problem): the rest is not needed.
            return Ok(());
        }
    }
    Ok(())
}

/// What the reading thread needs.
struct Reader {
    runtime: Runtime,
    lookup: LookupFields,
    match_by: MatchBy,
    out: mpsc::Sender<Parsed>,
}

impl Reader {
    /// Sends `p`; `false` once nobody listens.
    fn send(&self, p: Parsed) -> bool {
        self.out.blocking_send(p).is_ok()
    }

    fn json_lines(&self, input: impl Read) {
        let mut input = std::io::BufReader::with_capacity(64 * 1024, input);
        let mut buf = Vec::new();
        let mut line = 0u64;
        loop {
            buf.clear();
            line += 1;
            let n = match (&mut input)
                .take(MAX_RECORD_BYTES as u64 + 1)
                .read_until(b'\n', &mut buf)
            {
                Ok(n) => n,
                Err(e) => {
                    self.send(Parsed::Fatal(ApiError::bad_request(format!(
                        "the body cannot be read: {e}"
                    ))));
                    return;
                }
            };
            if n == 0 {
                return;
            }
            if buf.len() > MAX_RECORD_BYTES && buf.last() != Some(&b'\n') {
                // Skip the rest of the line.
                let mut rest = Vec::new();
                loop {
                    rest.clear();
                    match (&mut input).take(64 * 1024).read_until(b'\n', &mut rest) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if rest.last() == Some(&b'\n') => break,
                        Ok(_) => {}
                    }
                }
                let p = Problem::error(
                    line,
                    format!("the record is longer than {MAX_RECORD_BYTES} bytes"),
                );
                if !self.send(Parsed::Bad(vec![p])) {
                    return;
                }
                continue;
            }
            let mut text: &[u8] = &buf;
            if line == 1 {
                text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
            }
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = self.json_record(line, text);
            if !self.send(parsed) {
                return;
            }
        }
    }

    fn json_record(&self, line: u64, text: &[u8]) -> Parsed {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Record<'a> {
            name: String,
            #[serde(default, rename = "type")]
            device_type: Option<String>,
            #[serde(default, borrow)]
            extensions: Option<&'a serde_json::value::RawValue>,
            #[serde(default)]
            id: Option<String>,
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return Parsed::Bad(vec![Problem::error(line, "the line is not UTF-8")]);
        };
        let record: Record<'_> = match serde_json::from_str(text.trim_end()) {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_data() {
                    "not a device record"
                } else {
                    "not JSON"
                };
                return Parsed::Bad(vec![Problem {
                    column: Some(e.column() as u64),
                    ..Problem::error(line, format!("{what}: {e}"))
                }]);
            }
        };
        let mut problems: Vec<Problem> =
            field_violations(&record.name, record.device_type.as_deref())
                .into_iter()
                .map(|v| Problem {
                    keyword: Some(v.keyword),
                    ..Problem::error(line, v.message).at(v.pointer)
                })
                .collect();
        let mut warnings = Vec::new();
        let extensions = match record.extensions {
            None => json!({}),
            Some(raw) => {
                // Where the configuration starts in the line, for the diagnostics' columns.
                let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
                let before = text[..offset].chars().count() as u64;
                let diagnostics = devext_host::validate::document_diagnostics(
                    &self.runtime,
                    raw.get().as_bytes(),
                );
                for d in diagnostics {
                    let p = located(line, d, None);
                    let p = Problem {
                        column: p.column.map(|c| c + before),
                        ..p
                    };
                    if p.kind == "warning" {
                        warnings.push(p);
                    } else {
                        problems.push(p);
                    }
                }
                match serde_json::from_str(raw.get()) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(Problem::error(line, format!("not JSON: {e}")));
                        Value::Null
                    }
                }
            }
        };
        self.finish(
            line,
            record.name,
            record.device_type,
            record.id,
            extensions,
            problems,
            warnings,
        )
    }

    /// The checked record of `line`, or its problems.
    #[allow(clippy::too_many_arguments)] // a record's parts and what was found wrong
    fn finish(
        &self,
        line: u64,
        name: String,
        device_type: Option<String>,
        id: Option<String>,
        extensions: Value,
        mut problems: Vec<Problem>,
        warnings: Vec<Problem>,
    ) -> Parsed {
        let lookup = self.lookup.entries(&extensions);
        let key = match &self.match_by {
            MatchBy::Name => Some(MatchKey::Name(name.clone())),
            MatchBy::Id => match id {
                Some(id) => Some(MatchKey::Id(id)),
                None => {
                    problems.push(Problem::error(line, "match=id needs the record's id").at("/id"));
                    None
                }
            },
            MatchBy::Lookup { plugin, field } => {
                let entry = lookup
                    .iter()
                    .find(|e| &e.plugin == plugin && &e.field == field)
                    .cloned();
                if entry.is_none() && problems.is_empty() {
                    let pointer = LookupEntry {
                        plugin: plugin.clone(),
                        field: field.clone(),
                        value: String::new(),
                    }
                    .pointer();
                    problems.push(
                        Problem::error(
                            line,
                            format!("the record has no {plugin}.{field} to match devices by"),
                        )
                        .at(pointer),
                    );
                }
                entry.map(MatchKey::Lookup)
            }
        };
        match key {
            Some(key) if problems.is_empty() => Parsed::Row {
                line,
                row: ImportRow {
                    key,
                    name,
                    device_type,
                    extensions,
                    lookup,
                },
                warnings,
            },
            _ => {
                problems.extend(warnings);
                Parsed::Bad(problems)
            }
        }
    }

    fn csv(&self, input: impl Read) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(input);
        let mut record = csv::StringRecord::new();
        let mut columns: Option<Vec<Column>> = None;
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => return,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let p = match e.kind() {
                        csv::ErrorKind::Utf8 { .. } => {
                            Problem::error(line, "the record is not UTF-8")
                        }
                        _ => {
                            self.send(Parsed::Fatal(ApiError::bad_request(format!(
                                "the CSV cannot be read on from line {line}: {e}"
                            ))));
                            return;
                        }
                    };
                    if columns.is_none() {
                        self.send(Parsed::Fatal(header_error(p)));
                        return;
                    }
                    if !self.send(Parsed::Bad(vec![p])) {
                        return;
                    }
                    continue;
                }
            }
            let line = record.position().map_or(0, |p| p.line());
            let Some(cols) = &columns else {
                match header(&self.runtime, &record) {
                    Ok(c) => columns = Some(c),
                    Err(e) => {
                        self.send(Parsed::Fatal(e));
                        return;
                    }
                }
                continue;
            };
            if record.as_slice().len() > MAX_RECORD_BYTES {
                let p = Problem::error(
                    line,
                    format!("the record is longer than {MAX_RECORD_BYTES} bytes"),
                );
                if !self.send(Parsed::Bad(vec![p])) {
                    return;
                }
                continue;
            }
            if record.len() == 1 && record.get(0) == Some("") {
                continue; // a blank line
            }
            let parsed = self.csv_record(line, cols, &record);
            if !self.send(parsed) {
                return;
            }
        }
    }

    fn csv_record(&self, line: u64, columns: &[Column], record: &csv::StringRecord) -> Parsed {
        if record.len() != columns.len() {
            return Parsed::Bad(vec![Problem::error(
                line,
                format!(
                    "the record has {} fields where the header has {}",
                    record.len(),
                    columns.len()
                ),
            )]);
        }
        let (mut name, mut device_type, mut id) = (String::new(), None, None);
        let mut extensions = Map::new();
        let mut problems = Vec::new();
        for (column, cell) in columns.iter().zip(record.iter()) {
            match column {
                Column::Name => name = cell.to_owned(),
                Column::Type => device_type = (!cell.is_empty()).then(|| cell.to_owned()),
                Column::Id => id = (!cell.is_empty()).then(|| cell.to_owned()),
                Column::Ext {
                    header,
                    plugin,
                    path,
                    types,
                } => {
                    if cell.is_empty() {
                        continue;
                    }
                    let value = typed(cell, types.as_deref());
                    let part = extensions
                        .entry(plugin.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !set_path(part, path, value) {
                        problems.push(Problem {
                            field: Some(header.clone()),
                            ..Problem::error(
                                line,
                                format!("{header} sets a property inside one another column sets"),
                            )
                        });
                    }
                }
            }
        }
        for v in field_violations(&name, device_type.as_deref()) {
            let field = v.pointer.trim_start_matches('/').to_owned();
            problems.push(Problem {
                keyword: Some(v.keyword),
                field: Some(field),
                ..Problem::error(line, v.message).at(v.pointer)
            });
        }
        let extensions = Value::Object(extensions);
        let mut warnings = Vec::new();
        let text = extensions.to_string();
        for d in devext_host::validate::document_diagnostics(&self.runtime, text.as_bytes()) {
            let p = located(line, d, Some(columns));
            if p.kind == "warning" {
                warnings.push(p);
            } else {
                problems.push(p);
            }
        }
        self.finish(line, name, device_type, id, extensions, problems, warnings)
    }
}

/// A diagnostic of a record's extension configuration as a problem of the record: its pointer
/// under `/extensions`; for CSV, the column that holds the value (no character column: the
/// diagnostic's is in the configuration built from the cells).
fn located(line: u64, d: Diagnostic, columns: Option<&[Column]>) -> Problem {
    let pointer = d.pointer.map(|p| format!("/extensions{p}"));
    let (column, field) = match columns {
        None => (d.column, None),
        Some(cols) => {
            let field = pointer.as_deref().and_then(|p| {
                cols.iter()
                    .filter_map(|c| match c {
                        Column::Ext {
                            header,
                            plugin,
                            path,
                            ..
                        } => {
                            let mut own = format!("/extensions/{}", escape(plugin));
                            for seg in path {
                                own.push('/');
                                own.push_str(&escape(seg));
                            }
                            (p == own || p.starts_with(&format!("{own}/")))
                                .then(|| (own.len(), header.clone()))
                        }
                        _ => None,
                    })
                    .max_by_key(|(len, _)| *len)
                    .map(|(_, h)| h)
            });
            (None, field)
        }
    };
    Problem {
        line,
        kind: if d.kind == Kind::Warning {
            "warning"
        } else {
            "error"
        },
        column,
        field,
        pointer,
        keyword: d.keyword,
        message: d.message,
    }
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A CSV column.
#[derive(Debug, Clone)]
enum Column {
    Name,
    Type,
    Id,
    /// `plugin.prop[.prop...]`: a property of the plugin's device configuration, with the JSON
    /// types its schema allows there (`None`: the schema does not say).
    Ext {
        header: String,
        plugin: String,
        path: Vec<String>,
        types: Option<Vec<String>>,
    },
}

fn header_error(p: Problem) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        format!("the CSV header: {}; nothing was imported", p.summary()),
    )
    .details(json!({"problems": [p]}))
}

/// The columns of a CSV header: `name` (required), `type`, `id`, and `<plugin>.<property>`
/// (nested properties joined by dots) for the loaded plugins.
fn header(runtime: &Runtime, record: &csv::StringRecord) -> ApiResult<Vec<Column>> {
    let line = record.position().map_or(1, |p| p.line());
    let mut columns = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, raw) in record.iter().enumerate() {
        let h = if i == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        }
        .trim();
        let problem = |message: String| {
            header_error(Problem {
                field: Some(h.to_owned()),
                ..Problem::error(line, message)
            })
        };
        if !seen.insert(h.to_owned()) {
            return Err(problem(format!("the column {h:?} is named twice")));
        }
        let column = match h {
            "name" => Column::Name,
            "type" => Column::Type,
            "id" => Column::Id,
            _ => {
                let mut parts = h.split('.');
                let plugin = parts.next().unwrap_or_default();
                let path: Vec<String> = parts.map(str::to_owned).collect();
                let Some(loaded) = runtime.plugin(plugin) else {
                    let mut plugins: Vec<&str> = runtime
                        .plugins()
                        .map(|p| p.manifest().name.as_str())
                        .collect();
                    plugins.sort();
                    return Err(problem(format!(
                        "unknown column {h:?}: the columns are name, type, id and \
                         <plugin>.<property> of a loaded plugin ({})",
                        plugins.join(", ")
                    )));
                };
                if path.is_empty() || path.iter().any(String::is_empty) {
                    return Err(problem(format!(
                        "the column {h:?} names no property: write {plugin}.<property>"
                    )));
                }
                let types = schema_types(&loaded.manifest().device_config_schema, &path);
                Column::Ext {
                    header: h.to_owned(),
                    plugin: plugin.to_owned(),
                    path,
                    types,
                }
            }
        };
        columns.push(column);
    }
    if !columns.iter().any(|c| matches!(c, Column::Name)) {
        return Err(header_error(Problem::error(
            line,
            "the header has no column \"name\"",
        )));
    }
    Ok(columns)
}

/// The JSON types a schema allows at a property path (`properties` at each step), `None` when
/// it does not say (no `type` there, or the path leaves what `properties` describe).
fn schema_types(schema: &Value, path: &[String]) -> Option<Vec<String>> {
    let mut at = schema;
    for seg in path {
        at = at.get("properties")?.get(seg)?;
    }
    match at.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

/// A CSV cell as a JSON value, typed by what the schema allows: text where a string is allowed
/// and no other allowed type reads it; otherwise the cell read as JSON when that gives an
/// allowed type (any type when the schema does not say), else the text (which the schema then
/// refuses, at its pointer).
fn typed(cell: &str, types: Option<&[String]>) -> Value {
    let allows = |t: &str| types.is_none_or(|ts| ts.iter().any(|x| x == t));
    if types.is_some_and(|ts| ts.iter().all(|t| t == "string")) {
        return Value::String(cell.to_owned());
    }
    if let Ok(v) = serde_json::from_str::<Value>(cell) {
        let fits = match &v {
            Value::Null => allows("null"),
            Value::Bool(_) => allows("boolean"),
            Value::Number(n) => allows("number") || (n.is_i64() || n.is_u64()) && allows("integer"),
            Value::String(_) => false, // a quoted cell stays as written
            Value::Array(_) => allows("array"),
            Value::Object(_) => allows("object"),
        };
        if fits {
            return v;
        }
    }
    Value::String(cell.to_owned())
}

/// Sets `path` in the object `part` to `value`, making objects on the way; `false` when a
/// value that is not an object is in the way.
fn set_path(part: &mut Value, path: &[String], value: Value) -> bool {
    let Some((last, inner)) = path.split_last() else {
        return false;
    };
    let mut at = part;
    for seg in inner {
        let Some(obj) = at.as_object_mut() else {
            return false;
        };
        at = obj
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match at.as_object_mut() {
        Some(obj) if !obj.contains_key(last) => {
            obj.insert(last.clone(), value);
            true
        }
        _ => false,
    }
}

/// The report of an import, as answered.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    /// Records read (blank lines aside).
    records: u64,
    created: u64,
    updated: u64,
    unchanged: u64,
    /// Records refused.
    failed: u64,
    /// Declared warnings (which refuse nothing).
    warnings: u64,
    /// Whether the writes were kept.
    committed: bool,
    /// The problems, in file order, up to [`MAX_LISTED`].
    problems: Vec<Problem>,
    /// Problems not listed.
    problems_omitted: u64,
}

impl Report {
    fn note(&mut self, p: Problem) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        } else {
            self.problems_omitted += 1;
        }
    }
}

/// `POST /api/v1/devices/import?match=...&partial=...`.
pub(crate) async fn import_devices<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    query: Result<Query<ImportQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Query(q) = query?;
    check_org(&app, &caller, q.org.as_deref()).await?;
    let match_by = MatchBy::parse(q.match_by.as_deref().unwrap_or("name"), &app.lookup)?;
    let partial = q.partial.unwrap_or(false);
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = format_of(media).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "an import is JSON Lines ({JSON_LINES}) or CSV ({CSV}), not {:?}",
                media
            ),
        )
    })?;

    let (chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(8);
    let (parsed_tx, mut parsed_rx) = mpsc::channel::<Parsed>(2 * BATCH);
    let forwarder = tokio::spawn(forward(body, super::routes::IMPORT_MAX_BYTES, chunks_tx));
    let reader = Reader {
        runtime: app.runtime.clone(),
        lookup: app.lookup.clone(),
        match_by: match_by.clone(),
        out: parsed_tx,
    };
    let reading = tokio::task::spawn_blocking(move || {
        let input = ChunkReader {
            rx: chunks_rx,
            current: Bytes::new(),
        };
        match format {
            Format::JsonLines => reader.json_lines(input),
            Format::Csv => reader.csv(input),
        }
    });

    // Begun with the first batch: a file whose every line is bad takes no lock.
    let mut tx: Option<crate::store::ImportTx> = None;
    let mut report = Report::default();
    let mut fatal = None;
    let mut batch: Vec<ImportRow> = Vec::with_capacity(BATCH);
    let mut lines: Vec<u64> = Vec::with_capacity(BATCH);
    let mut received = Vec::with_capacity(BATCH);
    loop {
        received.clear();
        let open = parsed_rx.recv_many(&mut received, BATCH).await > 0;
        for p in received.drain(..) {
            match p {
                Parsed::Row {
                    line,
                    row,
                    warnings,
                } => {
                    report.records += 1;
                    report.warnings += warnings.len() as u64;
                    warnings.into_iter().for_each(|w| report.note(w));
                    batch.push(row);
                    lines.push(line);
                }
                Parsed::Bad(problems) => {
                    report.records += 1;
                    report.failed += 1;
                    for p in problems {
                        if p.kind == "warning" {
                            report.warnings += 1;
                        }
                        report.note(p);
                    }
                }
                Parsed::Fatal(e) => fatal = Some(e),
            }
        }
        if batch.len() >= BATCH || (!open && !batch.is_empty()) {
            let import = match &mut tx {
                Some(t) => t,
                None => tx.insert(app.store.begin_import(caller.0.org_id).await?),
            };
            let outcomes = import.apply(&batch).await?;
            for (line, outcome) in lines.iter().zip(outcomes) {
                if let RowOutcome::Refused { pointer, message } = outcome {
                    report.failed += 1;
                    report.note(Problem {
                        pointer,
                        ..Problem::error(*line, message)
                    });
                }
            }
            batch.clear();
            lines.clear();
        }
        if !open {
            break;
        }
    }
    // The reader is done: so is the forwarder, unless the reader stopped early.
    let _ = reading.await;
    forwarder.abort();
    if let Ok(Err(failure)) = forwarder.await {
        fatal = Some(match failure {
            BodyFailure::TooLarge(limit) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("an import is at most {limit} bytes: split the file; nothing was imported"),
            ),
            BodyFailure::Read(e) => ApiError::bad_request(format!(
                "the body cannot be read: {e}; nothing was imported"
            )),
        });
    }
    // Problems sorted by line: store refusals come a batch later than the reader's.
    report.problems.sort_by_key(|p| p.line);
    let counts = tx.as_ref().map(|t| t.counts()).unwrap_or_default();
    report.created = counts.created;
    report.updated = counts.updated;
    report.unchanged = counts.unchanged;
    let keep = fatal.is_none() && (partial || report.failed == 0);
    match tx {
        Some(t) if keep => {
            t.commit().await?;
            if counts.updated > 0 {
                app.devices.clear();
            }
        }
        Some(t) => t.rollback().await?,
        None => {}
    }
    report.committed = keep;
    let outcome = match (&fatal, keep) {
        (Some(e), _) => e.body()["error"]["kind"]
            .as_str()
            .unwrap_or("error")
            .to_owned(),
        (None, true) => "ok".to_owned(),
        (None, false) => "invalid_input".to_owned(),
    };
    let detail = format!(
        "match {}{}: {} records, {} created, {} updated, {} unchanged, {} failed{}",
        match_by.text(),
        if partial { ", partial" } else { "" },
        report.records,
        report.created,
        report.updated,
        report.unchanged,
        report.failed,
        if keep { "" } else { "; nothing written" },
    );
    let entry = NewAudit {
        action: "device",
        op: Some("import"),
        outcome: &outcome,
        detail: &detail,
        ..Default::default()
    };
    audit(&app, &caller, entry).await;
    if let Some(e) = fatal {
        return Err(e);
    }
    if !keep {
        let first = report
            .problems
            .iter()
            .find(|p| p.kind == "error")
            .map(Problem::summary)
            .unwrap_or_default();
        let message = format!(
            "{} of {} records are invalid ({first}{}); nothing was imported (partial=true \
             imports the valid ones)",
            report.failed,
            report.records,
            if report.failed > 1 { ", ..." } else { "" },
        );
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
                .details(json!(report)),
        );
    }
    Ok(Json(json!(report)).into_response())
}

/// `GET /api/v1/devices/export`: the devices the list's filters select, as JSON Lines (the
/// default) or CSV (`Accept: text/csv`), read and sent a page at a time.
pub(crate) async fn export_devices<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Query(mut pairs) = query?;
    let org = pairs
        .iter()
        .position(|(k, _)| k == "org")
        .map(|i| pairs.remove(i).1);
    check_org(&app, &caller, org.as_deref()).await?;
    if let Some((key, _)) = pairs.iter().find(|(k, _)| k == "cursor" || k == "limit") {
        return Err(ApiError::bad_request(format!(
            "an export has every matching device: {key:?} is for the paged list"
        )));
    }
    let mut q = device_query(pairs, &app.lookup)?;
    q.limit = 500;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = accept
        .split(',')
        .filter_map(format_of)
        .next()
        .unwrap_or(Format::JsonLines);
    let columns = match format {
        Format::Csv => Some(export_columns(&app.runtime)),
        Format::JsonLines => None,
    };
    let org_id = caller.0.org_id;
    let state = Export {
        app: app.clone(),
        org_id,
        query: q,
        columns,
        started: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let page = s.page().await;
        Some((page, s))
    });
    let media = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::JsonLines => JSON_LINES,
    };
    Ok(([(header::CONTENT_TYPE, media)], Body::from_stream(stream)).into_response())
}

/// An export in progress.
struct Export<S> {
    app: Arc<App<S>>,
    org_id: i64,
    query: DeviceQuery,
    /// The CSV columns (`None`: JSON Lines).
    columns: Option<Vec<(String, String)>>,
    started: bool,
    done: bool,
}

impl<S: Store> Export<S> {
    /// The next page, encoded.
    async fn page(&mut self) -> Result<Bytes, crate::store::StoreError> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            if let Some(cols) = &self.columns {
                let mut w = csv::Writer::from_writer(&mut out);
                let mut head = vec!["id".to_owned(), "name".to_owned(), "type".to_owned()];
                head.extend(cols.iter().map(|(p, f)| format!("{p}.{f}")));
                w.write_record(&head).map_err(csv_failure)?;
                w.flush()
                    .map_err(|e| crate::store::StoreError::Database(e.to_string()))?;
            }
        }
        let (devices, next) = match self.app.store.devices(self.org_id, &self.query).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "export stopped: the store failed");
                self.done = true;
                return Err(e);
            }
        };
        self.query.cursor = next;
        self.done = next.is_none();
        match &self.columns {
            None => {
                for d in &devices {
                    serde_json::to_writer(&mut out, &export_record(d))
                        .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
                    out.push(b'\n');
                }
            }
            Some(cols) => {
                let mut w = csv::Writer::from_writer(&mut out);
                for d in &devices {
                    let mut cells = vec![
                        d.id.clone(),
                        d.name.clone(),
                        d.device_type.clone().unwrap_or_default(),
                    ];
                    cells.extend(cols.iter().map(|(p, f)| {
                        match d.extensions.get(p).and_then(|part| part.get(f)) {
                            None | Some(Value::Null) => String::new(),
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                        }
                    }));
                    w.write_record(&cells).map_err(csv_failure)?;
                }
                w.flush()
                    .map_err(|e| crate::store::StoreError::Database(e.to_string()))?;
            }
        }
        Ok(Bytes::from(out))
    }
}

fn csv_failure(e: csv::Error) -> crate::store::StoreError {
    crate::store::StoreError::Database(format!("CSV: {e}"))
}

/// A device as an export line: what an import reads back (its id for `match=id`).
fn export_record(d: &Device) -> Value {
    json!({"id": d.id, "name": d.name, "type": d.device_type, "extensions": d.extensions})
}

/// The extension columns of a CSV export: each top-level property of each loaded plugin's
/// device configuration schema, by plugin and property.
fn export_columns(runtime: &Runtime) -> Vec<(String, String)> {
    let mut cols: Vec<(String, String)> = runtime
        .plugins()
        .flat_map(|p| {
            let m = p.manifest();
            m.device_config_schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .keys()
                        .map(|k| (m.name.clone(), k.clone()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    cols.sort();
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(ts: &[&str]) -> Vec<String> {
        ts.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn cells_are_typed_by_the_schema() {
        // A string property keeps digits (leading zeros) as text.
        assert_eq!(typed("00123", Some(&types(&["string"]))), json!("00123"));
        assert_eq!(typed("true", Some(&types(&["string"]))), json!("true"));
        // Numbers, booleans, objects where the schema wants them.
        assert_eq!(typed("42", Some(&types(&["integer"]))), json!(42));
        assert_eq!(typed("4.5", Some(&types(&["number"]))), json!(4.5));
        assert_eq!(typed("false", Some(&types(&["boolean"]))), json!(false));
        assert_eq!(
            typed(r#"{"a":1}"#, Some(&types(&["object"]))),
            json!({"a": 1})
        );
        // A value of the wrong type stays text, for the schema to refuse at its pointer.
        assert_eq!(typed("4.5", Some(&types(&["integer"]))), json!("4.5"));
        assert_eq!(typed("abc", Some(&types(&["integer"]))), json!("abc"));
        // Several types: the cell's own if allowed, else text when text is allowed.
        assert_eq!(typed("7", Some(&types(&["string", "integer"]))), json!(7));
        assert_eq!(
            typed("x7", Some(&types(&["string", "integer"]))),
            json!("x7")
        );
        // No type in the schema: JSON-looking cells are read as JSON.
        assert_eq!(typed("7", None), json!(7));
        assert_eq!(typed("[1,2]", None), json!([1, 2]));
        assert_eq!(typed("\"7\"", None), json!("\"7\""));
        assert_eq!(typed("hello", None), json!("hello"));
    }

    #[test]
    fn schema_types_follow_properties() {
        let schema = json!({"type": "object", "properties": {
            "serial": {"type": "string"},
            "pos": {"type": "object", "properties": {"lat": {"type": ["number", "null"]}}},
            "any": {}
        }});
        let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            schema_types(&schema, &path(&["serial"])),
            Some(types(&["string"]))
        );
        assert_eq!(
            schema_types(&schema, &path(&["pos", "lat"])),
            Some(types(&["number", "null"]))
        );
        assert_eq!(schema_types(&schema, &path(&["any"])), None);
        assert_eq!(schema_types(&schema, &path(&["missing"])), None);
    }

    #[test]
    fn nested_paths_build_objects() {
        let mut part = json!({});
        assert!(set_path(&mut part, &["a".into(), "b".into()], json!(1)));
        assert!(set_path(&mut part, &["a".into(), "c".into()], json!(2)));
        assert_eq!(part, json!({"a": {"b": 1, "c": 2}}));
        // A value in the way, or set twice.
        assert!(!set_path(
            &mut part,
            &["a".into(), "b".into(), "x".into()],
            json!(3)
        ));
        assert!(!set_path(&mut part, &["a".into(), "b".into()], json!(3)));
    }

    #[test]
    fn media_types() {
        assert_eq!(format_of("application/x-ndjson"), Some(Format::JsonLines));
        assert_eq!(format_of("text/csv; charset=utf-8"), Some(Format::Csv));
        assert_eq!(format_of("application/json"), None);
    }

    #[tokio::test]
    async fn the_body_is_cut_at_its_limit() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..3).map(|_| Ok(Bytes::from(vec![b'x'; 600]))).collect();
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let (tx, mut rx) = mpsc::channel(8);
        let forwarding = tokio::spawn(forward(body, 1000, tx));
        let mut got = 0;
        while let Some(c) = rx.recv().await {
            got += c.len();
        }
        assert!(matches!(
            forwarding.await.unwrap(),
            Err(BodyFailure::TooLarge(1000))
        ));
        // What came through before the limit: the first chunk only.
        assert_eq!(got, 600);
    }
}
