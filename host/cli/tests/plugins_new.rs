//! `devext plugins new`: a generated plugin builds outside the workspace, passes its own tests on
//! the test kit and `devext plugins check`, loads with `--plugins` and answers `devext invoke`.
//! One build of the generated crate, offline, into this workspace's target directory (the
//! dependencies are already built there).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn devext(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_devext"))
        .args(args)
        .current_dir(cwd)
        .env_remove("DEVEXT_PLUGINS")
        .env_remove("DEVEXT_ALLOW_LOOPBACK_HTTP")
        .output()
        .expect("run devext")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A one-thread HTTP server answering every request with `{"state":"on"}`; records the
/// request lines and bodies.
fn thing_service() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut length = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock()
                .unwrap()
                .push(format!("{} {}", line.trim(), text(&body)));
            let answer = r#"{"state":"on"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn a_generated_plugin_builds_tests_checks_loads_and_runs() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // Outside a checkout, the API's source must be given.
    let out = devext(&["plugins", "new", "kit_template"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--api-path"),
        "{}",
        text(&out.stderr)
    );
    assert!(!tmp.path().join("kit_template").exists(), "nothing written");
    let out = devext(
        &[
            "plugins",
            "new",
            "Bad-Name",
            "--api-path",
            workspace.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_ne!(out.status.code(), Some(0));

    // Inside a checkout, the checkout is the default.
    let elsewhere = tmp.path().join("from_checkout");
    let out = devext(
        &[
            "plugins",
            "new",
            "from_checkout",
            "--dir",
            elsewhere.to_str().unwrap(),
        ],
        &workspace.join("plugins"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let manifest = std::fs::read_to_string(elsewhere.join("Cargo.toml")).unwrap();
    let api = workspace.join("plugin-api");
    assert!(
        manifest.contains(&format!("path = {:?}", api.display().to_string())),
        "{manifest}"
    );

    let crate_dir = tmp.path().join("kit_template");
    let out = devext(
        &[
            "plugins",
            "new",
            "kit_template",
            "--api-path",
            workspace.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "tests/plugin.rs",
        "README.md",
    ] {
        assert!(crate_dir.join(file).exists(), "{file}");
    }
    let lock = std::fs::read_to_string(crate_dir.join("Cargo.lock")).unwrap();
    assert!(
        lock.contains("name = \"abi_stable\"\nversion = \"0.11.3\""),
        "the pinned abi_stable"
    );
    // A second time into the same directory: refused, nothing changed.
    let out = devext(
        &[
            "plugins",
            "new",
            "kit_template",
            "--api-path",
            workspace.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );

    // Its tests (one build), then the library uplifted (no new compilation).
    let profile = devext_test_support::profile_dir();
    let target = profile.parent().unwrap();
    let release = profile.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for step in ["test", "build"] {
        let mut cmd = Command::new(&cargo);
        cmd.args([step, "--offline", "--quiet"]);
        if release {
            cmd.arg("--release");
        }
        let out = cmd
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", target)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "cargo {step}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        if step == "test" {
            assert!(
                text(&out.stdout).contains("4 passed"),
                "{}",
                text(&out.stdout)
            );
        }
    }
    let library = profile.join("libkit_template.so");

    let out = devext(&["plugins", "check", library.to_str().unwrap()], tmp.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let plugins = tmp.path().join("plugins.d");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(&library, plugins.join("libkit_template.so")).unwrap();
    let (url, seen) = thing_service();
    let org = tmp.path().join("org.json");
    std::fs::write(
        &org,
        format!(r#"{{"endpoint": "{url}", "token": "t0ken"}}"#),
    )
    .unwrap();
    let device = tmp.path().join("device.json");
    std::fs::write(&device, r#"{"thing_id": "t-1"}"#).unwrap();
    let p = plugins.to_str().unwrap();
    let (o, d) = (org.to_str().unwrap(), device.to_str().unwrap());
    let out = devext(
        &[
            "invoke",
            "kit_template",
            "status",
            "--plugins",
            p,
            "--allow-loopback-http",
            "--org",
            o,
            "--device",
            d,
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "on");
    let out = devext(
        &[
            "invoke",
            "kit_template",
            "set_state",
            "--plugins",
            p,
            "--allow-loopback-http",
            "--org",
            o,
            "--device",
            d,
            "--input",
            r#"{"state":"off"}"#,
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with("GET /things/t-1 "), "{seen:?}");
    assert!(
        seen[1].starts_with("PUT /things/t-1 ") && seen[1].ends_with(r#"{"state":"off"}"#),
        "{seen:?}"
    );
}
