//! The plugin through its exported root module, as the host loads it.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RArc;
use abi_stable::std_types::{RResult, RString};
use devext_jasper::Jasper;
use devext_plugin_api::abi::HostCaps_TO;
use devext_plugin_api::{Manifest, Value, json};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn the_root_module_serves_the_manifest_and_operations() {
    let module = devext_plugin_api::plugin::export::root_module::<Jasper>();
    let RResult::ROk(manifest) = (module.manifest())() else {
        panic!("manifest")
    };
    let manifest: Manifest = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest.name, "jasper");
    assert_eq!(manifest.operations.len(), 6);

    let fake = FakeHost::new(|_, _| Reply::ok(terminal_details(ICCID, "ACTIVATED_NAME")));
    let caps = HostCaps_TO::from_ptr(RArc::new(fake.clone()), TD_Opaque);
    let org_caps = HostCaps_TO::from_ptr(RArc::new(fake.clone()), TD_Opaque);
    let context =
        json!({"protocol": 1, "call_id": "c", "deadline_unix_ms": fake.now_ms() + 10_000});
    let answer = (module.invoke())(
        caps,
        RString::from(context.to_string()),
        RString::from("overview"),
        RString::from(soap_org("https://api.jasper.com").to_string()),
        RString::from(json!({"iccid": ICCID}).to_string()),
        RString::from("{}"),
    )
    .await;
    let RResult::ROk(out) = answer else {
        panic!("{answer:?}")
    };
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["status"], "activated");

    // An organisation-scope view: the host sends `null` as the device configuration.
    let mut org = soap_org("https://api.jasper.com");
    org["rate_plans"] = json!(["IoT 10MB"]);
    let answer = (module.invoke())(
        org_caps,
        RString::from(context.to_string()),
        RString::from("rate_plans"),
        RString::from(org.to_string()),
        RString::from("null"),
        RString::from("{}"),
    )
    .await;
    let RResult::ROk(out) = answer else {
        panic!("{answer:?}")
    };
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out, json!({"rate_plans": ["IoT 10MB"], "note": null}));
}
