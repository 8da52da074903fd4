//! The kit with a plugin loaded from its shared library, as `devext --plugins DIR` loads it.

use devext_plugin_test::{Harness, json, run};

#[test]
fn a_plugin_library_is_loaded_from_a_directory() {
    let dir = devext_test_support::plugin_dir(&["devext-echo", "devext-fixture-bad-manifest"]);
    run(async {
        let h = Harness::builder("echo")
            .plugin_dir(dir.path())
            .build()
            .unwrap()
            .with_org(json!({"greeting": "from the .so"}));
        assert!(matches!(
            h.runtime().plugin("echo").unwrap().source(),
            devext_host::PluginSource::File(_)
        ));
        let out = h
            .call("echo", json!({"id": "d"}), json!({"message": "m"}))
            .await
            .unwrap();
        assert_eq!(out["greeting"], "from the .so");
    });
    // A library the loader refuses is named with the loader's reasons.
    let e = Harness::builder("bad")
        .plugin_dir(dir.path())
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("libdevext_fixture_bad_manifest.so"), "{e}");
    assert!(e.contains("invalid manifest"), "{e}");
}
