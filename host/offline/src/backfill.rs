//! Historical retrieval: an entity frame in, a training set out, through the one plan.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, UInt8Array};
use arrow_schema::{DataType as ArrowType, Field, Schema, SchemaRef};
use skewless_core::assemble::{Status, ViewColumns};
use skewless_core::key::KeyType;
use skewless_core::{DType, Project};
use skewless_plan::ServicePlan;

use crate::asof::{KeyColumn, asof_join};
use crate::parquet_io::{AtomicParquet, decoded_size, read_table, scan, schema_of};
use crate::source::{SourceStats, ViewSource, check_columns, column, conform, timestamps};
use crate::spill::{Partitioned, partitions};
use crate::{Error, Progress, Result, workers};

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
    /// Entity-key partitions the join ran in: 1 when it ran in one piece, more when the
    /// inputs were split into cache-sized pieces.
    pub partitions: usize,
    /// Whether the partitions went to spill files on disk (the inputs exceeded the memory
    /// limit) rather than staying in memory.
    pub spilled: bool,
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

/// How a backfill runs.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Threads for the join and the transforms.
    pub threads: usize,
    /// How feature columns are named.
    pub names: ColumnNames,
    /// Memory the join may use, in bytes, estimated from the Parquet footers. Inputs
    /// larger than this are hash-partitioned by entity key into spill files and joined one
    /// partition at a time.
    pub memory_limit: u64,
    /// A fixed number of partitions, overriding the estimate (1: never spill).
    pub partitions: Option<usize>,
    /// Where spill files go (a temporary directory is made inside and removed after);
    /// the output's directory when `None`.
    pub spill_dir: Option<PathBuf>,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            names: ColumnNames::Qualified,
            memory_limit: default_memory_limit(),
            partitions: None,
            spill_dir: None,
        }
    }
}

/// The largest join run in one piece (by the estimate). Beyond it the join is split into
/// partitions by entity key, which is faster, as each partition's key table and rows stay
/// in the caches: for 1M x 10M rows, 4.0 s in 11 partitions against 8.4 s in one
/// (BENCHMARKS.md). The partitions stay in memory unless the inputs exceed the memory
/// limit.
const PARTITION_BYTES: u64 = 128 << 20;

/// Half the memory available now (`MemAvailable`; 4 GiB where that is unknown).
pub fn default_memory_limit() -> u64 {
    available_memory().map_or(4 << 30, |bytes| bytes / 2)
}

fn available_memory() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
}

/// Partitions at most: each is a few open files per view while spilling.
const MAX_PARTITIONS: usize = 128;

/// Backfills `plan` for the entity frame at `entities` and writes the training set to
/// `out`: the entity frame's columns, unchanged and in order, then the service's features
/// in the online response's order, named as `options.names` says. Source paths are
/// relative to `base`. A transform failure fails the backfill; `out` is replaced only when
/// complete.
///
/// When the inputs fit `options.memory_limit` they are joined in memory; otherwise both
/// sides are hash-partitioned by each view's entity key into spill files, each partition
/// is joined alone, and the results are read back in entity-row order while the output
/// is streamed, so memory stays bounded whatever the input sizes.
pub fn backfill(
    project: &Project,
    base: &Path,
    plan: &ServicePlan,
    entities: &Path,
    out: &Path,
    options: &BackfillOptions,
    progress: &dyn Progress,
) -> Result<BackfillStats> {
    let started = Instant::now();
    let job = Job::new(project, base, plan, entities, options)?;
    let mut file = AtomicParquet::create(out, job.schema.clone())?;
    // Where the partitions go: nowhere (one piece), memory, or a spill directory.
    let spill = if job.parts == 1 {
        None
    } else if !job.spill {
        tracing::info!(
            partitions = job.parts,
            estimate_bytes = job.estimate,
            limit_bytes = options.memory_limit,
            "joining in memory, in cache-sized partitions by entity key"
        );
        None
    } else {
        let root = options
            .spill_dir
            .clone()
            .or_else(|| out.parent().map(Path::to_owned))
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let spill = tempfile::Builder::new()
            .prefix(".skewless-spill-")
            .tempdir_in(&root)
            .map_err(|source| Error::Io { path: root, source })?;
        tracing::info!(
            partitions = job.parts,
            estimate_bytes = job.estimate,
            limit_bytes = options.memory_limit,
            dir = %spill.path().display(),
            "inputs exceed the memory limit: spilling by entity key"
        );
        Some(spill)
    };
    let sources = with_writer(
        |batch| file.write(batch),
        |out| {
            if job.parts == 1 {
                job.in_memory(out, progress)
            } else {
                job.partitioned(spill.as_ref().map(tempfile::TempDir::path), out, progress)
            }
        },
    )?;
    drop(spill);
    file.finish()?;
    Ok(BackfillStats {
        rows: job.rows,
        features: plan.features.len(),
        elapsed: started.elapsed(),
        sources,
        partitions: job.parts,
        spilled: job.spill,
    })
}

/// Hands output batches, in order, to the thread that writes them.
struct Writer {
    send: std::sync::mpsc::SyncSender<RecordBatch>,
}

impl Writer {
    fn write(&self, batch: RecordBatch) -> Result<()> {
        // The writer thread only hangs up after a write failed; `with_writer` reports that
        // failure rather than this one.
        self.send
            .send(batch)
            .map_err(|_| Error::Internal("the output writer stopped".into()))
    }
}

/// Runs `body` with a [`Writer`] whose batches a second thread hands to `write` (the
/// output file's), so that encoding the output overlaps with computing the next chunks.
/// A failed write fails the whole, with the write's own error.
fn with_writer<R>(
    mut write: impl FnMut(&RecordBatch) -> Result<()> + Send,
    body: impl FnOnce(&Writer) -> Result<R>,
) -> Result<R> {
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
        let writer = workers::spawn(scope, move || -> Result<()> {
            workers::fault_point("output writer");
            for batch in receive {
                write(&batch)?;
            }
            Ok(())
        });
        let outcome = body(&Writer { send });
        // `body` dropped its Writer: the channel closes once the last batch is taken.
        let written = workers::join_one("output writer", writer).and_then(|w| w);
        written.and(outcome)
    })
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

/// One chunk of entity rows on its way through the transforms.
struct Chunk {
    /// The index of its first entity row.
    first: usize,
    /// The entity frame's columns.
    frame: Vec<ArrayRef>,
    at: Vec<i64>,
    views: Vec<ViewColumns>,
    request: Vec<ArrayRef>,
}

/// A backfill's inputs, checked before any work: the output schema, the entity frame's
/// times, each view's source, and how many partitions the join needs.
struct Job<'a> {
    plan: &'a ServicePlan,
    entities: &'a Path,
    threads: usize,
    schema: Arc<Schema>,
    rows: usize,
    /// The earliest and latest entity times (µs).
    first: i64,
    last: i64,
    sources: Vec<ViewSource<'a>>,
    parts: usize,
    /// Whether the partitions go to disk.
    spill: bool,
    estimate: u64,
}

impl<'a> Job<'a> {
    fn new(
        project: &'a Project,
        base: &Path,
        plan: &'a ServicePlan,
        entities: &'a Path,
        options: &BackfillOptions,
    ) -> Result<Self> {
        let frame_schema = schema_of(entities)?;
        let schema = output_schema(&frame_schema, entities, plan, options.names)?;
        // Every column the backfill reads, present and convertible, before any work.
        let needed = plan
            .join_keys
            .iter()
            .map(|k| {
                (
                    k.name.as_str(),
                    k.dtype.dtype(),
                    "a join key of the service",
                )
            })
            .chain(plan.request_fields.iter().map(|f| {
                (
                    f.name.as_str(),
                    f.dtype,
                    "a request field a transform reads",
                )
            }))
            .chain([(
                EVENT_TIMESTAMP,
                DType::Timestamp,
                "the entity frame needs it",
            )]);
        check_columns(&frame_schema, entities, needed)?;
        // The entity times: every row needs one, and their range bounds the sources' reads.
        let (mut rows, mut first, mut last) = (0usize, i64::MAX, i64::MIN);
        scan(
            entities,
            Some(&[EVENT_TIMESTAMP]),
            "the entity frame needs it",
            None,
            CHUNK,
            |batch| {
                for (i, t) in timestamps(entities, EVENT_TIMESTAMP, batch.column(0))?
                    .into_iter()
                    .enumerate()
                {
                    let t = t.ok_or_else(|| {
                        Error::Definitions(format!(
                            "{}: `{EVENT_TIMESTAMP}` is null at row {}; every entity row needs a time",
                            entities.display(),
                            rows + i
                        ))
                    })?;
                    first = first.min(t);
                    last = last.max(t);
                }
                rows += batch.num_rows();
                Ok(())
            },
        )?;
        if rows == 0 {
            (first, last) = (0, -1);
        }
        let sources = plan
            .views
            .iter()
            .map(|v| ViewSource::new(project, base, &project.definitions().feature_views[v.index]))
            .collect::<Result<Vec<_>>>()?;
        let mut job = Self {
            plan,
            entities,
            threads: options.threads.max(1),
            schema,
            rows,
            first,
            last,
            sources,
            parts: 1,
            spill: false,
            estimate: 0,
        };
        // What an in-memory join holds: the frame and its output, each view's rows twice
        // (read, then canonical), and a few words per entity row per view.
        let mut estimate = 2 * decoded_size(entities, None, "the entity frame", None)?;
        for (v, source) in job.sources.iter().enumerate() {
            source.check()?;
            let (min, max) = job.window(v);
            estimate += 2 * source.decoded_size(min, max)? + 24 * rows as u64;
        }
        job.estimate = estimate;
        // Over the limit, partitions go to disk, each small enough for the limit; under
        // it, they stay in memory and are only there to keep each join cache-sized.
        job.spill = estimate > options.memory_limit;
        let pieces = |size: u64| {
            usize::try_from(estimate.div_ceil(size.max(1)))
                .unwrap_or(MAX_PARTITIONS)
                .clamp(1, MAX_PARTITIONS)
        };
        job.parts = match options.partitions {
            Some(p) => p.clamp(1, MAX_PARTITIONS),
            None => pieces(PARTITION_BYTES).max(if job.spill {
                pieces(options.memory_limit)
            } else {
                1
            }),
        };
        Ok(job)
    }

    /// The event times of view `v`'s rows that can match: one TTL before the earliest
    /// entity row, up to the latest.
    fn window(&self, v: usize) -> (i64, i64) {
        let min = self.plan.views[v]
            .ttl
            .micros()
            .map_or(i64::MIN, |t| self.first.saturating_sub(t));
        (min, self.last)
    }

    /// The entity times of a batch of the frame (checked non-null by [`Job::new`]).
    fn at(&self, batch: &RecordBatch) -> Result<Vec<i64>> {
        let why = "the entity frame needs it";
        Ok(timestamps(
            self.entities,
            EVENT_TIMESTAMP,
            &column(batch, self.entities, EVENT_TIMESTAMP, why)?,
        )?
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
    }

    /// The join-key columns of a batch of the frame, canonical, in the plan's order.
    fn keys(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let keys = self.plan.join_keys.iter();
        self.canonical(
            batch,
            keys.map(|k| (k.name.as_str(), k.dtype.dtype())),
            "a join key of the service",
        )
    }

    /// Columns `wanted` (name, dtype) of a batch of the frame, converted to their dtypes.
    fn canonical<'n>(
        &self,
        batch: &RecordBatch,
        wanted: impl Iterator<Item = (&'n str, DType)>,
        why: &str,
    ) -> Result<Vec<ArrayRef>> {
        wanted
            .map(|(name, dtype)| {
                let array = column(batch, self.entities, name, why)?;
                conform(self.entities, name, &array, dtype)
            })
            .collect()
    }

    /// View `v`'s keys, encoded, from the frame's key columns.
    fn view_keys(&self, v: usize, keys: &[ArrayRef], rows: usize) -> KeyColumn {
        let typed: Vec<(ArrayRef, KeyType)> = self.plan.views[v]
            .key_columns
            .iter()
            .map(|&k| (keys[k].clone(), self.plan.join_keys[k].dtype))
            .collect();
        KeyColumn::encode(&typed, rows)
    }

    /// The request fields of a batch of the frame, canonical.
    fn request(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let fields = self.plan.request_fields.iter();
        self.canonical(
            batch,
            fields.map(|f| (f.name.as_str(), f.dtype)),
            "a request field a transform reads",
        )
    }

    fn dtypes(&self, v: usize) -> Vec<DType> {
        self.plan.views[v]
            .features
            .iter()
            .map(|f| f.dtype)
            .collect()
    }

    /// The whole join in memory.
    fn in_memory(
        &self,
        out: &Writer,
        progress: &dyn Progress,
    ) -> Result<Vec<(String, SourceStats)>> {
        let frame = read_table(self.entities, None, "the entity frame", None)?.batch;
        let rows = frame.num_rows();
        let at = self.at(&frame)?;
        let keys = self.keys(&frame)?;
        let request = self.request(&frame)?;
        // Steps: one per view joined, then one per entity row through the transforms.
        progress.start(rows as u64 + self.plan.views.len() as u64);
        let mut views = Vec::with_capacity(self.plan.views.len());
        let mut sources = Vec::with_capacity(self.plan.views.len());
        for (v, view) in self.plan.views.iter().enumerate() {
            let (min, max) = self.window(v);
            let (rows_of_view, read) = self.sources[v].read(min, max)?;
            views.push(asof_join(
                &self.view_keys(v, &keys, rows),
                &at,
                &rows_of_view,
                &self.dtypes(v),
                view.ttl,
                self.threads,
            )?);
            tracing::info!(
                view = %view.name,
                source_rows = rows_of_view.event_ts.len(),
                row_groups_skipped = read.row_groups_skipped,
                "joined as of each entity row"
            );
            sources.push((view.name.clone(), read));
            progress.advance(1);
        }
        let starts: Vec<usize> = (0..rows).step_by(CHUNK).collect();
        for group in starts.chunks(self.threads) {
            let chunks = group
                .iter()
                .map(|&first| {
                    let len = CHUNK.min(rows - first);
                    Chunk {
                        first,
                        frame: frame
                            .columns()
                            .iter()
                            .map(|c| c.slice(first, len))
                            .collect(),
                        at: at[first..first + len].to_vec(),
                        views: views.iter().map(|v| slice_view(v, first, len)).collect(),
                        request: request.iter().map(|a| a.slice(first, len)).collect(),
                    }
                })
                .collect();
            self.run_chunks(chunks, out, progress)?;
        }
        Ok(sources)
    }

    /// The join partition by partition, through spill files under `dir`, or through
    /// partitions kept in memory when `dir` is `None`.
    fn partitioned(
        &self,
        dir: Option<&Path>,
        out: &Writer,
        progress: &dyn Progress,
    ) -> Result<Vec<(String, SourceStats)>> {
        let parts = self.parts;
        let views = &self.plan.views;
        progress.start(self.rows as u64 + views.len() as u64);
        let phase = Instant::now();
        // 1. The entity keys and times, split per view by that view's key.
        let entity_schemas: Vec<SchemaRef> =
            (0..views.len()).map(|v| self.entity_schema(v)).collect();
        let mut entity_parts: Vec<Partitioned> = entity_schemas
            .iter()
            .enumerate()
            .map(|(v, schema)| {
                Partitioned::new(dir, &format!("entities-{v}"), schema.clone(), parts)
            })
            .collect();
        let mut names: Vec<&str> = self
            .plan
            .join_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        names.push(EVENT_TIMESTAMP);
        scan(
            self.entities,
            Some(&names),
            "the entity frame",
            None,
            CHUNK,
            |batch| {
                let n = batch.num_rows();
                let keys = self.keys(&batch)?;
                let at: ArrayRef = Arc::new(Int64Array::from(self.at(&batch)?));
                for ((v, split), schema) in entity_parts.iter_mut().enumerate().zip(&entity_schemas)
                {
                    let mut columns: Vec<ArrayRef> = views[v]
                        .key_columns
                        .iter()
                        .map(|&k| keys[k].clone())
                        .collect();
                    columns.push(at.clone());
                    let part = partitions(&self.view_keys(v, &keys, n), parts);
                    split.split(&self.batch(schema.clone(), columns)?, &part)?;
                }
                Ok(())
            },
        )?;
        let mut entity_parts = entity_parts
            .into_iter()
            .map(Partitioned::finish)
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(
            elapsed_ms = phase.elapsed().as_millis() as u64,
            "entity frame split"
        );
        let phase = Instant::now();
        // 2. Per view: its source rows split the same way, then each partition joined
        // alone, its result spilled in entity-row order.
        let mut joined = Vec::with_capacity(views.len());
        let mut sources = Vec::with_capacity(views.len());
        for (v, view) in views.iter().enumerate() {
            let source = &self.sources[v];
            let key_types: Vec<KeyType> = view
                .key_columns
                .iter()
                .map(|&k| self.plan.join_keys[k].dtype)
                .collect();
            let encode = |batch: &RecordBatch| {
                let typed: Vec<(ArrayRef, KeyType)> = key_types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (batch.column(i).clone(), *t))
                    .collect();
                KeyColumn::encode(&typed, batch.num_rows())
            };
            let (min, max) = self.window(v);
            let mut split = Partitioned::new(
                dir,
                &format!("source-{v}"),
                source.canonical_schema(),
                parts,
            );
            let read = source.scan(min, max, CHUNK, |batch| {
                split.split(&batch, &partitions(&encode(&batch), parts))
            })?;
            let mut source_parts = split.finish()?;
            tracing::debug!(view = %view.name, elapsed_ms = phase.elapsed().as_millis() as u64, "source split");
            let result_schema = self.result_schema(v);
            let mut results =
                Partitioned::new(dir, &format!("joined-{v}"), result_schema.clone(), parts);
            for p in 0..parts {
                let entity = entity_parts[v].read(p)?;
                entity_parts[v].remove(p);
                let features = source_parts.read(p)?;
                source_parts.remove(p);
                if entity.num_rows() == 0 {
                    continue;
                }
                let k = key_types.len();
                let at = entity.column(k).as_primitive::<Int64Type>().values();
                let result = asof_join(
                    &encode(&entity),
                    at,
                    &source.rows(&features),
                    &self.dtypes(v),
                    view.ttl,
                    self.threads,
                )?;
                let mut columns = result.columns;
                columns.push(Arc::new(UInt8Array::from_iter_values(
                    result.status.iter().map(|s| status_code(*s)),
                )));
                columns.push(Arc::new(Int64Array::from(result.event_ts)));
                results.append(p, &self.batch(result_schema.clone(), columns)?)?;
            }
            tracing::info!(
                view = %view.name,
                source_rows = read.rows_read,
                row_groups_skipped = read.row_groups_skipped,
                partitions = parts,
                "joined as of each entity row, partition by partition"
            );
            joined.push(results.finish()?);
            sources.push((view.name.clone(), read));
            progress.advance(1);
            tracing::debug!(view = %view.name, elapsed_ms = phase.elapsed().as_millis() as u64, "source split and joined");
        }
        let phase = Instant::now();
        // 3. The frame again, in order, each row's view columns taken from its partition's
        // results (which are in entity-row order within the partition).
        let mut cursors = joined
            .iter()
            .map(|j| (0..parts).map(|p| j.cursor(p)).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let mut pending = Vec::with_capacity(self.threads);
        let mut first = 0;
        scan(
            self.entities,
            None,
            "the entity frame",
            None,
            CHUNK,
            |batch| {
                let n = batch.num_rows();
                let keys = self.keys(&batch)?;
                let mut chunk_views = Vec::with_capacity(views.len());
                for (v, cursors) in cursors.iter_mut().enumerate() {
                    let part = partitions(&self.view_keys(v, &keys, n), parts);
                    let mut need = vec![0usize; parts];
                    let index: Vec<(usize, usize)> = part
                        .iter()
                        .map(|&p| {
                            let p = p as usize;
                            need[p] += 1;
                            (p, need[p] - 1)
                        })
                        .collect();
                    let taken = cursors
                        .iter_mut()
                        .zip(&need)
                        .map(|(c, &n)| c.take(n))
                        .collect::<Result<Vec<_>>>()?;
                    let columns = (0..taken.first().map_or(0, RecordBatch::num_columns))
                        .map(|c| {
                            let arrays: Vec<&dyn Array> =
                                taken.iter().map(|b| b.column(c).as_ref()).collect();
                            arrow_select::interleave::interleave(&arrays, &index)
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|source| Error::Arrow {
                            context: format!(
                                "a spill file in {}",
                                dir.map_or_else(|| self.entities.to_owned(), Path::to_owned)
                                    .display()
                            ),
                            source,
                        })?;
                    chunk_views.push(view_columns(columns));
                }
                pending.push(Chunk {
                    first,
                    frame: batch.columns().to_vec(),
                    at: self.at(&batch)?,
                    views: chunk_views,
                    request: self.request(&batch)?,
                });
                first += n;
                if pending.len() >= self.threads {
                    self.run_chunks(std::mem::take(&mut pending), out, progress)?;
                }
                Ok(())
            },
        )?;
        self.run_chunks(pending, out, progress)?;
        tracing::debug!(
            elapsed_ms = phase.elapsed().as_millis() as u64,
            "transformed and written"
        );
        Ok(sources)
    }

    /// A spilled entity row for view `v`: its key columns, then its time.
    fn entity_schema(&self, v: usize) -> SchemaRef {
        let mut fields: Vec<Field> = self.plan.views[v]
            .key_columns
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                Field::new(
                    format!("key{i}"),
                    self.plan.join_keys[k].dtype.dtype().arrow_type(),
                    true,
                )
            })
            .collect();
        fields.push(Field::new("at", ArrowType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    /// A spilled join result for view `v`: its features, the status, the event time.
    fn result_schema(&self, v: usize) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .dtypes(v)
            .iter()
            .enumerate()
            .map(|(i, d)| Field::new(format!("f{i}"), d.arrow_type(), true))
            .collect();
        fields.push(Field::new("status", ArrowType::UInt8, false));
        fields.push(Field::new("event_ts", ArrowType::Int64, true));
        Arc::new(Schema::new(fields))
    }

    fn batch(&self, schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        RecordBatch::try_new(schema, columns).map_err(|source| Error::Arrow {
            context: format!("a joined batch of {}", self.entities.display()),
            source,
        })
    }

    /// Runs the transforms over `chunks`, one thread each, and hands them to the writer
    /// in order.
    fn run_chunks(&self, chunks: Vec<Chunk>, out: &Writer, progress: &dyn Progress) -> Result<()> {
        let results: Vec<Result<RecordBatch>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    workers::spawn(scope, move || {
                        workers::fault_point("transform chunk");
                        self.run_chunk(chunk, progress)
                    })
                })
                .collect();
            workers::join_all("transform chunk", handles)
        })?;
        for batch in results {
            out.write(batch?)?;
        }
        Ok(())
    }

    fn run_chunk(&self, chunk: Chunk, progress: &dyn Progress) -> Result<RecordBatch> {
        let len = chunk.at.len();
        let output = self.plan.run(len, &chunk.at, chunk.views, &chunk.request);
        for call in &output.calls {
            if let Some(e) = &call.error {
                return Err(Error::Transform {
                    transform: self.plan.transforms[call.transform].name.clone(),
                    first: chunk.first,
                    end: chunk.first + len,
                    source: e.clone(),
                });
            }
        }
        progress.advance(len as u64);
        let mut columns = chunk.frame;
        columns.extend(output.columns);
        self.batch(self.schema.clone(), columns)
    }
}

fn status_code(status: Status) -> u8 {
    match status {
        Status::Present => 0,
        Status::NullValue => 1,
        Status::NotFound => 2,
        Status::OutsideMaxAge => 3,
        Status::TransformError => 4,
    }
}

fn status_of(code: u8) -> Status {
    match code {
        0 => Status::Present,
        1 => Status::NullValue,
        3 => Status::OutsideMaxAge,
        4 => Status::TransformError,
        _ => Status::NotFound,
    }
}

/// [`ViewColumns`] from a spilled join result's columns (see [`Job::result_schema`]).
fn view_columns(mut columns: Vec<ArrayRef>) -> ViewColumns {
    let event_ts = columns
        .pop()
        .map_or_else(Vec::new, |a| a.as_primitive::<Int64Type>().iter().collect());
    let status = columns.pop().map_or_else(Vec::new, |a| {
        a.as_primitive::<UInt8Type>()
            .values()
            .iter()
            .map(|&c| status_of(c))
            .collect()
    });
    ViewColumns {
        columns,
        status,
        event_ts,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array};

    use super::*;

    fn batch(x: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![x])) as ArrayRef)])
            .unwrap()
    }

    fn failure(reason: &str) -> Error {
        Error::Parquet {
            path: PathBuf::from("out.parquet"),
            reason: reason.into(),
        }
    }

    /// The writer thread writes every batch in order; a failed write is the error
    /// reported, not the "writer stopped" its producer then sees; a failed producer's
    /// own error comes through once the writer has drained.
    #[test]
    fn the_writer_thread_keeps_order_and_reports_the_first_cause() {
        let mut written = Vec::new();
        let done = with_writer(
            |b| {
                written.push(b.column(0).as_primitive::<Int64Type>().value(0));
                Ok(())
            },
            |out| (0..10).try_for_each(|x| out.write(batch(x))),
        );
        assert!(done.is_ok());
        assert_eq!(written, (0..10).collect::<Vec<_>>());

        let error = with_writer(
            |b| {
                if b.column(0).as_primitive::<Int64Type>().value(0) == 3 {
                    return Err(failure("disk full"));
                }
                Ok(())
            },
            |out| (0..100).try_for_each(|x| out.write(batch(x))),
        )
        .unwrap_err();
        assert!(error.to_string().contains("disk full"), "{error}");

        let error = with_writer(
            |_| Ok(()),
            |out| {
                out.write(batch(1))?;
                Err::<(), _>(failure("the transform failed"))
            },
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("the transform failed"),
            "{error}"
        );
    }
}
