//! `devext devices import|export` as a user runs them: the real binary against a `devext
//! serve` child process (SQLite), the key in `DEVEXT_KEY`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// `devext` with none of the caller's `DEVEXT_*` settings.
fn devext() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devext"));
    for var in [
        "DEVEXT_LISTEN",
        "DEVEXT_DB",
        "DEVEXT_CONFIG",
        "DEVEXT_PLUGINS",
        "DEVEXT_ALLOW_LOOPBACK_HTTP",
        "DEVEXT_SECRET_KEY",
        "DEVEXT_SECRET_KEY_FILE",
        "DEVEXT_LOG",
        "DEVEXT_URL",
        "DEVEXT_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The key on the last line of `orgs create` / `keys create`.
fn key_of(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().last().unwrap().to_owned()
}

/// A `devext serve` child, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An ICCID (19 digits) ending in its Luhn check digit, so Jasper declares no warning.
fn iccid(n: u32) -> String {
    let body = format!("890100000000{n:06}");
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap();
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Runs `devext devices ARGS` against `url` with `key`; exit code, stdout, stderr.
fn devices(url: &str, key: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = devext();
    cmd.arg("devices")
        .args(args)
        .env("DEVEXT_URL", url)
        .env("DEVEXT_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn devices_import_and_export_against_a_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("devext.db");
    let admin = key_of(
        devext()
            .args(["orgs", "create", "acme", "--db", path(&db)])
            .output()
            .unwrap(),
    );
    let viewer = key_of(
        devext()
            .args([
                "keys",
                "create",
                "--org",
                "acme",
                "--role",
                "viewer",
                "--db",
                path(&db),
            ])
            .output()
            .unwrap(),
    );
    let mut child = devext()
        .args(["serve", "--db", path(&db), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _server = Server(child);
    let banner = lines.next().unwrap().unwrap();
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|r| r.split([' ', '/']).next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_owned();
    let url = format!("http://{addr}");
    std::thread::sleep(Duration::from_millis(100));

    // A CSV whose line 4 has a bad ICCID: nothing is imported, the line is named.
    let csv = dir.path().join("sims.csv");
    let good = |n: u32| format!("sim-{n},modem,{}\n", iccid(n));
    let file = format!(
        "name,type,jasper.iccid\n{}{}sim-bad,modem,123\n{}",
        good(1),
        good(2),
        good(3)
    );
    std::fs::write(&csv, &file).unwrap();
    let (code, _, err) = devices(&url, &admin, &["import", path(&csv)], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("sims.csv:4: column jasper.iccid: /extensions/jasper/iccid: "),
        "{err}"
    );
    assert!(
        err.contains(
            "4 records: 3 created, 0 updated, 0 unchanged, 1 refused; nothing was imported"
        ),
        "{err}"
    );
    let (code, out, err) = devices(&url, &admin, &["export"], None);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");

    // --partial: the others are written, the bad one still reported (exit 1).
    let (code, _, err) = devices(&url, &admin, &["import", path(&csv), "--partial"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sims.csv:4: "), "{err}");
    assert!(
        err.contains(
            "3 created, 0 updated, 0 unchanged, 1 refused; the valid records were imported"
        ),
        "{err}"
    );

    // The fixed file, matched by ICCID: one new device, the rest unchanged.
    std::fs::write(
        &csv,
        file.replace("sim-bad,modem,123", &good(4)[..good(4).len() - 1]),
    )
    .unwrap();
    let (code, _, err) = devices(
        &url,
        &admin,
        &[
            "import",
            path(&csv),
            "--match",
            "ext.jasper.iccid",
            "--org",
            "acme",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("4 records: 1 created, 0 updated, 3 unchanged, 0 refused; imported"),
        "{err}"
    );

    // Export to a file (JSON Lines), and a filtered CSV to standard output.
    let all = dir.path().join("all.jsonl");
    let (code, _, err) = devices(&url, &viewer, &["export", "--out", path(&all)], None);
    assert_eq!(code, 0, "{err}");
    let exported = std::fs::read_to_string(&all).unwrap();
    assert_eq!(exported.lines().count(), 4, "{exported}");
    let filter = format!("ext.jasper.iccid={}", iccid(2));
    let (code, out, err) = devices(
        &url,
        &viewer,
        &["export", "--csv", "--filter", &filter],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows[0], "id,name,type,jasper.iccid");
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[1].ends_with(&format!(",sim-2,modem,{}", iccid(2))),
        "{out}"
    );

    // The export imports back from standard input by id: nothing changes.
    let (code, _, err) = devices(
        &url,
        &admin,
        &["import", "-", "--match", "id"],
        Some(&exported),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("4 records: 0 created, 0 updated, 4 unchanged"),
        "{err}"
    );

    // Roles and the org guard come from the service.
    let (code, _, err) = devices(&url, &viewer, &["import", path(&csv)], None);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 403"), "{err}");
    let (code, _, err) = devices(&url, &admin, &["export", "--org", "other"], None);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 403"), "{err}");
    // No key: said before anything is sent, and never a key in the output.
    let out = devext()
        .args(["devices", "export", "--url", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("DEVEXT_KEY"),
        "{}",
        text(&out.stderr)
    );
    assert!(!err.contains(&admin));
}
