//! The service's commands as a user runs them: `devext orgs create`, `devext keys create`,
//! `devext serve` (keys, config precedence, a store without its key, SIGTERM) and `devext demo`,
//! each the real binary in a child process, called over a socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run devext")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The key printed alone on the last line of a successful `orgs create` / `keys create`.
fn printed_key(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().expect("output");
    assert!(
        last.starts_with("dvx_") && last.len() == 68 && !last.contains(' '),
        "the last line is the key alone: {stdout:?}"
    );
    // Shown once: nowhere else in the output.
    assert_eq!(stdout.matches(last).count(), 1, "{stdout}");
    last.to_owned()
}

/// A running `devext serve` or `devext demo`, killed if a test fails before stopping it.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Server {
    fn start(cmd: &mut Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start devext");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Server {
            child,
            lines,
            stderr,
        }
    }

    /// The next line of stdout (panics after 20 s, with the exit status if it ended).
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let status = self.child.try_wait().unwrap();
                panic!("no line on stdout (exit status {status:?})");
            }
        }
    }

    /// SIGTERM, then the exit status (panics unless it exits within 10 s) and stderr.
    fn terminate(mut self) -> (ExitStatus, String, Duration) {
        let sent = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = sent.elapsed();
                let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
                return (status, stderr.join().unwrap(), took);
            }
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "did not exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`): status and JSON body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, value, _) = http_with(addr, method, path, key, body, &[]);
    (status, value)
}

/// [`http`] with `extra` request headers; also returns the response's head (status line and
/// headers).
fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (u16, Value, String) {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(key) = key {
        req.push_str(&format!("authorization: Bearer {key}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("content-type: application/json\r\n");
    }
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    sock.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap();
    let raw = text(&raw);
    let (head, payload) = raw.split_once("\r\n\r\n").expect("a whole response");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let payload = if chunked {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    let value = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
    (status, value, head.to_owned())
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Polls `/healthz` until it answers 200.
fn wait_healthy(addr: SocketAddr) {
    let start = Instant::now();
    loop {
        if TcpStream::connect(addr).is_ok() && http(addr, "GET", "/healthz", None, None).0 == 200 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address in a line like `devext serving on http://127.0.0.1:PORT (store ...)`.
fn address_in(line: &str) -> SocketAddr {
    let rest = line
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let addr = rest.split([' ', '/']).next().unwrap();
    addr.parse()
        .unwrap_or_else(|e| panic!("{addr:?} in {line:?}: {e}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn keys_made_on_the_command_line_work_against_serve_which_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("devext.db");
    let db = path_str(&db);
    let admin = printed_key(&run(devext().args(["orgs", "create", "acme", "--db", db])));
    let viewer = printed_key(&run(devext().args([
        "keys", "create", "--org", "acme", "--role", "viewer", "--db", db,
    ])));
    let operator = printed_key(&run(devext().args([
        "keys", "create", "--org", "acme", "--role", "operator", "--name", "ops", "--db", db,
    ])));
    // Mistakes are clear errors.
    let out = run(devext().args([
        "keys", "create", "--org", "nope", "--role", "viewer", "--db", db,
    ]));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("no organisation named \"nope\""),
        "{}",
        text(&out.stderr)
    );
    let out = run(devext().args([
        "keys", "create", "--org", "acme", "--role", "root", "--db", db,
    ]));
    assert_ne!(out.status.code(), Some(0));
    let out = run(devext().args(["orgs", "create", "acme", "--db", db]));
    assert_ne!(out.status.code(), Some(0), "the name is taken");

    let mut server = Server::start(devext().args(["serve", "--db", db, "--listen", "127.0.0.1:0"]));
    let first = server.line();
    assert!(
        first.starts_with("devext serving on http://127.0.0.1:"),
        "{first}"
    );
    assert!(first.contains(db), "{first}");
    let addr = address_in(&first);
    wait_healthy(addr);
    let (s, ready) = http(addr, "GET", "/readyz", None, None);
    assert_eq!(s, 200);
    assert!(
        ready["plugins"]
            .as_array()
            .unwrap()
            .contains(&json!("jasper")),
        "{ready}"
    );

    assert_eq!(http(addr, "GET", "/api/v1/devices", None, None).0, 401);
    let (s, list) = http(addr, "GET", "/api/v1/devices", Some(&viewer), None);
    assert_eq!((s, &list["items"]), (200, &json!([])));
    let device =
        json!({"name": "meter 1", "extensions": {"jasper": {"iccid": "8901170425231800001"}}});
    assert_eq!(
        http(
            addr,
            "POST",
            "/api/v1/devices",
            Some(&viewer),
            Some(device.clone())
        )
        .0,
        403
    );
    assert_eq!(
        http(
            addr,
            "POST",
            "/api/v1/devices",
            Some(&operator),
            Some(device.clone())
        )
        .0,
        403
    );
    let (s, created) = http(addr, "POST", "/api/v1/devices", Some(&admin), Some(device));
    assert_eq!(s, 201, "{created}");
    let (s, list) = http(addr, "GET", "/api/v1/devices", Some(&operator), None);
    assert_eq!(s, 200);
    assert_eq!(list["items"][0]["id"], created["id"]);
    let (s, keys) = http(addr, "GET", "/api/v1/keys", Some(&admin), None);
    assert_eq!(s, 200);
    assert_eq!(keys["items"].as_array().unwrap().len(), 3, "{keys}");
    for key in [&admin, &viewer, &operator] {
        assert!(!keys.to_string().contains(key.as_str()));
    }
    assert_eq!(
        http(addr, "GET", "/api/v1/keys", Some(&viewer), None).0,
        403
    );
    // What the command line did is in the audit log too.
    let (s, audit) = http(addr, "GET", "/api/v1/audit", Some(&admin), None);
    assert_eq!(s, 200, "{audit}");
    let from_cli: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .filter(|d| d.ends_with("(devext command line)"))
        .collect();
    assert_eq!(from_cli.len(), 4, "the org and its three keys: {audit}");
    assert!(
        from_cli.iter().any(|d| d.contains("operator key created")),
        "{from_cli:?}"
    );

    let (status, stderr, took) = server.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

/// Starts `serve` with `cmd`'s settings; returns its first line, then stops it.
fn serve_banner(cmd: &mut Command) -> String {
    let mut server = Server::start(cmd);
    let line = server.line();
    let addr = address_in(&line);
    wait_healthy(addr);
    let (status, stderr, _) = server.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    line
}

/// Asserts that a `serve` banner names the address `ip` (any port) and the store `db`.
#[track_caller]
fn assert_banner(line: &str, ip: &str, db: &str, why: &str) {
    assert!(
        line.starts_with(&format!("devext serving on http://{ip}:")),
        "{why}: {line}"
    );
    assert!(line.contains(db), "{line}");
}

#[test]
fn serve_settings_come_from_flags_then_environment_then_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let config = p("devext.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.2:0\"\ndb = \"{}\"\nplugins = []\nallow_loopback_http = true\ncall_timeout_secs = 5\nview_cache_entries = 0\n",
            p("file.db")
        ),
    )
    .unwrap();

    // Each source is told apart by the loopback address it names (port 0: any free port).
    let line = serve_banner(
        devext()
            .args([
                "serve",
                "--config",
                &config,
                "--listen",
                "127.0.0.4:0",
                "--db",
                &p("flag.db"),
            ])
            .env("DEVEXT_LISTEN", "127.0.0.3:0")
            .env("DEVEXT_DB", p("env.db")),
    );
    assert_banner(&line, "127.0.0.4", "flag.db", "flag wins");

    let line = serve_banner(
        devext()
            .args(["serve", "--config", &config])
            .env("DEVEXT_LISTEN", "127.0.0.3:0")
            .env("DEVEXT_DB", p("env.db")),
    );
    assert_banner(&line, "127.0.0.3", "env.db", "env beats the file");

    // The config file itself may come from the environment.
    let line = serve_banner(devext().args(["serve"]).env("DEVEXT_CONFIG", &config));
    assert_banner(&line, "127.0.0.2", "file.db", "the file");
    for db in ["flag.db", "env.db", "file.db"] {
        assert!(dir.path().join(db).exists(), "{db} created");
    }

    // Unknown keys and unreadable files are errors that name the file.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_port = 9\n").unwrap();
    let out = run(devext().args(["serve", "--config", &config]));
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains("devext.toml") && err.contains("listen_port"),
        "{err}"
    );
    let out = run(devext().args(["serve", "--config", &p("missing.toml")]));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("missing.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_store_whose_key_file_is_gone_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("devext.db");
    printed_key(&run(devext().args([
        "orgs",
        "create",
        "acme",
        "--db",
        path_str(&db),
    ])));
    let key_file = dir.path().join("devext.db.key");
    assert!(key_file.exists());
    std::fs::remove_file(&key_file).unwrap();
    let started = Instant::now();
    let out = run(devext().args(["serve", "--db", path_str(&db), "--listen", "127.0.0.1:0"]));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        !text(&out.stdout).contains("serving"),
        "{}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(err.contains("secret key is missing"), "{err}");
    assert!(
        err.contains(path_str(&key_file)),
        "names the key file: {err}"
    );
    assert!(!key_file.exists(), "no new key made up");
    // The other commands refuse the store too.
    let out = run(devext().args([
        "keys",
        "create",
        "--org",
        "acme",
        "--role",
        "viewer",
        "--db",
        path_str(&db),
    ]));
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("secret key is missing"));
}

#[test]
fn the_demo_serves_twelve_devices_and_leaves_nothing_behind() {
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        devext()
            .args(["demo", "--listen", "127.0.0.1:0"])
            .current_dir(cwd.path())
            .env("TMPDIR", tmp.path()),
    );
    let first = server.line();
    assert!(
        first.starts_with("devext demo: http://127.0.0.1:"),
        "{first}"
    );
    let addr = address_in(&first);
    assert_ne!(addr.port(), 0, "the real port is printed");
    let mut banner = vec![first];
    let key = loop {
        let line = server.line();
        if line.starts_with("dvx_") {
            break line;
        }
        banner.push(line);
        assert!(banner.len() < 10, "no key in {banner:?}");
    };
    // A person's way in: the dashboard's URL and a demo user, each on its own line.
    assert!(
        banner.contains(&format!("dashboard: http://{addr}/")),
        "{banner:?}"
    );
    assert!(
        banner.contains(&"email: demo@example.com".to_owned()),
        "{banner:?}"
    );
    let password = banner
        .iter()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password line in {banner:?}"))
        .to_owned();
    assert!(
        tmp.path().read_dir().unwrap().next().is_some(),
        "the demo store is in TMPDIR"
    );
    wait_healthy(addr);

    let (s, list) = http(addr, "GET", "/api/v1/devices", Some(&key), None);
    assert_eq!(s, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 12, "{list}");
    let id = items[0]["id"].as_str().unwrap();
    let (s, drill) = http(
        addr,
        "GET",
        &format!("/api/v1/devices/{id}/extensions"),
        Some(&key),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(drill["extensions"][0]["plugin"], "jasper");
    assert_eq!(drill["extensions"][0]["available"], true, "{drill}");
    let (s, overview) = http(
        addr,
        "POST",
        &format!("/api/v1/devices/{id}/extensions/jasper/overview"),
        Some(&key),
        Some(json!({})),
    );
    assert_eq!(s, 200, "{overview}");
    assert_eq!(overview["iccid"], items[0]["extensions"]["jasper"]["iccid"]);
    assert_eq!(overview["status"], "activated", "activated SIMs come first");
    // The printed user signs in to the dashboard, which lists the demo's devices.
    let cookie = sign_in(addr, "demo@example.com", &password).expect("the demo user signs in");
    let (s, page) = get_page(addr, "/devices", &cookie);
    assert_eq!(s, 200);
    assert!(page.contains("demo device 01"), "{page}");

    let (status, stderr, took) = server.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let left: Vec<_> = tmp.path().read_dir().unwrap().collect();
    assert!(left.is_empty(), "the temporary store is removed: {left:?}");
    let made: Vec<_> = cwd.path().read_dir().unwrap().collect();
    assert!(
        made.is_empty(),
        "nothing written to the working directory: {made:?}"
    );
}

#[test]
fn debug_logs_are_plain_text_off_a_terminal_and_leave_sql_to_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("devext.db");
    let db = path_str(&db);
    let admin = printed_key(&run(devext().args(["orgs", "create", "acme", "--db", db])));
    let logs_at = |level: &str| {
        let mut server = Server::start(devext().env("DEVEXT_LOG", level).args([
            "serve",
            "--db",
            db,
            "--listen",
            "127.0.0.1:0",
        ]));
        let addr = address_in(&server.line());
        wait_healthy(addr);
        let (s, _) = http(addr, "GET", "/api/v1/devices", Some(&admin), None);
        assert_eq!(s, 200);
        let (status, stderr, _) = server.terminate();
        assert_eq!(status.code(), Some(0), "{stderr}");
        stderr
    };
    let debug = logs_at("debug");
    // stderr is a pipe here: no colour codes for a file or a CI log.
    assert!(!debug.contains('\u{1b}'), "{debug}");
    assert!(debug.contains("INFO"), "the service logs at all: {debug}");
    assert!(
        !debug.contains("sqlx::query"),
        "SQL statements at debug: {debug}"
    );
    let trace = logs_at("trace");
    assert!(
        trace.contains("sqlx::query"),
        "SQL statements are at trace: {trace}"
    );
}

#[test]
fn orgs_list_shows_each_organisation_and_the_store_commands_take_no_plugin_flags() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("devext.db");
    let db = path_str(&db);
    // A mistyped path is an error, and creates no store there.
    let missing = dir.path().join("nope.db");
    let out = run(devext().args(["orgs", "list", "--db", path_str(&missing)]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no store at"),
        "{}",
        text(&out.stderr)
    );
    assert!(!missing.exists());

    printed_key(&run(devext().args(["orgs", "create", "zeta", "--db", db])));
    printed_key(&run(devext().args(["orgs", "create", "acme", "--db", db])));
    printed_key(&run(devext().args([
        "keys", "create", "--org", "acme", "--role", "viewer", "--db", db,
    ])));
    let out = run(devext().args(["orgs", "list", "--db", db]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("acme  devices: 0  active keys: 2  extensions on: none"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("zeta  devices: 0  active keys: 1"),
        "{lines:?}"
    );

    let out = run(devext().args(["orgs", "list", "--json", "--db", db]));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["items"][0]["name"], "acme");
    assert_eq!(json["items"][0]["active_keys"], 2);
    assert_eq!(json["items"][1]["extensions_on"], json!([]));

    // `orgs` and `keys` load no plugins: their help offers no plugin flags, and they refuse one.
    for cmd in [
        &["orgs", "create", "--help"][..],
        &["keys", "create", "--help"],
        &["orgs", "list", "--help"],
    ] {
        let help = text(&run(devext().args(cmd)).stdout);
        assert!(help.contains("--db"), "{help}");
        assert!(
            !help.contains("--plugins") && !help.contains("--allow-loopback-http"),
            "{help}"
        );
    }
    let out = run(devext().args(["orgs", "list", "--plugins", "x", "--db", db]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn one_request_is_followed_by_its_id_through_json_logs_and_the_audit_log() {
    let cwd = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        devext()
            .args(["demo", "--listen", "127.0.0.1:0"])
            .env("DEVEXT_LOG", "debug")
            .env("DEVEXT_LOG_FORMAT", "json")
            .current_dir(cwd.path()),
    );
    let addr = address_in(&server.line());
    let key = loop {
        let line = server.line();
        if line.starts_with("dvx_") {
            break line;
        }
    };
    wait_healthy(addr);
    let (_, list) = http(addr, "GET", "/api/v1/devices", Some(&key), None);
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    // An action: it reaches Jasper (the simulator) and is audited.
    let (s, body, head) = http_with(
        addr,
        "POST",
        &format!("/api/v1/devices/{id}/extensions/jasper/send_sms"),
        Some(&key),
        Some(json!({"message": "hello"})),
        &[("x-request-id", "trace-me-7")],
    );
    assert_eq!(s, 200, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-request-id: trace-me-7"),
        "{head}"
    );
    // Without one, the service makes one up and says which.
    let (_, _, head) = http_with(addr, "GET", "/healthz", None, None, &[]);
    assert!(
        head.to_ascii_lowercase().contains("x-request-id: req_"),
        "{head}"
    );
    let (_, audit) = http(addr, "GET", "/api/v1/audit", Some(&key), None);
    let entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["op"] == "send_sms")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(entry["request_id"], "trace-me-7", "{entry}");

    let (status, stderr, _) = server.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // One JSON object per line, and the plugin's upstream calls carry the request's id.
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "trace-me-7")
        .collect();
    assert!(
        of_request
            .iter()
            .any(|l| l["fields"]["message"] == "plugin http request"),
        "{of_request:?}"
    );
}

/// Posts the sign-in form; the session cookie (`devext_session=...`) on success.
fn sign_in(addr: SocketAddr, email: &str, password: &str) -> Option<String> {
    let body = format!(
        "email={}&password={}",
        email.replace('@', "%40"),
        password.replace(' ', "+")
    );
    let mut sock = TcpStream::connect(addr).expect("connect");
    let req = format!(
        "POST /sign-in HTTP/1.1\r\nhost: {addr}\r\norigin: http://{addr}\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    sock.read_to_string(&mut raw).unwrap();
    raw.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// GETs a dashboard page with a session cookie: status and body.
fn get_page(addr: SocketAddr, path: &str, cookie: &str) -> (u16, String) {
    let (s, body, _) = http_with(addr, "GET", path, None, None, &[("cookie", cookie)]);
    (s, body.as_str().unwrap_or_default().to_owned())
}

/// `devext` with `stdin` on its standard input.
fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run devext");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn users_made_on_the_command_line_sign_in_and_lose_their_sessions_when_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let db = path_str(&db);
    // A password too short: refused, and no organisation is created.
    let out = run_with_stdin(
        devext().args([
            "orgs",
            "create",
            "acme",
            "--admin-email",
            "ann@example.com",
            "--db",
            db,
        ]),
        "short\n",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("10 to 200 characters"),
        "{}",
        text(&out.stderr)
    );
    let out = run(devext().args(["orgs", "list", "--db", db, "--json"]));
    assert!(!text(&out.stdout).contains("acme"));
    // The first admin user, and the admin key still alone on the last line.
    let out = run_with_stdin(
        devext().args([
            "orgs",
            "create",
            "acme",
            "--admin-email",
            "ann@example.com",
            "--db",
            db,
        ]),
        "ann's long password\n",
    );
    printed_key(&out);
    assert!(
        text(&out.stdout).contains("admin user ann@example.com"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("ann's long password"));
    let out = run_with_stdin(
        devext().args([
            "users",
            "create",
            "--org",
            "acme",
            "--email",
            "vic@example.com",
            "--role",
            "viewer",
            "--db",
            db,
        ]),
        "vic's long password\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // An email is unique across the store.
    let out = run_with_stdin(
        devext().args([
            "users",
            "create",
            "--org",
            "acme",
            "--email",
            "VIC@example.com",
            "--role",
            "admin",
            "--db",
            db,
        ]),
        "another long password\n",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("exists already"),
        "{}",
        text(&out.stderr)
    );
    let out = run(devext().args(["users", "list", "--org", "acme", "--db", db, "--json"]));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let roles: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["email"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [("ann@example.com", "admin"), ("vic@example.com", "viewer")]
    );
    assert!(!text(&out.stdout).contains("argon2"), "no hash is printed");

    let mut server = Server::start(devext().args(["serve", "--listen", "127.0.0.1:0", "--db", db]));
    let addr = address_in(&server.line());
    wait_healthy(addr);
    assert_eq!(sign_in(addr, "vic@example.com", "wrong password!!"), None);
    let cookie = sign_in(addr, "vic@example.com", "vic's long password").expect("signed in");
    let (s, page) = get_page(addr, "/devices", &cookie);
    assert_eq!(s, 200);
    assert!(page.contains("vic@example.com"));
    // Disabled on the command line: the session ends at once, and signing in fails.
    let out = run(devext().args(["users", "disable", "--email", "vic@example.com", "--db", db]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (s, _) = get_page(addr, "/devices", &cookie);
    assert_eq!(s, 303, "a disabled user's session still works");
    assert_eq!(
        sign_in(addr, "vic@example.com", "vic's long password"),
        None
    );
    // Enabled and given a new password: the old one no longer works.
    run(devext().args(["users", "enable", "--email", "vic@example.com", "--db", db]));
    let out = run_with_stdin(
        devext().args([
            "users",
            "reset-password",
            "--email",
            "vic@example.com",
            "--db",
            db,
        ]),
        "vic's new long password\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        sign_in(addr, "vic@example.com", "vic's long password"),
        None
    );
    assert!(sign_in(addr, "vic@example.com", "vic's new long password").is_some());
    let (status, stderr, _) = server.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("long password"),
        "a password was logged: {stderr}"
    );
}

#[tokio::test]
async fn an_sqlite_installation_moves_to_postgres_with_store_copy() {
    let Some(url) = devext_service::testing::fresh_postgres_database("cli_copy").await else {
        println!("skipped: PostgreSQL not installed (store copy)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let db = db.to_str().unwrap();
    let out = run(devext().args(["orgs", "create", "acme", "--db", db]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key_file = format!("{db}.key");

    // Without the key, PostgreSQL refuses to open.
    let out = run(devext().args(["orgs", "list", "--db", &url]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("DEVEXT_SECRET_KEY"),
        "{}",
        text(&out.stderr)
    );

    let out = run(devext().args(["store", "copy", "--from", db, "--to", &url]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 organisations"),
        "{}",
        text(&out.stdout)
    );
    // The copy opens with the SQLite store's key, and holds its organisation.
    let out = run(devext().args([
        "orgs",
        "list",
        "--json",
        "--db",
        &url,
        "--secret-key-file",
        &key_file,
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["items"][0]["name"], "acme");
    assert_eq!(listed["items"][0]["active_keys"], 1);
    // A second copy finds the target in use; the password never shows in messages.
    let out = run(devext().args(["store", "copy", "--from", db, "--to", &url]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
    let out = run(devext().args(["store", "copy", "--from", db, "--to", "/tmp/x.db"]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("PostgreSQL URL"),
        "{}",
        text(&out.stderr)
    );
}
