//! A bounded, uniform sample of the rows each feature service served: the entity keys,
//! request data and request time a caller sent, and the values it got back.
//!
//! `skewless verify` replays these rows through the offline path, and the drift report
//! compares the served values with a training set. Each service keeps at most `capacity`
//! rows, chosen by reservoir sampling (every served row has the same chance of being
//! kept), so the cost per request is one short lock and, for a kept row, a few clones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::{Map, Value as Json};
use skewless_core::assemble::{Value, ValueReader};
use skewless_plan::{ServiceOutput, ServicePlan};

use crate::json;

/// One served row.
#[derive(Debug, Clone)]
pub struct ServedRow {
    /// The time the features were served as of, microseconds since the Unix epoch.
    pub at: i64,
    /// One value per join key of the plan, in the plan's order.
    pub entities: Vec<Json>,
    /// One value per request field of the plan, in the plan's order.
    pub request: Vec<Json>,
    /// One value per feature of the plan, in the plan's order, as the response wrote it.
    pub values: Vec<Json>,
}

/// The sample of one service.
#[derive(Debug)]
pub struct ServiceSample {
    /// The names the rows are laid out by: join keys, request fields, features. A
    /// service whose plan changes starts a new sample.
    pub layout: Layout,
    /// Rows served since the sample began.
    pub seen: u64,
    /// The kept rows, at most the capacity.
    pub rows: Vec<ServedRow>,
    /// The plan last recorded, to notice a new apply cheaply. Held weakly: the plan is
    /// dropped with its apply, but its address is not reused while this points to it, so
    /// a later plan never passes for it.
    plan: Weak<ServicePlan>,
    rng: u64,
}

/// What a sampled row's positions mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The join keys.
    pub join_keys: Vec<String>,
    /// The request fields.
    pub request_fields: Vec<String>,
    /// The qualified feature names.
    pub features: Vec<String>,
}

impl Layout {
    /// The layout of `plan`'s rows.
    pub fn of(plan: &ServicePlan) -> Self {
        Self {
            join_keys: plan.join_keys.iter().map(|k| k.name.clone()).collect(),
            request_fields: plan.request_fields.iter().map(|f| f.name.clone()).collect(),
            features: plan.features.iter().map(|f| f.qualified.clone()).collect(),
        }
    }
}

/// The samples of every service.
#[derive(Debug)]
pub struct Samples {
    capacity: usize,
    services: Mutex<HashMap<String, ServiceSample>>,
}

/// What a served request gave, borrowed from the serving path.
#[derive(Debug)]
pub struct Served<'a> {
    /// The time served as of.
    pub at: i64,
    /// Per join key, its values (one per row).
    pub entities: &'a [&'a Vec<Json>],
    /// Per request field, its values.
    pub request: &'a [&'a Vec<Json>],
    /// The output.
    pub output: &'a ServiceOutput,
    /// The number of rows.
    pub rows: usize,
}

impl Samples {
    /// Keeps up to `capacity` rows per service; 0 keeps none.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            services: Mutex::new(HashMap::new()),
        }
    }

    /// Offers the rows of one served request of `plan`'s service to its sample.
    pub fn record(&self, plan: &Arc<ServicePlan>, served: &Served<'_>) {
        if self.capacity == 0 || served.rows == 0 {
            return;
        }
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let sample = services
            .entry(plan.name.clone())
            .or_insert_with(|| ServiceSample::new(Layout::of(plan), Arc::downgrade(plan)));
        if sample.plan.as_ptr() != Arc::as_ptr(plan) {
            // A new apply: the same layout keeps its rows, another starts afresh.
            let layout = Layout::of(plan);
            if sample.layout != layout {
                *sample = ServiceSample::new(layout, Arc::downgrade(plan));
            }
            sample.plan = Arc::downgrade(plan);
        }
        let readers: Vec<Option<ValueReader<'_>>> = plan
            .features
            .iter()
            .zip(&served.output.columns)
            .map(|(f, column)| ValueReader::new(column, f.dtype))
            .collect();
        for row in 0..served.rows {
            sample.seen += 1;
            let slot = if sample.rows.len() < self.capacity {
                None
            } else {
                let j = sample.next_random() % sample.seen;
                if j >= self.capacity as u64 {
                    continue;
                }
                Some(j as usize)
            };
            let kept = ServedRow {
                at: served.at,
                entities: served.entities.iter().map(|c| c[row].clone()).collect(),
                request: served.request.iter().map(|c| c[row].clone()).collect(),
                values: readers
                    .iter()
                    .map(|r| to_json(r.as_ref().map_or(Value::Null, |r| r.value(row))))
                    .collect(),
            };
            match slot {
                None => sample.rows.push(kept),
                Some(j) => sample.rows[j] = kept,
            }
        }
    }

    /// A copy of `service`'s sample: its layout, rows seen, and up to `limit` of its
    /// rows (a uniform choice when it holds more).
    pub fn get(&self, service: &str, limit: usize) -> Option<(Layout, u64, Vec<ServedRow>)> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let sample = services.get_mut(service)?;
        let mut rows = sample.rows.clone();
        // A partial Fisher-Yates shuffle picks `limit` rows uniformly; all of them need
        // no shuffle.
        let limit = limit.min(rows.len());
        let shuffled = if limit == rows.len() { 0 } else { limit };
        for i in 0..shuffled {
            let j = i + (sample.next_random() % (rows.len() - i) as u64) as usize;
            rows.swap(i, j);
        }
        rows.truncate(limit);
        Some((sample.layout.clone(), sample.seen, rows))
    }
}

impl ServiceSample {
    fn new(layout: Layout, plan: Weak<ServicePlan>) -> Self {
        Self {
            layout,
            plan,
            seen: 0,
            rows: Vec::new(),
            rng: 0x5eed_cafe_f00d_d00d,
        }
    }

    fn next_random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }
}

/// splitmix64: fast and good enough to choose sample slots; advances `state`.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value as the serving endpoint writes it (non-finite floats as strings).
pub fn to_json(value: Value<'_>) -> Json {
    let mut text = Vec::new();
    json::write_value(&mut text, value);
    serde_json::from_slice(&text).expect("write_value writes JSON")
}

/// Rows as columnar JSON, the shape `POST /v1/features` takes: `{name: [values]}` per
/// name of `names`, picking position `pick(row)` of each row.
pub fn columns<'a>(
    names: &[String],
    rows: &'a [ServedRow],
    pick: impl Fn(&'a ServedRow) -> &'a [Json],
) -> Map<String, Json> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values = rows.iter().map(|r| pick(r)[i].clone()).collect();
            (name.clone(), Json::Array(values))
        })
        .collect()
}
