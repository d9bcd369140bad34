//! Historical retrieval: an entity frame in, a training set out, through the one plan.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use skewless_core::assemble::ViewColumns;
use skewless_core::key::KeyType;
use skewless_core::{DType, Project};
use skewless_plan::ServicePlan;

use crate::asof::{FeatureRows, KeyColumn, asof_join};
use crate::parquet_io::{read_parquet, write_parquet_atomic};
use crate::{Error, Result};

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
}

fn conform(path: &Path, column: &str, array: &ArrayRef, dtype: DType) -> Result<ArrayRef> {
    if !dtype.accepts(array.data_type()) {
        return Err(Error::WrongType {
            path: path.to_owned(),
            column: column.to_owned(),
            found: array.data_type().to_string(),
            expected: dtype.name().to_owned(),
        });
    }
    dtype.to_canonical(array).map_err(|e| Error::WrongType {
        path: path.to_owned(),
        column: column.to_owned(),
        found: format!("{} ({e})", array.data_type()),
        expected: dtype.name().to_owned(),
    })
}

/// One table read from a Parquet path: its batches concatenated.
fn read_table(path: &Path, columns: Option<&[&str]>, why: &str) -> Result<RecordBatch> {
    let files = read_parquet(path, columns, why)?;
    let mut batches = Vec::new();
    for (_, b) in files {
        batches.extend(b);
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => {
            // Files without rows: read the schema alone.
            let files = crate::parquet_io::parquet_files(path)?;
            let file = std::fs::File::open(&files[0]).map_err(|source| Error::Io {
                path: files[0].clone(),
                source,
            })?;
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| Error::Parquet {
                        path: files[0].clone(),
                        reason: e.to_string(),
                    })?;
            let schema = builder.schema().clone();
            match columns {
                Some(names) => Arc::new(
                    schema
                        .project(
                            &names
                                .iter()
                                .filter_map(|n| schema.index_of(n).ok())
                                .collect::<Vec<_>>(),
                        )
                        .map_err(|e| Error::Parquet {
                            path: path.to_owned(),
                            reason: e.to_string(),
                        })?,
                ),
                None => schema,
            }
        }
    };
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| Error::Parquet {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn column(table: &RecordBatch, path: &Path, name: &str, why: &str) -> Result<ArrayRef> {
    table
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| Error::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            why: why.to_owned(),
        })
}

fn timestamps(path: &Path, name: &str, array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let array = conform(path, name, array, DType::Timestamp)?;
    Ok(array
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .collect())
}

/// Reads a view's source rows: join keys, times and features, in source order. Rows
/// without an event time or with a null key part can never match and are dropped.
fn feature_rows(
    project: &Project,
    base: &Path,
    plan: &ServicePlan,
    view: &skewless_plan::ViewPlan,
) -> Result<FeatureRows> {
    let defs = &project.definitions;
    let source = defs.source(&view.source).ok_or_else(|| {
        Error::Definitions(format!(
            "view `{}`: unknown source `{}`",
            view.name, view.source
        ))
    })?;
    let rel = source.path.as_deref().ok_or_else(|| {
        Error::Definitions(format!(
            "source `{}` of view `{}` has no `path`: a backfill reads Parquet history",
            source.name, view.name
        ))
    })?;
    let path = base.join(rel);
    let keys: Vec<_> = view
        .key_columns
        .iter()
        .map(|&k| plan.join_keys[k].clone())
        .collect();
    let mut names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    names.push(&source.timestamp_field);
    if let Some(created) = &source.created_timestamp_field {
        names.push(created);
    }
    names.extend(view.features.iter().map(|f| f.name.as_str()));
    let why = format!("feature view `{}`", view.name);
    let table = read_table(&path, Some(&names), &why)?;
    let key_columns: Vec<(ArrayRef, KeyType)> = keys
        .iter()
        .map(|k| {
            Ok((
                conform(
                    &path,
                    &k.name,
                    &column(&table, &path, &k.name, &why)?,
                    k.dtype.dtype(),
                )?,
                k.dtype,
            ))
        })
        .collect::<Result<_>>()?;
    let ts = timestamps(
        &path,
        &source.timestamp_field,
        &column(&table, &path, &source.timestamp_field, &why)?,
    )?;
    let created = match &source.created_timestamp_field {
        Some(name) => timestamps(&path, name, &column(&table, &path, name, &why)?)?,
        None => vec![None; table.num_rows()],
    };
    let features = view
        .features
        .iter()
        .map(|f| {
            conform(
                &path,
                &f.name,
                &column(&table, &path, &f.name, &why)?,
                f.dtype,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    // Keep rows with an event time; a null created time loses every tie.
    let keep: Vec<u32> = (0..table.num_rows())
        .filter(|&i| ts[i].is_some())
        .map(|i| i as u32)
        .collect();
    let take = |a: &ArrayRef| -> Result<ArrayRef> {
        if keep.len() == a.len() {
            return Ok(a.clone());
        }
        arrow_select::take::take(a, &arrow_array::UInt32Array::from(keep.clone()), None).map_err(
            |e| Error::Parquet {
                path: path.clone(),
                reason: e.to_string(),
            },
        )
    };
    let key_columns: Vec<(ArrayRef, KeyType)> = key_columns
        .iter()
        .map(|(a, k)| Ok((take(a)?, *k)))
        .collect::<Result<_>>()?;
    Ok(FeatureRows {
        keys: KeyColumn::encode(&key_columns, keep.len()),
        event_ts: keep
            .iter()
            .map(|&i| ts[i as usize].unwrap_or_default())
            .collect(),
        created_ts: keep
            .iter()
            .map(|&i| created[i as usize].unwrap_or(i64::MIN))
            .collect(),
        features: features.iter().map(take).collect::<Result<_>>()?,
    })
}

fn slice_view(view: &ViewColumns, start: usize, len: usize) -> ViewColumns {
    ViewColumns {
        columns: view.columns.iter().map(|c| c.slice(start, len)).collect(),
        status: view.status[start..start + len].to_vec(),
        event_ts: view.event_ts[start..start + len].to_vec(),
    }
}

/// Backfills `plan` for the entity frame at `entities` and writes the training set to
/// `out`: the entity frame's columns, unchanged and in order, then the service's features
/// in the online response's order. Source paths are relative to `base`. A transform
/// failure fails the backfill; `out` is replaced only when complete.
pub fn backfill(
    project: &Project,
    base: &Path,
    plan: &ServicePlan,
    entities: &Path,
    out: &Path,
    threads: usize,
) -> Result<BackfillStats> {
    let started = Instant::now();
    let frame = read_table(entities, None, "the entity frame")?;
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
    let mut views = Vec::with_capacity(plan.views.len());
    for view in &plan.views {
        let rows_of_view = feature_rows(project, base, plan, view)?;
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
        tracing::info!(view = %view.name, source_rows = rows_of_view.event_ts.len(), "joined as of each entity row");
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
    let mut fields: Vec<Arc<Field>> = frame.schema().fields().iter().cloned().collect();
    for f in &plan.features {
        if frame.schema().index_of(&f.qualified).is_ok() {
            return Err(Error::Definitions(format!(
                "{}: the entity frame already has a column `{}`, a feature of the service",
                entities.display(),
                f.qualified
            )));
        }
        fields.push(Arc::new(Field::new(
            &f.qualified,
            f.dtype.arrow_type(),
            true,
        )));
    }
    let schema = Arc::new(Schema::new(fields));
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
    })
}
