//! Short-lived, in-process memos of what almost every request reads: API-key lookups (valid
//! keys and unknown ones alike), an org's extension settings, and the devices operations run on
//! (see [`crate::api::App`]). A write made through this process's API drops the entries it
//! affects at once (a revoked key clears the key memo, since it is keyed by key hashes); a
//! change made by another process sharing the store, or written to the store directly, is seen
//! once the entry is older than [`MEMO_TTL`]. On PostgreSQL the other replicas' writes are
//! announced (`LISTEN/NOTIFY`, see [`crate::store::StoreChange`]) and drop the entries within
//! milliseconds; the time limit remains the fallback (SQLite keeps only the time limit).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a memo is trusted.
pub const MEMO_TTL: Duration = Duration::from_secs(5);

/// Default largest number of entries before the memo starts over.
const MAX_ENTRIES: usize = 10_000;

/// A map whose entries expire after [`MEMO_TTL`], holding at most `capacity` entries.
pub struct Memo<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> Default for Memo<K, V> {
    fn default() -> Self {
        Memo::with_capacity(MAX_ENTRIES)
    }
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    /// A memo of at most `capacity` entries: when full, it drops the expired ones, and starts
    /// over if none had expired.
    pub fn with_capacity(capacity: usize) -> Self {
        Memo {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The value for `key`, if fresh.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < MEMO_TTL)
            .map(|(v, _)| v.clone())
    }

    /// Remembers `value` for `key`.
    pub fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity {
                entries.retain(|_, (_, at)| at.elapsed() < MEMO_TTL);
                if entries.len() >= self.capacity {
                    entries.clear();
                }
            }
            entries.insert(key, (value, Instant::now()));
        }
    }

    /// The value for `key`: the fresh one remembered, or else what `load` finds, remembered
    /// (a failed load is not). `load` runs only on a miss.
    pub async fn get_or_load<E, F: Future<Output = Result<V, E>>>(
        &self,
        key: K,
        load: impl FnOnce() -> F,
    ) -> Result<V, E> {
        if let Some(known) = self.get(&key) {
            return Ok(known);
        }
        let found = load().await?;
        self.put(key, found.clone());
        Ok(found)
    }

    /// Forgets `key`.
    pub fn forget(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity() {
        let m: Memo<u32, u32> = Memo::with_capacity(3);
        for i in 0..10 {
            m.put(i, i);
            assert!(m.entries.lock().unwrap().len() <= 3);
            assert_eq!(m.get(&i), Some(i), "the newest entry is always kept");
        }
    }

    #[test]
    fn remembers_until_forgotten() {
        let m: Memo<&str, u32> = Memo::default();
        assert_eq!(m.get(&"a"), None);
        m.put("a", 1);
        assert_eq!(m.get(&"a"), Some(1));
        m.forget(&"a");
        assert_eq!(m.get(&"a"), None);
        m.put("b", 2);
        m.clear();
        assert_eq!(m.get(&"b"), None);
    }

    #[tokio::test]
    async fn loads_on_a_miss_only_and_keeps_no_failure() {
        let m: Memo<&str, u32> = Memo::default();
        let failed: Result<u32, &str> = m.get_or_load("a", || async { Err("down") }).await;
        assert_eq!(failed, Err("down"));
        assert_eq!(m.get(&"a"), None, "a failed load is not remembered");
        let loaded: Result<u32, &str> = m.get_or_load("a", || async { Ok(1) }).await;
        assert_eq!(loaded, Ok(1));
        let known: Result<u32, &str> = m
            .get_or_load("a", || async { panic!("loaded on a hit") })
            .await;
        assert_eq!(known, Ok(1));
    }
}
