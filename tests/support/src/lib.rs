//! Helpers shared by the workspace's tests.
//!
//! Integration tests load plugins as shared libraries and run the `devext` binary. Cargo builds
//! neither for a test binary of another package, so [`build`] runs a nested `cargo build` (once
//! per set of packages and per test process) into the profile directory the test itself was
//! built in; `cargo test --workspace` then works on a clean clone.

pub mod postgres;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The profile directory the running test binary was built in (`target/debug`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_owned()
}

/// Builds the given cargo targets (`-p NAME`, `--bin NAME`, ...: passed to `cargo build` as they
/// are) in the running test's profile, once per argument list, and returns the profile directory.
pub fn build(args: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashSet<Vec<String>>>> = Mutex::new(None);
    let key: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let dir = profile_dir();
    // Held while building: concurrent tests wait for one build instead of racing cargo's lock.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    if built.contains(&key) {
        return dir;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build {} failed", args.join(" "));
    built.insert(key);
    dir
}

/// Builds the shared libraries of `packages` (those not built yet in this process) and returns
/// the profile directory holding them.
pub fn build_libraries(packages: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !built.contains(*p))
        .collect();
    if missing.is_empty() {
        return profile_dir();
    }
    let mut args = Vec::with_capacity(missing.len() * 2 + 1);
    for p in &missing {
        args.push("-p");
        args.push(*p);
    }
    args.push("--lib");
    let dir = build(&args);
    built.extend(missing.iter().map(|p| (*p).to_owned()));
    dir
}

/// The path of the built shared library of `package` (e.g. `devext-echo`), building it first.
pub fn library(package: &str) -> PathBuf {
    build_libraries(&[package]).join(library_file(package))
}

/// The file name of a package's shared library: `libdevext_echo.so` for `devext-echo`.
pub fn library_file(package: &str) -> String {
    format!("lib{}.so", package.replace('-', "_"))
}

/// A fresh directory holding copies of the shared libraries of `packages` (nothing else).
pub fn plugin_dir(packages: &[&str]) -> tempfile::TempDir {
    let from = build_libraries(packages);
    let dir = tempfile::tempdir().expect("temp dir");
    for p in packages {
        let file = library_file(p);
        let src = from.join(&file);
        std::fs::copy(&src, dir.path().join(&file))
            .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    dir
}

/// The `devext` binary, built first.
pub fn devext_binary() -> PathBuf {
    build(&["-p", "devext", "--bin", "devext"]).join("devext")
}
