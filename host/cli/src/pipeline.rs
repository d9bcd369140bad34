//! Runs transforms over a Parquet file, batch by batch, on every core, in order.
//!
//! A reader thread decodes batches, worker threads run the transforms (each call in its
//! own sandboxed instance), and the calling thread writes the results in input order.
//! Memory stays bounded: at most a few batches per worker are in flight.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use skewless_core::fs::AtomicFile;
use skewless_engine::Transform;

use crate::progress::Progress;

/// How to run a file through transforms.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// Rows per transform call.
    #[arg(long, default_value_t = 65_536)]
    pub batch_size: usize,
    /// Worker threads running transforms [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write only the transforms' outputs, not the input columns.
    #[arg(long)]
    pub only_outputs: bool,
}

impl Default for PipelineArgs {
    fn default() -> Self {
        Self {
            batch_size: 65_536,
            threads: None,
            only_outputs: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Rows written.
    pub rows: u64,
    /// Transform calls made (batches × transforms).
    pub calls: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Where the output went.
    pub output: PathBuf,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "wrote {} rows to {} in {:.2}s ({:.0} rows/s, {} transform calls)",
            self.rows,
            self.output.display(),
            secs,
            self.rows as f64 / secs.max(1e-9),
            self.calls
        )
    }
}

/// The schema a run writes, checked before any row is read: every transform's inputs are
/// present (in the file or among earlier transforms' outputs) with a convertible type,
/// and no output name collides with another column.
pub fn plan_schema(
    input: &Schema,
    transforms: &[Transform],
    only_outputs: bool,
) -> Result<SchemaRef> {
    let mut available: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut outputs: Vec<Field> = Vec::new();
    for t in transforms {
        for spec in &t.signature().inputs {
            let field = available
                .iter()
                .find(|f| f.name() == &spec.name)
                .ok_or_else(|| {
                    anyhow!(
                        "{}: input column `{}` ({}) is neither in the input file nor an output of an earlier transform",
                        t.label(),
                        spec.name,
                        spec.dtype
                    )
                })?;
            if !spec.dtype.accepts(field.data_type()) {
                bail!(
                    "{}: input column `{}` has type {}, which does not convert losslessly to {}",
                    t.label(),
                    spec.name,
                    field.data_type(),
                    spec.dtype
                );
            }
        }
        for field in t.output_schema().fields() {
            if available.iter().any(|f| f.name() == field.name()) {
                bail!(
                    "{}: output column `{}` would overwrite an existing column of that name",
                    t.label(),
                    field.name()
                );
            }
            available.push(field.as_ref().clone());
            outputs.push(field.as_ref().clone());
        }
    }
    Ok(Arc::new(Schema::new(if only_outputs {
        outputs
    } else {
        available
    })))
}

/// Runs every transform over one batch: each sees the input columns and the outputs of
/// the transforms before it. `row_offset` names the batch's first row in errors.
pub fn apply(
    transforms: &[Transform],
    batch: &RecordBatch,
    schema: &SchemaRef,
    row_offset: u64,
) -> Result<RecordBatch> {
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for t in transforms {
        let working = RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), columns.clone())?;
        let out = t.call(&working).with_context(|| {
            format!(
                "rows {row_offset}..{} of the input",
                row_offset + batch.num_rows() as u64
            )
        })?;
        fields.extend(out.schema().fields().iter().cloned());
        columns.extend(out.columns().iter().cloned());
    }
    let projected = schema
        .fields()
        .iter()
        .map(|f| {
            let i = fields
                .iter()
                .position(|g| g.name() == f.name())
                .expect("planned column");
            Arc::clone(&columns[i])
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::clone(schema), projected)?)
}

/// Runs `transforms` over the Parquet file `input` and writes `output` atomically.
pub fn run_file(
    transforms: &[Transform],
    input: &Path,
    output: &Path,
    args: &PipelineArgs,
) -> Result<Stats> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let started = Instant::now();
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", input.display()))?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let schema = plan_schema(builder.schema(), transforms, args.only_outputs)
        .with_context(|| format!("checking {} against the transforms", input.display()))?;
    let reader = builder.with_batch_size(args.batch_size).build()?;

    let file = AtomicFile::create(output)
        .with_context(|| format!("creating a temporary file beside {}", output.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))?;

    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let progress = Progress::new("transforming", total);
    let mut rows = 0u64;
    let mut batches = 0u64;

    std::thread::scope(|scope| -> Result<()> {
        let (batch_tx, batch_rx) = sync_channel::<(u64, u64, RecordBatch)>(threads * 2);
        let (result_tx, result_rx) = sync_channel::<(u64, Result<RecordBatch>)>(threads * 2);
        let reader_error: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();

        let reader_error_w = Arc::clone(&reader_error);
        scope.spawn(move || {
            let mut offset = 0u64;
            for (seq, batch) in reader.enumerate() {
                match batch {
                    Ok(batch) => {
                        let n = batch.num_rows() as u64;
                        if batch_tx.send((seq as u64, offset, batch)).is_err() {
                            return;
                        }
                        offset += n;
                    }
                    Err(e) => {
                        *reader_error_w.lock().unwrap() =
                            Some(anyhow!(e).context("reading the input"));
                        return;
                    }
                }
            }
        });

        let batch_rx = Arc::new(Mutex::new(batch_rx));
        for _ in 0..threads {
            let batch_rx = Arc::clone(&batch_rx);
            let result_tx = result_tx.clone();
            let schema = Arc::clone(&schema);
            scope.spawn(move || worker(&batch_rx, &result_tx, transforms, &schema));
        }
        drop(result_tx);

        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        for (seq, result) in result_rx.iter() {
            pending.insert(seq, result);
            while let Some(result) = pending.remove(&next) {
                let batch = result?;
                writer.write(&batch)?;
                rows += batch.num_rows() as u64;
                batches += 1;
                progress.advance(batch.num_rows() as u64);
                next += 1;
            }
        }
        if let Some(e) = reader_error.lock().unwrap().take() {
            return Err(e);
        }
        Ok(())
    })?;
    progress.finish();
    writer
        .into_inner()?
        .commit()
        .with_context(|| format!("committing the finished file as {}", output.display()))?;
    Ok(Stats {
        rows,
        calls: batches * transforms.len() as u64,
        elapsed: started.elapsed(),
        output: output.to_owned(),
    })
}

fn worker(
    batches: &Mutex<Receiver<(u64, u64, RecordBatch)>>,
    results: &std::sync::mpsc::SyncSender<(u64, Result<RecordBatch>)>,
    transforms: &[Transform],
    schema: &SchemaRef,
) {
    loop {
        let next = batches.lock().map(|rx| rx.recv());
        let Ok(Ok((seq, offset, batch))) = next else {
            return;
        };
        let result = apply(transforms, &batch, schema, offset);
        if results.send((seq, result)).is_err() {
            return;
        }
    }
}
