//! The aggregate backfill against DuckDB, side by side in one run: the same event history
//! (Parquet: user, event time, arrival time, amount, merchant) and entity frame, the same
//! seven aggregates over 1 h to 30 d windows with 5 min hops (count, sum, mean, max,
//! stddev, last, approximate distinct count), each side in its own process reporting its
//! wall time and peak RSS (VmHWM). Skewless computes exact, correctly rounded values;
//! DuckDB sums in floating point, so the check compares counts exactly and means within
//! 1e-9 relative.
//!
//! `cargo bench -p skewless-benches --bench aggregate_backfill` runs 1M entity rows over
//! 10M events (data cached in target/bench-data/aggregates), each side three times,
//! alternating, and reports the median; `cargo test --benches` runs 20k x 20k once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use skewless_benches::{measure, measuring, peak_rss_kb, write_parquet_batches};

const DEFS: &str = r#"
project: bench
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: transactions, path: events.parquet, timestamp_field: event_timestamp,
     created_timestamp_field: ingested_at, allowed_lateness: 1h,
     columns: [{name: amount, dtype: float64}, {name: merchant, dtype: string}]}
feature_views:
  - name: user_txn
    entities: [user]
    source: transactions
    online: false
    hop: 5m
    aggregations:
      - {name: txn_count_1h,     function: count,  window: 1h}
      - {name: amount_sum_24h,   function: sum,    column: amount, window: 24h}
      - {name: amount_mean_7d,   function: mean,   column: amount, window: 7d}
      - {name: amount_max_7d,    function: max,    column: amount, window: 7d}
      - {name: amount_stddev_7d, function: stddev, column: amount, window: 7d}
      - {name: last_merchant,    function: last,   column: merchant, window: 30d}
      - {name: merchants_30d,    function: approx_count_distinct, column: merchant, window: 30d}
feature_services: [{name: txn, features: ["user_txn:*"]}]
"#;
/// 2026-10-01T00:00:00Z.
const START: i64 = 1_790_812_800_000_000;
const MINUTE: i64 = 60_000_000;
const DAY: i64 = 86_400_000_000;
/// Events and entity rows spread over this many days.
const DAYS: i64 = 45;

/// SplitMix64: 64-bit draws.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// Events: a user per 100 events, random times over the days, arrival within 10 min (a
/// few up to 2 h: late), cent amounts, one of 1,000 merchants. Entity rows: random users
/// and times.
fn generate(dir: &Path, entities: usize, events: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let users = (events / 100).max(1) as u64;
    let mut rng = Rng(1);
    let events_path = dir.join("events.parquet");
    if !events_path.exists() {
        write_parquet_batches(&events_path, events, |_, n| {
            let user: Vec<i64> = (0..n).map(|_| rng.below(users) as i64).collect();
            let ts: Vec<i64> = (0..n)
                .map(|_| START + rng.below((DAYS * DAY) as u64) as i64)
                .collect();
            let created: Vec<i64> = ts
                .iter()
                .map(|t| {
                    let late = rng.below(100) == 0;
                    t + rng.below(if late { 120 } else { 10 } as u64 * MINUTE as u64) as i64
                })
                .collect();
            let amount: Vec<f64> = (0..n).map(|_| rng.below(100_000) as f64 / 100.0).collect();
            let merchant: Vec<String> = (0..n)
                .map(|_| format!("merchant-{}", rng.below(1000)))
                .collect();
            RecordBatch::try_from_iter([
                ("user_id", Arc::new(Int64Array::from(user)) as ArrayRef),
                (
                    "event_timestamp",
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                ),
                (
                    "ingested_at",
                    Arc::new(TimestampMicrosecondArray::from(created).with_timezone("UTC")),
                ),
                ("amount", Arc::new(Float64Array::from(amount))),
                ("merchant", Arc::new(StringArray::from(merchant))),
            ])
            .expect("valid batch")
        })?;
    }
    let entities_path = dir.join("entities.parquet");
    if !entities_path.exists() {
        write_parquet_batches(&entities_path, entities, |_, n| {
            let user: Vec<i64> = (0..n).map(|_| rng.below(users) as i64).collect();
            let ts: Vec<i64> = (0..n)
                .map(|_| START + rng.below((DAYS * DAY) as u64) as i64)
                .collect();
            RecordBatch::try_from_iter([
                ("user_id", Arc::new(Int64Array::from(user)) as ArrayRef),
                (
                    "event_timestamp",
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                ),
            ])
            .expect("valid batch")
        })?;
    }
    Ok(())
}

/// The child process: one Skewless backfill, as `skewless backfill` runs it.
fn child(dir: &Path, threads: usize) -> Result<()> {
    let started = Instant::now();
    let project = skewless_core::Definitions::from_yaml(DEFS)?
        .validate(&|_: &skewless_core::definitions::ModuleRef| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = skewless_plan::ServicePlan::for_service(&project, "txn", &|_| None)?;
    skewless_offline::backfill(
        &project,
        dir,
        &plan,
        &dir.join("entities.parquet"),
        &dir.join("skewless_out.parquet"),
        &skewless_offline::BackfillOptions {
            threads,
            ..Default::default()
        },
        &skewless_offline::NoProgress,
    )?;
    println!(
        "elapsed_s={:.3} peak_rss_kb={}",
        started.elapsed().as_secs_f64(),
        peak_rss_kb()
    );
    Ok(())
}

fn read(path: &Path) -> Result<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
    Ok(arrow_select::concat::concat_batches(
        &batches[0].schema(),
        &batches,
    )?)
}

/// Counts equal, means within 1e-9 relative (DuckDB's sums are rounded as they go).
fn agree(dir: &Path) -> Result<()> {
    let ours = read(&dir.join("skewless_out.parquet"))?;
    let theirs = read(&dir.join("duckdb_out.parquet"))?;
    let count = |b: &RecordBatch, name: &str| -> Result<Vec<i64>> {
        Ok(b.column_by_name(name)
            .context(name.to_owned())?
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.unwrap_or(-1))
            .collect())
    };
    if count(&ours, "user_txn:txn_count_1h")? != count(&theirs, "txn_count_1h")? {
        bail!("txn_count_1h differs");
    }
    let mean = |b: &RecordBatch, name: &str| -> Result<Vec<Option<f64>>> {
        Ok(b.column_by_name(name)
            .context(name.to_owned())?
            .as_primitive::<Float64Type>()
            .iter()
            .collect())
    };
    for (r, (a, b)) in mean(&ours, "user_txn:amount_mean_7d")?
        .iter()
        .zip(mean(&theirs, "amount_mean_7d")?)
        .enumerate()
    {
        let same = match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            (None, None) => true,
            _ => false,
        };
        if !same {
            bail!("amount_mean_7d row {r}: Skewless {a:?}, DuckDB {b:?}");
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    if let Ok(dir) = std::env::var("SKEWLESS_BENCH_AGGREGATES_CHILD") {
        return child(Path::new(&dir), threads);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data/aggregates");
    let sizes: &[(usize, usize)] = if measuring() {
        &[(1_000_000, 10_000_000)]
    } else {
        &[(20_000, 20_000)]
    };
    println!(
        "aggregate backfill, {threads} threads: entity rows x events (7 aggregates, 1 h to 30 d windows)"
    );
    for &(entities, events) in sizes {
        let dir = root.join(format!("{entities}x{events}"));
        generate(&dir, entities, events)?;
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference/duckdb_aggregates.py");
        let runs = if measuring() { 3 } else { 1 };
        let (mut ours, mut duck) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(measure(
                Command::new(std::env::current_exe()?).env("SKEWLESS_BENCH_AGGREGATES_CHILD", &dir),
            )?);
            duck.push(measure(
                Command::new("python3")
                    .arg(&script)
                    .arg(dir.join("events.parquet"))
                    .arg(dir.join("entities.parquet"))
                    .arg(dir.join("duckdb_out.parquet"))
                    .arg(threads.to_string()),
            )?);
        }
        agree(&dir)?;
        let median = |runs: &mut Vec<(f64, u64, u64)>| {
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            (
                runs[runs.len() / 2].0,
                runs.iter().map(|r| r.1).max().unwrap_or(0),
            )
        };
        let ((ours_s, ours_kb), (duck_s, duck_kb)) = (median(&mut ours), median(&mut duck));
        println!(
            "  {entities:>9} x {events:>10}: Skewless {ours_s:>7.2} s (peak RSS {:>5} MiB) | DuckDB {duck_s:>7.2} s (peak RSS {:>5} MiB) | counts equal, means within 1e-9",
            ours_kb / 1024,
            duck_kb / 1024
        );
    }
    Ok(())
}
