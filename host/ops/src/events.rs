//! Event sources online: the schemas the store keeps, the history it builds tiles from,
//! and a push of events (checked, arrival-stamped, late ones refused per event) — the
//! one way events reach the tiles and the offline log, for every caller.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::ArrayRef;
use serde_json::Value as Json;
use skewless_aggregate::window::is_late;
use skewless_core::Project;
use skewless_online::{EventBatch, History, OnlineStore, event_schemas, online_aggregated};

use crate::json;

/// Events whose time (or stated arrival) lies further ahead of the server's clock than
/// this are refused: a wrong clock or unit, never data.
pub const MAX_FUTURE_MICROS: i64 = 5 * 60 * 1_000_000;

/// The history the store builds an aggregated view's tiles from: its source's Parquet
/// (the offline log and any history put there), read as the backfill reads it.
pub fn history(project: Arc<Project>, root: PathBuf) -> History {
    Arc::new(move |_schema, view, since| {
        let definition = project
            .definitions()
            .feature_views
            .iter()
            .find(|v| v.name == view.name())
            .ok_or_else(|| format!("view `{}` is not in the definitions", view.name()))?;
        skewless_offline::view_history(&project, &root, definition, since)
            .map_err(|e| e.to_string())
    })
}

/// Tells `store` the event sources of `project` (tiles of new views built from history).
pub fn set_event_sources(
    store: &dyn OnlineStore,
    project: &Arc<Project>,
    root: &Path,
) -> Result<(), skewless_online::Error> {
    let schemas = event_schemas(project, root).map_err(skewless_online::Error::Internal)?;
    store.set_event_sources(&schemas, history(project.clone(), root.to_owned()), &[])
}

/// Builds the tiles of the online aggregated views `views` again from their sources'
/// history (as materialization loads rows): for history added to a source's path since
/// the server started. A name that is not an online aggregated view is an error.
pub fn rebuild_tiles(
    store: &dyn OnlineStore,
    project: &Arc<Project>,
    root: &Path,
    views: &[String],
) -> Result<(), skewless_online::Error> {
    let schemas = event_schemas(project, root).map_err(skewless_online::Error::Internal)?;
    for name in views {
        if !schemas
            .iter()
            .flat_map(|s| &s.views)
            .any(|v| v.name() == name)
        {
            return Err(skewless_online::Error::UnknownView(name.clone()));
        }
    }
    store.set_event_sources(&schemas, history(project.clone(), root.to_owned()), views)
}

/// Why a push of events was refused; nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The events do not fit the source (the message names the column and row).
    #[error("{0}")]
    Invalid(String),
    /// The store could not take them.
    #[error(transparent)]
    Store(#[from] skewless_online::Error),
}

impl PushError {
    /// Who is at fault.
    pub fn fault(&self) -> skewless_core::Fault {
        match self {
            PushError::Invalid(_) => skewless_core::Fault::Caller,
            PushError::Store(e) => e.fault(),
        }
    }
}

/// What a push of events did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Events stored (durable, in the tiles, bound for the offline log).
    pub accepted: usize,
    /// Events refused as later than the source's allowed lateness (arrival − event time);
    /// the backfill drops the same events.
    pub late: usize,
}

/// Pushes events given as JSON columns (`columns[name][row]`) to event source `source`:
/// every join key, the event time and each declared column must be there (the created
/// time too when a replay states arrivals; otherwise the server's clock, `now`, stamps
/// them). Events too late are refused one by one and counted; anything else wrong
/// refuses the whole push, naming the column and row, and stores nothing.
pub fn push_events(
    store: &dyn OnlineStore,
    project: &Project,
    root: &Path,
    source: &str,
    columns: &HashMap<String, Vec<Json>>,
    now: i64,
) -> Result<Pushed, PushError> {
    let invalid = PushError::Invalid;
    let d = project.definitions();
    let src = d
        .source(source)
        .ok_or_else(|| invalid(format!("unknown source `{source}`")))?;
    let views = online_aggregated(project, source);
    let schema = skewless_online::event_schema(project, root, src, &views)
        .map_err(skewless_online::Error::Internal)?;
    let column = |name: &str| {
        columns.get(name).ok_or_else(|| {
            invalid(format!(
                "columns.{name} is missing (events of source `{source}` need it)"
            ))
        })
    };
    let ts = column(&src.timestamp_field)?;
    let rows = ts.len();
    if let Some((name, values)) = columns.iter().find(|(_, v)| v.len() != rows) {
        return Err(invalid(format!(
            "columns.{name} has {} values, columns.{} has {rows}: every column needs one value per event",
            values.len(),
            src.timestamp_field
        )));
    }
    for name in columns.keys() {
        let known = *name == src.timestamp_field
            || *name == schema.created_field
            || schema.columns.iter().any(|(n, _)| n == name);
        if !known {
            return Err(invalid(format!(
                "columns.{name} is not a join key, timestamp or declared column of event source `{source}`"
            )));
        }
    }
    let times = |name: &str, values: &[Json]| -> Result<Vec<i64>, PushError> {
        values
            .iter()
            .enumerate()
            .map(|(row, v)| {
                let t = json::parse_timestamp(v)
                    .map_err(|e| invalid(format!("columns.{name}[{row}]: {e}")))?;
                if t > now.saturating_add(MAX_FUTURE_MICROS) {
                    return Err(invalid(format!(
                        "columns.{name}[{row}]: {} is more than 5 minutes ahead of the server's clock ({}); send event times in UTC (integers are microseconds)",
                        json::format_timestamp(t),
                        json::format_timestamp(now)
                    )));
                }
                Ok(t)
            })
            .collect()
    };
    let event_ts = times(&src.timestamp_field, ts)?;
    // Arrivals the push does not state are stamped by the store as it takes the events;
    // `now` is the earliest that stamp can be, and so decides lateness first.
    let given = match columns.get(&schema.created_field) {
        Some(values) => Some(times(&schema.created_field, values)?),
        None => None,
    };
    let created_ts = given.clone().unwrap_or_else(|| vec![now; rows]);
    if let Some(missing) = skewless_online::cannot_log(src) {
        return Err(invalid(format!(
            "source `{source}` feeds aggregated views, and to take pushes it needs {missing}"
        )));
    }
    // Without a lateness no event is too late.
    let lateness = src.allowed_lateness.map_or(i64::MAX, |l| l.micros());
    let keep: Vec<usize> = (0..rows)
        .filter(|&i| !is_late(event_ts[i], created_ts[i], lateness))
        .collect();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.columns.len());
    for (i, (name, dtype)) in schema.columns.iter().enumerate() {
        let values: Vec<Json> = keep
            .iter()
            .map(|&r| {
                column(name)?
                    .get(r)
                    .cloned()
                    .ok_or_else(|| invalid(format!("columns.{name}: too short")))
            })
            .collect::<Result<_, _>>()?;
        // The first columns are the join keys: every value there and of the key's type.
        let array = match schema.keys.get(i) {
            Some(key_type) => json::key_column(&values, *key_type),
            None => json::column(&values, *dtype),
        };
        // Rows are renumbered by `keep`: name the pushed row, not the kept one.
        arrays.push(array.map_err(|e| invalid(format!("columns.{name}{}", renumber(&e, &keep))))?);
    }
    let mut accepted = keep.len();
    if accepted > 0 {
        accepted -= store.append_events(
            source,
            EventBatch {
                event_ts: keep.iter().map(|&i| event_ts[i]).collect(),
                created_ts: given.map(|c| keep.iter().map(|&i| c[i]).collect()),
                columns: arrays,
            },
        )?;
    }
    Ok(Pushed {
        accepted,
        late: rows - accepted,
    })
}

/// An error of the form `[k]: ...` about kept row `k`, about pushed row `keep[k]`.
fn renumber(error: &str, keep: &[usize]) -> String {
    if let Some(rest) = error.strip_prefix('[')
        && let Some((k, tail)) = rest.split_once(']')
        && let Ok(k) = k.parse::<usize>()
        && let Some(row) = keep.get(k)
    {
        return format!("[{row}]{tail}");
    }
    error.to_owned()
}
