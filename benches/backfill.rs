//! The backfill against DuckDB, side by side in one run: the same entity frame and
//! feature source (Parquet; 6 features, 7-day TTL), the same point-in-time join and the
//! same arithmetic (Skewless runs the fraud_risk component, DuckDB runs the formulas in
//! SQL), both writing Parquet in entity-frame order. Each side runs in its own process,
//! which reports its wall time and peak RSS (VmHWM). Then materialization: the same
//! feature source into a fresh online store, in rows/s.
//!
//! `cargo bench -p skewless-benches --bench backfill` measures 1M x 1M, 1M x 10M and
//! 10M x 10M (entity rows x feature rows; data cached in target/bench-data/backfill),
//! each side three times, alternating, and reports the median; `cargo test --benches`
//! runs 20k x 20k once as a smoke test and checks that both sides agree.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use skewless_benches::{measure, measuring, peak_rss_kb, write_parquet_batches};
use skewless_engine::{Engine, EngineConfig};
use skewless_registry::Registry;

const DEFS: &str = r#"
project: bench
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: user_stats, path: features.parquet}]
feature_views:
  - {name: user_stats, entities: [user], source: user_stats, ttl: 7d,
     features: [{name: txn_amount_avg_7d, dtype: float64}, {name: txn_amount_max_7d, dtype: float64},
                {name: account_age_days, dtype: int64}, {name: f4, dtype: float64},
                {name: f5, dtype: float64}, {name: f6, dtype: float64}]}
transforms:
  - {name: txn_risk, module: fraud_risk@1.0.0,
     inputs: [user_stats:txn_amount_avg_7d, user_stats:txn_amount_max_7d, user_stats:account_age_days, request:amount],
     request_schema: [{name: amount, dtype: float64}]}
feature_services: [{name: fraud_v1, features: ["user_stats:*", "txn_risk:*"]}]
"#;
/// 2026-10-01T00:00:00Z.
const START: i64 = 1_790_812_800_000_000;
const DAY: i64 = 86_400_000_000;
/// Entity and feature times spread over this many days.
const DAYS: i64 = 30;

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    /// A number in `0..n` for any `n`: [`Lcg::next`] draws 31 bits, which for times over
    /// days would cover only the first 36 minutes.
    fn wide(&mut self, n: u64) -> u64 {
        ((self.next(1 << 31) << 31) | self.next(1 << 31)) % n
    }
}

/// Feature rows: one user per 10 rows, random times; entity rows: random users (a tenth
/// unknown), random times, an amount.
fn generate(dir: &Path, entities: usize, features: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let users = (features / 10).max(1) as u64;
    let mut rng = Lcg(1);
    let features_path = dir.join("features.parquet");
    if !features_path.exists() {
        write_parquet_batches(&features_path, features, |_, n| {
            let user: Vec<i64> = (0..n).map(|_| rng.next(users) as i64).collect();
            let ts: Vec<i64> = (0..n)
                .map(|_| START + rng.wide((DAYS * DAY) as u64) as i64)
                .collect();
            let f = |rng: &mut Lcg| -> Vec<f64> {
                (0..n).map(|_| rng.next(100_000) as f64 / 100.0).collect()
            };
            let avg = f(&mut rng);
            let max: Vec<f64> = avg.iter().map(|a| a * 3.0).collect();
            let age: Vec<i64> = (0..n).map(|_| rng.next(1000) as i64).collect();
            let (f4, f5, f6) = (f(&mut rng), f(&mut rng), f(&mut rng));
            RecordBatch::try_from_iter([
                ("user_id", Arc::new(Int64Array::from(user)) as ArrayRef),
                (
                    "event_timestamp",
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                ),
                ("txn_amount_avg_7d", Arc::new(Float64Array::from(avg))),
                ("txn_amount_max_7d", Arc::new(Float64Array::from(max))),
                ("account_age_days", Arc::new(Int64Array::from(age))),
                ("f4", Arc::new(Float64Array::from(f4))),
                ("f5", Arc::new(Float64Array::from(f5))),
                ("f6", Arc::new(Float64Array::from(f6))),
            ])
            .expect("valid batch")
        })?;
    }
    let entities_path = dir.join("entities.parquet");
    if !entities_path.exists() {
        write_parquet_batches(&entities_path, entities, |_, n| {
            let user: Vec<i64> = (0..n)
                .map(|_| rng.next(users + users / 10) as i64)
                .collect();
            let ts: Vec<i64> = (0..n)
                .map(|_| START + rng.wide((DAYS * DAY) as u64) as i64)
                .collect();
            let amount: Vec<f64> = (0..n).map(|_| rng.next(500_000) as f64 / 100.0).collect();
            RecordBatch::try_from_iter([
                ("user_id", Arc::new(Int64Array::from(user)) as ArrayRef),
                (
                    "event_timestamp",
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                ),
                ("amount", Arc::new(Float64Array::from(amount))),
            ])
            .expect("valid batch")
        })?;
    }
    Ok(())
}

fn engine(dir: &Path) -> Result<Engine> {
    Ok(Engine::new(EngineConfig {
        cache_dir: Some(dir.join("compiled")),
        ..EngineConfig::default()
    })?)
}

/// The child process: one Skewless backfill, as `skewless backfill` runs it.
fn child(dir: &Path, threads: usize) -> Result<()> {
    // A memory limit (bytes) makes the join spill; the output then goes to its own file.
    let limit: Option<u64> = std::env::var("SKEWLESS_BENCH_MEMORY_LIMIT")
        .ok()
        .map(|v| v.parse())
        .transpose()?;
    let started = Instant::now();
    let registry = Registry::open(&dir.join("data"), engine(dir)?)?;
    let project = registry.validate(DEFS)?;
    let modules = |m: &_| registry.transform(m);
    let plan = skewless_plan::ServicePlan::for_service(&project, "fraud_v1", &modules)?;
    let stats = skewless_offline::backfill(
        &project,
        dir,
        &plan,
        &dir.join("entities.parquet"),
        &dir.join(if limit.is_some() {
            "skewless_spilled.parquet"
        } else {
            "skewless_out.parquet"
        }),
        &skewless_offline::BackfillOptions {
            threads,
            memory_limit: limit.unwrap_or_else(skewless_offline::default_memory_limit),
            ..Default::default()
        },
        &skewless_offline::NoProgress,
    )?;
    if limit.is_some() && !stats.spilled {
        bail!("the memory limit did not make the join spill");
    }
    println!(
        "elapsed_s={:.3} peak_rss_kb={} partitions={}",
        started.elapsed().as_secs_f64(),
        peak_rss_kb(),
        stats.partitions
    );
    Ok(())
}

/// The median time, the largest peak RSS and the partitions of repeated runs.
fn summary(runs: &[(f64, u64, u64)]) -> (f64, u64, u64) {
    let mut times: Vec<f64> = runs.iter().map(|r| r.0).collect();
    times.sort_by(f64::total_cmp);
    let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
    (times[times.len() / 2], rss, runs.last().map_or(0, |r| r.2))
}

fn column(path: &Path, name: &str) -> Result<Vec<Option<f64>>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let c = batch.column_by_name(name).context("no such column")?;
        out.extend(c.as_primitive::<Float64Type>().iter());
    }
    Ok(out)
}

/// Both sides must produce the same features (DuckDB's arithmetic may differ in the last
/// bit, so floats compare within 1e-12 relative).
fn agree(dir: &Path, ours: &str) -> Result<()> {
    for name in [
        "user_stats:f6",
        "txn_risk:amount_zscore_proxy",
        "txn_risk:amount_to_max_ratio",
    ] {
        let ours = column(&dir.join(ours), name)?;
        let theirs = column(&dir.join("duckdb_out.parquet"), name)?;
        if ours.len() != theirs.len() {
            bail!("{name}: {} rows vs {}", ours.len(), theirs.len());
        }
        for (row, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let same = match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                (None, None) => true,
                _ => false,
            };
            if !same {
                bail!("{name} row {row}: Skewless {a:?}, DuckDB {b:?}");
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    if let Ok(dir) = std::env::var("SKEWLESS_BENCH_BACKFILL_CHILD") {
        // SKEWLESS_LOG=debug shows the backfill's phases.
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SKEWLESS_LOG") {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
        }
        return child(Path::new(&dir), threads);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data/backfill");
    let sizes: &[(usize, usize)] = if measuring() {
        &[
            (1_000_000, 1_000_000),
            (1_000_000, 10_000_000),
            (10_000_000, 10_000_000),
        ]
    } else {
        &[(20_000, 20_000)]
    };
    println!("backfill, {threads} threads: entity rows x feature rows (6 features, 1 transform)");
    for &(entities, features) in sizes {
        let dir = root.join(format!("{entities}x{features}"));
        generate(&dir, entities, features)?;
        // The generated data is kept between runs, the registry is not: a rebuilt
        // fraud_risk (another SDK, say) would be refused as other bytes under 1.0.0.
        let data = dir.join("data");
        if data.join("registry").exists() {
            std::fs::remove_dir_all(data.join("registry"))?;
        }
        let registry = Registry::open(&data, engine(&dir)?)?;
        let module = std::fs::read(skewless_test_artifacts::FRAUD_RISK)?;
        registry.upload("fraud_risk", "1.0.0", &module)?;
        drop(registry);

        // Each side runs `runs` times, alternating, so that a disturbance of the shared
        // machine (another tenant, the writeback of the previous step) hits both; the
        // median time and the largest peak RSS are reported.
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference/duckdb_backfill.py");
        let runs = if measuring() { 3 } else { 1 };
        let (mut ours, mut duck) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(measure(
                Command::new(std::env::current_exe()?)
                    .env("SKEWLESS_BENCH_BACKFILL_CHILD", &dir)
                    .env("SKEWLESS_LOG", "warn"),
            )?);
            duck.push(measure(
                Command::new("python3")
                    .arg(&script)
                    .arg(dir.join("entities.parquet"))
                    .arg(dir.join("features.parquet"))
                    .arg(dir.join("duckdb_out.parquet"))
                    .arg(threads.to_string()),
            )?);
        }
        let (ours_s, ours_kb, ours_parts) = summary(&ours);
        let (duck_s, duck_kb, _) = summary(&duck);
        agree(&dir, "skewless_out.parquet")?;
        println!(
            "  {entities:>10} x {features:>10}: Skewless ({ours_parts} part.) {ours_s:>7.2} s ({:>5.2} M rows/s, peak RSS {:>6} MiB) | DuckDB {duck_s:>7.2} s ({:>5.2} M rows/s, peak RSS {:>6} MiB) | same values",
            entities as f64 / ours_s / 1e6,
            ours_kb / 1024,
            entities as f64 / duck_s / 1e6,
            duck_kb / 1024,
        );
        // The same join under a memory limit far below its inputs: spilled by key.
        let limit: u64 = if measuring() { 64 << 20 } else { 64 << 10 };
        let (spill_s, spill_kb, spill_parts) = measure(
            Command::new(std::env::current_exe()?)
                .env("SKEWLESS_BENCH_BACKFILL_CHILD", &dir)
                .env("SKEWLESS_BENCH_MEMORY_LIMIT", limit.to_string())
                .env("SKEWLESS_LOG", "warn"),
        )?;
        agree(&dir, "skewless_spilled.parquet")?;
        println!(
            "  {entities:>10} x {features:>10}, --memory-limit {} KiB: Skewless ({spill_parts} part.) {spill_s:>7.2} s ({:>5.2} M rows/s, peak RSS {:>6} MiB) | same values",
            limit >> 10,
            entities as f64 / spill_s / 1e6,
            spill_kb / 1024,
        );

        // Materialize the whole feature source into a fresh store.
        let registry = Registry::open(&dir.join("data"), engine(&dir)?)?;
        let project = registry.validate(DEFS)?;
        let store_dir = tempfile::tempdir_in(&dir)?;
        let store = skewless_online::LocalStore::open(
            store_dir.path(),
            &skewless_online::view_schemas(&project),
            skewless_online::StoreOptions::default(),
        )?;
        let windows =
            skewless_offline::plan_windows(&project, &[], Some(i64::MIN), i64::MAX, |_| None)?;
        let stats = skewless_offline::materialize(
            &project,
            &dir,
            &store,
            &windows,
            threads,
            &skewless_offline::NoProgress,
        )?;
        println!(
            "  materialize {features:>10} feature rows -> {:>9} entities: {:.2} s ({:.2} M source rows/s)",
            stats.rows_written(),
            stats.elapsed.as_secs_f64(),
            stats.rows_in_windows() as f64 / stats.elapsed.as_secs_f64() / 1e6
        );
    }
    Ok(())
}
