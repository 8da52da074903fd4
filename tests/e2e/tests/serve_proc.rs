//! `devext serve` as a child process, and one raw HTTP/1.1 exchange with it: for the tests that
//! kill the service (`replicas`, `crash`), where a client library's retries and pools would hide
//! what a dead server answers.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP/1.1 exchange (`Connection: close`): status and JSON body; `None` when the server is
/// gone (connection refused or reset, no answer).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> Option<(u16, Value)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         connection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("content-type: application/json\r\n");
    }
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(tail.get(..n)?);
            rest = tail.get(n + 2..)?;
        }
        out
    } else {
        rest.to_owned()
    };
    Some((
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}

/// A `devext serve` process (killed with SIGKILL when dropped).
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// SIGKILL (std's `kill`), and waits for the process to be gone.
    pub(crate) fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

/// The `devext` binary without the caller's `DEVEXT_*` settings; `key_hex` as
/// `DEVEXT_SECRET_KEY` when given.
pub(crate) fn devext(key_hex: Option<&str>) -> Command {
    let mut c = Command::new(crate::support::devext_binary());
    for var in [
        "DEVEXT_PLUGINS",
        "DEVEXT_ALLOW_LOOPBACK_HTTP",
        "DEVEXT_LOG",
        "DEVEXT_DB",
        "DEVEXT_SECRET_KEY",
        "DEVEXT_SECRET_KEY_FILE",
        "DEVEXT_CONFIG",
    ] {
        c.env_remove(var);
    }
    if let Some(k) = key_hex {
        c.env("DEVEXT_SECRET_KEY", k);
    }
    c
}

/// Starts `devext serve --db DB --listen 127.0.0.1:0 --config CONFIG` and waits for its address.
pub(crate) fn start_serve(db: &str, key_hex: Option<&str>, config: &std::path::Path) -> Served {
    let mut child = devext(key_hex)
        .args(["serve", "--db", db, "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("devext serve starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("a first line");
    let addr = line
        .strip_prefix("devext serving on http://")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // Keep draining stdout so the service never blocks on it.
    std::thread::spawn(move || for _ in out.lines() {});
    Served { child, addr }
}

/// Creates the organisation `acme` in `db` with `devext orgs create`; its first admin key.
pub(crate) fn create_org(db: &str, key_hex: Option<&str>) -> String {
    create_org_named(db, key_hex, "acme")
}

/// Creates the organisation `name` in `db` with `devext orgs create`; its first admin key.
pub(crate) fn create_org_named(db: &str, key_hex: Option<&str>, name: &str) -> String {
    let out = devext(key_hex)
        .args(["orgs", "create", name, "--db", db])
        .output()
        .expect("devext orgs create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let admin = stdout.lines().last().unwrap_or_default().trim().to_owned();
    assert!(admin.starts_with("dvx_"), "{stdout}");
    admin
}
