//! The plugin as the host loads it: its root module (the export glue, linked statically here,
//! the same module a `.so` exports) found, its manifest checked, its operations served.

use devext_jasper::Jasper;
use devext_plugin_api::json;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn the_root_module_serves_the_manifest_and_operations() {
    let manifest = manifest();
    assert_eq!(manifest.name, "jasper");
    assert_eq!(manifest.operations.len(), 8);
    assert_eq!(
        manifest.connection_check.as_deref(),
        Some("test_connection")
    );

    let fake = FakeHost::new(|_, _| Reply::ok(terminal_details(ICCID, "ACTIVATED_NAME")));
    let org = soap_org("https://api.jasper.com");
    let out = invoke(
        &Jasper::default(),
        &fake,
        &org,
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(out["status"], "activated");

    // An organisation-scope view: the host sends `null` as the device configuration.
    let mut org = soap_org("https://api.jasper.com");
    org["rate_plans"] = json!(["IoT 10MB"]);
    let out = invoke_org(&Jasper::default(), &fake, &org, "rate_plans", json!({}))
        .await
        .unwrap();
    assert_eq!(out, json!({"rate_plans": ["IoT 10MB"], "note": null}));
}
