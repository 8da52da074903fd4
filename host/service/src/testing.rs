//! Helpers for tests that drive the service in-process (feature `testing`): a
//! [`TestService`] over a fresh store, a [`Client`] that sends requests through the router
//! without a socket, and [`captured_logs`], the process's log lines (to check that no secret is
//! ever logged).

use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use devext_host::{Runtime, RuntimeConfig};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::api::{App, router};
use crate::crypto::SecretKey;
use crate::store::{AnyStore, PgStore, Role, SqliteStore, Store};

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh database on the test PostgreSQL server (`devext_test_support::postgres`).
    Postgres,
}

/// A fresh, empty PostgreSQL database for one test: its URL, or `None` when PostgreSQL is not
/// installed (and `CI` is not set; see `devext_test_support::postgres::server`).
///
/// # Panics
/// When the server does not answer (a test failure).
pub async fn fresh_postgres_database(name: &str) -> Option<String> {
    use sqlx::Connection as _;
    let server = devext_test_support::postgres::server()?;
    let db = devext_test_support::postgres::unique_database_name(name);
    let mut admin = sqlx::PgConnection::connect(&server.admin_url)
        .await
        .expect("the test PostgreSQL server answers");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
        .execute(&mut admin)
        .await
        .expect("a test database");
    Some(server.database_url(&db))
}

/// A fresh store of `backend` (SQLite in `dir`); `None` when it is PostgreSQL and PostgreSQL is
/// not installed.
///
/// # Panics
/// If the store cannot be created (a test failure).
pub async fn fresh_store(backend: Backend, dir: &std::path::Path, name: &str) -> Option<AnyStore> {
    Some(match backend {
        Backend::Sqlite => AnyStore::Sqlite(
            SqliteStore::open(&dir.join(format!("{name}.db")), None)
                .await
                .expect("a new store"),
        ),
        Backend::Postgres => {
            let url = fresh_postgres_database(name).await?;
            let key = SecretKey::generate().expect("a key");
            AnyStore::Postgres(PgStore::open(&url, key).await.expect("a new store"))
        }
    })
}

/// The service over a fresh store (SQLite in a temporary directory, removed on drop, or a fresh
/// PostgreSQL database) and the plugins a runtime with `config` loads, with one organisation,
/// `acme`, and an admin key of it.
pub struct TestService {
    /// The shared state.
    pub app: Arc<App<AnyStore>>,
    /// The router over `app`.
    pub router: Router,
    /// A client of `router`.
    pub client: Client,
    /// The admin key of `acme`.
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl TestService {
    /// Starts one.
    ///
    /// # Panics
    /// If the store cannot be created or the runtime does not load (test failures).
    pub async fn start(config: RuntimeConfig) -> TestService {
        Self::start_on(Backend::Sqlite, config).await
    }

    /// Starts one on `backend`. On PostgreSQL when it is not installed (and `CI` is not set),
    /// the test process ends here, successfully, after "skipped: PostgreSQL not installed":
    /// a whole suite run on PostgreSQL is skipped, not half of it.
    ///
    /// # Panics
    /// If the store cannot be created or the runtime does not load (test failures).
    pub async fn start_on(backend: Backend, config: RuntimeConfig) -> TestService {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let Some(store) = fresh_store(backend, dir.path(), "api").await else {
            println!(
                "skipped: PostgreSQL not installed (the suite needs it: DEVEXT_TEST_STORE=postgres)"
            );
            std::process::exit(0);
        };
        let org = store.create_org("acme").await.expect("an org");
        let (_, admin) = store
            .create_key(org.id, Role::Admin, "admin")
            .await
            .expect("a key");
        let runtime = Runtime::load(config).expect("the runtime loads");
        let app = App::new(runtime, store);
        let router = router(app.clone());
        TestService {
            client: Client::new(router.clone()),
            router,
            app,
            admin,
            _dir: dir,
        }
    }

    /// A new key of `role` in the organisation `org` (created if needed).
    ///
    /// # Panics
    /// If the store fails.
    pub async fn key(&self, org: &str, role: Role) -> String {
        let store = &self.app.store;
        let org = match store.org_by_name(org).await.expect("the store answers") {
            Some(o) => o,
            None => store.create_org(org).await.expect("an org"),
        };
        store
            .create_key(org.id, role, role.as_str())
            .await
            .expect("a key")
            .1
    }
}

/// An answer of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Reply {
    /// The status and the body, for checks that need no header.
    pub fn status_and_body(self) -> (StatusCode, Value) {
        (self.status, self.body)
    }
}

/// Sends requests to a router in-process (tower `oneshot`).
#[derive(Debug, Clone)]
pub struct Client {
    router: Router,
}

impl Client {
    /// A client of `router`.
    pub fn new(router: Router) -> Self {
        Client { router }
    }

    /// Sends `method path` with `Authorization: Bearer <key>` when `key` is given, `body` as
    /// JSON when given, and the `extra` headers.
    ///
    /// # Panics
    /// If the request cannot be built or the router fails (both test failures).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        for (n, v) in extra {
            req = req.header(*n, *v);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("a valid request");
        let response = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a readable body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Reply {
            status,
            headers,
            body,
            text,
        }
    }
}

/// Every log line of the process, at every level.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// What was logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process's log lines: installs the process-wide subscriber on first use (scoped
/// subscribers miss events from callsites that other test threads registered first), so a test
/// binary that calls this owns the global subscriber.
///
/// # Panics
/// If another global subscriber was installed before.
pub fn captured_logs() -> &'static CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = CapturedLogs::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global log subscriber");
        captured
    })
}
