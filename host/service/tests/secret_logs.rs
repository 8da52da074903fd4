//! Secrets never appear in API responses or in the service's logs (its own test binary, so that
//! it can own the process-wide log subscriber).

use axum::http::StatusCode;
use devext_service::store::Store;
use serde_json::json;

// The echo plugin (which has a `writeOnly` setting, `token`) as a static plugin.
use devext_echo as _;

/// The store of this binary's suite.
pub(crate) const BACKEND: devext_service::testing::Backend =
    devext_service::testing::Backend::Sqlite;

#[path = "api_env.rs"]
mod api_env;

use api_env::Env;

#[tokio::test(flavor = "current_thread")]
async fn secrets_are_never_returned_or_logged() {
    let logs = devext_service::testing::captured_logs();

    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let (_, ext) = env.get("/api/v1/extensions/echo", &env.admin).await;
    assert_eq!(ext["secrets_set"], json!(["token"]));
    assert_eq!(ext["config"], json!({"greeting": "hi"}));
    // A PUT without the secret keeps it; the mask never overwrites it.
    for body in [
        json!({"enabled": true, "config": {"greeting": "hey"}}),
        json!({"enabled": true, "config": {"greeting": "hey", "token": "********"}}),
    ] {
        let (s, out) = env.put_echo(&env.admin, body).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(out["secrets_set"], json!(["token"]));
    }
    let stored = env.app.store.extensions(1).await.unwrap();
    assert_eq!(stored[0].secrets["token"], "tok-SECRET-1");
    // Calls, listings and the audit log never show it.
    let op = format!("/api/v1/devices/{device}/extensions/echo/echo");
    let action = format!("/api/v1/devices/{device}/extensions/echo/count");
    let mut seen = String::new();
    for (s, v) in [
        env.post(&op, &env.admin, json!({"message": "m"})).await,
        env.post(&action, &env.admin, json!({})).await,
        env.get("/api/v1/extensions", &env.admin).await,
        env.get("/api/v1/audit", &env.admin).await,
        env.get(&format!("/api/v1/devices/{device}/extensions"), &env.admin)
            .await,
    ] {
        assert_eq!(s, StatusCode::OK);
        seen.push_str(&v.to_string());
    }
    assert!(!seen.contains("tok-SECRET-1"), "{seen}");
    let logs = logs.text();
    assert!(
        !logs.is_empty(),
        "the subscriber captured the service's logs"
    );
    assert!(!logs.contains("tok-SECRET-1"), "{logs}");
    assert!(!logs.contains(&env.admin), "API keys are secrets too");
}
