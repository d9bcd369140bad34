//! Spilling to disk: rows hash-partitioned by entity key into Arrow IPC files, then read
//! back one partition at a time, so that a join needs memory for one partition only.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, UInt32Array};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;

use crate::asof::{KeyColumn, group};
use crate::{Error, Result};

/// The partition of an encoded key (FNV-1a, then modulo); a null key goes to partition 0.
pub(crate) fn partition_of(key: Option<&[u8]>, parts: usize) -> u32 {
    let Some(key) = key else { return 0 };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // Fold the high bits in: FNV's low bits alone spread short keys poorly.
    ((h ^ (h >> 29)) % parts as u64) as u32
}

/// Each row's partition.
pub(crate) fn partitions(keys: &KeyColumn, parts: usize) -> Vec<u32> {
    (0..keys.len())
        .map(|i| partition_of(keys.get(i), parts))
        .collect()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn arrow(path: &Path) -> impl Fn(arrow_schema::ArrowError) -> Error + '_ {
    move |e| Error::Parquet {
        path: path.to_owned(),
        reason: format!("spill file: {e}"),
    }
}

/// One table split into partition files under a spill directory; a file is created when
/// its partition gets its first row.
pub(crate) struct Partitioned {
    dir: PathBuf,
    name: String,
    schema: SchemaRef,
    writers: Vec<Option<StreamWriter<BufWriter<File>>>>,
}

impl Partitioned {
    /// `parts` empty partitions of rows of `schema`, in files `dir/name-P.arrows`.
    pub(crate) fn new(dir: &Path, name: &str, schema: SchemaRef, parts: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            schema,
            writers: (0..parts).map(|_| None).collect(),
        }
    }

    fn path(&self, part: usize) -> PathBuf {
        self.dir.join(format!("{}-{part}.arrows", self.name))
    }

    /// Appends `batch` to partition `part`.
    pub(crate) fn append(&mut self, part: usize, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.writers[part].is_none() {
            let path = self.path(part);
            let file = File::create(&path).map_err(io(&path))?;
            let writer =
                StreamWriter::try_new(BufWriter::with_capacity(1 << 16, file), &self.schema)
                    .map_err(arrow(&path))?;
            self.writers[part] = Some(writer);
        }
        let path = self.path(part);
        match &mut self.writers[part] {
            Some(writer) => writer.write(batch).map_err(arrow(&path)),
            None => unreachable!("the writer was just created"),
        }
    }

    /// Appends each row of `batch` to its partition, `part[row]`, keeping row order within
    /// each partition.
    pub(crate) fn split(&mut self, batch: &RecordBatch, part: &[u32]) -> Result<()> {
        let parts = self.writers.len();
        let (order, start) = group(part, parts);
        for p in 0..parts {
            let rows = &order[start[p] as usize..start[p + 1] as usize];
            if rows.is_empty() {
                continue;
            }
            let taken = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                let indices = UInt32Array::from(rows.to_vec());
                arrow_select::take::take_record_batch(batch, &indices)
                    .map_err(arrow(&self.path(p)))?
            };
            self.append(p, &taken)?;
        }
        Ok(())
    }

    /// Closes every file.
    pub(crate) fn finish(self) -> Result<Parts> {
        let mut paths = Vec::with_capacity(self.writers.len());
        for (p, writer) in self.writers.into_iter().enumerate() {
            let path = self.dir.join(format!("{}-{p}.arrows", self.name));
            match writer {
                Some(mut w) => {
                    w.finish().map_err(arrow(&path))?;
                    w.into_inner()
                        .map_err(arrow(&path))?
                        .into_inner()
                        .map_err(|e| io(&path)(e.into_error()))?
                        .sync_data()
                        .ok();
                    paths.push(Some(path));
                }
                None => paths.push(None),
            }
        }
        Ok(Parts {
            schema: self.schema,
            paths,
        })
    }
}

/// The closed partition files of one table.
pub(crate) struct Parts {
    schema: SchemaRef,
    paths: Vec<Option<PathBuf>>,
}

impl Parts {
    /// All of partition `part`'s rows, in the order they were appended.
    pub(crate) fn read(&self, part: usize) -> Result<RecordBatch> {
        let mut cursor = self.cursor(part)?;
        let mut batches = Vec::new();
        while let Some(b) = cursor.pull()? {
            batches.push(b);
        }
        arrow_select::concat::concat_batches(&self.schema, &batches).map_err(arrow(
            self.paths[part].as_deref().unwrap_or(Path::new("spill")),
        ))
    }

    /// Deletes partition `part`'s file, once read: spilled data takes disk only while it
    /// is needed.
    pub(crate) fn remove(&mut self, part: usize) {
        if let Some(path) = self.paths[part].take() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// A reader of partition `part`'s rows, in order.
    pub(crate) fn cursor(&self, part: usize) -> Result<Cursor> {
        let reader = match &self.paths[part] {
            None => None,
            Some(path) => {
                let file = File::open(path).map_err(io(path))?;
                Some((
                    path.clone(),
                    StreamReader::try_new(BufReader::with_capacity(1 << 16, file), None)
                        .map_err(arrow(path))?,
                ))
            }
        };
        Ok(Cursor {
            schema: self.schema.clone(),
            reader,
            current: None,
            pos: 0,
        })
    }
}

/// Reads one partition's rows in order, any number at a time.
pub(crate) struct Cursor {
    schema: SchemaRef,
    reader: Option<(PathBuf, StreamReader<BufReader<File>>)>,
    current: Option<RecordBatch>,
    pos: usize,
}

impl Cursor {
    /// The rest of the current batch, or the next one from the file.
    fn pull(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(b) = self.current.take() {
            let rest = b.slice(self.pos, b.num_rows() - self.pos);
            self.pos = 0;
            return Ok(Some(rest));
        }
        match &mut self.reader {
            None => Ok(None),
            Some((path, reader)) => reader.next().transpose().map_err(arrow(path)),
        }
    }

    /// The next `n` rows; an error if the partition has fewer (the spill files and the
    /// entity frame disagree, which would be a bug).
    pub(crate) fn take(&mut self, n: usize) -> Result<RecordBatch> {
        let mut parts = Vec::new();
        let mut need = n;
        while need > 0 {
            let batch = self.pull()?.ok_or_else(|| Error::Parquet {
                path: self.path(),
                reason: format!("a spill partition ended {need} rows early"),
            })?;
            let used = batch.num_rows().min(need);
            parts.push(batch.slice(0, used));
            need -= used;
            if used < batch.num_rows() {
                self.pos = used;
                self.current = Some(batch);
            }
        }
        match parts.len() {
            0 => Ok(RecordBatch::new_empty(self.schema.clone())),
            1 => Ok(parts.swap_remove(0)),
            _ => arrow_select::concat::concat_batches(&self.schema, &parts)
                .map_err(arrow(&self.path())),
        }
    }

    fn path(&self) -> PathBuf {
        self.reader
            .as_ref()
            .map_or_else(|| PathBuf::from("spill"), |(path, _)| path.clone())
    }
}
