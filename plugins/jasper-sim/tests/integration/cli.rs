//! The `jasper-sim` binary.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::util::send;

#[tokio::test]
async fn first_stdout_line_is_the_address() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jasper-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--sims",
            "7",
            "--seed",
            "3",
            "--no-rate-limit",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("first line in time")
        .expect("readable")
        .expect("a line");
    let addr = first.strip_prefix("listening on 127.0.0.1:").expect(&first);
    let port: u16 = addr.parse().expect("numeric port");
    assert_ne!(port, 0);

    let sims = send(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "GET",
        "/_sim/sims",
        &[],
        b"",
    )
    .await
    .unwrap()
    .json();
    assert_eq!(sims.as_array().unwrap().len(), 7);
    child.kill().await.expect("child stops");
}

#[tokio::test]
async fn bad_arguments_fail() {
    let status = Command::new(env!("CARGO_BIN_EXE_jasper-sim"))
        .args(["--sims", "many"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(!status.success());
    let status = Command::new(env!("CARGO_BIN_EXE_jasper-sim"))
        .args(["--listen", "127.0.0.1:0", "--error-rate", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(
        !status.success(),
        "an invalid error rate is refused at start"
    );
}
