//! End to end: read a Parquet file batch by batch, run the fraud transform, write
//! Parquet — once through the Wasm component, once with the same formulas compiled
//! natively. Same reader, same writer, one thread each, so the difference is the cost of
//! running the transform in the sandbox (ABI copies, instantiation, NaN canonicalization).
//!
//! The same for the float64 kernel (`y = x * 1.5 + 2.0`), where the transform itself costs
//! almost nothing and what remains is the cost of crossing into the sandbox.
//!
//! 10M rows under `cargo bench`; 50k rows as a smoke test under `cargo test --benches`.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Result;
use arrow_array::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

use arrow_array::ArrayRef;
use skewless_benches::{fraud_input, kernel_input, measuring, native_f64, native_fraud};
use skewless_engine::{Engine, EngineConfig};
use skewless_test_artifacts as artifacts;

const BATCH: usize = 65_536;

fn rows() -> usize {
    if measuring() { 10_000_000 } else { 50_000 }
}

/// An input file, generated once and kept under target/ between runs.
fn input_file(name: &str, rows: usize, make: fn(usize, usize) -> RecordBatch) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}_{rows}.parquet"));
    if !path.exists() {
        let tmp = path.with_extension("tmp");
        let schema = make(1, 0).schema();
        let mut w = ArrowWriter::try_new(File::create(&tmp).unwrap(), schema, None).unwrap();
        for offset in (0..rows).step_by(BATCH) {
            w.write(&make(BATCH.min(rows - offset), offset)).unwrap();
        }
        w.close().unwrap();
        std::fs::rename(tmp, &path).unwrap();
    }
    path
}

fn run(input: &Path, output: &Path, f: &dyn Fn(&RecordBatch) -> Result<RecordBatch>) -> usize {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(input).unwrap())
        .unwrap()
        .with_batch_size(BATCH)
        .build()
        .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut rows = 0;
    for batch in reader {
        let out = f(&batch.unwrap()).unwrap();
        rows += out.num_rows();
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(
                File::create(output).unwrap(),
                out.schema(),
                Some(props.clone()),
            )
            .unwrap()
        });
        w.write(&out).unwrap();
    }
    writer.unwrap().close().unwrap();
    rows
}

fn end_to_end(c: &mut Criterion) {
    let rows = rows();
    let input = input_file("fraud", rows, fraud_input);
    let kernel_in = input_file("f64", rows, |n, _| kernel_input(n).project(&[0]).unwrap());
    let out_dir = tempfile_dir();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let wasm = engine.load_file(artifacts::FRAUD_RISK).unwrap();
    let wasm_f64 = engine.load_file(artifacts::BENCH_F64).unwrap();
    let sample = fraud_input(10_000, 0);
    assert_eq!(
        wasm.call(&sample).unwrap(),
        native_fraud(&sample).unwrap(),
        "the twins must agree"
    );

    let mut group = c.benchmark_group("run_transform");
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(10);
    group.bench_function(format!("wasm/fraud_risk/{rows}"), |b| {
        b.iter(|| {
            run(&input, &out_dir.join("wasm.parquet"), &|batch| {
                Ok(wasm.call(batch)?)
            })
        })
    });
    group.bench_function(format!("native/fraud_risk/{rows}"), |b| {
        b.iter(|| run(&input, &out_dir.join("native.parquet"), &native_fraud))
    });
    group.bench_function(format!("wasm/f64_kernel/{rows}"), |b| {
        b.iter(|| {
            run(&kernel_in, &out_dir.join("wasm_f64.parquet"), &|batch| {
                Ok(wasm_f64.call(batch)?)
            })
        })
    });
    group.bench_function(format!("native/f64_kernel/{rows}"), |b| {
        b.iter(|| {
            run(&kernel_in, &out_dir.join("native_f64.parquet"), &|batch| {
                let y = native_f64(batch.column(0));
                Ok(RecordBatch::try_from_iter_with_nullable([(
                    "y",
                    Arc::new(y) as ArrayRef,
                    true,
                )])?)
            })
        })
    });
    group.finish();
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skewless-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
