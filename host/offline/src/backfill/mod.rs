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

use crate::aggregate::AggregatedView;
use crate::asof::{FeatureRows, asof_join};
use crate::parquet_io::{AtomicParquet, decoded_size, read_table, scan, schema_of};
use crate::source::{SourceStats, ViewSource, check_columns, column, conform, timestamps};
use crate::spill::{Partitioned, partitions};
use crate::{Error, Progress, Result, workers};
use skewless_core::key::KeyColumn;

mod in_memory;
mod partitioned;
mod writer;

use writer::{Writer, with_writer};

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
    /// Per view: the kernel's view of it, when it is aggregated.
    aggregated: Vec<Option<AggregatedView>>,
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
        let d = project.definitions();
        let aggregated = plan
            .views
            .iter()
            .map(|v| {
                let view = &d.feature_views[v.index];
                match d.source(&view.source) {
                    Some(source) if view.is_aggregated() => {
                        AggregatedView::new(view, source).map(Some)
                    }
                    _ => Ok(None),
                }
            })
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
            aggregated,
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
    /// entity row, up to the latest; for an aggregated view, its longest window and a hop
    /// before.
    fn window(&self, v: usize) -> (i64, i64) {
        let reach = match &self.aggregated[v] {
            Some(a) => Some(a.reach()),
            None => self.plan.views[v].ttl.micros(),
        };
        let min = reach.map_or(i64::MIN, |t| self.first.saturating_sub(t));
        (min, self.last)
    }

    /// View `v` at each entity row: its aggregates, or the as-of join's latest row.
    fn join_view(
        &self,
        v: usize,
        keys: &KeyColumn,
        at: &[i64],
        rows: &FeatureRows,
    ) -> Result<ViewColumns> {
        match &self.aggregated[v] {
            Some(aggregated) => aggregated.join(keys, at, rows, self.threads),
            None => asof_join(
                keys,
                at,
                rows,
                &self.dtypes(v),
                self.plan.views[v].ttl,
                self.threads,
            ),
        }
    }

    /// The entity times of a batch of the frame (checked non-null by [`Job::new`]).
    fn at(&self, batch: &RecordBatch) -> Result<Vec<i64>> {
        let why = "the entity frame needs it";
        timestamps(
            self.entities,
            EVENT_TIMESTAMP,
            &column(batch, self.entities, EVENT_TIMESTAMP, why)?,
        )?
        .into_iter()
        .enumerate()
        .map(|(row, t)| {
            t.ok_or_else(|| {
                Error::Internal(format!(
                    "entity row {row} of a batch has a null {EVENT_TIMESTAMP}, which opening the frame refuses"
                ))
            })
        })
        .collect::<Result<Vec<i64>>>()
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
