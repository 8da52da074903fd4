//! A plugin the dashboard has never seen (`fixture_hostile`, linked statically here): its
//! settings form, device panel, chart, actions, errors and connection check all come from its
//! manifest with no dashboard change, and every string it supplies (each carries `<script>` and
//! `"><img onerror=...>`) is rendered as text.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use devext_host::RuntimeConfig;
use devext_service::store::{Role, Store};
use devext_service::testing::TestService;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use devext_fixture_hostile as _;

const PASSWORD: &str = "correct horse battery";

async fn send(
    svc: &TestService,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<&[(&str, &str)]>,
) -> (StatusCode, String, Option<String>) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "t")
        .header("origin", "http://t");
    if !cookie.is_empty() {
        req = req.header("cookie", format!("devext_session={cookie}"));
    }
    let req = match form {
        Some(f) => req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(f).unwrap())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let response = svc.router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        set_cookie,
    )
}

fn assert_inert(page: &str, what: &str) {
    assert!(
        !page.contains("<script>alert(1)</script>"),
        "{what}: a script ran: {page}"
    );
    assert!(
        !page.contains("<img src=x"),
        "{what}: an attribute broke out: {page}"
    );
    assert!(
        !page.contains("<b>loud</b>") && !page.contains("<i>high</i>"),
        "{what}: {page}"
    );
}

#[tokio::test]
async fn an_unseen_plugin_gets_every_page_and_its_strings_stay_text() {
    let svc = TestService::start(RuntimeConfig::default()).await;
    let org = svc.app.store.org_by_name("acme").await.unwrap().unwrap();
    devext_service::users::create_user(
        &svc.app.store,
        org.id,
        "ann@example.com",
        Role::Admin,
        PASSWORD,
    )
    .await
    .unwrap();
    let (s, _, cookie) = send(
        &svc,
        "POST",
        "/sign-in",
        "",
        Some(&[("email", "ann@example.com"), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let token = cookie
        .unwrap()
        .trim_start_matches("devext_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (_, page, _) = send(&svc, "GET", "/settings/extensions", &token, None).await;
    assert_inert(&page, "settings");
    assert!(
        page.contains("Hostile &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains(r#"name="f.retries""#) && page.contains(r#"max="5""#),
        "its form: {page}"
    );
    assert!(page.contains("Test connection"), "its connection check");
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // Its settings, saved from its own form.
    let (s, page, _) = send(
        &svc,
        "POST",
        "/settings/extensions/fixture_hostile",
        &token,
        Some(&[
            ("enabled", "on"),
            ("f.endpoint", "https://example.com/"),
            ("f.token", "tok-secret-1"),
            ("f.mode", "calm"),
            ("f.retries", "2"),
            ("csrf", &csrf),
        ]),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{page}");
    let (_, page, _) = send(
        &svc,
        "POST",
        "/settings/extensions/fixture_hostile/test",
        &token,
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_inert(&page, "connection test");
    assert!(
        page.contains("the username or password (or API key) is wrong"),
        "{page}"
    );
    assert!(!page.contains("tok-secret-1"));
    // A device, its panel (view, badge, units, chart) and its actions.
    let (_, created) = svc
        .client
        .send(
            "POST",
            "/api/v1/devices",
            Some(&svc.admin),
            Some(json!({"name": "h", "extensions": {"fixture_hostile": {"serial": "ABCD"}}})),
            &[],
        )
        .await
        .status_and_body();
    let path = format!("/devices/{}", created["id"].as_str().unwrap());
    let (s, page, _) = send(&svc, "GET", &path, &token, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_inert(&page, "device");
    assert!(page.contains("1.2 MB"), "units: {page}");
    assert!(page.contains(r#"class="badge badge-"#), "badge: {page}");
    assert!(page.contains("<svg"), "chart: {page}");
    assert!(
        page.contains("/run/fixture_hostile/poke")
            && page.contains(r#"<option value="&lt;i&gt;high&lt;/i&gt;""#),
        "{page}"
    );
    let (_, page, _) = send(
        &svc,
        "POST",
        &format!("{path}/run/fixture_hostile/poke"),
        &token,
        Some(&[
            ("f.level", "low"),
            ("f.text", "<script>alert(1)</script>"),
            ("csrf", &csrf),
        ]),
    )
    .await;
    assert_inert(&page, "poke result");
    assert!(page.contains("Poke"), "{page}");
    // A destructive action needs its confirmation; its error is shown in words, as text.
    let (_, page, _) = send(
        &svc,
        "POST",
        &format!("{path}/run/fixture_hostile/break"),
        &token,
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert!(page.contains("tick the confirmation box"), "{page}");
    let (_, page, _) = send(
        &svc,
        "POST",
        &format!("{path}/run/fixture_hostile/break"),
        &token,
        Some(&[("confirm", "on"), ("csrf", &csrf)]),
    )
    .await;
    assert_inert(&page, "break error");
    assert!(page.contains("refused: refused &lt;script&gt;"), "{page}");
}
