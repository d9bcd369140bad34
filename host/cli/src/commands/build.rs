//! `skewless build`: a transform project in any supported language into a component,
//! loaded once before success is reported.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use skewless_engine::{Engine, EngineConfig};

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
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
pub(crate) fn run(args: BuildArgs) -> Result<()> {
    let options = skewless_build::BuildOptions {
        language: args.language,
        out: args.out,
        stage: None,
        tools_dir: args.tools_dir,
    };
    let built = skewless_build::build(&args.path, &options)?;
    // Through the compile cache, so that `run-transform` on the result starts warm.
    let engine = Engine::new(EngineConfig {
        cache_dir: crate::default_cache_dir(),
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
