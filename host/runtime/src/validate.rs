//! Validation of many device extension configurations at once: files, directories, JSON Lines
//! and standard input, on every core, in constant memory, with the host's own checks.
//!
//! This is the engine of `devext validate`. Each document goes through
//! [`Runtime::is_valid_device_extensions`] (the fast path); only a document that fails is
//! checked again with [`Runtime::validate_device_extensions`] for its violations, and only then
//! is its text re-scanned to turn each violation's JSON pointer into a line and column. A valid
//! document is also checked for the warnings its plugins declare ([`Runtime::device_warnings`]).
//!
//! Work is cut into jobs (a few small files, or one block of JSON Lines); a producer thread
//! reads JSON Lines and standard input in blocks, worker threads read JSON files themselves and
//! validate, and the calling thread hands the results to a [`Reporter`] in input order. A fixed
//! number of block buffers circulates between them, which bounds memory whatever the input size.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::Runtime;

pub(crate) mod locate;

/// Bytes of JSON Lines per job (a block ends at a line end, so a longer line makes it longer).
const BLOCK: usize = 256 * 1024;
/// Small files per job, at most.
const FILES_PER_JOB: usize = 128;

/// The file name extensions a directory is searched for, each with whether its files are JSON
/// Lines (one document per line) rather than one JSON document. A file named directly is JSON
/// Lines if its extension says so, else one JSON document, whatever its extension.
pub const EXTENSIONS: &[(&str, bool)] = &[("json", false), ("jsonl", true), ("ndjson", true)];

/// One input named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A JSON file (one document), a JSON Lines file (`*.jsonl` or `*.ndjson`, one document per
    /// line) or a directory (recursively, every file with one of the [`EXTENSIONS`], in
    /// byte-wise path order).
    Path(PathBuf),
    /// Standard input: one JSON document if the whole input is one, otherwise JSON Lines.
    Stdin,
}

impl Input {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(arg: &std::ffi::OsStr) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }
}

/// How to validate.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A declared warning makes its document invalid.
    pub strict: bool,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    /// An input that holds no document is fine (by default it is a [`Kind::Empty`] diagnostic).
    pub allow_empty: bool,
}

/// What a [`Diagnostic`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The document violates a schema.
    Invalid,
    /// A plugin's declared warning (an error under [`Options::strict`]).
    Warning,
    /// The document is not JSON.
    NotJson,
    /// The input could not be read.
    Unreadable,
    /// An input named holds no document at all: a directory without a file to validate (or
    /// whose files hold none), or a JSON Lines file or standard input with only blank lines.
    /// Not raised under [`Options::allow_empty`].
    Empty,
}

/// One thing to tell about one document or input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What it is about.
    pub kind: Kind,
    /// 1-based line in the file, when known.
    pub line: Option<u64>,
    /// 1-based column (in characters), when known.
    pub column: Option<u64>,
    /// JSON pointer in the document (violations and warnings).
    pub pointer: Option<String>,
    /// The schema keyword that failed, or a warning's code.
    pub keyword: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

/// Counts of a run. `documents = valid + invalid + not_json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Documents seen.
    pub documents: u64,
    /// Documents that passed.
    pub valid: u64,
    /// Documents that violate a schema (or raise a warning, under `strict`).
    pub invalid: u64,
    /// Documents that are not JSON.
    pub not_json: u64,
    /// Inputs (files, directories, standard input) that could not be read.
    pub unreadable: u64,
    /// Inputs named that hold no document (see [`Kind::Empty`]).
    pub empty: u64,
    /// Files read (standard input counts as one).
    pub files: u64,
    /// Declared warnings raised.
    pub warnings: u64,
}

impl Summary {
    /// The process exit code: 3 if an input could not be read, is not JSON or holds no
    /// document, else 1 if a document is invalid, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.not_json > 0 || self.unreadable > 0 || self.empty > 0 {
            3
        } else if self.invalid > 0 {
            1
        } else {
            0
        }
    }

    fn add(&mut self, o: &Summary) {
        self.documents += o.documents;
        self.valid += o.valid;
        self.invalid += o.invalid;
        self.not_json += o.not_json;
        self.unreadable += o.unreadable;
        self.empty += o.empty;
        self.files += o.files;
        self.warnings += o.warnings;
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: u64, one: &'static str, many: &'static str| if n == 1 { one } else { many };
        write!(
            f,
            "{} {}, {} valid, {} invalid ({} {})",
            self.documents,
            plural(self.documents, "document", "documents"),
            self.valid,
            self.invalid,
            self.files,
            plural(self.files, "file", "files"),
        )?;
        if self.not_json > 0 {
            write!(f, ", {} not JSON", self.not_json)?;
        }
        if self.unreadable > 0 {
            write!(f, ", {} unreadable", self.unreadable)?;
        }
        if self.empty > 0 {
            let i = plural(self.empty, "input", "inputs");
            write!(f, ", {} empty {i}", self.empty)?;
        }
        if self.warnings > 0 {
            let w = plural(self.warnings, "warning", "warnings");
            write!(f, ", {} {w}", self.warnings)?;
        }
        Ok(())
    }
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Counts so far.
    pub summary: &'a Summary,
    /// Inputs (files, standard input) finished.
    pub inputs_done: u64,
    /// Inputs in all.
    pub inputs_total: u64,
}

/// Receives the results of a run, in input order.
pub trait Reporter {
    /// One diagnostic about the input shown as `path`.
    fn report(&mut self, path: &str, diagnostic: &Diagnostic) -> io::Result<()>;

    /// Called after each job; cheap to ignore.
    fn progress(&mut self, _progress: Progress<'_>) {}

    /// Whether diagnostics of `kind` are wanted at all, asked once before the run. A kind not
    /// wanted is still counted in the [`Summary`], but its diagnostics are never built (a
    /// quiet run drops warnings; building them is most of what a warned document costs).
    fn wants(&self, _kind: Kind) -> bool {
        true
    }

    /// A formatter to run on the worker threads, asked once before the run. With one, the
    /// diagnostics the workers find are formatted there, in parallel, and each job's bytes come
    /// to [`Reporter::formatted`] in input order instead of each diagnostic to
    /// [`Reporter::report`] (which still gets those the run itself raises: inputs that hold no
    /// document). Without one (the default), every diagnostic goes to `report`.
    fn formatter(&self) -> Option<Arc<dyn Formatter>> {
        None
    }

    /// The diagnostics of one job as the [`Reporter::formatter`] wrote them, in input order.
    /// Only called for a reporter that gives a formatter; the default fails the run, so that
    /// a formatter without this method loses nothing silently.
    fn formatted(&mut self, _formatted: &Formatted) -> io::Result<()> {
        Err(io::Error::other(
            "the reporter gave a formatter but does not take its output (Reporter::formatted)",
        ))
    }
}

/// Turns diagnostics into the bytes a [`Reporter`] writes, on the worker threads (see
/// [`Reporter::formatter`]).
pub trait Formatter: Send + Sync {
    /// Appends the bytes for `diagnostic`, about the input shown as `path`, to `out` (nothing,
    /// for a diagnostic not to show).
    fn format(&self, path: &str, diagnostic: &Diagnostic, out: &mut Vec<u8>);
}

/// The diagnostics of one job, formatted: their bytes end to end, and each one's kind.
#[derive(Debug, Default)]
pub struct Formatted {
    bytes: Vec<u8>,
    /// Each diagnostic's kind and where its bytes end (those that wrote nothing left out).
    items: Vec<(Kind, usize)>,
}

impl Formatted {
    /// All the bytes, in order.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each diagnostic's kind and bytes, in order.
    pub fn items(&self) -> impl Iterator<Item = (Kind, &[u8])> {
        let mut start = 0;
        self.items.iter().map(move |&(kind, end)| {
            let bytes = &self.bytes[start..end];
            start = end;
            (kind, bytes)
        })
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn push(&mut self, formatter: &dyn Formatter, path: &str, diagnostic: &Diagnostic) {
        let start = self.bytes.len();
        formatter.format(path, diagnostic, &mut self.bytes);
        if self.bytes.len() > start {
            self.items.push((diagnostic.kind, self.bytes.len()));
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }
}

/// Validates every document of `inputs` with `runtime`'s loaded plugins, and reports each
/// problem to `reporter` in input order. Fails only if the reporter does; unreadable inputs,
/// malformed documents and inputs that hold no document are diagnostics.
pub fn run(
    runtime: &Runtime,
    inputs: &[Input],
    options: &Options,
    reporter: &mut dyn Reporter,
) -> io::Result<Summary> {
    let (sources, spans) = expand(inputs);
    let workers = match options.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let credits = workers * 4;
    let detail = Detail {
        strict: options.strict,
        warnings: reporter.wants(Kind::Warning),
    };
    let formatter = reporter.formatter();
    // Each source's name as shown, made once (the workers format with it).
    let names: Vec<String> = sources.iter().map(Source::display).collect();
    // The results' buffers, back from the reporter to the workers: a job's diagnostics are
    // built into memory already sized by an earlier job.
    let pool: Mutex<Vec<Batch>> = Mutex::new(Vec::new());

    std::thread::scope(|scope| {
        let (job_tx, job_rx) = sync_channel::<Job>(credits);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = channel::<Done>();
        let (credit_tx, credit_rx) = sync_channel::<Vec<u8>>(credits);
        for _ in 0..credits {
            // Cannot fail: the channel has room for every credit.
            let _ = credit_tx.send(Vec::new());
        }
        let sources = &sources;
        let shared = Shared {
            runtime,
            sources,
            names: &names,
            detail,
            formatter: formatter.as_deref(),
            pool: &pool,
        };
        scope.spawn(move || produce(sources, workers, &job_tx, &credit_rx));
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || work(shared, &job_rx, &done_tx));
        }
        drop(done_tx);
        let empty = (!options.allow_empty).then_some(&spans[..]);
        collect(&names, &pool, empty, done_rx, credit_tx, reporter)
    })
}

/// What every worker reads.
#[derive(Clone, Copy)]
struct Shared<'a> {
    runtime: &'a Runtime,
    sources: &'a [Source],
    /// Each source's name as shown.
    names: &'a [String],
    detail: Detail,
    /// The reporter's, if it gave one: diagnostics are then formatted by the workers.
    formatter: Option<&'a dyn Formatter>,
    /// Buffers to build results into.
    pool: &'a Mutex<Vec<Batch>>,
}

/// The diagnostics of one job: a list of them, or (with a [`Formatter`]) their bytes.
#[derive(Default)]
struct Batch {
    diagnostics: Vec<(usize, Diagnostic)>,
    formatted: Formatted,
}

/// What the workers build beside the counts.
#[derive(Debug, Clone, Copy)]
struct Detail {
    /// A declared warning makes its document invalid.
    strict: bool,
    /// Warning diagnostics are built (else only counted).
    warnings: bool,
}

/// One file (or standard input) to read, or an input that failed before reading.
#[derive(Debug)]
enum Source {
    Json(PathBuf),
    Lines(PathBuf),
    Stdin,
    Failed(PathBuf, String),
}

impl Source {
    fn display(&self) -> String {
        match self {
            Source::Json(p) | Source::Lines(p) | Source::Failed(p, _) => p.display().to_string(),
            Source::Stdin => "<stdin>".to_owned(),
        }
    }
}

/// One input named, as the range of the sources it expanded to.
#[derive(Debug)]
struct Span {
    sources: Range<usize>,
    display: String,
    is_dir: bool,
}

/// The inputs as files, directories expanded, and the sources of each input.
fn expand(inputs: &[Input]) -> (Vec<Source>, Vec<Span>) {
    let mut out = Vec::new();
    let mut spans = Vec::with_capacity(inputs.len());
    for input in inputs {
        let start = out.len();
        let mut is_dir = false;
        match input {
            Input::Stdin => out.push(Source::Stdin),
            Input::Path(path) => match std::fs::metadata(path) {
                Err(e) => out.push(Source::Failed(path.clone(), format!("cannot read: {e}"))),
                Ok(m) if m.is_dir() => {
                    is_dir = true;
                    let mut found = Vec::new();
                    walk(path, &mut found);
                    found.sort_by(|a, b| {
                        a.path()
                            .as_os_str()
                            .as_encoded_bytes()
                            .cmp(b.path().as_os_str().as_encoded_bytes())
                    });
                    out.extend(found);
                }
                Ok(_) if is_lines(path) => out.push(Source::Lines(path.clone())),
                Ok(_) => out.push(Source::Json(path.clone())),
            },
        }
        spans.push(Span {
            sources: start..out.len(),
            display: match input {
                Input::Path(path) => path.display().to_string(),
                Input::Stdin => Source::Stdin.display(),
            },
            is_dir,
        });
    }
    (out, spans)
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::Json(p) | Source::Lines(p) | Source::Failed(p, _) => p,
            Source::Stdin => Path::new("-"),
        }
    }
}

/// Whether `path` has one of the [`EXTENSIONS`]: `Some(true)` for JSON Lines.
fn extension_kind(path: &Path) -> Option<bool> {
    let ext = path.extension()?;
    EXTENSIONS
        .iter()
        .find(|(e, _)| ext == *e)
        .map(|&(_, lines)| lines)
}

/// `*.json, *.jsonl or *.ndjson`.
fn extension_list() -> String {
    let names: Vec<String> = EXTENSIONS.iter().map(|(e, _)| format!("*.{e}")).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn is_lines(path: &Path) -> bool {
    extension_kind(path) == Some(true)
}

/// Every file with one of the [`EXTENSIONS`] under `dir`, skipping hidden entries and not
/// following symbolic links to directories (no cycles).
fn walk(dir: &Path, out: &mut Vec<Source>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            out.push(Source::Failed(
                dir.to_owned(),
                format!("cannot read the directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                out.push(Source::Failed(
                    dir.to_owned(),
                    format!("cannot read the directory: {e}"),
                ));
                continue;
            }
        };
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let path = entry.path();
        let Ok(mut kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => kind = m.file_type(),
                _ => continue,
            }
        }
        if kind.is_dir() {
            walk(&path, out);
        } else {
            match extension_kind(&path) {
                Some(true) => out.push(Source::Lines(path)),
                Some(false) => out.push(Source::Json(path)),
                None => {}
            }
        }
    }
}

/// A unit of work, with the buffer that carries it (its credit).
struct Job {
    seq: u64,
    work: Work,
    buf: Vec<u8>,
    /// Inputs this job finishes (for progress).
    completes: u64,
    /// Files this job accounts for (JSON Lines files and standard input are counted here).
    files: u64,
}

enum Work {
    /// Sources to read and validate (each JSON or failed).
    Sources(Range<usize>),
    /// Complete lines of JSON Lines source `source`, the first being line `first_line`.
    Lines { source: usize, first_line: u64 },
    /// The whole text of `source` is one document.
    Whole { source: usize },
    /// `source` could not be read (from `line` on, when known).
    Unreadable {
        source: usize,
        line: Option<u64>,
        message: String,
    },
}

/// The result of a job.
struct Done {
    seq: u64,
    /// The sources the job is about; the first `completes` of them are finished with it.
    sources: Range<usize>,
    summary: Summary,
    batch: Batch,
    buf: Vec<u8>,
    completes: u64,
}

/// The producer: turns sources into jobs, reading JSON Lines and standard input itself.
fn produce(
    sources: &[Source],
    workers: usize,
    jobs: &SyncSender<Job>,
    credits: &Receiver<Vec<u8>>,
) {
    let mut p = Producer {
        seq: 0,
        jobs,
        credits,
    };
    let json_files = sources
        .iter()
        .filter(|s| matches!(s, Source::Json(_) | Source::Failed(..)))
        .count();
    let per_job = (json_files / (workers * 8)).clamp(1, FILES_PER_JOB);
    let mut i = 0;
    while i < sources.len() {
        match &sources[i] {
            Source::Json(_) | Source::Failed(..) => {
                let start = i;
                while i < sources.len()
                    && i - start < per_job
                    && matches!(sources[i], Source::Json(_) | Source::Failed(..))
                {
                    i += 1;
                }
                let n = (i - start) as u64;
                if p.send(Work::Sources(start..i), Vec::new(), n, 0).is_none() {
                    return;
                }
                continue;
            }
            Source::Lines(path) => {
                let done = match File::open(path) {
                    Ok(file) => p.lines(i, file, Vec::new()),
                    Err(e) => p.send(
                        Work::Unreadable {
                            source: i,
                            line: None,
                            message: format!("cannot read: {e}"),
                        },
                        Vec::new(),
                        1,
                        0,
                    ),
                };
                if done.is_none() {
                    return;
                }
            }
            Source::Stdin => {
                if p.stdin(i).is_none() {
                    return;
                }
            }
        }
        i += 1;
    }
}

struct Producer<'a> {
    seq: u64,
    jobs: &'a SyncSender<Job>,
    credits: &'a Receiver<Vec<u8>>,
}

impl Producer<'_> {
    /// Waits for a buffer (the credit for one more job in flight).
    fn credit(&self) -> Option<Vec<u8>> {
        self.credits.recv().ok()
    }

    /// Sends a job; `None` when the run is over (the collector stopped).
    fn send(&mut self, work: Work, buf: Vec<u8>, completes: u64, files: u64) -> Option<()> {
        let buf = if buf.capacity() == 0 {
            self.credit()?
        } else {
            buf
        };
        let seq = self.seq;
        self.seq += 1;
        self.jobs
            .send(Job {
                seq,
                work,
                buf,
                completes,
                files,
            })
            .ok()
    }

    /// Streams a JSON Lines source in blocks of whole lines; `pending` is text already read.
    fn lines(&mut self, source: usize, mut reader: impl Read, pending: Vec<u8>) -> Option<()> {
        let mut carry = pending;
        let mut line = 1u64;
        let mut files = 1;
        loop {
            let mut buf = self.credit()?;
            buf.clear();
            buf.append(&mut carry);
            let eof = match fill(&mut reader, &mut buf) {
                Ok(eof) => eof,
                Err(e) => {
                    // Validate what was read, then report the failure at the next line.
                    let end = memchr::memrchr(b'\n', &buf).map_or(0, |p| p + 1);
                    buf.truncate(end);
                    let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
                    self.send(
                        Work::Lines {
                            source,
                            first_line: line,
                        },
                        buf,
                        0,
                        files,
                    )?;
                    return self.send(
                        Work::Unreadable {
                            source,
                            line: Some(line + lines),
                            message: format!("cannot read: {e}"),
                        },
                        Vec::new(),
                        1,
                        0,
                    );
                }
            };
            if !eof {
                // `fill` stops only after a line end.
                let end = memchr::memrchr(b'\n', &buf).map_or(buf.len(), |p| p + 1);
                carry.extend_from_slice(&buf[end..]);
                buf.truncate(end);
            }
            let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
            let completes = u64::from(eof);
            self.send(
                Work::Lines {
                    source,
                    first_line: line,
                },
                buf,
                completes,
                files,
            )?;
            files = 0;
            line += lines;
            if eof {
                return Some(());
            }
        }
    }

    /// Standard input: one document if it is one, else JSON Lines.
    ///
    /// Reads up to the end of the first non-blank line. If that line is a whole JSON value, the
    /// input cannot be one document unless nothing else follows, so it is streamed as JSON Lines
    /// (one line of JSON Lines is the same document). Otherwise the whole input is read: one
    /// document if it parses as one, else JSON Lines (whose first line is then malformed).
    fn stdin(&mut self, source: usize) -> Option<()> {
        let stdin = io::stdin();
        let mut reader = stdin.lock();
        let mut head = Vec::new();
        let unreadable = |e: io::Error| Work::Unreadable {
            source,
            line: None,
            message: format!("cannot read: {e}"),
        };
        let first_line_end = loop {
            let from = head.len();
            head.resize(from + 64 * 1024, 0);
            let n = match read_retrying(&mut reader, &mut head[from..]) {
                Ok(n) => n,
                Err(e) => return self.send(unreadable(e), Vec::new(), 1, 1),
            };
            head.truncate(from + n);
            let mut start = 0;
            let mut found = None;
            for nl in memchr::memchr_iter(b'\n', &head) {
                if !head[start..nl].trim_ascii().is_empty() {
                    found = Some(nl);
                    break;
                }
                start = nl + 1;
            }
            if found.is_some() || n == 0 {
                break found;
            }
        };
        if let Some(end) = first_line_end {
            let first = head[..end].trim_ascii();
            if serde_json::from_slice::<serde::de::IgnoredAny>(first).is_ok() {
                return self.lines(source, reader, head);
            }
        }
        if let Err(e) = reader.read_to_end(&mut head) {
            return self.send(unreadable(e), Vec::new(), 1, 1);
        }
        let text = strip_bom(&head);
        if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok() {
            self.send(Work::Whole { source }, head, 1, 1)
        } else {
            self.lines(source, io::empty(), head)
        }
    }
}

/// Reads into `buf` until it holds at least [`BLOCK`] bytes ending after a line end, or the end
/// of input. Returns whether the input ended.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut target = BLOCK;
    let mut scanned = 0;
    loop {
        if buf.len() >= target {
            if memchr::memchr(b'\n', &buf[scanned..]).is_some() {
                return Ok(false);
            }
            // One line longer than a block: keep reading until it ends.
            scanned = buf.len();
            target = buf.len() * 2;
        }
        let len = buf.len();
        buf.resize(target, 0);
        let n = read_retrying(reader, &mut buf[len..])?;
        buf.truncate(len + n);
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_retrying(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn strip_bom(text: &[u8]) -> &[u8] {
    text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text)
}

/// A worker: takes jobs until there are none, validates, sends the results.
fn work(shared: Shared<'_>, jobs: &Mutex<Receiver<Job>>, done: &std::sync::mpsc::Sender<Done>) {
    let Shared {
        runtime,
        sources,
        detail,
        ..
    } = shared;
    let mut file_buf: Vec<u8> = Vec::new();
    let mut located = Located::default();
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let batch = shared
            .pool
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_default();
        let mut out = Output {
            runtime,
            detail,
            summary: Summary {
                files: job.files,
                ..Summary::default()
            },
            sink: Sink {
                format: shared.formatter.map(|f| (f, shared.names)),
                batch,
            },
            located: RefCell::new(std::mem::take(&mut located)),
        };
        let covers = match &job.work {
            Work::Sources(range) => range.clone(),
            Work::Lines { source, .. }
            | Work::Whole { source }
            | Work::Unreadable { source, .. } => *source..*source + 1,
        };
        match job.work {
            Work::Sources(range) => {
                for i in range {
                    match &sources[i] {
                        Source::Json(path) => match read_file(path, &mut file_buf) {
                            Ok(n) => {
                                out.summary.files += 1;
                                out.document(i, strip_bom(&file_buf[..n]), None);
                            }
                            Err(e) => out.unreadable(i, None, format!("cannot read: {e}")),
                        },
                        Source::Failed(_, message) => out.unreadable(i, None, message.clone()),
                        Source::Lines(_) | Source::Stdin => {}
                    }
                }
            }
            Work::Lines { source, first_line } => {
                let mut text: &[u8] = &job.buf;
                if first_line == 1 {
                    text = strip_bom(text);
                }
                let mut start = 0;
                let ends = memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len()));
                for (line, end) in (first_line..).zip(ends) {
                    let raw = &text[start..end];
                    start = end + 1;
                    let doc = raw.strip_suffix(b"\r").unwrap_or(raw);
                    if !doc.trim_ascii().is_empty() {
                        out.document(source, doc, Some(line));
                    }
                }
            }
            Work::Whole { source } => out.document(source, strip_bom(&job.buf), None),
            Work::Unreadable {
                source,
                line,
                message,
            } => out.unreadable(source, line, message),
        }
        located = out.located.into_inner();
        let result = Done {
            seq: job.seq,
            sources: covers,
            summary: out.summary,
            batch: out.sink.batch,
            buf: job.buf,
            completes: job.completes,
        };
        if done.send(result).is_err() {
            return;
        }
    }
}

/// Reads the whole file at `path` into `buf` and returns its length. The buffer is reused from
/// file to file (no allocation once it is big enough) and the file is not `stat`ed.
fn read_file(path: &Path, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut file = File::open(path)?;
    if buf.len() < 16 * 1024 {
        buf.resize(16 * 1024, 0);
    }
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = read_retrying(&mut file, &mut buf[filled..])?;
        if n == 0 {
            return Ok(filled);
        }
        filled += n;
    }
}

/// The diagnostics of one document given as text, exactly as [`run`] reports them for a
/// whole file (not JSON, violations, declared warnings; each with line, column and pointer):
/// for a caller that holds one document, such as an editor that checks before saving.
pub fn document_diagnostics(runtime: &Runtime, text: &[u8]) -> Vec<Diagnostic> {
    let (_, diagnostics) = validate_one(runtime, strip_bom(text), false);
    diagnostics
}

/// Validates one document that is a whole file (`text`, any bytes) as [`run`] does, without
/// threads: its counts and diagnostics. For the dashboard's editor, the fuzz targets and
/// benchmarks.
pub(crate) fn validate_one(
    runtime: &Runtime,
    text: &[u8],
    strict: bool,
) -> (Summary, Vec<Diagnostic>) {
    let mut out = Output {
        runtime,
        detail: Detail {
            strict,
            warnings: true,
        },
        summary: Summary::default(),
        sink: Sink {
            format: None,
            batch: Batch::default(),
        },
        located: RefCell::default(),
    };
    out.document(0, text, None);
    (
        out.summary,
        (out.sink.batch.diagnostics.into_iter())
            .map(|(_, d)| d)
            .collect(),
    )
}

/// The results of one job being built.
struct Output<'r> {
    runtime: &'r Runtime,
    detail: Detail,
    summary: Summary,
    sink: Sink<'r>,
    /// The pointers an invalid document's messages echoed, and where they were found: the
    /// violations' positions. Kept from document to document (no allocation once sized).
    located: RefCell<Located>,
}

/// JSON pointers, each with the offset of its value in a document's text, if found.
#[derive(Default)]
struct Located {
    /// The pointers end to end.
    pointers: String,
    /// Each pointer's end in `pointers`, and its value's offset.
    found: Vec<(usize, Option<usize>)>,
}

impl Located {
    fn clear(&mut self) {
        self.pointers.clear();
        self.found.clear();
    }

    fn push(&mut self, pointer: &str, at: Option<usize>) {
        self.pointers.push_str(pointer);
        self.found.push((self.pointers.len(), at));
    }

    /// Pointer `i` and its value's offset.
    fn get(&self, i: usize) -> Option<(&str, Option<usize>)> {
        let &(end, at) = self.found.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.found[i - 1].0,
        };
        Some((&self.pointers[start..end], at))
    }
}

/// Where a job's diagnostics go.
struct Sink<'r> {
    /// The reporter's formatter and the sources' names, to format each diagnostic as it is
    /// found; without, diagnostics are listed.
    format: Option<(&'r dyn Formatter, &'r [String])>,
    batch: Batch,
}

impl Sink<'_> {
    fn push(&mut self, source: usize, diagnostic: Diagnostic) {
        match self.format {
            Some((formatter, names)) => {
                let name = names.get(source).map_or("", String::as_str);
                self.batch.formatted.push(formatter, name, &diagnostic);
            }
            None => self.batch.diagnostics.push((source, diagnostic)),
        }
    }
}

impl Output<'_> {
    fn unreadable(&mut self, source: usize, line: Option<u64>, message: String) {
        self.summary.unreadable += 1;
        self.sink.push(
            source,
            Diagnostic {
                kind: Kind::Unreadable,
                line,
                column: None,
                pointer: None,
                keyword: None,
                message,
            },
        );
    }

    /// Validates one document. `line` is its line in a JSON Lines source (positions are then
    /// on that line); `None` for a document that is a whole file.
    fn document(&mut self, source: usize, text: &[u8], line: Option<u64>) {
        self.summary.documents += 1;
        let position = |offset: usize| {
            let (l, c) = locate::line_col(text, offset);
            match line {
                Some(n) => (n + l - 1, c),
                None => (l, c),
            }
        };
        let doc: Value = match serde_json::from_slice(text) {
            Ok(doc) => doc,
            Err(e) => {
                self.summary.not_json += 1;
                let column = locate::char_col(text, e.line(), e.column());
                let line = match line {
                    Some(n) => n + e.line().max(1) as u64 - 1,
                    None => e.line().max(1) as u64,
                };
                self.sink.push(
                    source,
                    Diagnostic {
                        kind: Kind::NotJson,
                        line: Some(line),
                        column: Some(column),
                        pointer: None,
                        keyword: None,
                        message: format!("not JSON: {}", serde_message(&e)),
                    },
                );
                return;
            }
        };
        if !self.runtime.is_valid_device_extensions(&doc) {
            self.summary.invalid += 1;
            // Messages show the offending value as written (`doc` has lost the digits of an
            // integer beyond 64 bits, for one). Each pointer is located once: the offsets found
            // for the echoes are the violations' positions too.
            let located = &self.located;
            located.borrow_mut().clear();
            let echo = |pointer: &str| {
                let at = locate::value_offset(text, pointer);
                located.borrow_mut().push(pointer, at);
                locate::value_text_at(text, at?)
            };
            let violations = self
                .runtime
                .device_extension_violations_with_unexpected(&doc, &echo);
            let located = located.borrow();
            // The echoes were asked in the violations' order (not for every violation).
            let mut next = 0;
            for (v, unexpected) in violations {
                let at = match located.get(next) {
                    Some((p, at)) if p == v.pointer => {
                        next += 1;
                        at
                    }
                    _ => locate::value_offset(text, &v.pointer),
                };
                let offset = violation_offset(text, at, &unexpected);
                let (l, c) = position(offset);
                self.sink.push(
                    source,
                    Diagnostic {
                        kind: Kind::Invalid,
                        line: Some(l),
                        column: Some(c),
                        pointer: Some(v.pointer),
                        keyword: Some(v.keyword),
                        message: v.message,
                    },
                );
            }
            return;
        }
        if !self.detail.warnings {
            let raised = self.runtime.device_warning_count(&doc) as u64;
            self.summary.warnings += raised;
            if raised > 0 && self.detail.strict {
                self.summary.invalid += 1;
            } else {
                self.summary.valid += 1;
            }
            return;
        }
        let warnings = self.runtime.device_warnings(&doc);
        if warnings.is_empty() {
            self.summary.valid += 1;
            return;
        }
        if self.detail.strict {
            self.summary.invalid += 1;
        } else {
            self.summary.valid += 1;
        }
        self.summary.warnings += warnings.len() as u64;
        let mut last: Option<(String, usize)> = None;
        for w in warnings {
            // Warnings of one plugin share their pointer: located once.
            let offset = match &last {
                Some((p, at)) if *p == w.pointer => *at,
                _ => {
                    let at = locate::value_offset(text, &w.pointer).unwrap_or(0);
                    last = Some((w.pointer.clone(), at));
                    at
                }
            };
            let (l, c) = position(offset);
            self.sink.push(
                source,
                Diagnostic {
                    kind: Kind::Warning,
                    line: Some(l),
                    column: Some(c),
                    pointer: Some(w.pointer),
                    keyword: Some(w.code),
                    message: w.message,
                },
            );
        }
    }
}

/// Where a violation is: the value its pointer names, or for a refused property (an
/// `additionalProperties`/`unevaluatedProperties` violation, `unexpected` non-empty) the first
/// refused property's key.
/// `at` is where the pointer's value is, if it was found.
fn violation_offset(text: &[u8], at: Option<usize>, unexpected: &[String]) -> usize {
    let Some(at) = at else {
        return locate::value_offset(text, "").unwrap_or(0);
    };
    unexpected
        .first()
        .and_then(|name| locate::key_offset(text, at, name))
        .unwrap_or(at)
}

/// serde_json's message without its ` at line L column C` (the position is reported apart).
fn serde_message(e: &serde_json::Error) -> String {
    // serde_json offers no message without the position; drop exactly the suffix it appends.
    let s = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match s.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => s,
    }
}

/// The calling thread: reorders results, hands them to the reporter, returns the credits.
/// With `empty` (the inputs' spans), it also reports each input that holds no document, once
/// all of its sources are finished (so in input order).
fn collect(
    names: &[String],
    pool: &Mutex<Vec<Batch>>,
    empty: Option<&[Span]>,
    done: Receiver<Done>,
    credits: SyncSender<Vec<u8>>,
    reporter: &mut dyn Reporter,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    let mut inputs_done = 0;
    let inputs_total = names.len() as u64;
    let mut empties = Empties {
        spans: empty.unwrap_or_default(),
        next: 0,
        held: vec![false; names.len()],
    };
    empties.report_finished(0, &mut summary, reporter)?;
    while let Ok(d) = done.recv() {
        waiting.insert(d.seq, d);
        while let Some(mut d) = waiting.remove(&next) {
            next += 1;
            // A job's diagnostics are either listed or formatted, never both.
            for (source, diagnostic) in &d.batch.diagnostics {
                let name = names.get(*source).map_or("", String::as_str);
                reporter.report(name, diagnostic)?;
            }
            if !d.batch.formatted.is_empty() {
                reporter.formatted(&d.batch.formatted)?;
            }
            summary.add(&d.summary);
            // Each source of a job of several (JSON files, failed inputs) holds one document or
            // is unreadable; a job of one source (a block of lines) may hold nothing.
            let s = &d.summary;
            if s.documents + s.unreadable > 0 {
                for held in &mut empties.held[d.sources.clone()] {
                    *held = true;
                }
            }
            let finished = d.sources.start + d.completes as usize;
            empties.report_finished(finished, &mut summary, reporter)?;
            inputs_done += d.completes;
            // The producer may be gone (it finished): the credit is not needed then.
            let _ = credits.send(d.buf);
            d.batch.diagnostics.clear();
            d.batch.formatted.clear();
            if let Ok(mut pool) = pool.lock() {
                pool.push(d.batch);
            }
            reporter.progress(Progress {
                summary: &summary,
                inputs_done,
                inputs_total,
            });
        }
    }
    empties.report_finished(names.len(), &mut summary, reporter)?;
    Ok(summary)
}

/// The inputs checked for holding a document, in order.
struct Empties<'a> {
    spans: &'a [Span],
    /// The first input not yet checked.
    next: usize,
    /// Per source: it held a document (or was unreadable, which is reported already).
    held: Vec<bool>,
}

impl Empties<'_> {
    /// Checks every input whose sources are all below `finished` (all finished).
    fn report_finished(
        &mut self,
        finished: usize,
        summary: &mut Summary,
        reporter: &mut dyn Reporter,
    ) -> io::Result<()> {
        while let Some(span) = self.spans.get(self.next) {
            if span.sources.end > finished {
                break;
            }
            self.next += 1;
            if self.held[span.sources.clone()].iter().any(|&h| h) {
                continue;
            }
            summary.empty += 1;
            let message = if span.sources.is_empty() && span.is_dir {
                format!(
                    "no document: the directory has no {} file (hidden entries skipped)",
                    extension_list()
                )
            } else if span.is_dir {
                "no document: the directory's files hold none (only blank lines)".to_owned()
            } else {
                "no document: only blank lines".to_owned()
            };
            reporter.report(
                &span.display,
                &Diagnostic {
                    kind: Kind::Empty,
                    line: None,
                    column: None,
                    pointer: None,
                    keyword: None,
                    message,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_rank_unreadable_over_invalid() {
        let mut s = Summary::default();
        assert_eq!(s.exit_code(), 0);
        s.invalid = 1;
        assert_eq!(s.exit_code(), 1);
        s.not_json = 1;
        assert_eq!(s.exit_code(), 3);
        s.not_json = 0;
        s.unreadable = 1;
        assert_eq!(s.exit_code(), 3);
        s.unreadable = 0;
        s.empty = 1;
        assert_eq!(
            s.exit_code(),
            3,
            "an input that holds no document is an input problem"
        );
    }

    #[test]
    fn summary_reads_well() {
        let s = Summary {
            documents: 3,
            valid: 2,
            invalid: 1,
            files: 1,
            ..Summary::default()
        };
        assert_eq!(s.to_string(), "3 documents, 2 valid, 1 invalid (1 file)");
        let s = Summary {
            not_json: 1,
            unreadable: 2,
            warnings: 1,
            ..s
        };
        assert_eq!(
            s.to_string(),
            "3 documents, 2 valid, 1 invalid (1 file), 1 not JSON, 2 unreadable, 1 warning"
        );
        let s = Summary {
            empty: 2,
            warnings: 0,
            ..s
        };
        assert_eq!(
            s.to_string(),
            "3 documents, 2 valid, 1 invalid (1 file), 1 not JSON, 2 unreadable, 2 empty inputs"
        );
        assert_eq!(extension_list(), "*.json, *.jsonl or *.ndjson");
    }

    #[test]
    fn unexpected_properties_point_at_their_key() {
        let text = b"{\"acme\": {\"serial\": \"1\",\n \"colour\": 1}}";
        let acme = locate::value_offset(text, "/acme");
        let at = violation_offset(text, acme, &["colour".to_owned()]);
        assert_eq!(locate::line_col(text, at), (2, 2));
        // Without a refused name, the value the pointer names.
        let at = violation_offset(text, acme, &[]);
        assert_eq!(locate::line_col(text, at), (1, 10));
        let at = violation_offset(text, locate::value_offset(text, "/nope"), &[]);
        assert_eq!(at, 0);
    }
}
