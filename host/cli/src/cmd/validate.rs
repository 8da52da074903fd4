//! `devext validate`: device extension configurations against the loaded plugins' schemas, for
//! CI and pre-commit.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, ValueEnum};
use devext_host::validate::{
    self, Diagnostic, Formatted, Formatter, Input, Kind, Options, Progress, Reporter, Summary,
};
use serde_json::json;

use super::load_plugins;
use crate::GlobalArgs;

/// After the options in `devext validate --help`.
const AFTER_HELP: &str = "\
Exit codes: 0 all valid; 1 a document is invalid; 2 usage error; 3 an input could not be read,
is not JSON, or holds no document.

An input named that holds no document at all (a directory without a *.json, *.jsonl or *.ndjson
file, or whose files hold none; a JSON Lines file or standard input with only blank lines) is an
error naming it, exit 3 like a path that does not exist: a CI job pointed at the wrong directory
must fail, not pass having checked nothing. It is an input problem found by reading the file
system, not a malformed command line (2). --allow-empty accepts it. An empty *.json file is
not JSON (3).";

#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) global: crate::GlobalArgs,
    /// JSON files, JSON Lines files (*.jsonl, *.ndjson), directories (every *.json, *.jsonl and
    /// *.ndjson file, recursively, hidden entries skipped) or - for standard input
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<OsString>,
    /// Output: human (path:line:col: pointer: message), json (one report) or github (workflow
    /// annotations)
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Print only errors: no warnings, no summary
    #[arg(long, short)]
    quiet: bool,
    /// Plugins' declared warnings fail the run (exit 1)
    #[arg(long)]
    strict: bool,
    /// An input that holds no document is not an error (by default it is: exit 3)
    #[arg(long)]
    allow_empty: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
    Github,
}

/// Exit codes: 0 all valid, 1 a document is invalid, 2 usage error (clap), 3 an input could not
/// be read, is not JSON or holds no document (see [`AFTER_HELP`]).
pub(crate) fn validate(global: &GlobalArgs, args: &ValidateArgs) -> Result<ExitCode> {
    let runtime = load_plugins(global)?;
    let inputs: Vec<Input> = args.paths.iter().map(|p| Input::from_arg(p)).collect();
    let options = Options {
        strict: args.strict,
        workers: 0,
        allow_empty: args.allow_empty,
    };
    let stdout = io::stdout().lock();
    let out = io::BufWriter::with_capacity(64 * 1024, stdout);
    let mut reporter = Cli {
        out,
        lines: Arc::new(Lines {
            format: args.format,
            quiet: args.quiet,
            strict: args.strict,
        }),
        errors_written: 0,
        warnings_json: Vec::new(),
        scratch: Vec::new(),
        progress: ProgressBar::new(),
    };
    if args.format == Format::Json {
        reporter.out.write_all(b"{\"errors\":[")?;
    }
    let result = validate::run(&runtime, &inputs, &options, &mut reporter)
        .and_then(|summary| reporter.finish(&summary).map(|()| summary));
    reporter.progress.clear();
    let summary = match result {
        Ok(summary) => summary,
        // The reader went away (`| head`): stop quietly, without claiming success.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::from(1)),
        Err(e) => return Err(e.into()),
    };
    if summary.empty > 0 {
        eprintln!(
            "devext: error: an input holds no document; pass --allow-empty if that is expected"
        );
    } else if summary.documents == 0 && summary.unreadable == 0 && !args.quiet {
        // Only under --allow-empty.
        eprintln!("devext: warning: no documents found");
    }
    Ok(ExitCode::from(summary.exit_code()))
}

/// The command line's reporter: one of the three formats, plus the progress bar. Its lines are
/// made by [`Lines`] on the validation's worker threads; it writes them in order.
struct Cli<W: Write> {
    out: W,
    lines: Arc<Lines>,
    errors_written: u64,
    /// `--format json`: the warnings' entries, comma-separated, written after the errors (which
    /// are streamed).
    warnings_json: Vec<u8>,
    /// One diagnostic's bytes, for those the run reports itself.
    scratch: Vec<u8>,
    progress: ProgressBar,
}

/// What one diagnostic looks like in the chosen format.
struct Lines {
    format: Format,
    quiet: bool,
    strict: bool,
}

impl Formatter for Lines {
    fn format(&self, path: &str, d: &Diagnostic, out: &mut Vec<u8>) {
        if d.kind == Kind::Warning && self.quiet && !self.strict {
            return;
        }
        // Writing to a `Vec` cannot fail.
        let _ = match self.format {
            Format::Human => human(out, path, d, self.strict),
            Format::Github => github(out, path, d, self.strict),
            Format::Json => json_entry(out, path, d),
        };
    }
}

impl<W: Write> Reporter for Cli<W> {
    fn report(&mut self, path: &str, d: &Diagnostic) -> io::Result<()> {
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        self.lines.format(path, d, &mut bytes);
        let result = self.write(d.kind, &bytes);
        self.scratch = bytes;
        result
    }

    fn formatted(&mut self, formatted: &Formatted) -> io::Result<()> {
        match self.lines.format {
            Format::Human | Format::Github => {
                self.progress.clear();
                self.out.write_all(formatted.bytes())
            }
            Format::Json => {
                for (kind, bytes) in formatted.items() {
                    self.write(kind, bytes)?;
                }
                Ok(())
            }
        }
    }

    fn formatter(&self) -> Option<Arc<dyn Formatter>> {
        Some(self.lines.clone())
    }

    fn progress(&mut self, p: Progress<'_>) {
        self.progress.update(p);
    }

    fn wants(&self, kind: Kind) -> bool {
        // The warnings `Lines` drops: not built at all.
        !(kind == Kind::Warning && self.lines.quiet && !self.lines.strict)
    }
}

impl<W: Write> Cli<W> {
    /// Writes one diagnostic's bytes, made by [`Lines`].
    fn write(&mut self, kind: Kind, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.progress.clear();
        if self.lines.format != Format::Json {
            return self.out.write_all(bytes);
        }
        if kind == Kind::Warning {
            if !self.warnings_json.is_empty() {
                self.warnings_json.push(b',');
            }
            self.warnings_json.extend_from_slice(bytes);
            return Ok(());
        }
        if self.errors_written > 0 {
            self.out.write_all(b",")?;
        }
        self.errors_written += 1;
        self.out.write_all(bytes)
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        match self.lines.format {
            Format::Json => {
                let rest = json!({
                    "documents": summary.documents,
                    "valid": summary.valid,
                    "invalid": summary.invalid,
                    "not_json": summary.not_json,
                    "unreadable": summary.unreadable,
                    "empty": summary.empty,
                    "files": summary.files,
                    "strict": self.lines.strict,
                    "exit_code": summary.exit_code(),
                });
                let rest = rest.to_string();
                // `rest` is an object: splice its members after the two arrays.
                self.out.write_all(b"],\"warnings\":[")?;
                self.out.write_all(&self.warnings_json)?;
                writeln!(self.out, "],{}", &rest[1..])?;
            }
            Format::Human | Format::Github => {
                if !self.lines.quiet {
                    writeln!(self.out, "{summary}")?;
                }
            }
        }
        self.out.flush()
    }
}

/// One `--format json` entry: an error's or a warning's (a warning's `keyword` is its `code`).
/// The members in byte order of their names, as serde_json writes an object; strings escaped by
/// serde_json.
fn json_entry(out: &mut Vec<u8>, path: &str, d: &Diagnostic) -> io::Result<()> {
    let is_warning = d.kind == Kind::Warning;
    out.push(b'{');
    if is_warning {
        out.extend_from_slice(b"\"code\":");
        json_string(out, d.keyword.as_deref())?;
        out.push(b',');
    }
    out.extend_from_slice(b"\"column\":");
    json_number(out, d.column);
    if !is_warning {
        out.extend_from_slice(b",\"keyword\":");
        json_string(out, d.keyword.as_deref())?;
    }
    out.extend_from_slice(b",\"kind\":");
    serde_json::to_writer(&mut *out, &d.kind).map_err(io::Error::other)?;
    out.extend_from_slice(b",\"line\":");
    json_number(out, d.line);
    out.extend_from_slice(b",\"message\":");
    json_string(out, Some(&d.message))?;
    out.extend_from_slice(b",\"path\":");
    json_string(out, Some(path))?;
    out.extend_from_slice(b",\"pointer\":");
    json_string(out, d.pointer.as_deref())?;
    out.push(b'}');
    Ok(())
}

/// A JSON string, or `null`.
fn json_string(out: &mut Vec<u8>, s: Option<&str>) -> io::Result<()> {
    match s {
        Some(s) => serde_json::to_writer(&mut *out, s).map_err(io::Error::other),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// A JSON number, or `null`.
fn json_number(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => push_decimal(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

fn pointer_or_root(d: &Diagnostic) -> &str {
    match d.pointer.as_deref() {
        Some("") => "/",
        Some(p) => p,
        None => "",
    }
}

/// `path:line:col: /pointer: message (keyword)`.
fn human(out: &mut Vec<u8>, path: &str, d: &Diagnostic, strict: bool) -> io::Result<()> {
    // Pieces written as they are (one line per problem: the formatting machinery is most of
    // the cost of a line).
    out.extend_from_slice(path.as_bytes());
    out.push(b':');
    if let Some(line) = d.line {
        push_decimal(out, line);
        out.push(b':');
        push_decimal(out, d.column.unwrap_or(1));
        out.push(b':');
    }
    let keyword = d.keyword.as_deref().unwrap_or_default();
    let parts: &[&str] = match d.kind {
        Kind::Invalid => &[
            " ",
            pointer_or_root(d),
            ": ",
            &d.message,
            " (",
            keyword,
            ")\n",
        ],
        Kind::Warning => &[
            if strict { " error: " } else { " warning: " },
            pointer_or_root(d),
            ": ",
            keyword,
            ": ",
            &d.message,
            "\n",
        ],
        Kind::NotJson | Kind::Unreadable | Kind::Empty => &[" ", &d.message, "\n"],
    };
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    Ok(())
}

/// Appends `n` in decimal, as `{n}` prints it (with `itoa`, as serde_json writes numbers).
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A GitHub Actions workflow command, so the problem shows on the pull request's diff.
fn github(out: &mut impl Write, path: &str, d: &Diagnostic, strict: bool) -> io::Result<()> {
    let level = if d.kind == Kind::Warning && !strict {
        "warning"
    } else {
        "error"
    };
    write!(out, "::{level} file={}", escape_property(path))?;
    if let Some(line) = d.line {
        write!(out, ",line={line},col={}", d.column.unwrap_or(1))?;
    }
    let title = match (d.kind, d.keyword.as_deref()) {
        (Kind::Invalid, Some(k)) => format!("devext validate: {k}"),
        (Kind::Warning, Some(code)) => format!("devext validate: {code}"),
        (Kind::NotJson, _) => "devext validate: not JSON".to_owned(),
        (Kind::Empty, _) => "devext validate: no document".to_owned(),
        _ => "devext validate".to_owned(),
    };
    let message = match d.pointer.as_deref() {
        Some(_) => format!("{}: {}", pointer_or_root(d), d.message),
        None => d.message.clone(),
    };
    writeln!(
        out,
        ",title={}::{}",
        escape_property(&title),
        escape_data(&message)
    )
}

/// Escapes a workflow command's message.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A one-line progress bar on standard error, shown only when standard error is a terminal (not
/// in pipes or CI logs) and the run has taken a while.
struct ProgressBar {
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
    shown: bool,
}

impl ProgressBar {
    const DELAY: Duration = Duration::from_millis(500);
    const EVERY: Duration = Duration::from_millis(100);

    fn new() -> ProgressBar {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        ProgressBar {
            enabled: io::stderr().is_terminal() && !ci && !dumb,
            started: Instant::now(),
            last: None,
            shown: false,
        }
    }

    fn update(&mut self, p: Progress<'_>) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now - self.started < Self::DELAY || self.last.is_some_and(|l| now - l < Self::EVERY) {
            return;
        }
        self.last = Some(now);
        let total = p.inputs_total.max(1);
        let width = 24u64;
        let full = (p.inputs_done.min(total) * width / total) as usize;
        let bar = format!("{}{}", "#".repeat(full), "-".repeat(width as usize - full));
        let s = p.summary;
        eprint!(
            "\r\x1b[K[{bar}] {}/{} files, {} documents, {} invalid",
            p.inputs_done, p.inputs_total, s.documents, s.invalid
        );
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_as_display_does() {
        for n in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn json_entries_are_what_serde_json_writes_for_them() {
        let mut d = Diagnostic {
            kind: Kind::Invalid,
            line: Some(3),
            column: Some(14),
            pointer: Some("/a~1b/\u{e9}".to_owned()),
            keyword: Some("pattern".to_owned()),
            message: "\"x\\y\n\u{1}\" does not match \"^[0-9]+$\"".to_owned(),
        };
        let expected = |d: &Diagnostic, path: &str| {
            let mut entry = json!({
                "path": path,
                "line": d.line,
                "column": d.column,
                "pointer": d.pointer,
                "message": d.message,
                "kind": d.kind,
            });
            let key = if d.kind == Kind::Warning {
                "code"
            } else {
                "keyword"
            };
            entry[key] = json!(d.keyword);
            entry.to_string()
        };
        let written = |d: &Diagnostic, path: &str| {
            let mut out = Vec::new();
            json_entry(&mut out, path, d).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            written(&d, "dir/\"q\".jsonl"),
            expected(&d, "dir/\"q\".jsonl")
        );
        d.kind = Kind::Warning;
        d.keyword = Some("iccid_check_digit".to_owned());
        assert_eq!(written(&d, "a.json"), expected(&d, "a.json"));
        d.kind = Kind::Unreadable;
        (d.line, d.column, d.pointer, d.keyword) = (None, None, None, None);
        assert_eq!(written(&d, "-"), expected(&d, "-"));
        d.kind = Kind::NotJson;
        assert_eq!(written(&d, "x"), expected(&d, "x"));
    }

    #[test]
    fn workflow_commands_are_escaped() {
        assert_eq!(escape_data("a%b\nc"), "a%25b%0Ac");
        assert_eq!(escape_property("dir/a:b,c.json"), "dir/a%3Ab%2Cc.json");
    }
}
