//! Health and Prometheus metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Shared, on_store, quality};
use crate::metrics::labels;

/// Liveness and readiness in one: `status` is `ok`, or `degraded` while the online store
/// refuses writes (a full disk); the server still serves reads then.
pub(super) async fn healthz(State(state): Shared) -> Response {
    let serving = state.serving();
    // No store round trip: health is asked often, and a remote store answers `None`.
    let writable = state.store.writable();
    axum::Json(json!({
        "status": if writable == Some(false) { "degraded" } else { "ok" },
        "store": {"writable": writable},
        "project": serving.project.as_ref().map(|p| p.definitions().project.clone()),
        "feature_services": serving.services.len(),
        "modules": state.registry.modules().len(),
    }))
    .into_response()
}

pub(super) async fn metrics(State(state): Shared) -> Response {
    let stats = on_store(&state, |s| s.stats());
    let mut gauges = vec![
        (
            "skewless_online_rows",
            "Rows held in the online store, by feature view.",
            stats
                .rows
                .iter()
                .map(|(view, n)| (labels(&[("view", view)]), *n as f64))
                .collect(),
        ),
        (
            "skewless_online_bytes",
            "Bytes of keys and rows held in the online store, by feature view.",
            stats
                .bytes
                .iter()
                .map(|(view, n)| (labels(&[("view", view)]), *n as f64))
                .collect(),
        ),
        (
            "skewless_wal_bytes_since_snapshot",
            "Write-ahead log bytes written since the last snapshot began (what a restart replays).",
            vec![(String::new(), stats.wal_bytes_since_snapshot as f64)],
        ),
        (
            "skewless_wal_pending_writes",
            "Writes waiting for the write-ahead log (group commit queue).",
            vec![(String::new(), stats.wal_pending_writes as f64)],
        ),
        (
            "skewless_online_writable",
            "1 while the online store takes writes, 0 while its log refuses them (a full disk).",
            state
                .store
                .writable()
                .map(|w| vec![(String::new(), f64::from(u8::from(w)))])
                .unwrap_or_default(),
        ),
        (
            "skewless_online_failed_writes",
            "Writes the online store refused since start because its log could not take them.",
            vec![(String::new(), stats.failed_writes as f64)],
        ),
        (
            "skewless_snapshots",
            "Online store snapshots completed since start.",
            vec![(String::new(), stats.snapshots as f64)],
        ),
        (
            "skewless_aggregate_keys",
            "Entity keys with aggregate tiles online, by aggregated feature view.",
            aggregate(&stats, |c| c.keys),
        ),
        (
            "skewless_aggregate_tiles",
            "Hop tiles held online, by aggregated feature view.",
            aggregate(&stats, |c| c.tiles),
        ),
        (
            "skewless_aggregate_raw_events",
            "Events held raw online (their tile not sealed yet: younger than the allowed lateness), by aggregated feature view.",
            aggregate(&stats, |c| c.raw_events),
        ),
        (
            "skewless_events_unflushed",
            "Pushed events logged but not yet written to their source's offline log.",
            vec![(String::new(), stats.events_unflushed as f64)],
        ),
    ];
    gauges.extend(quality::drift_gauges(&state));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
        .into_response()
}

fn aggregate(
    stats: &skewless_online::StoreStats,
    count: impl Fn(&skewless_online::AggregateCounts) -> u64,
) -> Vec<(String, f64)> {
    stats
        .aggregates
        .iter()
        .map(|(view, c)| (labels(&[("view", view)]), count(c) as f64))
        .collect()
}
