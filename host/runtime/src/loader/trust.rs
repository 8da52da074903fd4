//! Whether a plugin directory and its libraries may be loaded at all: who owns them, who may
//! write them, and (optionally) whether each library is the one pinned in the directory's lock
//! file.
//!
//! Loading a library runs its code with the host's rights, so a file someone else could have
//! replaced is refused before it is opened: a directory or library writable by every user, or
//! owned by a user other than root or the one running the host. A directory may also hold a
//! lock file ([`LOCK_FILE`], written by `devext plugins lock DIR`) that pins the SHA-256 of
//! each library: a library missing from it, or whose digest differs, is refused too.
//!
//! The lock file is in `sha256sum`'s format (`<64 hex digits>  <file name>` per line), so
//! `cd DIR && sha256sum -c plugins.lock` checks it as well.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The lock file's name inside a plugin directory.
pub const LOCK_FILE: &str = "plugins.lock";

/// Why a plugin directory, a library or a lock file is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustProblem {
    /// Every user may write it (`o+w`): anyone could replace the plugin.
    WorldWritable {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Whether it is a directory.
        is_dir: bool,
    },
    /// Owned by a user other than root or the one running the host.
    ForeignOwner {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user running the host.
        service_user: u32,
    },
    /// Its owner and mode could not be read.
    Unreadable {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error, as text.
        error: String,
    },
    /// The directory has a lock file that does not list this library.
    NotLocked {
        /// The library's file name.
        file: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// The library's SHA-256 is not the one its directory's lock file pins.
    DigestMismatch {
        /// The library's file name.
        file: String,
        /// The lock file.
        lock: PathBuf,
        /// The pinned digest (hex).
        pinned: String,
        /// The library's digest (hex).
        actual: String,
    },
    /// The lock file cannot be read or has a line that is not `<sha256>  <file name>`.
    BadLock {
        /// The lock file.
        lock: PathBuf,
        /// Its 1-based line, for a malformed line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for TrustProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustProblem::WorldWritable { path, mode, is_dir } => {
                let what = if *is_dir { "directory" } else { "library" };
                write!(
                    f,
                    "the plugin {what} {} is writable by every user (mode {:04o}), so anyone \
                     could replace {}; fix: chmod o-w {}",
                    path.display(),
                    mode & 0o7777,
                    if *is_dir { "its plugins" } else { "it" },
                    shell_quote(path)
                )
            }
            TrustProblem::ForeignOwner {
                path,
                owner,
                service_user,
            } => {
                write!(
                    f,
                    "{} is owned by uid {owner}, who is neither root nor the user running \
                     devext (uid {service_user}); fix: chown ",
                    path.display()
                )?;
                if *service_user == 0 {
                    write!(f, "root {}", shell_quote(path))
                } else {
                    write!(f, "{service_user} {} (or root)", shell_quote(path))
                }
            }
            TrustProblem::Unreadable { path, error } => write!(
                f,
                "cannot read the owner and mode of {}: {error}",
                path.display()
            ),
            TrustProblem::NotLocked { file, lock } => write!(
                f,
                "{file} is not pinned in the lock file {}; if it is meant to be loaded, run \
                 `devext plugins lock {}` again",
                lock.display(),
                shell_quote(lock.parent().unwrap_or(Path::new(".")))
            ),
            TrustProblem::DigestMismatch {
                file,
                lock,
                pinned,
                actual,
            } => write!(
                f,
                "{file} has SHA-256 {actual}, but the lock file {} pins {pinned}: the library \
                 changed since it was locked; if the new one is intended, run `devext plugins \
                 lock {}` again",
                lock.display(),
                shell_quote(lock.parent().unwrap_or(Path::new(".")))
            ),
            TrustProblem::BadLock {
                lock,
                line,
                message,
            } => {
                write!(f, "lock file {}", lock.display())?;
                if let Some(line) = line {
                    write!(f, " line {line}")?;
                }
                write!(
                    f,
                    ": {message} (rewrite it with `devext plugins lock {}`)",
                    shell_quote(lock.parent().unwrap_or(Path::new(".")))
                )
            }
        }
    }
}

/// `path` for a shell command line: as is when it is plain, else in single quotes.
fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
    if plain {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The effective uid of this process (from `/proc/self/status`; plugins are Linux-only).
/// `None` if it cannot be read: then only root-owned files are trusted.
pub fn service_user() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Real, effective, saved, file system.
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The problems of a file or directory with this owner and mode, for a host run by
/// `service_user`. Empty: trusted.
pub fn owner_and_mode_problems(
    path: &Path,
    is_dir: bool,
    owner: u32,
    mode: u32,
    service_user: Option<u32>,
) -> Vec<TrustProblem> {
    let mut problems = Vec::new();
    if owner != 0 && Some(owner) != service_user {
        problems.push(TrustProblem::ForeignOwner {
            path: path.to_owned(),
            owner,
            service_user: service_user.unwrap_or(0),
        });
    }
    if mode & 0o002 != 0 {
        problems.push(TrustProblem::WorldWritable {
            path: path.to_owned(),
            mode,
            is_dir,
        });
    }
    problems
}

/// Checks the owner and mode of `path` (following symbolic links: the file that would be
/// loaded).
pub fn check_owner_and_mode(path: &Path, service_user: Option<u32>) -> Vec<TrustProblem> {
    match std::fs::metadata(path) {
        Ok(m) => owner_and_mode_problems(
            path,
            m.is_dir(),
            m.uid(),
            m.permissions().mode(),
            service_user,
        ),
        Err(e) => vec![TrustProblem::Unreadable {
            path: path.to_owned(),
            error: e.to_string(),
        }],
    }
}

/// A directory's lock file, read: file name → SHA-256 (lowercase hex).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// The lock file.
    pub path: PathBuf,
    /// Each pinned library's digest by file name.
    pub digests: BTreeMap<String, String>,
}

impl Lock {
    /// Reads `dir`'s lock file: `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Lock>, TrustProblem> {
        let path = dir.join(LOCK_FILE);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(TrustProblem::BadLock {
                    lock: path,
                    line: None,
                    message: format!("cannot read it: {e}"),
                });
            }
        };
        Lock::parse(path, &text).map(Some)
    }

    /// Parses the text of the lock file at `path`.
    pub fn parse(path: PathBuf, text: &[u8]) -> Result<Lock, TrustProblem> {
        let bad = |line: usize, message: String| TrustProblem::BadLock {
            lock: path.clone(),
            line: Some(line),
            message,
        };
        let Ok(text) = std::str::from_utf8(text) else {
            return Err(TrustProblem::BadLock {
                lock: path.clone(),
                line: None,
                message: "not UTF-8 text".to_owned(),
            });
        };
        let mut digests = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            // `<digest>  <name>` (text mode) or `<digest> *<name>` (binary mode).
            let (digest, name) = match line.split_once(' ') {
                Some((d, rest)) => (d, rest.strip_prefix([' ', '*']).unwrap_or(rest)),
                None => {
                    return Err(bad(n, "expected `<sha256>  <file name>`".to_owned()));
                }
            };
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(n, "the digest is not 64 hexadecimal digits".to_owned()));
            }
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(bad(
                    n,
                    format!("{name:?} is not a file name in the directory"),
                ));
            }
            if digests
                .insert(name.to_owned(), digest.to_ascii_lowercase())
                .is_some()
            {
                return Err(bad(n, format!("{name} is pinned twice")));
            }
        }
        Ok(Lock { path, digests })
    }

    /// Checks the library at `path` (its file name is the key) against the lock.
    pub fn check(&self, path: &Path) -> Result<(), TrustProblem> {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(pinned) = self.digests.get(&file) else {
            return Err(TrustProblem::NotLocked {
                file,
                lock: self.path.clone(),
            });
        };
        let actual = sha256_file(path).map_err(|e| TrustProblem::Unreadable {
            path: path.to_owned(),
            error: e.to_string(),
        })?;
        if &actual != pinned {
            return Err(TrustProblem::DigestMismatch {
                file,
                lock: self.path.clone(),
                pinned: pinned.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// The SHA-256 of the file at `path`, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    Ok(hex)
}

/// Writes `dir`'s lock file pinning every library ([`super::library_files`]) in it, replacing
/// the old one atomically (a temporary file renamed over it). Returns the pins written, by
/// file name. Refuses (writing nothing) a directory or library that fails the owner and mode
/// checks: pinning a file anyone can replace proves nothing.
pub fn write_lock(dir: &Path) -> Result<Lock, LockError> {
    let user = service_user();
    let mut problems = check_owner_and_mode(dir, user);
    let files = super::library_files(dir).map_err(|e| LockError::Io(e.to_string()))?;
    for file in &files {
        problems.extend(check_owner_and_mode(file, user));
    }
    if !problems.is_empty() {
        return Err(LockError::Untrusted(problems));
    }
    let mut digests = BTreeMap::new();
    for file in &files {
        let digest = sha256_file(file)
            .map_err(|e| LockError::Io(format!("cannot read {}: {e}", file.display())))?;
        let name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            LockError::Io(format!("{} has a name that is not UTF-8", file.display()))
        })?;
        if name.contains(['\n', '\r']) || name.starts_with('#') {
            return Err(LockError::Io(format!(
                "{} has a name the lock file cannot hold",
                file.display()
            )));
        }
        digests.insert(name.to_owned(), digest);
    }
    let mut text = String::new();
    for (name, digest) in &digests {
        text.push_str(&format!("{digest}  {name}\n"));
    }
    let path = dir.join(LOCK_FILE);
    let tmp = dir.join(format!(".{LOCK_FILE}.tmp"));
    let write = || -> io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(LockError::Io(format!(
            "cannot write {}: {e}",
            path.display()
        )));
    }
    Ok(Lock { path, digests })
}

/// Why `devext plugins lock` wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The directory or a library fails the owner and mode checks.
    #[error("{}", join(.0))]
    Untrusted(Vec<TrustProblem>),
    /// Reading the directory or a library, or writing the lock, failed.
    #[error("{0}")]
    Io(String),
}

fn join(problems: &[TrustProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What [`check_directory`] found: the lock, if the directory has one.
#[derive(Debug)]
pub(crate) struct TrustedDirectory {
    pub(crate) lock: Option<Lock>,
}

impl TrustedDirectory {
    /// The libraries its lock file pins that are not among `files` (as paths, for notices).
    pub(crate) fn missing(&self, files: &[PathBuf]) -> Vec<String> {
        let Some(lock) = &self.lock else {
            return Vec::new();
        };
        let dir = lock.path.parent().unwrap_or(Path::new(""));
        lock.digests
            .keys()
            .filter(|name| !files.iter().any(|f| f.file_name() == Some(name.as_ref())))
            .map(|name| dir.join(name).display().to_string())
            .collect()
    }
}

/// Checks a plugin directory before its libraries are listed: its owner and mode, and its lock
/// file's (when it has one), which is read.
pub(crate) fn check_directory(
    dir: &Path,
    service_user: Option<u32>,
) -> Result<TrustedDirectory, Vec<TrustProblem>> {
    if std::fs::metadata(dir).is_err() {
        // Nothing in it can load: listing it reports why (`UnreadableDirectory`).
        return Ok(TrustedDirectory { lock: None });
    }
    let mut problems = check_owner_and_mode(dir, service_user);
    if !problems.is_empty() {
        return Err(problems);
    }
    let lock_path = dir.join(LOCK_FILE);
    if lock_path.exists() {
        problems.extend(check_owner_and_mode(&lock_path, service_user));
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    let lock = Lock::read(dir).map_err(|p| vec![p])?;
    Ok(TrustedDirectory { lock })
}

/// Checks one library of a checked directory before it is opened.
pub(crate) fn check_library(
    path: &Path,
    dir: &TrustedDirectory,
    service_user: Option<u32>,
) -> Result<(), Vec<TrustProblem>> {
    let problems = check_owner_and_mode(path, service_user);
    if !problems.is_empty() {
        return Err(problems);
    }
    match &dir.lock {
        Some(lock) => lock.check(path).map_err(|p| vec![p]),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_other_than_root_or_the_service_are_refused() {
        let p = Path::new("/srv/plugins/libx.so");
        assert!(owner_and_mode_problems(p, false, 0, 0o644, Some(1000)).is_empty());
        assert!(owner_and_mode_problems(p, false, 1000, 0o755, Some(1000)).is_empty());
        // Group-writable is the group's business (umask 002 is common), not refused.
        assert!(owner_and_mode_problems(p, false, 1000, 0o775, Some(1000)).is_empty());
        let found = owner_and_mode_problems(p, false, 1001, 0o644, Some(1000));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].to_string(),
            "/srv/plugins/libx.so is owned by uid 1001, who is neither root nor the user \
             running devext (uid 1000); fix: chown 1000 /srv/plugins/libx.so (or root)"
        );
        // Unknown service user: only root is trusted.
        assert_eq!(
            owner_and_mode_problems(p, false, 1000, 0o644, None).len(),
            1
        );
    }

    #[test]
    fn world_writable_files_and_directories_are_refused_with_the_chmod_to_run() {
        let found =
            owner_and_mode_problems(Path::new("/srv/my plugins"), true, 0, 0o40777, Some(0));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "the plugin directory /srv/my plugins is writable by every user (mode 0777), so \
             anyone could replace its plugins; fix: chmod o-w '/srv/my plugins'"
        );
        let both = owner_and_mode_problems(Path::new("/p/l.so"), false, 7, 0o646, Some(0));
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(
            both[0].to_string().ends_with("fix: chown root /p/l.so"),
            "{}",
            both[0]
        );
        assert!(
            both[1].to_string().ends_with("fix: chmod o-w /p/l.so"),
            "{}",
            both[1]
        );
    }

    #[test]
    fn lock_files_parse_in_sha256sum_format_and_bad_lines_are_named() {
        let d = "ab".repeat(32);
        let text = format!("# pins\n{d}  liba.so\n\n{} *libb.so\n", "CD".repeat(32));
        let lock = Lock::parse(PathBuf::from("/p/plugins.lock"), text.as_bytes()).unwrap();
        assert_eq!(lock.digests.len(), 2);
        assert_eq!(lock.digests["liba.so"], d);
        assert_eq!(lock.digests["libb.so"], "cd".repeat(32));

        let bad = |text: &str| {
            Lock::parse(PathBuf::from("/p/plugins.lock"), text.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(&format!("{d}  liba.so\nabc  libb.so\n")),
            "lock file /p/plugins.lock line 2: the digest is not 64 hexadecimal digits \
             (rewrite it with `devext plugins lock /p`)"
        );
        assert!(
            bad(&format!("{d}  ../liba.so")).contains("line 1: \"../liba.so\" is not a file name")
        );
        assert!(bad(&format!("{d}  a.so\n{d}  a.so")).contains("line 2: a.so is pinned twice"));
        assert!(bad("nospace").contains("line 1: expected"));
    }

    #[test]
    fn shell_quoting_keeps_plain_paths_plain() {
        assert_eq!(shell_quote(Path::new("/usr/lib/devext")), "/usr/lib/devext");
        assert_eq!(shell_quote(Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }
}
