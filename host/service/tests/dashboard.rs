//! The dashboard in-process: sign-in (and its throttling), sessions, the anti-forgery token and
//! `Origin` check, security headers, secrets never rendered, the JSON editor's located errors,
//! role-aware pages, and the audit naming the user. The real browser runs in `tests/browser`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use devext_service::store::{Role, Store};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::api_env::{Env, unique_echo_id};

const HOST: &str = "dash.test";
const PASSWORD: &str = "correct horse battery";

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(
    env: &Env,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
    origin: Option<&str>,
) -> Page {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("devext_session={c}"));
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let req = match form {
        Some(f) => req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(f).unwrap())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let response = env.router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

const SAME: Option<&str> = Some("http://dash.test");

/// A user of `acme` with `role`, signed in: its session token and the page's anti-forgery token.
async fn signed_in(env: &Env, email: &str, role: Role) -> (String, String) {
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();
    devext_service::users::create_user(&env.app.store, org.id, email, role, PASSWORD)
        .await
        .unwrap();
    let page = send(
        env,
        "POST",
        "/sign-in",
        None,
        Some(&[
            ("email", email),
            ("password", PASSWORD),
            ("next", "/devices"),
        ]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let cookie = page
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    let token = cookie
        .trim_start_matches("devext_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = send(env, "GET", "/devices", Some(&token), None, None).await;
    let csrf = page
        .text
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (token, csrf)
}

#[tokio::test]
async fn pages_need_a_session_and_sign_in_opens_one() {
    let env = Env::new().await;
    let page = send(&env, "GET", "/devices?q=a", None, None, None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/sign-in?next=%2Fdevices%3Fq%3Da");
    let page = send(&env, "GET", "/sign-in", None, None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["referrer-policy"], "same-origin");
    // A wrong password and an unknown email get the same words.
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();
    devext_service::users::create_user(
        &env.app.store,
        org.id,
        "ann@example.com",
        Role::Admin,
        PASSWORD,
    )
    .await
    .unwrap();
    for (email, pw) in [
        ("ann@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ] {
        let page = send(
            &env,
            "POST",
            "/sign-in",
            None,
            Some(&[("email", email), ("password", pw)]),
            SAME,
        )
        .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(
            page.text.contains("email or password is wrong"),
            "{}",
            page.text
        );
        assert!(page.headers.get("set-cookie").is_none());
    }
    let page = send(
        &env,
        "POST",
        "/sign-in",
        None,
        Some(&[
            ("email", "ANN@example.com"),
            ("password", PASSWORD),
            ("next", "//evil.example"),
        ]),
        SAME,
    )
    .await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/devices")
    );
    let token = page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .trim_start_matches("devext_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = send(&env, "GET", "/devices", Some(&token), None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("ann@example.com") && page.text.contains("New device"));
    // The stylesheet is served under its hashed name, cached for a year.
    let css = page
        .text
        .split(r#"rel="stylesheet" href=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let asset = send(&env, "GET", &css, None, None, None).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert!(
        asset.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    // The first load stays small: the page, its stylesheet and its script.
    let js = page
        .text
        .split(r#"script src=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let script = send(&env, "GET", &js, None, None, None).await;
    let weight = page.text.len() + asset.text.len() + script.text.len();
    assert!(weight < 150_000, "first load of /devices: {weight} bytes");
    // Sign-out ends the session in the store: the same cookie no longer works.
    let csrf = page
        .text
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let out = send(
        &env,
        "POST",
        "/sign-out",
        Some(&token),
        Some(&[("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let page = send(&env, "GET", "/devices", Some(&token), None, None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account() {
    let env = Env::new().await;
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();
    devext_service::users::create_user(
        &env.app.store,
        org.id,
        "bob@example.com",
        Role::Viewer,
        PASSWORD,
    )
    .await
    .unwrap();
    for _ in 0..devext_service::users::ACCOUNT_FAILURES {
        let page = send(
            &env,
            "POST",
            "/sign-in",
            None,
            Some(&[
                ("email", "bob@example.com"),
                ("password", "not the password"),
            ]),
            SAME,
        )
        .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits.
    let page = send(
        &env,
        "POST",
        "/sign-in",
        None,
        Some(&[("email", "bob@example.com"), ("password", PASSWORD)]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.text);
    assert!(page.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn forged_and_tokenless_posts_change_nothing() {
    let env = Env::new().await;
    let (token, csrf) = signed_in(&env, "ann@example.com", Role::Admin).await;
    let count = |env: &Env| {
        let store = env.app.store.clone();
        async move {
            let org = store.org_by_name("acme").await.unwrap().unwrap();
            store
                .devices(
                    org.id,
                    &devext_service::store::DeviceQuery {
                        limit: 50,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .0
                .len()
        }
    };
    // No token.
    let page = send(
        &env,
        "POST",
        "/devices",
        Some(&token),
        Some(&[("name", "x")]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // The right token from another site.
    let page = send(
        &env,
        "POST",
        "/devices",
        Some(&token),
        Some(&[("name", "x"), ("csrf", &csrf)]),
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // Another session's token.
    let (_, other_csrf) = signed_in(&env, "eve@example.com", Role::Admin).await;
    let page = send(
        &env,
        "POST",
        "/devices",
        Some(&token),
        Some(&[("name", "x"), ("csrf", &other_csrf)]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(count(&env).await, 0);
    // The API with the cookie needs the token header too.
    let r = env
        .client
        .send(
            "POST",
            "/api/v1/devices",
            None,
            Some(json!({"name": "x"})),
            &[
                ("cookie", &format!("devext_session={token}")),
                ("host", HOST),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(count(&env).await, 0);
    // The editor's live check: with the session's token header it answers, saving nothing.
    let cookie = format!("devext_session={token}");
    let r = env
        .client
        .send(
            "POST",
            "/api/v1/validate/extensions",
            None,
            Some(json!({"echo": {"id": "a b"}})),
            &[
                ("cookie", &cookie),
                ("host", HOST),
                ("origin", "http://dash.test"),
                ("x-csrf-token", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let d = &r.body["error"]["details"]["diagnostics"][0];
    assert_eq!(
        (
            d["pointer"].as_str(),
            d["line"].as_u64(),
            d["column"].as_u64()
        ),
        (Some("/echo/id"), Some(1), Some(15)),
        "{}",
        r.text
    );
    // Same origin with the session's token: created, and the audit names the user.
    let page = send(
        &env,
        "POST",
        "/devices",
        Some(&token),
        Some(&[("name", "pump"), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert!(page.location().starts_with("/devices/dev_"));
    assert_eq!(count(&env).await, 1);
    let (s, log) = env.get("/api/v1/audit", &env.admin).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(log["items"][0]["user_email"], "ann@example.com", "{log}");
    assert_eq!(log["items"][0]["key_id"], json!(null));
}

#[tokio::test]
async fn the_editor_reports_errors_where_they_are_and_saves_nothing() {
    let env = Env::new().await;
    let (token, csrf) = signed_in(&env, "ann@example.com", Role::Admin).await;
    let page = send(
        &env,
        "POST",
        "/devices",
        Some(&token),
        Some(&[("name", "pump"), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    let path = page.location().split('?').next().unwrap().to_owned();
    // Not JSON: line and column.
    let bad = "{\n  \"echo\": {\"id\": }\n}";
    let page = send(
        &env,
        "POST",
        &path,
        Some(&token),
        Some(&[("name", "pump"), ("extensions", bad), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text.contains("line 2:18"), "{}", page.text);
    // A schema violation: line:column and pointer, as devext validate says it.
    let invalid = "{\n  \"echo\": {\"id\": \"no spaces allowed\"}\n}";
    let page = send(
        &env,
        "POST",
        &path,
        Some(&token),
        Some(&[("name", "pump"), ("extensions", invalid), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text.contains("line 2:18") && page.text.contains("<code>/echo/id</code>"),
        "{}",
        page.text
    );
    // The text typed is kept, escaped.
    assert!(
        page.text.contains("&quot;no spaces allowed&quot;")
            || page.text.contains("\"no spaces allowed\"")
    );
    let id = path.trim_start_matches("/devices/");
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();
    assert_eq!(
        env.app
            .store
            .device(org.id, id)
            .await
            .unwrap()
            .unwrap()
            .extensions,
        json!({})
    );
    // Valid: saved.
    let good = format!("{{\"echo\": {{\"id\": \"{}\"}}}}", unique_echo_id());
    let page = send(
        &env,
        "POST",
        &path,
        Some(&token),
        Some(&[("name", "pump"), ("extensions", &good), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert!(
        env.app
            .store
            .device(org.id, id)
            .await
            .unwrap()
            .unwrap()
            .extensions["echo"]["id"]
            .is_string()
    );
}

#[tokio::test]
async fn pages_follow_the_role_and_never_show_a_secret() {
    let env = Env::new().await;
    let (admin, admin_csrf) = signed_in(&env, "ann@example.com", Role::Admin).await;
    // Settings with a secret, saved from the form.
    let page = send(
        &env,
        "POST",
        "/settings/extensions/echo",
        Some(&admin),
        Some(&[
            ("enabled", "on"),
            ("f.greeting", "hi"),
            ("f.token", "hunter2-secret"),
            ("csrf", &admin_csrf),
        ]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = send(
        &env,
        "GET",
        "/settings/extensions",
        Some(&admin),
        None,
        None,
    )
    .await;
    assert!(
        !page.text.contains("hunter2-secret"),
        "a secret in the page"
    );
    assert!(page.text.contains(">set<"), "{}", page.text);
    // An untouched secret is kept; a field error lands next to its field.
    let long = "x".repeat(101);
    let page = send(
        &env,
        "POST",
        "/settings/extensions/echo",
        Some(&admin),
        Some(&[
            ("enabled", "on"),
            ("f.greeting", &long),
            ("csrf", &admin_csrf),
        ]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text.contains(r#"class="field has-error""#),
        "{}",
        page.text
    );
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();
    let stored = env
        .app
        .store
        .extension(org.id, "echo")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secrets["token"], "hunter2-secret");
    assert_eq!(stored.config["greeting"], "hi");
    // A device with echo: the operator sees the action, the viewer does not.
    let echo_id = unique_echo_id();
    let (_, created) = env
        .post(
            "/api/v1/devices",
            &env.admin,
            json!({"name": "d", "extensions": {"echo": {"id": echo_id}}}),
        )
        .await;
    let path = format!("/devices/{}", created["id"].as_str().unwrap());
    let (operator, _) = signed_in(&env, "op@example.com", Role::Operator).await;
    let (viewer, _) = signed_in(&env, "vi@example.com", Role::Viewer).await;
    let page = send(&env, "GET", &path, Some(&operator), None, None).await;
    assert!(page.text.contains("/run/echo/count"), "{}", page.text);
    let page = send(&env, "GET", &path, Some(&viewer), None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.text.contains("/run/echo/count"),
        "a viewer is offered an action"
    );
    assert!(!page.text.contains("Confirm changes") && !page.text.contains("Delete device"));
    // Admin pages are refused to others.
    for p in ["/audit", "/keys", "/users"] {
        assert_eq!(
            send(&env, "GET", p, Some(&viewer), None, None).await.status,
            StatusCode::FORBIDDEN,
            "{p}"
        );
        assert_eq!(
            send(&env, "GET", p, Some(&admin), None, None).await.status,
            StatusCode::OK,
            "{p}"
        );
    }
}

#[tokio::test]
async fn the_drilldown_says_why_an_extension_is_not_shown_and_passwords_change() {
    let env = Env::new().await;
    let (token, csrf) = signed_in(&env, "ann@example.com", Role::Admin).await;
    let (_, created) = env
        .post(
            "/api/v1/devices",
            &env.admin,
            json!({"name": "d", "extensions": {"echo": {"id": unique_echo_id()}}}),
        )
        .await;
    let path = format!("/devices/{}", created["id"].as_str().unwrap());
    let page = send(&env, "GET", &path, Some(&token), None, None).await;
    assert!(
        page.text
            .contains("Not shown: the extension is not set up for this organisation"),
        "{}",
        page.text
    );
    send(
        &env,
        "POST",
        "/settings/extensions/echo",
        Some(&token),
        Some(&[("f.greeting", "hi"), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    let page = send(&env, "GET", &path, Some(&token), None, None).await;
    assert!(
        page.text
            .contains("Not shown: the extension is switched off for this organisation"),
        "{}",
        page.text
    );
    send(
        &env,
        "POST",
        "/settings/extensions/echo",
        Some(&token),
        Some(&[("enabled", "on"), ("f.greeting", "hi"), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    let page = send(&env, "GET", &path, Some(&token), None, None).await;
    assert!(!page.text.contains("Not shown"), "{}", page.text);
    assert!(page.text.contains(r#"id="panel-echo""#));
    // Changing one's own password: the current one first; other sessions end, this one stays.
    let (other, _) = {
        let p = send(
            &env,
            "POST",
            "/sign-in",
            None,
            Some(&[("email", "ann@example.com"), ("password", PASSWORD)]),
            SAME,
        )
        .await;
        let c = p.headers["set-cookie"]
            .to_str()
            .unwrap()
            .trim_start_matches("devext_session=")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        (c, ())
    };
    let page = send(
        &env,
        "POST",
        "/account",
        Some(&token),
        Some(&[
            ("current", "not it at all"),
            ("new", "a new long password"),
            ("csrf", &csrf),
        ]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text.contains("current password is wrong"));
    let page = send(
        &env,
        "POST",
        "/account",
        Some(&token),
        Some(&[
            ("current", PASSWORD),
            ("new", "a new long password"),
            ("csrf", &csrf),
        ]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(
        send(&env, "GET", "/devices", Some(&token), None, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&env, "GET", "/devices", Some(&other), None, None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let p = send(
        &env,
        "POST",
        "/sign-in",
        None,
        Some(&[
            ("email", "ann@example.com"),
            ("password", "a new long password"),
        ]),
        SAME,
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn admins_manage_keys_and_users_from_their_pages() {
    let env = Env::new().await;
    let (admin, csrf) = signed_in(&env, "ann@example.com", Role::Admin).await;
    // A key: shown once on creation, then only its id.
    let page = send(
        &env,
        "POST",
        "/keys",
        Some(&admin),
        Some(&[("name", "ci"), ("role", "operator"), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let key = page
        .text
        .split("dvx_")
        .nth(1)
        .map(|r| format!("dvx_{}", &r[..64]))
        .expect("the key is shown");
    let (s, _) = env.get("/api/v1/devices", &key).await;
    assert_eq!(s, StatusCode::OK, "the new key works");
    let page = send(&env, "GET", "/keys", Some(&admin), None, None).await;
    assert!(!page.text.contains(&key), "a key is shown once");
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();
    let keys = env.app.store.list_keys(org.id).await.unwrap();
    let id = keys.iter().find(|k| k.name == "ci").unwrap().id.clone();
    assert!(page.text.contains(&format!("/keys/{id}/revoke")));
    let revoke = format!("/keys/{id}/revoke");
    let page = send(
        &env,
        "POST",
        &revoke,
        Some(&admin),
        Some(&[("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert!(page.text.contains("revoked"), "{}", page.text);
    let (s, _) = env.get("/api/v1/devices", &key).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a revoked key");
    // A user: created, signs in, disabled (the session ends), reset.
    let page = send(
        &env,
        "POST",
        "/users",
        Some(&admin),
        Some(&[
            ("email", "vic@example.com"),
            ("role", "viewer"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ]),
        SAME,
    )
    .await;
    assert!(
        page.text.contains("User vic@example.com created."),
        "{}",
        page.text
    );
    let p = send(
        &env,
        "POST",
        "/sign-in",
        None,
        Some(&[("email", "vic@example.com"), ("password", PASSWORD)]),
        SAME,
    )
    .await;
    let vic = p.headers["set-cookie"]
        .to_str()
        .unwrap()
        .trim_start_matches("devext_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        send(&env, "GET", "/devices", Some(&vic), None, None)
            .await
            .status,
        StatusCode::OK
    );
    let vic_id = env
        .app
        .store
        .user_credentials("vic@example.com")
        .await
        .unwrap()
        .unwrap()
        .user
        .id;
    let page = send(
        &env,
        "POST",
        &format!("/users/{vic_id}/disable"),
        Some(&admin),
        Some(&[("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert!(
        page.text.contains("disabled; their sessions ended"),
        "{}",
        page.text
    );
    assert_eq!(
        send(&env, "GET", "/devices", Some(&vic), None, None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert!(
        env.app
            .store
            .user(org.id, &vic_id)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    let page = send(
        &env,
        "POST",
        &format!("/users/{vic_id}/password"),
        Some(&admin),
        Some(&[("password", "short"), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The audit log names who did it.
    let (_, log) = env.get("/api/v1/audit", &env.admin).await;
    let actions: Vec<(String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["user_email"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("user".to_owned(), "ann@example.com".to_owned())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("key".to_owned(), "ann@example.com".to_owned())),
        "{actions:?}"
    );
}

#[tokio::test]
async fn the_cookie_is_secure_when_served_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let store = devext_service::SqliteStore::open(&dir.path().join("s.db"), None)
        .await
        .unwrap();
    let org = store.create_org("acme").await.unwrap();
    devext_service::users::create_user(&store, org.id, "ann@example.com", Role::Admin, PASSWORD)
        .await
        .unwrap();
    for (web, proto, secure) in [
        (
            devext_service::WebConfig {
                secure_cookies: true,
                ..Default::default()
            },
            None,
            true,
        ),
        (
            devext_service::WebConfig {
                trust_forwarded_for: true,
                ..Default::default()
            },
            Some("https"),
            true,
        ),
        (devext_service::WebConfig::default(), Some("https"), false),
    ] {
        let runtime = devext_host::Runtime::load(devext_host::RuntimeConfig::default()).unwrap();
        let app = devext_service::App::with_web(runtime, store.clone(), web);
        let router = devext_service::router(app);
        let mut req = Request::builder()
            .method("POST")
            .uri("/sign-in")
            .header("host", HOST)
            .header("origin", "http://dash.test")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        let body =
            serde_urlencoded::to_string([("email", "ann@example.com"), ("password", PASSWORD)])
                .unwrap();
        let response = router
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            cookie.contains("; Secure"),
            secure,
            "{web:?} {proto:?}: {cookie}"
        );
    }
}

/// The value of the hidden `etag` field of the form posting to `action` in `page`.
fn form_etag(page: &str, action: &str) -> String {
    let form = page
        .split(&format!(r#"action="{action}""#))
        .nth(1)
        .unwrap_or_else(|| panic!("no form posting to {action}: {page}"));
    let form = form.split("</form>").next().unwrap();
    form.split(r#"name="etag" value=""#)
        .nth(1)
        .unwrap_or_else(|| panic!("no etag in the form posting to {action}: {form}"))
        .split('"')
        .next()
        .unwrap()
        .replace("&quot;", "\"")
}

#[tokio::test]
async fn a_form_saved_over_someone_elses_change_is_refused_and_says_reload() {
    let env = Env::new().await;
    let (token, csrf) = signed_in(&env, "ann@example.com", Role::Admin).await;
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();

    // The device: opened in one tab, then changed elsewhere before that tab saves.
    let page = send(
        &env,
        "POST",
        "/devices",
        Some(&token),
        Some(&[("name", "pump"), ("csrf", &csrf)]),
        SAME,
    )
    .await;
    let path = page.location().split('?').next().unwrap().to_owned();
    let id = path.trim_start_matches("/devices/").to_owned();
    let opened = send(&env, "GET", &path, Some(&token), None, None).await;
    let etag = form_etag(&opened.text, &path);
    let saved = send(
        &env,
        "POST",
        &path,
        Some(&token),
        Some(&[
            ("name", "pump-renamed"),
            ("extensions", "{}"),
            ("etag", &etag),
            ("csrf", &csrf),
        ]),
        SAME,
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    // The first tab still holds the old version: refused, nothing overwritten.
    let stale = send(
        &env,
        "POST",
        &path,
        Some(&token),
        Some(&[
            ("name", "pump-old-tab"),
            ("extensions", "{}"),
            ("etag", &etag),
            ("csrf", &csrf),
        ]),
        SAME,
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text
    );
    assert!(
        stale.text.contains("changed by someone else"),
        "{}",
        stale.text
    );
    let device = env.app.store.device(org.id, &id).await.unwrap().unwrap();
    assert_eq!(device.name, "pump-renamed");

    // The settings: the same rule.
    let action = "/settings/extensions/echo";
    let opened = send(
        &env,
        "GET",
        "/settings/extensions",
        Some(&token),
        None,
        None,
    )
    .await;
    let fields = |greeting: &'static str, etag: Option<String>| {
        let mut f = vec![
            ("enabled".to_owned(), "on".to_owned()),
            ("f.greeting".to_owned(), greeting.to_owned()),
            ("csrf".to_owned(), csrf.clone()),
        ];
        if let Some(e) = etag {
            f.push(("etag".to_owned(), e));
        }
        f
    };
    // Never saved yet: the first save has no version to compare.
    assert!(opened.text.contains(action), "{}", opened.text);
    let post = |f: Vec<(String, String)>| {
        let env = &env;
        let token = token.clone();
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            send(env, "POST", action, Some(&token), Some(&f), SAME).await
        }
    };
    let first = post(fields("hello", None)).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.text);
    let opened = send(
        &env,
        "GET",
        "/settings/extensions",
        Some(&token),
        None,
        None,
    )
    .await;
    let etag = form_etag(&opened.text, action);
    let second = post(fields("hi there", Some(etag.clone()))).await;
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.text);
    let stale = post(fields("from the old tab", Some(etag))).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text
    );
    assert!(
        stale.text.contains("changed by someone else"),
        "{}",
        stale.text
    );
    let stored = env
        .app
        .store
        .extension(org.id, "echo")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.config["greeting"], "hi there");
}
