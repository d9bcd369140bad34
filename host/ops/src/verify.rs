//! Verification: rows a service served, recomputed through the offline path at the same
//! time, compared value by value, bit for bit.
//!
//! Both `POST /v1/verify` and `skewless verify` use this module: they get the served
//! answer for some rows at a time `at` (the server from the online half of the one path
//! itself, [`online`]; the command over HTTP, [`ServedColumns::from_response`]), backfill
//! the same rows with `event_timestamp = at` ([`offline`]), and [`compare`] the two.
//! Values are compared as typed values ([`same_bits`]): floats by their bit patterns, never
//! by their rendered text, which hides a NaN's payload.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{Field, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use skewless_core::assemble::{Status, Value, ValueReader};
use skewless_core::{DType, Project};
use skewless_online::{OnlineRows, OnlineStore};
use skewless_plan::{ServiceOutput, ServicePlan};

use crate::sample::ServedRow;
use crate::{Error, json};

/// The rows to verify: per join key and per request field of the plan, one value per row.
#[derive(Debug, Clone)]
pub struct Rows {
    /// Per join key of the plan, in its order.
    pub entities: Vec<Vec<Json>>,
    /// Per request field of the plan, in its order.
    pub request: Vec<Vec<Json>>,
    /// The number of rows.
    pub len: usize,
}

impl Rows {
    /// Rows from a served sample (laid out in the same plan's order).
    pub fn from_sample(plan: &ServicePlan, sample: &[ServedRow]) -> Self {
        let entities = (0..plan.join_keys.len())
            .map(|i| sample.iter().map(|r| r.entities[i].clone()).collect())
            .collect();
        let request = (0..plan.request_fields.len())
            .map(|i| sample.iter().map(|r| r.request[i].clone()).collect())
            .collect();
        Self {
            entities,
            request,
            len: sample.len(),
        }
    }

    /// Rows from columnar JSON (`{"user_id": [..]}`), as `POST /v1/features` takes them;
    /// every join key and request field of the plan must be there, all of one length.
    pub fn from_columns(
        plan: &ServicePlan,
        entities: &Map<String, Json>,
        request_data: &Map<String, Json>,
    ) -> Result<Self, Error> {
        let mut len = None;
        let mut pick = |section: &str, map: &Map<String, Json>, name: &str| {
            let values = map
                .get(name)
                .and_then(Json::as_array)
                .ok_or_else(|| format!("{section}.{name} is missing (needed by {})", plan.name))?;
            match len {
                Some(n) if n != values.len() => Err(format!(
                    "{section}.{name} has {} values, but other columns have {n}",
                    values.len()
                )),
                _ => {
                    len = Some(values.len());
                    Ok(values.clone())
                }
            }
        };
        let entities = plan
            .join_keys
            .iter()
            .map(|k| pick("entities", entities, &k.name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Invalid)?;
        let request = plan
            .request_fields
            .iter()
            .map(|f| pick("request_data", request_data, &f.name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Invalid)?;
        Ok(Self {
            entities,
            request,
            // A plan with no join key and no request field serves no rows.
            len: len.unwrap_or(0),
        })
    }

    /// The body of `POST /v1/features` that serves these rows of `plan`'s service at `at`,
    /// kept out of the service's served sample.
    pub fn features_request(&self, plan: &ServicePlan, at: i64) -> Json {
        json!({
            "feature_service": plan.name,
            "entities": self.columns(plan.join_keys.iter().map(|k| &k.name), &self.entities),
            "request_data": self.columns(plan.request_fields.iter().map(|f| &f.name), &self.request),
            "request_time": json::format_timestamp(at),
            "sample": false,
        })
    }

    fn columns<'a>(
        &self,
        names: impl Iterator<Item = &'a String>,
        values: &[Vec<Json>],
    ) -> Map<String, Json> {
        names
            .zip(values)
            .map(|(name, v)| (name.clone(), Json::Array(v.clone())))
            .collect()
    }

    /// Row `row`'s entity, for a report: `{"user_id": 7}`.
    fn entity(&self, plan: &ServicePlan, row: usize) -> Map<String, Json> {
        plan.join_keys
            .iter()
            .zip(&self.entities)
            .map(|(k, v)| (k.name.clone(), v[row].clone()))
            .collect()
    }

    /// These rows as the one path takes them (converted once, for both halves).
    pub fn arrays(&self, plan: &ServicePlan) -> Result<RowArrays, Error> {
        let entities: Vec<&Vec<Json>> = self.entities.iter().collect();
        let request: Vec<&Vec<Json>> = self.request.iter().collect();
        let (entities, request) =
            json::plan_rows(plan, &entities, &request).map_err(Error::Invalid)?;
        Ok(RowArrays {
            entities,
            request,
            len: self.len,
        })
    }
}

/// Rows to verify as Arrow: one array per join key (no nulls) and per request field of
/// the plan, of their canonical types.
#[derive(Debug, Clone)]
pub struct RowArrays {
    /// Per join key of the plan, in its order.
    pub entities: Vec<ArrayRef>,
    /// Per request field of the plan, in its order.
    pub request: Vec<ArrayRef>,
    /// The number of rows.
    pub len: usize,
}

impl RowArrays {
    /// The entity frame of these rows at `at`: the join keys, the request fields, and
    /// `event_timestamp`.
    pub fn entity_frame(&self, plan: &ServicePlan, at: i64) -> Result<RecordBatch, Error> {
        let mut arrays: Vec<ArrayRef> =
            self.entities.iter().chain(&self.request).cloned().collect();
        let mut fields: Vec<Field> = plan
            .join_keys
            .iter()
            .map(|k| Field::new(&k.name, k.dtype.dtype().arrow_type(), true))
            .chain(
                plan.request_fields
                    .iter()
                    .map(|f| Field::new(&f.name, f.dtype.arrow_type(), true)),
            )
            .collect();
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(vec![at; self.len]).with_timezone("UTC"),
        ));
        fields.push(Field::new(
            skewless_offline::EVENT_TIMESTAMP,
            DType::Timestamp.arrow_type(),
            false,
        ));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| Error::Internal(format!("the entity frame to verify: {e}")))
    }
}

/// What was served for the verified rows: one array per feature of the plan (canonical
/// types) and each value's status.
#[derive(Debug, Clone)]
pub struct ServedColumns {
    /// One array per planned feature, in the plan's order.
    pub columns: Vec<ArrayRef>,
    /// Per planned feature, one status per row.
    pub statuses: Vec<Vec<Status>>,
}

impl ServedColumns {
    /// The output of the online half of the one path, as served.
    pub fn from_output(plan: &ServicePlan, output: &ServiceOutput, rows: usize) -> Self {
        let statuses = (0..plan.features.len())
            .map(|i| (0..rows).map(|row| output.status(plan, i, row)).collect())
            .collect();
        Self {
            columns: output.columns.clone(),
            statuses,
        }
    }

    /// A `POST /v1/features` response body for `rows` rows of `plan`, read back into
    /// typed columns; its feature names must be the plan's, in order.
    pub fn from_response(plan: &ServicePlan, served: &Json, rows: usize) -> Result<Self, Error> {
        Self::read_response(plan, served, rows).map_err(Error::Invalid)
    }

    fn read_response(plan: &ServicePlan, served: &Json, rows: usize) -> Result<Self, String> {
        let names: Vec<&str> = served["metadata"]["feature_names"]
            .as_array()
            .ok_or("the served answer has no metadata.feature_names")?
            .iter()
            .map(|n| n.as_str().unwrap_or(""))
            .collect();
        let planned: Vec<&str> = plan.features.iter().map(|f| f.qualified.as_str()).collect();
        if names != planned {
            return Err(format!(
                "the server serves {} as {names:?}, but the definitions plan {planned:?}: are they the same definitions?",
                plan.name
            ));
        }
        let results = served["results"]
            .as_array()
            .ok_or("the served answer has no results")?;
        let mut columns = Vec::with_capacity(plan.features.len());
        let mut statuses = Vec::with_capacity(plan.features.len());
        for (i, feature) in plan.features.iter().enumerate() {
            let result = results.get(i);
            let values = result
                .and_then(|r| r["values"].as_array())
                .filter(|v| v.len() == rows)
                .ok_or_else(|| format!("served {}: not {rows} values", feature.qualified))?;
            columns.push(
                json::column(values, feature.dtype)
                    .map_err(|e| format!("served {}{e}", feature.qualified))?,
            );
            let named = result
                .and_then(|r| r["statuses"].as_array())
                .filter(|v| v.len() == rows)
                .ok_or_else(|| format!("served {}: not {rows} statuses", feature.qualified))?;
            statuses.push(
                named
                    .iter()
                    .map(|s| {
                        s.as_str().and_then(Status::from_name).ok_or_else(|| {
                            format!("served {}: unknown status {s}", feature.qualified)
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(Self { columns, statuses })
    }
}

/// Serves `rows` of `plan` at `at` through the online half of the one path
/// ([`skewless_online::serve`]), as `POST /v1/features` does, without a round trip
/// through JSON text (and without entering the served sample).
pub fn online(
    store: &dyn OnlineStore,
    fingerprints: &std::collections::HashMap<String, u64>,
    plan: &ServicePlan,
    rows: &RowArrays,
    at: i64,
) -> Result<ServedColumns, Error> {
    let output = skewless_online::serve(
        store,
        plan,
        fingerprints,
        OnlineRows {
            at,
            entities: &rows.entities,
            request: &rows.request,
        },
    )?;
    Ok(ServedColumns::from_output(plan, &output, rows.len))
}

/// Backfills `rows` of `plan` at `at` through the offline path (sources under `base`) in
/// a temporary directory, and returns the training rows.
pub fn offline(
    project: &Project,
    base: &Path,
    plan: &ServicePlan,
    rows: &RowArrays,
    at: i64,
    threads: usize,
) -> Result<RecordBatch, Error> {
    let frame = rows.entity_frame(plan, at)?;
    let dir = tempfile::Builder::new()
        .prefix(".skewless-verify-")
        .tempdir()
        .map_err(|e| Error::Internal(format!("making a temporary directory: {e}")))?;
    let entities = dir.path().join("entities.parquet");
    let out = dir.path().join("offline.parquet");
    skewless_offline::write_parquet_atomic(&entities, frame.schema(), &[frame])
        .map_err(Error::offline("writing the entity frame to verify"))?;
    let options = skewless_offline::BackfillOptions {
        threads,
        ..Default::default()
    };
    skewless_offline::backfill(
        project,
        base,
        plan,
        &entities,
        &out,
        &options,
        &skewless_offline::NoProgress,
    )
    .map_err(Error::offline("offline path"))?;
    let table = skewless_offline::read_table(&out, None, "verify output", None)
        .map_err(Error::offline("reading the offline path's rows"))?;
    Ok(table.batch)
}

/// One value that differs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mismatch {
    /// The row of the verified rows.
    pub row: usize,
    /// Its entity keys.
    pub entity: Map<String, Json>,
    /// The qualified feature.
    pub feature: String,
    /// What the server answered.
    pub served: Json,
    /// The status the server gave.
    pub served_status: String,
    /// What the offline path computed.
    pub offline: Json,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The service.
    pub service: String,
    /// The time both paths computed as of.
    pub at: String,
    /// Rows checked.
    pub rows: usize,
    /// Features per row.
    pub features: usize,
    /// Values compared: rows times features.
    pub values_checked: usize,
    /// Values that differ.
    pub mismatches: usize,
    /// Mismatches per feature (only features with any).
    pub mismatches_by_feature: BTreeMap<String, usize>,
    /// The first mismatches, in row order.
    pub examples: Vec<Mismatch>,
    /// Why mismatches may be expected at this time, if they may (see [`notes`]).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Report {
    /// A terminal report: the counts, then the first mismatches side by side.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "verified {} at {}: {} rows x {} features = {} values, {} mismatches\n",
            self.service, self.at, self.rows, self.features, self.values_checked, self.mismatches
        );
        for (feature, n) in &self.mismatches_by_feature {
            let _ = writeln!(out, "  {feature}: {n} mismatches");
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        if !self.examples.is_empty() {
            let _ = writeln!(out, "first mismatches (served | offline):");
        }
        for m in &self.examples {
            let _ = writeln!(
                out,
                "  row {} {} {}: {} ({}) | {}",
                m.row,
                Json::Object(m.entity.clone()),
                m.feature,
                m.served,
                m.served_status,
                m.offline
            );
        }
        out
    }
}

/// Compares what was served for `rows` at `at` with the offline path's `training` rows,
/// value by value. Column names or orders that differ are an error: the two paths did
/// not compute the same features.
pub fn compare(
    plan: &ServicePlan,
    rows: &Rows,
    at: i64,
    served: &ServedColumns,
    training: &RecordBatch,
    examples: usize,
) -> Result<Report, Error> {
    let planned: Vec<&str> = plan.features.iter().map(|f| f.qualified.as_str()).collect();
    if served.columns.len() != planned.len() || served.statuses.len() != planned.len() {
        return Err(Error::Internal(format!(
            "{} served columns for the {} features planned",
            served.columns.len(),
            planned.len()
        )));
    }
    // The training set's feature columns follow the entity frame's, in the same order.
    let schema = training.schema();
    let trained: Vec<&str> = schema
        .fields()
        .iter()
        .rev()
        .take(planned.len())
        .rev()
        .map(|f| f.name().as_str())
        .collect();
    if trained != planned {
        return Err(Error::Invalid(format!(
            "the offline path wrote features {trained:?}, the server served {planned:?}"
        )));
    }
    if training.num_rows() != rows.len {
        return Err(Error::Internal(format!(
            "the offline path wrote {} rows for {} requested",
            training.num_rows(),
            rows.len
        )));
    }
    let first_feature = schema.fields().len() - planned.len();
    let mut report = Report {
        service: plan.name.clone(),
        at: json::format_timestamp(at),
        rows: rows.len,
        features: planned.len(),
        values_checked: rows.len * planned.len(),
        mismatches: 0,
        mismatches_by_feature: BTreeMap::new(),
        examples: Vec::new(),
        notes: Vec::new(),
    };
    let mut found = Vec::new();
    for (i, feature) in plan.features.iter().enumerate() {
        let served_array = &served.columns[i];
        if served_array.len() != rows.len || served.statuses[i].len() != rows.len {
            return Err(Error::Internal(format!(
                "served {}: not {} values",
                feature.qualified, rows.len
            )));
        }
        let Some(served_reader) = ValueReader::new(served_array, feature.dtype) else {
            return Err(Error::Internal(format!(
                "served {} as {}, not {}",
                feature.qualified,
                served_array.data_type(),
                feature.dtype
            )));
        };
        let trained_array = training.column(first_feature + i);
        let Some(trained_reader) = ValueReader::new(trained_array, feature.dtype) else {
            return Err(Error::Internal(format!(
                "the offline path wrote {} as {}, not {}",
                feature.qualified,
                trained_array.data_type(),
                feature.dtype
            )));
        };
        for row in 0..rows.len {
            let (s, t) = (served_reader.value(row), trained_reader.value(row));
            if !same_bits(s, t) {
                *report
                    .mismatches_by_feature
                    .entry(feature.qualified.clone())
                    .or_default() += 1;
                found.push((row, i, shown(s, t), shown(t, s)));
            }
        }
    }
    report.mismatches = found.len();
    found.sort_by_key(|&(row, feature, ..)| (row, feature));
    for (row, i, s, t) in found.into_iter().take(examples) {
        report.examples.push(Mismatch {
            row,
            entity: rows.entity(plan, row),
            feature: plan.features[i].qualified.clone(),
            served: parse_text(&s)?,
            served_status: served.statuses[i][row].name().to_owned(),
            offline: parse_text(&t)?,
        });
    }
    Ok(report)
}

/// Whether two values are the same bits: floats by their bit patterns (a NaN's payload and
/// sign, -0.0 against 0.0), lists element by element the same way, timestamps as integers,
/// strings as bytes, nulls only with nulls.
pub fn same_bits(a: Value<'_>, b: Value<'_>) -> bool {
    match (a, b) {
        (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
        (Value::Float32Slice(x), Value::Float32Slice(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (Value::Float32List(x), Value::Float32List(y)) => x == y,
        (Value::Float32Slice(x), Value::Float32List(y))
        | (Value::Float32List(y), Value::Float32Slice(x)) => {
            x.len() * 4 == y.len()
                && x.iter()
                    .zip(y.chunks_exact(4))
                    .all(|(p, q)| p.to_le_bytes() == q)
        }
        (a, b) => a == b,
    }
}

/// `value` as a report shows it: its JSON text, and for a float whose text is the same as
/// the one it differs from (NaNs of two payloads), its bits too.
fn shown(value: Value<'_>, other: Value<'_>) -> Vec<u8> {
    let rendered = text(value);
    match value {
        Value::Float64(v) if rendered == text(other) => {
            let mut out = Vec::new();
            json::write_str(&mut out, &format!("{} (bits {:#018x})", v, v.to_bits()));
            out
        }
        _ => rendered,
    }
}

/// A rendered value read back as JSON: rendering writes JSON, so this cannot fail but
/// for a bug, which is reported, never shown as null.
fn parse_text(text: &[u8]) -> Result<Json, Error> {
    serde_json::from_slice(text).map_err(|e| {
        Error::Internal(format!(
            "a rendered value is not JSON ({e}): {}",
            String::from_utf8_lossy(text)
        ))
    })
}

/// A value as the serving endpoint writes it, for reports (comparisons use
/// [`same_bits`]).
fn text(value: Value<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    json::write_value(&mut out, value);
    out
}

/// The time to verify at when none is given: the earliest point every view of `plan` is
/// materialized to (`materialized_until` of a view), where the online store should hold
/// exactly what the sources hold; now if a view was never materialized, or is aggregated
/// (its tiles answer from the current hop on).
pub fn default_at(
    plan: &ServicePlan,
    materialized_until: impl Fn(&str) -> Option<i64>,
    now: i64,
) -> i64 {
    plan.views
        .iter()
        .map(|v| materialized_until(&v.name))
        .try_fold(i64::MAX, |earliest, end| end.map(|e| earliest.min(e)))
        .filter(|&t| t != i64::MAX)
        .unwrap_or(now)
}

/// What makes serving and the offline path legitimately differ at `at`: a view
/// materialized past `at` (the online store keeps only each entity's latest row, so an
/// entity updated after `at` reads as missing online while the offline path finds its
/// older row), or one never materialized (the store holds only pushed rows).
pub fn notes(
    plan: &ServicePlan,
    materialized_until: impl Fn(&str) -> Option<i64>,
    at: i64,
) -> Vec<String> {
    // Aggregates are computed at every time asked: nothing to materialize.
    plan.views
        .iter()
        .filter(|v| !v.aggregated)
        .filter_map(|v| match materialized_until(&v.name) {
            Some(until) if until > at => {
                let until = json::format_timestamp(until);
                Some(format!(
                    "view `{}` is materialized to {until}, after {}: the online store keeps only each entity's latest row, so an entity updated since reads as NOT_FOUND online; verify at {until} or later",
                    v.name,
                    json::format_timestamp(at)
                ))
            }
            Some(_) => None,
            None => Some(format!(
                "view `{}` was never materialized: the online store holds only pushed rows, which the offline path sees only if they are in its source too",
                v.name
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests;
