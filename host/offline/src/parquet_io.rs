//! Reading a Parquet file or directory of them; writing one atomically.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{Error, Result};

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

/// Reads `columns` (all when `None`) of every file under `path`, in file order. Every
/// named column must exist in every file; the error names the file.
pub fn read_parquet(
    path: &Path,
    columns: Option<&[&str]>,
    why: &str,
) -> Result<Vec<(PathBuf, Vec<RecordBatch>)>> {
    let mut out = Vec::new();
    for file in parquet_files(path)? {
        let parquet = |reason: String| Error::Parquet {
            path: file.clone(),
            reason,
        };
        let handle = File::open(&file).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(handle).map_err(|e| parquet(e.to_string()))?;
        let builder = match columns {
            None => builder,
            Some(names) => {
                let schema = builder.parquet_schema();
                let arrow = builder.schema().clone();
                let mut roots = Vec::with_capacity(names.len());
                for name in names {
                    let index = arrow.index_of(name).map_err(|_| Error::MissingColumn {
                        path: file.clone(),
                        column: (*name).to_owned(),
                        why: why.to_owned(),
                    })?;
                    roots.push(index);
                }
                let mask = ProjectionMask::roots(schema, roots);
                builder.with_projection(mask)
            }
        };
        let reader = builder
            .with_batch_size(65_536)
            .build()
            .map_err(|e| parquet(e.to_string()))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| parquet(e.to_string()))?;
        out.push((file, batches));
    }
    Ok(out)
}

/// Writes `batches` to `path` under a temporary name in the same directory and renames it
/// when complete: a crash never leaves a partial file under `path`.
pub fn write_parquet_atomic(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = tempfile::Builder::new()
        .prefix(".skewless-")
        .suffix(".parquet.tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    let parquet = |e: parquet::errors::ParquetError| Error::Parquet {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let file = tmp.as_file().try_clone().map_err(io)?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None).map_err(parquet)?;
    for batch in batches {
        writer.write(batch).map_err(parquet)?;
    }
    writer.close().map_err(parquet)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
