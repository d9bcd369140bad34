//! `skewless run-transform` end to end: the real binary over real Parquet files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use skewless_engine::{Engine, EngineConfig};
use skewless_test_artifacts as artifacts;

fn skewless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skewless"))
        .args(args)
        .env("SKEWLESS_LOG", "warn")
        .env(
            "SKEWLESS_CACHE_DIR",
            std::env::temp_dir().join("skewless-cli-test-cache"),
        )
        .output()
        .expect("running skewless")
}

fn transactions(rows: usize) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "txn_id",
            Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(Float64Array::from_iter(
                (0..rows).map(|i| (i % 13 != 0).then_some(i as f64 * 0.37)),
            )),
        ),
        (
            "txn_amount_avg_7d",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| (i % 50) as f64),
            )),
        ),
        (
            "txn_amount_max_7d",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| (i % 9) as f64 * 40.0),
            )),
        ),
        (
            "account_age_days",
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| (i % 90) as i64),
            )),
        ),
        (
            "merchant_name",
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| (i % 7 != 0).then(|| format!("Shop #{i} Market"))),
            )),
        ),
    ])
    .unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn read_parquet(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// A temporary directory holding `in.parquet`, and where `out.parquet` goes.
struct Scratch {
    dir: tempfile::TempDir,
    input: PathBuf,
    output: PathBuf,
}

impl Scratch {
    fn with_input(batch: &RecordBatch) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.parquet");
        let output = dir.path().join("out.parquet");
        write_parquet(&input, batch);
        Self { dir, input, output }
    }

    /// `skewless run-transform MODULES -i in.parquet -o out.parquet EXTRA`.
    fn run(&self, modules: &[&str], extra: &[&str]) -> Output {
        let mut args = vec!["run-transform"];
        args.extend_from_slice(modules);
        args.extend([
            "-i",
            self.input.to_str().unwrap(),
            "-o",
            self.output.to_str().unwrap(),
        ]);
        args.extend_from_slice(extra);
        skewless(&args)
    }
}

fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn output_equals_direct_calls_whatever_the_batching() {
    let data = transactions(10_000);
    let scratch = Scratch::with_input(&data);
    let out = scratch.run(
        &[artifacts::FRAUD_RISK, artifacts::MERCHANT_CATEGORY],
        &["--batch-size", "777", "--threads", "2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote 10000 rows"));

    let written = read_parquet(&scratch.output);
    assert_eq!(written.num_rows(), 10_000);
    let names: Vec<String> = written
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "txn_id",
            "amount",
            "txn_amount_avg_7d",
            "txn_amount_max_7d",
            "account_age_days",
            "merchant_name",
            "amount_zscore_proxy",
            "amount_to_max_ratio",
            "is_new_account",
            "amount_log1p",
            "merchant_normalized",
            "merchant_category",
            "merchant_name_length",
            "merchant_hash_bucket",
        ]
    );
    // The same transforms called once over the whole input give the same values, in the
    // same row order: batching and threads change nothing.
    let engine = Engine::new(EngineConfig::default()).unwrap();
    for module in [artifacts::FRAUD_RISK, artifacts::MERCHANT_CATEGORY] {
        let direct = engine.load_file(module).unwrap().call(&data).unwrap();
        for (name, column) in direct.schema().fields().iter().zip(direct.columns()) {
            assert_eq!(
                written.column_by_name(name.name()).unwrap(),
                column,
                "{}",
                name.name()
            );
        }
    }
    assert_eq!(written.column(0), data.column(0));
}

#[test]
fn only_outputs_writes_just_the_features() {
    let scratch = Scratch::with_input(&transactions(100));
    let out = scratch.run(&[artifacts::MERCHANT_CATEGORY], &["--only-outputs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_parquet(&scratch.output).num_columns(), 4);
}

#[test]
fn a_failing_transform_leaves_no_output_file() {
    let batch = RecordBatch::try_from_iter([
        (
            "mode",
            Arc::new(StringArray::from(vec!["panic"; 10])) as ArrayRef,
        ),
        ("x", Arc::new(Float64Array::from(vec![1.0; 10]))),
    ])
    .unwrap();
    let scratch = Scratch::with_input(&batch);
    let out = scratch.run(&[artifacts::HOSTILE], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rows 0..10 of the input"), "{stderr}");
    assert!(
        stderr.contains("guest_hostile.wasm: the transform trapped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hostile guest panicked on purpose"),
        "{stderr}"
    );
    assert_eq!(
        dir_entries(scratch.dir.path()),
        std::slice::from_ref(&scratch.input),
        "no output and no temporary file left"
    );
}

#[test]
fn a_missing_input_column_is_named_before_any_work() {
    let scratch = Scratch::with_input(&transactions(10).project(&[0, 1]).unwrap());
    let out = scratch.run(&[artifacts::FRAUD_RISK], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fraud_risk.wasm: input column `txn_amount_avg_7d` (float64) is neither in the input file nor an output of an earlier transform"),
        "{stderr}"
    );
    assert!(!scratch.output.exists());
}

#[test]
fn bad_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let input = dir.path().join("in.parquet");
    std::fs::write(&input, b"not parquet either").unwrap();
    let out = skewless(&[
        "run-transform",
        junk.to_str().unwrap(),
        "-i",
        "x",
        "-o",
        "y",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.wasm: not a WebAssembly file"));
    let out = skewless(&[
        "run-transform",
        artifacts::FRAUD_RISK,
        "-i",
        input.to_str().unwrap(),
        "-o",
        "y.parquet",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a readable Parquet file"));

    // A refused signature names its cause once (it was printed twice).
    let out = skewless(&[
        "run-transform",
        artifacts::BAD_SIGNATURE,
        "-i",
        input.to_str().unwrap(),
        "-o",
        "y.parquet",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("declared twice").count(), 1, "{stderr}");
}

#[test]
fn help_explains_the_commands() {
    let out = skewless(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["run-transform", "inspect", "quickstart"] {
        assert!(help.contains(command), "{help}");
    }
    let out = skewless(&["run-transform", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--batch-size") && help.contains("temporary name"),
        "{help}"
    );
}

#[test]
fn inspect_prints_the_signature() {
    let out = skewless(&["inspect", artifacts::GEO_DISTANCE]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("distance_from_home_km: float64"), "{text}");
    assert!(text.contains("sha256:"), "{text}");
}
