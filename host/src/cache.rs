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
    pub(crate) device: String,
}

struct Entry {
    output: Value,
    expires: Instant,
}

#[derive(Default)]
struct DeviceViews {
    /// Bumped by every action on the device; a view stores its result only if unchanged.
    generation: u64,
    /// (op, input) -> entry.
    entries: HashMap<(String, String), Entry>,
}

pub(crate) struct ViewCache {
    devices: Mutex<HashMap<DeviceKey, DeviceViews>>,
    max_entries: usize,
}

impl ViewCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        ViewCache {
            devices: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    /// A fresh cached output, or the device's generation to pass to [`ViewCache::store`].
    pub(crate) fn lookup(&self, key: &DeviceKey, op: &str, input: &str) -> Result<Value, u64> {
        let Ok(devices) = self.devices.lock() else {
            return Err(u64::MAX);
        };
        let Some(views) = devices.get(key) else {
            return Err(0);
        };
        match views.entries.get(&(op.to_owned(), input.to_owned())) {
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
        input: &str,
        output: &Value,
        fresh_for: Duration,
    ) {
        let Ok(mut devices) = self.devices.lock() else {
            return;
        };
        let now = Instant::now();
        let total: usize = devices.values().map(|d| d.entries.len()).sum();
        if total >= self.max_entries {
            // Drop what has expired; if that is not enough, start over (a cache, not a store).
            // Devices that saw an action keep their (empty) record: its generation guards
            // views still in flight.
            for d in devices.values_mut() {
                d.entries.retain(|_, e| e.expires > now);
            }
            devices.retain(|_, d| !d.entries.is_empty() || d.generation > 0);
            if devices.values().map(|d| d.entries.len()).sum::<usize>() >= self.max_entries {
                for d in devices.values_mut() {
                    d.entries.clear();
                }
            }
        }
        let views = devices.entry(key.clone()).or_default();
        if views.generation != generation {
            return;
        }
        views.entries.insert(
            (op.to_owned(), input.to_owned()),
            Entry {
                output: output.clone(),
                expires: now + fresh_for,
            },
        );
    }

    /// Drops the device's cached views and invalidates views in flight.
    pub(crate) fn invalidate(&self, key: &DeviceKey) {
        if let Ok(mut devices) = self.devices.lock() {
            let views = devices.entry(key.clone()).or_default();
            views.generation += 1;
            views.entries.clear();
        }
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
            device: device.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let c = ViewCache::new(100);
        let g = c.lookup(&key("d"), "v", "{}").unwrap_err();
        c.store(&key("d"), g, "v", "{}", &json!(1), Duration::from_secs(60));
        assert_eq!(c.lookup(&key("d"), "v", "{}"), Ok(json!(1)));
        assert!(
            c.lookup(&key("d"), "v", "{\"x\":1}").is_err(),
            "other input"
        );
        assert!(c.lookup(&key("e"), "v", "{}").is_err(), "other device");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(c.lookup(&key("d"), "v", "{}").is_err());
    }

    #[tokio::test]
    async fn actions_drop_views_and_views_in_flight_are_not_stored() {
        let c = ViewCache::new(100);
        let g = c.lookup(&key("d"), "v", "{}").unwrap_err();
        c.store(&key("d"), g, "v", "{}", &json!(1), Duration::from_secs(60));
        let g_before = c.lookup(&key("d"), "w", "{}").unwrap_err();
        c.invalidate(&key("d"));
        assert!(
            c.lookup(&key("d"), "v", "{}").is_err(),
            "dropped by the action"
        );
        // A view that started before the action finished must not store its (older) result.
        c.store(
            &key("d"),
            g_before,
            "w",
            "{}",
            &json!(2),
            Duration::from_secs(60),
        );
        assert!(c.lookup(&key("d"), "w", "{}").is_err());
    }

    #[tokio::test]
    async fn size_is_bounded() {
        let c = ViewCache::new(3);
        for i in 0..10 {
            let k = key(&format!("d{i}"));
            let g = c.lookup(&k, "v", "{}").unwrap_err();
            c.store(&k, g, "v", "{}", &json!(i), Duration::from_secs(60));
        }
        let held = (0..10)
            .filter(|i| c.lookup(&key(&format!("d{i}")), "v", "{}").is_ok())
            .count();
        assert!(held <= 3, "{held}");
        assert!(
            c.lookup(&key("d9"), "v", "{}").is_ok(),
            "the newest entry is kept"
        );
    }
}
