//! The proof that a plugin written outside the host works with no host change: the 1NCE plugin,
//! built as `libdevext_onence.so`, loaded by the `devext` binary with `--plugins` (which links
//! only Jasper), checked by `devext plugins check`, run by `devext invoke` against its
//! simulator, its device configurations checked by `devext validate` next to Jasper's, and its
//! schemas in `devext schema export`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

/// Runs `devext ARGS` on a blocking thread (the simulator runs on this test's runtime).
async fn devext(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(devext_test_support::devext_binary())
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write JSON");
    path.to_str().expect("UTF-8 path").to_owned()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_onence_library_is_loaded_checked_invoked_validated_and_exported_by_devext() {
    let plugins = devext_test_support::plugin_dir(&["devext-onence"]);
    let dir = plugins.path().to_str().unwrap().to_owned();
    let library = plugins
        .path()
        .join(devext_test_support::library_file("devext-onence"));
    assert!(
        library.ends_with("libdevext_onence.so"),
        "{}",
        library.display()
    );

    // The author's CI gate.
    let out = devext(args(&["plugins", "check", library.to_str().unwrap()])).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("onence"),
        "{}",
        text(&out.stdout)
    );

    // Loaded beside the statically linked Jasper.
    let out = devext(args(&["plugins", "--plugins", &dir, "--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains("\"onence\"") && listed.contains("\"jasper\""),
        "{listed}"
    );

    // devext invoke against the simulator.
    let sim = devext_onence_sim::start(devext_onence_sim::SimConfig::default())
        .await
        .expect("simulator");
    let (user, password) = sim.credentials();
    let tmp = tempfile::tempdir().unwrap();
    let org = write(
        tmp.path(),
        "org.json",
        &json!({"endpoint": sim.endpoint(), "username": user, "password": password}),
    );
    let iccid = sim.iccids()[0].clone();
    let device = write(
        tmp.path(),
        "device.json",
        &json!({"onence": {"iccid": iccid}}),
    );
    let out = devext(args(&[
        "invoke",
        "onence",
        "overview",
        "--plugins",
        &dir,
        "--allow-loopback-http",
        "--org",
        &org,
        "--device",
        &device,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let overview: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(overview["iccid"], iccid);
    assert_eq!(overview["msisdn"], sim.sim(&iccid).unwrap().msisdn);
    assert!(!text(&out.stdout).contains(&password) && !text(&out.stderr).contains(&password));
    let out = devext(args(&[
        "invoke",
        "onence",
        "send_sms",
        "--plugins",
        &dir,
        "--allow-loopback-http",
        "--org",
        &org,
        "--device",
        &device,
        "--input",
        r#"{"text":"from the command line"}"#,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(sim.sms_log()[0].payload, "from the command line");
    let out = devext(args(&[
        "invoke",
        "onence",
        "test_connection",
        "--plugins",
        &dir,
        "--allow-loopback-http",
        "--org",
        &org,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // devext validate: configurations holding both plugins.
    let configs = tmp.path().join("devices");
    std::fs::create_dir(&configs).unwrap();
    write(
        &configs,
        "good.json",
        &json!({"jasper": {"iccid": "89011704278930000007"}, "onence": {"iccid": "89883030001234567894"}}),
    );
    let out = devext(args(&[
        "validate",
        configs.to_str().unwrap(),
        "--plugins",
        &dir,
    ]))
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    write(
        &configs,
        "bad.json",
        &json!({"jasper": {"iccid": "89011704278930000007"}, "onence": {"iccid": "123"}}),
    );
    let out = devext(args(&[
        "validate",
        configs.to_str().unwrap(),
        "--plugins",
        &dir,
    ]))
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report = text(&out.stdout);
    assert!(
        report.contains("bad.json") && report.contains("/onence/iccid"),
        "{report}"
    );
    assert!(!report.contains("good.json:"), "{report}");

    // devext schema export: the combined device schema holds onence's part.
    let out = devext(args(&["schema", "export", "--plugins", &dir])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let combined: Value = serde_json::from_slice(&out.stdout).expect("a schema");
    assert_eq!(
        combined["properties"]["onence"]["properties"]["iccid"]["pattern"], "^[0-9]{19,20}$",
        "{combined:#}"
    );
    let out_dir = tmp.path().join("schemas");
    let out = devext(args(&[
        "schema",
        "export",
        "--plugins",
        &dir,
        "--out",
        out_dir.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out_dir.join("onence.org-config.schema.json").exists());
    assert!(
        out_dir
            .join("onence.op.usage_history.output.schema.json")
            .exists()
    );
    sim.shutdown().await;
}
