//! A service over a fresh store and the static plugins, driven in-process (shared by the
//! integration binary and `secret_logs`).
#![allow(dead_code)] // each test binary uses part of it

use axum::http::StatusCode;
use devext_host::RuntimeConfig;
use devext_service::testing::TestService;
use serde_json::{Value, json};

/// The message of an error answer.
pub(crate) fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap()
}

/// The `name` of each element of the array `list`.
pub(crate) fn names_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect()
}

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

/// A [`TestService`] with shorthands that answer `(status, body)`; the rest of the service
/// (`app`, `router`, `admin`, `key`, `client` for requests without a key or with headers)
/// through `Deref`.
pub(crate) struct Env {
    service: TestService,
}

impl std::ops::Deref for Env {
    type Target = TestService;
    fn deref(&self) -> &TestService {
        &self.service
    }
}

impl Env {
    pub(crate) async fn new() -> Env {
        Self::with_runtime(RuntimeConfig::default()).await
    }

    /// Like [`Env::new`] with other runtime settings.
    pub(crate) async fn with_runtime(config: RuntimeConfig) -> Env {
        Env {
            service: TestService::start_on(crate::BACKEND, config).await,
        }
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.client
            .send("GET", path, Some(key), None, &[])
            .await
            .status_and_body()
    }

    pub(crate) async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.client
            .send("POST", path, Some(key), Some(body), &[])
            .await
            .status_and_body()
    }

    /// A POST with an `Idempotency-Key`.
    pub(crate) async fn post_idempotent(
        &self,
        path: &str,
        key: &str,
        body: Value,
        idempotency_key: &str,
    ) -> (StatusCode, Value) {
        self.client
            .send(
                "POST",
                path,
                Some(key),
                Some(body),
                &[("idempotency-key", idempotency_key)],
            )
            .await
            .status_and_body()
    }

    pub(crate) async fn put(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.client
            .send("PUT", path, Some(key), Some(body), &[])
            .await
            .status_and_body()
    }

    pub(crate) async fn delete(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.client
            .send("DELETE", path, Some(key), None, &[])
            .await
            .status_and_body()
    }

    /// The OpenAPI document (an open endpoint: no key).
    pub(crate) async fn openapi(&self) -> Value {
        self.client
            .send("GET", "/api/v1/openapi.json", None, None, &[])
            .await
            .body
    }

    /// Sets the org's echo settings with `key`.
    pub(crate) async fn put_echo(&self, key: &str, settings: Value) -> (StatusCode, Value) {
        self.put("/api/v1/extensions/echo", key, settings).await
    }

    /// Switches echo on with a greeting and a secret token; returns a device id configured
    /// for echo.
    pub(crate) async fn echo_device(&self, key: &str) -> String {
        let (s, _) = self
            .put_echo(
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
