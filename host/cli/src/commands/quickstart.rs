//! The quickstart, end to end on embedded defaults: generate a seeded synthetic fraud
//! dataset (users, transactions with labels as the entity frame and as an event source,
//! daily user profiles), upload the example transforms, apply
//! `example-transforms/fraud.yaml`, backfill a point-in-time training set (window
//! aggregates of the transactions and the profiles), materialize the latest profiles into
//! the online store, start the server (which builds the aggregate tiles from the event
//! history), ask it for features and print the curl that does the same.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skewless_online::{LocalStore, StoreOptions};
use skewless_registry::Registry;

use crate::progress::Progress;
use crate::{EngineArgs, client, threads};

/// The example definitions, shipped with the example transforms.
pub const DEFINITIONS: &str = include_str!("../../../../example-transforms/fraud.yaml");
/// The example transforms the definitions pin, all at version 1.0.0.
const MODULES: [&str; 3] = ["fraud_risk", "geo_distance", "merchant_category"];
/// The file that marks a directory as the quickstart's own, safe to overwrite.
const MARKER: &str = ".skewless-quickstart";

/// Arguments of `skewless quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// The example transform components (scripts/quickstart builds them), named by file:
    /// fraud_risk.wasm, geo_distance.wasm and merchant_category.wasm.
    #[arg(long = "module", required = true)]
    pub modules: Vec<PathBuf>,
    /// Where to write the data, the training set and the server's data directory
    /// (`DIR/data`). Must be empty, absent, or a directory an earlier quickstart made.
    #[arg(long, default_value = "data/quickstart")]
    pub dir: PathBuf,
    /// How many transactions to generate (users: one per 40 transactions).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Seed of the generator: the same seed and rows give the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the server listens at the end.
    #[arg(long, default_value = "127.0.0.1:6566")]
    pub listen: SocketAddr,
    /// Stop after the server has answered the example request, instead of serving until
    /// Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Worker threads for the backfill and materialization [default: the number of cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// The end of the generated history (RFC 3339, or microseconds since the epoch)
    /// [default: now, to the second]. Aggregates are served as of the request time, so
    /// the history ends now; a fixed end reproduces the files of an earlier run.
    #[arg(long)]
    pub end: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Keep the online store (rows and aggregate tiles) in Redis instead of `DIR/data`.
    #[command(flatten)]
    pub(crate) redis: super::serve::RedisArgs,
}

const DAY: i64 = 86_400_000_000;
/// Days of history.
const DAYS: i64 = 60;

/// The span of the generated history: from the midnight `DAYS` days before the day of
/// `end` (UTC) to `end`, where materialization stops.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: i64,
    end: i64,
}

impl Span {
    fn ending(end: i64) -> Span {
        Span {
            start: end.div_euclid(DAY) * DAY - DAYS * DAY,
            end,
        }
    }
}

/// The directory of the transactions event source, under the quickstart directory.
const EVENTS: &str = "transaction_events";

const MERCHANTS: &[&str] = &[
    "STARBUCKS COFFEE #1234",
    "Shell Oil 5532",
    "Whole Foods Market",
    "Delta Air Lines",
    "UBER   *TRIP",
    "Joe's Pizza",
    "Netflix.com",
    "Hilton Hotel Paris",
    "ACME Hardware",
    "Café de Flore",
    "Esso Station 9",
    "Spotify AB",
    "Corner Bakery",
    "Amtrak Rail",
];
/// Where stolen cards are spent, more often than elsewhere.
const RISKY_MERCHANTS: &[&str] = &[
    "Lucky Casino",
    "Steam Games",
    "GIFT CARD MALL",
    "CRYPTO XCHG",
];

/// A card holder.
struct User {
    home: (f64, f64),
    /// Account age on the first day.
    age0: i64,
    /// Log of the typical amount.
    mu: f64,
    /// The time the card is stolen, if it is.
    stolen_at: Option<i64>,
}

/// The generated transactions, in time order.
struct Transactions {
    user: Vec<i64>,
    ts: Vec<i64>,
    /// When each reached the event source: up to two minutes after it happened.
    ingested: Vec<i64>,
    amount: Vec<f64>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    merchant: Vec<Option<&'static str>>,
    fraud: Vec<bool>,
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn users(rng: &mut StdRng, n: usize, span: Span) -> Vec<User> {
    (0..n)
        .map(|_| User {
            home: (rng.random_range(25.0..60.0), rng.random_range(-120.0..30.0)),
            // One in ten accounts opened within the last month.
            age0: if rng.random_bool(0.1) {
                rng.random_range(0..30)
            } else {
                rng.random_range(30..3000)
            },
            mu: 3.2 + 0.6 * normal(rng),
            stolen_at: rng
                .random_bool(0.03)
                .then(|| span.start + rng.random_range(0..span.end - span.start)),
        })
        .collect()
}

fn transactions(rng: &mut StdRng, users: &[User], rows: usize, span: Span) -> Transactions {
    let mut ts: Vec<i64> = (0..rows)
        .map(|_| span.start + rng.random_range(0..span.end - span.start))
        .collect();
    ts.sort_unstable();
    let mut t = Transactions {
        user: Vec::with_capacity(rows),
        ingested: Vec::with_capacity(rows),
        ts,
        amount: Vec::with_capacity(rows),
        lat: Vec::with_capacity(rows),
        lon: Vec::with_capacity(rows),
        merchant: Vec::with_capacity(rows),
        fraud: Vec::with_capacity(rows),
    };
    for i in 0..rows {
        let u = rng.random_range(0..users.len());
        let user = &users[u];
        // After the theft, a third of the card's transactions are the thief's.
        let fraud = user.stolen_at.is_some_and(|s| t.ts[i] >= s) && rng.random_bool(0.33)
            // New accounts are opened to defraud, now and then.
            || (user.age0 < 30 && rng.random_bool(0.01));
        let z = normal(rng);
        let (amount, (lat, lon), merchant) = if fraud {
            let far = (
                rng.random_range(-40.0..70.0),
                rng.random_range(-150.0..150.0),
            );
            let merchant = if rng.random_bool(0.6) {
                RISKY_MERCHANTS[rng.random_range(0..RISKY_MERCHANTS.len())]
            } else {
                MERCHANTS[rng.random_range(0..MERCHANTS.len())]
            };
            ((user.mu + 1.5 + 0.8 * z).exp(), far, Some(merchant))
        } else {
            let jitter = if rng.random_bool(0.05) { 8.0 } else { 0.2 };
            let place = (
                user.home.0 + rng.random_range(-jitter..jitter),
                user.home.1 + rng.random_range(-jitter..jitter),
            );
            // A few legitimate merchants come without a name.
            let merchant = rng
                .random_bool(0.98)
                .then(|| MERCHANTS[rng.random_range(0..MERCHANTS.len())]);
            ((user.mu + 0.8 * z).exp(), place, merchant)
        };
        t.user.push(u as i64);
        // Arrivals never run past the end: the history is what has arrived by then.
        t.ingested
            .push((t.ts[i] + rng.random_range(0..=120_000_000)).min(span.end - 1));
        t.amount.push((amount * 100.0).round() / 100.0);
        t.lat.push(lat);
        t.lon.push(lon);
        t.merchant.push(merchant);
        t.fraud.push(fraud);
    }
    t
}

/// One row per user at every midnight of the span: the account's age that day and the
/// home location.
fn daily_profiles(users: &[User], span: Span) -> Result<RecordBatch> {
    let (mut user, mut ts, mut age, mut lat, mut lon) = (vec![], vec![], vec![], vec![], vec![]);
    for (u, profile) in users.iter().enumerate() {
        for day in 0.. {
            let midnight = span.start + day * DAY;
            if midnight > span.end {
                break;
            }
            user.push(u as i64);
            ts.push(midnight);
            age.push(profile.age0 + day);
            lat.push(profile.home.0);
            lon.push(profile.home.1);
        }
    }
    Ok(RecordBatch::try_from_iter([
        ("user_id", Arc::new(Int64Array::from(user)) as ArrayRef),
        (
            "event_timestamp",
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        ),
        ("account_age_days", Arc::new(Int64Array::from(age))),
        ("home_lat", Arc::new(Float64Array::from(lat))),
        ("home_lon", Arc::new(Float64Array::from(lon))),
    ])?)
}

fn write(path: &Path, batch: &RecordBatch) -> Result<()> {
    let batches: Vec<RecordBatch> = (0..batch.num_rows())
        .step_by(100_000)
        .map(|s| batch.slice(s, 100_000.min(batch.num_rows() - s)))
        .collect();
    skewless_offline::write_parquet_atomic(path, batch.schema(), &batches)?;
    Ok(())
}

/// Writes the dataset into `dir`; returns (users, frauds, daily profile rows).
fn generate(dir: &Path, rows: usize, seed: u64, span: Span) -> Result<(usize, usize, usize)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let users = users(&mut rng, (rows / 40).max(1), span);
    let t = transactions(&mut rng, &users, rows, span);
    let frauds = t.fraud.iter().filter(|f| **f).count();
    let profiles = daily_profiles(&users, span)?;
    let timestamps =
        |ts: &[i64]| Arc::new(TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC"));
    let txns = RecordBatch::try_from_iter([
        (
            "txn_id",
            Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
        ),
        ("user_id", Arc::new(Int64Array::from(t.user.clone()))),
        ("event_timestamp", timestamps(&t.ts)),
        ("amount", Arc::new(Float64Array::from(t.amount.clone()))),
        ("lat", Arc::new(Float64Array::from(t.lat))),
        ("lon", Arc::new(Float64Array::from(t.lon))),
        (
            "merchant_name",
            Arc::new(StringArray::from(t.merchant.clone())),
        ),
        ("is_fraud", Arc::new(BooleanArray::from(t.fraud))),
    ])?;
    // The same transactions as the event source the aggregates are computed from, with
    // their arrival times (what a producer pushing them would have given).
    let events = RecordBatch::try_from_iter([
        ("user_id", Arc::new(Int64Array::from(t.user)) as ArrayRef),
        ("event_timestamp", timestamps(&t.ts)),
        ("ingested_at", timestamps(&t.ingested)),
        ("amount", Arc::new(Float64Array::from(t.amount))),
        ("merchant_name", Arc::new(StringArray::from(t.merchant))),
    ])?;
    write(&dir.join("transactions.parquet"), &txns)?;
    write(&dir.join(EVENTS).join("history.parquet"), &events)?;
    write(&dir.join("user_daily_profile.parquet"), &profiles)?;
    Ok((users.len(), frauds, profiles.num_rows()))
}

/// Makes `dir` ready: created if absent; refused if it holds files the quickstart did not
/// make; otherwise the previous run's data directory is removed.
fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} is not empty and was not made by the quickstart; pass another --dir",
                dir.display()
            );
        }
        // The previous run's store, and its event log (events pushed to it included).
        for made in [dir.join("data"), dir.join(EVENTS)] {
            if made.exists() {
                std::fs::remove_dir_all(&made)
                    .with_context(|| format!("removing the previous {}", made.display()))?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "made by `skewless quickstart`\n")?;
    Ok(())
}

/// The example request: two users, now (aggregates are served as of the request time).
fn example_request() -> serde_json::Value {
    serde_json::json!({
        "feature_service": "fraud_v1",
        "entities": {"user_id": [7, 12]},
        "request_data": {
            "amount": [42.5, 1900.0],
            "lat": [48.85, -33.9],
            "lon": [2.35, 151.2],
            "merchant_name": ["Café de Flore", "Lucky Casino"],
        },
    })
}

/// Transactions served as traffic before the checks.
const TRAFFIC: usize = 500;

/// Steps 6 and 7: serve the last transactions of the data as traffic, then verify the
/// served rows against the offline path and report drift against the training set.
fn check(dir: &Path, addr: SocketAddr) -> Result<()> {
    let fields = ["user_id", "amount", "lat", "lon", "merchant_name"];
    let table = skewless_offline::read_table(
        &dir.join("transactions.parquet"),
        Some(&fields),
        "transactions",
        None,
    )?;
    let batch = &table.batch;
    let take = TRAFFIC.min(batch.num_rows());
    let last = batch.slice(batch.num_rows() - take, take);
    let mut columns = serde_json::Map::new();
    for (field, dtype) in fields.iter().zip([
        skewless_core::DType::Int64,
        skewless_core::DType::Float64,
        skewless_core::DType::Float64,
        skewless_core::DType::Float64,
        skewless_core::DType::String,
    ]) {
        let column = last
            .column_by_name(field)
            .context("a transactions column")?;
        let reader = skewless_core::assemble::ValueReader::new(column, dtype)
            .with_context(|| format!("transactions.{field} is not {dtype}"))?;
        let values = (0..take)
            .map(|i| skewless_ops::sample::to_json(reader.value(i)))
            .collect();
        columns.insert((*field).to_owned(), serde_json::Value::Array(values));
    }
    let user_id = columns
        .remove("user_id")
        .context("the transactions have no user_id")?;
    let request = serde_json::json!({
        "feature_service": "fraud_v1",
        "entities": {"user_id": user_id},
        "request_data": columns,
    });
    let base = format!("http://{addr}");
    client::send(
        "POST",
        &format!("{base}/v1/features"),
        None,
        "application/json",
        serde_json::to_vec(&request)?,
    )?;
    let (_, body) = client::send(
        "POST",
        &format!("{base}/v1/verify"),
        None,
        "application/json",
        serde_json::to_vec(&serde_json::json!({"service": "fraud_v1", "rows": 200}))?,
    )?;
    let report: skewless_ops::verify::Report = serde_json::from_str(&body)?;
    println!(
        "6. served the last {take} transactions as traffic, then verified {} of them again at {}: {} values, {} mismatches against the offline path",
        report.rows, report.at, report.values_checked, report.mismatches
    );
    if report.mismatches > 0 {
        print!("{}", report.render());
        bail!("serving and the offline path disagree; see the report above");
    }
    let drift = client::get_json(
        &format!("{base}/v1/feature-services/fraud_v1/drift?training=training_set.parquet"),
        None,
    )?;
    println!(
        "7. drift of what was served against training_set.parquet (PSI, KS, null rate served - trained):"
    );
    for f in drift["features"].as_array().into_iter().flatten() {
        let number =
            |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.3}"));
        println!(
            "   {:<34} psi {:>7}  ks {:>6}  nulls {:>+7.3}",
            f["feature"].as_str().unwrap_or("?"),
            number(&f["psi"]),
            number(&f["ks"]),
            f["null_rate_diff"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// Runs the whole quickstart.
pub fn run(args: &QuickstartArgs) -> Result<()> {
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    let mut modules: BTreeMap<&str, &PathBuf> = BTreeMap::new();
    for path in &args.modules {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let Some(name) = MODULES.iter().find(|m| **m == stem) else {
            bail!(
                "{}: the quickstart takes {} (by file name)",
                path.display(),
                MODULES.join(", ")
            );
        };
        modules.insert(name, path);
    }
    if let Some(missing) = MODULES.iter().find(|m| !modules.contains_key(*m)) {
        bail!("no --module {missing}.wasm given; scripts/quickstart builds all three");
    }
    let end = match &args.end {
        None => skewless_core::now_micros().div_euclid(1_000_000) * 1_000_000,
        Some(text) => {
            let value = text
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone()));
            skewless_ops::json::parse_timestamp(&value)
                .map_err(|e| anyhow::anyhow!("--end: {e}"))?
        }
    };
    let span = Span::ending(end);
    let dir = &args.dir;
    prepare(dir)?;
    let threads = threads(args.threads);

    // 1. Data.
    let generating = Progress::new("generating", 0);
    let (users, frauds, profile_rows) = generate(dir, args.rows, args.seed, span)?;
    generating.finish();
    println!(
        "1. generated {} transactions of {users} users over {DAYS} days up to {} ({frauds} fraudulent, {:.2}%) and {profile_rows} daily user profile rows in {}",
        args.rows,
        skewless_core::format_timestamp(span.end),
        100.0 * frauds as f64 / args.rows as f64,
        dir.display()
    );

    // 2. Registry: upload the modules, apply the definitions.
    let data = dir.join("data");
    let engine = args
        .engine
        .engine_with(30_000, Some(data.join("compiled")))?;
    let registry = Registry::open(&data, engine.clone())
        .with_context(|| format!("opening the registry in {}", data.display()))?;
    for (name, path) in &modules {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (_, info) = registry.upload(name, "1.0.0", &bytes)?;
        println!("2. uploaded {name}@1.0.0 (sha256 {}…)", &info.sha256[..12]);
    }
    let defs_path = dir.join("features.yaml");
    std::fs::write(&defs_path, DEFINITIONS)?;
    let (project, ()) = registry
        .apply(DEFINITIONS, |_| Ok::<(), std::convert::Infallible>(()))?
        .unwrap_or_else(|never| match never {});
    println!("   applied {}", defs_path.display());

    // 3. Backfill the training set.
    let modules_of = |m: &_| registry.transform(m);
    let plan = skewless_plan::ServicePlan::for_service(&project, "fraud_v1", &modules_of)?;
    let training = dir.join("training_set.parquet");
    let progress = Progress::new("backfill", 0);
    let stats = skewless_offline::backfill(
        &project,
        dir,
        &plan,
        &dir.join("transactions.parquet"),
        &training,
        &skewless_offline::BackfillOptions {
            threads,
            ..Default::default()
        },
        &progress,
    )?;
    progress.finish();
    println!(
        "3. backfilled {} rows x {} features, point in time, into {} in {:.2?} ({:.0} rows/s)",
        stats.rows,
        stats.features,
        training.display(),
        stats.elapsed,
        stats.rows as f64 / stats.elapsed.as_secs_f64().max(1e-9)
    );

    // 4. Materialize the latest profiles into the online store (the aggregates' tiles
    // are built from the event history when the server starts).
    let schemas = skewless_online::view_schemas(&project);
    let store: Box<dyn skewless_online::OnlineStore> = match args.redis.options() {
        Some(redis) => {
            // Its earlier run's store goes, as its directory did (tiles of other events
            // would be kept otherwise).
            skewless_online::RedisStore::reset_owned(&redis, "skewless quickstart")
                .with_context(|| format!("clearing the online store in {}", redis.url))?;
            Box::new(
                skewless_online::RedisStore::open(&redis, &schemas)
                    .with_context(|| format!("opening the online store in {}", redis.url))?,
            )
        }
        None => Box::new(LocalStore::open(
            &data.join("online"),
            &schemas,
            StoreOptions::default(),
        )?),
    };
    let windows =
        skewless_ops::plan_materialization(&registry, &project, &[], Some(span.start), span.end)?;
    let progress = Progress::new("materialize", 0);
    let stats = skewless_ops::run_materialization(
        &registry,
        &project,
        store.as_ref(),
        dir,
        &windows,
        threads,
        &progress,
    )?;
    progress.finish();
    println!(
        "4. materialized {} rows into the online store ({} entities) in {:.2?}",
        stats.rows_in_windows(),
        stats.rows_written(),
        stats.elapsed
    );
    drop(store);
    drop(registry);

    // 5. Serve, and ask.
    serve(args, &data, engine)
}

fn serve(args: &QuickstartArgs, data: &Path, engine: skewless_engine::Engine) -> Result<()> {
    let mut config = skewless_server::ServerConfig::new(data);
    config.listen = args.listen;
    config.source_root = args.dir.clone();
    config.redis = args.redis.options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skewless-http")
        .build()?;
    let server = runtime.block_on(skewless_server::Server::bind(config, engine))?;
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run(async move {
        tokio::select! {
            _ = stopped => {},
            () = crate::serve::shutdown_signal() => {},
        }
    }));
    let request = example_request();
    let url = format!("http://{addr}/v1/features");
    let (_, body) = client::send(
        "POST",
        &url,
        None,
        "application/json",
        serde_json::to_vec(&request)?,
    )?;
    let response: serde_json::Value = serde_json::from_str(&body)?;
    println!("5. serving on http://{addr}; the server answered:");
    let names = response["metadata"]["feature_names"]
        .as_array()
        .context("a features response")?;
    for (i, name) in names.iter().enumerate() {
        let result = &response["results"][i];
        println!(
            "   {:<34} {:<40} {}",
            name.as_str().unwrap_or("?"),
            result["values"].to_string(),
            result["statuses"]
        );
    }
    check(&args.dir, addr)?;
    println!(
        "\nAsk it yourself:\n\ncurl -s {url} \\\n  -H 'content-type: application/json' \\\n  -d '{request}'\n"
    );
    println!(
        "Check it yourself: skewless verify --service fraud_v1 --defs {} --server http://{addr}\n",
        args.dir.join("features.yaml").display()
    );
    if args.exit {
        let _ = stop.send(());
    } else {
        println!("Serving until Ctrl-C (data in {}).", data.display());
    }
    runtime.block_on(serving)??;
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}
