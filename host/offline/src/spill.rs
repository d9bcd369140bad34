//! Partitioning by entity key: rows hash-partitioned into Arrow IPC files (spilling to
//! disk) or into batches kept in memory, then read back one partition at a time, so that
//! each join is cache-sized and, when spilled, needs memory for one partition only.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, UInt32Array};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;

use crate::asof::group;
use crate::{Error, Result};
use skewless_core::key::KeyColumn;

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
    move |source| Error::Arrow {
        context: format!("spill file {}", path.display()),
        source,
    }
}

/// One partition being filled: a spill file, or batches kept in memory.
enum Sink {
    File(Box<StreamWriter<BufWriter<File>>>),
    Memory(Vec<RecordBatch>),
}

/// One table split into partitions: files under a spill directory (a file is created when
/// its partition gets its first row), or batches in memory when the inputs fit the
/// memory limit and the partitions are only there to keep each join cache-sized.
pub(crate) struct Partitioned {
    dir: Option<PathBuf>,
    name: String,
    schema: SchemaRef,
    sinks: Vec<Option<Sink>>,
}

impl Partitioned {
    /// `parts` empty partitions of rows of `schema`: in files `dir/name-P.arrows`, or in
    /// memory when `dir` is `None`.
    pub(crate) fn new(dir: Option<&Path>, name: &str, schema: SchemaRef, parts: usize) -> Self {
        Self {
            dir: dir.map(Path::to_owned),
            name: name.to_owned(),
            schema,
            sinks: (0..parts).map(|_| None).collect(),
        }
    }

    fn path(&self, part: usize) -> PathBuf {
        let name = format!("{}-{part}.arrows", self.name);
        match &self.dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// Appends `batch` to partition `part`.
    pub(crate) fn append(&mut self, part: usize, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let path = self.path(part);
        if self.sinks[part].is_none() {
            self.sinks[part] = Some(match &self.dir {
                None => Sink::Memory(Vec::new()),
                Some(_) => {
                    let file = File::create(&path).map_err(io(&path))?;
                    Sink::File(Box::new(
                        StreamWriter::try_new(
                            BufWriter::with_capacity(1 << 16, file),
                            &self.schema,
                        )
                        .map_err(arrow(&path))?,
                    ))
                }
            });
        }
        match &mut self.sinks[part] {
            Some(Sink::File(writer)) => writer.write(batch).map_err(arrow(&path)),
            Some(Sink::Memory(batches)) => {
                batches.push(batch.clone());
                Ok(())
            }
            None => unreachable!("the sink was just created"),
        }
    }

    /// Appends each row of `batch` to its partition, `part[row]`, keeping row order within
    /// each partition.
    pub(crate) fn split(&mut self, batch: &RecordBatch, part: &[u32]) -> Result<()> {
        let parts = self.sinks.len();
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
        let mut stored = Vec::with_capacity(self.sinks.len());
        for (p, sink) in self.sinks.into_iter().enumerate() {
            let path = match &self.dir {
                Some(dir) => dir.join(format!("{}-{p}.arrows", self.name)),
                None => PathBuf::new(),
            };
            stored.push(match sink {
                Some(Sink::File(mut w)) => {
                    w.finish().map_err(arrow(&path))?;
                    w.into_inner()
                        .map_err(arrow(&path))?
                        .into_inner()
                        .map_err(|e| io(&path)(e.into_error()))?
                        .sync_data()
                        .ok();
                    Some(Stored::File(path))
                }
                Some(Sink::Memory(batches)) => Some(Stored::Memory(batches)),
                None => None,
            });
        }
        Ok(Parts {
            schema: self.schema,
            stored,
        })
    }
}

/// One finished partition.
enum Stored {
    File(PathBuf),
    Memory(Vec<RecordBatch>),
}

/// The finished partitions of one table.
pub(crate) struct Parts {
    schema: SchemaRef,
    stored: Vec<Option<Stored>>,
}

impl Parts {
    /// All of partition `part`'s rows, in the order they were appended.
    pub(crate) fn read(&self, part: usize) -> Result<RecordBatch> {
        let mut cursor = self.cursor(part)?;
        let mut batches = Vec::new();
        while let Some(b) = cursor.pull()? {
            batches.push(b);
        }
        arrow_select::concat::concat_batches(&self.schema, &batches).map_err(arrow(&cursor.path()))
    }

    /// Deletes partition `part`'s file (or drops its batches), once read: spilled data
    /// takes disk, or memory, only while it is needed.
    pub(crate) fn remove(&mut self, part: usize) {
        if let Some(Stored::File(path)) = self.stored[part].take() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// A reader of partition `part`'s rows, in order.
    pub(crate) fn cursor(&self, part: usize) -> Result<Cursor> {
        let source = match &self.stored[part] {
            None => Source::Memory(VecDeque::new()),
            Some(Stored::Memory(batches)) => Source::Memory(batches.iter().cloned().collect()),
            Some(Stored::File(path)) => {
                let file = File::open(path).map_err(io(path))?;
                Source::File(
                    path.clone(),
                    StreamReader::try_new(BufReader::with_capacity(1 << 16, file), None)
                        .map_err(arrow(path))?,
                )
            }
        };
        Ok(Cursor {
            schema: self.schema.clone(),
            source,
            current: None,
            pos: 0,
        })
    }
}

/// Where a cursor's batches come from.
enum Source {
    File(PathBuf, StreamReader<BufReader<File>>),
    Memory(VecDeque<RecordBatch>),
}

/// Reads one partition's rows in order, any number at a time.
pub(crate) struct Cursor {
    schema: SchemaRef,
    source: Source,
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
        match &mut self.source {
            Source::Memory(batches) => Ok(batches.pop_front()),
            Source::File(path, reader) => reader.next().transpose().map_err(arrow(path)),
        }
    }

    /// The next `n` rows; an error if the partition has fewer (the spill files and the
    /// entity frame disagree, which would be a bug).
    pub(crate) fn take(&mut self, n: usize) -> Result<RecordBatch> {
        let mut parts = Vec::new();
        let mut need = n;
        while need > 0 {
            let batch = self.pull()?.ok_or_else(|| {
                Error::Internal(format!(
                    "spill partition {} ended {need} rows early",
                    self.path().display()
                ))
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
        match &self.source {
            Source::File(path, _) => path.clone(),
            Source::Memory(_) => PathBuf::from("an in-memory partition"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn values(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    /// Rows split over partitions in several batches come back in the order they went in,
    /// whole or a few at a time, from memory and from spill files alike.
    #[test]
    fn partitions_keep_row_order_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        for spill_dir in [None, Some(dir.path())] {
            let mut split = Partitioned::new(spill_dir, "t", schema.clone(), 3);
            for first in (0..30).step_by(10) {
                let rows: Vec<i64> = (first..first + 10).collect();
                let part: Vec<u32> = rows.iter().map(|r| (r % 3) as u32).collect();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from(rows)) as ArrayRef],
                )
                .unwrap();
                split.split(&batch, &part).unwrap();
            }
            let mut parts = split.finish().unwrap();
            let want = |p: i64| (0..30).filter(|r| r % 3 == p).collect::<Vec<i64>>();
            assert_eq!(values(&parts.read(1).unwrap()), want(1), "{spill_dir:?}");
            let mut cursor = parts.cursor(2).unwrap();
            let mut got = values(&cursor.take(4).unwrap());
            got.extend(values(&cursor.take(3).unwrap()));
            got.extend(values(&cursor.take(3).unwrap()));
            assert_eq!(got, want(2), "{spill_dir:?}");
            assert!(cursor.take(1).is_err(), "past the end is an error");
            parts.remove(0);
            assert_eq!(
                parts.read(0).unwrap().num_rows(),
                0,
                "a removed partition is empty"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "files for partitions 1 and 2 only: 0 was removed"
        );
    }
}
