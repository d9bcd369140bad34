//! `skewless verify`: rows a running server served, recomputed on this machine through
//! the offline path from the definitions' Parquet sources, compared bit for bit.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Map, Value as Json};
use skewless_core::Definitions;
use skewless_ops::verify::{self, Rows};
use skewless_registry::Registry;

use crate::{EngineArgs, ServerArgs, client};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The feature service to verify.
    #[arg(long)]
    service: String,
    /// The definitions file (YAML) the server applied; its source paths are relative to
    /// it and must reach the same Parquet data the server materialized from.
    #[arg(long)]
    defs: PathBuf,
    /// How many served rows to check: a uniform sample of what the server served since
    /// it started (it keeps up to `serve --sample-rows` per service).
    #[arg(long, default_value_t = 100)]
    sample: usize,
    /// The time both paths compute as of (RFC 3339, YYYY-MM-DD, micros or `now`)
    /// [default: the time every view of the service is materialized to, or now if one
    /// never was].
    #[arg(long, value_parser = crate::parse_time)]
    at: Option<i64>,
    /// How many mismatches to show.
    #[arg(long, default_value_t = 10)]
    show: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Worker threads for the offline path [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: &VerifyArgs) -> Result<()> {
    let base_url = args.server.server.trim_end_matches('/');
    let token = args.server.token.as_deref();
    let yaml = std::fs::read_to_string(&args.defs)
        .with_context(|| format!("reading {}", args.defs.display()))?;
    let definitions =
        Definitions::from_yaml(&yaml).with_context(|| format!("{}", args.defs.display()))?;

    // The very artifacts the server runs: downloaded, checked against the server's
    // digests, and loaded into a scratch registry.
    let scratch = tempfile::tempdir()?;
    let engine = args.engine.engine()?;
    let registry = Registry::open(scratch.path(), engine)?;
    let served_modules = client::get_json(&format!("{base_url}/v1/transforms"), token)?;
    for transform in &definitions.transforms {
        let module = &transform.module;
        let url = format!(
            "{base_url}/v1/transforms/{}/{}",
            module.name, module.version
        );
        let (_, bytes) = client::send_bytes("GET", &url, None, "application/wasm", Vec::new())?;
        let expected = served_modules["transforms"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == module.name.as_str() && m["version"] == module.version.as_str())
            .and_then(|m| m["sha256"].as_str());
        let (_, info) = registry
            .upload(&module.name, &module.version, &bytes)
            .with_context(|| format!("loading {module} from the server"))?;
        if expected != Some(info.sha256.as_str()) {
            bail!(
                "{module}: the downloaded bytes have sha256 {}, the server lists {expected:?}",
                info.sha256
            );
        }
    }
    let project = registry
        .validate(&yaml)
        .with_context(|| format!("{}", args.defs.display()))?;
    let modules = |m: &_| registry.transform(m);
    let plan = skewless_plan::ServicePlan::for_service(&project, &args.service, &modules)?;

    // Rows the server served.
    let sample = client::get_json(
        &format!(
            "{base_url}/v1/feature-services/{}/sample?rows={}",
            args.service, args.sample
        ),
        token,
    )?;
    let object = |name: &str| sample[name].as_object().cloned().unwrap_or_else(Map::new);
    let rows = Rows::from_columns(&plan, &object("entities"), &object("request_data"))
        .context("the server's sample")?;

    let views = client::get_json(&format!("{base_url}/v1/feature-views"), token)?;
    let until = |name: &str| {
        views["feature_views"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| skewless_ops::json::parse_timestamp(&v["materialized_until"]).ok())
    };
    let at = args
        .at
        .unwrap_or_else(|| verify::default_at(&plan, until, chrono::Utc::now().timestamp_micros()));
    let notes = verify::notes(&plan, until, at);

    let (_, served) = client::send(
        "POST",
        &format!("{base_url}/v1/features"),
        None,
        "application/json",
        serde_json::to_vec(&rows.features_request(&plan, at))?,
    )?;
    let served: Json = serde_json::from_str(&served).context("the served answer is not JSON")?;
    let served = verify::ServedColumns::from_response(&plan, &served, rows.len)?;
    let base = args
        .defs
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let offline = verify::offline(
        &project,
        base,
        &plan,
        &rows.arrays(&plan)?,
        at,
        crate::threads(args.threads),
    )?;
    let report = verify::Report {
        notes,
        ..verify::compare(&plan, &rows, at, &served, &offline, args.show)?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    if report.mismatches > 0 {
        bail!(
            "{} of {} values differ between serving and the offline path",
            report.mismatches,
            report.values_checked
        );
    }
    Ok(())
}
