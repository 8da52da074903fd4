//! Two plugins linked statically into one binary both register (each exports its root module
//! under its own symbol, so the link does not clash).

use devext_echo as _;
use devext_fixture_hang as _;

#[test]
fn two_static_plugins_link_and_register() {
    let rt = devext_host::Runtime::load(devext_host::RuntimeConfig::default()).unwrap();
    assert_eq!(rt.plugin_names(), vec!["echo", "fixture_hang"]);
}
