//! Routes that check what was served: module bytes (so that a verifier runs the very
//! artifact the server runs), the served sample, `POST /v1/verify`, and drift.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use skewless_core::definitions::ModuleRef;
use skewless_ops::sample::{Layout, ServedRow, columns};
use skewless_ops::verify::{self, Rows};
use skewless_ops::{drift, json};
use skewless_plan::ServicePlan;

use super::{ApiResult, Shared, blocking};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::jobs::resolve;
use crate::metrics::{Gauge, labels};
use crate::state::AppState;

/// `GET /v1/transforms/{name}/{version}`: the component bytes, as uploaded.
pub(super) async fn module_bytes(
    State(state): Shared,
    PathParams((name, version)): PathParams<(String, String)>,
) -> ApiResult {
    let reference = ModuleRef { name, version };
    let registry = state.registry.clone();
    let wanted = reference.clone();
    let bytes = blocking(move || registry.module_bytes(&wanted))
        .await??
        .ok_or_else(|| ApiError::not_found(format!("no module {reference} was uploaded")))?;
    let sha256 = skewless_engine::sha256_hex(&bytes);
    Ok((
        [
            (header::CONTENT_TYPE, "application/wasm".to_owned()),
            (header::HeaderName::from_static("x-skewless-sha256"), sha256),
        ],
        bytes,
    )
        .into_response())
}

/// A service's sample, re-laid in the current plan's order; an error when the service
/// has served nothing since its definition last changed.
fn served_rows(
    state: &AppState,
    plan: &ServicePlan,
    limit: usize,
) -> ApiResult<(u64, Vec<ServedRow>)> {
    let none = || {
        ApiError::conflict(format!(
            "feature service `{}` has served no rows since the server started (or since its definition changed); serve some, or give the rows to check",
            plan.name
        ))
    };
    let (layout, seen, rows) = state.samples.get(&plan.name, limit).ok_or_else(none)?;
    // Rows are indexed by the plan's join keys, request fields and features: a sample
    // of another layout (a re-apply nothing has been served under yet) does not count.
    if layout != Layout::of(plan) {
        return Err(none());
    }
    if rows.is_empty() {
        return Err(none());
    }
    Ok((seen, rows))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SampleQuery {
    #[serde(default = "default_rows")]
    rows: usize,
}

fn default_rows() -> usize {
    100
}

/// `GET /v1/feature-services/{name}/sample?rows=N`: up to N served rows, columnar.
pub(super) async fn sample(
    State(state): Shared,
    PathParams(name): PathParams<String>,
    QueryParams(query): QueryParams<SampleQuery>,
) -> ApiResult {
    let serving = state.serving();
    let plan = serving.service(&name)?;
    let (seen, rows) = served_rows(&state, &plan, query.rows)?;
    let join_keys: Vec<String> = plan.join_keys.iter().map(|k| k.name.clone()).collect();
    let fields: Vec<String> = plan.request_fields.iter().map(|f| f.name.clone()).collect();
    let features: Vec<String> = plan.features.iter().map(|f| f.qualified.clone()).collect();
    Ok(axum::Json(json!({
        "feature_service": name,
        "seen": seen,
        "rows": rows.len(),
        "request_times": rows.iter().map(|r| json::format_timestamp(r.at)).collect::<Vec<_>>(),
        "entities": columns(&join_keys, &rows, |r| &r.entities),
        "request_data": columns(&fields, &rows, |r| &r.request),
        "values": columns(&features, &rows, |r| &r.values),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyRequest {
    service: String,
    /// How many served rows to check.
    #[serde(default = "default_rows")]
    rows: usize,
    /// The time to check at; by default where every view is materialized to.
    #[serde(default)]
    at: Option<Json>,
    /// Rows to check instead of served ones (columnar, as `POST /v1/features`).
    #[serde(default)]
    entities: Option<Map<String, Json>>,
    #[serde(default)]
    request_data: Option<Map<String, Json>>,
    /// Mismatches shown.
    #[serde(default = "default_examples")]
    examples: usize,
}

fn default_examples() -> usize {
    10
}

/// `POST /v1/verify`: serve rows at a time, backfill them at the same time from the
/// sources, and compare bit for bit.
pub(super) async fn verify(
    State(state): Shared,
    JsonBody(request): JsonBody<VerifyRequest>,
) -> ApiResult {
    let serving = state.serving();
    let project = serving.project()?.clone();
    let plan = serving.service(&request.service)?;
    let rows = match (&request.entities, &request.request_data) {
        (None, None) => Rows::from_sample(&plan, &served_rows(&state, &plan, request.rows)?.1),
        (entities, data) => Rows::from_columns(
            &plan,
            entities.as_ref().unwrap_or(&Map::new()),
            data.as_ref().unwrap_or(&Map::new()),
        )
        .map_err(ApiError::ops(StatusCode::BAD_REQUEST))?,
    };
    let until = serving.materialized_until(&state.registry)?;
    let until = |v: &str| until.get(v).copied();
    let at = match &request.at {
        Some(t) => {
            json::parse_timestamp(t).map_err(|e| ApiError::bad_request(format!("at: {e}")))?
        }
        None => verify::default_at(&plan, until, chrono::Utc::now().timestamp_micros()),
    };
    let notes = verify::notes(&plan, until, at);
    let root = state.config.source_root.clone();
    let report = {
        let (state, serving, plan) = (state.clone(), serving.clone(), plan.clone());
        blocking(move || {
            // The rows as Arrow once, then the online half of the one path itself and
            // the offline half over them.
            let arrays = rows
                .arrays(&plan)
                .map_err(ApiError::ops(StatusCode::BAD_REQUEST))?;
            let served = verify::online(&*state.store, &serving.fingerprints, &plan, &arrays, at)
                .map_err(ApiError::ops(StatusCode::BAD_REQUEST))?;
            let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
            let report = verify::offline(&project, &root, &plan, &arrays, at, threads)
                .and_then(|offline| {
                    verify::compare(&plan, &rows, at, &served, &offline, request.examples)
                })
                .map_err(ApiError::ops(StatusCode::UNPROCESSABLE_ENTITY))?;
            Ok::<_, ApiError>(verify::Report { notes, ..report })
        })
        .await??
    };
    let service = labels(&[("service", &plan.name)]);
    state.metrics.add(
        "skewless_verify_values_total",
        service.clone(),
        report.values_checked as u64,
    );
    state.metrics.add(
        "skewless_verify_mismatches_total",
        service,
        report.mismatches as u64,
    );
    tracing::info!(service = %plan.name, rows = report.rows, mismatches = report.mismatches, "verified");
    Ok(axum::Json(report).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DriftQuery {
    training: String,
}

/// `GET /v1/feature-services/{name}/drift?training=PATH`: the served sample against a
/// training set (a backfill of the service) under the source root.
pub(super) async fn drift(
    State(state): Shared,
    PathParams(name): PathParams<String>,
    QueryParams(query): QueryParams<DriftQuery>,
) -> ApiResult {
    let serving = state.serving();
    let plan = serving.service(&name)?;
    let path = resolve(&state.config.source_root, &query.training, "training")
        .map_err(ApiError::bad_request)?;
    if !path.exists() {
        return Err(ApiError::bad_request(format!(
            "training: `{}` does not exist under the server's source root",
            query.training
        )));
    }
    let (seen, rows) = served_rows(&state, &plan, usize::MAX)?;
    let features = {
        let plan = plan.clone();
        blocking(move || {
            let training = drift::Training::read(&path, &plan, drift::TRAINING_SAMPLE_ROWS)?;
            drift::drift(&plan, &rows, &training)
        })
        .await?
        .map_err(ApiError::ops(StatusCode::UNPROCESSABLE_ENTITY))?
    };
    {
        let mut gauges = state.drift.lock().unwrap_or_else(|e| e.into_inner());
        gauges.retain(|(service, _), _| *service != name);
        for f in &features {
            gauges.insert((name.clone(), f.feature.clone()), f.clone());
        }
    }
    Ok(axum::Json(json!({
        "feature_service": name,
        "training": query.training,
        "served_seen": seen,
        "features": features,
    }))
    .into_response())
}

/// The last drift report of each service as gauges.
pub(crate) fn drift_gauges(state: &AppState) -> Vec<Gauge<'static>> {
    let drift = state.drift.lock().unwrap_or_else(|e| e.into_inner());
    let gauge = |name, help, value: fn(&drift::FeatureDrift) -> Option<f64>| -> Gauge<'static> {
        (
            name,
            help,
            drift
                .iter()
                .filter_map(|((service, feature), d)| {
                    Some((
                        labels(&[("service", service), ("feature", feature)]),
                        value(d)?,
                    ))
                })
                .collect(),
        )
    };
    vec![
        gauge(
            "skewless_feature_drift_psi",
            "PSI of served values against the training set of the last drift report, by service and feature.",
            |d| d.psi,
        ),
        gauge(
            "skewless_feature_drift_ks",
            "Two-sample KS statistic of served values against the training set of the last drift report.",
            |d| d.ks,
        ),
        gauge(
            "skewless_feature_null_rate_diff",
            "Served null rate minus training null rate, from the last drift report.",
            |d| Some(d.null_rate_diff),
        ),
    ]
}
