//! The same transform gives the same bits whichever way its compiled artifact was
//! obtained: compiled fresh in this process, deserialized from the compile cache, or run
//! by another process (`skewless run-transform`) from that cache or compiled afresh there.
//! The guest computes with NaNs, f32 rounding, SIMD lanes, a relaxed (possibly fused)
//! multiply-add and a scalar fused multiply-add.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use skewless_engine::{Engine, EngineConfig};
use skewless_test_artifacts as artifacts;

/// Pairs of special and ordinary values, every combination.
fn input() -> RecordBatch {
    let special = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        1.0 / 3.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::from_bits(0xfff8_dead_beef_0001),
        f64::MIN_POSITIVE,
        5e-324,
        1e308,
        -2.5e-8,
    ];
    let a: Vec<f64> = special.iter().flat_map(|&x| special.map(|_| x)).collect();
    let b: Vec<f64> = special.iter().flat_map(|_| special).collect();
    RecordBatch::try_from_iter([
        ("a", Arc::new(Float64Array::from(a)) as ArrayRef),
        ("b", Arc::new(Float64Array::from(b)) as ArrayRef),
    ])
    .unwrap()
}

/// Every output column as text: float bits, integers as they are.
fn fingerprint(batch: &RecordBatch) -> Vec<(String, Vec<String>)> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| f.name() != "a" && f.name() != "b")
        .map(|(f, column)| {
            let values = (0..column.len())
                .map(|i| match column.data_type() {
                    DataType::Float64 => {
                        format!(
                            "{:#x}",
                            column.as_primitive::<Float64Type>().value(i).to_bits()
                        )
                    }
                    DataType::Int64 => column.as_primitive::<Int64Type>().value(i).to_string(),
                    other => panic!("unexpected output type {other}"),
                })
                .collect();
            (f.name().clone(), values)
        })
        .collect()
}

fn engine(cache: Option<&Path>) -> Engine {
    Engine::new(EngineConfig {
        cache_dir: cache.map(Path::to_owned),
        ..EngineConfig::default()
    })
    .unwrap()
}

/// `skewless run-transform` in a child process; returns its output and its log.
fn other_process(input: &Path, out: &Path, cache: Option<&Path>) -> (RecordBatch, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skewless"));
    command
        .args(["run-transform", artifacts::DETERMINISM, "--input"])
        .arg(input)
        .arg("--output")
        .arg(out)
        .env("SKEWLESS_LOG", "skewless_engine=debug");
    match cache {
        Some(dir) => command.arg("--cache-dir").arg(dir),
        None => command.arg("--no-cache"),
    };
    let output = command.output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{log}");
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(File::open(out).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let schema = batches[0].schema();
    (
        arrow_select::concat::concat_batches(&schema, &batches).unwrap(),
        log,
    )
}

#[test]
fn fresh_cached_and_another_process_compute_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let batch = input();
    let input_path = dir.path().join("input.parquet");
    let mut writer =
        ArrowWriter::try_new(File::create(&input_path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let fresh = engine(None).load_file(artifacts::DETERMINISM).unwrap();
    let expected = fingerprint(&fresh.call(&batch).unwrap());
    assert!(expected.iter().any(|(name, _)| name == "relaxed_madd"));
    assert!(expected.iter().any(|(name, _)| name == "simd"));

    // Compiled into the cache, then deserialized from it by a second engine.
    let compiled = engine(Some(&cache))
        .load_file(artifacts::DETERMINISM)
        .unwrap();
    assert!(!compiled.loaded_from_cache());
    assert_eq!(
        fingerprint(&compiled.call(&batch).unwrap()),
        expected,
        "compiled with a cache"
    );
    let cached = engine(Some(&cache))
        .load_file(artifacts::DETERMINISM)
        .unwrap();
    assert!(cached.loaded_from_cache());
    assert_eq!(
        fingerprint(&cached.call(&batch).unwrap()),
        expected,
        "deserialized"
    );

    // Another process, from the same cache and compiling afresh.
    let (from_cache, log) = other_process(&input_path, &dir.path().join("a.parquet"), Some(&cache));
    assert!(
        log.contains("loaded compiled component from cache"),
        "{log}"
    );
    assert_eq!(
        fingerprint(&from_cache),
        expected,
        "another process, cached artifact"
    );
    let (compiled_there, log) = other_process(&input_path, &dir.path().join("b.parquet"), None);
    assert!(
        !log.contains("loaded compiled component from cache"),
        "{log}"
    );
    assert_eq!(
        fingerprint(&compiled_there),
        expected,
        "another process, compiled afresh"
    );
}
