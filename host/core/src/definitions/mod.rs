//! A project's definitions: entities, sources, feature views, transforms and feature
//! services, as written in one YAML file, and the checks that make them a [`Project`].
//!
//! Parsing rejects unknown keys (a typo is an error, not a silently ignored field).
//! Validation collects *every* problem, each naming where it is (`feature_views[0]
//! "user_stats" .source`), so one `apply` shows the whole list.
//!
//! The model is here; `refs` holds module and input references, `problems` what a
//! refusal reports, `project` what validation makes (a [`Project`] with resolved ids),
//! and `validate` the checks.

mod problems;
mod project;
mod refs;
mod validate;

pub use problems::{DefinitionErrors, ModuleCatalog, Problem};
pub use project::{Owner, Project, ResolvedInput, ServedFeature, TransformId, ViewId};
pub use refs::{InputRef, ModuleRef, check_module_name, check_version};
pub use validate::expand_reference;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use validate::Checker;

use crate::key::KeyType;
use crate::signature::is_identifier;
use crate::{DType, Interval, Ttl};

/// The scope name of request fields in transform inputs (`request:amount`).
pub const REQUEST_SCOPE: &str = "request";

/// The implicit request field every transform may read as `request:request_time`: the
/// time features are assembled as of (the request time online, each row's event time in
/// a backfill), a timestamp. It is never declared in `request_schema`.
pub const REQUEST_TIME: &str = "request_time";

/// The top of a definitions file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definitions {
    /// The project name.
    pub project: String,
    /// What features describe.
    #[serde(default)]
    pub entities: Vec<Entity>,
    /// Where feature rows come from.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Named, typed columns of one source for one set of entities.
    #[serde(default)]
    pub feature_views: Vec<FeatureView>,
    /// On-demand features computed by a WebAssembly component.
    #[serde(default)]
    pub transforms: Vec<TransformDef>,
    /// The feature sets models consume.
    #[serde(default)]
    pub feature_services: Vec<FeatureService>,
}

/// Free-form metadata shared by views, transforms and services, for discovery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Who to ask about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// An entity: what features describe, identified by one or more join keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// The entity name (`user`).
    pub name: String,
    /// The join keys, in key order. Written as a name (`user_id`, int64) or as
    /// `{name: merchant_id, dtype: string}`.
    pub join_keys: Vec<JoinKey>,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One join key of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinKey {
    /// The column name in sources, entity frames and requests.
    pub name: String,
    /// Its dtype; `int64` when only a name is written.
    pub dtype: KeyType,
}

impl<'de> Deserialize<'de> for JoinKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            name: String,
            #[serde(default = "default_key_type")]
            dtype: KeyType,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Full(Full),
        }
        fn default_key_type() -> KeyType {
            KeyType::Int64
        }
        Ok(match Raw::deserialize(deserializer)? {
            Raw::Name(name) => JoinKey {
                name,
                dtype: KeyType::Int64,
            },
            Raw::Full(Full { name, dtype }) => JoinKey { name, dtype },
        })
    }
}

/// Where a feature view's rows come from: a Parquet file or directory (read by backfill
/// and materialize), and always also writable by push over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The source name; also the push endpoint's name (`POST /v1/push/{name}`).
    pub name: String,
    /// A Parquet file or a directory of them; absent for a push-only source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The column holding each row's event time.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// The column that breaks ties between rows with equal event times (larger wins);
    /// for an event source, when each event arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp_field: Option<String>,
    /// Whether `POST /v1/push/{name}` takes rows for it.
    #[serde(default = "default_true")]
    pub push: bool,
    /// For an event source: how long after it happened an event may still arrive
    /// (`1h`); later ones are refused by push and dropped by the backfill alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness: Option<Interval>,
    /// For an event source: the dtypes of the columns its aggregations read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Feature>,
    /// How far back the source's history is kept (`90d`): no window may reach further
    /// (a window of `W` with hop `h` reads up to `W + h` back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Interval>,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_timestamp_field() -> String {
    "event_timestamp".to_owned()
}

fn default_true() -> bool {
    true
}

/// Named, typed columns of one source for one set of entities, with a TTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureView {
    /// The view name.
    pub name: String,
    /// The entities whose join keys identify a row, in key order.
    pub entities: Vec<String>,
    /// The source name.
    pub source: String,
    /// How old a value may be and still count (`7d`); absent or `0` is no limit.
    #[serde(default)]
    pub ttl: Ttl,
    /// Whether the view is kept in the online store and served.
    #[serde(default = "default_true")]
    pub online: bool,
    /// The features, each a column of the source (none in an aggregated view).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<Feature>,
    /// An aggregated view's tile width: every window is a multiple of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<Interval>,
    /// An aggregated view's features: functions over the source's events in windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregations: Vec<AggregationDef>,
    /// Owner, description and tags.
    #[serde(flatten)]
    pub metadata: Metadata,
    /// An aggregated view's features as typed columns (name, result dtype), worked out
    /// by validation from the aggregations and the source's columns.
    #[serde(skip)]
    aggregate_features: Vec<Feature>,
}

impl FeatureView {
    /// The view's features as typed columns, in order: the stored `features`, or one
    /// per aggregation (its result dtype) in an aggregated view. Everything that serves,
    /// joins or resolves a view's features reads them here.
    pub fn feature_list(&self) -> &[Feature] {
        if self.aggregations.is_empty() {
            &self.features
        } else {
            &self.aggregate_features
        }
    }

    /// Whether its features are computed from events (`aggregations`).
    pub fn is_aggregated(&self) -> bool {
        !self.aggregations.is_empty()
    }
}

/// An aggregate feature: a function over a column of the view's event source, in a
/// window before the time it is asked at (docs/aggregations.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationDef {
    /// The feature name.
    pub name: String,
    /// The function (`count`, `sum`, `mean`, ...).
    pub function: String,
    /// The source column it reads; `count` without one counts events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The window length, a multiple of the view's hop.
    pub window: Interval,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A typed feature column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// The column name.
    pub name: String,
    /// Its dtype.
    pub dtype: DType,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An on-demand feature: a module version, where its inputs come from, and the request
/// fields it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformDef {
    /// The transform name; its outputs are addressed as `name:output`.
    pub name: String,
    /// The exact module version it runs (`fraud_risk@1.0.0`).
    pub module: ModuleRef,
    /// Where each input comes from: `view:feature`, `request:field` or
    /// `transform:output`. The part after the colon is the input's name.
    pub inputs: Vec<InputRef>,
    /// The request fields it needs, with their dtypes.
    #[serde(default)]
    pub request_schema: Vec<Feature>,
    /// Owner, description and tags.
    #[serde(flatten)]
    pub metadata: Metadata,
}

/// The features one model consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureService {
    /// The service name.
    pub name: String,
    /// `view:feature`, `view:*`, `transform:output` or `transform:*`, in output order.
    pub features: Vec<String>,
    /// Owner, description and tags.
    #[serde(flatten)]
    pub metadata: Metadata,
}

impl Definitions {
    /// Parses YAML; a syntax error or an unknown key names its line and column.
    pub fn from_yaml(text: &str) -> Result<Definitions, DefinitionErrors> {
        serde_yaml_ng::from_str(text).map_err(|error| {
            let (at, line) = match error.location() {
                Some(at) => (format!("column {}", at.column()), Some(at.line())),
                None => ("definitions".to_owned(), None),
            };
            // serde_yaml_ng repeats the location at the end of its message.
            let message = error.to_string();
            let message = match message.rfind(" at line ") {
                Some(cut) => message[..cut].to_owned(),
                None => message,
            };
            DefinitionErrors {
                problems: vec![Problem { at, line, message }],
            }
        })
    }

    /// The definitions as YAML. Failing means a value the model cannot write (a bug):
    /// callers report it, never an empty document in its place.
    pub fn to_yaml(&self) -> crate::Result<String> {
        serde_yaml_ng::to_string(self).map_err(|e| crate::Error::Serialize(e.to_string()))
    }

    /// The entity called `name`.
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// The source called `name`.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The index of the feature view called `name`.
    pub fn view_index(&self, name: &str) -> Option<usize> {
        self.feature_views.iter().position(|v| v.name == name)
    }

    /// The index of the transform called `name`.
    pub fn transform_index(&self, name: &str) -> Option<usize> {
        self.transforms.iter().position(|t| t.name == name)
    }

    /// The join keys of a view, in key order: its entities' keys, concatenated.
    pub fn view_join_keys(&self, view: &FeatureView) -> Vec<JoinKey> {
        view.entities
            .iter()
            .filter_map(|e| self.entity(e))
            .flat_map(|e| e.join_keys.iter().cloned())
            .collect()
    }

    /// Parses `text` and validates it ([`Definitions::validate`]); each problem names
    /// its line in `text` as well as its path.
    pub fn validate_yaml(
        text: &str,
        modules: &dyn ModuleCatalog,
    ) -> Result<Project, DefinitionErrors> {
        Definitions::from_yaml(text)?
            .validate(modules)
            .map_err(|mut errors| {
                let lines = crate::yaml_lines::Lines::of(text);
                for problem in &mut errors.problems {
                    problem.line = problem.line.or_else(|| lines.line(&problem.yaml_path()));
                }
                errors
            })
    }

    /// Each aggregated view's features: the aggregations whose function and column are
    /// known, with their result dtypes (the others are problems validation reports).
    fn derive_aggregate_features(&mut self) {
        let sources = self.sources.clone();
        for view in &mut self.feature_views {
            let source = sources.iter().find(|s| s.name == view.source);
            view.aggregate_features = view
                .aggregations
                .iter()
                .filter_map(|a| {
                    let function = crate::aggregation::Function::from_name(&a.function)?;
                    let input = match &a.column {
                        None => None,
                        Some(c) => Some(source?.columns.iter().find(|f| &f.name == c)?.dtype),
                    };
                    Some(Feature {
                        name: a.name.clone(),
                        dtype: function.output(input),
                        description: a.description.clone(),
                    })
                })
                .collect();
        }
    }

    /// Checks everything against the uploaded modules and works out the project: each
    /// problem names where it is; all are reported at once.
    pub fn validate(mut self, modules: &dyn ModuleCatalog) -> Result<Project, DefinitionErrors> {
        self.derive_aggregate_features();
        let mut check = Checker::default();
        check.project(&self);
        let (signatures, inputs) = check.transforms(&self, modules);
        let transform_order = check.order(&self);
        let services = check.services(&self, &signatures);
        if check.problems.is_empty() {
            Ok(Project {
                definitions: self,
                // A transform whose module the catalog lacks, or an input that does not
                // resolve, is a problem: with none, every one is known.
                signatures: signatures
                    .into_iter()
                    .map(|s| s.expect("no problems: every module's signature is known"))
                    .collect(),
                inputs: inputs
                    .into_iter()
                    .map(|i| i.expect("no problems: every input resolved"))
                    .collect(),
                transform_order: transform_order.into_iter().map(TransformId).collect(),
                services,
            })
        } else {
            Err(DefinitionErrors {
                problems: check.problems,
            })
        }
    }
}

#[cfg(test)]
mod tests;
