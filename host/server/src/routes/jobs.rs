//! Jobs: backfills and materializations started over HTTP, and their status.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use skewless_core::Fault;
use skewless_ops::json;

use super::{ApiResult, Shared};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams};
use crate::jobs::{Job, JobState, resolve};

/// Runs `work` on a blocking thread as `job`; a panic fails the job instead of leaving it
/// running forever.
fn run_job(
    job: Arc<Job>,
    work: impl FnOnce(&Job) -> Result<Json, (String, Fault)> + Send + 'static,
) {
    let handle = {
        let job = job.clone();
        tokio::task::spawn_blocking(move || work(&job))
    };
    tokio::spawn(async move {
        let state = match handle.await {
            Ok(Ok(result)) => JobState::Succeeded(result),
            Ok(Err((reason, fault))) => JobState::Failed(reason, fault),
            Err(e) => JobState::Failed(format!("the job's worker failed: {e}"), Fault::Internal),
        };
        job.finish(state);
    });
}

fn accepted(job: &Job) -> Response {
    (StatusCode::ACCEPTED, axum::Json(job.status())).into_response()
}

fn job_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackfillRequest {
    service: String,
    entities: String,
    out: String,
}

pub(super) async fn start_backfill(
    State(state): Shared,
    JsonBody(request): JsonBody<BackfillRequest>,
) -> ApiResult {
    let serving = state.serving();
    let project = serving.project()?.clone();
    let plan = serving.service(&request.service)?;
    let root = state.config.source_root.clone();
    let entities = resolve(&root, &request.entities, "entities").map_err(ApiError::bad_request)?;
    let out = resolve(&root, &request.out, "out").map_err(ApiError::bad_request)?;
    if !entities.exists() {
        return Err(ApiError::bad_request(format!(
            "entities: `{}` does not exist under the server's source root",
            request.entities
        )));
    }
    let job = state.jobs.start(
        "backfill",
        json!({"service": request.service, "entities": request.entities, "out": request.out}),
    );
    let store = state.store.clone();
    run_job(job.clone(), move |job| {
        // Every event acknowledged so far into the offline logs, so the backfill counts
        // exactly what was served.
        store
            .flush_events()
            .map_err(|e| (e.to_string(), e.fault()))?;
        let stats = skewless_offline::backfill(
            &project,
            &root,
            &plan,
            &entities,
            &out,
            &skewless_offline::BackfillOptions {
                threads: job_threads(),
                ..Default::default()
            },
            job,
        )
        .map_err(|e| (e.to_string(), e.fault()))?;
        Ok(json!({
            "rows": stats.rows,
            "features": stats.features,
            "partitions": stats.partitions,
            "spilled": stats.spilled,
            "out": request.out,
            "elapsed_ms": stats.elapsed.as_millis() as u64,
        }))
    });
    Ok(accepted(&job))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MaterializeRequest {
    /// Absent or null: from each view's watermark (incremental).
    #[serde(default)]
    start: Option<Json>,
    end: Json,
    #[serde(default)]
    views: Vec<String>,
}

pub(super) async fn start_materialize(
    State(state): Shared,
    JsonBody(request): JsonBody<MaterializeRequest>,
) -> ApiResult {
    let end = json::parse_timestamp(&request.end)
        .map_err(|e| ApiError::bad_request(format!("end: {e}")))?;
    let start = match request.start.as_ref().filter(|s| !s.is_null()) {
        Some(s) => Some(
            json::parse_timestamp(s).map_err(|e| ApiError::bad_request(format!("start: {e}")))?,
        ),
        None => None,
    };
    let serving = state.serving();
    let project = serving.project()?.clone();
    // Aggregated views named here get their tiles built again from history; the others
    // are loaded row by row. (Unnamed, aggregated views are left alone: pushes keep their
    // tiles current.)
    let (aggregated, rows): (Vec<String>, Vec<String>) =
        request.views.iter().cloned().partition(|name| {
            project
                .definitions()
                .feature_views
                .iter()
                .any(|v| &v.name == name && v.is_aggregated())
        });
    let windows = if rows.is_empty() && !aggregated.is_empty() {
        Vec::new()
    } else {
        skewless_ops::plan_materialization(&state.registry, &project, &rows, start, end)?
    };
    let job = state.jobs.start(
        "materialize",
        json!({
            "windows": windows.iter().map(|w| json!({
                "view": w.view,
                "start": json::bound(w.start),
                "end": json::format_timestamp(w.end),
            })).collect::<Vec<_>>(),
            "tiles": aggregated,
        }),
    );
    let state = state.clone();
    run_job(job.clone(), move |job| {
        let started = std::time::Instant::now();
        if !aggregated.is_empty() {
            skewless_ops::events::rebuild_tiles(
                state.store.as_ref(),
                &project,
                &state.config.source_root,
                &aggregated,
            )
            .map_err(|e| (e.to_string(), e.fault()))?;
        }
        let rebuilt_ms = started.elapsed().as_millis() as u64;
        let stats = skewless_ops::run_materialization(
            &state.registry,
            &project,
            state.store.as_ref(),
            &state.config.source_root,
            &windows,
            job_threads(),
            job,
        )
        .map_err(|e| (e.to_string(), e.fault()))?;
        let views: Vec<Json> = stats
            .views
            .iter()
            .map(|v| {
                json!({
                    "view": v.window.view,
                    "rows_in_window": v.rows_in_window,
                    "rows_written": v.rows_written,
                    "row_groups_skipped": v.source.row_groups_skipped,
                })
            })
            .collect();
        Ok(json!({
            "views": views,
            "tiles_rebuilt": aggregated,
            "tiles_elapsed_ms": rebuilt_ms,
            "elapsed_ms": stats.elapsed.as_millis() as u64,
        }))
    });
    Ok(accepted(&job))
}

pub(super) async fn list_jobs(State(state): Shared) -> Response {
    let jobs: Vec<Json> = state.jobs.all().iter().map(|j| j.status()).collect();
    axum::Json(json!({ "jobs": jobs })).into_response()
}

pub(super) async fn job_status(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> ApiResult {
    let job = state.jobs.get(&id).ok_or_else(|| {
        ApiError::not_found(format!("no job `{id}` (jobs are forgotten on restart)"))
    })?;
    Ok(axum::Json(job.status()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_job_ends_as_failed() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let jobs = crate::jobs::Jobs::default();
        let job = jobs.start("backfill", Json::Null);
        runtime.block_on(async {
            run_job(job.clone(), |_| panic!("the join went wrong"));
            while job.is_running() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        let status = job.status();
        assert_eq!(status["state"], "failed");
        let error = status["error"].as_str().unwrap();
        assert!(error.starts_with("the job's worker failed"), "{error}");
        assert!(error.contains("the join went wrong"), "{error}");
        assert_eq!(status["fault"], "internal");
    }
}
