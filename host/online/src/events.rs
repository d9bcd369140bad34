//! Event sources in the online store: what the store is told of them, and what it takes.
//!
//! Events pushed to a source are logged (one write-ahead log record per append, fsynced
//! before the answer), folded into the hop tiles of every online aggregated view the source
//! feeds, and later flushed to the source's offline log, Parquet files named by the log
//! sequence numbers they hold (`events-{first}-{last}.parquet`), so that the next backfill
//! reads exactly the events that were served. A log segment is deleted only after the
//! events in it are in the offline log; recovery flushes whatever a crash left unflushed,
//! and the file names make that idempotent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::HashMap;

use arrow_array::ArrayRef;
use skewless_aggregate::{Event, EventTime, ReadError, Timeline, ViewAggregates};
use skewless_core::assemble::Value;
use skewless_core::definitions::{FeatureView, Source};
use skewless_core::key::{KeyBuf, KeyType};
use skewless_core::{DType, Project};

use crate::{Error, row};

/// An event source as the online store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// The source's name.
    pub source: String,
    /// The directory of its offline log (the source's Parquet `path`).
    pub log_dir: PathBuf,
    /// The event-time column of the offline log.
    pub timestamp_field: String,
    /// The arrival-time column of the offline log.
    pub created_field: String,
    /// The columns every event carries besides its times, in order: the join keys of
    /// every aggregated view on the source, then the source's declared columns.
    pub columns: Vec<(String, DType)>,
    /// The types of the join keys, the first of `columns`.
    pub keys: Vec<KeyType>,
    /// The source's allowed lateness, µs: an event arriving later than this after its
    /// event time is refused (none: no event is too late).
    pub lateness: Option<i64>,
    /// The online aggregated views the source feeds.
    pub views: Vec<Arc<EventView>>,
}

impl EventSchema {
    /// The dtypes of [`EventSchema::columns`].
    pub fn dtypes(&self) -> Vec<DType> {
        self.columns.iter().map(|(_, d)| *d).collect()
    }
}

/// One online aggregated view of an event source.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView {
    /// What it computes (its name is the view's).
    pub aggregates: ViewAggregates,
    /// Per join key of the view, in order: its index into the source's columns and type.
    pub keys: Vec<(usize, KeyType)>,
    /// Per column the aggregates read (`aggregates.columns`): its index into the source's
    /// columns.
    pub inputs: Vec<usize>,
    /// The source's allowed lateness, µs: tiles are sealed this long after they end.
    pub lateness: i64,
}

impl EventView {
    /// The view's name.
    pub fn name(&self) -> &str {
        &self.aggregates.name
    }

    /// A stable hash of what shapes its results; reads planned under another are refused.
    pub fn fingerprint(&self) -> u64 {
        let mut text = format!("{:x};", self.aggregates.fingerprint());
        for (i, k) in &self.keys {
            text.push_str(&format!("key={i}:{};", k.name()));
        }
        for i in &self.inputs {
            text.push_str(&format!("in={i};"));
        }
        skewless_core::key::fnv1a(text.as_bytes())
    }
}

impl EventView {
    /// Seals what the lateness allows as of `now`, and drops what no read can reach.
    pub(crate) fn settle(&self, timeline: &mut Timeline, now: i64) {
        let spec = &self.aggregates.spec;
        timeline.seal(spec, now.saturating_sub(self.lateness));
        timeline.expire(spec, timeline.earliest(self.lateness));
    }

    /// The entity key of an encoded event (a row of the source's columns `dtypes`) into
    /// `key`; false for a null key, which matches nothing, as offline.
    pub(crate) fn row_key(
        &self,
        dtypes: &[DType],
        row: &[u8],
        key: &mut KeyBuf,
    ) -> Result<bool, String> {
        key.clear();
        for &(c, key_type) in &self.keys {
            match row::value(row, dtypes, c)? {
                Value::Int64(v) => key.push_int(v),
                Value::String(v) => key.push_str(v),
                Value::Null => return Ok(false),
                other => {
                    return Err(format!(
                        "join key column {c} holds {other:?}, not a {}",
                        key_type.name()
                    ));
                }
            }
        }
        Ok(true)
    }

    /// The kernel's event of an encoded event.
    pub(crate) fn row_event(&self, dtypes: &[DType], row: &[u8]) -> Result<Event, String> {
        let at = EventTime {
            event: row::event_ts(row),
            created: row::created_ts(row),
        };
        let mut broken = None;
        let event = self.aggregates.event(at, |i| {
            row::value(row, dtypes, self.inputs[i]).unwrap_or_else(|why| {
                broken.get_or_insert(why);
                Value::Null
            })
        });
        broken.map_or(Ok(event), Err)
    }

    /// A read's refusal as the store reports it.
    pub(crate) fn read_failed(&self, at: i64, e: ReadError) -> Error {
        let view = self.name().to_owned();
        match e {
            ReadError::TooOld { earliest } => Error::TooOld {
                view,
                reason: format!(
                    "asked as of {}, but its tiles answer from {} on; use a backfill for earlier times",
                    skewless_core::format_timestamp(at),
                    skewless_core::format_timestamp(earliest)
                ),
            },
            ReadError::Finalize(skewless_aggregate::Error::Inconsistent) => Error::CorruptRow {
                view,
                reason: skewless_aggregate::Error::Inconsistent.to_string(),
            },
            ReadError::Finalize(e) => Error::Aggregate {
                view,
                reason: e.to_string(),
            },
        }
    }

    /// Every entity's timeline built from `history` as of `now` (late events dropped, as
    /// pushes refuse them).
    pub(crate) fn timelines(
        &self,
        history: Vec<KeyedEvent>,
        now: i64,
    ) -> HashMap<Box<[u8]>, Timeline> {
        let spec = &self.aggregates.spec;
        let mut out: HashMap<Box<[u8]>, Timeline> = HashMap::new();
        for (key, event) in history {
            let late = skewless_aggregate::window::is_late(
                event.at.event,
                event.at.created,
                self.lateness,
            );
            if !late {
                out.entry(key).or_default().insert(spec, event);
            }
        }
        for timeline in out.values_mut() {
            self.settle(timeline, now);
        }
        out
    }
}

/// Events to append to a source: times, then one array per [`EventSchema::columns`] entry,
/// of the canonical Arrow types.
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// Each event's time, µs since the epoch.
    pub event_ts: Vec<i64>,
    /// Each event's arrival time, µs, when the caller states them (a replay of history);
    /// `None`: the store stamps each event's arrival with its clock as it takes the
    /// event, after reads of its entity wait for it, so that no read at a later time can
    /// miss an event the backfill at that time counts. Events that stamp makes later than
    /// the source's allowed lateness are refused and counted (see
    /// [`OnlineStore::append_events`](crate::OnlineStore::append_events)).
    pub created_ts: Option<Vec<i64>>,
    /// The columns, in the schema's order.
    pub columns: Vec<ArrayRef>,
}

impl EventBatch {
    /// The encoder of this batch's events as rows of a source with columns `dtypes`;
    /// refuses a batch of uneven lengths or of other columns.
    pub(crate) fn encoder(
        &self,
        source: &str,
        dtypes: &[DType],
    ) -> Result<row::RowEncoder<'_>, Error> {
        let rows = self.event_ts.len();
        let invalid = |reason: String| Error::InvalidBatch {
            view: source.to_owned(),
            reason,
        };
        let uneven = self.created_ts.as_ref().is_some_and(|c| c.len() != rows)
            || self.columns.iter().any(|c| c.len() != rows);
        if uneven {
            return Err(invalid("times and event columns differ in length".into()));
        }
        row::RowEncoder::new(&self.columns, dtypes).ok_or_else(|| {
            invalid(format!(
                "{} event columns given, the source has {} (or one is not of its dtype's canonical Arrow type)",
                self.columns.len(),
                dtypes.len()
            ))
        })
    }

    /// Events `range` as rows; an event without a stated arrival gets the earliest time
    /// until the store stamps it.
    pub(crate) fn rows(
        &self,
        encoder: &row::RowEncoder<'_>,
        range: std::ops::Range<usize>,
    ) -> Vec<Box<[u8]>> {
        let created = |i: usize| self.created_ts.as_ref().map_or(i64::MIN, |c| c[i]);
        range
            .map(|i| encoder.encode(i, self.event_ts[i], created(i)))
            .collect()
    }
}

/// Stamps `rows`' arrival with the clock now; takes out and returns those the stamp
/// makes later than `lateness`.
pub(crate) fn stamp(rows: &mut Vec<Box<[u8]>>, lateness: Option<i64>) -> Vec<Box<[u8]>> {
    let now = skewless_core::now_micros();
    for row in rows.iter_mut() {
        row::set_created_ts(row, now);
    }
    let Some(lateness) = lateness else {
        return Vec::new();
    };
    let (kept, late): (Vec<_>, Vec<_>) = std::mem::take(rows)
        .into_iter()
        .partition(|r| !skewless_aggregate::window::is_late(row::event_ts(r), now, lateness));
    *rows = kept;
    late
}

/// One entity's event from history, for a view's tiles: its encoded key and the event.
pub type KeyedEvent = (Box<[u8]>, Event);

/// Reads a view's history from the offline log (every event whose time is at or after
/// the given µs), to build its tiles. Called by the store with no append in between, so
/// the history and the appends that follow are disjoint and complete.
pub type History =
    Arc<dyn Fn(&EventSchema, &EventView, i64) -> Result<Vec<KeyedEvent>, String> + Send + Sync>;

/// The online aggregated views of `source` in `project`, in the definitions' order.
pub fn online_aggregated<'p>(project: &'p Project, source: &str) -> Vec<&'p FeatureView> {
    project
        .definitions()
        .feature_views
        .iter()
        .filter(|v| v.source == source && v.online && v.is_aggregated())
        .collect()
}

/// What `source` lacks to keep pushed events in an offline log, if anything: pushes to a
/// source that feeds aggregated views must reach the backfill.
pub fn cannot_log(source: &Source) -> Option<&'static str> {
    if source.created_timestamp_field.is_none() {
        Some("a `created_timestamp_field` (the server stamps each event's arrival there)")
    } else if source
        .path
        .as_deref()
        .is_none_or(|p| p.ends_with(".parquet"))
    {
        Some("a directory `path` (pushed events are added to it as Parquet files)")
    } else {
        None
    }
}

/// The event sources of `project` as the store keeps them: each source feeding an online
/// aggregated view, or an offline one while it takes pushes it can log; source paths are
/// resolved against `root`.
pub fn event_schemas(project: &Project, root: &Path) -> Result<Vec<EventSchema>, String> {
    let d = project.definitions();
    let mut out = Vec::new();
    for source in &d.sources {
        let feeds_aggregates = d
            .feature_views
            .iter()
            .any(|v| v.source == source.name && v.is_aggregated());
        let views = online_aggregated(project, &source.name);
        let logs = source.push && cannot_log(source).is_none();
        if feeds_aggregates && (logs || !views.is_empty()) {
            out.push(event_schema(project, root, source, &views)?);
        }
    }
    Ok(out)
}

/// The event schema of `source`, feeding `views` (its online aggregated views, maybe
/// none). A source that takes no pushes has no log to write; its fields then name what
/// it would be.
pub fn event_schema(
    project: &Project,
    root: &Path,
    source: &Source,
    views: &[&FeatureView],
) -> Result<EventSchema, String> {
    let d = project.definitions();
    let broken = |what: &str| format!("source `{}`: {what} after validation", source.name);
    let path = source.path.as_deref().unwrap_or_default();
    let created = source.created_timestamp_field.clone().unwrap_or_default();
    let lateness = source.allowed_lateness.map(|l| l.micros());
    // The log keeps the join keys of every aggregated view on the source, served or not:
    // the backfill reads them all from it.
    let mut columns: Vec<(String, DType)> = Vec::new();
    let mut keys = Vec::new();
    let aggregated = d
        .feature_views
        .iter()
        .filter(|v| v.source == source.name && v.is_aggregated());
    for view in aggregated {
        for key in d.view_join_keys(view) {
            if !columns.iter().any(|(n, _)| *n == key.name) {
                columns.push((key.name.clone(), key.dtype.dtype()));
                keys.push(key.dtype);
            }
        }
    }
    let key_count = columns.len();
    columns.extend(source.columns.iter().map(|c| (c.name.clone(), c.dtype)));
    let position = |name: &str| columns.iter().position(|(n, _)| n == name);
    let mut event_views = Vec::new();
    for view in views {
        let aggregates = ViewAggregates::new(view, source).map_err(|e| broken(&e))?;
        let keys = d
            .view_join_keys(view)
            .iter()
            .map(|k| {
                position(&k.name)
                    .filter(|&i| i < key_count)
                    .map(|i| (i, k.dtype))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| broken("a join key missing from the event columns"))?;
        let inputs = aggregates
            .columns
            .iter()
            .map(|c| position(&c.name).filter(|&i| i >= key_count))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| broken("an aggregated column missing from the event columns"))?;
        event_views.push(Arc::new(EventView {
            aggregates,
            keys,
            inputs,
            lateness: lateness.ok_or_else(|| broken("no allowed_lateness"))?,
        }));
    }
    Ok(EventSchema {
        lateness,
        source: source.name.clone(),
        log_dir: root.join(path),
        timestamp_field: source.timestamp_field.clone(),
        created_field: created,
        columns,
        keys,
        views: event_views,
    })
}
