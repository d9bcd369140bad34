//! Aggregate features at each entity row: the backfill's caller of the window kernel
//! (`skewless-aggregate`). Events are grouped by entity key and swept in arrival order,
//! each key's entity rows read in time order, through the same `Timeline` the online
//! store will drive, so the rules and the bits are the kernel's.

use std::collections::HashMap;

use skewless_aggregate::{Aggregate, Event, EventTime, Scalar, Spec, sweep};
use skewless_core::DType;
use skewless_core::aggregation::Function;
use skewless_core::assemble::{ColumnBuilder, Status, Value, ValueReader, ViewColumns};
use skewless_core::definitions::{Feature, FeatureView, Source};
use skewless_core::key::KeyColumn;

use crate::asof::FeatureRows;
use crate::{Error, Result, workers};

/// The source columns `view`'s aggregations read, once each, in the source's order.
pub(crate) fn event_columns(view: &FeatureView, source: &Source) -> Vec<Feature> {
    source
        .columns
        .iter()
        .filter(|c| {
            view.aggregations
                .iter()
                .any(|a| a.column.as_ref() == Some(&c.name))
        })
        .cloned()
        .collect()
}

/// An aggregated view, ready for the kernel.
pub(crate) struct AggregatedView {
    name: String,
    spec: Spec,
    /// Per aggregate: the event column it reads (an index into [`event_columns`]), or
    /// none for `count` of events.
    inputs: Vec<Option<(usize, DType)>>,
    /// Per aggregate: its result dtype.
    outputs: Vec<DType>,
    /// The dtypes of [`event_columns`], in order.
    columns: Vec<DType>,
    lateness: Option<i64>,
}

impl AggregatedView {
    /// The kernel's view of `view` (validated, so every function and column is known).
    pub(crate) fn new(view: &FeatureView, source: &Source) -> Result<Self> {
        let columns = event_columns(view, source);
        let hop = view.hop.map(|h| h.micros()).ok_or_else(|| {
            Error::Internal(format!(
                "aggregated view `{}` has no hop after validation",
                view.name
            ))
        })?;
        let mut aggregates = Vec::new();
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for a in &view.aggregations {
            let function = Function::from_name(&a.function).ok_or_else(|| {
                Error::Internal(format!(
                    "unknown function `{}` after validation",
                    a.function
                ))
            })?;
            let input = match &a.column {
                None => None,
                Some(name) => {
                    let i = columns
                        .iter()
                        .position(|c| &c.name == name)
                        .ok_or_else(|| {
                            Error::Internal(format!(
                                "column `{name}` of `{}` not declared after validation",
                                view.name
                            ))
                        })?;
                    Some((i, columns[i].dtype))
                }
            };
            aggregates.push((
                Aggregate {
                    function,
                    input: input.map(|(_, d)| d),
                },
                a.window.micros(),
            ));
            outputs.push(function.output(input.map(|(_, d)| d)));
            inputs.push(input);
        }
        Ok(Self {
            name: view.name.clone(),
            spec: Spec { hop, aggregates },
            inputs,
            outputs,
            columns: columns.iter().map(|c| c.dtype).collect(),
            lateness: source.allowed_lateness.map(|l| l.micros()),
        })
    }

    /// How far before an entity row its events can lie: the longest window and a hop.
    pub(crate) fn reach(&self) -> i64 {
        let longest = self
            .spec
            .aggregates
            .iter()
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(0);
        longest.saturating_add(self.spec.hop)
    }

    /// Every aggregate at each entity row (`entity_keys`, `at`) from the source's `rows`.
    pub(crate) fn join(
        &self,
        entity_keys: &KeyColumn,
        at: &[i64],
        rows: &FeatureRows,
        threads: usize,
    ) -> Result<ViewColumns> {
        let readers: Vec<ValueReader<'_>> = rows
            .features
            .iter()
            .zip(&self.columns)
            .map(|(array, dtype)| {
                ValueReader::new(array, *dtype).ok_or_else(|| {
                    Error::Internal(format!(
                        "an event column of `{}` is not in its canonical type",
                        self.name
                    ))
                })
            })
            .collect::<Result<_>>()?;
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
                            Some(Scalar::Int(v)) => b.push(Value::Int64(*v)),
                            Some(Scalar::Float(v)) => b.push(Value::Float64(*v)),
                            Some(Scalar::Str(v)) => b.push(Value::String(v.as_ref())),
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
            let answers = sweep(&self.spec, history, &times, self.lateness).map_err(|e| {
                Error::Definitions(format!(
                    "feature view `{}`, key {}: {e}",
                    self.name,
                    skewless_core::key::display_key(key)
                ))
            })?;
            out.extend(rows_of_key.iter().copied().zip(answers));
        }
        Ok(out)
    }

    /// Source row `i` as a kernel event (a string read by several aggregates is one
    /// shared allocation).
    fn event(&self, rows: &FeatureRows, readers: &[ValueReader<'_>], i: usize) -> Event {
        let event = rows.event_ts[i];
        // No arrival time (no column, or a null in it): it arrived when it happened.
        let created = match rows.created_ts[i] {
            i64::MIN => event,
            _ if !rows.has_created => event,
            created => created,
        };
        let columns: smallvec::SmallVec<[Option<Scalar>; 8]> = readers
            .iter()
            .map(|reader| match reader.value(i) {
                Value::Int64(v) => Some(Scalar::Int(v)),
                Value::Float64(v) => Some(Scalar::Float(v)),
                Value::String(v) => Some(Scalar::Str(v.into())),
                _ => None,
            })
            .collect();
        let values = self
            .inputs
            .iter()
            .map(|input| match input {
                None => Some(Scalar::Int(1)),
                Some((c, _)) => columns[*c].clone(),
            })
            .collect();
        Event {
            at: EventTime { event, created },
            values,
        }
    }
}
