//! Definitions: apply (validated, planned, persisted, then live) and what they declare.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value as Json, json};
use skewless_ops::{NoDefinitions, json};

use super::{ApiResult, Shared, blocking, on_store};
use crate::error::ApiError;
use crate::extract::RawBody;

pub(super) async fn apply(State(state): Shared, RawBody(body): RawBody) -> ApiResult {
    let yaml = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("definitions must be UTF-8 YAML"))?;
    let _applying = state.applying.lock().await;
    let applier = state.clone();
    let root = state.config.source_root.clone();
    let (project, serving) =
        blocking(move || skewless_ops::apply(&applier.registry, &*applier.store, &yaml, &root))
            .await??;
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

pub(super) async fn definitions(State(state): Shared) -> ApiResult {
    let project = state.registry.project().ok_or(NoDefinitions)?;
    let yaml = project
        .definitions()
        .to_yaml()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

pub(super) async fn feature_views(State(state): Shared) -> ApiResult {
    let rows: HashMap<String, u64> = on_store(&state, |s| s.stats()).rows.into_iter().collect();
    let until = state.serving().materialized_until(&state.registry)?;
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
                        "features": v.feature_list(),
                        "hop": v.hop,
                        "aggregations": v.aggregations,
                        "owner": v.metadata.owner,
                        "description": v.metadata.description,
                        "tags": v.metadata.tags,
                        // Null when the store cannot count now (Redis unreachable).
                        "online_rows": rows.get(&v.name).copied(),
                        "materialized_until": until.get(&v.name).map(|&t| json::format_timestamp(t)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(axum::Json(json!({ "feature_views": views })).into_response())
}

pub(super) async fn feature_services(State(state): Shared) -> ApiResult {
    let serving = state.serving();
    let Some(project) = serving.project.as_ref() else {
        return Ok(axum::Json(json!({ "feature_services": [] })).into_response());
    };
    let services = project
        .definitions()
        .feature_services
        .iter()
        .map(|s| {
            // Every service of the applied project was planned at apply.
            let plan = serving.service(&s.name)?;
            Ok(json!({
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
        .collect::<Result<Vec<Json>, skewless_plan::Error>>()
        .map_err(|e| ApiError::internal(format!("an applied service has no plan: {e}")))?;
    Ok(axum::Json(json!({ "feature_services": services })).into_response())
}
