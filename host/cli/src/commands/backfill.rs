//! `skewless backfill`: a point-in-time training set from the definitions and an entity
//! frame, through the offline half of the one path, without a server.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::{EngineArgs, progress, threads};

#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
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

pub(crate) fn run(args: BackfillArgs) -> Result<()> {
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
