//! The bulk validator's two ways to report: diagnostics one by one (`Reporter::report`), or
//! formatted on the workers (`Reporter::formatter`) and written in order.

use std::io::{self, Write};
use std::sync::Arc;

use devext_host::validate::{
    self, Diagnostic, Formatted, Formatter, Input, Options, Reporter, Summary,
};
use devext_host::{Runtime, RuntimeConfig};

/// One line per diagnostic, every field.
struct Plain;

impl Formatter for Plain {
    fn format(&self, path: &str, d: &Diagnostic, out: &mut Vec<u8>) {
        let _ = writeln!(
            out,
            "{path}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            d.kind, d.line, d.column, d.pointer, d.keyword, d.message
        );
    }
}

/// Takes each diagnostic as it comes.
#[derive(Default)]
struct Listing {
    out: Vec<u8>,
}

impl Reporter for Listing {
    fn report(&mut self, path: &str, d: &Diagnostic) -> io::Result<()> {
        Plain.format(path, d, &mut self.out);
        Ok(())
    }
}

/// Has the workers format, and checks each item's kind against its bytes.
#[derive(Default)]
struct Formatting {
    out: Vec<u8>,
    batches: usize,
}

impl Reporter for Formatting {
    fn report(&mut self, path: &str, d: &Diagnostic) -> io::Result<()> {
        Plain.format(path, d, &mut self.out);
        Ok(())
    }

    fn formatter(&self) -> Option<Arc<dyn Formatter>> {
        Some(Arc::new(Plain))
    }

    fn formatted(&mut self, formatted: &Formatted) -> io::Result<()> {
        self.batches += 1;
        let mut joined = Vec::new();
        for (kind, bytes) in formatted.items() {
            let line = String::from_utf8_lossy(bytes);
            assert!(line.contains(&format!("|{kind:?}|")), "{line}");
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            joined.extend_from_slice(bytes);
        }
        assert_eq!(joined, formatted.bytes());
        self.out.extend_from_slice(formatted.bytes());
        Ok(())
    }
}

/// Gives a formatter but does not take what it makes.
struct Forgetful;

impl Reporter for Forgetful {
    fn report(&mut self, _: &str, _: &Diagnostic) -> io::Result<()> {
        Ok(())
    }

    fn formatter(&self) -> Option<Arc<dyn Formatter>> {
        Some(Arc::new(Plain))
    }
}

/// Several blocks of JSON Lines (valid, invalid with one or two violations, not JSON, blank),
/// small JSON files, a path that does not exist and an empty directory.
fn inputs(dir: &std::path::Path) -> Vec<Input> {
    let mut lines = String::new();
    for i in 0..40_000 {
        let line = match i % 7 {
            0 => format!(r#"{{"echo": {{"id": "d{i}"}}}}"#),
            1 => format!(r#"{{"echo": {{"id": "bad id {i}"}}}}"#),
            2 => format!(r#"{{"echo": {{"id": {i}, "colour": "red"}}}}"#),
            3 => format!(r#"{{"echo": {{"id": "d{i}"}}, "nope": {{}}}}"#),
            4 => format!("not json {i}"),
            5 => String::new(),
            _ => format!(r#"[{i}]"#),
        };
        lines.push_str(&line);
        lines.push('\n');
    }
    let jsonl = dir.join("many.jsonl");
    std::fs::write(&jsonl, lines).unwrap();
    let files = dir.join("files");
    std::fs::create_dir(&files).unwrap();
    for i in 0..300 {
        let text = match i % 3 {
            0 => format!("{{\n  \"echo\": {{\"id\": \"f{i}\"}}\n}}\n"),
            1 => format!("{{\n  \"echo\": {{\"id\": \"f {i}\"}}\n}}\n"),
            _ => "{\n".to_owned(),
        };
        std::fs::write(files.join(format!("{i:03}.json")), text).unwrap();
    }
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    vec![
        Input::Path(jsonl.clone()),
        Input::Path(files),
        Input::Path(dir.join("missing.json")),
        Input::Path(empty),
        Input::Path(jsonl),
    ]
}

fn run(rt: &Runtime, inputs: &[Input], reporter: &mut dyn Reporter) -> io::Result<Summary> {
    let options = Options {
        workers: 3,
        ..Options::default()
    };
    validate::run(rt, inputs, &options, reporter)
}

#[test]
fn formatting_on_the_workers_writes_what_reporting_one_by_one_does_in_the_same_order() {
    let rt = Runtime::load(RuntimeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());

    let mut listing = Listing::default();
    let listed = run(&rt, &inputs, &mut listing).unwrap();
    let mut formatting = Formatting::default();
    let formatted = run(&rt, &inputs, &mut formatting).unwrap();

    assert_eq!(listed, formatted);
    let per_copy = (0..40_000).filter(|i| i % 7 != 5).count() as u64;
    assert_eq!(listed.documents, 2 * per_copy + 300);
    assert!(listed.invalid > 0 && listed.not_json > 0);
    assert_eq!((listed.unreadable, listed.empty), (1, 1));
    assert!(
        formatting.batches > 2,
        "several jobs: {}",
        formatting.batches
    );
    let text = String::from_utf8(listing.out).unwrap();
    assert_eq!(text, String::from_utf8(formatting.out).unwrap());

    // In input order: the JSON Lines file's lines ascending, then the files, the missing path,
    // the empty directory, the JSON Lines file again.
    let jsonl_lines: Vec<u64> = text
        .lines()
        .take_while(|l| l.contains("many.jsonl|"))
        .map(|l| {
            let line = l.split('|').nth(2).unwrap();
            line.trim_start_matches("Some(")
                .trim_end_matches(')')
                .parse()
                .unwrap()
        })
        .collect();
    assert!(jsonl_lines.len() > 20_000);
    assert!(jsonl_lines.windows(2).all(|w| w[0] <= w[1]));
    let kinds: Vec<&str> = text
        .lines()
        .skip(jsonl_lines.len())
        .map(|l| l.split('|').nth(1).unwrap())
        .collect();
    let unreadable = kinds.iter().position(|k| *k == "Unreadable").unwrap();
    assert_eq!(kinds[unreadable + 1], "Empty");
    assert!(kinds[..unreadable].iter().all(|k| *k != "Empty"));
    let first_file = text.lines().nth(jsonl_lines.len()).unwrap();
    assert!(first_file.contains("001.json|Invalid|"), "{first_file}");
}

#[test]
fn a_reporter_that_gives_a_formatter_but_takes_nothing_fails_the_run() {
    let rt = Runtime::load(RuntimeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "{\"echo\": {}}\n").unwrap();
    let err = run(&rt, &[Input::Path(path)], &mut Forgetful).unwrap_err();
    assert!(err.to_string().contains("Reporter::formatted"), "{err}");
    // Nothing to report: nothing lost, the run passes.
    let path = dir.path().join("good.jsonl");
    std::fs::write(&path, "{\"echo\": {\"id\": \"a\"}}\n").unwrap();
    let summary = run(&rt, &[Input::Path(path)], &mut Forgetful).unwrap();
    assert_eq!(summary.valid, 1);
}
