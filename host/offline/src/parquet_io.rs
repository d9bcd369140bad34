//! Reading a Parquet file or directory of them; writing one atomically.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use skewless_core::DType;
use skewless_core::fs::AtomicFile;

use crate::{Error, Result, workers};

/// The Parquet files under `path`: the file itself, or every `.parquet` file below the
/// directory (hive-style subdirectories included), in path order.
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })? {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let p = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if name.ends_with(".parquet") {
                files.push(p);
            }
        }
    }
    if files.is_empty() {
        return Err(Error::NoFiles(path.to_owned()));
    }
    files.sort();
    Ok(files)
}

/// Rows that can matter, by event time: row groups whose statistics lie wholly outside
/// `min..=max` (microseconds) on `column` are not read. Rows are not filtered; callers
/// filter what they read.
#[derive(Debug, Clone, Copy)]
pub struct TimeFilter<'a> {
    /// The timestamp column.
    pub column: &'a str,
    /// The earliest time that can matter.
    pub min: i64,
    /// The latest time that can matter.
    pub max: i64,
}

/// What [`read_table`] read: the rows, with how many row groups were read and skipped.
#[derive(Debug)]
pub struct Table {
    /// The rows of every file, concatenated, columns in the requested order.
    pub batch: RecordBatch,
    /// Row groups read.
    pub row_groups_read: usize,
    /// Row groups skipped by their timestamp statistics.
    pub row_groups_skipped: usize,
}

/// The row groups of a file that can hold times in `filter`'s range; `None` reads all.
fn row_groups_in_range(
    builder: &ParquetRecordBatchReaderBuilder<File>,
    filter: &TimeFilter<'_>,
) -> Option<Vec<usize>> {
    let metadata = builder.metadata();
    let converter =
        StatisticsConverter::try_new(filter.column, builder.schema(), builder.parquet_schema())
            .ok()?;
    let canonical = |a: arrow_array::ArrayRef| {
        DType::Timestamp
            .to_canonical(&a)
            .ok()
            .map(|a| a.as_primitive::<TimestampMicrosecondType>().clone())
    };
    let mins = canonical(converter.row_group_mins(metadata.row_groups()).ok()?)?;
    let maxes = canonical(converter.row_group_maxes(metadata.row_groups()).ok()?)?;
    Some(
        (0..metadata.num_row_groups())
            .filter(|&g| {
                // Missing statistics read the group.
                let below = maxes.is_valid(g) && maxes.value(g) < filter.min;
                let above = mins.is_valid(g) && mins.value(g) > filter.max;
                !(below || above)
            })
            .collect(),
    )
}

/// What [`scan`] read: the row groups read and skipped, and the columns' schema.
#[derive(Debug)]
pub struct Scanned {
    /// The columns read, in the requested order (empty when there were no rows).
    pub schema: SchemaRef,
    /// Row groups read.
    pub row_groups_read: usize,
    /// Row groups skipped by their timestamp statistics.
    pub row_groups_skipped: usize,
}

/// Opens one file of `path` for reading; the error names the file.
fn open(file: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let handle = File::open(file).map_err(|source| Error::Io {
        path: file.to_owned(),
        source,
    })?;
    ParquetRecordBatchReaderBuilder::try_new(handle).map_err(|e| Error::Parquet {
        path: file.to_owned(),
        reason: e.to_string(),
    })
}

/// The indices of `columns` in a file's schema, in the requested order (all when `None`).
fn column_order(
    arrow: &arrow_schema::Schema,
    file: &Path,
    columns: Option<&[&str]>,
    why: &str,
) -> Result<Vec<usize>> {
    match columns {
        None => Ok((0..arrow.fields().len()).collect()),
        Some(names) => names
            .iter()
            .map(|name| {
                arrow.index_of(name).map_err(|_| Error::MissingColumn {
                    path: file.to_owned(),
                    column: (*name).to_owned(),
                    why: why.to_owned(),
                })
            })
            .collect(),
    }
}

/// Streams `columns` (all when `None`) of every file under `path`, in file order, to
/// `each`, one batch of at most `batch_rows` rows at a time. Every named column must exist
/// in every file, and every file must have the first one's columns; the error names the
/// file. With `time`, row groups outside its range are skipped.
pub fn scan(
    path: &Path,
    columns: Option<&[&str]>,
    why: &str,
    time: Option<TimeFilter<'_>>,
    batch_rows: usize,
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<Scanned> {
    let mut schema: Option<SchemaRef> = None;
    let (mut read, mut skipped) = (0, 0);
    for file in parquet_files(path)? {
        let parquet = |reason: String| Error::Parquet {
            path: file.clone(),
            reason,
        };
        let mut builder = open(&file)?;
        let arrow = builder.schema().clone();
        // Column indices in the requested order: files may order columns differently.
        let order = column_order(&arrow, &file, columns, why)?;
        let file_schema = Arc::new(arrow.project(&order).map_err(|e| parquet(e.to_string()))?);
        match &schema {
            None => schema = Some(file_schema.clone()),
            // Names and types must agree; whether a column may hold nulls need not (one
            // writer declares it, another does not).
            Some(first)
                if !first
                    .fields()
                    .iter()
                    .map(|f| (f.name(), f.data_type()))
                    .eq(file_schema
                        .fields()
                        .iter()
                        .map(|f| (f.name(), f.data_type()))) =>
            {
                return Err(parquet(format!(
                    "its columns differ from the first file's: {} vs {}",
                    describe(&file_schema),
                    describe(first)
                )));
            }
            Some(_) => {}
        }
        let total_groups = builder.metadata().num_row_groups();
        if let Some(filter) = &time
            && let Some(groups) = row_groups_in_range(&builder, filter)
        {
            skipped += total_groups - groups.len();
            read += groups.len();
            builder = builder.with_row_groups(groups);
        } else {
            read += total_groups;
        }
        if columns.is_some() {
            let mask = ProjectionMask::roots(builder.parquet_schema(), order.iter().copied());
            builder = builder.with_projection(mask);
        }
        let reader = builder
            .with_batch_size(batch_rows.max(1))
            .build()
            .map_err(|e| parquet(e.to_string()))?;
        // Decoding runs on its own thread, a couple of batches ahead of `each`, so that
        // reading a file overlaps with whatever the caller does with its rows.
        let decode = |send: std::sync::mpsc::SyncSender<Result<RecordBatch>>| {
            for batch in reader {
                let batch = batch.map_err(|e| parquet(e.to_string())).and_then(|batch| {
                    // The projection keeps the file's column order; put it in the requested
                    // one.
                    let columns = file_schema
                        .fields()
                        .iter()
                        .map(|f| {
                            batch
                                .column_by_name(f.name())
                                .cloned()
                                .ok_or_else(|| parquet(format!("column `{}` vanished", f.name())))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    RecordBatch::try_new(file_schema.clone(), columns)
                        .map_err(|e| parquet(e.to_string()))
                });
                let failed = batch.is_err();
                // A closed channel means the caller stopped (it failed): stop too.
                if send.send(batch).is_err() || failed {
                    return;
                }
            }
        };
        std::thread::scope(|scope| -> Result<()> {
            let (send, receive) = std::sync::mpsc::sync_channel(2);
            let decoder = workers::spawn(scope, move || {
                workers::fault_point("Parquet decode");
                decode(send)
            });
            let mut outcome = Ok(());
            for batch in receive.iter() {
                if let Err(e) = batch.and_then(&mut each) {
                    outcome = Err(e);
                    break;
                }
            }
            drop(receive);
            workers::join_one("Parquet decode", decoder)?;
            outcome
        })?;
    }
    Ok(Scanned {
        schema: schema.unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty())),
        row_groups_read: read,
        row_groups_skipped: skipped,
    })
}

/// Reads `columns` (all when `None`) of every file under `path`, in file order, and
/// concatenates them: [`scan`], collected.
pub fn read_table(
    path: &Path,
    columns: Option<&[&str]>,
    why: &str,
    time: Option<TimeFilter<'_>>,
) -> Result<Table> {
    let mut batches = Vec::new();
    let scanned = scan(path, columns, why, time, 65_536, |b| {
        batches.push(b);
        Ok(())
    })?;
    let batch =
        arrow_select::concat::concat_batches(&scanned.schema, &batches).map_err(|source| {
            Error::Arrow {
                context: format!("the rows read from {}", path.display()),
                source,
            }
        })?;
    Ok(Table {
        batch,
        row_groups_read: scanned.row_groups_read,
        row_groups_skipped: scanned.row_groups_skipped,
    })
}

/// The columns of the first file under `path`, from its footer.
pub fn schema_of(path: &Path) -> Result<SchemaRef> {
    let files = parquet_files(path)?;
    Ok(open(&files[0])?.schema().clone())
}

/// The decoded size of `columns` (all when `None`) of the files under `path`, in bytes,
/// from the Parquet footers alone; row groups outside `time` do not count. An estimate
/// of what reading them costs in memory, to decide whether a job must spill.
pub fn decoded_size(
    path: &Path,
    columns: Option<&[&str]>,
    why: &str,
    time: Option<TimeFilter<'_>>,
) -> Result<u64> {
    let mut total = 0u64;
    for file in parquet_files(path)? {
        let builder = open(&file)?;
        let order = column_order(builder.schema(), &file, columns, why)?;
        // Top-level Arrow fields map to Parquet leaf columns by name prefix.
        let names: Vec<&str> = order
            .iter()
            .map(|&i| builder.schema().field(i).name().as_str())
            .collect();
        let groups = time
            .as_ref()
            .and_then(|filter| row_groups_in_range(&builder, filter))
            .unwrap_or_else(|| (0..builder.metadata().num_row_groups()).collect());
        for g in groups {
            let group = builder.metadata().row_group(g);
            for chunk in group.columns() {
                let root = chunk.column_path().parts().first().map(String::as_str);
                if root.is_some_and(|r| names.contains(&r)) {
                    total += u64::try_from(chunk.uncompressed_size()).unwrap_or(0);
                }
            }
        }
    }
    Ok(total)
}

fn describe(schema: &arrow_schema::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Parquet file written through an [`AtomicFile`]: renamed to its final name, after an
/// fsync, by [`AtomicParquet::finish`], and the directory fsynced; a crash or an error
/// never leaves a partial file under the final name (the temporary file is removed when
/// dropped unfinished).
pub struct AtomicParquet {
    path: PathBuf,
    writer: ArrowWriter<AtomicFile>,
}

impl std::fmt::Debug for AtomicParquet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicParquet")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AtomicParquet {
    /// Starts writing `path` with `schema`; its directory is created if missing.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self> {
        let file = AtomicFile::create(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        // Dictionary encoding pays for strings (names, categories repeat); for numbers it
        // costs a hash per value (a tenth of a large backfill's time) and rarely wins.
        let mut properties = WriterProperties::builder().set_dictionary_enabled(false);
        for field in schema.fields() {
            if matches!(
                field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                properties = properties
                    .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
            }
        }
        let writer = ArrowWriter::try_new(file, schema, Some(properties.build())).map_err(|e| {
            Error::Parquet {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            path: path.to_owned(),
            writer,
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| Error::Parquet {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// Closes the file (its footer written) and commits it under its final name.
    pub fn finish(self) -> Result<()> {
        let Self { path, writer } = self;
        let file = writer.into_inner().map_err(|e| Error::Parquet {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        file.commit().map_err(|source| Error::Io { path, source })
    }
}

/// Writes `batches` to `path` atomically (see [`AtomicParquet`]).
pub fn write_parquet_atomic(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let mut file = AtomicParquet::create(path, schema)?;
    for batch in batches {
        file.write(batch)?;
    }
    file.finish()
}

#[cfg(test)]
mod tests {
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, Int64Array};

    use super::*;

    fn file_of(dir: &Path, batches: usize, rows: usize) -> PathBuf {
        let path = dir.join("t.parquet");
        let mut writer: Option<ArrowWriter<File>> = None;
        for b in 0..batches {
            let values: Vec<i64> = (0..rows).map(|r| (b * rows + r) as i64).collect();
            let batch =
                RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(values)) as ArrayRef)])
                    .unwrap();
            let w = writer.get_or_insert_with(|| {
                ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap()
            });
            w.write(&batch).unwrap();
            w.flush().unwrap();
        }
        writer.unwrap().close().unwrap();
        path
    }

    /// Decoding runs ahead on its own thread: the caller still sees every row in order,
    /// and a caller that fails stops the scan with its own error (the decoder is not left
    /// blocked on a full channel).
    #[test]
    fn a_scan_delivers_in_order_and_stops_when_the_caller_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_of(dir.path(), 20, 100);
        let mut seen = Vec::new();
        scan(&path, None, "the test file", None, 100, |b| {
            seen.extend(
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..2000).collect::<Vec<i64>>());

        let mut calls = 0;
        let error = scan(&path, None, "the test file", None, 100, |_| {
            calls += 1;
            Err(Error::Parquet {
                path: path.clone(),
                reason: "the caller gave up".into(),
            })
        })
        .unwrap_err();
        assert!(error.to_string().contains("the caller gave up"), "{error}");
        assert_eq!(calls, 1, "no batch is handed over after a failure");
    }
}
