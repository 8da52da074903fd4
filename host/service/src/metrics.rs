//! Prometheus text exposition of the service: HTTP requests, operation calls and latency, and
//! the plugins' upstream HTTP calls.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use devext_host::Runtime;
use devext_host::metrics::LATENCY_BUCKETS_MICROS;

/// Request counters by method, route and status.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl HttpMetrics {
    /// Counts one request.
    pub fn record(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
    }

    /// The whole exposition.
    pub fn render(&self, runtime: &Runtime) -> String {
        let mut out = String::new();
        out.push_str("# HELP devext_http_requests_total HTTP requests served.\n");
        out.push_str("# TYPE devext_http_requests_total counter\n");
        if let Ok(map) = self.requests.lock() {
            for ((method, route, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "devext_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                    label(method),
                    label(route)
                );
            }
        }
        let ops = runtime.metrics();
        out.push_str("# HELP devext_op_calls_total Plugin operation calls by outcome.\n");
        out.push_str("# TYPE devext_op_calls_total counter\n");
        for m in &ops {
            let _ = writeln!(
                out,
                "devext_op_calls_total{{plugin=\"{}\",op=\"{}\",outcome=\"{}\"}} {}",
                label(&m.plugin),
                label(&m.op),
                m.outcome,
                m.count
            );
        }
        out.push_str("# HELP devext_op_duration_seconds Plugin operation latency.\n");
        out.push_str("# TYPE devext_op_duration_seconds histogram\n");
        for m in &ops {
            let labels = format!(
                "plugin=\"{}\",op=\"{}\",outcome=\"{}\"",
                label(&m.plugin),
                label(&m.op),
                m.outcome
            );
            let mut cumulative = 0;
            for (i, n) in m.buckets.iter().enumerate() {
                cumulative += n;
                let le = LATENCY_BUCKETS_MICROS
                    .get(i)
                    .map(|us| format!("{}", *us as f64 / 1e6))
                    .unwrap_or_else(|| "+Inf".to_owned());
                let _ = writeln!(
                    out,
                    "devext_op_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "devext_op_duration_seconds_sum{{{labels}}} {}",
                m.sum_micros as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "devext_op_duration_seconds_count{{{labels}}} {}",
                m.count
            );
        }
        out.push_str(
            "# HELP devext_upstream_requests_total HTTP requests plugins made through the host.\n",
        );
        out.push_str("# TYPE devext_upstream_requests_total counter\n");
        for (plugin, outcome, n) in runtime.upstream_metrics() {
            let _ = writeln!(
                out,
                "devext_upstream_requests_total{{plugin=\"{}\",outcome=\"{}\"}} {n}",
                label(&plugin),
                label(&outcome)
            );
        }
        out
    }
}
