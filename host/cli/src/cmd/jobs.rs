//! `devext jobs`: bulk jobs on a running service (`POST /api/v1/jobs` and friends), through
//! [`crate::client`]: run one (and follow its progress), list, show, cancel, download results.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{ApiError, Client, ClientArgs};

#[derive(Subcommand)]
pub(crate) enum JobsCommand {
    /// Start a job (one operation of one plugin, one input, many devices) and follow its
    /// progress to the summary; exit 1 if an item failed or has an unknown outcome, or the job
    /// did not finish (cancelled, failed)
    Run(RunArgs),
    /// List the organisation's jobs, newest first
    List(ListArgs),
    /// Show one job's state and counts
    Show(IdArgs),
    /// Cancel a job: items in flight finish, the rest are skipped
    Cancel(IdArgs),
    /// Download a job's per-device results (JSON Lines, or CSV with --csv)
    Results(ResultsArgs),
}

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The operation, as PLUGIN.OP (e.g. jasper.set_status)
    #[arg(long, value_name = "PLUGIN.OP")]
    op: String,
    /// The operation's input: JSON text, or @FILE to read it from a file
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    input: String,
    /// The devices: a file of device ids, one per line (blank lines and # comments skipped;
    /// - for standard input)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "filter",
        required_unless_present = "filter"
    )]
    devices: Option<PathBuf>,
    /// The devices matching the device list's filter KEY=VALUE (repeatable, all must match):
    /// name=..., ext.<plugin>.<field>=...
    #[arg(long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// For destructive operations on more than 5 devices: the number of devices you expect the
    /// selection to hold (the job is refused if it differs)
    #[arg(long, value_name = "N")]
    confirm: Option<u64>,
    /// Print the job's id and return at once instead of following its progress
    #[arg(long)]
    detach: bool,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// How many jobs to list at most
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Print each job as a JSON line instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct IdArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job's id (job_...)
    id: String,
    /// Print the job as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct ResultsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job's id (job_...)
    id: String,
    /// CSV (device,outcome,error_kind,error_message,result) instead of JSON Lines
    #[arg(long)]
    csv: bool,
    /// Write to FILE (replaced only once the download is complete) instead of standard output
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) fn run(command: &JobsCommand) -> Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async {
        match command {
            JobsCommand::Run(args) => run_job(args).await,
            JobsCommand::List(args) => list(args).await,
            JobsCommand::Show(args) => show(args).await,
            JobsCommand::Cancel(args) => cancel(args).await,
            JobsCommand::Results(args) => results(args).await,
        }
    })
}

/// `PLUGIN.OP` split in two.
fn parse_op(op: &str) -> Result<(&str, &str)> {
    match op.split_once('.') {
        Some((p, o)) if !p.is_empty() && !o.is_empty() => Ok((p, o)),
        _ => bail!("--op {op:?}: give PLUGIN.OP, e.g. jasper.set_status"),
    }
}

/// `--input`: JSON text or `@FILE`; errors name the place (the file, line and column).
fn parse_input(input: &str) -> Result<Value> {
    let (place, text) = match input.strip_prefix('@') {
        Some(file) => (
            file.to_owned(),
            std::fs::read_to_string(file).with_context(|| format!("--input: reading {file}"))?,
        ),
        None => ("--input".to_owned(), input.to_owned()),
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{place}: line {} column {}: not JSON: {e}",
            e.line(),
            e.column()
        )
    })
}

/// The ids in a devices file (one per line; blank lines and `#` comments skipped).
fn read_ids(path: &Path) -> Result<Vec<String>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("--devices -: reading standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("--devices: reading {}", path.display()))?
    };
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() || id.starts_with('#') {
            continue;
        }
        if id.contains(char::is_whitespace) || id.contains(',') {
            bail!(
                "{}: line {}: {id:?} is not a device id (one id per line)",
                path.display(),
                n + 1
            );
        }
        ids.push(id.to_owned());
    }
    if ids.is_empty() {
        bail!("{}: no device ids (one per line)", path.display());
    }
    Ok(ids)
}

/// `--filter KEY=VALUE...` as the device list's filter object.
fn parse_filter(filters: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            bail!("--filter {f:?}: give KEY=VALUE (name=..., ext.<plugin>.<field>=...)");
        };
        let k = k.trim();
        if k.is_empty() {
            bail!("--filter {f:?}: the key is empty");
        }
        if out
            .insert(k.to_owned(), Value::String(v.to_owned()))
            .is_some()
        {
            bail!("--filter {k}: given twice");
        }
    }
    Ok(out)
}

/// The request body of `jobs run`.
fn job_request(args: &RunArgs) -> Result<Value> {
    let (plugin, op) = parse_op(&args.op)?;
    let input = parse_input(&args.input)?;
    let devices = match &args.devices {
        Some(file) => json!({ "ids": read_ids(file)? }),
        None => json!({ "filter": parse_filter(&args.filter)? }),
    };
    let mut body = json!({"plugin": plugin, "op": op, "input": input, "devices": devices});
    if let Some(n) = args.confirm {
        body["confirm"] = json!(n);
    }
    Ok(body)
}

async fn run_job(args: &RunArgs) -> Result<ExitCode> {
    let body = job_request(args)?;
    let client = Client::from_env(&args.client)?;
    let job = match client.post_json("/api/v1/jobs", &body).await {
        Ok(job) => job,
        Err(e) => return Err(explain_create_error(e)),
    };
    let id = str_field(&job, "id")?.to_owned();
    if args.detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "job {id}: {} on {} device(s) (devext jobs show {id} | cancel {id})",
        args.op,
        count(&job, "total")
    );
    let started = Instant::now();
    let job = follow(&client, &id, job).await?;
    println!("{}", summary(&job, started.elapsed()));
    Ok(exit_code(&job))
}

/// A refused confirmation says what to pass.
fn explain_create_error(e: anyhow::Error) -> anyhow::Error {
    if let Some(api) = e.downcast_ref::<ApiError>()
        && api.kind == "confirmation_required"
        && let Some(total) = api.details.get("total").and_then(Value::as_u64)
    {
        return anyhow!(
            "{api}\nthis destructive operation selects {total} device(s): check the \
             selection, then run again with --confirm {total}"
        );
    }
    e
}

/// How often the job is polled while followed.
const POLL: Duration = Duration::from_millis(500);
/// Without a terminal, a progress line at most this often (and when nothing moved, this often
/// at least, so a log shows the job is alive).
const LINE_EVERY: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_secs(30);

/// Polls the job until it ends, drawing a progress bar on a terminal (stderr) or printing
/// plain progress lines otherwise; the final job.
async fn follow(client: &Client, id: &str, mut job: Value) -> Result<Value> {
    let path = format!("/api/v1/jobs/{id}");
    let total = count(&job, "total");
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let mut last_line: Option<(Instant, u64)> = None;
    loop {
        let processed = total.saturating_sub(count(&job, "pending"));
        match &bar {
            Some(bar) => {
                bar.set_position(processed);
                bar.set_message(progress_message(&job));
            }
            None => {
                let due = match last_line {
                    None => true,
                    Some((at, n)) => {
                        (n != processed && at.elapsed() >= LINE_EVERY) || at.elapsed() >= HEARTBEAT
                    }
                };
                if due || is_finished(&job) {
                    eprintln!("{}", progress_line(&job));
                    last_line = Some((Instant::now(), processed));
                }
            }
        }
        if is_finished(&job) {
            break;
        }
        tokio::time::sleep(POLL).await;
        job = client.get_json(&path).await?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(job)
}

fn is_finished(job: &Value) -> bool {
    matches!(
        job.get("state").and_then(Value::as_str),
        Some("done" | "cancelled" | "failed")
    )
}

fn count(job: &Value, field: &str) -> u64 {
    job.get(field).and_then(Value::as_u64).unwrap_or(0)
}

fn str_field<'a>(job: &'a Value, field: &str) -> Result<&'a str> {
    job.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the service's job has no {field:?}: {job}"))
}

/// `done 3, failed 1, skipped 0, unknown 0, 4.8/s, about 12 s left`.
fn progress_message(job: &Value) -> String {
    let mut msg = format!(
        "done {}, failed {}, skipped {}, unknown {}",
        count(job, "done"),
        count(job, "failed"),
        count(job, "skipped"),
        count(job, "unknown")
    );
    if let Some(rate) = job.get("rate_per_s").and_then(Value::as_f64) {
        msg.push_str(&format!(", {rate:.1}/s"));
    }
    if let Some(eta) = job.get("eta_s").and_then(Value::as_f64)
        && !is_finished(job)
    {
        msg.push_str(&format!(
            ", about {} left",
            duration(Duration::from_secs_f64(eta.max(0.0)))
        ));
    }
    msg
}

/// One plain progress line: `job_x running: 12/60 (done 10, failed 2, ...)`.
fn progress_line(job: &Value) -> String {
    let total = count(job, "total");
    format!(
        "{} {}: {}/{} ({})",
        job.get("id").and_then(Value::as_str).unwrap_or("job"),
        job.get("state").and_then(Value::as_str).unwrap_or("?"),
        total.saturating_sub(count(job, "pending")),
        total,
        progress_message(job)
    )
}

/// The final line: state, the four counts, the time it took, and the job's own error.
fn summary(job: &Value, took: Duration) -> String {
    let mut s = format!(
        "job {} {}: {} done, {} failed, {} skipped, {} unknown of {} in {}",
        job.get("id").and_then(Value::as_str).unwrap_or("?"),
        job.get("state").and_then(Value::as_str).unwrap_or("?"),
        count(job, "done"),
        count(job, "failed"),
        count(job, "skipped"),
        count(job, "unknown"),
        count(job, "total"),
        duration(took)
    );
    if let Some(e) = job.get("error").filter(|e| !e.is_null()) {
        s.push_str(&format!(
            "; error: {}: {}",
            e.get("kind").and_then(Value::as_str).unwrap_or("?"),
            e.get("message").and_then(Value::as_str).unwrap_or("")
        ));
    }
    s
}

fn exit_code(job: &Value) -> ExitCode {
    let ok = job.get("state").and_then(Value::as_str) == Some("done")
        && count(job, "failed") == 0
        && count(job, "unknown") == 0;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `4.2s`, `3m07s`, `1h02m`.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

async fn list(args: &ListArgs) -> Result<ExitCode> {
    let client = Client::from_env(&args.client)?;
    let page = client
        .get_json(&format!("/api/v1/jobs?limit={}", args.limit))
        .await?;
    let items = page
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the service's job list has no items: {page}"))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for job in items {
            writeln!(out, "{job}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<30} {:<10} {:<24} {:>13} {:>7} {:>7} {:>7}  CREATED",
        "ID", "STATE", "OP", "PROGRESS", "FAILED", "SKIPPED", "UNKNOWN"
    )?;
    for job in items {
        let total = count(job, "total");
        writeln!(
            out,
            "{:<30} {:<10} {:<24} {:>13} {:>7} {:>7} {:>7}  {}",
            job.get("id").and_then(Value::as_str).unwrap_or("?"),
            job.get("state").and_then(Value::as_str).unwrap_or("?"),
            op_name(job),
            format!("{}/{}", total.saturating_sub(count(job, "pending")), total),
            count(job, "failed"),
            count(job, "skipped"),
            count(job, "unknown"),
            job.get("created_at").and_then(Value::as_str).unwrap_or("")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn op_name(job: &Value) -> String {
    format!(
        "{}.{}",
        job.get("plugin").and_then(Value::as_str).unwrap_or("?"),
        job.get("op").and_then(Value::as_str).unwrap_or("?")
    )
}

/// The job in words, one field a line.
fn describe(job: &Value) -> String {
    let field = |f: &str| match job.get(f) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(v) => v.to_string(),
    };
    let mut s = format!(
        "id:          {}\nop:          {}\nstate:       {}\nprogress:    {}\ninput:       {}\n\
         selection:   {}\ncreated by:  {}\ncreated at:  {}\nstarted at:  {}\nfinished at: {}",
        field("id"),
        op_name(job),
        field("state"),
        progress_line(job)
            .split_once(": ")
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default(),
        field("input"),
        field("selection"),
        field("created_by"),
        field("created_at"),
        field("started_at"),
        field("finished_at"),
    );
    if let Some(e) = job.get("error").filter(|e| !e.is_null()) {
        s.push_str(&format!("\nerror:       {e}"));
    }
    s
}

fn job_path(id: &str) -> Result<String> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("{id:?} is not a job id (job_...)");
    }
    Ok(format!("/api/v1/jobs/{id}"))
}

async fn show(args: &IdArgs) -> Result<ExitCode> {
    let client = Client::from_env(&args.client)?;
    let job = client.get_json(&job_path(&args.id)?).await?;
    if args.json {
        println!("{job}");
    } else {
        println!("{}", describe(&job));
    }
    Ok(ExitCode::SUCCESS)
}

async fn cancel(args: &IdArgs) -> Result<ExitCode> {
    let client = Client::from_env(&args.client)?;
    let job = client
        .post_json(&format!("{}/cancel", job_path(&args.id)?), &json!({}))
        .await?;
    if args.json {
        println!("{job}");
    } else {
        println!("{}", progress_line(&job));
    }
    Ok(ExitCode::SUCCESS)
}

async fn results(args: &ResultsArgs) -> Result<ExitCode> {
    let client = Client::from_env(&args.client)?;
    let accept = if args.csv {
        "text/csv"
    } else {
        "application/x-ndjson"
    };
    let mut response = client
        .send(
            client
                .request(Method::GET, &format!("{}/results", job_path(&args.id)?))
                .header(reqwest::header::ACCEPT, accept),
        )
        .await?;
    let place = client.url(&format!("{}/results", job_path(&args.id)?));
    match &args.out {
        Some(path) => {
            // Into a temporary file beside FILE, renamed over it once complete: never half a
            // file under FILE's name.
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)
                .with_context(|| format!("{}: creating a file", dir.display()))?;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| anyhow!("{place}: reading the results: {e}"))?
            {
                tmp.write_all(&chunk)
                    .with_context(|| format!("{}: writing", path.display()))?;
            }
            tmp.persist(path)
                .map_err(|e| anyhow!("{}: {}", path.display(), e.error))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| anyhow!("{place}: reading the results: {e}"))?
            {
                out.write_all(&chunk)?;
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_input_and_filters_are_read_with_clear_errors() {
        assert_eq!(
            parse_op("jasper.set_status").unwrap(),
            ("jasper", "set_status")
        );
        assert!(parse_op("set_status").is_err());
        assert!(parse_op(".x").is_err());
        assert_eq!(parse_input(r#"{"status":"x"}"#).unwrap()["status"], "x");
        let e = parse_input("{\n \"status\" x}").unwrap_err().to_string();
        assert!(e.starts_with("--input: line 2 column"), "{e}");
        let f = parse_filter(&["name=a=b".into(), "ext.jasper.iccid=89".into()]).unwrap();
        assert_eq!(f["name"], "a=b");
        assert_eq!(f["ext.jasper.iccid"], "89");
        assert!(parse_filter(&["name".into()]).is_err());
        assert!(parse_filter(&["name=a".into(), "name=b".into()]).is_err());
    }

    #[test]
    fn a_devices_file_skips_blanks_and_comments_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.txt");
        std::fs::write(&p, "# fleet\ndev_1\n\n  dev_2  \n").unwrap();
        assert_eq!(read_ids(&p).unwrap(), ["dev_1", "dev_2"]);
        std::fs::write(&p, "dev_1\ndev_2,dev_3\n").unwrap();
        let e = read_ids(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("line 2: \"dev_2,dev_3\" is not a device id (one id per line)"),
            "{e}"
        );
        std::fs::write(&p, "\n# none\n").unwrap();
        assert!(
            read_ids(&p)
                .unwrap_err()
                .to_string()
                .contains("no device ids")
        );
    }

    #[test]
    fn the_summary_and_exit_code_follow_the_counts() {
        let job = json!({"id": "job_1", "state": "done", "total": 4, "done": 3, "failed": 1,
            "skipped": 0, "unknown": 0, "pending": 0, "error": null});
        assert_eq!(
            summary(&job, Duration::from_millis(2500)),
            "job job_1 done: 3 done, 1 failed, 0 skipped, 0 unknown of 4 in 2.5s"
        );
        assert_eq!(exit_code(&job), ExitCode::FAILURE);
        let ok = json!({"id": "job_1", "state": "done", "total": 2, "done": 2, "pending": 0});
        assert_eq!(exit_code(&ok), ExitCode::SUCCESS);
        let cancelled = json!({"state": "cancelled", "total": 2, "done": 1, "skipped": 1});
        assert_eq!(exit_code(&cancelled), ExitCode::FAILURE);
        let running = json!({"id": "job_2", "state": "running", "total": 60, "done": 10,
            "failed": 2, "pending": 48, "rate_per_s": 4.96, "eta_s": 9.7});
        assert_eq!(
            progress_line(&running),
            "job_2 running: 12/60 (done 10, failed 2, skipped 0, unknown 0, 5.0/s, about 9.7s left)"
        );
        assert_eq!(duration(Duration::from_secs(187)), "3m07s");
    }
}
