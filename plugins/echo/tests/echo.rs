//! Echo through the real host runtime, with the plugin author's test kit: the template's tests
//! are the template for a plugin's tests.

use devext_plugin_test::{ErrorKind, Harness, expect_error, json, run};
// Links the plugin into this test binary, where the host finds it as a static plugin.
use devext_echo as _;

fn echo() -> Harness {
    Harness::new("echo").with_org(json!({"greeting": "hi", "token": "s3cret-token"}))
}

#[test]
fn the_manifest_passes_the_loaders_checks() {
    let h = Harness::new("echo");
    let names: Vec<&str> = h
        .manifest()
        .operations
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(names, ["echo", "count", "counter", "ping"]);
    assert_eq!(h.hint_warnings(), Vec::<String>::new());
}

#[test]
fn echo_returns_its_input_with_the_greeting_and_the_device() {
    run(async {
        let out = echo()
            .call(
                "echo",
                json!({"id": "sensor-1"}),
                json!({"message": "hello", "tags": ["a"]}),
            )
            .await
            .unwrap();
        devext_plugin_test::assert_json_eq(
            &out,
            &json!({"message": "hello", "greeting": "hi", "device": "sensor-1", "tags": ["a"]}),
        );
    });
}

#[test]
fn the_host_checks_the_input_device_and_settings_against_the_schemas() {
    run(async {
        let h = echo();
        let e = expect_error(
            h.call("echo", json!({"id": "sensor-1"}), json!({})).await,
            ErrorKind::InvalidInput,
        );
        assert_eq!(e.details["location"], "input", "{}", e.details);
        let e = expect_error(
            h.call("echo", json!({"id": "no spaces"}), json!({"message": "m"}))
                .await,
            ErrorKind::InvalidInput,
        );
        assert_eq!(e.details["location"], "device_config", "{}", e.details);
        let bad_org = h.clone().with_org(json!({"greeting": 7}));
        let e = expect_error(
            bad_org
                .call("echo", json!({"id": "d"}), json!({"message": "m"}))
                .await,
            ErrorKind::InvalidInput,
        );
        assert_eq!(e.details["location"], "org_config", "{}", e.details);
    });
}

#[test]
fn device_configurations_are_checked_as_devext_validate_does() {
    let h = echo();
    assert!(h.check_device(json!({"id": "pump-7"})).is_empty());
    let v = h.check_device(json!({"id": "pump 7", "extra": 1}));
    let pointers: Vec<&str> = v.iter().map(|v| v.pointer.as_str()).collect();
    assert!(pointers.contains(&"/echo/id"), "{v:?}");
    assert!(h.check_org(&json!({"greeting": "x".repeat(101)})).len() == 1);
}

#[test]
fn count_is_an_action_that_keeps_a_counter_per_device() {
    run(async {
        let h = echo();
        let dev = json!({"id": "count-test"});
        assert_eq!(
            h.call("count", dev.clone(), json!({})).await.unwrap()["count"],
            1
        );
        assert_eq!(
            h.call("count", dev.clone(), json!({"by": 5}))
                .await
                .unwrap()["count"],
            6
        );
        let read = h.call("counter", dev, json!({})).await.unwrap();
        assert_eq!(read["count"], 6);
        // A view with `fresh_for_secs` gets the host's `as_of`.
        assert!(
            read["as_of"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{read}"
        );
        // The action logged through the host, tagged with the plugin's name.
        assert!(
            devext_plugin_test::logs()
                .iter()
                .any(|l| l.plugin.as_deref() == Some("echo")
                    && l.message == "device count-test counted to 6"),
            "{:?}",
            devext_plugin_test::logs()
        );
    });
}

#[test]
fn ping_runs_without_a_device_and_gets_the_account_key() {
    run(async {
        let h = echo();
        let a = h.call_org("ping", json!({})).await.unwrap();
        assert_eq!(a["greeting"], "hi");
        // The account key depends on the account fields (the greeting), not on secrets.
        let same = h
            .clone()
            .with_org(json!({"greeting": "hi", "token": "other-token"}));
        let other = h.clone().with_org(json!({"greeting": "hey"}));
        assert_eq!(
            same.call_org("ping", json!({})).await.unwrap()["account_key"],
            a["account_key"]
        );
        assert_ne!(
            other.call_org("ping", json!({})).await.unwrap()["account_key"],
            a["account_key"]
        );
    });
}

#[test]
fn an_unknown_operation_is_not_found_by_the_host() {
    run(async {
        let e = expect_error(
            echo().call("nope", json!({"id": "d"}), json!({})).await,
            ErrorKind::NotFound,
        );
        assert!(e.message.contains("echo"), "{}", e.message);
    });
}
