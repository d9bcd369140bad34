//! A source's offline log: Parquet files of the events pushed to it, each named by the
//! first and last sequence number of the events it holds (`events-{first}-{last}.parquet`),
//! written atomically. Both stores write it: the local store numbers events by its log
//! sequence numbers, the Redis store by its event streams' entry IDs. The largest number
//! in the file names says which events are flushed already, which makes a flush after a
//! crash idempotent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use skewless_core::DType;
use skewless_core::assemble::{ColumnBuilder, Value};
use skewless_core::fs::AtomicFile;

use crate::events::EventSchema;
use crate::{Error, Result, io, row, wal};

/// What identifies an offline log and its layout: carried by every event record, so that
/// recovery can flush a record whatever the definitions say by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogSchema {
    pub(crate) source: String,
    pub(crate) dir: PathBuf,
    pub(crate) timestamp_field: String,
    pub(crate) created_field: String,
    pub(crate) columns: Vec<(String, DType)>,
}

impl LogSchema {
    pub(crate) fn of(schema: &EventSchema) -> Self {
        Self {
            source: schema.source.clone(),
            dir: schema.log_dir.clone(),
            timestamp_field: schema.timestamp_field.clone(),
            created_field: schema.created_field.clone(),
            columns: schema.columns.clone(),
        }
    }

    pub(crate) fn dtypes(&self) -> Vec<DType> {
        self.columns.iter().map(|(_, d)| *d).collect()
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        wal::put_str(out, &self.source);
        wal::put_str(out, &self.dir.to_string_lossy());
        wal::put_str(out, &self.timestamp_field);
        wal::put_str(out, &self.created_field);
        out.extend_from_slice(&(self.columns.len() as u16).to_le_bytes());
        for (name, dtype) in &self.columns {
            wal::put_str(out, name);
            wal::put_str(out, dtype.name());
        }
    }

    pub(crate) fn decode(c: &mut wal::Cursor<'_>) -> Option<Self> {
        let source = c.str()?;
        let dir = PathBuf::from(c.str()?);
        let timestamp_field = c.str()?;
        let created_field = c.str()?;
        let n = c.u16()?;
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            let name = c.str()?;
            let dtype: DType = c.str()?.parse().ok()?;
            columns.push((name, dtype));
        }
        Some(Self {
            source,
            dir,
            timestamp_field,
            created_field,
            columns,
        })
    }
}

/// The file name of the offline log file holding events `first..=last` (LSNs).
pub(crate) fn file_name(first: u64, last: u64) -> String {
    format!("events-{first:020}-{last:020}.parquet")
}

/// The last LSN in an offline log directory's files (0 if none): every event of a record
/// with a larger LSN is not flushed yet.
pub(crate) fn flushed_through(dir: &Path) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut last = 0;
    for entry in entries {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("events-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(_, last)| last.parse::<u64>().ok())
        {
            last = last.max(n);
        }
    }
    Ok(last)
}

/// Writes `rows` (events of `log`, in LSN order) to one offline log file, atomically.
pub(crate) fn write(log: &LogSchema, rows: &[Box<[u8]>]) -> Result<()> {
    let lsn = |row: &[u8]| row::order_key(row).2;
    let (first, last) = (lsn(&rows[0]), lsn(&rows[rows.len() - 1]));
    let path = log.dir.join(file_name(first, last));
    let dtypes = log.dtypes();
    let corrupt = |reason: String| Error::Corrupt {
        path: path.clone(),
        reason: format!("an event to flush does not decode: {reason}"),
    };
    let mut builders: Vec<ColumnBuilder> = dtypes
        .iter()
        .map(|d| ColumnBuilder::new(*d, rows.len()))
        .collect();
    let mut times = ColumnBuilder::new(DType::Timestamp, rows.len());
    let mut created = ColumnBuilder::new(DType::Timestamp, rows.len());
    for row in rows {
        if !row::fits(row, dtypes.len()) {
            return Err(corrupt("shorter than its layout".into()));
        }
        for (i, b) in builders.iter_mut().enumerate() {
            b.push(row::value(row, &dtypes, i).map_err(corrupt)?);
        }
        times.push(Value::Timestamp(row::event_ts(row)));
        created.push(Value::Timestamp(row::created_ts(row)));
    }
    let mut fields: Vec<Field> = log
        .columns
        .iter()
        .map(|(name, d)| Field::new(name, d.arrow_type(), true))
        .collect();
    fields.push(Field::new(
        &log.timestamp_field,
        DType::Timestamp.arrow_type(),
        false,
    ));
    fields.push(Field::new(
        &log.created_field,
        DType::Timestamp.arrow_type(),
        false,
    ));
    let mut columns: Vec<arrow_array::ArrayRef> =
        builders.iter_mut().map(ColumnBuilder::finish).collect();
    columns.push(times.finish());
    columns.push(created.finish());
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| corrupt(format!("assembling the batch: {e}")))?;
    std::fs::create_dir_all(&log.dir).map_err(io(&log.dir))?;
    let file = AtomicFile::create(&path).map_err(io(&path))?;
    let parquet = |e: parquet::errors::ParquetError| Error::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(parquet)?;
    writer.write(&batch).map_err(parquet)?;
    let file = writer.into_inner().map_err(parquet)?;
    file.commit().map_err(io(&path))?;
    Ok(())
}
