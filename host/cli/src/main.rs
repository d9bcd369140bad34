//! `skewless`: the command-line entry point.
//!
//! Today it runs transforms over Parquet files (`run-transform`), describes a component
//! (`inspect`), and runs the quickstart (`quickstart`). Wiring only: the work happens in
//! `skewless-engine` and in this crate's `pipeline` module.

mod pipeline;
mod progress;
mod quickstart;

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
    /// Print a component's declared signature, sha256 and imports check, without running it.
    Inspect {
        /// The component (.wasm).
        module: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Generate a realistic transactions file and run the example transforms over it.
    Quickstart(quickstart::QuickstartArgs),
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
    /// How long one call may run, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    deadline_ms: u64,
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
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        };
        let config = EngineConfig {
            limits: Limits {
                memory_bytes: self.memory_limit_mib << 20,
                deadline: Duration::from_millis(self.deadline_ms),
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
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("skewless").join("compiled"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKEWLESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
            println!("imports:   WASI 0.2 only (checked)");
            Ok(())
        }
        Command::Quickstart(args) => {
            let engine = args.engine.engine()?;
            quickstart::run(&engine, &args)
        }
    }
}
