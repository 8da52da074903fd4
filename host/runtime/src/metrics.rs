//! Per plugin/operation/outcome call counters and latency histograms, lock-free on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use devext_plugin_api::ErrorKind;
use serde::Serialize;

/// Upper bounds of the latency buckets, in microseconds (the last bucket is unbounded).
pub const LATENCY_BUCKETS_MICROS: [u64; 12] = [
    100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000, 10_000_000,
    30_000_000,
];

/// The outcomes counted: `ok` and each error kind.
pub const OUTCOMES: usize = 1 + ErrorKind::ALL.len();

fn outcome_name(i: usize) -> &'static str {
    if i == 0 {
        "ok"
    } else {
        ErrorKind::ALL[i - 1].as_str()
    }
}

fn outcome_index(outcome: Result<(), ErrorKind>) -> usize {
    match outcome {
        Ok(()) => 0,
        Err(kind) => 1 + ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0),
    }
}

#[derive(Default)]
struct OutcomeCells {
    // No count of its own: it is the buckets' sum (one atomic add fewer per call).
    sum_micros: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
}

/// The counters of one operation.
#[derive(Default)]
pub(crate) struct OpMetrics {
    outcomes: [OutcomeCells; OUTCOMES],
}

impl OpMetrics {
    pub(crate) fn record(&self, outcome: Result<(), ErrorKind>, elapsed: Duration) {
        let cells = &self.outcomes[outcome_index(outcome)];
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        cells.sum_micros.fetch_add(micros, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        cells.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, plugin: &str, op: &str, into: &mut Vec<OpStats>) {
        for (i, cells) in self.outcomes.iter().enumerate() {
            let buckets: Vec<u64> = cells
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            let count = buckets.iter().sum();
            if count == 0 {
                continue;
            }
            into.push(OpStats {
                plugin: plugin.to_owned(),
                op: op.to_owned(),
                outcome: outcome_name(i),
                count,
                sum_micros: cells.sum_micros.load(Ordering::Relaxed),
                buckets,
            });
        }
    }
}

/// Counters of one plugin/operation/outcome (only outcomes that happened are listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpStats {
    /// Plugin name.
    pub plugin: String,
    /// Operation name.
    pub op: String,
    /// `ok` or an error kind (`timeout`, `internal`, ...).
    pub outcome: &'static str,
    /// Number of calls.
    pub count: u64,
    /// Total latency of those calls, in microseconds.
    pub sum_micros: u64,
    /// Calls per latency bucket (bounds in [`LATENCY_BUCKETS_MICROS`], then one unbounded).
    pub buckets: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_outcome_with_buckets() {
        let m = OpMetrics::default();
        m.record(Ok(()), Duration::from_micros(50));
        m.record(Ok(()), Duration::from_millis(2));
        m.record(Err(ErrorKind::Timeout), Duration::from_secs(31));
        let mut rows = Vec::new();
        m.snapshot("echo", "echo", &mut rows);
        assert_eq!(rows.len(), 2);
        let ok = &rows[0];
        assert_eq!((ok.outcome, ok.count, ok.sum_micros), ("ok", 2, 2050));
        assert_eq!(ok.buckets[0], 1);
        assert_eq!(ok.buckets[3], 1);
        let timeout = &rows[1];
        assert_eq!((timeout.outcome, timeout.count), ("timeout", 1));
        assert_eq!(*timeout.buckets.last().unwrap(), 1);
    }
}
