//! [`AnyStore`]: the store the service runs on, SQLite or PostgreSQL.

use std::path::Path;

use serde_json::Value;

use super::{
    ApiKeyInfo, AuditEntry, Device, DeviceQuery, ExtensionSettings, IdempotencyClaim, LookupEntry,
    NewAudit, Org, OrgSummary, PgStore, Principal, Reindexed, Result, Role, Session, SessionLimits,
    SqliteStore, Store, StoreChange, StoreError, User, UserCredentials,
};
use crate::crypto::SecretKey;

/// SQLite (a file) or PostgreSQL (a `postgres://` URL).
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// The embedded store.
    Sqlite(SqliteStore),
    /// The store several replicas share.
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens `db`: a `postgres://` (or `postgresql://`) URL is PostgreSQL and needs `key`;
    /// anything else is an SQLite file (whose key defaults to its key file).
    pub async fn open(db: &str, key: Option<SecretKey>) -> Result<AnyStore> {
        if super::postgres::is_postgres_url(db) {
            let key = key.ok_or(StoreError::KeyRequired)?;
            Ok(AnyStore::Postgres(PgStore::open(db, key).await?))
        } else {
            Ok(AnyStore::Sqlite(
                SqliteStore::open(Path::new(db), key).await?,
            ))
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL store, if it is one.
    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            AnyStore::Postgres(s) => Some(s),
            AnyStore::Sqlite(_) => None,
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Store for AnyStore {
    async fn create_org(&self, name: &str) -> Result<Org> {
        each!(self, s => s.create_org(name).await)
    }
    async fn org_by_name(&self, name: &str) -> Result<Option<Org>> {
        each!(self, s => s.org_by_name(name).await)
    }
    async fn orgs(&self) -> Result<Vec<OrgSummary>> {
        each!(self, s => s.orgs().await)
    }
    async fn extension_counts(&self) -> Result<Vec<(String, u64)>> {
        each!(self, s => s.extension_counts().await)
    }
    async fn create_key(
        &self,
        org_id: i64,
        role: Role,
        name: &str,
    ) -> Result<(ApiKeyInfo, String)> {
        each!(self, s => s.create_key(org_id, role, name).await)
    }
    async fn import_key(
        &self,
        org_id: i64,
        role: Role,
        name: &str,
        key: &str,
    ) -> Result<ApiKeyInfo> {
        each!(self, s => s.import_key(org_id, role, name, key).await)
    }
    async fn authenticate(&self, key: &str) -> Result<Option<Principal>> {
        each!(self, s => s.authenticate(key).await)
    }
    async fn list_keys(&self, org_id: i64) -> Result<Vec<ApiKeyInfo>> {
        each!(self, s => s.list_keys(org_id).await)
    }
    async fn revoke_key(&self, org_id: i64, key_id: &str) -> Result<bool> {
        each!(self, s => s.revoke_key(org_id, key_id).await)
    }
    async fn extension(&self, org_id: i64, plugin: &str) -> Result<Option<ExtensionSettings>> {
        each!(self, s => s.extension(org_id, plugin).await)
    }
    async fn extensions(&self, org_id: i64) -> Result<Vec<ExtensionSettings>> {
        each!(self, s => s.extensions(org_id).await)
    }
    async fn put_extension_if(
        &self,
        org_id: i64,
        settings: &ExtensionSettings,
        if_match: Option<&str>,
    ) -> Result<()> {
        each!(self, s => s.put_extension_if(org_id, settings, if_match).await)
    }
    async fn extension_etag(&self, org_id: i64, plugin: &str) -> Result<Option<String>> {
        each!(self, s => s.extension_etag(org_id, plugin).await)
    }
    async fn create_device(
        &self,
        org_id: i64,
        name: &str,
        device_type: Option<&str>,
        extensions: &Value,
        lookup: &[LookupEntry],
    ) -> Result<Device> {
        each!(self, s => s.create_device(org_id, name, device_type, extensions, lookup).await)
    }
    async fn device(&self, org_id: i64, id: &str) -> Result<Option<Device>> {
        each!(self, s => s.device(org_id, id).await)
    }
    async fn devices(
        &self,
        org_id: i64,
        query: &DeviceQuery,
    ) -> Result<(Vec<Device>, Option<i64>)> {
        each!(self, s => s.devices(org_id, query).await)
    }
    async fn update_device_if(
        &self,
        org_id: i64,
        id: &str,
        name: &str,
        device_type: Option<&str>,
        extensions: &Value,
        lookup: &[LookupEntry],
        if_match: Option<&str>,
    ) -> Result<Option<Device>> {
        each!(self, s => s.update_device_if(org_id, id, name, device_type, extensions, lookup, if_match).await)
    }
    async fn reindex_lookups(
        &self,
        signature: &str,
        index: impl Fn(&Value) -> Vec<LookupEntry> + Send + Sync,
    ) -> Result<Option<Reindexed>> {
        each!(self, s => s.reindex_lookups(signature, index).await)
    }
    async fn delete_device(&self, org_id: i64, id: &str) -> Result<bool> {
        each!(self, s => s.delete_device(org_id, id).await)
    }
    async fn audit(&self, org_id: i64, entry: NewAudit<'_>) -> Result<()> {
        each!(self, s => s.audit(org_id, entry).await)
    }
    async fn audit_log(
        &self,
        org_id: i64,
        device: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        each!(self, s => s.audit_log(org_id, device, before, limit).await)
    }
    async fn claim_idempotency(
        &self,
        org_id: i64,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyClaim> {
        each!(self, s => s.claim_idempotency(org_id, key, fingerprint).await)
    }
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        each!(self, s => s.changes())
    }
    async fn create_user(
        &self,
        org_id: i64,
        email: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User> {
        each!(self, s => s.create_user(org_id, email, role, password_hash).await)
    }
    async fn user_credentials(&self, email: &str) -> Result<Option<UserCredentials>> {
        each!(self, s => s.user_credentials(email).await)
    }
    async fn user(&self, org_id: i64, user_id: &str) -> Result<Option<User>> {
        each!(self, s => s.user(org_id, user_id).await)
    }
    async fn users(&self, org_id: i64) -> Result<Vec<User>> {
        each!(self, s => s.users(org_id).await)
    }
    async fn set_user_disabled(&self, org_id: i64, user_id: &str, disabled: bool) -> Result<bool> {
        each!(self, s => s.set_user_disabled(org_id, user_id, disabled).await)
    }
    async fn set_password(
        &self,
        org_id: i64,
        user_id: &str,
        password_hash: &str,
        keep: Option<&[u8]>,
    ) -> Result<bool> {
        each!(self, s => s.set_password(org_id, user_id, password_hash, keep).await)
    }
    async fn create_session(&self, user_id: &str, token_hash: &[u8]) -> Result<()> {
        each!(self, s => s.create_session(user_id, token_hash).await)
    }
    async fn session(&self, token_hash: &[u8], limits: SessionLimits) -> Result<Option<Session>> {
        each!(self, s => s.session(token_hash, limits).await)
    }
    async fn delete_session(&self, token_hash: &[u8]) -> Result<bool> {
        each!(self, s => s.delete_session(token_hash).await)
    }
    async fn delete_sessions(&self, user_id: &str) -> Result<u64> {
        each!(self, s => s.delete_sessions(user_id).await)
    }
    async fn record_login_failure(&self, key: &str, window: std::time::Duration) -> Result<u32> {
        each!(self, s => s.record_login_failure(key, window).await)
    }
    async fn login_failures(&self, key: &str, window: std::time::Duration) -> Result<u32> {
        each!(self, s => s.login_failures(key, window).await)
    }
    async fn clear_login_failures(&self, key: &str) -> Result<()> {
        each!(self, s => s.clear_login_failures(key).await)
    }
    async fn complete_idempotency(
        &self,
        org_id: i64,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        each!(self, s => s.complete_idempotency(org_id, key, status, body).await)
    }
}
