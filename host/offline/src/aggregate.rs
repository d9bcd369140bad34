//! Aggregate features at each entity row: the backfill's caller of the window kernel
//! (`skewless-aggregate`). Events are grouped by entity key and swept in arrival order,
//! each key's entity rows read in time order, through the same `Timeline` the online
//! store drives, so the rules and the bits are the kernel's.

use std::collections::HashMap;

use skewless_aggregate::{Event, EventTime, Scalar, ViewAggregates, sweep};
use skewless_core::assemble::{ColumnBuilder, Status, ValueReader, ViewColumns};
use skewless_core::definitions::{FeatureView, Source};
use skewless_core::key::KeyColumn;

use crate::asof::FeatureRows;
use crate::{Error, Result, workers};

/// An aggregated view, ready for the kernel.
pub(crate) struct AggregatedView {
    compiled: ViewAggregates,
}

impl AggregatedView {
    /// The kernel's view of `view` (validated, so every function and column is known).
    pub(crate) fn new(view: &FeatureView, source: &Source) -> Result<Self> {
        let compiled = ViewAggregates::new(view, source)
            .map_err(|e| Error::Internal(format!("{e} after validation")))?;
        Ok(Self { compiled })
    }

    /// How far before an entity row its events can lie: the longest window and a hop.
    pub(crate) fn reach(&self) -> i64 {
        self.compiled.reach()
    }

    /// Every aggregate at each entity row (`entity_keys`, `at`) from the source's `rows`.
    pub(crate) fn join(
        &self,
        entity_keys: &KeyColumn,
        at: &[i64],
        rows: &FeatureRows,
        threads: usize,
    ) -> Result<ViewColumns> {
        let readers = self.readers(rows)?;
        // Events by key, in source order.
        let mut events: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for i in 0..rows.event_ts.len() {
            if let Some(key) = rows.keys.get(i) {
                events.entry(key).or_default().push(i);
            }
        }
        let mut entity_rows: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for r in 0..at.len() {
            if let Some(key) = entity_keys.get(r) {
                entity_rows.entry(key).or_default().push(r);
            }
        }
        // Keys split across threads; each sweeps its keys alone.
        let mut keys: Vec<(&[u8], Vec<usize>)> = entity_rows.into_iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let per = keys.len().div_ceil(threads.max(1)).max(1);
        let answered: Vec<Vec<(usize, Vec<Option<Scalar>>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = keys
                .chunks(per)
                .map(|chunk| {
                    let (events, readers) = (&events, &readers);
                    workers::spawn(scope, move || {
                        workers::fault_point("aggregate sweep");
                        self.sweep_keys(chunk, events, rows, readers, at)
                    })
                })
                .collect();
            workers::join_all("aggregate sweep", handles)
        })?
        .into_iter()
        .collect::<Result<_>>()?;
        let mut values: Vec<Option<Vec<Option<Scalar>>>> = vec![None; at.len()];
        for (r, answer) in answered.into_iter().flatten() {
            values[r] = Some(answer);
        }
        let mut builders: Vec<ColumnBuilder> = self
            .compiled
            .outputs
            .iter()
            .map(|d| ColumnBuilder::new(*d, at.len()))
            .collect();
        let mut status = Vec::with_capacity(at.len());
        let mut event_ts = Vec::with_capacity(at.len());
        for (r, row) in values.into_iter().enumerate() {
            match row {
                // A row with a null key matches nothing, as in the as-of join.
                None => {
                    builders.iter_mut().for_each(ColumnBuilder::push_null);
                    status.push(Status::NotFound);
                    event_ts.push(None);
                }
                Some(answer) => {
                    for (b, v) in builders.iter_mut().zip(&answer) {
                        match v {
                            None => b.push_null(),
                            Some(v) => b.push(v.value()),
                        }
                    }
                    // Aggregates are computed at every row: as of the row's own time.
                    status.push(Status::Present);
                    event_ts.push(Some(at[r]));
                }
            }
        }
        Ok(ViewColumns {
            columns: builders.iter_mut().map(ColumnBuilder::finish).collect(),
            status,
            event_ts,
        })
    }

    /// The aggregates of `keys`' entity rows, as (row, values).
    fn sweep_keys(
        &self,
        keys: &[(&[u8], Vec<usize>)],
        events: &HashMap<&[u8], Vec<usize>>,
        rows: &FeatureRows,
        readers: &[ValueReader<'_>],
        at: &[i64],
    ) -> Result<Vec<(usize, Vec<Option<Scalar>>)>> {
        let mut out = Vec::new();
        for (key, rows_of_key) in keys {
            let history: Vec<Event> = events
                .get(key)
                .map(|list| list.iter().map(|&i| self.event(rows, readers, i)).collect())
                .unwrap_or_default();
            let times: Vec<i64> = rows_of_key.iter().map(|&r| at[r]).collect();
            let answers = sweep(&self.compiled.spec, history, &times, self.compiled.lateness)
                .map_err(|e| {
                    Error::Definitions(format!(
                        "feature view `{}`, key {}: {e}",
                        self.compiled.name,
                        skewless_core::key::display_key(key)
                    ))
                })?;
            out.extend(rows_of_key.iter().copied().zip(answers));
        }
        Ok(out)
    }

    /// Readers of the event columns of `rows`, in the compiled view's order.
    fn readers<'r>(&self, rows: &'r FeatureRows) -> Result<Vec<ValueReader<'r>>> {
        rows.features
            .iter()
            .zip(&self.compiled.columns)
            .map(|(array, column)| {
                ValueReader::new(array, column.dtype).ok_or_else(|| {
                    Error::Internal(format!(
                        "an event column of `{}` is not in its canonical type",
                        self.compiled.name
                    ))
                })
            })
            .collect()
    }

    /// Source row `i` as a kernel event.
    fn event(&self, rows: &FeatureRows, readers: &[ValueReader<'_>], i: usize) -> Event {
        self.compiled
            .event(event_time(rows, i), |c| readers[c].value(i))
    }
}

/// Source row `i`'s times: with no arrival time (no column, or a null in it), it arrived
/// when it happened.
pub(crate) fn event_time(rows: &FeatureRows, i: usize) -> EventTime {
    let event = rows.event_ts[i];
    let created = match rows.created_ts[i] {
        i64::MIN => event,
        _ if !rows.has_created => event,
        created => created,
    };
    EventTime { event, created }
}

/// The events of aggregated `view` whose time is at or after `since` (µs), by entity key,
/// from its source's Parquet history, as the backfill reads them: what the online store
/// builds a view's tiles from. A source directory without files yet has no history.
pub fn view_history(
    project: &skewless_core::Project,
    base: &std::path::Path,
    view: &FeatureView,
    since: i64,
) -> Result<Vec<(Box<[u8]>, Event)>> {
    let source = crate::source::ViewSource::new(project, base, view)?;
    let definition = project
        .definitions()
        .source(&view.source)
        .ok_or_else(|| Error::Internal(format!("view `{}` has no source", view.name)))?;
    let compiled = AggregatedView::new(view, definition)?;
    let mut out = Vec::new();
    let scanned = source.scan(since, i64::MAX, 65_536, |batch| {
        let rows = source.rows(&batch);
        let readers = compiled.readers(&rows)?;
        for i in 0..rows.event_ts.len() {
            if let Some(key) = rows.keys.get(i) {
                out.push((Box::from(key), compiled.event(&rows, &readers, i)));
            }
        }
        Ok(())
    });
    match scanned {
        Ok(_) => Ok(out),
        Err(Error::NoFiles(_)) => Ok(Vec::new()),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}
