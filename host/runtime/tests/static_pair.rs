//! Two plugins linked statically into one binary both register (each exports its root module
//! under its own symbol, so the link does not clash).

use devext_echo as _;
use devext_fixture_hang as _;

#[test]
fn two_static_plugins_link_and_register() {
    let rt = devext_host::Runtime::load(devext_host::RuntimeConfig::default()).unwrap();
    assert_eq!(rt.plugin_names(), vec!["echo", "fixture_hang"]);
}

#[test]
fn plugins_are_listed_static_first_by_name_then_dynamic_in_load_order() {
    use devext_host::{PluginSource, Runtime, RuntimeConfig};
    // Files load in path order: echo (replacing the static echo, in its place), bad_output,
    // panic; the static fixture_hang stays among the static ones.
    let dir = devext_test_support::plugin_dir(&[
        "devext-fixture-panic",
        "devext-echo",
        "devext-fixture-bad-output",
    ]);
    let rt = Runtime::load(RuntimeConfig {
        plugin_dirs: vec![dir.path().to_owned()],
        ..RuntimeConfig::default()
    })
    .unwrap();
    let listed: Vec<(&str, bool)> = rt
        .plugins()
        .map(|p| (p.name(), p.source() == &PluginSource::Static))
        .collect();
    assert_eq!(
        listed,
        [
            ("echo", false),
            ("fixture_hang", true),
            ("fixture_bad_output", false),
            ("fixture_panic", false)
        ]
    );
}
