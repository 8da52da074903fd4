//! The `devext` binary: `plugins`, `plugins check` and `invoke`.

use std::process::{Command, Output};

use serde_json::Value;

use crate::util;

fn devext(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_devext"))
        .args(args)
        .env_remove("DEVEXT_PLUGINS")
        .env_remove("DEVEXT_ALLOW_LOOPBACK_HTTP")
        .output()
        .expect("run devext")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_dynamic_plugins_panic_is_one_log_line_with_its_name_and_no_backtrace() {
    let plugins = util::plugin_dir(&["devext-fixture-panic"]);
    let dir = tempfile::tempdir().unwrap();
    let org = dir.path().join("org.json");
    std::fs::write(&org, "{}").unwrap();
    let device = dir.path().join("device.json");
    std::fs::write(&device, "{}").unwrap();
    for op in ["panic_now", "panic_later"] {
        let out = Command::new(env!("CARGO_BIN_EXE_devext"))
            .args(["invoke", "fixture_panic", op, "--plugins"])
            .arg(plugins.path())
            .arg("--org")
            .arg(&org)
            .arg("--device")
            .arg(&device)
            .env("RUST_BACKTRACE", "1")
            .env("DEVEXT_LOG", "error")
            .env_remove("DEVEXT_PLUGINS")
            .output()
            .expect("run devext");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("stack backtrace"), "{err}");
        assert!(!err.contains("thread '"), "the panic hook printed: {err}");
        let reports: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("panicked while"))
            .collect();
        // One log line (the plugin's name, the message, where) and the command's error line.
        let logged: Vec<&&str> = reports.iter().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(logged.len(), 1, "{err}");
        assert!(logged[0].contains("fixture_panic"), "{err}");
        assert!(logged[0].contains("fixture panic"), "{err}");
        assert!(logged[0].contains("src/lib.rs:"), "{err}");
        assert!(err.contains("error: internal:"), "{err}");
    }
}

#[test]
fn plugins_lists_loaded_and_refused_files() {
    let dir = util::plugin_dir(&["devext-echo", "devext-fixture-no-root"]);
    let d = dir.path().to_str().unwrap();
    let out = devext(&["plugins", "--plugins", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("echo 0.1.0 ("), "{text}");
    assert!(
        text.contains("operations: echo(view), count(action), counter(view), ping(view, org)"),
        "{text}"
    );
    assert!(
        text.contains("refused") && text.contains("no devext root module"),
        "{text}"
    );

    let out = devext(&["plugins", "--json", "--plugins", d]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let names: Vec<&str> = json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"));
    let echo = json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "echo")
        .unwrap();
    let scopes: Vec<(&str, &str)> = echo["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap(), o["scope"].as_str().unwrap()))
        .collect();
    assert!(scopes.contains(&("echo", "device")), "{scopes:?}");
    assert!(scopes.contains(&("ping", "org")), "{scopes:?}");
    assert_eq!(json["refused"].as_array().unwrap().len(), 1);
}

#[test]
fn plugins_dirs_come_from_the_environment_too() {
    let a = util::plugin_dir(&["devext-echo"]);
    let b = util::plugin_dir(&["devext-fixture-hang"]);
    let dirs = format!("{}:{}", a.path().display(), b.path().display());
    let out = Command::new(env!("CARGO_BIN_EXE_devext"))
        .args(["plugins", "--json"])
        .env("DEVEXT_PLUGINS", dirs)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let sources: Vec<String> = json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["source"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        sources
            .iter()
            .any(|s| s.ends_with("libdevext_fixture_hang.so")),
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.ends_with("libdevext_echo.so")),
        "{sources:?}"
    );
}

#[test]
fn plugins_check_is_a_ci_gate() {
    let echo = util::library("devext-echo");
    let out = devext(&["plugins", "check", echo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ok: echo 0.1.0 (Echo)"),
        "{}",
        stdout(&out)
    );

    for (lib, reason) in [
        ("devext-fixture-no-root", "no devext root module"),
        ("devext-fixture-bad-manifest", "invalid manifest"),
    ] {
        let path = util::library(lib);
        let out = devext(&["plugins", "check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{lib}");
        assert!(stderr(&out).contains(reason), "{lib}: {}", stderr(&out));
    }
    let out = devext(&["plugins", "check", "/nonexistent.so"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not a file"));
    assert!(
        stderr(&out).contains("runs the library's initialisers"),
        "checking says it runs the library's code: {}",
        stderr(&out)
    );
}

#[test]
fn plugins_lock_pins_each_library_and_a_changed_one_is_refused() {
    let dir = util::plugin_dir(&["devext-echo"]);
    let d = dir.path().to_str().unwrap();
    let out = devext(&["plugins", "lock", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lock = std::fs::read_to_string(dir.path().join("plugins.lock")).unwrap();
    let (digest, name) = lock.trim_end().split_once("  ").unwrap();
    assert_eq!(name, "libdevext_echo.so");
    assert_eq!(digest.len(), 64);
    assert!(
        stdout(&out).contains(&format!("{digest}  libdevext_echo.so")),
        "{}",
        stdout(&out)
    );
    let listed = devext(&["plugins", "--plugins", d]);
    assert!(
        stdout(&listed).contains("echo 0.1.0 ("),
        "{}",
        stdout(&listed)
    );

    // Another library in its place (a new file, as an upgrade writes it): refused.
    let lib = dir.path().join("libdevext_echo.so");
    let mut bytes = std::fs::read(&lib).unwrap();
    bytes.extend_from_slice(b"tampered");
    let tmp = dir.path().join("new.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &lib).unwrap();
    let listed = devext(&["plugins", "--plugins", d]);
    let text = stdout(&listed);
    assert!(!text.contains("echo 0.1.0 ("), "{text}");
    assert!(
        text.contains(&format!("but the lock file {d}/plugins.lock pins {digest}")),
        "{text}"
    );

    // A world-writable directory: nothing written, the fix named.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = devext(&["plugins", "lock", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("fix: chmod o-w {d}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("plugins.lock")).unwrap(),
        lock
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn plugins_check_lists_hint_warnings_and_the_connection_check() {
    // Bad presentation hints never refuse a plugin; they are listed with schema and pointer.
    let lib = util::library("devext-fixture-bad-hints");
    let out = devext(&["plugins", "check", lib.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "  hint warning: operation look output schema at /properties/ok/x-devext-colour: \
             unknown presentation hint \"x-devext-colour\""
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "  hint warning: operation look output schema at /properties/name/x-devext-unit: \
             x-devext-unit applies to number and integer properties"
        ),
        "{text}"
    );
    let out = devext(&["plugins", "check", "--json", lib.to_str().unwrap()]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = json["hint_warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{json}");
    assert!(warnings.iter().all(|w| w["plugin"] == "fixture_bad_hints"));
    assert!(
        warnings
            .iter()
            .any(|w| w["pointer"] == "/properties/ok/x-devext-colour"
                && w["schema"] == "operation look output"),
        "{json}"
    );

    let lib = util::library("devext-fixture-hostile");
    let out = devext(&["plugins", "check", lib.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("  connection check: check\n"), "{text}");
    assert!(!text.contains("hint warning"), "{text}");
}

#[test]
fn invoke_runs_one_operation() {
    let dir = tempfile::tempdir().unwrap();
    let org = dir.path().join("org.json");
    let device = dir.path().join("device.json");
    std::fs::write(&org, r#"{"greeting": "hi"}"#).unwrap();
    std::fs::write(&device, r#"{"id": "d1"}"#).unwrap();
    let plugins = util::plugin_dir(&["devext-echo"]);
    let (o, d, p) = (
        org.to_str().unwrap(),
        device.to_str().unwrap(),
        plugins.path().to_str().unwrap(),
    );
    // The same invocation each time; only the input (or its absence) changes.
    let invoke = |input: &[&str]| {
        let mut args = vec![
            "invoke",
            "echo",
            "echo",
            "--plugins",
            p,
            "--org",
            o,
            "--device",
            d,
        ];
        args.extend_from_slice(input);
        devext(&args)
    };
    let out = invoke(&["--input", r#"{"message":"yo"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["message"], "yo");
    assert_eq!(json["greeting"], "hi");

    let out = invoke(&["--input", r#"{"message":1}"#]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("error: invalid_input:"), "{err}");
    assert!(err.contains("/message"), "{err}");

    // A whole extension configuration, as `devext validate` reads it, works too.
    std::fs::write(&device, r#"{"echo": {"id": "d2"}}"#).unwrap();
    let out = invoke(&["--input", r#"{"message":"yo"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["device"], "d2");

    // An organisation-scope operation needs no --device; a device operation says it does.
    let out = devext(&["invoke", "echo", "ping", "--plugins", p, "--org", o]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["greeting"], "hi");
    let out = devext(&["invoke", "echo", "echo", "--plugins", p, "--org", o]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("runs on a device: give its configuration with --device"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&device, "{\n  \"id\": \n").unwrap();
    let out = invoke(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("device.json:3:"), "{}", stderr(&out));
}

#[test]
fn schema_export_prints_one_schema_without_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    let out = devext(&["schema", "export", "--out", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Without --out: the combined schema, byte for byte the exported file.
    let out = devext(&["schema", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let combined = std::fs::read(s.join("device-extensions.schema.json")).unwrap();
    assert_eq!(out.stdout, combined);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["$id"], "urn:devext:device-extensions");

    let out = devext(&[
        "schema",
        "export",
        "--file",
        "jasper.device-config.schema.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        out.stdout,
        std::fs::read(s.join("jasper.device-config.schema.json")).unwrap()
    );

    let out = devext(&["schema", "export", "--file", "nope.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no schema file \"nope.json\""), "{err}");
    assert!(err.contains("jasper.org-config.schema.json"), "{err}");

    let out = devext(&["schema", "export", "--out", "x", "--file", "y"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--out and --file exclude each other"
    );
}

#[test]
fn notices_are_printed_once() {
    let empty = tempfile::tempdir().unwrap();
    let jasper = util::plugin_dir(&["devext-jasper"]);
    let (e, j) = (
        empty.path().to_str().unwrap(),
        jasper.path().to_str().unwrap(),
    );
    let out = devext(&["plugins", "--plugins", e, "--plugins", j]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        all.matches(&format!("no plugins found in {e}")).count(),
        1,
        "{all}"
    );
    assert_eq!(
        all.matches("replaces the static plugin").count(),
        1,
        "{all}"
    );
    // The one-shot commands say it on stderr, once, and go on.
    let doc = empty.path().join("d.json");
    std::fs::write(&doc, "{}").unwrap();
    let out = devext(&["validate", "--plugins", e, doc.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("no plugins found in").count(),
        1,
        "{}",
        stderr(&out)
    );
}
