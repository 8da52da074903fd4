//! `devext validate` end to end: the whole release process, timed from outside.
//!
//! Run with `cargo bench -p devext --bench validate` (builds the `devext` binary with the
//! bench profile). Generates its data in a temporary directory:
//!
//! - 10,000 small configuration files in one directory, 5% invalid;
//! - 1,000,000 configurations as one JSON Lines file: all valid, all invalid, all raising the
//!   check-digit warning (the cost of a document with an error or a warning against a valid
//!   one), and 5% invalid; then 4,000,000 (5% invalid) to show that memory stays flat;
//! - one empty configuration, for the start-up cost (loading and compiling the plugins'
//!   schemas).
//!
//! Prints the median wall time of several runs and the peak RSS (from `/usr/bin/time -f %M`,
//! when it is installed). Set `DEVEXT_BENCH_RUNS` to change the number of runs (default 11).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEVEXT: &str = env!("CARGO_BIN_EXE_devext");

fn main() {
    let runs: usize = std::env::var("DEVEXT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();

    std::fs::write(d.join("empty.json"), "{}").expect("write");
    report(
        "start-up (one empty document)",
        1,
        &d.join("empty.json"),
        runs,
    );

    let files = d.join("files");
    std::fs::create_dir(&files).expect("mkdir");
    for i in 0..10_000u64 {
        std::fs::write(files.join(format!("device-{i:05}.json")), config(i, true)).expect("write");
    }
    report("10,000 files, 5% invalid", 10_000, &files, runs);

    // The cost of a document with an error or a warning against a valid one: 1,000,000 lines
    // each, all valid, all invalid, all with the check-digit warning, then the usual mix.
    let mut per_doc = Vec::new();
    for (mix, name) in [
        (Mix::Valid, "all valid"),
        (Mix::Invalid, "all invalid"),
        (Mix::Warning, "all warned (check digit)"),
        (Mix::FivePercentInvalid, "5% invalid"),
    ] {
        let n = 1_000_000u64;
        let path = d.join("lines.jsonl");
        write_lines(&path, n, mix);
        let median = report(
            &format!("{n} lines of JSON Lines, {name}"),
            n,
            &path,
            runs.min(5),
        );
        per_doc.push((name, median.as_secs_f64() / n as f64));
        std::fs::remove_file(&path).expect("remove");
    }
    let valid = per_doc[0].1;
    for (name, t) in &per_doc[1..] {
        println!(
            "  per document, {name:<26} {:>6.3} us wall = {:.2}x a valid one ({:.3} us)",
            t * 1e6,
            t / valid,
            valid * 1e6
        );
    }

    let n = 4_000_000u64;
    let path = d.join(format!("{n}.jsonl"));
    write_lines(&path, n, Mix::FivePercentInvalid);
    report(
        &format!("{n} lines of JSON Lines, 5% invalid"),
        n,
        &path,
        runs.min(5),
    );
    std::fs::remove_file(&path).expect("remove");
}

/// Which documents a JSON Lines file holds.
#[derive(Clone, Copy)]
enum Mix {
    Valid,
    Invalid,
    Warning,
    FivePercentInvalid,
}

fn write_lines(path: &Path, n: u64, mix: Mix) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..n {
        let line = match mix {
            Mix::FivePercentInvalid => config(i, false),
            Mix::Valid => config(if i % 20 == 7 { i + 1 } else { i }, false),
            Mix::Invalid => format!("{{\"jasper\": {{\"iccid\": \"{i}\"}}}}"),
            Mix::Warning => {
                let body = format!("89882167{:011}", i);
                let wrong = (luhn_digit(&body) + 1) % 10;
                format!("{{\"jasper\": {{\"iccid\": \"{body}{wrong}\"}}}}")
            }
        };
        out.write_all(line.as_bytes()).expect("write");
        out.write_all(b"\n").expect("write");
    }
    out.flush().expect("flush");
}

/// Configuration number `i`: one in twenty invalid; valid ones carry an ICCID with a correct
/// check digit (no warning). `pretty` spreads it over lines like a hand-written file.
fn config(i: u64, pretty: bool) -> String {
    if i % 20 == 7 {
        return if pretty {
            format!("{{\n  \"jasper\": {{\n    \"iccid\": \"{i}\"\n  }}\n}}\n")
        } else {
            format!("{{\"jasper\": {{\"iccid\": \"{i}\"}}}}")
        };
    }
    let body = format!("89882167{:011}", i);
    let iccid = format!("{body}{}", luhn_digit(&body));
    if pretty {
        format!("{{\n  \"jasper\": {{\n    \"iccid\": \"{iccid}\"\n  }}\n}}\n")
    } else {
        format!("{{\"jasper\": {{\"iccid\": \"{iccid}\"}}}}")
    }
}

/// The check digit that makes `body` + digit pass the host's `luhn` format.
fn luhn_digit(body: &str) -> u32 {
    (0..10)
        .find(|d| devext_host::schema::is_luhn(&format!("{body}{d}")))
        .expect("one digit in ten is the check digit")
}

fn report(name: &str, documents: u64, input: &Path, runs: usize) -> Duration {
    // Warm the page cache and check the run is what we think.
    let out = Command::new(DEVEXT)
        .args(["validate", "--quiet"])
        .arg(input)
        .stdout(Stdio::piped())
        .output()
        .expect("run devext");
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(1), "{name}: exit {code:?}");

    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let status = Command::new(DEVEXT)
                .args(["validate", "--quiet"])
                .arg(input)
                .stdout(Stdio::null())
                .status()
                .expect("run devext");
            let t = start.elapsed();
            assert!(status.code() == Some(0) || status.code() == Some(1));
            t
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    let rate = documents as f64 / median.as_secs_f64();
    let rss = peak_rss_kib(input).map_or_else(
        || "n/a".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    );
    println!(
        "{name:<42} median {:>8.1} ms (min {:.1}, max {:.1}, {runs} runs)  {:>6.2} M docs/s  peak RSS {rss}",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        rate / 1e6,
    );
    median
}

/// Peak resident set of one run, from GNU time.
fn peak_rss_kib(input: &Path) -> Option<u64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", DEVEXT, "validate", "--quiet"])
        .arg(input)
        .stdout(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}
