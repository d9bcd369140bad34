//! `POST /v1/features`: the serving endpoint. JSON is turned into Arrow here, at the edge;
//! the rows then go through the online half of the one path ([`skewless_online::serve`])
//! and the output is rendered back to JSON here.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value as Json;
use skewless_core::Fault;
use skewless_core::assemble::ValueReader;
use skewless_core::definitions::REQUEST_SCOPE;
use skewless_online::OnlineRows;
use skewless_ops::Serving;
use skewless_ops::json;
use skewless_ops::sample::Served;
use skewless_plan::{ServiceOutput, ServicePlan};

use super::{ApiResult, ServiceLabel, Shared};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::metrics::labels;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeaturesRequest {
    feature_service: Option<String>,
    features: Option<Vec<String>>,
    #[serde(default)]
    entities: HashMap<String, Vec<Json>>,
    #[serde(default)]
    request_data: HashMap<String, Vec<Json>>,
    /// The time features are served as of; now when absent.
    request_time: Option<Json>,
    /// Whether the rows may enter the service's served sample.
    #[serde(default = "yes")]
    sample: bool,
}

fn yes() -> bool {
    true
}

pub(super) async fn features(
    State(state): Shared,
    body: Result<JsonBody<FeaturesRequest>, ApiError>,
) -> Response {
    // The metrics layer labels the request with its service once the body names one.
    let mut label = None;
    let answer = body.and_then(|JsonBody(request)| {
        label = Some(
            request
                .feature_service
                .as_deref()
                .unwrap_or("features")
                .to_owned(),
        );
        serve(&state, request)
    });
    let mut response = match answer {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(label) = label {
        response.extensions_mut().insert(ServiceLabel(label));
    }
    response
}

fn plan_for(
    state: &AppState,
    serving: &Serving,
    request: &FeaturesRequest,
) -> ApiResult<Arc<ServicePlan>> {
    serving.project()?;
    match (&request.feature_service, &request.features) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either `feature_service` or `features`, not both",
        )),
        (None, None) => Err(skewless_plan::Error::NoFeatures.into()),
        (Some(name), None) => Ok(serving.service(name)?),
        (None, Some(list)) => Ok(serving.features(&state.registry, list)?),
    }
}

/// Serves `request` and returns the response body; the rows of a feature service's
/// request are offered to its sample unless the request says `"sample": false`.
fn serve(state: &AppState, request: FeaturesRequest) -> ApiResult<Vec<u8>> {
    let serving = state.serving();
    let plan = plan_for(state, &serving, &request)?;
    let at = match &request.request_time {
        Some(t) => json::parse_timestamp(t)
            .map_err(|e| ApiError::bad_request(format!("request_time: {e}")))?,
        None => chrono::Utc::now().timestamp_micros(),
    };
    // Rows: every join key and request field the plan needs, all of one length.
    let mut rows = None;
    let mut entity_json = Vec::with_capacity(plan.join_keys.len());
    for key in &plan.join_keys {
        let values = request.entities.get(&key.name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "entities.{} is missing (needed by {})",
                key.name, plan.name
            ))
        })?;
        check_rows(&mut rows, values.len(), "entities", &key.name)?;
        entity_json.push(values);
    }
    let mut request_json = Vec::with_capacity(plan.request_fields.len());
    for field in &plan.request_fields {
        let values = request.request_data.get(&field.name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "request_data.{} is missing: {} needs request field `{}` ({})",
                field.name, plan.name, field.name, field.dtype
            ))
        })?;
        check_rows(&mut rows, values.len(), "request_data", &field.name)?;
        request_json.push(values);
    }
    // A plan with no join key and no request field serves no rows.
    let rows = rows.unwrap_or(0);
    // JSON to Arrow, by the plan's dtypes.
    let (entities, request_arrays) =
        json::plan_rows(&plan, &entity_json, &request_json).map_err(ApiError::bad_request)?;
    // One batch per transform for the whole request; a slow guest blocks only this task.
    let output = tokio::task::block_in_place(|| {
        skewless_online::serve(
            &*state.store,
            &plan,
            &serving.fingerprints,
            OnlineRows {
                at,
                entities: &entities,
                request: &request_arrays,
            },
        )
    })?;
    record_calls(state, &plan, &output)?;
    if request.sample && request.feature_service.is_some() {
        state.samples.record(
            &plan,
            &Served {
                at,
                entities: &entity_json,
                request: &request_json,
                output: &output,
                rows,
            },
        );
    }
    render(&plan, &output, rows)
}

/// Counts and times each transform call; a call the request's own data broke (a null in
/// a required request field, an out-of-range value) is the caller's to fix, a 400.
fn record_calls(state: &AppState, plan: &ServicePlan, output: &ServiceOutput) -> ApiResult<()> {
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
                return Err(ApiError::bad_request(format!(
                    "{REQUEST_SCOPE} data for transform `{}`: {error}",
                    t.name
                )));
            }
            state.metrics.add("skewless_transform_errors_total", l, 1);
            tracing::warn!(transform = %t.name, module = %module, error = %error, "transform failed; its features are TRANSFORM_ERROR");
        }
    }
    Ok(())
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

fn render(plan: &ServicePlan, output: &ServiceOutput, rows: usize) -> ApiResult<Vec<u8>> {
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
        // Plan outputs are of the features' canonical types (the engine checks transform
        // outputs); anything else is a bug, reported, never served as nulls.
        let column = &output.columns[i];
        let reader = ValueReader::new(column, f.dtype).ok_or_else(|| {
            ApiError::internal(format!(
                "{} produced {} for {} `{}`",
                plan.name,
                column.data_type(),
                f.dtype,
                f.qualified
            ))
        })?;
        out.extend_from_slice(b"{\"values\":[");
        for row in 0..rows {
            if row > 0 {
                out.push(b',');
            }
            json::write_value(&mut out, reader.value(row));
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
    Ok(out)
}
