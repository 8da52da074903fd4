//! `devext validate`: inputs, output formats, exit codes, positions, warnings.
//!
//! Runs the real binary, which ships the Jasper plugin statically: `{"jasper": {"iccid":
//! "<19 or 20 digits>"}}` is valid, and an ICCID whose last digit is not a Luhn check digit
//! raises Jasper's declared warning `iccid_check_digit`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::util;

/// Valid, Luhn check digit correct: no warning.
const GOOD: &str = r#"{"jasper": {"iccid": "89882167169700049759"}}"#;
/// Valid, but its last digit is not a Luhn check digit: a warning.
const WARNS: &str = r#"{"jasper": {"iccid": "8988216716970004975"}}"#;

fn devext(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devext"))
        .args(args)
        .current_dir(dir)
        .env_remove("DEVEXT_PLUGINS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run devext");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("devext output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn lines(o: &Output) -> Vec<String> {
    stdout(o).lines().map(str::to_owned).collect()
}

#[test]
fn valid_files_exit_0_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", GOOD);
    write(dir.path(), "b.json", "{}");
    let out = devext(dir.path(), &["validate", "a.json", "b.json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(lines(&out), ["2 documents, 2 valid, 0 invalid (2 files)"]);

    let out = devext(dir.path(), &["validate", "--quiet", "a.json"], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
}

#[test]
fn errors_name_path_line_column_pointer_and_message() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.json",
        "{\n  \"jasper\": {\n    \"iccid\": \"123\",\n    \"colour\": \"red\"\n  }\n}\n",
    );
    let out = devext(dir.path(), &["validate", "bad.json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines(&out),
        [
            r#"bad.json:3:14: /jasper/iccid: "123" does not match "^[0-9]{19,20}$" (pattern)"#,
            "bad.json:4:5: /jasper: Additional properties are not allowed ('colour' was unexpected) (additionalProperties)",
            "1 document, 0 valid, 1 invalid (1 file)",
        ]
    );
}

#[test]
fn an_unknown_extension_names_the_loaded_plugins() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.json", r#"{"jaspr": {"iccid": "1"}}"#);
    let out = devext(dir.path(), &["validate", "c.json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines(&out)[0],
        r#"c.json:1:11: /jaspr: unknown extension "jaspr": loaded plugins are jasper (additionalProperties)"#
    );
    // Not an object at all.
    write(dir.path(), "d.json", "[1]");
    let out = devext(dir.path(), &["validate", "d.json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(lines(&out)[0].starts_with("d.json:1:1: /: [1] is not of type \"object\""));
}

#[test]
fn directories_are_walked_recursively_in_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "cfg/b.json", r#"{"jasper": {}}"#);
    write(d, "cfg/a/z.json", r#"{"jasper": {"iccid": 1}}"#);
    write(d, "cfg/a.json", r#"{"jasper": {"iccid": "x"}}"#);
    write(d, "cfg/B.json", r#"{"nope": {}}"#);
    write(d, "cfg/notes.txt", "not json, not looked at");
    write(d, "cfg/.hidden/h.json", "not looked at either");
    let out = devext(d, &["validate", "cfg"], None);
    assert_eq!(out.status.code(), Some(1));
    let got: Vec<String> = lines(&out)
        .iter()
        .map(|l| l.split(':').next().unwrap().to_owned())
        .collect();
    // Byte-wise: "B" < "a" and "a.json" < "a/z.json" ('.' < '/').
    assert_eq!(
        got,
        [
            "cfg/B.json",
            "cfg/a.json",
            "cfg/a/z.json",
            "cfg/b.json",
            "4 documents, 0 valid, 4 invalid (4 files)"
        ]
    );
}

#[test]
fn json_lines_report_the_line_of_each_document() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{GOOD}\n\n{{\"jasper\": {{\"iccid\": \"1\"}}}}\r\n{GOOD}\n{{\"echo\": 1}}");
    write(dir.path(), "many.jsonl", &text);
    let out = devext(dir.path(), &["validate", "many.jsonl"], None);
    assert_eq!(out.status.code(), Some(1));
    let got = lines(&out);
    assert!(
        got[0].starts_with("many.jsonl:3:22: /jasper/iccid: "),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("many.jsonl:5:10: /echo: unknown extension"),
        "{got:?}"
    );
    assert_eq!(got[2], "4 documents, 2 valid, 2 invalid (1 file)");
}

#[test]
fn a_malformed_file_among_good_ones_exits_3_and_the_rest_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "in/1.json", GOOD);
    write(
        d,
        "in/2.json",
        "{\n  \"jasper\": {\"iccid\": \"89882167169700049759\",}\n}",
    );
    write(d, "in/3.json", r#"{"jasper": {"iccid": "12"}}"#);
    write(d, "in/4.jsonl", &format!("{GOOD}\n{{\"jasper\": tru}}\n"));
    let out = devext(d, &["validate", "in", "missing.json"], None);
    assert_eq!(out.status.code(), Some(3), "3 wins over 1");
    let got = lines(&out);
    assert_eq!(got[0], "in/2.json:2:46: not JSON: trailing comma");
    assert!(
        got[1].starts_with("in/3.json:1:22: /jasper/iccid:"),
        "{got:?}"
    );
    assert_eq!(got[2], "in/4.jsonl:2:15: not JSON: expected ident");
    assert!(got[3].starts_with("missing.json: cannot read: "), "{got:?}");
    assert_eq!(
        got[4],
        "5 documents, 2 valid, 1 invalid (4 files), 2 not JSON, 1 unreadable"
    );
}

#[test]
fn stdin_is_one_document_or_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    // A pretty-printed document.
    let pretty = "{\n  \"jasper\": {\n    \"iccid\": \"1\"\n  }\n}\n";
    let out = devext(dir.path(), &["validate", "-"], Some(pretty));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        lines(&out)[0].starts_with("<stdin>:3:14: /jasper/iccid: "),
        "{}",
        stdout(&out)
    );
    assert_eq!(lines(&out)[1], "1 document, 0 valid, 1 invalid (1 file)");

    // JSON Lines.
    let jsonl = format!("{GOOD}\n{{\"jasper\": {{}}}}\n{GOOD}\n");
    let out = devext(dir.path(), &["validate", "-"], Some(&jsonl));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        lines(&out)[0].starts_with("<stdin>:2:12: /jasper: "),
        "{}",
        stdout(&out)
    );
    assert_eq!(lines(&out)[1], "3 documents, 2 valid, 1 invalid (1 file)");

    // JSON Lines whose first line is malformed, and input that is nothing.
    let out = devext(
        dir.path(),
        &["validate", "-"],
        Some(&format!("{{\n{GOOD}\n")),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        lines(&out)[0],
        "<stdin>:1:1: not JSON: EOF while parsing an object"
    );
    assert_eq!(
        lines(&out)[1],
        "2 documents, 1 valid, 0 invalid (1 file), 1 not JSON"
    );
    let out = devext(dir.path(), &["validate", "-"], Some(GOOD));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn declared_warnings_show_but_fail_only_under_strict() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.json", WARNS);
    let out = devext(dir.path(), &["validate", "w.json"], None);
    assert_eq!(out.status.code(), Some(0));
    let got = lines(&out);
    assert!(
        got[0].starts_with(
            "w.json:1:12: warning: /jasper: iccid_check_digit: The ICCID's last digit"
        ),
        "{got:?}"
    );
    assert_eq!(got[1], "1 document, 1 valid, 0 invalid (1 file), 1 warning");

    let out = devext(dir.path(), &["validate", "--quiet", "w.json"], None);
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), String::new()));

    let out = devext(dir.path(), &["validate", "--strict", "w.json"], None);
    assert_eq!(out.status.code(), Some(1));
    let got = lines(&out);
    assert!(
        got[0].starts_with("w.json:1:12: error: /jasper: iccid_check_digit:"),
        "{got:?}"
    );
    assert_eq!(got[1], "1 document, 0 valid, 1 invalid (1 file), 1 warning");
}

#[test]
fn json_format_is_one_report() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.jsonl",
        &format!("{WARNS}\n{{\"jasper\": {{\"iccid\": \"1\"}}}}\n[\n"),
    );
    let out = devext(
        dir.path(),
        &["validate", "--format", "json", "a.jsonl"],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(report["documents"], 3);
    assert_eq!(report["valid"], 1);
    assert_eq!(report["invalid"], 1);
    assert_eq!(report["not_json"], 1);
    assert_eq!(report["files"], 1);
    assert_eq!(report["exit_code"], 3);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["path"], "a.jsonl");
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[0]["column"], 22);
    assert_eq!(errors[0]["pointer"], "/jasper/iccid");
    assert_eq!(errors[0]["keyword"], "pattern");
    assert_eq!(errors[0]["kind"], "invalid");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );
    assert_eq!(errors[1]["kind"], "not_json");
    assert_eq!(errors[1]["line"], 3);
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0]["code"], "iccid_check_digit");
    assert_eq!(warnings[0]["pointer"], "/jasper");
    assert_eq!(warnings[0]["line"], 1);

    // A clean run is a report too.
    write(dir.path(), "ok.json", GOOD);
    let out = devext(
        dir.path(),
        &["validate", "--format", "json", "ok.json"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], serde_json::json!([]));
    assert_eq!(report["valid"], 1);
}

#[test]
fn github_format_annotates_the_pull_request() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a,b.json", "{\n\"jasper\": {\"iccid\": \"1\"}}");
    write(dir.path(), "w.json", WARNS);
    let out = devext(
        dir.path(),
        &["validate", "--format", "github", "a,b.json", "w.json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let got = lines(&out);
    assert_eq!(
        got[0],
        r#"::error file=a%2Cb.json,line=2,col=21,title=devext validate%3A pattern::/jasper/iccid: "1" does not match "^[0-9]{19,20}$""#
    );
    assert!(
        got[1].starts_with("::warning file=w.json,line=1,col=12,title=devext validate%3A iccid_check_digit::/jasper: "),
        "{got:?}"
    );
    assert_eq!(
        got[2],
        "2 documents, 1 valid, 1 invalid (2 files), 1 warning"
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["validate"][..],
        &["validate", "--format", "xml", "a.json"],
    ] {
        let out = devext(dir.path(), args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn dynamic_plugins_are_validated_against_too() {
    let plugins = util::plugin_dir(&["devext-echo"]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.json",
        &format!(
            "{{\"echo\": {{\"id\": \"dev-1\"}}, \"jasper\": {}}}",
            &GOOD[10..GOOD.len() - 1]
        ),
    );
    write(dir.path(), "b.json", r#"{"echo": {"id": 7}}"#);
    let p = plugins.path().to_str().unwrap();
    let out = devext(
        dir.path(),
        &["validate", "--plugins", p, "a.json", "b.json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let got = lines(&out);
    assert_eq!(
        got[0],
        r#"b.json:1:17: /echo/id: 7 is not of type "string" (type)"#
    );
    assert_eq!(got[1], "2 documents, 1 valid, 1 invalid (2 files)");
}

#[test]
fn many_files_keep_input_order() {
    // Enough files for several jobs on several workers.
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for i in 0..600 {
        let name = format!("d/{i:04}.json");
        if i % 7 == 0 {
            write(dir.path(), &name, r#"{"jasper": {"iccid": "1"}}"#);
            expected.push(format!("{name}:1:22: /jasper/iccid: "));
        } else {
            write(dir.path(), &name, GOOD);
        }
    }
    let out = devext(dir.path(), &["validate", "d"], None);
    assert_eq!(out.status.code(), Some(1));
    let got = lines(&out);
    assert_eq!(got.len(), expected.len() + 1);
    for (g, e) in got.iter().zip(&expected) {
        assert!(g.starts_with(e.as_str()), "{g} vs {e}");
    }
    assert_eq!(
        got.last().unwrap(),
        "600 documents, 514 valid, 86 invalid (600 files)"
    );
}

#[test]
fn long_json_lines_files_are_streamed_in_order() {
    // Several blocks (256 KiB each), one line longer than a block.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let long = format!(
        "{{\"jasper\": {{\"iccid\": \"{}\"}}}}\n",
        "9".repeat(300_000)
    );
    for i in 1..=20_000 {
        if i == 10_000 {
            text.push_str(&long);
        } else if i % 5_000 == 0 {
            text.push_str("{\"jasper\": {}}\n");
        } else {
            text.push_str(GOOD);
            text.push('\n');
        }
    }
    write(dir.path(), "big.jsonl", &text);
    let out = devext(dir.path(), &["validate", "big.jsonl"], None);
    assert_eq!(out.status.code(), Some(1));
    let got: Vec<String> = lines(&out)
        .iter()
        .map(|l| l.split(": ").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        got,
        [
            "big.jsonl:5000:12",
            "big.jsonl:10000:22",
            "big.jsonl:15000:12",
            "big.jsonl:20000:12",
            "20000 documents, 19996 valid, 4 invalid (1 file)"
        ]
    );
}

#[test]
fn inputs_that_hold_no_document_exit_3_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "good.json", GOOD);
    std::fs::create_dir(d.join("empty")).unwrap();
    write(d, "other/notes.txt", "not looked at");
    write(d, "other/.hidden/h.json", GOOD);
    write(d, "blank/a.jsonl", "\n  \r\n");
    write(d, "blank.ndjson", "\u{feff}\n\n");
    write(d, "full/x.jsonl", &format!("\n{GOOD}\n"));
    let args = [
        "validate",
        "empty",
        "good.json",
        "other",
        "blank",
        "blank.ndjson",
        "full",
        "-",
    ];
    let out = devext(d, &args, Some("\n"));
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert_eq!(
        lines(&out),
        [
            "empty: no document: the directory has no *.json, *.jsonl or *.ndjson file (hidden entries skipped)",
            "other: no document: the directory has no *.json, *.jsonl or *.ndjson file (hidden entries skipped)",
            "blank: no document: the directory's files hold none (only blank lines)",
            "blank.ndjson: no document: only blank lines",
            "<stdin>: no document: only blank lines",
            "2 documents, 2 valid, 0 invalid (5 files), 5 empty inputs",
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-empty"), "{stderr}");

    // Even under --quiet, and in the other formats.
    let out = devext(d, &["validate", "--quiet", "empty"], None);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        lines(&out),
        [
            "empty: no document: the directory has no *.json, *.jsonl or *.ndjson file (hidden entries skipped)"
        ]
    );
    let out = devext(
        d,
        &["validate", "--format", "json", "good.json", "empty"],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["empty"], 1);
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["errors"][0]["kind"], "empty");
    assert_eq!(report["errors"][0]["path"], "empty");
    let out = devext(d, &["validate", "--format", "github", "empty"], None);
    assert!(
        lines(&out)[0]
            .starts_with("::error file=empty,title=devext validate%3A no document::no document: "),
        "{}",
        stdout(&out)
    );

    // --allow-empty accepts them; the rest still counts.
    let out = devext(
        d,
        &[&["validate", "--allow-empty"][..], &args[1..]].concat(),
        Some(""),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(lines(&out), ["2 documents, 2 valid, 0 invalid (5 files)"]);
    let out = devext(
        d,
        &["validate", "--allow-empty", "empty", "full/x.jsonl", "-"],
        Some("{"),
    );
    assert_eq!(out.status.code(), Some(3), "not JSON is still not JSON");
}

#[test]
fn values_are_echoed_as_written() {
    // An ICCID written as a number: beyond 64 bits, serde_json holds it as a float.
    let dir = tempfile::tempdir().unwrap();
    let number = r#"{"jasper": {"iccid": 89460715903439706236}}"#;
    write(dir.path(), "n.json", number);
    write(dir.path(), "n.jsonl", &format!("{GOOD}\n{number}\n"));
    let out = devext(dir.path(), &["validate", "n.json", "n.jsonl"], None);
    assert_eq!(out.status.code(), Some(1));
    let expected = r#"/jasper/iccid: 89460715903439706236 is not of type "string" (type)"#;
    let got = lines(&out);
    assert_eq!(got[0], format!("n.json:1:22: {expected}"));
    assert_eq!(got[1], format!("n.jsonl:2:22: {expected}"));

    let out = devext(dir.path(), &["validate", "-"], Some(number));
    assert_eq!(lines(&out)[0], format!("<stdin>:1:22: {expected}"));

    let out = devext(
        dir.path(),
        &["validate", "--format", "json", "n.json"],
        None,
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["errors"][0]["message"],
        r#"89460715903439706236 is not of type "string""#
    );
    let out = devext(
        dir.path(),
        &["validate", "--format", "github", "n.json"],
        None,
    );
    assert!(
        lines(&out)[0]
            .ends_with(r#"::/jasper/iccid: 89460715903439706236 is not of type "string""#),
        "{}",
        stdout(&out)
    );

    // Spread over lines, a value is echoed on one line, its digits and member order kept.
    write(
        dir.path(),
        "p.json",
        "{\"jasper\": {\"iccid\": [\n  1.50E+3,\n  89460715903439706236\n]}}",
    );
    let out = devext(dir.path(), &["validate", "p.json"], None);
    assert_eq!(
        lines(&out)[0],
        r#"p.json:1:22: /jasper/iccid: [1.50E+3,89460715903439706236] is not of type "string" (type)"#
    );
}

#[test]
fn help_lists_every_extension_the_engine_picks_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = devext(dir.path(), &["validate", "--help"], None);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    let arguments = help
        .lines()
        .find(|l| l.trim_start().starts_with("<PATH>"))
        .expect("the PATH argument's help");
    for (ext, _) in devext_host::validate::EXTENSIONS {
        assert!(
            arguments.contains(&format!("*.{ext}")),
            "{ext}: {arguments}"
        );
    }
    assert!(help.contains("--allow-empty"), "{help}");
    assert!(help.contains("holds no document"), "{help}");
}

#[test]
fn ndjson_files_are_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{GOOD}\n{{\"jasper\": {{\"iccid\": \"1\"}}}}\n");
    write(dir.path(), "d/x.ndjson", &text);
    write(dir.path(), "y.ndjson", &text);
    let out = devext(dir.path(), &["validate", "d", "y.ndjson"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let got = lines(&out);
    assert!(
        got[0].starts_with("d/x.ndjson:2:22: /jasper/iccid: "),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("y.ndjson:2:22: /jasper/iccid: "),
        "{got:?}"
    );
    assert_eq!(got[2], "4 documents, 2 valid, 2 invalid (2 files)");
}

// `devext schema export | check | diff`.

#[test]
fn schema_export_is_deterministic_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let out = devext(dir.path(), &["schema", "export", "--out", "s"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let s = dir.path().join("s");
    for name in [
        "device-extensions.schema.json",
        "jasper.org-config.schema.json",
        "jasper.device-config.schema.json",
        "jasper.op.overview.input.schema.json",
        "jasper.op.overview.output.schema.json",
    ] {
        assert!(s.join(name).is_file(), "{name} missing");
    }
    let combined: Value =
        serde_json::from_slice(&std::fs::read(s.join("device-extensions.schema.json")).unwrap())
            .unwrap();
    assert_eq!(combined["$id"], "urn:devext:device-extensions");
    assert_eq!(combined["additionalProperties"], false);
    assert_eq!(
        combined["properties"]["jasper"]["$id"],
        "urn:devext:plugin:jasper:device-config"
    );
    let device: Value =
        serde_json::from_slice(&std::fs::read(s.join("jasper.device-config.schema.json")).unwrap())
            .unwrap();
    assert_eq!(device["$id"], "urn:devext:plugin:jasper:device-config");
    assert_eq!(device["properties"]["iccid"]["pattern"], "^[0-9]{19,20}$");

    // The same plugins give the same bytes.
    let out = devext(dir.path(), &["schema", "export", "--out", "s"], None);
    assert!(stdout(&out).contains("0 written"), "{}", stdout(&out));

    // A dynamic plugin adds its files.
    let plugins = util::plugin_dir(&["devext-echo"]);
    let p = plugins.path().to_str().unwrap();
    let out = devext(
        dir.path(),
        &["schema", "export", "--plugins", p, "--out", "s"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(s.join("echo.device-config.schema.json").is_file());
    assert!(s.join("echo.op.count.input.schema.json").is_file());
}

#[test]
fn schema_check_names_the_files_that_drifted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    devext(d, &["schema", "export", "--out", "s"], None);
    let out = devext(d, &["schema", "check", "--dir", "s"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("are up to date"));

    // Edited, deleted, and a stale file of a plugin that is gone; unrelated files are ignored.
    let device = d.join("s/jasper.device-config.schema.json");
    let text = std::fs::read_to_string(&device).unwrap();
    std::fs::write(&device, text.replace("{19,20}", "{20}")).unwrap();
    std::fs::remove_file(d.join("s/jasper.op.usage.input.schema.json")).unwrap();
    write(
        d,
        "s/old.device-config.schema.json",
        r#"{"$id": "urn:devext:plugin:old:device-config"}"#,
    );
    write(d, "s/unrelated.json", "{}");
    let out = devext(d, &["schema", "check", "--dir", "s"], None);
    assert_eq!(out.status.code(), Some(1));
    let got = lines(&out);
    let line = text.lines().position(|l| l.contains("{19,20}")).unwrap() + 1;
    assert_eq!(
        got,
        [
            format!("s/jasper.device-config.schema.json:{line}: differs from the plugins' schema"),
            "s/jasper.op.usage.input.schema.json: missing".to_owned(),
            "s/old.device-config.schema.json: no longer exported (its plugin or operation is gone)"
                .to_owned(),
            "3 of the schema files in s are out of date; run: devext schema export --out s"
                .to_owned(),
        ]
    );

    // Export repairs it (and removes the stale file only).
    devext(d, &["schema", "export", "--out", "s"], None);
    assert!(!d.join("s/old.device-config.schema.json").exists());
    assert!(d.join("s/unrelated.json").exists());
    let out = devext(d, &["schema", "check", "--dir", "s"], None);
    assert_eq!(out.status.code(), Some(0));

    let out = devext(d, &["schema", "check", "--dir", "nowhere"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere is not a directory"));
}

#[test]
fn schema_diff_lists_breaking_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = r#"{
        "type": "object",
        "properties": {
            "iccid": {"type": "string", "pattern": "^[0-9]{19,20}$"},
            "plan": {"enum": ["a", "b"]},
            "count": {"type": ["integer", "string"]},
            "note": {"type": "string"}
        },
        "required": ["iccid"]
    }"#;
    write(d, "old.json", old);

    let cases = [
        (
            r#""note": {"type": "string"}"#,
            "",
            "property_removed",
            r#"property "note" removed"#,
        ),
        (
            r#""required": ["iccid"]"#,
            r#""required": ["iccid", "plan"]"#,
            "newly_required",
            r#"/: property "plan" is now required"#,
        ),
        (
            r#""type": ["integer", "string"]"#,
            r#""type": "integer""#,
            "type_narrowed",
            "/properties/count: type narrowed from integer|string to integer",
        ),
        (
            r#"["a", "b"]"#,
            r#"["a"]"#,
            "enum_narrowed",
            r#"/properties/plan: enum narrowed: "b" no longer accepted"#,
        ),
        (
            "{19,20}",
            "{20}",
            "pattern_changed",
            "/properties/iccid: pattern changed from",
        ),
        (
            r#""required": ["iccid"]"#,
            r#""required": ["iccid"], "additionalProperties": false"#,
            "additional_properties_closed",
            "/: additionalProperties closed: only count, iccid, note, plan allowed now",
        ),
    ];
    for (from, to, kind, text) in cases {
        let new = if to.is_empty() {
            old.replace(&format!(",\n            {from}"), "")
        } else {
            old.replace(from, to)
        };
        assert_ne!(new, old, "{kind}: the edit did not apply");
        write(d, "new.json", &new);
        let out = devext(d, &["schema", "diff", "old.json", "new.json"], None);
        assert_eq!(out.status.code(), Some(1), "{kind}: {}", stdout(&out));
        let got = lines(&out);
        assert_eq!(got.len(), 2, "{kind}: {got:?}");
        assert!(got[0].starts_with("new.json: "), "{got:?}");
        assert!(got[0].contains(text), "{kind}: {got:?}");
        assert!(got[0].ends_with(&format!("({kind})")), "{got:?}");
        assert_eq!(got[1], "1 breaking change");

        let out = devext(
            d,
            &["schema", "diff", "--json", "old.json", "new.json"],
            None,
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["breaking"][0]["kind"], kind);
        assert_eq!(report["breaking"][0]["file"], "new.json");
    }

    // Loosening is fine.
    let looser = old
        .replace(r#"["a", "b"]"#, r#"["a", "b", "c"]"#)
        .replace(r#""required": ["iccid"]"#, r#""required": []"#);
    write(d, "new.json", &looser);
    let out = devext(d, &["schema", "diff", "old.json", "new.json"], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(lines(&out), ["no breaking changes"]);

    // Directories: files compared by name; a removed schema is breaking.
    write(d, "a/x.schema.json", old);
    write(d, "a/y.schema.json", "{}");
    write(d, "b/x.schema.json", old);
    let out = devext(d, &["schema", "diff", "a", "b"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        lines(&out)[0].starts_with(
            "b/y.schema.json: /: a/y.schema.json has no counterpart in b (schema_removed)"
        ),
        "{}",
        stdout(&out)
    );

    // Unreadable or not JSON: 3.
    write(d, "broken.json", "{");
    for args in [["old.json", "missing.json"], ["old.json", "broken.json"]] {
        let out = devext(d, &["schema", "diff", args[0], args[1]], None);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
    }
}
