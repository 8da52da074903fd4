//! `devext devices import|export`: device files to and from a running service
//! (`POST /api/v1/devices/import`, `GET /api/v1/devices/export`), through [`crate::client`].
//! Both stream: the file is uploaded as it is read, the export written as it arrives.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

use crate::client::{ApiError, Client, ClientArgs};

#[derive(Subcommand)]
pub(crate) enum DevicesCommand {
    /// Import devices from JSON Lines or CSV: each record is checked as `devext validate` checks
    /// a document and creates or updates the device it matches; all or nothing unless
    /// --partial. Exit 1 if a record was refused
    Import(ImportArgs),
    /// Export the organisation's devices (all, or those matching --filter) as JSON Lines, or
    /// CSV with --csv: what `devext devices import` reads back
    Export(ExportArgs),
}

/// The two file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line: {"name", "type", "extensions"}
    Jsonl,
    /// A header line (name, type, <plugin>.<property>...) and one device per record
    Csv,
}

impl Format {
    fn media(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv",
        }
    }

    /// The format a file's name says: `.csv` is CSV, anything else JSON Lines.
    fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The file (- for standard input): *.csv is CSV, anything else JSON Lines (see --format)
    file: PathBuf,
    /// The organisation the key must be of (the service refuses the file otherwise)
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// How a record finds the device it updates: name, id, or ext.<plugin>.<field> (a lookup
    /// field, e.g. ext.jasper.iccid); a record that matches none creates a device
    #[arg(long = "match", value_name = "KEY", default_value = "name")]
    match_by: String,
    /// Import the valid records even if others are refused (each refused one is listed)
    #[arg(long)]
    partial: bool,
    /// The file's format, when its name does not say (standard input: JSON Lines)
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Print the service's report as JSON instead of lines
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The organisation the key must be of (the service refuses otherwise)
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// CSV (columns id, name, type and <plugin>.<property>) instead of JSON Lines
    #[arg(long)]
    csv: bool,
    /// Only the devices matching KEY=VALUE, the device list's filters (repeatable, all must
    /// match): name=... (part of the name), ext.<plugin>.<field>=...
    #[arg(long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Write to FILE (complete or not at all: written beside it, renamed at the end) instead
    /// of standard output
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) fn run(command: &DevicesCommand) -> Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async {
        match command {
            DevicesCommand::Import(args) => import(args).await,
            DevicesCommand::Export(args) => export(args).await,
        }
    })
}

/// `a=b&c=d`, each part form-encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// An async reader's bytes as a stream of chunks, for a streamed request body.
fn chunks<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
    name: String,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures_util::stream::unfold(Some(reader), move |reader| {
        let name = name.clone();
        async move {
            let mut reader = reader?;
            let mut buf = vec![0u8; 64 * 1024];
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf), Some(reader)))
                }
                Err(e) => Some((
                    Err(std::io::Error::new(e.kind(), format!("{name}: {e}"))),
                    None,
                )),
            }
        }
    })
}

async fn import(args: &ImportArgs) -> Result<ExitCode> {
    let client = Client::from_env(&args.client)?;
    let stdin = args.file.as_os_str() == "-";
    let format = args.format.unwrap_or(if stdin {
        Format::Jsonl
    } else {
        Format::of_path(&args.file)
    });
    let name = if stdin {
        "standard input".to_owned()
    } else {
        args.file.display().to_string()
    };
    let body = if stdin {
        reqwest::Body::wrap_stream(chunks(tokio::io::stdin(), name.clone()))
    } else {
        let file = tokio::fs::File::open(&args.file)
            .await
            .with_context(|| format!("cannot open {name}"))?;
        reqwest::Body::wrap_stream(chunks(file, name.clone()))
    };
    let mut pairs = vec![("match", args.match_by.as_str())];
    if args.partial {
        pairs.push(("partial", "true"));
    }
    if let Some(org) = &args.org {
        pairs.push(("org", org.as_str()));
    }
    let path = format!("/api/v1/devices/import?{}", query(&pairs));
    let request = client
        .request(Method::POST, &path)
        .header(reqwest::header::CONTENT_TYPE, format.media())
        .body(body);
    let (report, refused) = match client.send(request).await {
        Ok(response) => (crate::client::read_json(response).await?, false),
        Err(e) => match e.downcast::<ApiError>() {
            // All or nothing, and a record was bad: the report is in the error's details.
            Ok(api) if api.kind == "invalid_input" && api.details.get("records").is_some() => {
                (api.details, true)
            }
            Ok(api) => return Err(anyhow!(api)),
            Err(e) => return Err(e),
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&name, &report, refused, &mut std::io::stderr())?;
    }
    let failed = report["failed"].as_u64().unwrap_or(0);
    Ok(if refused || failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The report as lines: each problem (`FILE:LINE[:COLUMN]: [FIELD: ]POINTER: MESSAGE`, as
/// `devext validate` prints them), then the counts.
fn print_report(
    name: &str,
    report: &Value,
    refused: bool,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let empty = Vec::new();
    for p in report["problems"].as_array().unwrap_or(&empty) {
        let mut place = format!("{name}:{}", p["line"]);
        if let Some(c) = p["column"].as_u64() {
            place.push_str(&format!(":{c}"));
        }
        let mut what = String::new();
        if let Some(f) = p["field"].as_str() {
            what.push_str(&format!("column {f}: "));
        }
        if let Some(ptr) = p["pointer"].as_str() {
            what.push_str(&format!("{ptr}: "));
        }
        let kind = if p["kind"] == "warning" {
            "warning: "
        } else {
            ""
        };
        let keyword = p["keyword"]
            .as_str()
            .map(|k| format!(" ({k})"))
            .unwrap_or_default();
        writeln!(
            out,
            "{place}: {kind}{what}{}{keyword}",
            p["message"].as_str().unwrap_or("")
        )?;
    }
    if let Some(n) = report["problems_omitted"].as_u64().filter(|n| *n > 0) {
        writeln!(out, "... and {n} more problems")?;
    }
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    let outcome = if refused {
        "nothing was imported (--partial imports the valid records)"
    } else if n("failed") > 0 {
        "the valid records were imported"
    } else {
        "imported"
    };
    writeln!(
        out,
        "{} records: {} created, {} updated, {} unchanged, {} refused; {outcome}",
        n("records"),
        n("created"),
        n("updated"),
        n("unchanged"),
        n("failed"),
    )?;
    Ok(())
}

async fn export(args: &ExportArgs) -> Result<ExitCode> {
    let client = Client::from_env(&args.client)?;
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for f in &args.filter {
        match f.split_once('=') {
            Some((k, v)) if !k.is_empty() => pairs.push((k, v)),
            _ => {
                bail!("--filter {f:?}: give KEY=VALUE, e.g. name=pump or ext.jasper.iccid=8901...")
            }
        }
    }
    if let Some(org) = &args.org {
        pairs.push(("org", org.as_str()));
    }
    let mut path = "/api/v1/devices/export".to_owned();
    if !pairs.is_empty() {
        path.push('?');
        path.push_str(&query(&pairs));
    }
    let accept = if args.csv { Format::Csv } else { Format::Jsonl }.media();
    let mut response = client
        .send(
            client
                .request(Method::GET, &path)
                .header(reqwest::header::ACCEPT, accept),
        )
        .await?;
    let mut sink = Sink::open(args.out.as_deref())?;
    let mut bytes = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                bytes += chunk.len() as u64;
                sink.write(&chunk)?;
            }
            Ok(None) => break,
            Err(e) => {
                sink.abandon();
                bail!(
                    "the export was cut off after {bytes} bytes: {e}{}",
                    if args.out.is_some() {
                        " (nothing written)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    sink.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Where an export goes: standard output, or a file written beside its destination and
/// renamed over it once complete.
enum Sink {
    Stdout(std::io::StdoutLock<'static>),
    File {
        file: std::io::BufWriter<tempfile::NamedTempFile>,
        to: PathBuf,
    },
}

impl Sink {
    fn open(out: Option<&Path>) -> Result<Sink> {
        let Some(to) = out else {
            return Ok(Sink::Stdout(std::io::stdout().lock()));
        };
        let dir = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let file = tempfile::Builder::new()
            .prefix(".devext-export")
            .tempfile_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        Ok(Sink::File {
            file: std::io::BufWriter::new(file),
            to: to.to_owned(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(bytes).context("writing to standard output"),
            Sink::File { file, to } => file
                .write_all(bytes)
                .with_context(|| format!("writing {}", to.display())),
        }
    }

    /// Drops what was written to a file (the temporary file goes with it).
    fn abandon(self) {}

    fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut out) => out.flush().context("writing to standard output"),
            Sink::File { file, to } => {
                let file = file
                    .into_inner()
                    .map_err(|e| anyhow!("writing {}: {}", to.display(), e.error()))?;
                file.persist(&to)
                    .map_err(|e| anyhow!("cannot write {}: {}", to.display(), e.error))?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_lists_problems_where_they_are_then_the_counts() {
        let report = json!({
            "records": 5, "created": 4, "updated": 0, "unchanged": 0, "failed": 1,
            "problems": [
                {"line": 3, "kind": "error", "column": 40, "pointer": "/extensions/meter/serial",
                 "keyword": "minLength", "message": "\"\" is shorter than 1 character"},
                {"line": 4, "kind": "error", "field": "meter.serial", "message": "bad"}
            ],
            "problems_omitted": 0
        });
        let mut out = Vec::new();
        print_report("devices.jsonl", &report, true, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "devices.jsonl:3:40: /extensions/meter/serial: \"\" is shorter than 1 character \
             (minLength)\n\
             devices.jsonl:4: column meter.serial: bad\n\
             5 records: 4 created, 0 updated, 0 unchanged, 1 refused; nothing was imported \
             (--partial imports the valid records)\n"
        );
    }

    #[test]
    fn the_format_follows_the_file_name() {
        assert_eq!(Format::of_path(Path::new("a/b.CSV")), Format::Csv);
        assert_eq!(Format::of_path(Path::new("b.jsonl")), Format::Jsonl);
        assert_eq!(
            query(&[("match", "ext.a.b"), ("name", "x y&z")]),
            "match=ext.a.b&name=x+y%26z"
        );
    }
}
