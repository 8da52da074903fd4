//! Plugin trust: directories and libraries another user could replace are refused with the
//! command that fixes them; a lock file pins each library's SHA-256.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use devext_host::loader::trust::{self, LOCK_FILE, TrustProblem};
use devext_host::{RefusalReason, RefusedSource, Runtime, RuntimeConfig};

use crate::util;

const ECHO: &str = "libdevext_echo.so";

fn load(dir: &Path) -> Runtime {
    Runtime::load(RuntimeConfig {
        plugin_dirs: vec![dir.to_owned()],
        static_plugins: false,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// Replaces the file at `path` with `bytes` as a new file (renamed over it): a library this
/// process loaded stays mapped, and must never change under it.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The trust problems of the only refusal.
fn only_problems(rt: &Runtime) -> (&RefusedSource, &[TrustProblem]) {
    assert_eq!(rt.refused().len(), 1, "{:?}", rt.refused());
    let r = &rt.refused()[0];
    match &r.reason {
        RefusalReason::Untrusted { problems } => (&r.source, problems),
        other => panic!("not a trust refusal: {other}"),
    }
}

#[test]
fn a_world_writable_library_is_refused_with_the_chmod_that_fixes_it() {
    let dir = util::plugin_dir(&["devext-echo"]);
    let lib = dir.path().join(ECHO);
    chmod(&lib, 0o757);
    let rt = load(dir.path());
    assert!(rt.plugin_names().is_empty());
    let (source, problems) = only_problems(&rt);
    assert_eq!(source, &RefusedSource::File(lib.clone()));
    assert!(
        matches!(
            problems,
            [TrustProblem::WorldWritable { is_dir: false, .. }]
        ),
        "{problems:?}"
    );
    let line = rt.refused()[0].reason.to_string();
    assert!(
        line.starts_with("not trusted: the plugin library "),
        "{line}"
    );
    assert!(line.contains("(mode 0757)"), "{line}");
    assert!(
        line.ends_with(&format!("fix: chmod o-w {}", lib.display())),
        "{line}"
    );

    // Running the fix makes it load.
    chmod(&lib, 0o755);
    assert_eq!(load(dir.path()).plugin_names(), vec!["echo"]);
}

#[test]
fn a_world_writable_directory_loads_nothing() {
    let dir = util::plugin_dir(&["devext-echo"]);
    chmod(dir.path(), 0o777);
    let rt = load(dir.path());
    assert!(rt.plugin_names().is_empty());
    let (source, problems) = only_problems(&rt);
    assert_eq!(source, &RefusedSource::Directory(dir.path().to_owned()));
    assert!(matches!(
        problems,
        [TrustProblem::WorldWritable { is_dir: true, .. }]
    ));
    let line = rt.refused()[0].reason.to_string();
    assert!(line.contains("the plugin directory"), "{line}");
    assert!(
        line.ends_with(&format!("fix: chmod o-w {}", dir.path().display())),
        "{line}"
    );
    chmod(dir.path(), 0o700);
}

/// Changing a file's owner needs root: as another user, this test checks nothing and says so
/// (the rule itself is unit-tested in `loader::trust`), except under CI, where it fails.
#[test]
fn a_library_owned_by_another_user_is_refused_with_the_chown_that_fixes_it() {
    if trust::service_user() != Some(0) {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root to chown a file"
        );
        eprintln!("skipped: not running as root (chown needs it)");
        return;
    }
    let dir = util::plugin_dir(&["devext-echo"]);
    let lib = dir.path().join(ECHO);
    std::os::unix::fs::chown(&lib, Some(4242), None).unwrap();
    let rt = load(dir.path());
    assert!(rt.plugin_names().is_empty());
    let (_, problems) = only_problems(&rt);
    assert!(
        matches!(
            problems,
            [TrustProblem::ForeignOwner {
                owner: 4242,
                service_user: 0,
                ..
            }]
        ),
        "{problems:?}"
    );
    let line = rt.refused()[0].reason.to_string();
    assert!(line.contains("is owned by uid 4242"), "{line}");
    assert!(
        line.ends_with(&format!("fix: chown root {}", lib.display())),
        "{line}"
    );

    // The same for the directory.
    std::os::unix::fs::chown(&lib, Some(0), None).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(4242), None).unwrap();
    let rt = load(dir.path());
    let (source, _) = only_problems(&rt);
    assert_eq!(source, &RefusedSource::Directory(dir.path().to_owned()));
    std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();
    assert_eq!(load(dir.path()).plugin_names(), vec!["echo"]);
}

#[test]
fn a_lock_file_round_trips_and_refuses_changed_or_unpinned_libraries() {
    let dir = util::plugin_dir(&["devext-echo"]);
    let lib = dir.path().join(ECHO);
    let lock = trust::write_lock(dir.path()).unwrap();
    let digest = trust::sha256_file(&lib).unwrap();
    assert_eq!(lock.digests.len(), 1);
    assert_eq!(lock.digests[ECHO], digest);
    let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
    assert_eq!(text, format!("{digest}  {ECHO}\n"), "sha256sum's format");
    assert_eq!(trust::Lock::read(dir.path()).unwrap(), Some(lock));
    assert_eq!(load(dir.path()).plugin_names(), vec!["echo"]);

    // A changed library: refused, naming both digests.
    let mut bytes = std::fs::read(&lib).unwrap();
    bytes.extend_from_slice(b"appended");
    replace(&lib, &bytes);
    let rt = load(dir.path());
    assert!(rt.plugin_names().is_empty());
    let (_, problems) = only_problems(&rt);
    let [TrustProblem::DigestMismatch { pinned, actual, .. }] = problems else {
        panic!("{problems:?}");
    };
    assert_eq!(pinned, &digest);
    assert_eq!(actual, &trust::sha256_file(&lib).unwrap());
    let line = rt.refused()[0].reason.to_string();
    assert!(
        line.contains(&format!(
            "run `devext plugins lock {}` again",
            dir.path().display()
        )),
        "{line}"
    );

    // Re-locking accepts the new file; a library added later is not pinned.
    replace(&lib, &std::fs::read(util::library("devext-echo")).unwrap());
    trust::write_lock(dir.path()).unwrap();
    replace(
        &dir.path().join("libother.so"),
        &std::fs::read(&lib).unwrap(),
    );
    let rt = load(dir.path());
    assert_eq!(rt.plugin_names(), vec!["echo"]);
    let (source, problems) = only_problems(&rt);
    assert_eq!(source, &RefusedSource::File(dir.path().join("libother.so")));
    assert!(
        matches!(problems, [TrustProblem::NotLocked { .. }]),
        "{problems:?}"
    );

    // A pinned library that is gone is a notice.
    std::fs::remove_file(dir.path().join("libother.so")).unwrap();
    trust::write_lock(dir.path()).unwrap();
    std::fs::remove_file(&lib).unwrap();
    let rt = load(dir.path());
    assert!(
        rt.notices()
            .iter()
            .any(|n| n.contains(ECHO) && n.contains("missing")),
        "{:?}",
        rt.notices()
    );
}

#[test]
fn a_malformed_or_world_writable_lock_file_refuses_the_directory() {
    let dir = util::plugin_dir(&["devext-echo"]);
    let lock = dir.path().join(LOCK_FILE);
    std::fs::write(&lock, "not a digest  libdevext_echo.so\n").unwrap();
    let rt = load(dir.path());
    assert!(rt.plugin_names().is_empty());
    let (source, problems) = only_problems(&rt);
    assert_eq!(source, &RefusedSource::Directory(dir.path().to_owned()));
    assert!(
        matches!(problems, [TrustProblem::BadLock { line: Some(1), .. }]),
        "{problems:?}"
    );

    trust::write_lock(dir.path()).unwrap();
    chmod(&lock, 0o666);
    let rt = load(dir.path());
    let (_, problems) = only_problems(&rt);
    assert!(
        matches!(problems, [TrustProblem::WorldWritable { .. }]),
        "{problems:?}"
    );
}

#[test]
fn locking_an_untrusted_directory_writes_nothing() {
    let dir = util::plugin_dir(&["devext-echo"]);
    chmod(&dir.path().join(ECHO), 0o666);
    let err = trust::write_lock(dir.path()).unwrap_err();
    assert!(err.to_string().contains("chmod o-w"), "{err}");
    assert!(!dir.path().join(LOCK_FILE).exists());
}
