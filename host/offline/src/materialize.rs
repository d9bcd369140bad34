//! Materialization: the latest row per entity in a time window, from a view's Parquet
//! source into an online store.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, UInt32Array};
use skewless_core::Project;
use skewless_online::{OnlineStore, WriteBatch};

use crate::asof::FeatureRows;
use crate::source::{SourceStats, source_path, view_rows};
use crate::{Error, Progress, Result, workers};

/// Rows per store write: a write is one log record group and one fsync.
const WRITE_ROWS: usize = 65_536;

/// One view to materialize over `start..=end` (microseconds since the epoch, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The feature view.
    pub view: String,
    /// The earliest event time loaded.
    pub start: i64,
    /// The latest event time loaded.
    pub end: i64,
}

/// What materializing one view did.
#[derive(Debug, Clone)]
pub struct ViewMaterialized {
    /// The window.
    pub window: Window,
    /// Source rows in the window.
    pub rows_in_window: usize,
    /// Entity rows written to the store (one per entity key).
    pub rows_written: usize,
    /// What reading the source cost.
    pub source: SourceStats,
}

/// What a materialization did.
#[derive(Debug, Clone)]
pub struct MaterializeStats {
    /// One entry per view, in the order given.
    pub views: Vec<ViewMaterialized>,
    /// Wall time.
    pub elapsed: Duration,
}

impl MaterializeStats {
    /// Source rows in every window, summed.
    pub fn rows_in_windows(&self) -> usize {
        self.views.iter().map(|v| v.rows_in_window).sum()
    }

    /// Rows written, summed.
    pub fn rows_written(&self) -> usize {
        self.views.iter().map(|v| v.rows_written).sum()
    }
}

/// The windows to materialize: `views` (every online view of stored rows when empty) from `start` to
/// `end`. Without `start` (incremental), each view starts at its watermark, or one TTL
/// before `end` when it has none (the whole history for an unlimited TTL).
pub fn plan_windows(
    project: &Project,
    views: &[String],
    start: Option<i64>,
    end: i64,
    watermark: impl Fn(&str) -> Option<i64>,
) -> Result<Vec<Window>> {
    let defs = &project.definitions();
    let start_given = start.is_some();
    let names: Vec<&str> = if views.is_empty() {
        defs.feature_views
            .iter()
            .filter(|v| v.online && !v.is_aggregated())
            .map(|v| v.name.as_str())
            .collect()
    } else {
        views.iter().map(String::as_str).collect()
    };
    names
        .into_iter()
        .map(|name| {
            let view = defs
                .view_index(name)
                .map(|i| &defs.feature_views[i])
                .ok_or_else(|| Error::Definitions(format!("no feature view `{name}`")))?;
            if view.is_aggregated() {
                return Err(Error::Definitions(format!(
                    "view `{name}` is aggregated: its tiles are built from its source's history when the server starts and when the view is applied, so there is nothing to materialize"
                )));
            }
            let mark = watermark(name);
            let start = start.or(mark).unwrap_or_else(|| {
                view.ttl
                    .micros()
                    .map_or(i64::MIN, |ttl| end.saturating_sub(ttl))
            });
            if start > end {
                let (s, e) = (
                    skewless_core::format_timestamp(start),
                    skewless_core::format_timestamp(end),
                );
                return Err(Error::Definitions(match (start_given, mark) {
                    (false, Some(_)) => format!(
                        "view `{name}` is materialized up to {s}, after `end` {e}: nothing to load; give an `end` after it, or a `start` to load again from an earlier time"
                    ),
                    _ => format!("view `{name}`: the window starts at {s}, after its end {e}"),
                }));
            }
            Ok(Window {
                view: name.to_owned(),
                start,
                end,
            })
        })
        .collect()
}

/// The winning row of each entity key: the latest event time, then the larger created
/// time, then the later source row (the backfill's and the store's order). Returned in
/// source order, so the result is the same on any number of threads.
fn latest_per_key(rows: &FeatureRows, threads: usize) -> Result<Vec<u32>> {
    let threads = threads.max(1);
    let part_of = |key: &[u8]| (skewless_core::key::fnv1a(key) % threads as u64) as usize;
    let beats = |a: usize, b: usize| {
        (rows.event_ts[a], rows.created_ts[a], a) > (rows.event_ts[b], rows.created_ts[b], b)
    };
    let winners: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|part| {
                workers::spawn(scope, move || {
                    workers::fault_point("latest row");
                    let mut best: HashMap<&[u8], u32> = HashMap::new();
                    for i in 0..rows.keys.len() {
                        let Some(key) = rows.keys.get(i) else {
                            continue;
                        };
                        if part_of(key) != part {
                            continue;
                        }
                        best.entry(key)
                            .and_modify(|w| {
                                if beats(i, *w as usize) {
                                    *w = i as u32;
                                }
                            })
                            .or_insert(i as u32);
                    }
                    best.into_values().collect::<Vec<u32>>()
                })
            })
            .collect();
        workers::join_all("latest row", handles)
    })?;
    let mut winners = winners.concat();
    winners.sort_unstable();
    Ok(winners)
}

/// Loads each window's latest row per entity from the view's Parquet source (paths
/// relative to `base`) into `store`. Views are validated before anything is written; each
/// write returns once durable, so a failure part-way leaves whole batches written, and
/// running the same window again is harmless (the store keeps the newer row).
pub fn materialize(
    project: &Project,
    base: &Path,
    store: &dyn OnlineStore,
    windows: &[Window],
    threads: usize,
    progress: &dyn Progress,
) -> Result<MaterializeStats> {
    let started = Instant::now();
    let defs = &project.definitions();
    let mut views = Vec::with_capacity(windows.len());
    for w in windows {
        let view = defs
            .view_index(&w.view)
            .map(|i| &defs.feature_views[i])
            .ok_or_else(|| Error::Definitions(format!("no feature view `{}`", w.view)))?;
        if !view.online {
            return Err(Error::Definitions(format!(
                "feature view `{}` is not online (`online: false`): nothing to materialize",
                w.view
            )));
        }
        if w.start > w.end {
            return Err(Error::Definitions(format!(
                "feature view `{}`: the window starts after it ends",
                w.view
            )));
        }
        source_path(project, base, view)?;
        views.push(view);
    }
    let mut done = Vec::with_capacity(windows.len());
    for (w, view) in windows.iter().zip(views) {
        let (rows, source) = view_rows(project, base, view, w.start, w.end)?;
        let winners = latest_per_key(&rows, threads)?;
        progress.start(winners.len() as u64);
        for chunk in winners.chunks(WRITE_ROWS) {
            let indices = UInt32Array::from(chunk.to_vec());
            let features = rows
                .features
                .iter()
                .map(|a| {
                    arrow_select::take::take(a, &indices, None).map_err(|source| Error::Arrow {
                        context: format!("the latest rows of feature view `{}`", w.view),
                        source,
                    })
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            let batch = WriteBatch {
                keys: chunk
                    .iter()
                    .map(|&i| {
                        // Winners are rows with a key: `latest_per_key` skips the others.
                        Box::from(rows.keys.get(i as usize).expect("a winner has a key"))
                    })
                    .collect(),
                event_ts: chunk.iter().map(|&i| rows.event_ts[i as usize]).collect(),
                created_ts: rows
                    .has_created
                    .then(|| chunk.iter().map(|&i| rows.created_ts[i as usize]).collect()),
                features,
            };
            store.write(&w.view, batch).map_err(|source| Error::Store {
                view: w.view.clone(),
                source,
            })?;
            progress.advance(chunk.len() as u64);
        }
        tracing::info!(
            view = %w.view,
            rows_in_window = rows.event_ts.len(),
            rows_written = winners.len(),
            row_groups_skipped = source.row_groups_skipped,
            "materialized"
        );
        done.push(ViewMaterialized {
            window: w.clone(),
            rows_in_window: rows.event_ts.len(),
            rows_written: winners.len(),
            source,
        });
    }
    Ok(MaterializeStats {
        views: done,
        elapsed: started.elapsed(),
    })
}
