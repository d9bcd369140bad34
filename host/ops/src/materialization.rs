//! Materialization with watermarks: the one place that pairs `skewless-offline`'s
//! windows and writes with the registry's per-view watermarks. The server's job, the
//! `materialize` commands and the quickstart all call these two functions.

use std::path::Path;

use skewless_core::Project;
use skewless_offline::{MaterializeStats, Progress, Window};
use skewless_online::OnlineStore;
use skewless_registry::Registry;

use skewless_online::view_schemas;

/// Why a materialization could not be planned or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterializeError {
    /// The watermarks could not be read or written.
    #[error("watermarks: {0}")]
    Registry(#[from] skewless_registry::Error),
    /// The windows or the sources (the caller's fault, mostly: an unknown view, a
    /// missing file).
    #[error("{0}")]
    Offline(#[from] skewless_offline::Error),
}

impl MaterializeError {
    /// Who is at fault.
    pub fn fault(&self) -> skewless_core::Fault {
        match self {
            MaterializeError::Registry(e) => e.fault(),
            MaterializeError::Offline(e) => e.fault(),
        }
    }
}

/// The online schema fingerprint of each online view of `project`.
fn fingerprint(project: &Project, view: &str) -> Option<u64> {
    view_schemas(project)
        .into_iter()
        .find(|s| s.name == view)
        .map(|s| s.fingerprint())
}

/// The windows to load: `views` (every online view when empty) from `start`, or, without
/// one, from each view's watermark when it was recorded under the view's current schema
/// (see [`skewless_offline::plan_windows`]).
pub fn plan_materialization(
    registry: &Registry,
    project: &Project,
    views: &[String],
    start: Option<i64>,
    end: i64,
) -> Result<Vec<Window>, MaterializeError> {
    let marks = registry.watermarks()?;
    Ok(skewless_offline::plan_windows(
        project,
        views,
        start,
        end,
        |view| {
            marks
                .get(view)
                .filter(|m| Some(m.fingerprint) == fingerprint(project, view))
                .map(|m| m.end_micros)
        },
    )?)
}

/// Loads `windows` into `store` and moves each view's watermark to its window's end.
pub fn run_materialization(
    registry: &Registry,
    project: &Project,
    store: &dyn OnlineStore,
    source_root: &Path,
    windows: &[Window],
    threads: usize,
    progress: &dyn Progress,
) -> Result<MaterializeStats, MaterializeError> {
    let stats =
        skewless_offline::materialize(project, source_root, store, windows, threads, progress)?;
    for view in &stats.views {
        // Materialization refuses views that are not online, and every online view has a
        // schema: a watermark is never recorded under a made-up fingerprint.
        let fp = fingerprint(project, &view.window.view).ok_or_else(|| {
            skewless_offline::Error::Internal(format!(
                "materialized view `{}` has no online schema",
                view.window.view
            ))
        })?;
        registry.advance_watermark(&view.window.view, fp, view.window.end)?;
    }
    Ok(stats)
}
