//! The one path. A [`ServicePlan`] says, for a feature service (or an ad-hoc feature
//! list), which views to read, which transforms to run in which order, and where each
//! transform input and each output feature comes from. [`ServicePlan::run`] then takes
//! the views' columns as of each row's time (from the online store when serving, from the
//! point-in-time join when training) and the request fields, runs the transforms as one
//! batch each, and shapes the output. Serving and training call this same function.
//!
//! This crate does not read stores or Parquet and does not speak HTTP; it reaches guests
//! only through [`skewless_engine::Transform`].

#![deny(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, new_null_array};
use arrow_schema::{Field, Schema, SchemaRef};
use skewless_core::Project;
use skewless_core::assemble::{Status, ViewColumns};
use skewless_core::definitions::{
    Feature, JoinKey, ModuleRef, Owner, ResolvedInput, ServedFeature, TransformId, ViewId,
    expand_reference,
};
use skewless_core::{DType, Fault, Ttl};
/// The error a transform call fails with (the engine's), as plan outputs carry it.
pub use skewless_engine::Error as TransformError;
use skewless_engine::Transform;

/// A planning error: the caller asked for something the project does not have, or a
/// module the project names is not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such feature service.
    #[error(
        "unknown feature service `{0}`: no feature service `{0}` in the applied definitions (GET /v1/feature-services lists them)"
    )]
    UnknownService(String),
    /// A feature reference that does not resolve.
    #[error("{0}")]
    UnknownFeature(String),
    /// An empty feature list.
    #[error("no features requested: give a `feature_service` or a non-empty `features` list")]
    NoFeatures,
    /// A module the definitions pin is not loaded (a registry inconsistency: our fault).
    #[error("module {0} is not loaded")]
    ModuleNotLoaded(ModuleRef),
    /// A validated project that does not hold what validation promised (a bug).
    #[error("internal planning error: {0}")]
    Internal(String),
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::UnknownService(_) | Error::UnknownFeature(_) | Error::NoFeatures => {
                Fault::Caller
            }
            Error::ModuleNotLoaded(_) | Error::Internal(_) => Fault::Internal,
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where an output feature comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSource {
    /// Feature `feature` of `plan.views[view]`.
    View {
        /// Index into [`ServicePlan::views`].
        view: usize,
        /// Index into the view's features.
        feature: usize,
    },
    /// Output `output` of `plan.transforms[transform]`.
    Transform {
        /// Index into [`ServicePlan::transforms`].
        transform: usize,
        /// Index into the transform's outputs.
        output: usize,
    },
}

/// Where a transform input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource {
    /// A view feature, as [`FeatureSource::View`].
    View {
        /// Index into [`ServicePlan::views`].
        view: usize,
        /// Index into the view's features.
        feature: usize,
    },
    /// `plan.request_fields[i]`.
    Request(usize),
    /// The time the row's features are assembled as of (`request:request_time`).
    RequestTime,
    /// An earlier transform's output.
    Transform {
        /// Index into [`ServicePlan::transforms`] (always an earlier one).
        transform: usize,
        /// Index into that transform's outputs.
        output: usize,
    },
}

/// One output feature.
#[derive(Debug, Clone)]
pub struct PlannedFeature {
    /// `owner:name`, the name in responses.
    pub qualified: String,
    /// The feature name alone.
    pub name: String,
    /// Its dtype.
    pub dtype: DType,
    /// Where it comes from.
    pub source: FeatureSource,
}

/// A view the plan reads: all of its features, keyed by some of the plan's join keys.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    /// The view name.
    pub name: String,
    /// Its index in the project's `feature_views`.
    pub index: usize,
    /// Its source name.
    pub source: String,
    /// Its TTL.
    pub ttl: Ttl,
    /// Whether it is kept online.
    pub online: bool,
    /// Whether its features are window aggregates of an event source (computed at each
    /// time asked, never materialized).
    pub aggregated: bool,
    /// All of its features, in the view's order.
    pub features: Vec<Feature>,
    /// Its join keys, in key order, as indices into [`ServicePlan::join_keys`].
    pub key_columns: Vec<usize>,
}

/// A transform the plan runs.
#[derive(Debug, Clone)]
pub struct TransformPlan {
    /// The transform's name in the definitions.
    pub name: String,
    /// The module version it runs.
    pub module: ModuleRef,
    /// The loaded transform.
    pub transform: Transform,
    /// One source per declared input, in the signature's order.
    pub inputs: Vec<InputSource>,
    input_schema: SchemaRef,
}

/// How one transform call went, for metrics and logs.
#[derive(Debug)]
pub struct CallRecord {
    /// Index into [`ServicePlan::transforms`].
    pub transform: usize,
    /// Wall time of the call.
    pub elapsed: Duration,
    /// The error, when it failed (or was skipped because an input transform failed).
    pub error: Option<Arc<skewless_engine::Error>>,
}

/// A feature service's plan, built once when definitions are applied.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// The service name, or `features` for an ad-hoc list.
    pub name: String,
    /// The output features, in output order.
    pub features: Vec<PlannedFeature>,
    /// The views read (served or feeding a transform).
    pub views: Vec<ViewPlan>,
    /// The transforms run, in dependency order.
    pub transforms: Vec<TransformPlan>,
    /// The join keys a request or entity frame must give, in first-use order.
    pub join_keys: Vec<JoinKey>,
    /// The request fields the transforms need, in first-use order.
    pub request_fields: Vec<Feature>,
}

/// The output of [`ServicePlan::run`] for a batch of rows.
#[derive(Debug)]
pub struct ServiceOutput {
    /// One array per planned feature, in output order, of the canonical Arrow type.
    pub columns: Vec<ArrayRef>,
    /// The views' row statuses and event times, as given.
    pub views: Vec<ViewColumns>,
    /// Per transform: whether it produced output.
    pub transform_ok: Vec<bool>,
    /// One record per transform.
    pub calls: Vec<CallRecord>,
}

impl ServiceOutput {
    /// The status of feature `feature` (an index into the plan's features) at `row`.
    pub fn status(&self, plan: &ServicePlan, feature: usize, row: usize) -> Status {
        let value_status = || {
            if self.columns[feature].is_null(row) {
                Status::NullValue
            } else {
                Status::Present
            }
        };
        match plan.features[feature].source {
            FeatureSource::View { view, .. } => match self.views[view].status[row] {
                Status::Present => value_status(),
                other => other,
            },
            FeatureSource::Transform { transform, .. } => {
                if self.transform_ok[transform] {
                    value_status()
                } else {
                    Status::TransformError
                }
            }
        }
    }

    /// The event time behind feature `feature` at `row`: the stored row's for a view
    /// feature, none for a computed one.
    pub fn event_ts(&self, plan: &ServicePlan, feature: usize, row: usize) -> Option<i64> {
        match plan.features[feature].source {
            FeatureSource::View { view, .. } => self.views[view].event_ts[row],
            FeatureSource::Transform { .. } => None,
        }
    }
}

/// The plan slot of project transform `t`, which dependency order planned before every
/// reader of it.
fn slot(
    slots: &[Option<usize>],
    t: TransformId,
    defs: &skewless_core::Definitions,
) -> Result<usize> {
    slots[t.index()].ok_or_else(|| {
        Error::Internal(format!(
            "transform `{}` is read before it is planned (dependency order broken)",
            defs.transforms[t.index()].name
        ))
    })
}

impl ServicePlan {
    /// Plans feature service `name` of `project`; `modules` hands out loaded transforms.
    pub fn for_service(
        project: &Project,
        name: &str,
        modules: &dyn Fn(&ModuleRef) -> Option<Transform>,
    ) -> Result<Self> {
        let served = project
            .services()
            .get(name)
            .ok_or_else(|| Error::UnknownService(name.to_owned()))?;
        Self::build(project, name, served, modules)
    }

    /// Plans an ad-hoc list of feature references (`view:feature`, `view:*`, ...).
    pub fn for_features(
        project: &Project,
        references: &[String],
        modules: &dyn Fn(&ModuleRef) -> Option<Transform>,
    ) -> Result<Self> {
        if references.is_empty() {
            return Err(Error::NoFeatures);
        }
        let mut served = Vec::new();
        for reference in references {
            served.extend(expand_reference(project, reference).map_err(Error::UnknownFeature)?);
        }
        let mut seen = std::collections::HashSet::new();
        for f in &served {
            if !seen.insert(f.qualified()) {
                return Err(Error::UnknownFeature(format!(
                    "feature `{}` is requested twice",
                    f.qualified()
                )));
            }
        }
        Self::build(project, "features", &served, modules)
    }

    fn build(
        project: &Project,
        name: &str,
        served: &[ServedFeature],
        modules: &dyn Fn(&ModuleRef) -> Option<Transform>,
    ) -> Result<Self> {
        let defs = project.definitions();
        // Which transforms are needed: those served, and everything they read.
        let mut needed = vec![false; defs.transforms.len()];
        let mut stack: Vec<TransformId> = served
            .iter()
            .filter_map(|f| match f.owner {
                Owner::Transform(t) => Some(t),
                Owner::View(_) => None,
            })
            .collect();
        while let Some(t) = stack.pop() {
            if std::mem::replace(&mut needed[t.index()], true) {
                continue;
            }
            stack.extend(project.inputs(t).iter().filter_map(|input| match input {
                ResolvedInput::Transform { transform, .. } => Some(*transform),
                _ => None,
            }));
        }
        let mut plan = ServicePlan {
            name: name.to_owned(),
            features: Vec::new(),
            views: Vec::new(),
            transforms: Vec::new(),
            join_keys: Vec::new(),
            request_fields: Vec::new(),
        };
        // The plan's slot of each project transform planned so far.
        let mut slots: Vec<Option<usize>> = vec![None; defs.transforms.len()];
        for &t in project
            .transform_order()
            .iter()
            .filter(|t| needed[t.index()])
        {
            let def = &defs.transforms[t.index()];
            let transform =
                modules(&def.module).ok_or_else(|| Error::ModuleNotLoaded(def.module.clone()))?;
            // Inputs and outputs were resolved against the signature validation saw; a
            // module with another one (a loader handing out the wrong version) is refused
            // here, once, rather than read by position.
            if transform.signature() != &project.signatures()[t.index()] {
                return Err(Error::Internal(format!(
                    "the loaded module {} of transform `{}` declares another signature than the one the definitions were validated against",
                    def.module, def.name
                )));
            }
            let mut inputs = Vec::with_capacity(project.inputs(t).len());
            for input in project.inputs(t) {
                inputs.push(match input {
                    ResolvedInput::RequestTime => InputSource::RequestTime,
                    ResolvedInput::Request(field) => {
                        InputSource::Request(plan.request_field(field.clone()))
                    }
                    &ResolvedInput::View { view, feature } => InputSource::View {
                        view: plan.view(project, view),
                        feature,
                    },
                    &ResolvedInput::Transform { transform, output } => InputSource::Transform {
                        transform: slot(&slots, transform, defs)?,
                        output,
                    },
                });
            }
            slots[t.index()] = Some(plan.transforms.len());
            plan.transforms.push(TransformPlan {
                name: def.name.clone(),
                module: def.module.clone(),
                input_schema: Arc::new(transform.signature().input_schema()),
                transform,
                inputs,
            });
        }
        for f in served {
            let source = match f.owner {
                Owner::View(v) => FeatureSource::View {
                    view: plan.view(project, v),
                    feature: f.column,
                },
                Owner::Transform(t) => FeatureSource::Transform {
                    transform: slot(&slots, t, defs)?,
                    output: f.column,
                },
            };
            plan.features.push(PlannedFeature {
                qualified: f.qualified(),
                name: f.name.clone(),
                dtype: f.dtype,
                source,
            });
        }
        Ok(plan)
    }

    fn request_field(&mut self, field: Feature) -> usize {
        match self
            .request_fields
            .iter()
            .position(|f| f.name == field.name)
        {
            Some(i) => i,
            None => {
                self.request_fields.push(field);
                self.request_fields.len() - 1
            }
        }
    }

    fn view(&mut self, project: &Project, id: ViewId) -> usize {
        let index = id.index();
        if let Some(i) = self.views.iter().position(|v| v.index == index) {
            return i;
        }
        let defs = project.definitions();
        let view = &defs.feature_views[index];
        let key_columns = defs
            .view_join_keys(view)
            .into_iter()
            .map(
                |key| match self.join_keys.iter().position(|k| k.name == key.name) {
                    Some(i) => i,
                    None => {
                        self.join_keys.push(key);
                        self.join_keys.len() - 1
                    }
                },
            )
            .collect();
        self.views.push(ViewPlan {
            name: view.name.clone(),
            index,
            source: view.source.clone(),
            ttl: view.ttl,
            online: view.online,
            aggregated: view.is_aggregated(),
            features: view.feature_list().to_vec(),
            key_columns,
        });
        self.views.len() - 1
    }

    /// The Arrow schema of the output columns, named `owner:feature`.
    pub fn output_schema(&self) -> Schema {
        Schema::new(
            self.features
                .iter()
                .map(|f| Field::new(&f.qualified, f.dtype.arrow_type(), true))
                .collect::<Vec<_>>(),
        )
    }

    /// Runs the plan over `rows` rows: `at` holds each row's time (microseconds since the
    /// epoch; the request time online, the row's event time offline), `views` each planned
    /// view's columns as of that time (aligned with [`ServicePlan::views`]), `request`
    /// each request field's array (aligned with [`ServicePlan::request_fields`], of the
    /// field's canonical type). Each transform runs once over the whole batch; a transform that
    /// fails, and every transform that reads it, yields nulls with
    /// [`Status::TransformError`] while the rest of the output stands.
    pub fn run(
        &self,
        rows: usize,
        at: &[i64],
        views: Vec<ViewColumns>,
        request: &[ArrayRef],
    ) -> ServiceOutput {
        let mut request_time: Option<ArrayRef> = None;
        let mut outputs: Vec<Option<RecordBatch>> = Vec::with_capacity(self.transforms.len());
        let mut calls = Vec::with_capacity(self.transforms.len());
        for (t, plan) in self.transforms.iter().enumerate() {
            let started = Instant::now();
            // `None` when an input transform failed: this one is then skipped, and its
            // features are TRANSFORM_ERROR too.
            let columns: Option<Vec<ArrayRef>> = plan
                .inputs
                .iter()
                .map(|source| match *source {
                    InputSource::View { view, feature } => {
                        Some(views[view].columns[feature].clone())
                    }
                    InputSource::Request(i) => Some(request[i].clone()),
                    InputSource::RequestTime => Some(
                        request_time
                            .get_or_insert_with(|| {
                                Arc::new(
                                    TimestampMicrosecondArray::from(at.to_vec())
                                        .with_timezone(skewless_core::UTC),
                                )
                            })
                            .clone(),
                    ),
                    InputSource::Transform { transform, output } => outputs[transform]
                        .as_ref()
                        .map(|batch: &RecordBatch| batch.column(output).clone()),
                })
                .collect();
            let Some(columns) = columns else {
                outputs.push(None);
                calls.push(CallRecord {
                    transform: t,
                    elapsed: Duration::ZERO,
                    error: None,
                });
                continue;
            };
            let result = RecordBatch::try_new(plan.input_schema.clone(), columns)
                .map_err(|e| {
                    skewless_engine::Error::Internal(format!(
                        "assembling the input of {}: {e}",
                        plan.module
                    ))
                })
                .and_then(|batch| plan.transform.call(&batch));
            let (output, error) = match result {
                Ok(batch) => (Some(batch), None),
                Err(e) => (None, Some(Arc::new(e))),
            };
            outputs.push(output);
            calls.push(CallRecord {
                transform: t,
                elapsed: started.elapsed(),
                error,
            });
        }
        let columns = self
            .features
            .iter()
            .map(|f| match f.source {
                FeatureSource::View { view, feature } => views[view].columns[feature].clone(),
                FeatureSource::Transform { transform, output } => match &outputs[transform] {
                    Some(batch) => batch.column(output).clone(),
                    None => new_null_array(&f.dtype.arrow_type(), rows),
                },
            })
            .collect();
        ServiceOutput {
            columns,
            views,
            transform_ok: outputs.iter().map(Option::is_some).collect(),
            calls,
        }
    }
}
