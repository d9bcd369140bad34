//! Prometheus metrics: counters and histograms kept in atomics, rendered as text.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Label pairs, already rendered: `service="fraud_v1",code="200"`.
type Labels = String;

/// A gauge read at render time: name, help, and its labelled values.
pub type Gauge<'a> = (&'a str, &'a str, Vec<(String, f64)>);

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: DashMap<(&'static str, Labels), Arc<AtomicU64>>,
    histograms: DashMap<(&'static str, Labels), Arc<Histogram>>,
}

/// Renders label pairs, escaping values.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "skewless_requests_total",
        "counter",
        "Serving requests by feature service and HTTP status.",
    ),
    (
        "skewless_request_duration_seconds",
        "histogram",
        "Serving request latency by feature service, from parsed body to encoded response.",
    ),
    (
        "skewless_transform_calls_total",
        "counter",
        "Transform calls by transform and module version.",
    ),
    (
        "skewless_transform_errors_total",
        "counter",
        "Failed transform calls by transform and module version.",
    ),
    (
        "skewless_transform_call_duration_seconds",
        "histogram",
        "Transform call latency (instantiate, copy in, run, copy out) by module version.",
    ),
    (
        "skewless_push_rows_total",
        "counter",
        "Rows written by push, by source.",
    ),
    (
        "skewless_push_events_total",
        "counter",
        "Events accepted by push to an event source, by source.",
    ),
    (
        "skewless_push_late_events_total",
        "counter",
        "Events a push refused as later than the source's allowed lateness (the backfill drops the same ones), by source.",
    ),
    (
        "skewless_verify_values_total",
        "counter",
        "Values compared by POST /v1/verify, by feature service.",
    ),
    (
        "skewless_verify_mismatches_total",
        "counter",
        "Values POST /v1/verify found to differ between serving and the offline path, by feature service.",
    ),
    (
        "skewless_http_requests_total",
        "counter",
        "HTTP requests by route and status.",
    ),
    (
        "skewless_connections_refused_total",
        "counter",
        "Connections answered 503 and closed because --max-connections were open.",
    ),
    (
        "skewless_accept_errors_total",
        "counter",
        "Failed accepts of a connection (out of file descriptors, mostly).",
    ),
];

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(&self, name: &'static str, labels: String, n: u64) {
        if let Some(c) = self.counters.get(&(name, labels.clone())) {
            c.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.counters
            .entry((name, labels))
            .or_default()
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Records a latency.
    pub fn observe(&self, name: &'static str, labels: String, elapsed: Duration) {
        if let Some(h) = self.histograms.get(&(name, labels.clone())) {
            h.observe(elapsed);
            return;
        }
        self.histograms
            .entry((name, labels))
            .or_default()
            .observe(elapsed);
    }

    /// Renders every metric, plus `gauges` (name, help, labelled values), as Prometheus
    /// text exposition format.
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if *kind == "counter" {
                let mut rows: Vec<(String, u64)> = self
                    .counters
                    .iter()
                    .filter(|e| e.key().0 == *name)
                    .map(|e| (e.key().1.clone(), e.value().load(Ordering::Relaxed)))
                    .collect();
                rows.sort();
                for (labels, value) in rows {
                    if labels.is_empty() {
                        let _ = writeln!(out, "{name} {value}");
                    } else {
                        let _ = writeln!(out, "{name}{{{labels}}} {value}");
                    }
                }
            } else {
                let mut rows: Vec<(String, Arc<Histogram>)> = self
                    .histograms
                    .iter()
                    .filter(|e| e.key().0 == *name)
                    .map(|e| (e.key().1.clone(), e.value().clone()))
                    .collect();
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                for (labels, h) in rows {
                    let mut cumulative = 0;
                    for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                        cumulative += bucket.load(Ordering::Relaxed);
                        let _ =
                            writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                    }
                    let count = h.count.load(Ordering::Relaxed);
                    let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
                    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
                    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
                }
            }
        }
        for (name, help, values) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, value) in values {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        out
    }
}
