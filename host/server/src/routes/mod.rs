//! The HTTP routes, one file per area; each handler reads its input with the extractors
//! of [`crate::extract`], calls the crates below, and answers JSON or an [`ApiError`].

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use skewless_online::OnlineStore;

use crate::error::ApiError;
use crate::metrics::labels;
use crate::state::AppState;

mod definitions;
mod features;
mod health;
mod jobs;
mod modules;
mod push;
mod quality;

type Shared = State<Arc<AppState>>;
type ApiResult<T = Response> = Result<T, ApiError>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let body = state.config.max_body_bytes;
    let module = state.config.max_module_bytes;
    let writes = Router::new()
        .route(
            "/v1/transforms/{name}/{version}",
            put(modules::upload).layer(DefaultBodyLimit::max(module)),
        )
        .route("/v1/definitions", put(definitions::apply))
        .route("/v1/push/{source}", post(push::push))
        .route("/v1/backfill", post(jobs::start_backfill))
        .route("/v1/materialize", post(jobs::start_materialize))
        // Served rows (entity keys, request data) and the work verify and drift do are
        // guarded like writes.
        .route("/v1/feature-services/{name}/sample", get(quality::sample))
        .route("/v1/feature-services/{name}/drift", get(quality::drift))
        .route("/v1/verify", post(quality::verify))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let serving = Router::new()
        .route("/v1/features", post(features::features))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            serving_metrics,
        ));
    Router::new()
        .route("/v1/transforms", get(modules::list_modules))
        .route("/v1/transforms/{name}", get(modules::module_versions))
        .route(
            "/v1/transforms/{name}/{version}",
            get(quality::module_bytes),
        )
        .route("/v1/definitions", get(definitions::definitions))
        .route("/v1/feature-views", get(definitions::feature_views))
        .route("/v1/feature-services", get(definitions::feature_services))
        .route("/v1/jobs", get(jobs::list_jobs))
        .route("/v1/jobs/{id}", get(jobs::job_status))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .merge(serving)
        .merge(writes)
        .fallback(|| async { ApiError::not_found("no such route; see docs/api.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method; see docs/api.md",
            )
        })
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

/// The feature service a serving response answered for, once its body named one; the
/// metrics layer labels the request with it.
#[derive(Debug, Clone)]
pub(crate) struct ServiceLabel(pub(crate) String);

/// Counts and times every serving request by service and status.
async fn serving_metrics(State(state): Shared, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let service = response
        .extensions()
        .get::<ServiceLabel>()
        .map_or("-", |s| s.0.as_str());
    state.metrics.add(
        "skewless_requests_total",
        labels(&[("service", service), ("code", response.status().as_str())]),
        1,
    );
    state.metrics.observe(
        "skewless_request_duration_seconds",
        labels(&[("service", service)]),
        started.elapsed(),
    );
    response
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))
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
