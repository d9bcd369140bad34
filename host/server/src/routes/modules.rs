//! Module versions: upload (validated and compiled at once) and listing.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use skewless_registry::Upload;

use super::{ApiResult, Shared, blocking};
use crate::error::ApiError;
use crate::extract::{PathParams, RawBody};

pub(super) async fn upload(
    State(state): Shared,
    PathParams((name, version)): PathParams<(String, String)>,
    RawBody(body): RawBody,
) -> ApiResult {
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

pub(super) async fn list_modules(State(state): Shared) -> Response {
    axum::Json(json!({ "transforms": state.registry.modules() })).into_response()
}

pub(super) async fn module_versions(
    State(state): Shared,
    PathParams(name): PathParams<String>,
) -> ApiResult {
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
