//! The store's domain types: roles, organisations, keys, extension settings, devices, the audit
//! log, idempotency records and the device lookup index.

use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

/// What an API key may do; each role includes the ones after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs views and reads.
    Viewer,
    /// Also runs actions.
    Operator,
    /// Also manages settings, keys and devices.
    Admin,
}

impl Role {
    /// `admin`, `operator` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A role name that is none of `admin`, `operator`, `viewer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use admin, operator or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> std::result::Result<Role, UnknownRole> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// An organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    /// Internal id.
    pub id: i64,
    /// Unique name.
    pub name: String,
}

/// An organisation as `devext orgs list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgSummary {
    /// Unique name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Its devices.
    pub devices: u64,
    /// Its API keys that are not revoked.
    pub active_keys: u64,
    /// The plugins switched on for it, sorted.
    pub extensions_on: Vec<String>,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// Public id (`key_...`).
    pub id: String,
    /// Role.
    pub role: Role,
    /// Label given at creation.
    pub name: String,
    /// Creation time.
    pub created_at: String,
    /// Last successful use.
    pub last_used_at: Option<String>,
}

/// Who is calling: the org and role of a valid key, or of a signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's (or user's) org.
    pub org_id: i64,
    /// The key's public id; empty for a user's session (see `user_id`).
    pub key_id: String,
    /// The key's (or user's) role.
    pub role: Role,
    /// The signed-in user (`usr_...`) when the caller is a dashboard session, not a key.
    pub user_id: Option<String>,
}

impl Principal {
    /// The principal of a signed-in user.
    pub fn of_user(user: &User) -> Principal {
        Principal {
            org_id: user.org_id,
            key_id: String::new(),
            role: user.role,
            user_id: Some(user.id.clone()),
        }
    }
}

/// A person who signs in to the dashboard (never the password hash: see [`UserCredentials`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Public id (`usr_...`).
    pub id: String,
    /// The user's organisation.
    #[serde(skip)]
    pub org_id: i64,
    /// Unique across the store, lower-case.
    pub email: String,
    /// Role (the same roles as keys).
    pub role: Role,
    /// Disabled users cannot sign in and have no sessions.
    pub disabled: bool,
    /// Creation time.
    pub created_at: String,
}

/// A user with the stored hash of their password (a PHC string), for signing in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// The password's hash (argon2id, PHC string format).
    pub password_hash: String,
}

/// How long a session lives: without use (`idle`) and at all (`absolute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Ends after this long without a request.
    pub idle: std::time::Duration,
    /// Ends this long after sign-in, however used.
    pub absolute: std::time::Duration,
}

impl Default for SessionLimits {
    /// 30 minutes idle, 12 hours at most.
    fn default() -> Self {
        SessionLimits {
            idle: std::time::Duration::from_secs(30 * 60),
            absolute: std::time::Duration::from_secs(12 * 3600),
        }
    }
}

/// A live session: its user and when it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The signed-in user (enabled).
    pub user: User,
    /// Sign-in time (RFC 3339).
    pub created_at: String,
}

/// An org's settings for one extension; `secrets` are decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionSettings {
    /// The plugin.
    pub plugin: String,
    /// Switched on for the org.
    pub enabled: bool,
    /// Non-secret settings.
    pub config: Map<String, Value>,
    /// Secret settings (the schema's `writeOnly` properties), decrypted.
    pub secrets: Map<String, Value>,
}

impl ExtensionSettings {
    /// The whole config a plugin sees: settings and secrets together.
    pub fn merged(&self) -> Value {
        let mut all = self.config.clone();
        all.extend(self.secrets.clone());
        Value::Object(all)
    }
}

/// A device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    /// Server-assigned id (`dev_...`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Free-form type.
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    /// The extension configuration (object keyed by plugin name).
    pub extensions: Value,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing id (newest first in listings).
    pub id: i64,
    /// When.
    pub at: String,
    /// Which key (public id), if a key acted.
    pub key_id: Option<String>,
    /// Which user (public id), if a signed-in user acted.
    pub user_id: Option<String>,
    /// That user's email, as it is now.
    pub user_email: Option<String>,
    /// `operation`, `settings`, `key`, `device`, `org`.
    pub action: String,
    /// The device, for operations and device changes.
    pub device_id: Option<String>,
    /// The plugin.
    pub plugin: Option<String>,
    /// The operation (or `create`, `update`, `delete`, `revoke`...).
    pub op: Option<String>,
    /// `ok` or an error kind.
    pub outcome: String,
    /// A short note (never secrets).
    pub detail: String,
    /// The HTTP request that made it (its `x-request-id`), if any.
    pub request_id: Option<String>,
    /// The name of the key that made it, as it is now (empty for a key created without one).
    pub key_name: Option<String>,
}

/// A new audit record.
#[derive(Debug, Clone, Default)]
pub struct NewAudit<'a> {
    /// Which key.
    pub key_id: Option<&'a str>,
    /// Which user (when a signed-in user acted, not a key).
    pub user_id: Option<&'a str>,
    /// `operation`, `settings`, `key`, `device`, `user`.
    pub action: &'a str,
    /// The device.
    pub device_id: Option<&'a str>,
    /// The plugin.
    pub plugin: Option<&'a str>,
    /// The operation or change.
    pub op: Option<&'a str>,
    /// `ok` or an error kind.
    pub outcome: &'a str,
    /// A short note (never secrets).
    pub detail: &'a str,
    /// The HTTP request that makes it.
    pub request_id: Option<&'a str>,
}

/// Filter and page of a device listing.
#[derive(Debug, Clone, Default)]
pub struct DeviceQuery {
    /// Substring of the name.
    pub name: Option<String>,
    /// Indexed lookup values the device must have (all of them).
    pub lookup: Vec<LookupEntry>,
    /// Continue after this cursor.
    pub cursor: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// One value of a device's lookup index: the device's configuration for `plugin` has `value` in
/// its property `field` (a field the plugin's manifest lists in `lookup_fields`). Within an
/// organisation, one device at most has a given value of a given field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupEntry {
    /// The plugin (the key in the device's extension configuration).
    pub plugin: String,
    /// The property of the plugin's device configuration.
    pub field: String,
    /// The value: a JSON string as it is, any other JSON value as its JSON text.
    pub value: String,
}

impl LookupEntry {
    /// The JSON pointer of the value in a device document: `/extensions/<plugin>/<field>`.
    pub fn pointer(&self) -> String {
        let escape = |s: &str| s.replace('~', "~0").replace('/', "~1");
        format!(
            "/extensions/{}/{}",
            escape(&self.plugin),
            escape(&self.field)
        )
    }
}

/// What rebuilding the lookup index did (see [`crate::store::Store::reindex_lookups`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reindexed {
    /// Devices read.
    pub devices: u64,
    /// Entries written.
    pub entries: u64,
    /// Entries left out because another device of the org had the value first (written before
    /// values were unique): `(device id, entry, id of the device that has the value)`.
    pub taken: Vec<(String, LookupEntry, String)>,
}

/// Outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: run the request, then record its result.
    Claimed,
    /// The first request with this key has no recorded result: it is still running, or (when
    /// `since` is old) the service stopped while running it and its outcome is unknown.
    InProgress {
        /// When the key was claimed (RFC 3339).
        since: String,
    },
    /// The recorded result of the first request.
    Done {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key has no recorded result and the replica running it
    /// stopped renewing its claim (it died): its outcome is unknown, and it is never run again.
    Unknown {
        /// When the key was claimed (RFC 3339).
        since: String,
    },
}

/// A write another process made, announced by the store (PostgreSQL: `LISTEN/NOTIFY`) so that
/// this process drops what it memoised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// A key was revoked (key memos are keyed by hash: all of them go).
    Keys,
    /// An org's settings for a plugin changed.
    Extension {
        /// The org.
        org_id: i64,
        /// The plugin.
        plugin: String,
    },
    /// A user was disabled or their password changed (their sessions may have ended).
    User {
        /// The org.
        org_id: i64,
        /// The user.
        id: String,
    },
    /// A device changed or was deleted.
    Device {
        /// The org.
        org_id: i64,
        /// The device.
        id: String,
    },
    /// Announcements may have been missed (the listening connection was lost): drop everything.
    All,
}

impl StoreChange {
    /// Reads an announcement's payload (`keys`, `extension ORG PLUGIN`, `device ORG ID`);
    /// anything else is [`StoreChange::All`].
    pub fn parse(payload: &str) -> StoreChange {
        let mut parts = payload.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("keys"), None, None) => StoreChange::Keys,
            (Some("extension"), Some(org), Some(plugin)) => match org.parse() {
                Ok(org_id) => StoreChange::Extension {
                    org_id,
                    plugin: plugin.to_owned(),
                },
                Err(_) => StoreChange::All,
            },
            (Some("user"), Some(org), Some(id)) => match org.parse() {
                Ok(org_id) => StoreChange::User {
                    org_id,
                    id: id.to_owned(),
                },
                Err(_) => StoreChange::All,
            },
            (Some("device"), Some(org), Some(id)) => match org.parse() {
                Ok(org_id) => StoreChange::Device {
                    org_id,
                    id: id.to_owned(),
                },
                Err(_) => StoreChange::All,
            },
            _ => StoreChange::All,
        }
    }
}

/// The entity tag of a device as stored: a digest of everything its representation shows, so
/// any change (from any replica) gives another tag.
pub fn device_etag(device: &Device) -> String {
    let text = serde_json::to_string(device).unwrap_or_default();
    etag_of(&[text.as_bytes()])
}

/// An entity tag from the parts of a stored record (`"` + 32 hex digits + `"`).
pub fn etag_of(parts: &[&[u8]]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    format!("\"{}\"", crate::crypto::hex(&digest[..16]))
}
