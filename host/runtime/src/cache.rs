//! A short-lived cache of view results, for views whose manifest declares `fresh_for_secs`.
//!
//! Entries are keyed by plugin, account (the org settings), device and input. An action on a
//! device drops that device's cached views, and a view that was in flight while an action ran is
//! not stored, so nobody is served a state older than their own change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// Identifies one device of one account of one plugin.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct DeviceKey {
    pub(crate) plugin: String,
    pub(crate) account: u64,
    /// The device config as it crossed the ABI (encoded bytes).
    pub(crate) device: Vec<u8>,
}

struct Entry {
    output: Value,
    expires: Instant,
}

#[derive(Default)]
struct DeviceViews {
    /// Bumped by every action on the device; a view stores its result only if unchanged.
    generation: u64,
    /// When the latest action ran (`None`: never, as far as this cache remembers).
    last_action: Option<Instant>,
    /// (op, encoded input) -> entry.
    entries: HashMap<(String, Vec<u8>), Entry>,
}

struct Inner {
    devices: HashMap<DeviceKey, DeviceViews>,
    /// Entries over all devices.
    entries: usize,
    /// Records held before the next clean-up.
    next_cleanup: usize,
}

pub(crate) struct ViewCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    /// The longest a call runs: a device's record of an action is needed only while views that
    /// started before it may still be in flight.
    max_call: Duration,
}

/// Records kept before the first clean-up, whatever the entry limit.
const MIN_CLEANUP_RECORDS: usize = 1024;

impl ViewCache {
    pub(crate) fn new(max_entries: usize, max_call: Duration) -> Self {
        ViewCache {
            inner: Mutex::new(Inner {
                devices: HashMap::new(),
                entries: 0,
                next_cleanup: max_entries.max(MIN_CLEANUP_RECORDS),
            }),
            max_entries,
            max_call,
        }
    }

    /// A fresh cached output, or the device's generation to pass to [`ViewCache::store`].
    pub(crate) fn lookup(&self, key: &DeviceKey, op: &str, input: &[u8]) -> Result<Value, u64> {
        let Ok(inner) = self.inner.lock() else {
            return Err(u64::MAX);
        };
        let Some(views) = inner.devices.get(key) else {
            return Err(0);
        };
        match views.entries.get(&(op.to_owned(), input.to_vec())) {
            Some(e) if e.expires > Instant::now() => Ok(e.output.clone()),
            _ => Err(views.generation),
        }
    }

    /// Stores a view's output unless an action ran on the device since `generation` was read.
    pub(crate) fn store(
        &self,
        key: &DeviceKey,
        generation: u64,
        op: &str,
        input: &[u8],
        output: &Value,
        fresh_for: Duration,
    ) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        if inner.entries >= self.max_entries {
            // Drop what has expired; if that is not enough, start over (a cache, not a store).
            self.clean_up(&mut inner, now);
            if inner.entries >= self.max_entries {
                for d in inner.devices.values_mut() {
                    d.entries.clear();
                }
                inner.entries = 0;
            }
        }
        let views = inner.devices.entry(key.clone()).or_default();
        if views.generation != generation {
            return;
        }
        let added = views
            .entries
            .insert(
                (op.to_owned(), input.to_vec()),
                Entry {
                    output: output.clone(),
                    expires: now + fresh_for,
                },
            )
            .is_none();
        inner.entries += usize::from(added);
        self.maybe_clean_up(&mut inner, now);
    }

    /// Drops the device's cached views and invalidates views in flight.
    pub(crate) fn invalidate(&self, key: &DeviceKey) {
        if let Ok(mut inner) = self.inner.lock() {
            let now = Instant::now();
            let views = inner.devices.entry(key.clone()).or_default();
            views.generation += 1;
            views.last_action = Some(now);
            let dropped = views.entries.len();
            views.entries.clear();
            inner.entries -= dropped;
            self.maybe_clean_up(&mut inner, now);
        }
    }

    /// Cleans up once the number of device records has doubled since the last time, so the
    /// cost per call stays constant.
    fn maybe_clean_up(&self, inner: &mut Inner, now: Instant) {
        if inner.devices.len() >= inner.next_cleanup {
            self.clean_up(inner, now);
        }
    }

    /// Drops expired entries, and the records of devices with no entry left whose last action
    /// is older than any call still in flight (its generation guards nothing any more).
    fn clean_up(&self, inner: &mut Inner, now: Instant) {
        let max_call = self.max_call;
        let mut entries = 0;
        inner.devices.retain(|_, d| {
            d.entries.retain(|_, e| e.expires > now);
            entries += d.entries.len();
            !d.entries.is_empty()
                || d.last_action
                    .is_some_and(|at| now.saturating_duration_since(at) <= max_call)
        });
        inner.entries = entries;
        inner.next_cleanup =
            (inner.devices.len() * 2).max(self.max_entries.max(MIN_CLEANUP_RECORDS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(device: &str) -> DeviceKey {
        DeviceKey {
            plugin: "p".into(),
            account: 1,
            device: device.as_bytes().to_vec(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let c = ViewCache::new(100, Duration::from_secs(30));
        let g = c.lookup(&key("d"), "v", b"{}").unwrap_err();
        c.store(&key("d"), g, "v", b"{}", &json!(1), Duration::from_secs(60));
        assert_eq!(c.lookup(&key("d"), "v", b"{}"), Ok(json!(1)));
        assert!(
            c.lookup(&key("d"), "v", b"{\"x\":1}").is_err(),
            "other input"
        );
        assert!(c.lookup(&key("e"), "v", b"{}").is_err(), "other device");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(c.lookup(&key("d"), "v", b"{}").is_err());
    }

    #[tokio::test]
    async fn actions_drop_views_and_views_in_flight_are_not_stored() {
        let c = ViewCache::new(100, Duration::from_secs(30));
        let g = c.lookup(&key("d"), "v", b"{}").unwrap_err();
        c.store(&key("d"), g, "v", b"{}", &json!(1), Duration::from_secs(60));
        let g_before = c.lookup(&key("d"), "w", b"{}").unwrap_err();
        c.invalidate(&key("d"));
        assert!(
            c.lookup(&key("d"), "v", b"{}").is_err(),
            "dropped by the action"
        );
        // A view that started before the action finished must not store its (older) result.
        c.store(
            &key("d"),
            g_before,
            "w",
            b"{}",
            &json!(2),
            Duration::from_secs(60),
        );
        assert!(c.lookup(&key("d"), "w", b"{}").is_err());
    }

    #[tokio::test]
    async fn size_is_bounded() {
        let c = ViewCache::new(3, Duration::from_secs(30));
        for i in 0..10 {
            let k = key(&format!("d{i}"));
            let g = c.lookup(&k, "v", b"{}").unwrap_err();
            c.store(&k, g, "v", b"{}", &json!(i), Duration::from_secs(60));
        }
        let held = (0..10)
            .filter(|i| c.lookup(&key(&format!("d{i}")), "v", b"{}").is_ok())
            .count();
        assert!(held <= 3, "{held}");
        assert!(
            c.lookup(&key("d9"), "v", b"{}").is_ok(),
            "the newest entry is kept"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn records_of_old_actions_are_dropped_once_no_view_can_be_in_flight() {
        let c = ViewCache::new(10, Duration::from_secs(30));
        // Actions on many devices, each leaving a record that guards views in flight.
        for i in 0..5000 {
            c.invalidate(&key(&format!("a{i}")));
        }
        let held = c.inner.lock().unwrap().devices.len();
        assert_eq!(held, 5000, "all recent: all kept ({held})");
        // A view that started before the latest action still cannot store.
        let g = 0;
        c.store(
            &key("a4999"),
            g,
            "v",
            b"{}",
            &json!(1),
            Duration::from_secs(60),
        );
        assert!(c.lookup(&key("a4999"), "v", b"{}").is_err());

        tokio::time::advance(Duration::from_secs(31)).await;
        for i in 0..5000 {
            c.invalidate(&key(&format!("b{i}")));
        }
        let held = c.inner.lock().unwrap().devices.len();
        assert!(held <= 5000 + 1, "the a* records were dropped: {held}");
    }
}
