//! `devext plugins lock DIR`: pins the SHA-256 of each plugin library of a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use devext_host::loader::trust;

/// What `devext plugins check` says first (on stderr): loading is running.
pub(crate) const CHECK_RUNS_CODE: &str = "devext: note: checking a plugin loads it, which runs \
     the library's initialisers (its code, with your rights): check only files you would run";

#[derive(Args)]
pub(crate) struct LockArgs {
    /// The plugin directory (as given to --plugins)
    dir: PathBuf,
}

/// Writes `DIR/plugins.lock`; exit 1, writing nothing, if the directory or a library may be
/// replaced by another user (the owner and mode checks of the loader).
pub(crate) fn lock(args: &LockArgs) -> ExitCode {
    match trust::write_lock(&args.dir) {
        Ok(lock) => {
            for (name, digest) in &lock.digests {
                println!("{digest}  {name}");
            }
            let n = lock.digests.len();
            println!(
                "wrote {} ({n} {}); check it with: cd {} && sha256sum -c {}",
                lock.path.display(),
                if n == 1 { "library" } else { "libraries" },
                args.dir.display(),
                trust::LOCK_FILE
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("devext: error: nothing written: {e}");
            ExitCode::FAILURE
        }
    }
}
