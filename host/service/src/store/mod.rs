//! Storage of organisations, API keys, extension settings, devices (and their lookup index), the
//! audit log and idempotency records.
//!
//! [`Store`] is the seam: the service only talks to it. [`SqliteStore`] is the embedded backend
//! (sqlx; versioned migrations in `host/service/migrations/`; SQLite's SQL: `?` placeholders,
//! `instr`, SQLite's type affinity). [`PgStore`] is the backend for several replicas on one
//! PostgreSQL (its own SQL and migrations in `host/service/migrations/postgres/`). [`AnyStore`]
//! is the one the service runs on: an enum over both, chosen by the database's name
//! ([`AnyStore::open`]). Every write is one transaction: a failure leaves the previous state.
//!
//! The store knows nothing of plugins: the lookup index entries of a device come from the caller
//! (the service derives them from the plugins' manifests, see [`crate::lookup`]).

use std::future::Future;
use std::path::PathBuf;

use serde_json::Value;

use crate::crypto::CryptoError;

mod any;
pub mod copy;
mod inline;
pub mod jobs;
mod model;
pub mod pg_limiter;
pub mod postgres;
mod sqlite;

pub use any::AnyStore;
pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing exists already (e.g. an org name).
    #[error("{0}")]
    Conflict(String),
    /// A device lookup value (unique within an org) belongs to another device.
    #[error("{}: device {owner} of this organisation has this value already", .entry.pointer())]
    LookupTaken {
        /// The value that is taken.
        entry: LookupEntry,
        /// The device that has it.
        owner: String,
    },
    /// A write conditioned on an entity tag (`If-Match`) found the record changed since.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A reference to something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A PostgreSQL store needs its secret key given (there is no key file beside it).
    #[error(
        "storage failure: a PostgreSQL store needs its secret key: set {} (64 hex digits) or \
         pass --secret-key-file PATH; every replica needs the same key",
        crate::crypto::SECRET_KEY_ENV
    )]
    KeyRequired,
    /// The store exists but its secret key is nowhere to be found.
    #[error(
        "storage failure: the store {} exists but its secret key is missing (expected {} or {})",
        .db.display(), .key_file.display(), crate::crypto::SECRET_KEY_ENV
    )]
    KeyMissing {
        /// The database.
        db: PathBuf,
        /// Where its key file should be.
        key_file: PathBuf,
    },
    /// A key file without its database: never reused or replaced.
    #[error(
        "storage failure: {} already exists without its database; refusing to reuse or replace it",
        .0.display()
    )]
    OrphanKeyFile(PathBuf),
    /// The key opens nothing of this store (its stored check value).
    #[error("storage failure: the secret key does not belong to this store")]
    WrongKey,
    /// The secret key, randomness or encryption failed.
    #[error("storage failure: {0}")]
    Crypto(#[from] CryptoError),
    /// The database failed (connection, statement, migration).
    #[error("storage failure: {0}")]
    Database(String),
    /// Stored data that cannot be read back (not JSON, an unknown role, a corrupt record).
    #[error("storage failure: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Whether an `If-Match` value (one tag, a list, or `*`) matches `current`.
pub fn etag_matches(if_match: &str, current: &str) -> bool {
    if_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == current)
}

/// The precondition of a settings write: `current` (`None`: none stored) must match.
pub(crate) fn check_extension_etag(
    plugin: &str,
    if_match: &str,
    current: Option<&str>,
) -> Result<()> {
    match current {
        Some(c) if etag_matches(if_match, c) => Ok(()),
        Some(c) => Err(StoreError::PreconditionFailed(format!(
            "the settings for {plugin} were changed by someone else since they were read (their \
             ETag is now {c}): reload them and make the change again"
        ))),
        None => Err(StoreError::PreconditionFailed(format!(
            "the settings for {plugin} were deleted or never stored: reload them"
        ))),
    }
}

/// A store operation's result.
pub type Result<T> = std::result::Result<T, StoreError>;

/// What the service needs from storage.
/// (Bulk jobs are stored by every store: [`jobs::JobStore`].)
pub trait Store: jobs::JobStore + Send + Sync + 'static {
    /// Creates an org; `Conflict` if the name is taken.
    fn create_org(&self, name: &str) -> impl Future<Output = Result<Org>> + Send;
    /// The org called `name`.
    fn org_by_name(&self, name: &str) -> impl Future<Output = Result<Option<Org>>> + Send;
    /// Every org, by name, with its counts.
    fn orgs(&self) -> impl Future<Output = Result<Vec<OrgSummary>>> + Send;
    /// How many devices (of every org) have a part for each plugin name, by name.
    fn extension_counts(&self) -> impl Future<Output = Result<Vec<(String, u64)>>> + Send;
    /// Creates an API key; returns its listing and the key itself (shown once).
    fn create_key(
        &self,
        org_id: i64,
        role: Role,
        name: &str,
    ) -> impl Future<Output = Result<(ApiKeyInfo, String)>> + Send;
    /// Registers a key chosen by the operator (`dvx_` and 64 hex digits), e.g. for a demo.
    fn import_key(
        &self,
        org_id: i64,
        role: Role,
        name: &str,
        key: &str,
    ) -> impl Future<Output = Result<ApiKeyInfo>> + Send;
    /// The principal of a valid, unrevoked key (and records its use, to the minute).
    fn authenticate(&self, key: &str) -> impl Future<Output = Result<Option<Principal>>> + Send;
    /// The org's unrevoked keys.
    fn list_keys(&self, org_id: i64) -> impl Future<Output = Result<Vec<ApiKeyInfo>>> + Send;
    /// Revokes a key of the org; `false` if there is no such key.
    fn revoke_key(&self, org_id: i64, key_id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// The org's settings for `plugin`.
    fn extension(
        &self,
        org_id: i64,
        plugin: &str,
    ) -> impl Future<Output = Result<Option<ExtensionSettings>>> + Send;
    /// All the org's extension settings.
    fn extensions(
        &self,
        org_id: i64,
    ) -> impl Future<Output = Result<Vec<ExtensionSettings>>> + Send;
    /// Replaces the org's settings for a plugin (secrets encrypted at rest).
    fn put_extension(
        &self,
        org_id: i64,
        settings: &ExtensionSettings,
    ) -> impl Future<Output = Result<()>> + Send {
        self.put_extension_if(org_id, settings, None)
    }
    /// [`Store::put_extension`], only if the stored settings' entity tag
    /// ([`Store::extension_etag`]; `None`: no settings stored) is `if_match` (checked in the
    /// writing transaction): else [`StoreError::PreconditionFailed`].
    fn put_extension_if(
        &self,
        org_id: i64,
        settings: &ExtensionSettings,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The entity tag of the org's stored settings for `plugin` (a digest of the stored row,
    /// secrets as ciphertext), `None` when there are none.
    fn extension_etag(
        &self,
        org_id: i64,
        plugin: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Creates a device with its lookup index `lookup` (in the same transaction);
    /// [`StoreError::LookupTaken`] if another device of the org has one of the values.
    fn create_device(
        &self,
        org_id: i64,
        name: &str,
        device_type: Option<&str>,
        extensions: &Value,
        lookup: &[LookupEntry],
    ) -> impl Future<Output = Result<Device>> + Send;
    /// A device of the org.
    fn device(&self, org_id: i64, id: &str) -> impl Future<Output = Result<Option<Device>>> + Send;
    /// A page of the org's devices and the cursor of the next page.
    fn devices(
        &self,
        org_id: i64,
        query: &DeviceQuery,
    ) -> impl Future<Output = Result<(Vec<Device>, Option<i64>)>> + Send;
    /// Replaces a device's fields and its lookup index (in the same transaction); `None` if
    /// there is no such device; [`StoreError::LookupTaken`] if another device of the org has one
    /// of the values.
    fn update_device(
        &self,
        org_id: i64,
        id: &str,
        name: &str,
        device_type: Option<&str>,
        extensions: &Value,
        lookup: &[LookupEntry],
    ) -> impl Future<Output = Result<Option<Device>>> + Send {
        self.update_device_if(org_id, id, name, device_type, extensions, lookup, None)
    }
    /// [`Store::update_device`], only if the stored device's [`device_etag`] is `if_match`
    /// (checked in the writing transaction): else [`StoreError::PreconditionFailed`].
    #[allow(clippy::too_many_arguments)] // a device's fields and the condition
    fn update_device_if(
        &self,
        org_id: i64,
        id: &str,
        name: &str,
        device_type: Option<&str>,
        extensions: &Value,
        lookup: &[LookupEntry],
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Option<Device>>> + Send;
    /// Rebuilds the lookup index of every device from its extension configuration with `index`,
    /// unless the index was last built for the same `signature` (what `index` computes: e.g. the
    /// loaded plugins' lookup fields); `None` when it was. One transaction.
    fn reindex_lookups(
        &self,
        signature: &str,
        index: impl Fn(&Value) -> Vec<LookupEntry> + Send + Sync,
    ) -> impl Future<Output = Result<Option<Reindexed>>> + Send;
    /// Deletes a device; `false` if there is no such device.
    fn delete_device(&self, org_id: i64, id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Appends to the audit log.
    fn audit(&self, org_id: i64, entry: NewAudit<'_>) -> impl Future<Output = Result<()>> + Send;
    /// The org's audit log, newest first, before the id `before`; only the entries of device
    /// `device` when given.
    fn audit_log(
        &self,
        org_id: i64,
        device: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>>> + Send;
    /// Creates a user of the org with a password hash (PHC string); `email` is kept lower-case
    /// and trimmed; `Conflict` if a user (of any org) has it, `NotFound` if there is no such org.
    fn create_user(
        &self,
        org_id: i64,
        email: &str,
        role: Role,
        password_hash: &str,
    ) -> impl Future<Output = Result<User>> + Send;
    /// The user with this email (any case), with their password hash, disabled or not.
    fn user_credentials(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Option<UserCredentials>>> + Send;
    /// A user of the org.
    fn user(&self, org_id: i64, user_id: &str)
    -> impl Future<Output = Result<Option<User>>> + Send;
    /// The org's users, by email.
    fn users(&self, org_id: i64) -> impl Future<Output = Result<Vec<User>>> + Send;
    /// Disables (and ends every session of) or enables a user of the org; `false` if there is
    /// no such user. One transaction.
    fn set_user_disabled(
        &self,
        org_id: i64,
        user_id: &str,
        disabled: bool,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Replaces a user's password hash and ends their sessions, except the one whose token hash
    /// is `keep` (a user changing their own password stays signed in); `false` if there is no
    /// such user. One transaction.
    fn set_password(
        &self,
        org_id: i64,
        user_id: &str,
        password_hash: &str,
        keep: Option<&[u8]>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Records a new session of a user, by the SHA-256 of its token.
    fn create_session(
        &self,
        user_id: &str,
        token_hash: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The live session with this token hash: its user enabled, used within `limits.idle` and
    /// begun within `limits.absolute` (an expired one is deleted). Records the use (to within
    /// a few seconds).
    fn session(
        &self,
        token_hash: &[u8],
        limits: SessionLimits,
    ) -> impl Future<Output = Result<Option<Session>>> + Send;
    /// Ends one session; `false` if there was none.
    fn delete_session(&self, token_hash: &[u8]) -> impl Future<Output = Result<bool>> + Send;
    /// Ends every session of a user; how many there were.
    fn delete_sessions(&self, user_id: &str) -> impl Future<Output = Result<u64>> + Send;
    /// Counts one failed sign-in under `key` (e.g. `account:<email>` or `address:<ip>`) in a
    /// fixed window of `window` that starts at the first failure; returns the failures of the
    /// current window, this one included.
    fn record_login_failure(
        &self,
        key: &str,
        window: std::time::Duration,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// The failures counted under `key` in its current window (0 once `window` has passed
    /// since its first failure).
    fn login_failures(
        &self,
        key: &str,
        window: std::time::Duration,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// Forgets the failures under `key` (after a successful sign-in).
    fn clear_login_failures(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    /// Claims an idempotency key for a request (identified by `fingerprint`).
    fn claim_idempotency(
        &self,
        org_id: i64,
        key: &str,
        fingerprint: &str,
    ) -> impl Future<Output = Result<IdempotencyClaim>> + Send;
    /// Writes other processes made, as they are announced (`None`: this store does not announce
    /// them; memos then rely on their time limit).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        None
    }
    /// Records the result of the request that claimed `key`.
    fn complete_idempotency(
        &self,
        org_id: i64,
        key: &str,
        status: u16,
        body: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}
