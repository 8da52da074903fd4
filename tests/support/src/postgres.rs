//! A PostgreSQL server for tests: `DEVEXT_TEST_DATABASE_URL` when set, else a throw-away cluster
//! started once per test process (`initdb` and `pg_ctl` from `PATH` or
//! `/usr/lib/postgresql/*/bin`, a temporary data directory, a free loopback port), stopped and
//! removed when the process ends (a watchdog shell waits for the end of its stdin, which the
//! operating system closes however the test process ends). `initdb` refuses to run as root, so
//! as root the cluster runs as the `postgres` system user (`runuser -u postgres --`).
//!
//! Without PostgreSQL, [`server`] prints "skipped: PostgreSQL not installed" and answers `None`,
//! except when `CI` is set: then it panics (a CI run must test PostgreSQL).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Where to find the server: a base URL (`postgres://user@host:port`) without a database name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// URL of the server's `postgres` database, for administration (creating databases).
    pub admin_url: String,
    /// `postgres://user[:password]@host:port/` — append a database name.
    pub base_url: String,
}

impl Server {
    /// The URL of database `name` on this server.
    pub fn database_url(&self, name: &str) -> String {
        format!("{}{name}", self.base_url)
    }
}

/// The test server, started on first use; `None` when PostgreSQL is not installed (and `CI` is
/// not set).
///
/// # Panics
/// When the cluster cannot start, or PostgreSQL is missing and `CI` is set.
pub fn server() -> Option<Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER.get_or_init(start).clone()
}

/// Like [`server`], for a test that cannot run without it: prints the skip line once per call.
pub fn server_or_skip(test: &str) -> Option<Server> {
    let s = server();
    if s.is_none() {
        println!("skipped: PostgreSQL not installed ({test})");
    }
    s
}

fn start() -> Option<Server> {
    if let Ok(url) = std::env::var("DEVEXT_TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        return Some(from_url(url.trim()));
    }
    let Some(bin) = bin_dir() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "PostgreSQL not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin) \
                 and CI is set: the PostgreSQL tests must run in CI"
            );
        }
        println!("skipped: PostgreSQL not installed");
        return None;
    };
    Some(start_cluster(&bin))
}

/// `postgres://u@h:p/db?x` -> admin on `db` (or `postgres`), base without the database.
fn from_url(url: &str) -> Server {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let (base, db) = match head[scheme_end..].find('/') {
        Some(i) => (&head[..scheme_end + i], &head[scheme_end + i + 1..]),
        None => (head, ""),
    };
    let db = if db.is_empty() { "postgres" } else { db };
    let q = query.map(|q| format!("?{q}")).unwrap_or_default();
    Server {
        admin_url: format!("{base}/{db}{q}"),
        base_url: format!("{base}/"),
    }
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                return Some(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

fn is_root() -> bool {
    // The effective uid, without libc: `id -u`.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The watchdogs of the clusters this process started (their stdin closes at exit).
static WATCHDOGS: Mutex<Vec<Child>> = Mutex::new(Vec::new());

fn start_cluster(bin: &Path) -> Server {
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("devext-pg-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    if root {
        let ok = Command::new("chown")
            .args(["postgres:", &dir.display().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot hand {} to the postgres user", dir.display());
    }
    let port = free_port();
    let as_pg = if root { "runuser -u postgres -- " } else { "" };
    let script = format!(
        r#"set -e
D='{dir}'
B='{bin}'
{as_pg}"$B/initdb" -D "$D/data" -A trust -U postgres -E UTF8 --no-sync >"$D/initdb.log" 2>&1 || {{ cat "$D/initdb.log" >&2; exit 1; }}
{as_pg}"$B/pg_ctl" -D "$D/data" -w -l "$D/server.log" -o "-p {port} -k $D -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null || {{ cat "$D/server.log" >&2; exit 1; }}
echo ready
read _ || true
{as_pg}"$B/pg_ctl" -D "$D/data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$D"
"#,
        dir = dir.display(),
        bin = bin.display(),
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sh starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the watchdog answers");
    assert_eq!(
        line.trim(),
        "ready",
        "the throw-away PostgreSQL cluster did not start (see above)"
    );
    WATCHDOGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child);
    Server {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        base_url: format!("postgres://postgres@127.0.0.1:{port}/"),
    }
}

/// A database name unique in this process and across processes.
pub fn unique_database_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{clean}_{}_{n}_{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_admin_and_base() {
        let s = from_url("postgres://u:p@h:5/db?sslmode=disable");
        assert_eq!(s.admin_url, "postgres://u:p@h:5/db?sslmode=disable");
        assert_eq!(s.base_url, "postgres://u:p@h:5/");
        let s = from_url("postgres://u@h:5");
        assert_eq!(s.admin_url, "postgres://u@h:5/postgres");
        assert_eq!(s.database_url("x"), "postgres://u@h:5/x");
    }
}
