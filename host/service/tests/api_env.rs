//! A service over a fresh store and the static plugins, driven in-process (shared by the
//! integration binary and `secret_logs`).
#![allow(dead_code)] // each test binary uses part of it

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use devext_host::RuntimeConfig;
use devext_service::App;
use devext_service::store::{Role, SqliteStore};
use devext_service::testing::TestService;
use serde_json::{Value, json};

/// An echo device id no other test uses: the static echo plugin is one instance per process, and
/// its counters are per device id.
pub(crate) fn unique_echo_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "p-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub(crate) struct Env {
    pub(crate) router: Router,
    pub(crate) app: Arc<App<SqliteStore>>,
    pub(crate) admin: String,
    service: TestService,
}

impl Env {
    pub(crate) async fn new() -> Env {
        Self::with_runtime(RuntimeConfig::default()).await
    }

    /// Like [`Env::new`] with other runtime settings.
    pub(crate) async fn with_runtime(config: RuntimeConfig) -> Env {
        let service = TestService::start(config).await;
        Env {
            router: service.router.clone(),
            app: service.app.clone(),
            admin: service.admin.clone(),
            service,
        }
    }

    /// A key of `role` in org `org` (created if needed).
    pub(crate) async fn key(&self, org: &str, role: Role) -> String {
        self.service.key(org, role).await
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let reply = self
            .service
            .client
            .send(method, path, key, body, extra)
            .await;
        (reply.status, reply.body)
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.send("GET", path, Some(key), None, &[]).await
    }

    pub(crate) async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.send("POST", path, Some(key), Some(body), &[]).await
    }

    pub(crate) async fn put(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.send("PUT", path, Some(key), Some(body), &[]).await
    }

    pub(crate) async fn delete(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.send("DELETE", path, Some(key), None, &[]).await
    }

    /// Switches echo on with a greeting and a secret token; returns a device id configured
    /// for echo.
    pub(crate) async fn echo_device(&self, key: &str) -> String {
        let (s, _) = self
            .put(
                "/api/v1/extensions/echo",
                key,
                json!({"enabled": true, "config": {"greeting": "hi", "token": "tok-SECRET-1"}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, d) = self
            .post(
                "/api/v1/devices",
                key,
                json!({"name": "pump", "extensions": {"echo": {"id": unique_echo_id()}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        d["id"].as_str().unwrap().to_owned()
    }
}
