//! The HTTP routes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::ArrayRef;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use skewless_core::assemble::{Value, ValueReader, ViewColumnsBuilder};
use skewless_core::definitions::REQUEST_SCOPE;
use skewless_core::key::KeyBuf;
use skewless_engine::Fault;
use skewless_online::{OnlineStore, WriteBatch};
use skewless_plan::ServicePlan;
use skewless_registry::Upload;

use crate::error::ApiError;
use crate::jobs::{Job, JobState, resolve};
use crate::json;
use crate::metrics::labels;
use crate::quality;
use crate::sample::Served;
use crate::state::{AppState, Serving};

type Shared = State<Arc<AppState>>;
type ApiResult<T = Response> = Result<T, ApiError>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let body = state.config.max_body_bytes;
    let module = state.config.max_module_bytes;
    let writes = Router::new()
        .route(
            "/v1/transforms/{name}/{version}",
            put(upload).layer(DefaultBodyLimit::max(module)),
        )
        .route("/v1/definitions", put(apply))
        .route("/v1/push/{source}", post(push))
        .route("/v1/backfill", post(start_backfill))
        .route("/v1/materialize", post(start_materialize))
        // Served rows (entity keys, request data) and the work verify and drift do are
        // guarded like writes.
        .route("/v1/feature-services/{name}/sample", get(quality::sample))
        .route("/v1/feature-services/{name}/drift", get(quality::drift))
        .route("/v1/verify", post(quality::verify))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/v1/transforms", get(list_modules))
        .route("/v1/transforms/{name}", get(module_versions))
        .route(
            "/v1/transforms/{name}/{version}",
            get(quality::module_bytes),
        )
        .route("/v1/definitions", get(definitions))
        .route("/v1/feature-views", get(feature_views))
        .route("/v1/feature-services", get(feature_services))
        .route("/v1/features", post(features))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(writes)
        .fallback(|| async { ApiError::not_found("no such route; see docs/api.md") })
        .layer(DefaultBodyLimit::max(body))
        .with_state(state)
}

async fn require_token(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(token) = state.config.token.as_deref().filter(|t| !t.is_empty()) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "writes need `Authorization: Bearer <token>` with the server's token",
            )
            .into_response();
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

// ---- modules ------------------------------------------------------------------------

async fn upload(
    State(state): Shared,
    Path((name, version)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "empty body: send the component's bytes",
        ));
    }
    let registry = state.registry.clone();
    let (outcome, info) = blocking(move || registry.upload(&name, &version, &body)).await??;
    let status = match outcome {
        Upload::Created => StatusCode::CREATED,
        Upload::Unchanged => StatusCode::OK,
    };
    Ok((status, axum::Json(info)).into_response())
}

async fn list_modules(State(state): Shared) -> Response {
    axum::Json(json!({ "transforms": state.registry.modules() })).into_response()
}

async fn module_versions(State(state): Shared, Path(name): Path<String>) -> ApiResult {
    let versions: Vec<_> = state
        .registry
        .modules()
        .into_iter()
        .filter(|m| m.name == name)
        .collect();
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "no module `{name}` was uploaded"
        )));
    }
    Ok(axum::Json(json!({ "name": name, "versions": versions })).into_response())
}

// ---- definitions --------------------------------------------------------------------

async fn apply(State(state): Shared, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body?;
    let yaml = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("definitions must be UTF-8 YAML"))?;
    let _applying = state.applying.lock().await;
    let registry = state.registry.clone();
    let applied =
        blocking(move || registry.apply(&yaml, |project| Serving::build(project, &registry)))
            .await?;
    let (project, serving) = match applied {
        Ok(Ok(done)) => done,
        Ok(Err(plan_error)) => return Err(plan_error.into()),
        Err(skewless_registry::Error::Definitions(problems)) => {
            // The text for people, and each problem with its path and line for tools.
            return Err(ApiError::unprocessable(problems.to_string())
                .with("problems", json!(problems.problems)));
        }
        Err(e) => return Err(e.into()),
    };
    let store = state.store.clone();
    let schemas = crate::view_schemas(&project);
    blocking(move || store.set_views(&schemas)).await??;
    state.swap(serving);
    let d = &project.definitions();
    Ok(axum::Json(json!({
        "project": d.project,
        "entities": d.entities.len(),
        "sources": d.sources.len(),
        "feature_views": d.feature_views.len(),
        "transforms": d.transforms.iter().map(|t| json!({"name": t.name, "module": t.module.to_string()})).collect::<Vec<_>>(),
        "feature_services": project.services().keys().collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn definitions(State(state): Shared) -> ApiResult {
    let project = state
        .registry
        .project()
        .ok_or_else(|| ApiError::not_found("no definitions applied yet (PUT /v1/definitions)"))?;
    let yaml = project
        .definitions()
        .to_yaml()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

/// Runs `call` on the online store from a request. A remote store's round trip runs where
/// blocking is allowed, so that it does not stall the other requests on this worker; the
/// in-process store answers from memory, inline.
fn on_store<T>(state: &AppState, call: impl FnOnce(&dyn OnlineStore) -> T) -> T {
    let store = &*state.store;
    if store.blocks() {
        tokio::task::block_in_place(|| call(store))
    } else {
        call(store)
    }
}

async fn feature_views(State(state): Shared) -> ApiResult {
    let rows: HashMap<String, u64> = on_store(&state, |s| s.stats()).rows.into_iter().collect();
    let until = quality::materialized_until(&state, &state.serving())?;
    let views: Vec<Json> = state
        .registry
        .project()
        .map(|p| {
            let d = &p.definitions();
            d.feature_views
                .iter()
                .map(|v| {
                    json!({
                        "name": v.name,
                        "entities": v.entities,
                        "join_keys": d.view_join_keys(v),
                        "source": v.source,
                        "ttl": v.ttl,
                        "online": v.online,
                        "features": v.features,
                        "owner": v.metadata.owner,
                        "description": v.metadata.description,
                        "tags": v.metadata.tags,
                        "online_rows": rows.get(&v.name).copied().unwrap_or(0),
                        "materialized_until": until.get(&v.name).map(|&t| json::format_timestamp(t)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(axum::Json(json!({ "feature_views": views })).into_response())
}

async fn feature_services(State(state): Shared) -> Response {
    let serving = state.serving();
    let services: Vec<Json> = serving
        .project
        .as_ref()
        .map(|p| {
            p.definitions()
                .feature_services
                .iter()
                .filter_map(|s| {
                    let plan = serving.services.get(&s.name)?;
                    Some(json!({
                        "name": s.name,
                        "features": plan.features.iter().map(|f| json!({"name": f.qualified, "dtype": f.dtype})).collect::<Vec<_>>(),
                        "join_keys": plan.join_keys,
                        "request_schema": plan.request_fields,
                        "transforms": plan.transforms.iter().map(|t| json!({"name": t.name, "module": t.module.to_string(), "sha256": t.transform.sha256()})).collect::<Vec<_>>(),
                        "owner": s.metadata.owner,
                        "description": s.metadata.description,
                        "tags": s.metadata.tags,
                    }))
                })
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({ "feature_services": services })).into_response()
}

// ---- push ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    columns: HashMap<String, Vec<Json>>,
}

async fn push(
    State(state): Shared,
    Path(source): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: PushRequest = parse_json(&body?)?;
    let serving = state.serving();
    let project = serving
        .project
        .clone()
        .ok_or_else(|| ApiError::not_found("no definitions applied yet (PUT /v1/definitions)"))?;
    let d = &project.definitions();
    let src = d
        .source(&source)
        .ok_or_else(|| ApiError::not_found(format!("unknown source `{source}`")))?;
    let views: Vec<_> = d
        .feature_views
        .iter()
        .filter(|v| v.source == source && v.online)
        .collect();
    if views.is_empty() {
        return Err(ApiError::bad_request(format!(
            "source `{source}` feeds no online feature view"
        )));
    }
    let columns = &request.columns;
    let column = |name: &str| {
        columns.get(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "columns.{name} is missing (source `{source}` needs it)"
            ))
        })
    };
    let ts = column(&src.timestamp_field)?;
    let rows = ts.len();
    if let Some((name, values)) = columns.iter().find(|(_, v)| v.len() != rows) {
        return Err(ApiError::bad_request(format!(
            "columns.{name} has {} values, columns.{} has {rows}: every column needs one value per row",
            values.len(),
            src.timestamp_field
        )));
    }
    let timestamps = |name: &str, values: &[Json]| -> ApiResult<Vec<i64>> {
        values
            .iter()
            .enumerate()
            .map(|(row, v)| {
                json::parse_timestamp(v)
                    .map_err(|e| ApiError::bad_request(format!("columns.{name}[{row}]: {e}")))
            })
            .collect()
    };
    let event_ts = timestamps(&src.timestamp_field, ts)?;
    let created_ts = match &src.created_timestamp_field {
        Some(name) => match columns.get(name) {
            Some(values) => Some(timestamps(name, values)?),
            None => None,
        },
        None => None,
    };
    let mut known: Vec<&str> = vec![src.timestamp_field.as_str()];
    known.extend(src.created_timestamp_field.as_deref());
    let mut batches = Vec::with_capacity(views.len());
    for view in &views {
        let join_keys = d.view_join_keys(view);
        let mut keys = Vec::with_capacity(rows);
        let mut key = KeyBuf::new();
        for row in 0..rows {
            key.clear();
            for k in &join_keys {
                let value = &column(&k.name)?[row];
                json::push_key(&mut key, value, k.dtype).map_err(|e| {
                    ApiError::bad_request(format!("columns.{}[{row}]: {e}", k.name))
                })?;
            }
            keys.push(Box::<[u8]>::from(key.as_bytes()));
        }
        let mut features = Vec::with_capacity(view.features.len());
        for f in &view.features {
            let values = column(&f.name)?;
            features.push(
                json::column(values, f.dtype)
                    .map_err(|e| ApiError::bad_request(format!("columns.{}{e}", f.name)))?,
            );
        }
        batches.push((
            view.name.clone(),
            WriteBatch {
                keys,
                event_ts: event_ts.clone(),
                created_ts: created_ts.clone(),
                features,
            },
        ));
    }
    for name in columns.keys() {
        let used = known.contains(&name.as_str())
            || views.iter().any(|v| {
                v.features.iter().any(|f| &f.name == name)
                    || d.view_join_keys(v).iter().any(|k| &k.name == name)
            });
        if !used {
            return Err(ApiError::bad_request(format!(
                "columns.{name} is not a join key, timestamp or feature of a view on source `{source}`"
            )));
        }
    }
    let store = state.store.clone();
    let view_names: Vec<String> = batches.iter().map(|(n, _)| n.clone()).collect();
    blocking(move || {
        for (view, batch) in batches {
            store.write(&view, batch)?;
        }
        Ok::<_, skewless_online::Error>(())
    })
    .await??;
    state.metrics.add(
        "skewless_push_rows_total",
        labels(&[("source", &source)]),
        rows as u64,
    );
    Ok(axum::Json(json!({ "rows": rows, "views": view_names })).into_response())
}

// ---- serving ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeaturesRequest {
    feature_service: Option<String>,
    features: Option<Vec<String>>,
    #[serde(default)]
    entities: HashMap<String, Vec<Json>>,
    #[serde(default)]
    request_data: HashMap<String, Vec<Json>>,
    /// The time features are served as of; now when absent.
    request_time: Option<Json>,
    /// Whether the rows may enter the service's served sample (verify's replays say no).
    #[serde(default = "yes")]
    sample: bool,
}

fn yes() -> bool {
    true
}

async fn features(State(state): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    let started = Instant::now();
    // The metrics label: the service once the body names one.
    let mut service = "-".to_owned();
    let response = serve(&state, body, &mut service).unwrap_or_else(IntoResponse::into_response);
    state.metrics.add(
        "skewless_requests_total",
        labels(&[("service", &service), ("code", response.status().as_str())]),
        1,
    );
    state.metrics.observe(
        "skewless_request_duration_seconds",
        labels(&[("service", &service)]),
        started.elapsed(),
    );
    response
}

fn serve(state: &AppState, body: Result<Bytes, BytesRejection>, service: &mut String) -> ApiResult {
    let request: FeaturesRequest = parse_json(&body?)?;
    request
        .feature_service
        .as_deref()
        .unwrap_or("features")
        .clone_into(service);
    let serving = state.serving();
    let plan = plan_for(state, &serving, &request)?;
    let body = run_plan(state, &serving, &plan, request)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn plan_for(
    state: &AppState,
    serving: &Serving,
    request: &FeaturesRequest,
) -> ApiResult<Arc<ServicePlan>> {
    let project = serving
        .project
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no definitions applied yet (PUT /v1/definitions)"))?;
    match (&request.feature_service, &request.features) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either `feature_service` or `features`, not both",
        )),
        (None, None) => Err(skewless_plan::Error::NoFeatures.into()),
        (Some(name), None) => serving
            .services
            .get(name)
            .cloned()
            .ok_or_else(|| skewless_plan::Error::UnknownService(name.clone()).into()),
        (None, Some(list)) => {
            let cache_key = list.join("\n");
            if let Some(plan) = serving.adhoc.get(&cache_key) {
                return Ok(plan.clone());
            }
            let modules = |m: &_| state.registry.transform(m);
            let plan = Arc::new(ServicePlan::for_features(project, list, &modules)?);
            if serving.adhoc.len() < 1024 {
                serving.adhoc.insert(cache_key, plan.clone());
            }
            Ok(plan)
        }
    }
}

/// Serves `request` with `plan` and returns the response body; the rows of a feature
/// service's request are offered to its sample (see [`crate::sample`]) unless the request
/// says `"sample": false`.
pub(crate) fn run_plan(
    state: &AppState,
    serving: &Serving,
    plan: &Arc<ServicePlan>,
    request: FeaturesRequest,
) -> ApiResult<Vec<u8>> {
    let at = match &request.request_time {
        Some(t) => json::parse_timestamp(t)
            .map_err(|e| ApiError::bad_request(format!("request_time: {e}")))?,
        None => chrono::Utc::now().timestamp_micros(),
    };
    // Rows: every join key the plan needs, all of one length.
    let mut entity_columns = Vec::with_capacity(plan.join_keys.len());
    let mut rows = None;
    for key in &plan.join_keys {
        let values = request.entities.get(&key.name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "entities.{} is missing (needed by {})",
                key.name, plan.name
            ))
        })?;
        check_rows(&mut rows, values.len(), "entities", &key.name)?;
        entity_columns.push(values);
    }
    for field in &plan.request_fields {
        let values = request.request_data.get(&field.name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "request_data.{} is missing: {} needs request field `{}` ({})",
                field.name, plan.name, field.name, field.dtype
            ))
        })?;
        check_rows(&mut rows, values.len(), "request_data", &field.name)?;
    }
    let rows = rows.unwrap_or(0);
    // Stored features, as of `at`.
    let mut views = Vec::with_capacity(plan.views.len());
    let mut key_bytes = Vec::new();
    let mut bounds = Vec::with_capacity(rows + 1);
    let mut key = KeyBuf::new();
    for view in &plan.views {
        if !view.online {
            return Err(ApiError::bad_request(format!(
                "feature view `{}` is offline only (online: false); it cannot be served",
                view.name
            )));
        }
        key_bytes.clear();
        bounds.clear();
        bounds.push(0);
        #[expect(
            clippy::needless_range_loop,
            reason = "a row indexes several key columns"
        )]
        for row in 0..rows {
            key.clear();
            for &k in &view.key_columns {
                let join_key = &plan.join_keys[k];
                json::push_key(&mut key, &entity_columns[k][row], join_key.dtype).map_err(|e| {
                    ApiError::bad_request(format!("entities.{}[{row}]: {e}", join_key.name))
                })?;
            }
            key_bytes.extend_from_slice(key.as_bytes());
            bounds.push(key_bytes.len());
        }
        let keys: Vec<&[u8]> = bounds.windows(2).map(|w| &key_bytes[w[0]..w[1]]).collect();
        let fingerprint = serving
            .fingerprints
            .get(&view.name)
            .copied()
            .ok_or_else(|| {
                ApiError::internal(format!("view `{}` has no fingerprint", view.name))
            })?;
        let mut builder =
            ViewColumnsBuilder::new(view.features.iter().map(|f| f.dtype), view.ttl, rows);
        on_store(state, |s| {
            s.read(&view.name, fingerprint, &keys, at, &mut builder)
        })?;
        views.push(builder.finish());
    }
    let mut request_arrays: Vec<ArrayRef> = Vec::with_capacity(plan.request_fields.len());
    for field in &plan.request_fields {
        let values = &request.request_data[&field.name];
        request_arrays.push(
            json::column(values, field.dtype)
                .map_err(|e| ApiError::bad_request(format!("request_data.{}{e}", field.name)))?,
        );
    }
    // One batch per transform for the whole request; a slow guest blocks only this task.
    let times = vec![at; rows];
    let output = tokio::task::block_in_place(|| plan.run(rows, &times, views, &request_arrays));
    for call in &output.calls {
        let t = &plan.transforms[call.transform];
        let module = t.module.to_string();
        let l = labels(&[("transform", &t.name), ("module", &module)]);
        state
            .metrics
            .add("skewless_transform_calls_total", l.clone(), 1);
        state.metrics.observe(
            "skewless_transform_call_duration_seconds",
            l.clone(),
            call.elapsed,
        );
        if let Some(error) = &call.error {
            if error.fault() == Fault::Caller {
                // The request's own data broke the transform's contract (a null in a
                // required request field, an out-of-range value): the caller's to fix.
                return Err(ApiError::bad_request(format!(
                    "{REQUEST_SCOPE} data for transform `{}`: {error}",
                    t.name
                )));
            }
            state.metrics.add("skewless_transform_errors_total", l, 1);
            tracing::warn!(transform = %t.name, module = %module, error = %error, "transform failed; its features are TRANSFORM_ERROR");
        }
    }
    if request.sample && request.feature_service.is_some() {
        let fields: Vec<&Vec<Json>> = plan
            .request_fields
            .iter()
            .map(|f| &request.request_data[&f.name])
            .collect();
        state.samples.record(
            plan,
            &Served {
                at,
                entities: &entity_columns,
                request: &fields,
                output: &output,
                rows,
            },
        );
    }
    Ok(render(plan, &output, rows))
}

fn check_rows(rows: &mut Option<usize>, n: usize, section: &str, name: &str) -> ApiResult<()> {
    match *rows {
        None => {
            *rows = Some(n);
            Ok(())
        }
        Some(expected) if expected == n => Ok(()),
        Some(expected) => Err(ApiError::bad_request(format!(
            "{section}.{name} has {n} values, but other columns have {expected}: every entity and request column needs one value per row"
        ))),
    }
}

fn render(plan: &ServicePlan, output: &skewless_plan::ServiceOutput, rows: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + rows * plan.features.len() * 48);
    out.extend_from_slice(b"{\"metadata\":{\"feature_names\":[");
    for (i, f) in plan.features.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(&mut out, &f.qualified);
    }
    out.extend_from_slice(b"]},\"results\":[");
    for (i, f) in plan.features.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Plan outputs are of the features' canonical types (the engine checks
        // transform outputs); anything else would be served as nulls.
        let reader = ValueReader::new(&output.columns[i], f.dtype);
        out.extend_from_slice(b"{\"values\":[");
        for row in 0..rows {
            if row > 0 {
                out.push(b',');
            }
            json::write_value(&mut out, reader.map_or(Value::Null, |r| r.value(row)));
        }
        out.extend_from_slice(b"],\"statuses\":[");
        for row in 0..rows {
            if row > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(output.status(plan, i, row).name().as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"],\"event_timestamps\":[");
        for row in 0..rows {
            if row > 0 {
                out.push(b',');
            }
            match output.event_ts(plan, i, row) {
                Some(ts) => json::write_str(&mut out, &json::format_timestamp(ts)),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    out
}

// ---- health and metrics -------------------------------------------------------------

async fn healthz(State(state): Shared) -> Response {
    let serving = state.serving();
    axum::Json(json!({
        "status": "ok",
        "project": serving.project.as_ref().map(|p| p.definitions().project.clone()),
        "feature_services": serving.services.len(),
        "modules": state.registry.modules().len(),
    }))
    .into_response()
}

async fn metrics(State(state): Shared, _headers: HeaderMap) -> Response {
    let stats = on_store(&state, |s| s.stats());
    let mut gauges = vec![
        (
            "skewless_online_rows",
            "Rows held in the online store, by feature view.",
            stats
                .rows
                .iter()
                .map(|(view, n)| (labels(&[("view", view)]), *n as f64))
                .collect(),
        ),
        (
            "skewless_online_bytes",
            "Bytes of keys and rows held in the online store, by feature view.",
            stats
                .bytes
                .iter()
                .map(|(view, n)| (labels(&[("view", view)]), *n as f64))
                .collect(),
        ),
        (
            "skewless_wal_bytes_since_snapshot",
            "Write-ahead log bytes written since the last snapshot began (what a restart replays).",
            vec![(String::new(), stats.wal_bytes_since_snapshot as f64)],
        ),
        (
            "skewless_wal_pending_writes",
            "Writes waiting for the write-ahead log (group commit queue).",
            vec![(String::new(), stats.wal_pending_writes as f64)],
        ),
        (
            "skewless_snapshots",
            "Online store snapshots completed since start.",
            vec![(String::new(), stats.snapshots as f64)],
        ),
    ];
    gauges.extend(quality::drift_gauges(&state));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
        .into_response()
}

// ---- jobs: backfill and materialize -------------------------------------------------

/// Runs `work` on a blocking thread as `job`; a panic fails the job instead of leaving it
/// running forever.
fn run_job(job: Arc<Job>, work: impl FnOnce(&Job) -> Result<Json, String> + Send + 'static) {
    let handle = {
        let job = job.clone();
        tokio::task::spawn_blocking(move || work(&job))
    };
    tokio::spawn(async move {
        let state = match handle.await {
            Ok(Ok(result)) => JobState::Succeeded(result),
            Ok(Err(reason)) => JobState::Failed(reason),
            Err(e) => JobState::Failed(format!("the job's worker failed: {e}")),
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
struct BackfillRequest {
    service: String,
    entities: String,
    out: String,
}

async fn start_backfill(State(state): Shared, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let request: BackfillRequest = parse_json(&body)?;
    let serving = state.serving();
    let project = serving
        .project
        .clone()
        .ok_or_else(|| ApiError::bad_request("no definitions applied yet"))?;
    let plan = serving
        .services
        .get(&request.service)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no feature service `{}`", request.service)))?;
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
    run_job(job.clone(), move |job| {
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
        .map_err(|e| e.to_string())?;
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
struct MaterializeRequest {
    /// Absent or null: from each view's watermark (incremental).
    #[serde(default)]
    start: Option<Json>,
    end: Json,
    #[serde(default)]
    views: Vec<String>,
}

async fn start_materialize(State(state): Shared, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let request: MaterializeRequest = parse_json(&body)?;
    let end = json::parse_timestamp(&request.end)
        .map_err(|e| ApiError::bad_request(format!("end: {e}")))?;
    let start = match request.start.as_ref().filter(|s| !s.is_null()) {
        Some(s) => Some(
            json::parse_timestamp(s).map_err(|e| ApiError::bad_request(format!("start: {e}")))?,
        ),
        None => None,
    };
    let serving = state.serving();
    let project = serving
        .project
        .clone()
        .ok_or_else(|| ApiError::bad_request("no definitions applied yet"))?;
    let windows =
        crate::plan_materialization(&state.registry, &project, &request.views, start, end)
            .map_err(|e| match e {
                crate::MaterializeError::Offline(e) => ApiError::bad_request(e.to_string()),
                crate::MaterializeError::Registry(e) => e.into(),
            })?;
    let job = state.jobs.start(
        "materialize",
        json!({
            "windows": windows.iter().map(|w| json!({
                "view": w.view,
                "start": json::format_timestamp(w.start),
                "end": json::format_timestamp(w.end),
            })).collect::<Vec<_>>(),
        }),
    );
    let state = state.clone();
    run_job(job.clone(), move |job| {
        let stats = crate::run_materialization(
            &state.registry,
            &project,
            state.store.as_ref(),
            &state.config.source_root,
            &windows,
            job_threads(),
            job,
        )
        .map_err(|e| e.to_string())?;
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
        Ok(json!({"views": views, "elapsed_ms": stats.elapsed.as_millis() as u64}))
    });
    Ok(accepted(&job))
}

async fn list_jobs(State(state): Shared) -> Response {
    let jobs: Vec<Json> = state.jobs.all().iter().map(|j| j.status()).collect();
    axum::Json(json!({ "jobs": jobs })).into_response()
}

async fn job_status(State(state): Shared, Path(id): Path<String>) -> ApiResult {
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
    }
}
