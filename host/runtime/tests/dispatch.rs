//! Dispatch: argument checks, output checks, deadlines, contained panics, egress rules.

use std::time::Duration;

use devext_host::egress::EgressConfig;
use devext_host::{CallRequest, ErrorKind, PluginError, Runtime, RuntimeConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util;

const ALL_FIXTURES: &[&str] = &[
    "devext-echo",
    "devext-fixture-panic",
    "devext-fixture-hang",
    "devext-fixture-bad-output",
    "devext-fixture-egress",
];

fn runtime(config: RuntimeConfig) -> (Runtime, tempfile::TempDir) {
    let dir = util::plugin_dir(ALL_FIXTURES);
    let rt = Runtime::load(RuntimeConfig {
        plugin_dirs: vec![dir.path().to_owned()],
        static_plugins: false,
        ..config
    })
    .unwrap();
    assert!(rt.refused().is_empty(), "{:?}", rt.refused());
    (rt, dir)
}

async fn call(
    rt: &Runtime,
    plugin: &str,
    op: &str,
    org: Value,
    input: Value,
) -> Result<Value, PluginError> {
    rt.invoke(CallRequest {
        plugin,
        op,
        org_config: &org,
        device_config: &json!({"id": "dev-1"}),
        input: &input,
        timeout: Some(Duration::from_secs(5)),
        priority: Default::default(),
    })
    .await
}

/// Checks that `e`'s message says `part`, showing the whole message otherwise.
fn assert_message_contains(e: &PluginError, part: &str) {
    assert!(e.message.contains(part), "{}", e.message);
}

async fn echo_works(rt: &Runtime) {
    let out = call(
        rt,
        "echo",
        "echo",
        json!({}),
        json!({"message": "still here"}),
    )
    .await
    .expect("echo still serves");
    assert_eq!(out["message"], "still here");
}

#[tokio::test]
async fn panics_are_contained_as_internal_errors() {
    let (rt, _dir) = runtime(RuntimeConfig::default());
    for op in ["panic_now", "panic_later"] {
        let e = call(&rt, "fixture_panic", op, json!({}), json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal, "{op}");
        assert!(e.message.contains("panicked"), "{op}: {}", e.message);
        assert!(e.message.contains("fixture panic"), "{op}: {}", e.message);
        echo_works(&rt).await;
    }
}

/// Calls an operation of the hang fixture with a deadline of `ms`; it must fail.
async fn hang(rt: &Runtime, op: &str, ms: u64) -> PluginError {
    rt.invoke(CallRequest {
        plugin: "fixture_hang",
        op,
        org_config: &json!({}),
        device_config: &json!({}),
        input: &json!({}),
        timeout: Some(Duration::from_millis(ms)),
        priority: Default::default(),
    })
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_future_that_never_completes_is_cancelled_at_the_deadline() {
    let (rt, _dir) = runtime(RuntimeConfig::default());
    let e = hang(&rt, "hang", 200).await;
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.retryable, "a view may be tried again");
    assert_message_contains(&e, "fixture_hang.hang did not finish within 200 ms");
    // An action cancelled at the deadline may have happened: no blind retry.
    let e = hang(&rt, "hang_action", 200).await;
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(!e.retryable);
    assert_message_contains(&e, "may still have been processed");
    echo_works(&rt).await;
}

#[tokio::test]
async fn stuck_calls_do_not_block_other_plugins_and_are_bounded_per_plugin() {
    let (rt, _dir) = runtime(RuntimeConfig {
        max_concurrent_calls_per_plugin: 2,
        ..RuntimeConfig::default()
    });
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let rt = rt.clone();
        stuck.push(tokio::spawn(async move { hang(&rt, "hang", 400).await }));
    }
    // The other plugin answers while every hang call is still pending.
    echo_works(&rt).await;
    assert!(stuck.iter().all(|h| !h.is_finished()));
    for h in stuck {
        // Queued calls (beyond the limit of 2) time out too: the deadline covers the wait.
        assert_eq!(h.await.unwrap().kind, ErrorKind::Timeout);
    }
    echo_works(&rt).await;
}

#[tokio::test]
async fn output_violating_its_schema_is_a_plugin_fault() {
    let (rt, _dir) = runtime(RuntimeConfig::default());
    let e = call(&rt, "fixture_bad_output", "lie", json!({}), json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.details["fault"], "plugin");
    assert_message_contains(&e, "violates the schema of lie");
    assert_eq!(e.details["violations"][0]["pointer"], "/ok");
    assert_eq!(e.details["violations"][0]["keyword"], "const");
    echo_works(&rt).await;
}

#[tokio::test]
async fn unknown_plugins_and_operations_are_not_found() {
    let (rt, _dir) = runtime(RuntimeConfig::default());
    let e = call(&rt, "nope", "x", json!({}), json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_message_contains(&e, "loaded plugins are echo, fixture_bad_output");
    let e = call(&rt, "echo", "shout", json!({}), json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_message_contains(&e, "its operations are count, counter, echo");
}

#[tokio::test]
async fn arguments_are_validated_before_the_plugin_runs() {
    let (rt, _dir) = runtime(RuntimeConfig::default());
    let e = call(
        &rt,
        "echo",
        "echo",
        json!({"greeting": 5}),
        json!({"message": "x"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(e.details["location"], "org_config");
    assert_eq!(e.details["violations"][0]["pointer"], "/greeting");
    assert_eq!(e.details["violations"][0]["keyword"], "type");

    let e = call(&rt, "echo", "count", json!({}), json!({"by": 0}))
        .await
        .unwrap_err();
    assert_eq!(e.details["location"], "input");
    assert_eq!(e.details["violations"][0]["pointer"], "/by");
    assert_eq!(e.details["violations"][0]["keyword"], "minimum");

    let e = rt
        .invoke(CallRequest {
            plugin: "echo",
            op: "echo",
            org_config: &json!({}),
            device_config: &json!({"id": "has space"}),
            input: &json!({"message": "x"}),
            timeout: None,
            priority: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.details["location"], "device_config");
    assert_eq!(e.details["violations"][0]["keyword"], "pattern");
    // The plugin never ran: its counter is untouched by the refused calls.
    let out = call(&rt, "echo", "count", json!({}), json!({}))
        .await
        .unwrap();
    assert_eq!(out["count"], 1);
}

/// A one-shot HTTP server on loopback answering every request with `response`.
async fn serve(response: &'static str) -> (String, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut served = 0;
        while let Ok(Ok((mut sock, _))) =
            tokio::time::timeout(Duration::from_secs(3), listener.accept()).await
        {
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
            served += 1;
        }
        served
    });
    (format!("http://127.0.0.1:{}", addr.port()), handle)
}

/// The egress fixture's `fetch` of `url`, with `endpoint` as the organisation's endpoint.
async fn fetch(rt: &Runtime, endpoint: &str, url: &str) -> Result<Value, PluginError> {
    call(
        rt,
        "fixture_egress",
        "fetch",
        json!({"endpoint": endpoint}),
        json!({"url": url}),
    )
    .await
}

fn loopback_runtime(allow: bool, max_response_bytes: usize) -> (Runtime, tempfile::TempDir) {
    runtime(RuntimeConfig {
        egress: EgressConfig {
            allow_loopback_http: allow,
            max_response_bytes,
            transport: None,
        },
        ..RuntimeConfig::default()
    })
}

#[tokio::test]
async fn requests_outside_the_endpoint_origin_are_refused() {
    let (rt, _dir) = loopback_runtime(true, 1024);
    let (base, server) = serve("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    // Same host, other port: refused before any connection.
    let e = fetch(&rt, &base, "http://127.0.0.1:9/steal")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_message_contains(&e, "may only reach http://127.0.0.1:");
    let e = fetch(&rt, &base, "https://example.com/").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // The allowed origin works.
    let out = fetch(&rt, &base, &format!("{base}/x")).await.unwrap();
    assert_eq!(out["ok"], true);
    assert_eq!(
        server.await.unwrap(),
        1,
        "only the allowed request reached the server"
    );
    echo_works(&rt).await;
}

#[tokio::test]
async fn loopback_needs_the_operators_permission() {
    let (rt, _dir) = loopback_runtime(false, 1024);
    let (base, _server) = serve("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let e = fetch(&rt, &base, &format!("{base}/x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_message_contains(&e, "https is required");
    // A name (not a literal) that resolves to loopback is refused at connect time.
    let port = base.rsplit(':').next().unwrap();
    let named = format!("https://localhost:{port}");
    let e = fetch(&rt, &named, &format!("{named}/x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "{}", e.message);
    assert_message_contains(&e, "local or private");
}

#[tokio::test]
async fn redirects_are_not_followed_and_large_responses_are_refused() {
    let (rt, _dir) = loopback_runtime(true, 64);
    let (base, _s) =
        serve("HTTP/1.1 302 Found\r\nlocation: https://example.com/\r\ncontent-length: 0\r\n\r\n")
            .await;
    // The plugin sees the 302 itself.
    let out = fetch(&rt, &base, &format!("{base}/")).await.unwrap();
    assert_eq!(out["status"], 302);

    let big: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{}",
            "x".repeat(100)
        )
        .into_boxed_str(),
    );
    let (base, _s) = serve(big).await;
    let e = fetch(&rt, &base, &format!("{base}/")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_message_contains(&e, "more than 64 bytes");
}

#[tokio::test]
async fn metrics_count_calls_per_plugin_op_and_outcome() {
    let (rt, _dir) = runtime(RuntimeConfig::default());
    echo_works(&rt).await;
    echo_works(&rt).await;
    let _ = call(&rt, "fixture_bad_output", "lie", json!({}), json!({})).await;
    let rows = rt.metrics();
    let echo = rows
        .iter()
        .find(|r| r.plugin == "echo" && r.op == "echo" && r.outcome == "ok")
        .unwrap();
    assert_eq!(echo.count, 2);
    assert_eq!(echo.buckets.iter().sum::<u64>(), 2);
    let lie = rows
        .iter()
        .find(|r| r.plugin == "fixture_bad_output")
        .unwrap();
    assert_eq!((lie.outcome, lie.count), ("internal", 1));
}

#[tokio::test]
async fn the_deadline_cancels_in_flight_http() {
    let (rt, _dir) = loopback_runtime(true, 1024);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // The server reads the request and never answers; it reports when the client hangs up.
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = sock.read(&mut buf).await;
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    });
    let e = rt
        .invoke(CallRequest {
            plugin: "fixture_egress",
            op: "fetch",
            org_config: &json!({"endpoint": base}),
            device_config: &json!({}),
            input: &json!({"url": format!("{base}/slow")}),
            timeout: Some(Duration::from_millis(300)),
            priority: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{}", e.message);
    let hung_up = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the connection is closed once the call is cancelled")
        .unwrap();
    assert!(hung_up);
    echo_works(&rt).await;
}
