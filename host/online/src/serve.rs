//! The online half of the one path: a request's rows, as Arrow, through the online store
//! and [`ServicePlan::run`], to the service's output. Its twin is the offline half,
//! `skewless_offline::backfill`: the same plan, the same `ViewColumnsBuilder` (TTL rule,
//! statuses), the same `run`, with the point-in-time join where this reads the store.
//!
//! JSON, HTTP, metrics and sampling stay with the callers (the server's features route,
//! verify); this takes and returns Arrow only.

use std::collections::HashMap;

use arrow_array::ArrayRef;
use skewless_core::assemble::ViewColumnsBuilder;
use skewless_core::key::KeyColumn;
use skewless_plan::{ServiceOutput, ServicePlan};

use crate::{Error, OnlineStore, Result, ViewSchema};

/// The rows of one online request, as the plan lays them out.
#[derive(Debug, Clone, Copy)]
pub struct OnlineRows<'a> {
    /// The time every row is served as of, microseconds since the epoch.
    pub at: i64,
    /// One array per join key of the plan ([`ServicePlan::join_keys`]), of the key's
    /// canonical type (int64 or utf8), no nulls.
    pub entities: &'a [ArrayRef],
    /// One array per request field of the plan ([`ServicePlan::request_fields`]), of the
    /// field's canonical type.
    pub request: &'a [ArrayRef],
}

/// Serves `rows` with `plan`: each view's features read from `store` as of `rows.at`
/// (`fingerprints` holds the online schema the plan was built against, by view), then
/// every transform run once over the whole batch. A transform's failure is in the
/// output ([`ServiceOutput::calls`], statuses `TRANSFORM_ERROR`), as offline; a row the
/// store cannot serve, or inputs not laid out as the plan says, is an error.
pub fn serve(
    store: &dyn OnlineStore,
    plan: &ServicePlan,
    fingerprints: &HashMap<String, u64>,
    rows: OnlineRows<'_>,
) -> Result<ServiceOutput> {
    let invalid = |reason: String| Error::InvalidRequest {
        plan: plan.name.clone(),
        reason,
    };
    if rows.entities.len() != plan.join_keys.len()
        || rows.request.len() != plan.request_fields.len()
    {
        return Err(invalid(format!(
            "{} entity and {} request columns given; the plan needs {} and {}",
            rows.entities.len(),
            rows.request.len(),
            plan.join_keys.len(),
            plan.request_fields.len()
        )));
    }
    let len = rows
        .entities
        .first()
        .or(rows.request.first())
        .map_or(0, |a| a.len());
    for (column, name) in rows
        .entities
        .iter()
        .zip(plan.join_keys.iter().map(|k| &k.name))
        .chain(
            rows.request
                .iter()
                .zip(plan.request_fields.iter().map(|f| &f.name)),
        )
    {
        if column.len() != len {
            return Err(invalid(format!(
                "`{name}` has {} values, other columns {len}",
                column.len()
            )));
        }
    }
    for (column, key) in rows.entities.iter().zip(&plan.join_keys) {
        if *column.data_type() != key.dtype.dtype().arrow_type() {
            return Err(invalid(format!(
                "join key `{}` is {}, not {}",
                key.name,
                column.data_type(),
                key.dtype.name()
            )));
        }
        if column.null_count() > 0 {
            return Err(invalid(format!("join key `{}` has a null", key.name)));
        }
    }
    let mut views = Vec::with_capacity(plan.views.len());
    for view in &plan.views {
        if !view.online {
            return Err(Error::OfflineView(view.name.clone()));
        }
        let fingerprint = *fingerprints.get(&view.name).ok_or_else(|| {
            Error::Internal(format!(
                "view `{}` of plan {} has no online schema",
                view.name, plan.name
            ))
        })?;
        let key_columns: Vec<_> = view
            .key_columns
            .iter()
            .map(|&k| (rows.entities[k].clone(), plan.join_keys[k].dtype))
            .collect();
        let encoded = KeyColumn::encode(&key_columns, len);
        let keys: Vec<&[u8]> = (0..len)
            .map(|row| encoded.get(row).expect("join keys were checked for nulls"))
            .collect();
        let mut builder =
            ViewColumnsBuilder::new(view.features.iter().map(|f| f.dtype), view.ttl, len);
        store.read(&view.name, fingerprint, &keys, rows.at, &mut builder)?;
        views.push(builder.finish());
    }
    let times = vec![rows.at; len];
    Ok(plan.run(len, &times, views, rows.request))
}

/// The online schemas of a project's online views of stored rows (aggregated views are
/// [`crate::event_schemas`]), in the definitions' order.
pub fn view_schemas(project: &skewless_core::Project) -> Vec<ViewSchema> {
    project
        .definitions()
        .feature_views
        .iter()
        .filter(|v| v.online && !v.is_aggregated())
        .map(|v| ViewSchema {
            name: v.name.clone(),
            features: v
                .features
                .iter()
                .map(|f| (f.name.clone(), f.dtype))
                .collect(),
        })
        .collect()
}

/// Each online view's schema fingerprint, by view: what [`serve`] checks reads against.
/// An aggregated view whose definitions do not compile (a broken invariant) has none, and
/// a read of it is an internal error.
pub fn fingerprints(project: &skewless_core::Project) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = view_schemas(project)
        .into_iter()
        .map(|s| (s.name.clone(), s.fingerprint()))
        .collect();
    match crate::event_schemas(project, std::path::Path::new("")) {
        Ok(schemas) => {
            for view in schemas.iter().flat_map(|s| &s.views) {
                out.insert(view.name().to_owned(), view.fingerprint());
            }
        }
        Err(e) => tracing::error!(error = %e, "aggregated views without an online schema"),
    }
    out
}
