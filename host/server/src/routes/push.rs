//! Push: rows of a source into every online view it feeds, durable before the answer.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use skewless_core::key::KeyBuf;
use skewless_online::WriteBatch;
use skewless_ops::json;

use super::{ApiResult, Shared, blocking};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams};
use crate::metrics::labels;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PushRequest {
    columns: HashMap<String, Vec<Json>>,
}

pub(super) async fn push(
    State(state): Shared,
    PathParams(source): PathParams<String>,
    JsonBody(request): JsonBody<PushRequest>,
) -> ApiResult {
    let serving = state.serving();
    let project = serving.project()?.clone();
    let d = project.definitions();
    let src = d
        .source(&source)
        .ok_or_else(|| ApiError::not_found(format!("unknown source `{source}`")))?;
    if !src.push {
        return Err(ApiError::conflict(format!(
            "source `{source}` does not take pushes (`push: false` in the definitions)"
        )));
    }
    if let Some(v) = d
        .feature_views
        .iter()
        .find(|v| v.source == source && v.is_aggregated())
    {
        if let Some(missing) = skewless_online::cannot_log(src) {
            return Err(ApiError::conflict(format!(
                "source `{source}` feeds the aggregated view `{}`: pushed events must reach its offline log for the backfill, and for that it needs {missing}",
                v.name
            )));
        }
        return push_events(state, project, source, request.columns).await;
    }
    let views: Vec<_> = d
        .feature_views
        .iter()
        .filter(|v| v.source == source && v.online && !v.is_aggregated())
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

/// A push to an event source: the events into the tiles of every online aggregated view
/// it feeds and, through the log, into its offline log; late ones refused and counted.
async fn push_events(
    state: std::sync::Arc<crate::state::AppState>,
    project: std::sync::Arc<skewless_core::Project>,
    source: String,
    columns: HashMap<String, Vec<Json>>,
) -> ApiResult {
    let store = state.store.clone();
    let root = state.config.source_root.clone();
    let name = source.clone();
    let now = skewless_core::now_micros();
    let pushed = blocking(move || {
        skewless_ops::events::push_events(&*store, &project, &root, &name, &columns, now)
    })
    .await?
    .map_err(|e| match e {
        skewless_ops::events::PushError::Invalid(message) => ApiError::bad_request(message),
        skewless_ops::events::PushError::Store(e) => ApiError::from(e),
    })?;
    let source_label = labels(&[("source", &source)]);
    state.metrics.add(
        "skewless_push_events_total",
        source_label.clone(),
        pushed.accepted as u64,
    );
    state.metrics.add(
        "skewless_push_late_events_total",
        source_label,
        pushed.late as u64,
    );
    Ok(axum::Json(json!({ "rows": pushed.accepted, "late": pushed.late })).into_response())
}
