//! `devext invoke` against the simulator (run in-process by the test), with the plugin linked
//! into the `devext` binary.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::{Api, devext_binary, lift_limits, org, sim, sim_of, sims_with_status};

/// Runs `devext ARGS` on a blocking thread (the simulator runs on this test's runtime).
async fn devext(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(devext_binary())
            .args(&args)
            .env_remove("DEVEXT_PLUGINS")
            .env_remove("DEVEXT_ALLOW_LOOPBACK_HTTP")
            .env_remove("DEVEXT_LOG")
            .output()
            .expect("run devext")
    })
    .await
    .expect("devext task")
}

fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write JSON");
    path.to_str().expect("UTF-8 path").to_owned()
}

fn invoke_args(op: &str, org: &str, device: &str, input: &str, loopback: bool) -> Vec<String> {
    // The plugin flags belong to the commands that load plugins: after `invoke`.
    let mut args = vec!["invoke".to_owned()];
    if loopback {
        args.push("--allow-loopback-http".to_owned());
    }
    for a in [
        "jasper", op, "--org", org, "--device", device, "--input", input,
    ] {
        args.push(a.to_owned());
    }
    args
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn cli(api: Api) {
    let sim = sim().await;
    lift_limits(&sim);
    let dir = tempfile::tempdir().expect("temp dir");
    let org = write_json(dir.path(), "org.json", &org(&sim, api));
    let iccids = sims_with_status(&sim, "activated", 1);
    let iccid = &iccids[0];
    let dev = write_json(dir.path(), "device.json", &json!({ "iccid": iccid }));

    // overview: exit 0, the output as JSON on stdout.
    let out = devext(invoke_args("overview", &org, &dev, "{}", true)).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)));
    let s = sim_of(&sim, iccid);
    assert_eq!(view["iccid"], iccid.as_str());
    assert_eq!(view["api"], api.as_str());
    assert_eq!(view["status"], s.status);
    assert_eq!(view["rate_plan"], s.rate_plan);

    // An action: the simulator applies it.
    let out = devext(invoke_args(
        "send_sms",
        &org,
        &dev,
        r#"{"message": "from the CLI"}"#,
        true,
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let sent: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let log = sim.sms_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].message, "from the CLI");
    assert_eq!(sent["message_id"], log[0].id.to_string());

    // Errors: exit 1, `error: <kind>: <message>` on stderr, nothing on stdout.
    let unknown = write_json(
        dir.path(),
        "unknown.json",
        &json!({"iccid": crate::support::unknown_iccid(&sim)}),
    );
    let out = devext(invoke_args("overview", &org, &unknown, "{}", true)).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: not_found: ICCID not in this Jasper account"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    // Invalid input: the host's violations, one per line with its pointer.
    let out = devext(invoke_args(
        "set_status",
        &org,
        &dev,
        r#"{"status": "bogus"}"#,
        true,
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: invalid_input: "), "{err}");
    assert!(err.contains("\n  /status: "), "{err}");

    // Without --allow-loopback-http, plain http to loopback is refused by the egress rules.
    let requests = sim.stats().requests;
    let out = devext(invoke_args("overview", &org, &dev, "{}", false)).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: forbidden: "), "{err}");
    assert_eq!(
        sim.stats().requests,
        requests,
        "nothing reached the simulator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_soap() {
    cli(Api::Soap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rest() {
    cli(Api::Rest).await;
}
