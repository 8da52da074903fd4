//! Loading: static and dynamic plugins, refusals with one-line reasons, name clashes.

use devext_host::{
    ConfigError, ManifestProblem, PluginSource, RefusalReason, RefusedSource, Runtime,
    RuntimeConfig,
};

use crate::util;

fn refusal_for<'a>(rt: &'a Runtime, file_part: &str) -> &'a RefusalReason {
    rt.refused()
        .iter()
        .find(|r| r.source.to_string().contains(file_part))
        .map(|r| &r.reason)
        .unwrap_or_else(|| panic!("no refusal for {file_part}: {:?}", rt.refused()))
}

fn reason_for(rt: &Runtime, file_part: &str) -> String {
    refusal_for(rt, file_part).to_string()
}

#[test]
fn unusable_files_are_refused_with_a_reason_and_the_others_load() {
    let dir = util::plugin_dir(&[
        "devext-echo",
        "devext-fixture-no-root",
        "devext-fixture-bad-manifest",
        "devext-fixture-abi-mismatch",
    ]);
    std::fs::write(dir.path().join("notes.so"), "this is not a library\n").unwrap();
    std::fs::write(dir.path().join("readme.txt"), "ignored: not *.so").unwrap();
    std::fs::create_dir(dir.path().join("nested.so")).unwrap();
    let rt = Runtime::load(RuntimeConfig {
        plugin_dirs: vec![dir.path().to_owned()],
        static_plugins: false,
        ..RuntimeConfig::default()
    })
    .unwrap();

    assert_eq!(rt.plugin_names(), vec!["echo"]);
    assert_eq!(rt.refused().len(), 4, "{:?}", rt.refused());
    let text = reason_for(&rt, "notes.so");
    assert!(text.starts_with("not a loadable shared library"), "{text}");
    assert!(
        text.ends_with("devext plugins are Linux shared libraries (ELF *.so) for now"),
        "{text}"
    );
    assert!(matches!(
        refusal_for(&rt, "notes.so"),
        RefusalReason::NotLoadable { .. } | RefusalReason::NotElf(_)
    ));
    let no_root = reason_for(&rt, "no_root");
    assert!(no_root.starts_with("no devext root module"), "{no_root}");
    assert!(matches!(
        refusal_for(&rt, "no_root"),
        RefusalReason::NoRootModule
    ));
    let problems = refusal_for(&rt, "bad_manifest").manifest_problems();
    assert!(
        problems.iter().any(
            |p| matches!(p, ManifestProblem::IncompatibleApiVersion { found } if found == "9.0.0")
        ),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, ManifestProblem::DuplicateOperation { name } if name == "same")),
        "{problems:?}"
    );
    let bad = reason_for(&rt, "bad_manifest");
    assert!(bad.starts_with("invalid manifest:"), "{bad}");
    assert!(
        bad.contains("\"Bad Manifest\" is not an identifier"),
        "{bad}"
    );
    assert!(bad.contains("duplicate operation \"same\""), "{bad}");
    assert!(
        bad.contains("incompatible plugin-api version 9.0.0"),
        "{bad}"
    );
    let RefusalReason::AbiMismatch(mismatch) = refusal_for(&rt, "abi_mismatch") else {
        panic!(
            "not an ABI mismatch: {:?}",
            refusal_for(&rt, "abi_mismatch")
        );
    };
    assert_eq!(mismatch.more, 0);
    let abi = reason_for(&rt, "abi_mismatch");
    assert_eq!(
        abi,
        "ABI layout mismatch with this host: mismatched package \
         (expected devext-plugin-api, found devext-fixture-abi-mismatch)"
    );
    // Every meta-schema error is listed, with its place in the schema.
    assert!(bad.contains("device config schema at /type"), "{bad}");
    assert!(bad.contains("device config schema at /required"), "{bad}");
    for r in rt.refused() {
        assert!(matches!(r.source, RefusedSource::File(_)), "{:?}", r.source);
        assert!(
            !r.reason.to_string().contains('\n'),
            "one line: {}",
            r.reason
        );
    }
}

#[test]
fn a_missing_directory_is_refused_not_fatal() {
    let rt = Runtime::load(RuntimeConfig {
        plugin_dirs: vec!["/nonexistent/devext-plugins".into()],
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert!(rt.plugin("echo").is_some(), "static plugins still load");
    let refusal = &rt.refused()[0];
    assert_eq!(
        refusal.source,
        RefusedSource::Directory("/nonexistent/devext-plugins".into())
    );
    assert!(matches!(
        refusal.reason,
        RefusalReason::UnreadableDirectory { .. }
    ));
    assert!(
        refusal
            .reason
            .to_string()
            .starts_with("cannot read plugin directory /nonexistent/devext-plugins: ")
    );
}

#[test]
fn each_file_is_loaded_on_its_own() {
    // Two different libraries in one directory: both load as themselves (abi_stable's
    // per-type cache would hand back the first one twice).
    let (rt, _dir) = util::dynamic_runtime(&["devext-echo", "devext-fixture-hang"]);
    assert_eq!(rt.plugin_names(), vec!["echo", "fixture_hang"]);
}

#[test]
fn a_dynamic_plugin_replaces_a_static_one_and_a_second_dynamic_one_is_refused() {
    let first = util::plugin_dir(&["devext-echo"]);
    let second = util::plugin_dir(&["devext-echo"]);
    let rt = Runtime::load(RuntimeConfig {
        plugin_dirs: vec![first.path().to_owned(), second.path().to_owned()],
        static_plugins: true,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let echo = rt.plugin("echo").unwrap();
    assert_eq!(
        echo.source(),
        &PluginSource::File(first.path().join("libdevext_echo.so"))
    );
    assert_eq!(rt.notices().len(), 1);
    assert!(rt.notices()[0].contains("replaces the static plugin"));
    let refused = reason_for(&rt, &second.path().to_string_lossy());
    assert!(
        refused.contains("a plugin named echo is already loaded from"),
        "{refused}"
    );
    assert!(matches!(
        refusal_for(&rt, &second.path().to_string_lossy()),
        RefusalReason::DuplicateName { name, loaded_from: PluginSource::File(first_path) }
            if name == "echo" && first_path == &first.path().join("libdevext_echo.so")
    ));
}

#[test]
fn static_plugins_are_registered_through_inventory() {
    let rt = Runtime::load(RuntimeConfig::default()).unwrap();
    let echo = rt.plugin("echo").expect("static echo");
    assert_eq!(echo.source(), &PluginSource::Static);
    assert_eq!(echo.manifest().operations.len(), 4);
}

#[test]
fn load_file_checks_one_library() {
    let ok = devext_host::loader::load_file(&util::library("devext-echo")).unwrap();
    assert_eq!(ok.name(), "echo");
    let err = devext_host::loader::load_file(&util::library("devext-fixture-no-root")).unwrap_err();
    assert!(matches!(err, RefusalReason::NoRootModule), "{err:?}");
    assert!(
        err.to_string().starts_with("no devext root module"),
        "{err}"
    );
    let missing = std::path::Path::new("/nonexistent/libx.so");
    let err = devext_host::loader::load_file(missing).unwrap_err();
    assert_eq!(err.to_string(), "/nonexistent/libx.so is not a file");
    // What `devext plugins check README.md` says: plugins are Linux (ELF) libraries for now.
    let dir = tempfile::tempdir().unwrap();
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# A plugin\n\nBuild it with cargo.\n").unwrap();
    let err = devext_host::loader::load_file(&readme)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("not a loadable shared library"), "{err}");
    assert!(
        err.contains("devext plugins are Linux shared libraries (ELF *.so) for now"),
        "{err}"
    );
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let e = Runtime::load(RuntimeConfig {
        call_timeout: std::time::Duration::ZERO,
        ..RuntimeConfig::default()
    })
    .unwrap_err();
    assert_eq!(e, ConfigError::ZeroCallTimeout);
    assert_eq!(e.to_string(), "the call timeout must be longer than zero");
    let e = Runtime::load(RuntimeConfig {
        egress: devext_host::egress::EgressConfig {
            max_response_bytes: 0,
            ..Default::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap_err();
    assert_eq!(e, ConfigError::ZeroResponseCap);
}

#[test]
fn a_directory_without_plugins_is_a_notice() {
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README.md"), "not a plugin").unwrap();
    let full = util::plugin_dir(&["devext-echo"]);
    let rt = Runtime::load(RuntimeConfig {
        plugin_dirs: vec![empty.path().to_owned(), full.path().to_owned()],
        static_plugins: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert!(rt.plugin("echo").is_some());
    assert_eq!(
        rt.notices(),
        [format!(
            "no plugins found in {} (no *.so file)",
            empty.path().display()
        )]
    );
    assert!(rt.refused().is_empty(), "{:?}", rt.refused());
}
