//! Helpers shared by the integration tests: building the plugin libraries, plugin directories.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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

/// The profile directory the test binary was built in (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_owned()
}

/// Builds the plugin libraries once per test run (so that `cargo test` works on a clean clone),
/// and returns the directory holding them.
pub(crate) fn built_libraries() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let mut cmd = Command::new(cargo);
        cmd.arg("build").arg("--quiet");
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        for p in LIBRARIES {
            cmd.args(["-p", p]);
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = cmd
            .status()
            .expect("run cargo build for the plugin libraries");
        assert!(status.success(), "building the plugin libraries failed");
        dir
    })
}

/// The path of the built library of `package` (e.g. `devext-echo`).
pub(crate) fn library(package: &str) -> PathBuf {
    built_libraries().join(format!("lib{}.so", package.replace('-', "_")))
}

/// A fresh directory holding copies of the libraries of `packages`.
pub(crate) fn plugin_dir(packages: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for p in packages {
        let src = library(p);
        let dst = dir.path().join(src.file_name().expect("file name"));
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    dir
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
