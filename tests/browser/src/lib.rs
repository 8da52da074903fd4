//! Helpers of the browser tests: Debian's Chromium and chromedriver (found on `PATH`, or
//! skipped with "skipped: Chromium not installed" unless `CI` is set), a browser session per
//! test with a fresh profile, and `devext serve` as a child process over a fresh store.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

/// The password every test user gets.
pub const PASSWORD: &str = "browser test password";

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Chromium and chromedriver, or `None` after saying the test is skipped; with `CI` set a
/// missing browser is a failure.
pub fn chromium() -> Option<(PathBuf, PathBuf)> {
    match (on_path("chromium"), on_path("chromedriver")) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "Chromium not installed (apt-get install chromium chromium-driver), and CI is set"
            );
            eprintln!("skipped: Chromium not installed");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running child process, killed on drop.
#[derive(Debug)]
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium session through its own chromedriver, with a fresh profile.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    _driver: Running,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium window of `width` x `height`.
    ///
    /// # Panics
    /// If chromedriver or Chromium do not start (test failures).
    pub async fn start(chromium: &Path, chromedriver: &Path, width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Running(driver);
        wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
        let profile = tempfile::tempdir().expect("a profile directory");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({"binary": chromium, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }
}

/// `devext serve` over a fresh store holding the org `acme` with an admin user
/// (`admin@example.com`) and a viewer (`viewer@example.com`), both with [`PASSWORD`].
pub struct Server {
    /// Where it listens.
    pub base: String,
    /// The store.
    pub db: PathBuf,
    _child: Running,
    _dir: tempfile::TempDir,
}

fn devext(args: &[&str], stdin: &str) {
    let mut child = Command::new(devext_test_support::devext_binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("devext runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("the password is written");
    let out = child.wait_with_output().expect("devext ends");
    assert!(
        out.status.success(),
        "devext {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    /// Starts one; `extra` are more `devext serve` flags.
    ///
    /// # Panics
    /// If the binary cannot be built or does not start.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("a store directory");
        let db = dir.path().join("browser.db");
        let db_arg = db.to_str().expect("a UTF-8 path");
        let pw = format!("{PASSWORD}\n");
        devext(
            &[
                "orgs",
                "create",
                "acme",
                "--admin-email",
                "admin@example.com",
                "--db",
                db_arg,
            ],
            &pw,
        );
        devext(
            &[
                "users",
                "create",
                "--org",
                "acme",
                "--email",
                "viewer@example.com",
                "--role",
                "viewer",
                "--db",
                db_arg,
            ],
            &pw,
        );
        let mut child = Command::new(devext_test_support::devext_binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                db_arg,
                "--allow-loopback-http",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("devext serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the banner");
        let addr: SocketAddr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        wait_for(addr);
        Server {
            base: format!("http://{addr}"),
            db,
            _child: Running(child),
            _dir: dir,
        }
    }
}

/// Where the tests write their screenshots: `DEVEXT_SCREENSHOT_DIR`, else
/// `target/browser-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("DEVEXT_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| devext_test_support::profile_dir().join("../browser-screenshots"));
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

/// Saves a PNG of the page as `name.png` in [`screenshot_dir`].
///
/// # Panics
/// If the browser or the file system fails.
pub async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png)
        .expect("the screenshot is written");
}
