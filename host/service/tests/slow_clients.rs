//! Slow or hostile clients over a real socket: 200 connections dripping their headers a byte at
//! a time do not keep `/healthz` or the API from answering, and are closed after the header
//! read timeout; a body that drips is refused (408) after the body read timeout; the
//! connection cap holds.

use std::net::SocketAddr;
use std::time::Duration;

use devext_service::ServeLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::api_env::Env;

/// Serves `env`'s app on a fresh port under `limits`; the server stops when the sender drops.
async fn serve(env: &Env, limits: ServeLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(devext_service::serve_with(
        listener,
        env.app.clone(),
        limits,
        async {
            let _ = stop_rx.await;
        },
    ));
    (addr, stop_tx)
}

/// One request on a fresh connection (`Connection: close`): the whole answer.
async fn request(addr: SocketAddr, head: &str) -> String {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut text = String::new();
    sock.read_to_string(&mut text).await.unwrap();
    text
}

/// A connection that sends the start of a request and then one byte every `every`, never
/// finishing its headers; ends (with how long it was open) when the server closes it.
async fn drip(addr: SocketAddr, every: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let _ = sock
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await;
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            read = sock.read(&mut buf) => match read {
                // Closed (perhaps after a 408 of hyper's): done.
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            },
            () = tokio::time::sleep(every) => {
                if sock.write_all(b"x").await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_clients_cannot_hold_the_service() {
    let env = Env::new().await;
    let timeout = Duration::from_secs(2);
    let limits = ServeLimits {
        header_read_timeout: timeout,
        body_read_timeout: timeout,
        max_connections: 400,
    };
    let (addr, _stop) = serve(&env, limits).await;
    let drips: Vec<_> = (0..200)
        .map(|_| tokio::spawn(drip(addr, Duration::from_millis(100))))
        .collect();
    // Give every dripping connection time to connect and start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        drips.iter().all(|d| !d.is_finished()),
        "the dripping connections are open"
    );
    // The service still answers, its liveness and a real API request.
    let health = request(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let devices = request(
        addr,
        &format!(
            "GET /api/v1/devices HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            env.admin
        ),
    )
    .await;
    assert!(devices.starts_with("HTTP/1.1 200"), "{devices}");
    assert!(devices.contains("\"items\""), "{devices}");
    assert!(
        drips.iter().all(|d| !d.is_finished()),
        "still dripping while the service answered"
    );
    // Each dripping connection is closed after the header timeout, though it kept sending.
    for d in drips {
        let open = tokio::time::timeout(timeout * 5, d)
            .await
            .expect("a slow connection is closed")
            .unwrap();
        assert!(
            open >= timeout - Duration::from_millis(200),
            "closed after {open:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_drips_is_refused_after_the_body_timeout() {
    let env = Env::new().await;
    let timeout = Duration::from_secs(1);
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(30),
        body_read_timeout: timeout,
        max_connections: 10,
    };
    let (addr, _stop) = serve(&env, limits).await;
    let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
    writer
        .write_all(
            format!(
                "POST /api/v1/devices HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\"",
                env.admin
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let dripping = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                // The server closed the connection: wait for the answer to be read.
                std::future::pending::<()>().await;
            }
        }
    };
    let mut answer = Vec::new();
    let read = reader.read_to_end(&mut answer);
    tokio::select! {
        () = dripping => {}
        _ = tokio::time::timeout(timeout * 10, read) => {}
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // Nothing was created.
    let (_, list) = env.get("/api/v1/devices", &env.admin).await;
    assert_eq!(list["items"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let env = Env::new().await;
    let timeout = Duration::from_secs(2);
    let limits = ServeLimits {
        header_read_timeout: timeout,
        body_read_timeout: timeout,
        max_connections: 3,
    };
    let (addr, _stop) = serve(&env, limits).await;
    let drips: Vec<_> = (0..3)
        .map(|_| tokio::spawn(drip(addr, Duration::from_millis(100))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A fourth connection is not served while the three hold every slot...
    let health = tokio::spawn(request(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!health.is_finished(), "served beyond the cap");
    assert!(drips.iter().all(|d| !d.is_finished()));
    // ...and is once the header timeout has closed them.
    let health = tokio::time::timeout(timeout * 5, health)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    for d in drips {
        tokio::time::timeout(timeout * 5, d).await.unwrap().unwrap();
    }
}
