//! [`App`]: the service's shared state, with the memos of what almost every request reads.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use devext_host::Runtime;

use crate::lookup::LookupFields;
use crate::memo::Memo;
use crate::metrics::HttpMetrics;
use crate::store::{
    Device, ExtensionSettings, Principal, Reindexed, SessionLimits, Store, StoreChange, StoreError,
};

/// The dashboard's settings: how long sessions live and how their cookie is sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebConfig {
    /// Idle and absolute expiry of sessions.
    pub session: SessionLimits,
    /// The service is reached over https (directly or through a TLS proxy): cookies are
    /// `Secure`.
    pub secure_cookies: bool,
    /// Behind a proxy that sets `X-Forwarded-For`: sign-in throttling counts its first address
    /// as the client's (without a proxy the header is anyone's to forge, so it is ignored).
    pub trust_forwarded_for: bool,
}

/// Applies the store's announcements of other replicas' writes to `app`'s memos, while `app`
/// lives.
async fn forget_changed<S: Store>(
    app: std::sync::Weak<App<S>>,
    mut changes: tokio::sync::broadcast::Receiver<StoreChange>,
) {
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            // Some were dropped: assume anything changed.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => StoreChange::All,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(app) = app.upgrade() else { return };
        app.forget(&change);
    }
}

/// The service's shared state.
pub struct App<S> {
    /// The plugins.
    pub runtime: Runtime,
    /// The store.
    pub store: S,
    /// HTTP counters.
    pub metrics: HttpMetrics,
    /// False once shutdown began (`/readyz` turns 503).
    pub ready: AtomicBool,
    /// The loaded plugins' lookup fields (what the device lookup index holds).
    pub lookup: LookupFields,
    /// The dashboard's settings.
    pub web: WebConfig,
    /// SHA-256 of an API key -> its principal (`None`: not a valid key).
    pub(crate) keys: Memo<Vec<u8>, Option<Principal>>,
    /// (org, plugin) -> the org's settings for the plugin.
    pub(crate) settings: Memo<(i64, String), Option<ExtensionSettings>>,
    /// (org, device id) -> the device, for running operations.
    pub(crate) devices: Memo<(i64, String), Option<Device>>,
}

/// Devices memoised for running operations (see [`App::device_for_op`]).
const DEVICE_MEMO_ENTRIES: usize = 1_000;

impl<S: Store> App<S> {
    /// Shared state over `runtime` and `store`.
    pub fn new(runtime: Runtime, store: S) -> Arc<Self> {
        Self::with_web(runtime, store, WebConfig::default())
    }

    /// Shared state over `runtime` and `store`, with the dashboard's settings `web`.
    pub fn with_web(runtime: Runtime, store: S, web: WebConfig) -> Arc<Self> {
        let changes = store.changes();
        let app = Arc::new(App {
            web,
            lookup: LookupFields::of(&runtime),
            runtime,
            store,
            metrics: HttpMetrics::default(),
            ready: AtomicBool::new(true),
            keys: Memo::default(),
            settings: Memo::default(),
            // Enough for the devices someone is looking at right now; a scan over many devices
            // (each read once) must not fill memory with memos nobody reads again.
            devices: Memo::with_capacity(DEVICE_MEMO_ENTRIES),
        });
        if let (Some(changes), Ok(handle)) = (changes, tokio::runtime::Handle::try_current()) {
            handle.spawn(forget_changed(Arc::downgrade(&app), changes));
        }
        app
    }

    /// Drops the memos a change another replica announced makes stale.
    pub fn forget(&self, change: &StoreChange) {
        match change {
            StoreChange::Keys => self.keys.clear(),
            StoreChange::Extension { org_id, plugin } => {
                self.settings.forget(&(*org_id, plugin.clone()));
            }
            StoreChange::Device { org_id, id } => self.devices.forget(&(*org_id, id.clone())),
            // Sessions are read from the store on every request: nothing memoised.
            StoreChange::User { .. } => {}
            StoreChange::All => {
                self.keys.clear();
                self.settings.clear();
                self.devices.clear();
            }
        }
    }

    /// Brings the store's device lookup index up to the loaded plugins' lookup fields: a no-op
    /// when it was built for the same fields, else a rebuild from every device's configuration
    /// (after the upgrade that introduced the index, or when a plugin's `lookup_fields` changed).
    /// Values two devices of an org share (possible in data written before the index) stay
    /// with the first device; the others are logged. [`crate::serve`] runs this before serving.
    pub async fn reindex_lookups(&self) -> Result<Option<Reindexed>, StoreError> {
        let lookup = &self.lookup;
        let done = self
            .store
            .reindex_lookups(&lookup.signature(), |ext| lookup.entries(ext))
            .await?;
        if let Some(done) = &done {
            tracing::info!(
                devices = done.devices,
                entries = done.entries,
                fields = %lookup.signature(),
                "device lookup index rebuilt"
            );
            for (device, entry, owner) in &done.taken {
                tracing::warn!(
                    device = %device,
                    owner = %owner,
                    pointer = %entry.pointer(),
                    "lookup value left out of the index: another device of the organisation has it"
                );
            }
        }
        Ok(done)
    }

    /// Warns about devices whose extension configuration names a plugin this service does not
    /// load (their part for it is kept, unchecked, and its operations cannot run); returns the
    /// `(plugin, devices)` pairs.
    pub async fn warn_unloaded_extensions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let unloaded: Vec<(String, u64)> = self
            .store
            .extension_counts()
            .await?
            .into_iter()
            .filter(|(plugin, _)| self.runtime.plugin(plugin).is_none())
            .collect();
        for (plugin, devices) in &unloaded {
            tracing::warn!(
                plugin = %plugin,
                devices,
                "devices have a configuration for a plugin that is not loaded: it is kept \
                 unchecked, and its operations are unavailable"
            );
        }
        Ok(unloaded)
    }

    /// A device of the org, for running an operation (memoised; see [`crate::memo`]).
    pub(crate) async fn device_for_op(
        &self,
        org_id: i64,
        id: &str,
    ) -> Result<Option<Device>, StoreError> {
        self.devices
            .get_or_load((org_id, id.to_owned()), || self.store.device(org_id, id))
            .await
    }

    /// The principal of an API key (memoised; see [`crate::memo`]).
    pub(crate) async fn principal(&self, key: &str) -> Result<Option<Principal>, StoreError> {
        self.keys
            .get_or_load(crate::crypto::key_hash(key), || {
                self.store.authenticate(key)
            })
            .await
    }

    /// The org's settings for `plugin` (memoised; see [`crate::memo`]).
    pub(crate) async fn settings(
        &self,
        org_id: i64,
        plugin: &str,
    ) -> Result<Option<ExtensionSettings>, StoreError> {
        self.settings
            .get_or_load((org_id, plugin.to_owned()), || {
                self.store.extension(org_id, plugin)
            })
            .await
    }
}
