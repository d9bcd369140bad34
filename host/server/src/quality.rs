//! Routes that check what was served: module bytes (so that a verifier runs the very
//! artifact the server runs), the served sample, `POST /v1/verify`, and drift.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use skewless_core::definitions::ModuleRef;
use skewless_plan::ServicePlan;

use crate::error::ApiError;
use crate::jobs::resolve;
use crate::json;
use crate::metrics::{Gauge, labels};
use crate::routes::{FeaturesRequest, run_plan};
use crate::sample::{Layout, ServedRow, columns};
use crate::state::{AppState, Serving};
use crate::verify::{self, Rows};

type Shared = State<Arc<AppState>>;
type ApiResult<T = Response> = Result<T, ApiError>;

/// `GET /v1/transforms/{name}/{version}`: the component bytes, as uploaded.
pub(crate) async fn module_bytes(
    State(state): Shared,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult {
    let reference = ModuleRef { name, version };
    let registry = state.registry.clone();
    let wanted = reference.clone();
    let bytes = tokio::task::spawn_blocking(move || registry.module_bytes(&wanted))
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))??
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

fn service_plan(serving: &Serving, name: &str) -> ApiResult<Arc<ServicePlan>> {
    serving
        .services
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no feature service `{name}`")))
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
pub(crate) struct SampleQuery {
    #[serde(default = "default_rows")]
    rows: usize,
}

fn default_rows() -> usize {
    100
}

/// `GET /v1/feature-services/{name}/sample?rows=N`: up to N served rows, columnar.
pub(crate) async fn sample(
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<SampleQuery>,
) -> ApiResult {
    let serving = state.serving();
    let plan = service_plan(&serving, &name)?;
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
struct VerifyRequest {
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

/// Where each online view is materialized to, under its current schema.
pub(crate) fn materialized_until(
    state: &AppState,
    serving: &Serving,
) -> ApiResult<std::collections::HashMap<String, i64>> {
    Ok(state
        .registry
        .watermarks()?
        .into_iter()
        .filter(|(view, w)| serving.fingerprints.get(view) == Some(&w.fingerprint))
        .map(|(view, w)| (view, w.end_micros))
        .collect())
}

/// `POST /v1/verify`: serve rows at a time, backfill them at the same time from the
/// sources, and compare bit for bit.
pub(crate) async fn verify(State(state): Shared, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let request: VerifyRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let serving = state.serving();
    let project = serving
        .project
        .clone()
        .ok_or_else(|| ApiError::bad_request("no definitions applied yet"))?;
    let plan = service_plan(&serving, &request.service)?;
    let rows = match (&request.entities, &request.request_data) {
        (None, None) => Rows::from_sample(&plan, &served_rows(&state, &plan, request.rows)?.1),
        (entities, data) => Rows::from_columns(
            &plan,
            entities.as_ref().unwrap_or(&Map::new()),
            data.as_ref().unwrap_or(&Map::new()),
        )
        .map_err(ApiError::bad_request)?,
    };
    let until = materialized_until(&state, &serving)?;
    let until = |v: &str| until.get(v).copied();
    let at = match &request.at {
        Some(t) => {
            json::parse_timestamp(t).map_err(|e| ApiError::bad_request(format!("at: {e}")))?
        }
        None => verify::default_at(&plan, until, chrono::Utc::now().timestamp_micros()),
    };
    let notes = verify::notes(&plan, until, at);
    let features: FeaturesRequest = serde_json::from_value(rows.features_request(&plan, at))
        .map_err(|e| ApiError::internal(format!("building the serving request: {e}")))?;
    let served = run_plan(&state, &serving, &plan, features)?;
    let served: Json = serde_json::from_slice(&served)
        .map_err(|e| ApiError::internal(format!("reading the served answer: {e}")))?;
    let root = state.config.source_root.clone();
    let report = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || {
            let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
            let offline = verify::offline(&project, &root, &plan, &rows, at, threads)?;
            verify::compare(&plan, &rows, at, &served, &offline, request.examples)
                .map(|report| verify::Report { notes, ..report })
        })
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
        .map_err(ApiError::unprocessable)?
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
pub(crate) struct DriftQuery {
    training: String,
}

/// `GET /v1/feature-services/{name}/drift?training=PATH`: the served sample against a
/// training set (a backfill of the service) under the source root.
pub(crate) async fn drift(
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<DriftQuery>,
) -> ApiResult {
    let serving = state.serving();
    let plan = service_plan(&serving, &name)?;
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
        tokio::task::spawn_blocking(move || {
            let training =
                crate::drift::Training::read(&path, &plan, crate::drift::TRAINING_SAMPLE_ROWS)?;
            crate::drift::drift(&plan, &rows, &training)
        })
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
        .map_err(ApiError::unprocessable)?
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
    let gauge =
        |name, help, value: fn(&crate::drift::FeatureDrift) -> Option<f64>| -> Gauge<'static> {
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
