//! Helpers shared by the integration tests: building the plugin libraries, plugin directories.

use std::path::PathBuf;

use devext_host::{Runtime, RuntimeConfig};

/// The packages whose shared libraries the tests load.
const LIBRARIES: &[&str] = &[
    "devext-echo",
    "devext-fixture-panic",
    "devext-fixture-hang",
    "devext-fixture-bad-output",
    "devext-fixture-egress",
    "devext-fixture-bad-manifest",
    "devext-fixture-no-root",
    "devext-fixture-abi-mismatch",
];

/// The path of the built library of `package` (e.g. `devext-echo`).
pub(crate) fn library(package: &str) -> PathBuf {
    built_libraries();
    devext_test_support::profile_dir().join(devext_test_support::library_file(package))
}

/// Builds every library the tests load, at once (one nested cargo build for the run).
pub(crate) fn built_libraries() -> PathBuf {
    devext_test_support::build_libraries(LIBRARIES)
}

/// A fresh directory holding copies of the libraries of `packages`.
pub(crate) fn plugin_dir(packages: &[&str]) -> tempfile::TempDir {
    built_libraries();
    devext_test_support::plugin_dir(packages)
}

/// A runtime over the libraries of `packages` only (no static plugins).
pub(crate) fn dynamic_runtime(packages: &[&str]) -> (Runtime, tempfile::TempDir) {
    let dir = plugin_dir(packages);
    let runtime = Runtime::load(RuntimeConfig {
        plugin_dirs: vec![dir.path().to_owned()],
        static_plugins: false,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    (runtime, dir)
}
