//! The HTTP API, in-process (tower `oneshot`) and over a real socket: every endpoint, roles, org
//! isolation, secrets, validation pointers, idempotency, error mapping, audit.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use devext_service::store::{Role, SqliteStore, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api_env::{Env, error_message, names_of};

#[tokio::test]
async fn open_endpoints_need_no_key_and_the_rest_do() {
    let env = Env::new().await;
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let s = env.client.send("GET", path, None, None, &[]).await.status;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    for path in [
        "/api/v1/plugins",
        "/api/v1/devices",
        "/api/v1/keys",
        "/api/v1/audit",
    ] {
        let (s, body) = env
            .client
            .send("GET", path, None, None, &[])
            .await
            .status_and_body();
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"]["kind"], "unauthenticated");
        let (s, _) = env.get(path, "dvx_0000").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (s, body) = env.get("/api/v1/plugins", &env.admin).await;
    assert_eq!(s, StatusCode::OK);
    let echo = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["manifest"]["name"] == "echo")
        .expect("echo is listed");
    // Presentation hints a UI would ignore are listed per plugin (echo has none).
    assert_eq!(echo["hint_warnings"], serde_json::json!([]));
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let env = Env::new().await;
    let doc = env.openapi().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for r in devext_service::api::routes::<SqliteStore>() {
        let method = r.method.as_str().to_ascii_lowercase();
        let op = &paths[r.path][&method];
        assert!(op.is_object(), "{} {}", r.method, r.path);
        assert_eq!(
            op.get("x-devext-role").and_then(Value::as_str),
            r.role.map(Role::as_str),
            "{} {}",
            r.method,
            r.path
        );
        assert_eq!(
            op.get("x-devext-action-role").and_then(Value::as_str),
            r.action_role.map(Role::as_str),
            "{} {}",
            r.method,
            r.path
        );
    }
    let run = &doc["paths"]["/api/v1/devices/{id}/extensions/{plugin}/{op}"]["post"];
    assert_eq!(run["x-devext-role"], "viewer");
    assert_eq!(run["x-devext-action-role"], "operator");
    assert_eq!(
        doc["paths"]["/api/v1/devices/{id}/extensions/{plugin}/{op}"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "path")
            .count(),
        3
    );
}

#[tokio::test]
async fn roles_include_the_ones_after_them() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let operator = env.key("acme", Role::Operator).await;
    let viewer = env.key("acme", Role::Viewer).await;
    let view = format!("/api/v1/devices/{device}/extensions/echo/echo");
    let action = format!("/api/v1/devices/{device}/extensions/echo/count");

    // Viewer: reads and views; no actions, settings, keys or device changes.
    assert_eq!(
        env.post(&view, &viewer, json!({"message": "x"})).await.0,
        StatusCode::OK
    );
    let (s, body) = env.post(&action, &viewer, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(error_message(&body).contains("operator"));
    assert_eq!(env.get("/api/v1/devices", &viewer).await.0, StatusCode::OK);
    assert_eq!(
        env.get("/api/v1/keys", &viewer).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.put_echo(&viewer, json!({"enabled": false})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.post("/api/v1/devices", &viewer, json!({"name": "x"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // Operator: actions too, still no admin work.
    assert_eq!(
        env.post(&action, &operator, json!({})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/v1/audit", &operator).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.delete(&format!("/api/v1/devices/{device}"), &operator)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn another_orgs_key_sees_and_touches_nothing() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let other = env.key("globex", Role::Admin).await;
    let (s, list) = env.get("/api/v1/devices", &other).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"], json!([]));
    for (method, path, body) in [
        ("GET", format!("/api/v1/devices/{device}"), None),
        (
            "PUT",
            format!("/api/v1/devices/{device}"),
            Some(json!({"name": "stolen"})),
        ),
        ("DELETE", format!("/api/v1/devices/{device}"), None),
        ("GET", format!("/api/v1/devices/{device}/extensions"), None),
        (
            "POST",
            format!("/api/v1/devices/{device}/extensions/echo/count"),
            Some(json!({})),
        ),
    ] {
        let s = env
            .client
            .send(method, &path, Some(&other), body, &[])
            .await
            .status;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}");
    }
    // Its settings are its own: echo is not set up there.
    let (_, ext) = env.get("/api/v1/extensions/echo", &other).await;
    assert_eq!(ext["enabled"], false);
    let (_, audit) = env.get("/api/v1/audit", &other).await;
    assert_eq!(audit["items"], json!([]));
    // And the device is untouched.
    let (_, d) = env
        .get(&format!("/api/v1/devices/{device}"), &env.admin)
        .await;
    assert_eq!(d["name"], "pump");
}

#[tokio::test]
async fn invalid_documents_get_422_with_pointers_and_nothing_is_written() {
    let env = Env::new().await;
    let (s, body) = env
        .post(
            "/api/v1/devices",
            &env.admin,
            json!({"name": "", "extensions": {"echo": {"id": 7}, "nope": {}}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<&str> = body["error"]["details"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        vec!["/name", "/extensions/echo/id", "/extensions/nope"]
    );
    let (_, list) = env.get("/api/v1/devices", &env.admin).await;
    assert_eq!(list["items"], json!([]), "nothing written");

    let (s, body) = env
        .put_echo(
            &env.admin,
            json!({"enabled": true, "config": {"greeting": 5}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"]["details"]["violations"][0]["pointer"],
        "/config/greeting"
    );
    let (_, ext) = env.get("/api/v1/extensions/echo", &env.admin).await;
    assert_eq!(ext["enabled"], false, "nothing written");

    // Bad JSON, unknown fields and oversized bodies are clear 4xx.
    let raw = Request::builder()
        .method("POST")
        .uri("/api/v1/devices")
        .header("authorization", format!("Bearer {}", env.admin))
        .header("content-type", "application/json")
        .body(Body::from("{\"name\": "))
        .unwrap();
    let r = env.router.clone().oneshot(raw).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (s, _) = env
        .post(
            "/api/v1/devices",
            &env.admin,
            json!({"name": "a", "colour": "red"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let huge = json!({"name": "x".repeat(devext_service::api::MAX_BODY_BYTES)});
    let (s, _) = env.post("/api/v1/devices", &env.admin, huge).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn devices_crud_paging_and_filters() {
    let env = Env::new().await;
    for i in 0..3 {
        let (s, _) = env
            .post(
                "/api/v1/devices",
                &env.admin,
                json!({"name": format!("unit {i}"), "type": "meter"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (_, page) = env.get("/api/v1/devices?limit=2", &env.admin).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_i64().unwrap();
    let (_, rest) = env
        .get(
            &format!("/api/v1/devices?limit=2&cursor={cursor}"),
            &env.admin,
        )
        .await;
    assert_eq!(rest["items"][0]["name"], "unit 2");
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, found) = env.get("/api/v1/devices?name=UNIT%201", &env.admin).await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let (s, _) = env.get("/api/v1/devices?limit=abc", &env.admin).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (s, d) = env
        .put(
            &format!("/api/v1/devices/{id}"),
            &env.admin,
            json!({"name": "renamed", "extensions": {"echo": {"id": "e"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["name"], "renamed");
    assert_eq!(d["type"], Value::Null);
    assert_eq!(
        env.delete(&format!("/api/v1/devices/{id}"), &env.admin)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.get(&format!("/api/v1/devices/{id}"), &env.admin)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn keys_are_shown_once_listed_and_revoked() {
    let env = Env::new().await;
    let (s, created) = env
        .post(
            "/api/v1/keys",
            &env.admin,
            json!({"role": "viewer", "name": "ci"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("dvx_"));
    let (_, list) = env.get("/api/v1/keys", &env.admin).await;
    assert!(
        !list.to_string().contains(&key),
        "the key itself is never listed"
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(env.get("/api/v1/devices", &key).await.0, StatusCode::OK);
    let id = created["id"].as_str().unwrap();
    let (s, _) = env.delete(&format!("/api/v1/keys/{id}"), &env.admin).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        env.get("/api/v1/devices", &key).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = env
        .post("/api/v1/keys", &env.admin, json!({"role": "root"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_drilldown_lists_usable_extensions_and_says_why_not() {
    let env = Env::new().await;
    let (_, d) = env
        .post(
            "/api/v1/devices",
            &env.admin,
            json!({"name": "d", "extensions": {"echo": {"id": "x"}}}),
        )
        .await;
    let id = d["id"].as_str().unwrap();
    let path = format!("/api/v1/devices/{id}/extensions");
    let (_, drill) = env.get(&path, &env.admin).await;
    assert_eq!(drill["extensions"][0]["available"], false);
    assert!(
        drill["extensions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not set up")
    );
    env.put_echo(&env.admin, json!({"enabled": false})).await;
    let (_, drill) = env.get(&path, &env.admin).await;
    assert!(
        drill["extensions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("switched off")
    );
    let (s, body) = env
        .post(
            &format!("{path}/echo/echo"),
            &env.admin,
            json!({"message": "m"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    env.put_echo(&env.admin, json!({"enabled": true})).await;
    let (_, drill) = env.get(&path, &env.admin).await;
    let item = &drill["extensions"][0];
    assert_eq!(item["available"], true);
    let ops: Vec<&str> = names_of(&item["operations"]);
    assert_eq!(ops, vec!["echo", "count", "counter"]);
}

#[tokio::test]
async fn actions_are_idempotent_with_a_key_and_audited() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let path = format!("/api/v1/devices/{device}/extensions/echo/count");
    let idem = "abc-1";
    let first = env
        .post_idempotent(&path, &env.admin, json!({}), idem)
        .await;
    let again = env
        .post_idempotent(&path, &env.admin, json!({}), idem)
        .await;
    assert_eq!(first, (StatusCode::OK, json!({"count": 1})));
    assert_eq!(again, first, "the repeat returns the first result");
    // Done once: a fresh call counts 2.
    let (_, next) = env.post(&path, &env.admin, json!({})).await;
    assert_eq!(next["count"], 2);
    // The same key for another request is refused.
    let (s, _) = env
        .post_idempotent(&path, &env.admin, json!({"by": 5}), idem)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, audit) = env.get("/api/v1/audit?limit=50", &env.admin).await;
    let ops: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "operation")
        .map(|e| (e["op"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        vec![("count", "ok"), ("count", "ok")],
        "newest first, once per execution"
    );
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "settings")
    );
}

#[tokio::test]
async fn operation_errors_map_to_http_statuses() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let base = format!("/api/v1/devices/{device}/extensions");
    let (s, body) = env
        .post(
            &format!("{base}/echo/echo"),
            &env.admin,
            json!({"message": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["kind"], "invalid_input");
    assert_eq!(
        body["error"]["details"]["violations"][0]["pointer"],
        "/message"
    );
    let (s, _) = env
        .post(&format!("{base}/echo/shout"), &env.admin, json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .post(&format!("{base}/jasper/overview"), &env.admin, json!({}))
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the device has no jasper configuration"
    );
}

#[tokio::test]
async fn the_service_answers_over_a_real_socket_and_shuts_down() {
    let env = Env::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(devext_service::serve(listener, env.app.clone(), async {
        let _ = stop_rx.await;
    }));
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    sock.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"ready\""), "{text}");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!env.app.ready.load(std::sync::atomic::Ordering::Relaxed));
}

#[tokio::test]
async fn settings_changes_apply_to_the_next_call_at_once() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let op = format!("/api/v1/devices/{device}/extensions/echo/echo");
    let (s, out) = env.post(&op, &env.admin, json!({"message": "m"})).await;
    assert_eq!((s, out["greeting"].as_str()), (StatusCode::OK, Some("hi")));
    env.put_echo(
        &env.admin,
        json!({"enabled": true, "config": {"greeting": "hello again"}}),
    )
    .await;
    let (_, out) = env.post(&op, &env.admin, json!({"message": "m"})).await;
    assert_eq!(
        out["greeting"], "hello again",
        "not the remembered settings"
    );
    env.put_echo(&env.admin, json!({"enabled": false})).await;
    let (s, _) = env.post(&op, &env.admin, json!({"message": "m"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "switched off at once");
}

#[tokio::test]
async fn an_interrupted_idempotent_request_is_reported_not_rerun() {
    // A call may last 1 s here, so a claim older than 2 s without a result is one the service
    // abandoned (it stopped mid-request).
    let env = Env::with_runtime(devext_host::RuntimeConfig {
        call_timeout: std::time::Duration::from_secs(1),
        ..devext_host::RuntimeConfig::default()
    })
    .await;
    let device = env.echo_device(&env.admin).await;
    let path = format!("/api/v1/devices/{device}/extensions/echo/count");
    // What the service records when it claims the key, as if it then stopped.
    let fingerprint = json!([device, "echo", "count", {}]).to_string();
    let claim = env
        .app
        .store
        .claim_idempotency(1, "lost-1", &fingerprint)
        .await
        .unwrap();
    assert_eq!(claim, devext_service::store::IdempotencyClaim::Claimed);
    let idem = "lost-1";
    let (s, body) = env
        .post_idempotent(&path, &env.admin, json!({}), idem)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_message(&body).contains("still running"), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, body) = env
        .post_idempotent(&path, &env.admin, json!({}), idem)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        error_message(&body).contains("outcome is unknown"),
        "{body}"
    );
    // Nothing ran: the counter starts at 1 with a fresh key.
    let (_, out) = env
        .post_idempotent(&path, &env.admin, json!({}), "new-1")
        .await;
    assert_eq!(out["count"], 1);
}

#[tokio::test]
async fn device_changes_apply_to_the_next_operation_at_once() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let op = format!("/api/v1/devices/{device}/extensions/echo/echo");
    let (_, out) = env.post(&op, &env.admin, json!({"message": "m"})).await;
    let first_id = out["device"].as_str().unwrap().to_owned();
    let (s, _) = env
        .put(
            &format!("/api/v1/devices/{device}"),
            &env.admin,
            json!({"name": "pump", "extensions": {"echo": {"id": "renumbered"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, out) = env.post(&op, &env.admin, json!({"message": "m"})).await;
    assert_ne!(out["device"], first_id);
    assert_eq!(out["device"], "renumbered", "not the remembered device");
    env.delete(&format!("/api/v1/devices/{device}"), &env.admin)
        .await;
    let (s, _) = env.post(&op, &env.admin, json!({"message": "m"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "deleted at once");
}

#[tokio::test]
async fn organisation_operations_run_without_a_device() {
    let env = Env::new().await;
    let viewer = env.key("acme", Role::Viewer).await;
    // Not switched on yet: the org's settings are what the operation runs with.
    let (s, body) = env
        .post("/api/v1/extensions/echo/ping", &viewer, json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(error_message(&body).contains("not switched on"));
    env.put_echo(
        &env.admin,
        json!({"enabled": true, "config": {"greeting": "good day"}}),
    )
    .await;
    let (s, body) = env
        .post("/api/v1/extensions/echo/ping", &viewer, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["greeting"], "good day");
    assert_eq!(body["account_key"].as_str().unwrap().len(), 64, "{body}");
    // No body at all is an empty input, as on the device route.
    let s = env
        .client
        .send(
            "POST",
            "/api/v1/extensions/echo/ping",
            Some(&viewer),
            None,
            &[],
        )
        .await
        .status;
    assert_eq!(s, StatusCode::OK);

    // Each route runs the operations of its own scope only, and says where the other one is.
    let (s, body) = env
        .post(
            "/api/v1/extensions/echo/echo",
            &viewer,
            json!({"message": "m"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(error_message(&body).contains("/api/v1/devices/{id}/extensions/echo/echo"));
    let id = env.echo_device(&env.admin).await;
    let (s, body) = env
        .post(
            &format!("/api/v1/devices/{id}/extensions/echo/ping"),
            &viewer,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(error_message(&body).contains("POST /api/v1/extensions/echo/ping"));
    let (s, _) = env
        .post("/api/v1/extensions/echo/nope", &viewer, json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .post("/api/v1/extensions/nope/ping", &viewer, json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The input is checked against the operation's schema.
    let (s, body) = env
        .post("/api/v1/extensions/echo/ping", &viewer, json!({"extra": 1}))
        .await;
    assert!(s.is_client_error(), "{s} {body}");

    // Org operations are not part of a device's drilldown.
    let (_, drill) = env
        .get(&format!("/api/v1/devices/{id}/extensions"), &viewer)
        .await;
    let ops: Vec<&str> = names_of(&drill["extensions"][0]["operations"]);
    assert!(!ops.contains(&"ping"), "{ops:?}");
}

#[tokio::test]
async fn a_page_size_out_of_range_is_400_naming_the_parameter_and_its_range() {
    let env = Env::new().await;
    for i in 0..2 {
        let (s, _) = env
            .post(
                "/api/v1/devices",
                &env.admin,
                json!({"name": format!("unit {i}")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    for list in ["/api/v1/devices", "/api/v1/audit"] {
        for limit in ["0", "501"] {
            let path = format!("{list}?limit={limit}");
            let (s, body) = env.get(&path, &env.admin).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert_eq!(body["error"]["kind"], "bad_request", "{path}");
            let message = error_message(&body);
            assert!(message.contains("\"limit\""), "{path}: {message}");
            assert!(message.contains("1 to 500"), "{path}: {message}");
            assert_eq!(
                body["error"]["details"],
                json!({"parameter": "limit", "minimum": 1, "maximum": 500}),
                "{path}"
            );
        }
        // The bounds themselves are pages.
        for (limit, len) in [("1", 1), ("500", 2)] {
            let path = format!("{list}?limit={limit}");
            let (s, body) = env.get(&path, &env.admin).await;
            assert_eq!(s, StatusCode::OK, "{path}: {body}");
            assert_eq!(body["items"].as_array().unwrap().len(), len, "{path}");
        }
        // The document says so too.
        let doc = env.openapi().await;
        let params = doc["paths"][list]["get"]["parameters"].as_array().unwrap();
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["minimum"], 1, "{list}");
        assert_eq!(limit["schema"]["maximum"], 500, "{list}");
    }
}

#[tokio::test]
async fn switching_an_extension_off_and_on_keeps_its_settings() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let op = format!("/api/v1/devices/{device}/extensions/echo/echo");
    let (s, off) = env.put_echo(&env.admin, json!({"enabled": false})).await;
    assert_eq!(s, StatusCode::OK, "{off}");
    let kept = json!({"greeting": "hi"});
    assert_eq!(off["enabled"], false);
    assert_eq!(off["config"], kept, "{off}");
    assert_eq!(off["secrets_set"], json!(["token"]), "{off}");
    assert!(!off.to_string().contains("tok-SECRET-1"), "{off}");
    let (_, stored) = env.get("/api/v1/extensions/echo", &env.admin).await;
    assert_eq!(stored, off, "what was stored is what was answered");
    let (s, _) = env.post(&op, &env.admin, json!({"message": "m"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "switched off");

    let (s, on) = env.put_echo(&env.admin, json!({"enabled": true})).await;
    assert_eq!(s, StatusCode::OK, "{on}");
    assert_eq!(on["enabled"], true);
    assert_eq!(on["config"], kept, "{on}");
    assert_eq!(on["secrets_set"], json!(["token"]), "{on}");
    let (s, out) = env.post(&op, &env.admin, json!({"message": "m"})).await;
    assert_eq!(
        (s, &out["greeting"]),
        (StatusCode::OK, &json!("hi")),
        "{out}"
    );

    // A config given still replaces the stored one (a secret left out keeps its value).
    let (s, set) = env
        .put_echo(&env.admin, json!({"enabled": true, "config": {}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    assert_eq!(set["config"], json!({}), "{set}");
    assert_eq!(set["secrets_set"], json!(["token"]), "{set}");

    // The document's body schema allows `enabled` alone.
    let doc = env.openapi().await;
    let schema = &doc["paths"]["/api/v1/extensions/{plugin}"]["put"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(schema["required"], json!(["enabled"]), "{schema}");
    assert!(schema["properties"]["config"].is_object(), "{schema}");
}

#[tokio::test]
async fn an_invalid_device_names_its_first_violation_in_the_message() {
    let env = Env::new().await;
    let device = env.echo_device(&env.admin).await;
    let bad = json!({"name": "d", "extensions": {"echo": {"id": 7}, "nope": {}}});
    let (s, created) = env.post("/api/v1/devices", &env.admin, bad.clone()).await;
    let (s2, updated) = env
        .put(&format!("/api/v1/devices/{device}"), &env.admin, bad)
        .await;
    for (s, body) in [(s, created), (s2, updated)] {
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let violations = body["error"]["details"]["violations"].as_array().unwrap();
        assert_eq!(violations.len(), 2, "{body}");
        assert_eq!(violations[0]["pointer"], "/extensions/echo/id");
        let message = error_message(&body);
        assert!(
            message.starts_with("the device is invalid: /extensions/echo/id: "),
            "{message}"
        );
        assert!(
            message.contains(violations[0]["message"].as_str().unwrap()),
            "{message}"
        );
        assert!(message.ends_with(" (and 1 more)"), "{message}");
    }
    // One violation: no "more".
    let (s, body) = env
        .post("/api/v1/devices", &env.admin, json!({"name": ""}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = error_message(&body);
    assert!(
        message.starts_with("the device is invalid: /name: "),
        "{message}"
    );
    assert!(!message.contains("more)"), "{message}");
    // The device is as it was.
    let (_, d) = env
        .get(&format!("/api/v1/devices/{device}"), &env.admin)
        .await;
    assert_eq!(d["name"], "pump");
}

#[tokio::test]
async fn switching_off_keeps_settings_unchecked_and_switching_on_checks_them() {
    let env = Env::new().await;
    // Settings the schema no longer accepts (written behind the API's back, as if the plugin's
    // schema had changed since).
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();
    let stale = devext_service::store::ExtensionSettings {
        plugin: "echo".into(),
        enabled: true,
        config: json!({"greeting": 5}).as_object().unwrap().clone(),
        secrets: serde_json::Map::new(),
    };
    env.app.store.put_extension(org.id, &stale).await.unwrap();
    let (s, off) = env.put_echo(&env.admin, json!({"enabled": false})).await;
    assert_eq!(s, StatusCode::OK, "switching off always works: {off}");
    assert_eq!(off["config"], json!({"greeting": 5}), "{off}");
    let (s, body) = env.put_echo(&env.admin, json!({"enabled": true})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"]["violations"][0]["pointer"],
        "/config/greeting"
    );
    let message = error_message(&body);
    assert!(
        message.starts_with("the settings for echo are invalid: /config/greeting: "),
        "{message}"
    );
    let (_, stored) = env.get("/api/v1/extensions/echo", &env.admin).await;
    assert_eq!(stored["enabled"], false, "nothing written");
    // `config` is an object when given: null is not a way to leave it out.
    let (s, body) = env
        .put_echo(&env.admin, json!({"enabled": false, "config": null}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn an_endpoint_the_egress_rules_refuse_is_reported_when_saved() {
    let env = Env::new().await;
    let put = |endpoint: &'static str| {
        let env = &env;
        async move {
            env.put(
                "/api/v1/extensions/meter",
                &env.admin,
                json!({"enabled": true, "config": {"endpoint": endpoint}}),
            )
            .await
        }
    };
    // Plain http to a local simulator: refused, with the way to allow it.
    let (s, body) = put("http://127.0.0.1:9090").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let v = &body["error"]["details"]["violations"][0];
    assert_eq!(v["pointer"], "/config/endpoint", "{body}");
    assert_eq!(v["keyword"], "egress");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("https is required"), "{message}");
    assert!(message.contains("--allow-loopback-http"), "{message}");
    assert!(error_message(&body).contains("/config/endpoint"), "{body}");
    // A private address: refused, and no hint (nothing allows it).
    let (s, body) = put("https://10.1.2.3").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["details"]["violations"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("local or private network"), "{message}");
    assert!(!message.contains("--allow-loopback-http"), "{message}");
    // Nothing was stored by the refusals.
    let (_, stored) = env.get("/api/v1/extensions/meter", &env.admin).await;
    assert_ne!(stored["config"]["endpoint"], "https://10.1.2.3", "{stored}");
    let (s, body) = put("https://api.example.com").await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // The host's own refusal at call time (a URL off the endpoint's origin) is not a bad
    // gateway: no upstream was asked.
    let (s, body) = env
        .post(
            "/api/v1/extensions/meter/fetch",
            &env.admin,
            json!({"url": "https://elsewhere.example.com/"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "forbidden");

    // With loopback http allowed (simulators, tests), the same endpoint is fine.
    let env = Env::with_runtime(devext_host::RuntimeConfig {
        egress: devext_host::egress::EgressConfig {
            allow_loopback_http: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (s, body) = env
        .put(
            "/api/v1/extensions/meter",
            &env.admin,
            json!({"enabled": true, "config": {"endpoint": "http://127.0.0.1:9090"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn devices_naming_a_plugin_that_is_not_loaded_stay_editable() {
    let env = Env::new().await;
    env.put_echo(
        &env.admin,
        json!({"enabled": true, "config": {"greeting": "hi"}}),
    )
    .await;
    let exts = json!({"echo": {"id": "e-1"}, "meter": {"serial": "SN-1"}});
    let (s, d) = env
        .post(
            "/api/v1/devices",
            &env.admin,
            json!({"name": "d", "extensions": exts}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let id = d["id"].as_str().unwrap().to_owned();

    // The same store served by a service that loads no plugin at all.
    let bare = devext_host::Runtime::load(devext_host::RuntimeConfig {
        static_plugins: false,
        ..Default::default()
    })
    .unwrap();
    let app = devext_service::App::new(bare, env.app.store.clone());
    let unloaded = app.warn_unloaded_extensions().await.unwrap();
    assert_eq!(unloaded, [("echo".to_owned(), 1), ("meter".to_owned(), 1)]);
    let client = devext_service::testing::Client::new(devext_service::router(app));
    let path = format!("/api/v1/devices/{id}");
    // Renaming it, its extensions left as stored: accepted, and they are said to be unchecked.
    let (s, body) = client
        .send(
            "PUT",
            &path,
            Some(&env.admin),
            Some(json!({"name": "renamed", "extensions": exts})),
            &[],
        )
        .await
        .status_and_body();
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "renamed");
    assert_eq!(body["extensions"], exts);
    assert_eq!(body["unchecked_extensions"], json!(["echo", "meter"]));
    // Changing a part it cannot check is refused, as creating one is.
    let changed = json!({"echo": {"id": "e-2"}, "meter": {"serial": "SN-1"}});
    let (s, body) = client
        .send(
            "PUT",
            &path,
            Some(&env.admin),
            Some(json!({"name": "renamed", "extensions": changed})),
            &[],
        )
        .await
        .status_and_body();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"]["violations"][0]["pointer"],
        "/extensions/echo"
    );
    // With the plugins loaded, nothing is unchecked.
    let (s, body) = env
        .put(
            &path,
            &env.admin,
            json!({"name": "again", "extensions": exts}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.get("unchecked_extensions").is_none(), "{body}");
}

#[tokio::test]
async fn the_drilldown_can_include_the_views_that_need_no_input() {
    let env = Env::new().await;
    let id = env.echo_device(&env.admin).await;
    let path = format!("/api/v1/devices/{id}/extensions");
    let (s, plain) = env.get(&path, &env.admin).await;
    assert_eq!(s, StatusCode::OK, "{plain}");
    let item = &plain["extensions"][0];
    assert!(item.get("views").is_none(), "only when asked: {item}");
    // The operations' schemas are in the manifests, not repeated per device.
    assert!(
        item["operations"][0].get("input_schema").is_none(),
        "{item}"
    );
    assert_eq!(item["operations"][0]["name"], "echo");

    let (s, drill) = env.get(&format!("{path}?include=views"), &env.admin).await;
    assert_eq!(s, StatusCode::OK, "{drill}");
    let views = drill["extensions"][0]["views"].as_object().unwrap();
    // `counter` needs no input; `echo` needs a message; `ping` is the org's, not the device's.
    let names: Vec<&str> = views.keys().map(String::as_str).collect();
    assert_eq!(names, ["counter"], "{drill}");
    let counter = &views["counter"]["result"];
    assert!(counter["as_of"].is_string(), "{counter}");
    // Served again from the view cache while fresh: the same result and `as_of`.
    let (_, again) = env.get(&format!("{path}?include=views"), &env.admin).await;
    assert_eq!(
        again["extensions"][0]["views"]["counter"]["result"],
        *counter
    );

    let (s, body) = env
        .get(&format!("{path}?include=everything"), &env.admin)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("include"), "{body}");
}

#[tokio::test]
async fn the_audit_log_says_what_happened_and_who_did_it() {
    let env = Env::new().await;
    let operator = env.key("acme", Role::Operator).await;
    let id = env.echo_device(&env.admin).await;
    // Saving the settings again with the same secret changes no secret; a new one does.
    env.put_echo(
        &env.admin,
        json!({"enabled": true, "config": {"greeting": "hi"}}),
    )
    .await;
    env.put_echo(
        &env.admin,
        json!({"enabled": true, "config": {"greeting": "hi", "token": "tok-NEW"}}),
    )
    .await;
    let (s, body) = env
        .client
        .send(
            "POST",
            &format!("/api/v1/devices/{id}/extensions/echo/count"),
            Some(&operator),
            Some(json!({"by": 3})),
            &[("x-request-id", "audit-me-1")],
        )
        .await
        .status_and_body();
    assert_eq!(s, StatusCode::OK, "{body}");

    let (_, log) = env.get("/api/v1/audit", &env.admin).await;
    let items = log["items"].as_array().unwrap();
    let op = items.iter().find(|e| e["op"] == "count").unwrap();
    assert_eq!(op["detail"], r#"input: {"by":3}"#, "{op}");
    assert_eq!(op["request_id"], "audit-me-1");
    assert_eq!(op["key_name"], "operator", "{op}");
    let settings: Vec<&str> = items
        .iter()
        .filter(|e| e["action"] == "settings" && e["outcome"] == "ok")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    // Newest first: the new token, the unchanged save, the first save.
    assert_eq!(
        settings,
        [
            "enabled=true; secrets changed: token",
            "enabled=true; secrets changed: none",
            "enabled=true; secrets changed: token",
        ]
    );
    assert!(items.iter().all(|e| e["request_id"].is_string()), "{log}");
}

#[tokio::test]
async fn the_suite_runs_on_the_store_its_binary_names() {
    let env = Env::new().await;
    let expected = match crate::BACKEND {
        devext_service::testing::Backend::Sqlite => "sqlite",
        devext_service::testing::Backend::Postgres => "postgres",
    };
    assert_eq!(env.app.store.backend(), expected);
}

#[tokio::test]
async fn stale_writes_of_devices_and_settings_get_412_not_a_silent_overwrite() {
    let env = Env::new().await;
    let id = env.echo_device(&env.admin).await;
    let path = format!("/api/v1/devices/{id}");
    let read = env
        .client
        .send("GET", &path, Some(&env.admin), None, &[])
        .await;
    let tag = read.headers["etag"].to_str().unwrap().to_owned();
    let ext = read.body["extensions"].clone();
    // Tab 1 saves with the tag it read; tab 2, which read the same version, is refused.
    let first = env
        .client
        .send(
            "PUT",
            &path,
            Some(&env.admin),
            Some(json!({"name": "renamed", "extensions": ext})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let new_tag = first.headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_tag, tag);
    let second = env
        .client
        .send(
            "PUT",
            &path,
            Some(&env.admin),
            Some(json!({"name": "other", "extensions": ext})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(
        second.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        second.text
    );
    assert_eq!(second.body["error"]["kind"], "precondition_failed");
    assert!(error_message(&second.body).contains("changed by someone else"));
    let (_, now) = env.get(&path, &env.admin).await;
    assert_eq!(now["name"], "renamed", "the refused write changed nothing");
    // The current tag works; no If-Match is an unconditional write.
    let third = env
        .client
        .send(
            "PUT",
            &path,
            Some(&env.admin),
            Some(json!({"name": "third", "extensions": ext})),
            &[("if-match", &new_tag)],
        )
        .await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.text);
    let (s, _) = env
        .put(
            &path,
            &env.admin,
            json!({"name": "fourth", "extensions": ext}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Settings, the same way.
    let read = env
        .client
        .send(
            "GET",
            "/api/v1/extensions/echo",
            Some(&env.admin),
            None,
            &[],
        )
        .await;
    let tag = read.headers["etag"].to_str().unwrap().to_owned();
    let body = json!({"enabled": true, "config": {"greeting": "hello", "token": "tok-2"}});
    let ok = env
        .client
        .send(
            "PUT",
            "/api/v1/extensions/echo",
            Some(&env.admin),
            Some(body.clone()),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_ne!(ok.headers["etag"].to_str().unwrap(), tag);
    let stale = env
        .client
        .send(
            "PUT",
            "/api/v1/extensions/echo",
            Some(&env.admin),
            Some(json!({"enabled": false})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text
    );
    let (_, now) = env.get("/api/v1/extensions/echo", &env.admin).await;
    assert_eq!(now["enabled"], true);
}

#[tokio::test]
async fn the_audit_log_filters_by_device_in_the_store_across_pages() {
    let env = Env::new().await;
    let first = env.echo_device(&env.admin).await;
    let other = env.echo_device(&env.admin).await;
    let path = |id: &str| format!("/api/v1/devices/{id}/extensions/echo/count");
    // Two operations on the first device, then more on the other than one page holds.
    for _ in 0..2 {
        let (s, _) = env.post(&path(&first), &env.admin, json!({})).await;
        assert_eq!(s, StatusCode::OK);
    }
    for _ in 0..6 {
        let (s, _) = env.post(&path(&other), &env.admin, json!({})).await;
        assert_eq!(s, StatusCode::OK);
    }
    // A page of 3 holds only the other device's entries; the filter still finds the first's.
    let (_, unfiltered) = env.get("/api/v1/audit?limit=3", &env.admin).await;
    assert!(
        unfiltered["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["device_id"] == json!(other))
    );
    let (s, mine) = env
        .get(&format!("/api/v1/audit?limit=3&device={first}"), &env.admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    let items = mine["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{mine}");
    assert!(
        items.iter().all(|e| e["device_id"] == json!(first)),
        "{mine}"
    );
    let ops = items.iter().filter(|e| e["op"] == "count").count();
    assert_eq!(ops, 2, "{mine}");
}
