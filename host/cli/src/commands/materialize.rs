//! `skewless materialize` and `materialize-incremental`: into a data directory's online
//! store, or through a running server's job.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use skewless_online::{LocalStore, OnlineStore, RedisStore, StoreOptions};
use skewless_registry::Registry;

use crate::progress::Progress;
use crate::{MaterializeTarget, client, threads};

/// Materializes `start..=end` (`None`: from each view's watermark) as `target` says.
pub fn run(start: Option<i64>, end: i64, target: &MaterializeTarget) -> Result<()> {
    match &target.server {
        Some(server) => remote(server, start, end, target),
        None => local(start, end, target),
    }
}

fn local(start: Option<i64>, end: i64, target: &MaterializeTarget) -> Result<()> {
    let data_dir = &target.data_dir;
    let engine = target
        .engine
        .engine_with(30_000, Some(data_dir.join("compiled")))?;
    let registry = Registry::open(data_dir, engine)
        .with_context(|| format!("opening the registry in {}", data_dir.display()))?;
    let Some(project) = registry.project() else {
        bail!(
            "{}: no definitions applied yet; `skewless apply` them first",
            data_dir.display()
        );
    };
    let schemas = skewless_online::view_schemas(&project);
    let windows =
        skewless_ops::plan_materialization(&registry, &project, &target.views, start, end)?;
    let store: Box<dyn OnlineStore> = match target.redis.options() {
        Some(redis) => Box::new(
            RedisStore::open(&redis, &schemas)
                .with_context(|| format!("opening the online store in {}", redis.url))?,
        ),
        None => Box::new(
            LocalStore::open(&data_dir.join("online"), &schemas, StoreOptions::default())
                .with_context(|| {
                    format!(
                        "opening the online store in {} (is `skewless serve` running on it? then pass --server)",
                        data_dir.display()
                    )
                })?,
        ),
    };
    let progress = Progress::new("materialize", 0);
    let stats = skewless_ops::run_materialization(
        &registry,
        &project,
        store.as_ref(),
        &target.source_root,
        &windows,
        threads(target.threads),
        &progress,
    )?;
    progress.finish();
    for view in &stats.views {
        println!(
            "{}: {} rows in the window, {} entities written ({} of {} row groups skipped by statistics)",
            view.window.view,
            view.rows_in_window,
            view.rows_written,
            view.source.row_groups_skipped,
            view.source.row_groups_read + view.source.row_groups_skipped,
        );
    }
    println!(
        "materialized {} source rows in {:.2?} ({:.0} rows/s)",
        stats.rows_in_windows(),
        stats.elapsed,
        stats.rows_in_windows() as f64 / stats.elapsed.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn remote(server: &str, start: Option<i64>, end: i64, target: &MaterializeTarget) -> Result<()> {
    let base = server.trim_end_matches('/');
    let body = serde_json::json!({
        "start": start,
        "end": end,
        "views": target.views,
    });
    let (_, text) = client::send(
        "POST",
        &format!("{base}/v1/materialize"),
        target.token.as_deref(),
        "application/json",
        serde_json::to_vec(&body)?,
    )?;
    let job: serde_json::Value = serde_json::from_str(&text)?;
    let id = job["id"]
        .as_str()
        .context("the server's reply has no job id")?;
    let result = follow(base, id, target.token.as_deref(), "materialize")?;
    for view in result["views"].as_array().into_iter().flatten() {
        println!(
            "{}: {} rows in the window, {} entities written",
            view["view"].as_str().unwrap_or("?"),
            view["rows_in_window"],
            view["rows_written"]
        );
    }
    for view in result["tiles_rebuilt"].as_array().into_iter().flatten() {
        println!(
            "{}: aggregate tiles built again from its source's history in {} ms",
            view.as_str().unwrap_or("?"),
            result["tiles_elapsed_ms"]
        );
    }
    Ok(())
}

/// Polls a server job until it ends, showing its progress; returns its result.
pub fn follow(
    base: &str,
    id: &str,
    token: Option<&str>,
    what: &'static str,
) -> Result<serde_json::Value> {
    let progress = Progress::new(what, 0);
    let mut total = 0;
    let mut done = 0;
    loop {
        let (_, text) = client::send(
            "GET",
            &format!("{base}/v1/jobs/{id}"),
            token,
            "application/json",
            Vec::new(),
        )?;
        let job: serde_json::Value = serde_json::from_str(&text)?;
        // A job that has not reported progress yet shows an empty bar.
        let now_total = job["total"].as_u64().unwrap_or(0);
        let now_done = job["done"].as_u64().unwrap_or(0);
        if now_total != total || now_done < done {
            total = now_total;
            done = 0;
            progress.reset(total);
        }
        progress.advance(now_done - done);
        done = now_done;
        match job["state"].as_str() {
            Some("succeeded") => {
                progress.finish();
                return Ok(job["result"].clone());
            }
            Some("failed") => {
                progress.finish();
                bail!(
                    "job {id} failed: {}",
                    job["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
