//! Every route of the real route table is guarded as the table says: its least role and its
//! body limit hold before its handler runs. New routes are covered without changing this file.

use axum::http::StatusCode;
use devext_service::api::routes;
use devext_service::store::{Role, SqliteStore};
use serde_json::json;

use crate::api_env::{Env, error_message};

/// The role just below `role`, if there is one.
fn below(role: Role) -> Option<Role> {
    match role {
        Role::Admin => Some(Role::Operator),
        Role::Operator => Some(Role::Viewer),
        Role::Viewer => None,
    }
}

/// `path` with its parameters filled in.
fn fill(path: &str, id: &str) -> String {
    path.replace("{id}", id)
        .replace("{plugin}", "echo")
        .replace("{op}", "echo")
}

#[tokio::test]
async fn every_route_answers_401_without_a_key_and_403_below_its_role() {
    let env = Env::new().await;
    let viewer = env.key("acme", Role::Viewer).await;
    let operator = env.key("acme", Role::Operator).await;
    let key_of = |role: Role| match role {
        Role::Viewer => &viewer,
        Role::Operator => &operator,
        Role::Admin => &env.admin,
    };
    let mut checked = 0;
    for r in routes::<SqliteStore>() {
        let Some(role) = r.role else {
            continue;
        };
        let path = fill(r.path, "dev_0");
        let method = r.method.as_str();
        let body = r.body.as_ref().map(|_| json!({}));
        let (s, out) = env
            .client
            .send(method, &path, None, body.clone(), &[])
            .await
            .status_and_body();
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a key: {out}"
        );
        assert_eq!(out["error"]["kind"], "unauthenticated", "{method} {path}");
        let s = env
            .client
            .send(method, &path, Some("dvx_not-a-key"), body.clone(), &[])
            .await
            .status;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a wrong key"
        );
        if let Some(lower) = below(role) {
            let (s, out) = env
                .client
                .send(method, &path, Some(key_of(lower)), body, &[])
                .await
                .status_and_body();
            assert_eq!(
                s,
                StatusCode::FORBIDDEN,
                "{method} {path} with a {} key: {out}",
                lower.as_str()
            );
            let message = error_message(&out);
            assert!(
                message.contains(role.as_str()),
                "{method} {path}: {message}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} routes have a role");
}

#[tokio::test]
async fn every_route_that_takes_a_body_refuses_one_over_its_limit() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let mut checked = 0;
    for r in routes::<SqliteStore>() {
        if r.body.is_none() {
            assert_eq!(
                r.body_limit, 0,
                "{} {}: a limit without a body",
                r.method, r.path
            );
            continue;
        }
        if !r.media.contains(&"application/json") {
            // A streamed body (the device import): its limit is the import's (tests/import.rs
            // and the handler's unit test).
            continue;
        }
        let path = fill(r.path, &device);
        let method = r.method.as_str();
        // `{"name":"..."}` of exactly `len` bytes.
        let body = |len: usize| json!({"name": "x".repeat(len - r#"{"name":""}"#.len())});
        let over = body(r.body_limit + 1);
        assert_eq!(over.to_string().len(), r.body_limit + 1);
        let (s, out) = env
            .client
            .send(method, &path, Some(&env.admin), Some(over), &[])
            .await
            .status_and_body();
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{method} {path}: {out}");
        assert_eq!(out["error"]["kind"], "too_large", "{method} {path}");
        // At the limit, the body is read (and refused for what it says, not for its size).
        let (s, out) = env
            .client
            .send(
                method,
                &path,
                Some(&env.admin),
                Some(body(r.body_limit)),
                &[],
            )
            .await
            .status_and_body();
        assert!(
            s.is_client_error() && s != StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}: {s} {out}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} routes take a body");
}

#[tokio::test]
async fn a_method_a_path_lacks_is_a_json_405_with_the_allow_header() {
    let env = Env::new().await;
    let table = routes::<SqliteStore>();
    let mut checked = 0;
    for r in &table {
        let allowed: Vec<&str> = table
            .iter()
            .filter(|o| o.path == r.path)
            .map(|o| o.method.as_str())
            .collect();
        if allowed.contains(&"PATCH") || allowed[0] != r.method.as_str() {
            continue; // once per path
        }
        let path = fill(r.path, "dev_0");
        // With the admin key and without any: the method is wrong either way.
        for key in [Some(env.admin.as_str()), None] {
            let reply = env.client.send("PATCH", &path, key, None, &[]).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "PATCH {path}: {}",
                reply.text
            );
            assert_eq!(
                reply.body["error"]["kind"], "method_not_allowed",
                "PATCH {path}: {}",
                reply.text
            );
            let message = error_message(&reply.body);
            assert!(message.contains("PATCH"), "{path}: {message}");
            assert!(message.contains(r.path), "{path}: {message}");
            let allow = reply
                .headers
                .get("allow")
                .unwrap_or_else(|| panic!("PATCH {path}: no Allow header"))
                .to_str()
                .unwrap()
                .to_owned();
            for method in &allowed {
                assert!(allow.contains(method), "PATCH {path}: Allow {allow:?}");
                assert!(message.contains(method), "{path}: {message}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} paths");
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404_naming_it() {
    let env = Env::new().await;
    for (method, path) in [
        ("GET", "/api/v1/nope"),
        ("POST", "/api/v1/devices/dev_0/nope"),
        // `/` is the dashboard's; a path under neither is not found.
        ("GET", "/nowhere"),
        ("DELETE", "/api/v2/devices"),
    ] {
        for key in [Some(env.admin.as_str()), None] {
            let (s, body) = env
                .client
                .send(method, path, key, None, &[])
                .await
                .status_and_body();
            assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {body}");
            assert_eq!(
                body["error"]["kind"], "not_found",
                "{method} {path}: {body}"
            );
            let message = error_message(&body);
            assert!(message.contains(path), "{method} {path}: {message}");
        }
    }
}
