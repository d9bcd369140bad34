//! `skewless`: the command-line entry point.
//!
//! It serves features (`serve`), feeds a server (`upload`, `apply`), runs transforms over
//! Parquet files (`run-transform`), describes a component (`inspect`), and runs the
//! quickstart (`quickstart`). Wiring only: the work happens in the library crates and in
//! this crate's `pipeline` module.

mod client;
mod commands;
mod pipeline;
mod progress;

use commands::serve::RedisArgs;
use commands::{backfill, build, materialize, quickstart, remote, serve, verify};

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
    Build(build::BuildArgs),
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
    Serve(serve::ServeArgs),
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
    Backfill(backfill::BackfillArgs),
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
            eprintln!("error: {}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once: library errors name their cause in their own
/// message and also return it as their source, so a cause whose text the message already
/// holds is not repeated (`{e:#}` would print it twice).
fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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
        Command::Inspect { module, engine } => commands::inspect(&module, &engine),
        Command::Build(args) => build::run(args),
        Command::Quickstart(args) => quickstart::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::Backfill(args) => backfill::run(args),
        Command::Verify(args) => verify::run(&args),
        Command::Materialize(args) => materialize::run(Some(args.start), args.end, &args.target),
        Command::MaterializeIncremental(args) => materialize::run(None, args.end, &args.target),
        Command::Upload {
            module,
            name,
            version,
            server,
        } => remote::upload(&module, &name, &version, &server),
        Command::Apply {
            definitions,
            server,
        } => remote::apply(&definitions, &server),
    }
}

#[cfg(test)]
mod tests {
    use super::render_error;

    #[derive(Debug, thiserror::Error)]
    #[error("loading m.wasm: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("invalid signature: `y` is declared twice")]
    struct Inner;

    #[test]
    fn a_cause_the_message_already_names_is_said_once() {
        let e = anyhow::Error::new(Outer(Inner)).context("run-transform");
        assert_eq!(
            render_error(&e),
            "run-transform: loading m.wasm: invalid signature: `y` is declared twice"
        );
        let plain = anyhow::anyhow!("no such file").context("reading defs.yaml");
        assert_eq!(render_error(&plain), "reading defs.yaml: no such file");
    }
}
