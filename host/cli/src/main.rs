//! `skewless`: the command-line entry point.
//!
//! It serves features (`serve`), feeds a server (`upload`, `apply`), runs transforms over
//! Parquet files (`run-transform`), describes a component (`inspect`), and runs the
//! quickstart (`quickstart`). Wiring only: the work happens in the library crates and in
//! this crate's `pipeline` module.

mod client;
mod materialize;
mod pipeline;
mod progress;
mod quickstart;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use skewless_engine::{Engine, EngineConfig, Limits, Transform};

/// Skewless: one feature transform, compiled once to WebAssembly, run identically in
/// training backfills and at request time.
#[derive(Debug, Parser)]
#[command(name = "skewless", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one or more transforms over a Parquet file, batch by batch, and write the
    /// input columns followed by every transform's outputs to a new Parquet file.
    ///
    /// Each transform reads its declared inputs from the input file by name. The output
    /// is written under a temporary name and renamed when complete, so a failed run never
    /// leaves a partial file under OUTPUT.
    RunTransform(RunTransformArgs),
    /// Build a transform project into a component: Rust (Cargo.toml), Python
    /// (pyproject.toml, with componentize-py), JavaScript (package.json, with
    /// componentize-js) or C (a Makefile beside .c files, with clang and wasi-libc).
    ///
    /// The WIT contract and the SDKs are built in. Missing build tools are installed into
    /// --tools-dir (componentize-py with pip, componentize-js with npm), or named with the
    /// command that installs them. The component is checked by loading it, as an upload
    /// would, and its path is printed. See docs/languages.md.
    Build(BuildArgs),
    /// Print a component's declared signature, sha256 and imports check, without running it.
    Inspect {
        /// The component (.wasm).
        module: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// The whole product on embedded defaults: generate a seeded synthetic fraud dataset,
    /// upload the example transforms, apply example-transforms/fraud.yaml, backfill a
    /// training set, materialize the online store, start the server, and print a curl
    /// that returns features. See docs/quickstart.md.
    Quickstart(quickstart::QuickstartArgs),
    /// Run the feature server: module upload, definitions, push, the serving endpoint
    /// (`POST /v1/features`), `/healthz` and `/metrics`. See docs/api.md.
    ///
    /// State lives in DATA_DIR: the registry (modules and definitions) and the online
    /// store (write-ahead log and snapshots); a restart picks up where it stopped.
    Serve(ServeArgs),
    /// Upload a transform component to a running server as NAME@VERSION. Versions are
    /// immutable: the same bytes again are accepted, other bytes are refused.
    Upload {
        /// The component (.wasm).
        module: PathBuf,
        /// The module name.
        #[arg(long)]
        name: String,
        /// The version, such as 1.0.0.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Build a training set: join every feature view of a service as of each entity
    /// row's `event_timestamp` (point-in-time correct, within each view's TTL), run the
    /// service's transforms through the same plan the server uses, and write Parquet.
    ///
    /// The entity frame holds the join keys, `event_timestamp`, the request fields the
    /// transforms read, and any other columns (labels), which are carried through. Source
    /// paths in the definitions are relative to the definitions file. Modules come from
    /// the registry in DATA_DIR (the server's). The output is written under a temporary
    /// name and renamed when complete.
    Backfill(BackfillArgs),
    /// Load the latest row per entity with an event time in START..=END from each online
    /// feature view's Parquet source into the online store, and move each view's
    /// watermark (kept in the registry) to END.
    ///
    /// Without --server, writes into DATA_DIR's online store directly (stop `skewless
    /// serve` on it first: the store is locked by one process); source paths are relative
    /// to --source-root. With --server, the running server does the work as a job (its
    /// own --source-root applies) and this command follows its progress. Re-running a
    /// window is harmless: the store keeps the newer row per entity.
    Materialize(MaterializeArgs),
    /// Materialize each view from its watermark (or one TTL before END when it has none)
    /// to END: the periodic job that keeps the online store fresh.
    MaterializeIncremental(MaterializeIncrementalArgs),
    /// Prove online equals offline on your data: take a sample of the rows a running
    /// server served for a feature service, serve them again as of one time, recompute
    /// the same rows through the offline path on this machine (the definitions' Parquet
    /// sources, the server's own module bytes), and compare every value bit for bit.
    ///
    /// Prints rows checked and the first mismatches side by side; exits non-zero on any
    /// mismatch. The server does the same with `POST /v1/verify`. See docs/verify.md.
    Verify(verify::VerifyArgs),
    /// Validate and apply a definitions file (YAML) on a running server, atomically.
    Apply {
        /// The definitions file.
        definitions: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The transform project: a directory with Cargo.toml, pyproject.toml, package.json,
    /// or a Makefile and C sources.
    path: PathBuf,
    /// Where to write the component [default: PATH/target/skewless/NAME.wasm].
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// The language (rust, python, javascript or c), when the directory holds more than
    /// one manifest.
    #[arg(long)]
    language: Option<skewless_build::Language>,
    /// Where build tools are installed when missing (componentize-py, componentize-js)
    /// [default: $XDG_CACHE_HOME/skewless/tools, or ~/.cache/skewless/tools].
    #[arg(long, env = "SKEWLESS_TOOLS_DIR")]
    tools_dir: Option<PathBuf>,
}

/// Builds the project, then loads the component as an upload would: one that does not
/// load is not built.
fn build(args: BuildArgs) -> Result<()> {
    let options = skewless_build::BuildOptions {
        language: args.language,
        out: args.out,
        stage: None,
        tools_dir: args.tools_dir,
    };
    let built = skewless_build::build(&args.path, &options)?;
    // Through the compile cache, so that `run-transform` on the result starts warm.
    let engine = Engine::new(EngineConfig {
        cache_dir: default_cache_dir(),
        ..EngineConfig::default()
    })?;
    let transform = engine
        .load_file(&built.path)
        .with_context(|| format!("the built component {} does not load", built.path.display()))?;
    tracing::info!(
        language = %built.language,
        bytes = std::fs::metadata(&built.path)?.len(),
        sha256 = transform.sha256(),
        inputs = transform.signature().inputs.len(),
        outputs = transform.signature().outputs.len(),
        "the component loads"
    );
    println!("{}", built.path.display());
    Ok(())
}

/// Where a running server is.
#[derive(Debug, Clone, Args)]
struct ServerArgs {
    /// The server's base URL.
    #[arg(long, env = "SKEWLESS_SERVER", default_value = "http://127.0.0.1:6566")]
    server: String,
    /// The bearer token for writes.
    #[arg(long, env = "SKEWLESS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Args)]
struct BackfillArgs {
    /// The definitions file (YAML).
    #[arg(long)]
    defs: PathBuf,
    /// The feature service to backfill.
    #[arg(
        long,
        required_unless_present = "features",
        conflicts_with = "features"
    )]
    service: Option<String>,
    /// Features to backfill instead of a service (repeatable): `view:feature`,
    /// `transform:output`, or `name:*`. With --plain-names, this writes a derived feature's
    /// history that another view can use as its source.
    #[arg(long = "features", num_args = 1..)]
    features: Vec<String>,
    /// Name feature columns by their bare name (`amount_log1p`) rather than
    /// `transform:amount_log1p`, so that the output can be a source.
    #[arg(long)]
    plain_names: bool,
    /// The entity frame: a Parquet file or a directory of them.
    #[arg(long)]
    entities: PathBuf,
    /// The training set to write (Parquet).
    #[arg(long)]
    out: PathBuf,
    /// The data directory whose registry holds the modules the definitions pin.
    #[arg(long, env = "SKEWLESS_DATA_DIR", default_value = "skewless-data")]
    data_dir: PathBuf,
    /// Worker threads for the join and the transforms [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Memory the join may hold at once, as estimated from the Parquet footers (`512MiB`,
    /// `4GiB`, or bytes). Larger inputs are split by entity key into spill files on disk
    /// and joined one partition at a time. (Inputs over 128 MiB are always joined in
    /// partitions, which keeps each one in the caches; under the limit they stay in
    /// memory.) [default: half the memory available]
    #[arg(long, value_parser = parse_size)]
    memory_limit: Option<u64>,
    /// Split the join into exactly this many entity-key partitions (1: never spill),
    /// whatever the memory estimate.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=128))]
    partitions: Option<u16>,
    /// Where spill files go [default: the output's directory]. A temporary directory is
    /// made inside it and removed when the backfill ends.
    #[arg(long)]
    spill_dir: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// A size: bytes, or a number with KiB, MiB, GiB (or KB, MB, GB, read as the same powers
/// of two).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: expected e.g. 512MiB, 4GiB or bytes"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "`{other}` is not a size unit: use KiB, MiB, GiB or TiB"
            ));
        }
    };
    let bytes = number * scale as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}` is not a positive size"));
    }
    Ok(bytes as u64)
}

#[derive(Debug, Args)]
struct MaterializeArgs {
    /// The start of the window: RFC 3339 (2024-05-01T00:00:00Z), a date (2024-05-01,
    /// midnight UTC) or integer microseconds since the epoch.
    #[arg(long, value_parser = parse_time)]
    start: i64,
    /// The end of the window (inclusive); same forms as --start, or `now`.
    #[arg(long, value_parser = parse_time)]
    end: i64,
    #[command(flatten)]
    target: MaterializeTarget,
}

#[derive(Debug, Args)]
struct MaterializeIncrementalArgs {
    /// The end of the window (inclusive): RFC 3339, a date, microseconds, or `now`.
    #[arg(long, value_parser = parse_time)]
    end: i64,
    #[command(flatten)]
    target: MaterializeTarget,
}

/// Which views, and which store: a data directory, or a running server.
#[derive(Debug, Args)]
struct MaterializeTarget {
    /// A feature view to materialize (repeatable) [default: every online view].
    #[arg(long = "view")]
    views: Vec<String>,
    /// The data directory whose registry and online store to use (without --server).
    #[arg(long, env = "SKEWLESS_DATA_DIR", default_value = "skewless-data")]
    data_dir: PathBuf,
    /// The directory that source paths in the definitions are relative to (without
    /// --server).
    #[arg(long, default_value = ".")]
    source_root: PathBuf,
    /// A running server to materialize through, such as http://127.0.0.1:6566.
    #[arg(long)]
    server: Option<String>,
    /// The bearer token for the server.
    #[arg(long, env = "SKEWLESS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Worker threads [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Without --server: the Redis online store to write into, as `serve --redis` uses.
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Parses a time: `now`, integer microseconds, a date (midnight UTC), or RFC 3339.
fn parse_time(text: &str) -> Result<i64, String> {
    if text == "now" {
        return Ok(chrono::Utc::now().timestamp_micros());
    }
    if let Ok(micros) = text.parse::<i64>() {
        return Ok(micros);
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| {
            format!("`{text}` is not a time ({e}); use RFC 3339, YYYY-MM-DD, microseconds or `now`")
        })
}

fn threads(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The data directory (registry, online store, compiled modules).
    #[arg(long, env = "SKEWLESS_DATA_DIR", default_value = "skewless-data")]
    data_dir: PathBuf,
    /// The address to listen on. A non-loopback address needs --token.
    #[arg(long, env = "SKEWLESS_LISTEN", default_value = "127.0.0.1:6566")]
    listen: std::net::SocketAddr,
    /// The bearer token that writes (upload, apply, push) must carry.
    #[arg(long, env = "SKEWLESS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The largest request body, except module uploads, in MiB.
    #[arg(long, default_value_t = 16)]
    max_body_mib: usize,
    /// The largest module upload, in MiB.
    #[arg(long, default_value_t = 256)]
    max_module_mib: usize,
    /// Snapshot the online store after this many MiB of write-ahead log.
    #[arg(long, default_value_t = 256)]
    snapshot_after_mib: u64,
    /// The directory that relative paths of jobs (`POST /v1/backfill`, `POST
    /// /v1/materialize`) resolve against, source paths in the definitions included.
    #[arg(long, default_value = ".")]
    source_root: PathBuf,
    /// Snapshot the online store at least this often while there are writes, in seconds.
    #[arg(long, default_value_t = 300)]
    snapshot_interval_secs: u64,
    /// Served rows kept per feature service (a uniform sample) for `skewless verify` and
    /// the drift report; 0 keeps none.
    #[arg(long, default_value_t = 1000)]
    sample_rows: usize,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Where the online store lives when it is not in the data directory.
#[derive(Debug, Clone, Args)]
struct RedisArgs {
    /// Keep the online store in Redis (`redis://[user:password@]host:port[/db]`) instead
    /// of the data directory, so that several servers serve from one store. Redis must
    /// fsync every write (`appendonly yes`, `appendfsync always`) unless
    /// --redis-allow-unsynced is given.
    #[arg(long, env = "SKEWLESS_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// The prefix of every Redis key: servers sharing a Redis and a prefix must apply the
    /// same definitions.
    #[arg(long, default_value = "skewless", requires = "redis")]
    redis_prefix: String,
    /// Use a Redis that does not fsync every write: a write acknowledged just before Redis
    /// crashes can be lost.
    #[arg(long, requires = "redis")]
    redis_allow_unsynced: bool,
}

impl RedisArgs {
    fn options(&self) -> Option<skewless_online::RedisOptions> {
        self.redis
            .as_ref()
            .map(|url| skewless_online::RedisOptions {
                url: url.clone(),
                prefix: self.redis_prefix.clone(),
                require_fsync: !self.redis_allow_unsynced,
            })
    }
}

#[derive(Debug, Args)]
struct RunTransformArgs {
    /// The transform components (.wasm), applied in order; each adds its output columns.
    #[arg(required = true)]
    modules: Vec<PathBuf>,
    /// The Parquet file to read.
    #[arg(long, short)]
    input: PathBuf,
    /// The Parquet file to write.
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    pipeline: pipeline::PipelineArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Engine settings shared by every command that runs transforms.
#[derive(Debug, Clone, Args)]
struct EngineArgs {
    /// Largest linear memory one call may use, in MiB.
    #[arg(long, default_value_t = 512)]
    memory_limit_mib: usize,
    /// How long one call may run, in milliseconds [default: 1000 for serve, 30000 for
    /// batch commands].
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Largest output one call may return, in MiB.
    #[arg(long, default_value_t = 1024)]
    max_output_mib: usize,
    /// Where compiled components are cached [default: $XDG_CACHE_HOME/skewless or
    /// ~/.cache/skewless].
    #[arg(long, env = "SKEWLESS_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every component afresh; read and write no cache.
    #[arg(long)]
    no_cache: bool,
}

impl EngineArgs {
    fn engine(&self) -> Result<Engine> {
        self.engine_with(30_000, default_cache_dir())
    }

    fn engine_with(&self, deadline_ms: u64, cache_dir: Option<PathBuf>) -> Result<Engine> {
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or(cache_dir)
        };
        let config = EngineConfig {
            limits: Limits {
                memory_bytes: self.memory_limit_mib << 20,
                deadline: Duration::from_millis(self.deadline_ms.unwrap_or(deadline_ms)),
                max_output_bytes: self.max_output_mib << 20,
                ..Limits::default()
            },
            cache_dir,
            ..EngineConfig::default()
        };
        Engine::new(config).context("starting the engine")
    }

    fn load(&self, engine: &Engine, modules: &[PathBuf]) -> Result<Vec<Transform>> {
        modules.iter().map(|m| Ok(engine.load_file(m)?)).collect()
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    Some(skewless_build::cache_home()?.join("compiled"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKEWLESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::RunTransform(args) => {
            let engine = args.engine.engine()?;
            let transforms = args.engine.load(&engine, &args.modules)?;
            let stats = pipeline::run_file(&transforms, &args.input, &args.output, &args.pipeline)?;
            println!("{stats}");
            Ok(())
        }
        Command::Inspect { module, engine } => {
            let engine = engine.engine()?;
            let t = engine.load_file(&module)?;
            println!("transform: {}", t.label());
            println!("sha256:    {}", t.sha256());
            println!("inputs:");
            for c in &t.signature().inputs {
                println!("  {c}");
            }
            println!("outputs:");
            for c in &t.signature().outputs {
                println!("  {c}");
            }
            let imports = t.imports();
            if imports.is_empty() {
                println!("imports:   none");
            } else {
                // Load refused anything else; the sandbox links these to nothing real.
                println!("imports (WASI 0.2, sandboxed):");
                for name in imports {
                    println!("  {name}");
                }
            }
            Ok(())
        }
        Command::Build(args) => build(args),
        Command::Quickstart(args) => quickstart::run(&args),
        Command::Serve(args) => serve(args),
        Command::Backfill(args) => backfill(args),
        Command::Verify(args) => verify::run(&args),
        Command::Materialize(args) => materialize::run(Some(args.start), args.end, &args.target),
        Command::MaterializeIncremental(args) => materialize::run(None, args.end, &args.target),
        Command::Upload {
            module,
            name,
            version,
            server,
        } => {
            let bytes =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let url = format!(
                "{}/v1/transforms/{name}/{version}",
                server.server.trim_end_matches('/')
            );
            let (status, body) = client::send(
                "PUT",
                &url,
                server.token.as_deref(),
                "application/wasm",
                bytes,
            )?;
            let info: serde_json::Value = serde_json::from_str(&body)?;
            let verb = if status == 201 {
                "uploaded"
            } else {
                "already present (same bytes)"
            };
            println!(
                "{name}@{version} {verb}: sha256 {}",
                info["sha256"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        Command::Apply {
            definitions,
            server,
        } => {
            let yaml = std::fs::read(&definitions)
                .with_context(|| format!("reading {}", definitions.display()))?;
            let url = format!("{}/v1/definitions", server.server.trim_end_matches('/'));
            let (_, body) = client::send(
                "PUT",
                &url,
                server.token.as_deref(),
                "application/yaml",
                yaml,
            )?;
            let summary: serde_json::Value = serde_json::from_str(&body)?;
            println!(
                "applied project `{}`: feature services {}",
                summary["project"].as_str().unwrap_or("?"),
                summary["feature_services"]
            );
            Ok(())
        }
    }
}

fn backfill(args: BackfillArgs) -> Result<()> {
    let engine = args
        .engine
        .engine_with(30_000, Some(args.data_dir.join("compiled")))?;
    let registry = skewless_registry::Registry::open(&args.data_dir, engine)
        .with_context(|| format!("opening the registry in {}", args.data_dir.display()))?;
    let yaml = std::fs::read_to_string(&args.defs)
        .with_context(|| format!("reading {}", args.defs.display()))?;
    let project = registry
        .validate(&yaml)
        .with_context(|| format!("{}", args.defs.display()))?;
    let modules = |m: &_| registry.transform(m);
    let plan = match &args.service {
        Some(service) => skewless_plan::ServicePlan::for_service(&project, service, &modules)?,
        None => skewless_plan::ServicePlan::for_features(&project, &args.features, &modules)?,
    };
    let base = args
        .defs
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    tracing::info!(entities = %args.entities.display(), features = plan.features.len(), "backfill started");
    let progress = progress::Progress::new("backfill", 0);
    let defaults = skewless_offline::BackfillOptions::default();
    let options = skewless_offline::BackfillOptions {
        threads: threads(args.threads),
        names: if args.plain_names {
            skewless_offline::ColumnNames::Plain
        } else {
            skewless_offline::ColumnNames::Qualified
        },
        memory_limit: args.memory_limit.unwrap_or(defaults.memory_limit),
        partitions: args.partitions.map(usize::from),
        spill_dir: args.spill_dir.clone(),
    };
    let stats = skewless_offline::backfill(
        &project,
        base,
        &plan,
        &args.entities,
        &args.out,
        &options,
        &progress,
    )?;
    progress.finish();
    println!(
        "wrote {} rows x {} features to {} in {:.2?} ({:.0} rows/s)",
        stats.rows,
        stats.features,
        args.out.display(),
        stats.elapsed,
        stats.rows as f64 / stats.elapsed.as_secs_f64().max(1e-9)
    );
    if stats.spilled {
        println!(
            "joined in {} entity-key partitions spilled to disk (the inputs exceeded the memory limit)",
            stats.partitions
        );
    } else if stats.partitions > 1 {
        println!(
            "joined in memory, in {} cache-sized entity-key partitions",
            stats.partitions
        );
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    let engine = args
        .engine
        .engine_with(1_000, Some(args.data_dir.join("compiled")))?;
    let store = skewless_online::StoreOptions::new(
        args.snapshot_after_mib << 20,
        Duration::from_secs(args.snapshot_interval_secs),
    );
    let config = skewless_server::ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        token: args.token.clone(),
        max_body_bytes: args.max_body_mib << 20,
        max_module_bytes: args.max_module_mib << 20,
        store,
        redis: args.redis.options(),
        source_root: args.source_root.clone(),
        sample_rows: args.sample_rows,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skewless-http")
        .build()?;
    runtime.block_on(async move {
        let server = skewless_server::Server::bind(config, engine).await?;
        // Tests and scripts read this line to learn the port when listening on :0.
        println!("listening on http://{}", server.local_addr());
        server.run(shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_powers_of_two_and_bad_ones_are_named() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4GB"), Ok(4 << 30));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert!(parse_size("lots").unwrap_err().contains("`lots`"));
        assert!(parse_size("3 parsecs").unwrap_err().contains("`parsecs`"));
        assert!(parse_size("0").is_err(), "a zero limit is refused");
    }
}
