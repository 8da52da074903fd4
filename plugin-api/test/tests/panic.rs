//! A static plugin's panic: caught, reported once through the host's log with the plugin's name,
//! never printed by the panic hook; panics outside plugin calls still reach the previous hook.
//! (Alone in its test binary: the panic hook is process-wide.)

use std::sync::atomic::{AtomicUsize, Ordering};

use devext_plugin_api::{Call, Host, Manifest, Operation, Plugin, PluginError};
use devext_plugin_test::{ErrorKind, Harness, expect_error, json, run};
use serde_json::Value;

struct Panicky;

impl Plugin for Panicky {
    fn manifest(&self) -> Manifest {
        Manifest::new("panicky", "Panicky", "0.1.0")
            .org_config_schema(json!({"type": "object"}))
            .device_config_schema(json!({"type": "object"}))
            .with_operation(Operation::view("boom", "Boom").scope(devext_plugin_api::OpScope::Org))
    }

    async fn invoke(&self, host: Host, _call: Call) -> Result<Value, PluginError> {
        host.sleep(std::time::Duration::from_millis(1)).await?;
        panic!("kaboom {}", 42);
    }
}

devext_plugin_api::export_plugin!(Panicky, Panicky);

static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_plugin_panic_is_logged_once_and_other_panics_reach_the_previous_hook() {
    std::panic::set_hook(Box::new(|_| {
        HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    run(async {
        let h = Harness::new("panicky");
        let e = expect_error(h.call_org("boom", json!({})).await, ErrorKind::Internal);
        assert!(e.message.contains("kaboom 42"), "{}", e.message);
        assert_eq!(e.details["panic"], "kaboom 42");
        let reports: Vec<_> = devext_plugin_test::logs()
            .into_iter()
            .filter(|l| l.message.contains("kaboom"))
            .collect();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].level, "ERROR");
        assert_eq!(reports[0].plugin.as_deref(), Some("panicky"));
        assert!(
            reports[0]
                .message
                .contains("panicked while running the operation boom: kaboom 42 (at ")
                && reports[0].message.contains("tests/panic.rs:"),
            "{}",
            reports[0].message
        );
    });
    assert_eq!(
        HOOK_CALLS.load(Ordering::SeqCst),
        0,
        "the plugin's panic reached the hook"
    );
    // The host's own panics are untouched.
    let _ = std::panic::catch_unwind(|| panic!("the host's own"));
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 1);
}
