//! A feature view's rows from its Parquet source: keys, times and features, conformed to
//! their canonical types, in source order.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use skewless_core::definitions::{FeatureView, Source};
use skewless_core::key::KeyType;
use skewless_core::{DType, Project};

use crate::asof::{FeatureRows, KeyColumn};
use crate::parquet_io::{TimeFilter, read_table};
use crate::{Error, Result};

/// Converts `array` to `dtype`'s canonical type, or names the file and column that cannot.
pub(crate) fn conform(
    path: &Path,
    column: &str,
    array: &ArrayRef,
    dtype: DType,
) -> Result<ArrayRef> {
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

/// The column `name` of `table`, or an error naming the file and why it is needed.
pub(crate) fn column(table: &RecordBatch, path: &Path, name: &str, why: &str) -> Result<ArrayRef> {
    table
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| Error::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            why: why.to_owned(),
        })
}

/// A timestamp column as microseconds since the epoch, UTC.
pub(crate) fn timestamps(path: &Path, name: &str, array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let array = conform(path, name, array, DType::Timestamp)?;
    Ok(array
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .collect())
}

/// What reading a source cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceStats {
    /// Rows read from the files.
    pub rows_read: usize,
    /// Row groups read.
    pub row_groups_read: usize,
    /// Row groups skipped by their timestamp statistics.
    pub row_groups_skipped: usize,
}

/// A view's source and its Parquet path, resolved against `base`.
pub(crate) fn source_path<'p>(
    project: &'p Project,
    base: &Path,
    view: &FeatureView,
) -> Result<(&'p Source, PathBuf)> {
    let source = project.definitions.source(&view.source).ok_or_else(|| {
        Error::Definitions(format!(
            "view `{}`: unknown source `{}`",
            view.name, view.source
        ))
    })?;
    let rel = source.path.as_deref().ok_or_else(|| {
        Error::Definitions(format!(
            "source `{}` of view `{}` has no `path`: offline work reads its Parquet history",
            source.name, view.name
        ))
    })?;
    Ok((source, base.join(rel)))
}

/// Reads the rows of `view`'s source whose event time lies in `min..=max` (µs): keys,
/// times and features, in source order. Row groups outside the range are skipped by their
/// statistics. Rows without an event time are dropped (they can never match); a null
/// created time loses every tie.
pub fn view_rows(
    project: &Project,
    base: &Path,
    view: &FeatureView,
    min: i64,
    max: i64,
) -> Result<(FeatureRows, SourceStats)> {
    let (source, path) = source_path(project, base, view)?;
    let keys = project.definitions.view_join_keys(view);
    let mut names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    names.push(&source.timestamp_field);
    if let Some(created) = &source.created_timestamp_field {
        names.push(created);
    }
    names.extend(view.features.iter().map(|f| f.name.as_str()));
    let why = format!("feature view `{}`", view.name);
    let filter = TimeFilter {
        column: &source.timestamp_field,
        min,
        max,
    };
    let table = read_table(&path, Some(&names), &why, Some(filter))?;
    let stats = SourceStats {
        rows_read: table.batch.num_rows(),
        row_groups_read: table.row_groups_read,
        row_groups_skipped: table.row_groups_skipped,
    };
    let table = table.batch;
    let key_columns: Vec<(ArrayRef, KeyType)> = keys
        .iter()
        .map(|k| {
            let array = column(&table, &path, &k.name, &why)?;
            Ok((conform(&path, &k.name, &array, k.dtype.dtype())?, k.dtype))
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
    let keep: Vec<u32> = (0..table.num_rows())
        .filter(|&i| ts[i].is_some_and(|t| (min..=max).contains(&t)))
        .map(|i| i as u32)
        .collect();
    let indices = UInt32Array::from(keep.clone());
    let take = |a: &ArrayRef| -> Result<ArrayRef> {
        if keep.len() == a.len() {
            return Ok(a.clone());
        }
        arrow_select::take::take(a, &indices, None).map_err(|e| Error::Parquet {
            path: path.clone(),
            reason: e.to_string(),
        })
    };
    let key_columns: Vec<(ArrayRef, KeyType)> = key_columns
        .iter()
        .map(|(a, k)| Ok((take(a)?, *k)))
        .collect::<Result<_>>()?;
    let rows = FeatureRows {
        keys: KeyColumn::encode(&key_columns, keep.len()),
        event_ts: keep
            .iter()
            .map(|&i| ts[i as usize].unwrap_or_default())
            .collect(),
        created_ts: keep
            .iter()
            .map(|&i| created[i as usize].unwrap_or(i64::MIN))
            .collect(),
        has_created: source.created_timestamp_field.is_some(),
        features: features.iter().map(take).collect::<Result<_>>()?,
    };
    Ok((rows, stats))
}
