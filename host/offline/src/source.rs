//! A feature view's rows from its Parquet source: keys, times and features, conformed to
//! their canonical types, in source order.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
use arrow_schema::{DataType as ArrowType, Field, Schema, SchemaRef};
use skewless_core::definitions::{FeatureView, Source};
use skewless_core::key::KeyType;
use skewless_core::{DType, Project};

use crate::asof::FeatureRows;
use crate::parquet_io::{TimeFilter, decoded_size, scan, schema_of};
use crate::{Error, Result};
use skewless_core::key::KeyColumn;

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

/// Checks that `schema` (the footer of `path`) has every column of `columns`, each of a
/// type that converts losslessly to its dtype: the errors `conform` would give, before
/// any row is read.
pub(crate) fn check_columns<'c>(
    schema: &arrow_schema::Schema,
    path: &Path,
    columns: impl IntoIterator<Item = (&'c str, DType, &'c str)>,
) -> Result<()> {
    for (name, dtype, why) in columns {
        let field = schema
            .field_with_name(name)
            .map_err(|_| Error::MissingColumn {
                path: path.to_owned(),
                column: name.to_owned(),
                why: why.to_owned(),
            })?;
        if !dtype.accepts(field.data_type()) {
            return Err(Error::WrongType {
                path: path.to_owned(),
                column: name.to_owned(),
                found: field.data_type().to_string(),
                expected: dtype.name().to_owned(),
            });
        }
    }
    Ok(())
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
    let source = project.definitions().source(&view.source).ok_or_else(|| {
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

/// A view's source, ready to read: which columns, why, and how to conform them.
pub(crate) struct ViewSource<'p> {
    source: &'p Source,
    /// The columns read besides keys and times: the view's features, or for an
    /// aggregated view the event columns its aggregations read.
    columns: Vec<skewless_core::definitions::Feature>,
    path: PathBuf,
    keys: Vec<skewless_core::definitions::JoinKey>,
    why: String,
}

impl<'p> ViewSource<'p> {
    /// Resolves `view`'s source against `base`.
    pub(crate) fn new(project: &'p Project, base: &Path, view: &'p FeatureView) -> Result<Self> {
        let (source, path) = source_path(project, base, view)?;
        let columns = if view.is_aggregated() {
            skewless_aggregate::event_columns(view, source)
        } else {
            view.features.clone()
        };
        Ok(Self {
            source,
            columns,
            path,
            keys: project.definitions().view_join_keys(view),
            why: format!("feature view `{}`", view.name),
        })
    }

    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
        names.push(&self.source.timestamp_field);
        if let Some(created) = &self.source.created_timestamp_field {
            names.push(created);
        }
        names.extend(self.columns.iter().map(|f| f.name.as_str()));
        names
    }

    fn filter(&self, min: i64, max: i64) -> TimeFilter<'_> {
        TimeFilter {
            column: &self.source.timestamp_field,
            min,
            max,
        }
    }

    /// The schema of [`ViewSource::scan`]'s batches: the keys, the event and created times
    /// (µs, never null), then the features, all canonical; named by position.
    pub(crate) fn canonical_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| Field::new(format!("key{i}"), k.dtype.dtype().arrow_type(), true))
            .collect();
        fields.push(Field::new("ts", ArrowType::Int64, false));
        fields.push(Field::new("created", ArrowType::Int64, false));
        fields.extend(
            self.columns
                .iter()
                .enumerate()
                .map(|(i, f)| Field::new(format!("f{i}"), f.dtype.arrow_type(), true)),
        );
        Arc::new(Schema::new(fields))
    }

    /// Checks, from the first file's footer, that every column the view needs is there
    /// and converts to its declared type: errors before any work.
    pub(crate) fn check(&self) -> Result<()> {
        let created = self.source.created_timestamp_field.iter();
        let columns = self
            .keys
            .iter()
            .map(|k| (k.name.as_str(), k.dtype.dtype()))
            .chain(
                std::iter::once(&self.source.timestamp_field)
                    .chain(created)
                    .map(|t| (t.as_str(), DType::Timestamp)),
            )
            .chain(self.columns.iter().map(|f| (f.name.as_str(), f.dtype)))
            .map(|(name, dtype)| (name, dtype, self.why.as_str()));
        check_columns(schema_of(&self.path)?.as_ref(), &self.path, columns)
    }

    /// The decoded size of the columns a read of `min..=max` needs, from the footers.
    pub(crate) fn decoded_size(&self, min: i64, max: i64) -> Result<u64> {
        decoded_size(
            &self.path,
            Some(&self.names()),
            &self.why,
            Some(self.filter(min, max)),
        )
    }

    /// Streams the rows whose event time lies in `min..=max` (µs) to `each`, in source
    /// order, as batches of [`ViewSource::canonical_schema`]. Row groups outside the
    /// range are skipped by their statistics. Rows without an event time are dropped (they
    /// can never match); a null created time becomes `i64::MIN`, which loses every tie.
    pub(crate) fn scan(
        &self,
        min: i64,
        max: i64,
        batch_rows: usize,
        mut each: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<SourceStats> {
        let schema = self.canonical_schema();
        let mut rows_read = 0;
        let scanned = scan(
            &self.path,
            Some(&self.names()),
            &self.why,
            Some(self.filter(min, max)),
            batch_rows,
            |table| {
                rows_read += table.num_rows();
                each(self.canonical(&table, &schema, min, max)?)
            },
        )?;
        Ok(SourceStats {
            rows_read,
            row_groups_read: scanned.row_groups_read,
            row_groups_skipped: scanned.row_groups_skipped,
        })
    }

    fn canonical(
        &self,
        table: &RecordBatch,
        schema: &SchemaRef,
        min: i64,
        max: i64,
    ) -> Result<RecordBatch> {
        let (path, why) = (&self.path, &self.why);
        let mut columns: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|k| {
                let array = column(table, path, &k.name, why)?;
                conform(path, &k.name, &array, k.dtype.dtype())
            })
            .collect::<Result<_>>()?;
        let field = &self.source.timestamp_field;
        let ts = timestamps(path, field, &column(table, path, field, why)?)?;
        let created = match &self.source.created_timestamp_field {
            Some(name) => timestamps(path, name, &column(table, path, name, why)?)?,
            None => vec![None; table.num_rows()],
        };
        // A row without an event time is dropped by the filter below; 0 only holds its
        // place until then.
        columns.push(Arc::new(Int64Array::from_iter_values(
            ts.iter().map(|t| t.unwrap_or_default()),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            created.iter().map(|t| t.unwrap_or(i64::MIN)),
        )));
        for f in &self.columns {
            columns.push(conform(
                path,
                &f.name,
                &column(table, path, &f.name, why)?,
                f.dtype,
            )?);
        }
        let batch =
            RecordBatch::try_new(schema.clone(), columns).map_err(|source| Error::Arrow {
                context: format!("the rows read from {}", path.display()),
                source,
            })?;
        if ts
            .iter()
            .all(|t| t.is_some_and(|t| (min..=max).contains(&t)))
        {
            return Ok(batch);
        }
        let keep = BooleanArray::from_iter(
            ts.iter()
                .map(|t| Some(t.is_some_and(|t| (min..=max).contains(&t)))),
        );
        arrow_select::filter::filter_record_batch(&batch, &keep).map_err(|source| Error::Arrow {
            context: format!("filtering the rows read from {}", path.display()),
            source,
        })
    }

    /// [`ViewSource::scan`], collected into the join's input.
    pub(crate) fn read(&self, min: i64, max: i64) -> Result<(FeatureRows, SourceStats)> {
        let mut batches = Vec::new();
        let stats = self.scan(min, max, 65_536, |b| {
            batches.push(b);
            Ok(())
        })?;
        let all = arrow_select::concat::concat_batches(&self.canonical_schema(), &batches)
            .map_err(|source| Error::Arrow {
                context: format!("the rows read from {}", self.path.display()),
                source,
            })?;
        drop(batches);
        Ok((self.rows(&all), stats))
    }

    /// Rows of [`ViewSource::canonical_schema`] as the join's input.
    pub(crate) fn rows(&self, batch: &RecordBatch) -> FeatureRows {
        let k = self.keys.len();
        let keys: Vec<(ArrayRef, KeyType)> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, key)| (batch.column(i).clone(), key.dtype))
            .collect();
        FeatureRows {
            keys: KeyColumn::encode(&keys, batch.num_rows()),
            event_ts: batch
                .column(k)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            created_ts: batch
                .column(k + 1)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            has_created: self.source.created_timestamp_field.is_some(),
            features: batch.columns()[k + 2..].to_vec(),
        }
    }
}

/// Reads the rows of `view`'s source whose event time lies in `min..=max` (µs): keys,
/// times and features, in source order (see [`ViewSource::scan`]).
pub fn view_rows(
    project: &Project,
    base: &Path,
    view: &FeatureView,
    min: i64,
    max: i64,
) -> Result<(FeatureRows, SourceStats)> {
    ViewSource::new(project, base, view)?.read(min, max)
}
