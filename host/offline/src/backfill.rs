//! Historical retrieval: an entity frame in, a training set out, through the one plan.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use skewless_core::assemble::ViewColumns;
use skewless_core::key::KeyType;
use skewless_core::{DType, Project};
use skewless_plan::ServicePlan;

use crate::asof::{KeyColumn, asof_join};
use crate::parquet_io::{read_table, write_parquet_atomic};
use crate::source::{SourceStats, column, conform, timestamps, view_rows};
use crate::{Error, Progress, Result};

/// The entity frame's time column: each row's "as of".
pub const EVENT_TIMESTAMP: &str = "event_timestamp";
/// Rows per transform call.
const CHUNK: usize = 65_536;

/// What a backfill did.
#[derive(Debug, Clone)]
pub struct BackfillStats {
    /// Entity rows written.
    pub rows: usize,
    /// Feature columns written.
    pub features: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// What reading each view's source cost, in plan order.
    pub sources: Vec<(String, SourceStats)>,
}

fn slice_view(view: &ViewColumns, start: usize, len: usize) -> ViewColumns {
    ViewColumns {
        columns: view.columns.iter().map(|c| c.slice(start, len)).collect(),
        status: view.status[start..start + len].to_vec(),
        event_ts: view.event_ts[start..start + len].to_vec(),
    }
}

/// How the output names a feature's column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnNames {
    /// `view:feature` or `transform:output`, as the online response names it.
    Qualified,
    /// The bare feature name, so that the output can be declared as a source of another
    /// view (a derived feature); two features of one name are refused.
    Plain,
}

/// Backfills `plan` for the entity frame at `entities` and writes the training set to
/// `out`: the entity frame's columns, unchanged and in order, then the service's features
/// in the online response's order, named `view:feature`. Source paths are relative to
/// `base`. A transform failure fails the backfill; `out` is replaced only when complete.
pub fn backfill(
    project: &Project,
    base: &Path,
    plan: &ServicePlan,
    entities: &Path,
    out: &Path,
    threads: usize,
    progress: &dyn Progress,
) -> Result<BackfillStats> {
    backfill_named(
        project,
        base,
        plan,
        entities,
        out,
        threads,
        ColumnNames::Qualified,
        progress,
    )
}

/// The output schema: the frame's fields, then one per feature, named as `names` says;
/// refused when a name is taken.
fn output_schema(
    frame: &Schema,
    entities: &Path,
    plan: &ServicePlan,
    names: ColumnNames,
) -> Result<Arc<Schema>> {
    let mut fields: Vec<Arc<Field>> = frame.fields().iter().cloned().collect();
    for f in &plan.features {
        let name = match names {
            ColumnNames::Qualified => &f.qualified,
            ColumnNames::Plain => &f.name,
        };
        if let Some(taken) = fields.iter().find(|field| field.name() == name) {
            let by = plan
                .features
                .iter()
                .find(|g| &g.name == taken.name() || &g.qualified == taken.name())
                .map_or_else(
                    || format!("a column of the entity frame {}", entities.display()),
                    |g| format!("feature `{}`", g.qualified),
                );
            return Err(Error::Definitions(format!(
                "the output column `{name}` of feature `{}` is already taken by {by}",
                f.qualified
            )));
        }
        fields.push(Arc::new(Field::new(name, f.dtype.arrow_type(), true)));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// [`backfill`], with the feature columns named as `names` says.
#[allow(clippy::too_many_arguments)]
pub fn backfill_named(
    project: &Project,
    base: &Path,
    plan: &ServicePlan,
    entities: &Path,
    out: &Path,
    threads: usize,
    names: ColumnNames,
    progress: &dyn Progress,
) -> Result<BackfillStats> {
    let started = Instant::now();
    let frame = read_table(entities, None, "the entity frame", None)?.batch;
    let schema = output_schema(&frame.schema(), entities, plan, names)?;
    let rows = frame.num_rows();
    let why = "the entity frame needs it";
    let at_raw = timestamps(
        entities,
        EVENT_TIMESTAMP,
        &column(&frame, entities, EVENT_TIMESTAMP, why)?,
    )?;
    let mut at = Vec::with_capacity(rows);
    for (row, t) in at_raw.iter().enumerate() {
        at.push(t.ok_or_else(|| {
            Error::Definitions(format!(
                "{}: `{EVENT_TIMESTAMP}` is null at row {row}; every entity row needs a time",
                entities.display()
            ))
        })?);
    }
    let key_arrays: Vec<ArrayRef> = plan
        .join_keys
        .iter()
        .map(|k| {
            conform(
                entities,
                &k.name,
                &column(&frame, entities, &k.name, "a join key of the service")?,
                k.dtype.dtype(),
            )
        })
        .collect::<Result<_>>()?;
    let request: Vec<ArrayRef> = plan
        .request_fields
        .iter()
        .map(|f| {
            conform(
                entities,
                &f.name,
                &column(
                    &frame,
                    entities,
                    &f.name,
                    "a request field a transform reads",
                )?,
                f.dtype,
            )
        })
        .collect::<Result<_>>()?;
    // Steps: one per view joined, then one per entity row through the transforms.
    progress.start(rows as u64 + plan.views.len() as u64);
    let (first, last) = (
        at.iter().copied().min().unwrap_or(0),
        at.iter().copied().max().unwrap_or(-1),
    );
    let mut views = Vec::with_capacity(plan.views.len());
    let mut sources = Vec::with_capacity(plan.views.len());
    for view in &plan.views {
        let def = &project.definitions.feature_views[view.index];
        // Only rows within one TTL before the earliest entity row can match.
        let min = view
            .ttl
            .micros()
            .map_or(i64::MIN, |t| first.saturating_sub(t));
        let (rows_of_view, read) = view_rows(project, base, def, min, last)?;
        let keys: Vec<(ArrayRef, KeyType)> = view
            .key_columns
            .iter()
            .map(|&k| (key_arrays[k].clone(), plan.join_keys[k].dtype))
            .collect();
        let entity_keys = KeyColumn::encode(&keys, rows);
        let dtypes: Vec<DType> = view.features.iter().map(|f| f.dtype).collect();
        views.push(asof_join(
            &entity_keys,
            &at,
            &rows_of_view,
            &dtypes,
            view.ttl,
            threads,
        ));
        tracing::info!(
            view = %view.name,
            source_rows = rows_of_view.event_ts.len(),
            row_groups_skipped = read.row_groups_skipped,
            "joined as of each entity row"
        );
        sources.push((view.name.clone(), read));
        progress.advance(1);
    }
    // Transforms over chunks, in parallel, in order.
    let chunks: Vec<(usize, usize)> = (0..rows)
        .step_by(CHUNK)
        .map(|s| (s, CHUNK.min(rows - s)))
        .collect();
    let threads = threads.max(1);
    let results: Vec<Result<Vec<ArrayRef>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|worker| {
                let (chunks, views, request, at) = (&chunks, &views, &request, &at);
                scope.spawn(move || {
                    chunks
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % threads == worker)
                        .map(|(i, &(start, len))| {
                            let chunk_views =
                                views.iter().map(|v| slice_view(v, start, len)).collect();
                            let chunk_request: Vec<ArrayRef> =
                                request.iter().map(|a| a.slice(start, len)).collect();
                            let output =
                                plan.run(len, &at[start..start + len], chunk_views, &chunk_request);
                            for call in &output.calls {
                                if let Some(e) = &call.error {
                                    return (
                                        i,
                                        Err(Error::Transform {
                                            transform: plan.transforms[call.transform].name.clone(),
                                            first: start,
                                            end: start + len,
                                            reason: e.to_string(),
                                        }),
                                    );
                                }
                            }
                            progress.advance(len as u64);
                            (i, Ok(output.columns))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Result<Vec<ArrayRef>>)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });
    let mut feature_chunks = Vec::with_capacity(results.len());
    for r in results {
        feature_chunks.push(r?);
    }
    let mut batches = Vec::with_capacity(chunks.len());
    for ((start, len), features) in chunks.iter().zip(feature_chunks) {
        let mut columns: Vec<ArrayRef> = frame
            .columns()
            .iter()
            .map(|c| c.slice(*start, *len))
            .collect();
        columns.extend(features);
        batches.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| {
            Error::Parquet {
                path: out.to_owned(),
                reason: e.to_string(),
            }
        })?);
    }
    write_parquet_atomic(out, schema, &batches)?;
    Ok(BackfillStats {
        rows,
        features: plan.features.len(),
        elapsed: started.elapsed(),
        sources,
    })
}
