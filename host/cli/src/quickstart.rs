//! The quickstart: generate a realistic card-transactions file and run the example
//! transforms over it, showing what each produced.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::EngineArgs;
use crate::pipeline::{self, PipelineArgs};
use crate::progress::Progress;

/// Arguments of `skewless quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// The example transform components to run, in order (scripts/quickstart builds them).
    #[arg(long = "module", required = true)]
    pub modules: Vec<PathBuf>,
    /// Where to write the generated data and the features.
    #[arg(long, default_value = "data/quickstart")]
    pub dir: PathBuf,
    /// How many transactions to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Seed of the generator: the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub engine: EngineArgs,
}

const MERCHANTS: &[&str] = &[
    "STARBUCKS COFFEE #1234",
    "Shell Oil 5532",
    "Whole Foods Market",
    "Delta Air Lines",
    "UBER   *TRIP",
    "Joe's Pizza",
    "Steam Games",
    "Netflix.com",
    "Hilton Hotel Paris",
    "Lucky Casino",
    "ACME Hardware",
    "Café de Flore",
    "Esso Station 9",
    "Spotify AB",
    "Corner Bakery",
    "Amtrak Rail",
];

/// Writes `rows` synthetic transactions to `path`.
pub fn generate(path: &Path, rows: usize, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let users = (rows / 20).max(1);
    let homes: Vec<(f64, f64)> = (0..users)
        .map(|_| (rng.random_range(25.0..60.0), rng.random_range(-120.0..30.0)))
        .collect();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer: Option<ArrowWriter<File>> = None;
    let progress = Progress::new("generating", rows as u64);
    let chunk = 100_000;
    let start_us: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    for first in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - first);
        let mut user = Vec::with_capacity(n);
        let mut amount = Vec::with_capacity(n);
        let mut avg = Vec::with_capacity(n);
        let mut max = Vec::with_capacity(n);
        let mut age = Vec::with_capacity(n);
        let mut lat = Vec::with_capacity(n);
        let mut lon = Vec::with_capacity(n);
        let mut home_lat = Vec::with_capacity(n);
        let mut home_lon = Vec::with_capacity(n);
        let mut merchant = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        for i in 0..n {
            let u = rng.random_range(0..users);
            user.push(u as i64);
            // Log-normal amounts: most small, a long tail of large ones.
            let z: f64 = normal(&mut rng);
            let a = (3.2 + 1.1 * z).exp();
            amount.push((a * 100.0).round() / 100.0);
            let user_avg = 20.0 + (u % 97) as f64 * 1.5;
            // Some users have no 7-day history yet.
            avg.push((u % 13 != 0).then_some(user_avg));
            max.push((u % 13 != 0).then_some(user_avg * (2.0 + (u % 5) as f64)));
            age.push(Some(((u * 7919) % 2000) as i64));
            let (hl, ho) = homes[u];
            let traveling = rng.random_bool(0.05);
            let jitter = if traveling { 8.0 } else { 0.2 };
            lat.push(hl + rng.random_range(-jitter..jitter));
            lon.push(ho + rng.random_range(-jitter..jitter));
            home_lat.push(hl);
            home_lon.push(ho);
            merchant.push(
                rng.random_bool(0.98)
                    .then(|| MERCHANTS[rng.random_range(0..MERCHANTS.len())]),
            );
            ts.push(start_us + ((first + i) as i64) * 30_000_000);
        }
        let batch = RecordBatch::try_from_iter([
            (
                "txn_id",
                Arc::new(Int64Array::from_iter_values(
                    (first as i64)..(first + n) as i64,
                )) as ArrayRef,
            ),
            ("user_id", Arc::new(Int64Array::from(user))),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
            ),
            ("amount", Arc::new(Float64Array::from(amount))),
            ("txn_amount_avg_7d", Arc::new(Float64Array::from(avg))),
            ("txn_amount_max_7d", Arc::new(Float64Array::from(max))),
            ("account_age_days", Arc::new(Int64Array::from(age))),
            ("lat", Arc::new(Float64Array::from(lat))),
            ("lon", Arc::new(Float64Array::from(lon))),
            ("home_lat", Arc::new(Float64Array::from(home_lat))),
            ("home_lon", Arc::new(Float64Array::from(home_lon))),
            ("merchant_name", Arc::new(StringArray::from(merchant))),
        ])?;
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(ArrowWriter::try_new(
                file.try_clone()?,
                batch.schema(),
                None,
            )?),
        };
        w.write(&batch)?;
        progress.advance(n as u64);
    }
    progress.finish();
    if let Some(w) = writer {
        w.close()?;
    }
    Ok(())
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Generates the data, runs the transforms, and prints a few rows of the result.
pub fn run(engine: &skewless_engine::Engine, args: &QuickstartArgs) -> Result<()> {
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let input = args.dir.join("transactions.parquet");
    let output = args.dir.join("transaction_features.parquet");
    generate(&input, args.rows, args.seed)?;
    println!(
        "generated {} transactions in {}",
        args.rows,
        input.display()
    );

    let transforms = args.engine.load(engine, &args.modules)?;
    for t in &transforms {
        println!("loaded {} {}", t.label(), t.signature());
    }
    let stats = pipeline::run_file(&transforms, &input, &output, &PipelineArgs::default())?;
    println!("{stats}");

    let file = File::open(&output)?;
    let mut reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(5)
        .build()?;
    if let Some(batch) = reader.next().transpose()? {
        let outputs: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| {
                let name = batch.schema().field(i).name().clone();
                name == "txn_id"
                    || transforms
                        .iter()
                        .any(|t| t.signature().outputs.iter().any(|o| o.name == name))
            })
            .collect();
        let preview = batch.project(&outputs)?;
        println!("first rows of the features:");
        for (field, column) in preview.schema().fields().iter().zip(preview.columns()) {
            let values: Vec<String> = (0..preview.num_rows())
                .map(|r| arrow_cast::display::array_value_to_string(column, r).unwrap_or_default())
                .collect();
            println!("  {:<24} {}", field.name(), values.join(" | "));
        }
    }
    Ok(())
}
