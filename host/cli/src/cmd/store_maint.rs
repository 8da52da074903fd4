//! `devext store backup | restore | rotate-key`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;
use devext_service::crypto::{SECRET_KEY_ENV, SecretKey};
use devext_service::store::SqliteStore;
use devext_service::store::maintenance::{backup_sqlite, restore_sqlite};
use devext_service::store::postgres::{is_postgres_url, redacted};

use super::serve::{open_store, store_key, tokio};

/// What to do instead for a PostgreSQL store.
fn postgres_instead(db: &str, what: &str) -> anyhow::Error {
    anyhow!(
        "{}: a PostgreSQL store is {what} with PostgreSQL's own tools: `pg_dump --format=custom \
         --file devext.dump URL` (online, one consistent snapshot) and `pg_restore --dbname URL \
         --no-owner devext.dump` into an empty database. The dump holds no secret key: keep \
         the key ({SECRET_KEY_ENV} or --secret-key-file) apart; the restored database starts \
         with that key only (see README, \"Backups\")",
        redacted(db)
    )
}

/// `devext store backup --db DB --out FILE`.
#[derive(Args)]
pub(crate) struct BackupArgs {
    /// The SQLite store to back up (it may be serving)
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
    /// The backup file to write (must not exist)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub(crate) fn backup(args: &BackupArgs) -> Result<ExitCode> {
    let db = args.db.to_string_lossy();
    if is_postgres_url(&db) {
        return Err(postgres_instead(&db, "backed up"));
    }
    let contents = backup_sqlite(&args.db, &args.out).map_err(|e| anyhow!("{e}"))?;
    println!(
        "backed up {} to {}: {contents}",
        args.db.display(),
        args.out.display()
    );
    println!(
        "the backup holds no secret key: keep the store's key ({}, or the {SECRET_KEY_ENV} / \
         --secret-key-file it runs with) apart from it; a restored store starts with that key only",
        SqliteStore::key_file_for(&args.db).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `devext store restore --from FILE --db DB [--force]`.
#[derive(Args)]
pub(crate) struct RestoreArgs {
    /// The backup (written by `devext store backup`)
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The SQLite store to write (stop every service using it first)
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
    /// Replace a store that holds data
    #[arg(long)]
    force: bool,
}

pub(crate) fn restore(args: &RestoreArgs) -> Result<ExitCode> {
    let db = args.db.to_string_lossy();
    if is_postgres_url(&db) {
        return Err(postgres_instead(&db, "restored"));
    }
    let key = store_key()?;
    let done = restore_sqlite(&args.from, &args.db, args.force, key.as_ref())
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "restored {} to {}: {}",
        args.from.display(),
        args.db.display(),
        done.contents
    );
    let key_file = SqliteStore::key_file_for(&args.db);
    if done.checked {
        println!("the secret key at hand opens it");
    }
    if key.is_none() && !key_file.exists() {
        println!(
            "start it with its original secret key: put the key file at {} (mode 0600), or set \
             {SECRET_KEY_ENV} or --secret-key-file; without it the store does not start",
            key_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `devext store rotate-key --db DB --new-key-file FILE`.
#[derive(Args)]
pub(crate) struct RotateKeyArgs {
    /// The store (SQLite file or postgres:// URL); its current key: its key file,
    /// DEVEXT_SECRET_KEY or --secret-key-file
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
    /// The new key (64 hex digits); created (mode 0600) with a random key if it does not exist
    #[arg(long, value_name = "FILE")]
    new_key_file: PathBuf,
}

/// Replaces `path` by a file holding `key` (mode 0600), atomically.
fn replace_key_file(path: &Path, key: &SecretKey) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".new");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    key.create_file(&partial)?;
    std::fs::rename(&partial, path)
        .map_err(|e| anyhow!("cannot replace {}: {e}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| anyhow!("cannot flush {}: {e}", dir.display()))?;
    }
    Ok(())
}

pub(crate) fn rotate_key(args: &RotateKeyArgs) -> Result<ExitCode> {
    let db = args.db.to_string_lossy().into_owned();
    let postgres = is_postgres_url(&db);
    if !postgres && !args.db.is_file() {
        return Err(anyhow!("--db {}: no store there", args.db.display()));
    }
    let given = store_key()?;
    // The key file beside an SQLite store is replaced once the rotation committed.
    let beside = (!postgres && given.is_none()).then(|| SqliteStore::key_file_for(&args.db));
    let new = if args.new_key_file.exists() {
        SecretKey::read(&args.new_key_file)?
    } else {
        let k = SecretKey::generate()?;
        k.create_file(&args.new_key_file)?;
        println!("wrote a new random key to {}", args.new_key_file.display());
        k
    };
    tokio()?.block_on(async {
        let store = open_store(&args.db).await?;
        let done = store
            .rotate_key(&new)
            .await
            .map_err(|e| anyhow!("{}: {e}", redacted(&db)))?;
        println!(
            "re-encrypted the secrets of {} extension settings and the key's check value of {} \
             under the key in {}; the old key no longer opens it",
            done.secrets,
            redacted(&db),
            args.new_key_file.display()
        );
        Ok::<_, anyhow::Error>(())
    })?;
    match beside {
        Some(file) => {
            replace_key_file(&file, &new)?;
            println!(
                "{} now holds the new key; restart the service",
                file.display()
            );
        }
        None => println!(
            "start every replica with the new key ({SECRET_KEY_ENV} or --secret-key-file {}): \
             until restarted, running ones refuse to write secrets",
            args.new_key_file.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
