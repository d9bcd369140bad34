//! A project's definitions: entities, sources, feature views, transforms and feature
//! services, as written in one YAML file, and the checks that make them a [`Project`].
//!
//! Parsing rejects unknown keys (a typo is an error, not a silently ignored field).
//! Validation collects *every* problem, each naming where it is (`feature_views[0]
//! "user_stats" .source`), so one `apply` shows the whole list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::key::KeyType;
use crate::signature::is_identifier;
use crate::{DType, Signature, Ttl};

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
    /// The column that breaks ties between rows with equal event times (larger wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp_field: Option<String>,
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
    /// The features, each a column of the source.
    pub features: Vec<Feature>,
    /// Owner, description and tags.
    #[serde(flatten)]
    pub metadata: Metadata,
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

/// A module version: `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleRef {
    /// The module name.
    pub name: String,
    /// The exact version.
    pub version: String,
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl std::str::FromStr for ModuleRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, version) = text
            .split_once('@')
            .ok_or_else(|| format!("module `{text}` must be `name@version`"))?;
        check_module_name(name)?;
        check_version(version)?;
        Ok(ModuleRef {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }
}

/// Checks a module name: an identifier-like name of letters, digits, `_` and `-`.
pub fn check_module_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "module name `{name}` must start with a letter and hold only letters, digits, `_` and `-` (at most 128)"
        ))
    }
}

/// Checks a version: letters, digits, `.`, `_`, `-` and `+`, such as `1.0.0` or `2024-06-01`.
pub fn check_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "version `{version}` must start with a letter or digit and hold only letters, digits, `.`, `_`, `-` and `+` (at most 64)"
        ))
    }
}

impl Serialize for ModuleRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModuleRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Where a transform input comes from: `scope:name`, written as that string, or as
/// `{from: scope:name, as: input}` when the module calls the input otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InputRef {
    /// A feature view, a transform, or `request`.
    pub scope: String,
    /// The feature, output or request field.
    pub name: String,
    /// The input's name in the module's signature, when it is not `name`.
    pub alias: Option<String>,
}

impl InputRef {
    /// The input's name in the module's signature.
    pub fn input_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scope, self.name)?;
        if let Some(alias) = &self.alias {
            write!(f, " as {alias}")?;
        }
        Ok(())
    }
}

impl Serialize for InputRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match &self.alias {
            None => serializer.collect_str(&format_args!("{}:{}", self.scope, self.name)),
            Some(alias) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("from", &format!("{}:{}", self.scope, self.name))?;
                map.serialize_entry("as", alias)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for InputRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Renamed {
            from: String,
            #[serde(rename = "as")]
            alias: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Renamed(Renamed),
        }
        let (text, alias) = match Raw::deserialize(deserializer)? {
            Raw::Plain(text) => (text, None),
            Raw::Renamed(Renamed { from, alias }) => (from, Some(alias)),
        };
        match text.split_once(':') {
            Some((scope, name)) if !scope.is_empty() && !name.is_empty() => Ok(InputRef {
                scope: scope.to_owned(),
                name: name.to_owned(),
                alias,
            }),
            _ => Err(serde::de::Error::custom(format!(
                "input `{text}` must be `view:feature`, `transform:output` or `request:field`"
            ))),
        }
    }
}

/// One problem in a definitions file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where on its line: `column 3` for a syntax error, or a path such as
    /// `feature_views[0] "user_stats" .source`.
    pub at: String,
    /// The line of the file it is on (1-based), when known. Problems found by
    /// [`Definitions::validate_yaml`] and syntax errors have one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// The YAML path `at` names: `feature_views[0] "v" .inputs[2] `x`` is
    /// `feature_views[0].inputs[2]`.
    fn yaml_path(&self) -> String {
        let (head, rest) = self.at.split_once(' ').unwrap_or((&self.at, ""));
        match rest.rfind("\" .") {
            Some(i) => {
                let field = rest[i + 3..].split(' ').next().unwrap_or_default();
                format!("{head}.{field}")
            }
            None => head.to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}, {}: {}", self.at, self.message),
            None => write!(f, "{}: {}", self.at, self.message),
        }
    }
}

/// Definitions that cannot be applied: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid definitions ({} problem{}):\n{}", .problems.len(),
    if .problems.len() == 1 { "" } else { "s" },
    .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct DefinitionErrors {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

/// What validation needs to know about uploaded modules.
pub trait ModuleCatalog {
    /// The declared signature of a module version, if it was uploaded.
    fn signature(&self, module: &ModuleRef) -> Option<Signature>;
}

impl<F: Fn(&ModuleRef) -> Option<Signature>> ModuleCatalog for F {
    fn signature(&self, module: &ModuleRef) -> Option<Signature> {
        self(module)
    }
}

/// Who owns a feature: a feature view or a transform, by index in [`Definitions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// `feature_views[i]`.
    View(usize),
    /// `transforms[i]`.
    Transform(usize),
}

/// One feature as a service serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedFeature {
    /// The view or transform.
    pub owner: Owner,
    /// The owner's name.
    pub owner_name: String,
    /// The feature (or output) name.
    pub name: String,
    /// Its dtype.
    pub dtype: DType,
}

impl ServedFeature {
    /// `owner:name`, the feature's name in responses and training sets.
    pub fn qualified(&self) -> String {
        format!("{}:{}", self.owner_name, self.name)
    }
}

/// Definitions that passed every check, with what the checks worked out. Only
/// [`Definitions::validate`] makes one, and its parts are read-only, so a project whose
/// names and indices disagree cannot be built: tampering with a validated project does
/// not compile.
///
/// ```compile_fail
/// fn tamper(project: &mut skewless_core::Project) {
///     project.definitions.feature_views[0].features[0].name = "another".into();
/// }
/// ```
///
/// ```compile_fail
/// fn forge(definitions: skewless_core::Definitions) -> skewless_core::Project {
///     skewless_core::Project {
///         definitions,
///         signatures: Vec::new(),
///         transform_order: Vec::new(),
///         services: Default::default(),
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Project {
    definitions: Definitions,
    signatures: Vec<Signature>,
    transform_order: Vec<usize>,
    services: BTreeMap<String, Vec<ServedFeature>>,
}

impl Project {
    /// The definitions as written.
    pub fn definitions(&self) -> &Definitions {
        &self.definitions
    }

    /// Each transform's module signature, by index in `definitions().transforms`.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Transform indices in dependency order: every transform after those it reads.
    pub fn transform_order(&self) -> &[usize] {
        &self.transform_order
    }

    /// Each service's features, expanded (`view:*`), in output order, by service name.
    pub fn services(&self) -> &BTreeMap<String, Vec<ServedFeature>> {
        &self.services
    }
}

impl Definitions {
    /// Parses YAML; a syntax error or an unknown key names its line and column.
    pub fn from_yaml(text: &str) -> Result<Definitions, DefinitionErrors> {
        serde_yaml::from_str(text).map_err(|error| {
            let (at, line) = match error.location() {
                Some(at) => (format!("column {}", at.column()), Some(at.line())),
                None => ("definitions".to_owned(), None),
            };
            // serde_yaml repeats the location at the end of its message.
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
        serde_yaml::to_string(self).map_err(|e| crate::Error::Serialize(e.to_string()))
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

    /// Checks everything against the uploaded modules and works out the project: each
    /// problem names where it is; all are reported at once.
    pub fn validate(self, modules: &dyn ModuleCatalog) -> Result<Project, DefinitionErrors> {
        let mut check = Checker::default();
        check.project(&self);
        let signatures = check.transforms(&self, modules);
        let transform_order = check.order(&self);
        let services = check.services(&self, &signatures);
        if check.problems.is_empty() {
            Ok(Project {
                definitions: self,
                signatures: signatures
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect(),
                transform_order,
                services,
            })
        } else {
            Err(DefinitionErrors {
                problems: check.problems,
            })
        }
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

fn at(section: &str, index: usize, name: &str) -> String {
    format!("{section}[{index}] {name:?}")
}

impl Checker {
    fn problem(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            at: at.into(),
            line: None,
            message: message.into(),
        });
    }

    fn name(&mut self, at: &str, what: &str, name: &str) {
        if !is_identifier(name) {
            self.problem(
                at,
                format!("{what} `{name}` is not an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 128 bytes)"),
            );
        }
    }

    fn unique<'a>(&mut self, section: &str, names: impl Iterator<Item = &'a str>) {
        let mut seen = HashMap::new();
        for (i, name) in names.enumerate() {
            if let Some(first) = seen.insert(name, i) {
                self.problem(
                    at(section, i, name),
                    format!("duplicate name `{name}` (also {section}[{first}])"),
                );
            }
        }
    }

    fn project(&mut self, d: &Definitions) {
        self.name("project", "project name", &d.project);
        self.unique("entities", d.entities.iter().map(|e| e.name.as_str()));
        self.unique("sources", d.sources.iter().map(|s| s.name.as_str()));
        self.unique(
            "feature_views",
            d.feature_views.iter().map(|v| v.name.as_str()),
        );
        self.unique("transforms", d.transforms.iter().map(|t| t.name.as_str()));
        self.unique(
            "feature_services",
            d.feature_services.iter().map(|s| s.name.as_str()),
        );
        for (i, t) in d.transforms.iter().enumerate() {
            if d.view_index(&t.name).is_some() {
                self.problem(
                    at("transforms", i, &t.name),
                    format!("`{}` is also a feature view; views and transforms share one namespace (features are `name:feature`)", t.name),
                );
            }
        }
        for (i, e) in d.entities.iter().enumerate() {
            let here = at("entities", i, &e.name);
            self.name(&here, "entity name", &e.name);
            if e.join_keys.is_empty() {
                self.problem(&here, "an entity needs at least one join key");
            }
            for key in &e.join_keys {
                self.name(&format!("{here} .join_keys"), "join key", &key.name);
            }
        }
        for (i, s) in d.sources.iter().enumerate() {
            let here = at("sources", i, &s.name);
            self.name(&here, "source name", &s.name);
            self.name(
                &format!("{here} .timestamp_field"),
                "column",
                &s.timestamp_field,
            );
            if let Some(created) = &s.created_timestamp_field {
                self.name(
                    &format!("{here} .created_timestamp_field"),
                    "column",
                    created,
                );
            }
        }
        for (i, v) in d.feature_views.iter().enumerate() {
            self.view(d, i, v);
        }
    }

    fn view(&mut self, d: &Definitions, i: usize, v: &FeatureView) {
        let here = at("feature_views", i, &v.name);
        self.name(&here, "feature view name", &v.name);
        if v.name == REQUEST_SCOPE {
            self.problem(&here, "`request` is reserved for request fields");
        }
        if v.entities.is_empty() {
            self.problem(&here, "a feature view needs at least one entity");
        }
        for entity in &v.entities {
            if d.entity(entity).is_none() {
                self.problem(
                    format!("{here} .entities"),
                    format!("unknown entity `{entity}`"),
                );
            }
        }
        let source = d.source(&v.source);
        if source.is_none() {
            self.problem(
                format!("{here} .source"),
                format!("unknown source `{}`", v.source),
            );
        }
        if v.features.is_empty() {
            self.problem(&here, "a feature view needs at least one feature");
        }
        let mut reserved: HashSet<&str> = HashSet::new();
        let keys = d.view_join_keys(v);
        let mut key_names = HashSet::new();
        for key in &keys {
            if !key_names.insert(key.name.as_str()) {
                self.problem(
                    format!("{here} .entities"),
                    format!(
                        "join key `{}` appears in two of the view's entities",
                        key.name
                    ),
                );
            }
            reserved.insert(&key.name);
        }
        if let Some(s) = source {
            reserved.insert(&s.timestamp_field);
            if let Some(created) = &s.created_timestamp_field {
                reserved.insert(created);
            }
        }
        let mut seen = HashSet::new();
        for (j, f) in v.features.iter().enumerate() {
            let fat = format!("{here} .features[{j}]");
            self.name(&fat, "feature name", &f.name);
            if !seen.insert(f.name.as_str()) {
                self.problem(&fat, format!("duplicate feature `{}`", f.name));
            }
            if reserved.contains(f.name.as_str()) {
                self.problem(
                    &fat,
                    format!(
                        "feature `{}` has the name of a join key or timestamp column of the view",
                        f.name
                    ),
                );
            }
        }
    }

    /// Checks each transform against its module's signature; returns the signatures.
    fn transforms(
        &mut self,
        d: &Definitions,
        modules: &dyn ModuleCatalog,
    ) -> Vec<Option<Signature>> {
        let signatures: Vec<Option<Signature>> = d
            .transforms
            .iter()
            .map(|t| modules.signature(&t.module))
            .collect();
        for (i, t) in d.transforms.iter().enumerate() {
            let here = at("transforms", i, &t.name);
            self.name(&here, "transform name", &t.name);
            if t.name == REQUEST_SCOPE {
                self.problem(&here, "`request` is reserved for request fields");
            }
            let mut request = HashMap::new();
            for (j, field) in t.request_schema.iter().enumerate() {
                let fat = format!("{here} .request_schema[{j}]");
                self.name(&fat, "request field", &field.name);
                if field.name == REQUEST_TIME {
                    self.problem(
                        &fat,
                        "`request_time` is implicit (the time features are assembled as of); read it as `request:request_time` without declaring it",
                    );
                }
                if request.insert(field.name.as_str(), field.dtype).is_some() {
                    self.problem(fat, format!("duplicate request field `{}`", field.name));
                }
            }
            let Some(signature) = &signatures[i] else {
                self.problem(
                    format!("{here} .module"),
                    format!(
                        "module `{}` is not uploaded (PUT /v1/transforms/{}/{} first)",
                        t.module, t.module.name, t.module.version
                    ),
                );
                continue;
            };
            let mut fed = HashSet::new();
            for (j, input) in t.inputs.iter().enumerate() {
                let iat = format!("{here} .inputs[{j}] `{input}`");
                let Some(spec) = signature
                    .inputs
                    .iter()
                    .find(|s| s.name == input.input_name())
                else {
                    let declared: Vec<_> =
                        signature.inputs.iter().map(|s| s.name.as_str()).collect();
                    self.problem(
                        iat,
                        format!(
                            "module {} declares no input `{}` (its inputs: {})",
                            t.module,
                            input.input_name(),
                            declared.join(", ")
                        ),
                    );
                    continue;
                };
                if !fed.insert(input.input_name()) {
                    self.problem(iat, format!("input `{}` is fed twice", input.input_name()));
                    continue;
                }
                let found = if input.scope == REQUEST_SCOPE && input.name == REQUEST_TIME {
                    Some(DType::Timestamp)
                } else if input.scope == REQUEST_SCOPE {
                    match request.get(input.name.as_str()) {
                        Some(dtype) => Some(*dtype),
                        None => {
                            self.problem(
                                &iat,
                                format!("request field `{}` is not in request_schema", input.name),
                            );
                            None
                        }
                    }
                } else if let Some(v) = d.view_index(&input.scope) {
                    let view = &d.feature_views[v];
                    match view.features.iter().find(|f| f.name == input.name) {
                        Some(f) => Some(f.dtype),
                        None => {
                            self.problem(
                                &iat,
                                format!(
                                    "feature view `{}` has no feature `{}`",
                                    view.name, input.name
                                ),
                            );
                            None
                        }
                    }
                } else if let Some(other) = d.transform_index(&input.scope) {
                    match signatures[other]
                        .as_ref()
                        .and_then(|s| s.outputs.iter().find(|o| o.name == input.name))
                    {
                        Some(out) => Some(out.dtype),
                        None => {
                            if signatures[other].is_some() {
                                self.problem(
                                    &iat,
                                    format!(
                                        "transform `{}` has no output `{}`",
                                        input.scope, input.name
                                    ),
                                );
                            }
                            None
                        }
                    }
                } else {
                    self.problem(
                        &iat,
                        format!(
                            "`{}` is neither a feature view, a transform nor `request`",
                            input.scope
                        ),
                    );
                    None
                };
                if let Some(dtype) = found {
                    if dtype != spec.dtype {
                        self.problem(
                            &iat,
                            format!(
                                "is {dtype}, but module {} declares input `{}` as {}",
                                t.module, spec.name, spec.dtype
                            ),
                        );
                    }
                    if !spec.nullable && input.scope != REQUEST_SCOPE {
                        self.problem(
                            &iat,
                            format!(
                                "module {} declares input `{}` non-nullable, but a stored or computed feature can be null (entity not found, value too old, transform error); declare the input nullable",
                                t.module, spec.name
                            ),
                        );
                    }
                }
            }
            for spec in &signature.inputs {
                if !fed.contains(spec.name.as_str()) {
                    self.problem(
                        format!("{here} .inputs"),
                        format!(
                            "module {} needs input `{}` ({}), which no input feeds",
                            t.module, spec.name, spec.dtype
                        ),
                    );
                }
            }
        }
        signatures
    }

    /// Orders transforms so each comes after those it reads; reports cycles.
    fn order(&mut self, d: &Definitions) -> Vec<usize> {
        let deps: Vec<Vec<usize>> = d
            .transforms
            .iter()
            .map(|t| {
                let mut deps: Vec<usize> = t
                    .inputs
                    .iter()
                    .filter_map(|i| d.transform_index(&i.scope))
                    .collect();
                deps.sort_unstable();
                deps.dedup();
                deps
            })
            .collect();
        // 0 = unvisited, 1 = on the stack, 2 = done.
        let mut state = vec![0u8; deps.len()];
        let mut order = Vec::with_capacity(deps.len());
        for start in 0..deps.len() {
            if state[start] != 0 {
                continue;
            }
            let mut stack = vec![(start, 0usize)];
            state[start] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&dep) = deps[node].get(*next) {
                    *next += 1;
                    match state[dep] {
                        0 => {
                            state[dep] = 1;
                            stack.push((dep, 0));
                        }
                        1 => {
                            let from = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                            let mut cycle: Vec<&str> = stack[from..]
                                .iter()
                                .map(|&(n, _)| d.transforms[n].name.as_str())
                                .collect();
                            cycle.push(&d.transforms[dep].name);
                            self.problem(
                                at("transforms", dep, &d.transforms[dep].name),
                                format!(
                                    "transforms read each other in a cycle: {}",
                                    cycle.join(" -> ")
                                ),
                            );
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    order.push(node);
                    stack.pop();
                }
            }
        }
        order
    }

    fn services(
        &mut self,
        d: &Definitions,
        signatures: &[Option<Signature>],
    ) -> BTreeMap<String, Vec<ServedFeature>> {
        let mut services = BTreeMap::new();
        for (i, s) in d.feature_services.iter().enumerate() {
            let here = at("feature_services", i, &s.name);
            self.name(&here, "feature service name", &s.name);
            if s.features.is_empty() {
                self.problem(&here, "a feature service needs at least one feature");
            }
            let mut served = Vec::new();
            for (j, reference) in s.features.iter().enumerate() {
                let fat = format!("{here} .features[{j}]");
                match expand(d, signatures, reference) {
                    Ok(features) => served.extend(features),
                    Err(message) => self.problem(fat, message),
                }
            }
            let mut seen = HashSet::new();
            for f in &served {
                let name = f.qualified();
                if !seen.insert(name.clone()) {
                    self.problem(&here, format!("feature `{name}` is listed twice"));
                }
            }
            services.insert(s.name.clone(), served);
        }
        services
    }
}

/// Expands one feature reference (`view:*`, `view:feature`, `transform:*`,
/// `transform:output`) into served features.
pub fn expand_reference(project: &Project, reference: &str) -> Result<Vec<ServedFeature>, String> {
    let signatures: Vec<Option<Signature>> = project.signatures.iter().cloned().map(Some).collect();
    expand(&project.definitions, &signatures, reference)
}

fn expand(
    d: &Definitions,
    signatures: &[Option<Signature>],
    reference: &str,
) -> Result<Vec<ServedFeature>, String> {
    let Some((owner, name)) = reference.split_once(':') else {
        return Err(format!(
            "feature `{reference}` must be `view:feature`, `view:*`, `transform:output` or `transform:*`"
        ));
    };
    if let Some(v) = d.view_index(owner) {
        let view = &d.feature_views[v];
        let features: Vec<ServedFeature> = view
            .features
            .iter()
            .filter(|f| name == "*" || f.name == name)
            .map(|f| ServedFeature {
                owner: Owner::View(v),
                owner_name: view.name.clone(),
                name: f.name.clone(),
                dtype: f.dtype,
            })
            .collect();
        if features.is_empty() {
            return Err(format!("feature view `{owner}` has no feature `{name}`"));
        }
        return Ok(features);
    }
    if let Some(t) = d.transform_index(owner) {
        let Some(signature) = &signatures[t] else {
            // The transform's own problem (module not uploaded) is already reported.
            return Ok(Vec::new());
        };
        let features: Vec<ServedFeature> = signature
            .outputs
            .iter()
            .filter(|o| name == "*" || o.name == name)
            .map(|o| ServedFeature {
                owner: Owner::Transform(t),
                owner_name: owner.to_owned(),
                name: o.name.clone(),
                dtype: o.dtype,
            })
            .collect();
        if features.is_empty() {
            return Err(format!("transform `{owner}` has no output `{name}`"));
        }
        return Ok(features);
    }
    Err(format!(
        "`{owner}` is neither a feature view nor a transform"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ColumnSpec;

    const FRAUD: &str = r#"
project: fraud
entities:   [{name: user, join_keys: [user_id]}]
sources:    [{name: user_stats, path: data/user_stats.parquet, timestamp_field: event_timestamp, created_timestamp_field: created}]
feature_views:
  - {name: user_stats, entities: [user], source: user_stats, ttl: 7d, online: true,
     features: [{name: txn_amount_avg_7d, dtype: float64}, {name: account_age_days, dtype: int64}]}
transforms:
  - {name: txn_risk, module: risk@1.0.0,
     inputs: [user_stats:txn_amount_avg_7d, user_stats:account_age_days, request:amount],
     request_schema: [{name: amount, dtype: float64}]}
feature_services: [{name: fraud_v1, features: ["user_stats:*", "txn_risk:*"]}]
"#;

    fn risk_signature() -> Signature {
        Signature {
            inputs: vec![
                ColumnSpec::new("amount", DType::Float64),
                ColumnSpec::new("txn_amount_avg_7d", DType::Float64),
                ColumnSpec::new("account_age_days", DType::Int64),
            ],
            outputs: vec![
                ColumnSpec::new("z", DType::Float64),
                ColumnSpec::new("is_new", DType::Bool),
            ],
        }
    }

    fn catalog(module: &ModuleRef) -> Option<Signature> {
        (module.to_string() == "risk@1.0.0").then(risk_signature)
    }

    fn problems(yaml: &str) -> Vec<String> {
        match Definitions::from_yaml(yaml).and_then(|d| d.validate(&catalog)) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    fn assert_problem(yaml: &str, needle: &str) {
        let found = problems(yaml);
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "expected a problem containing {needle:?}, got {found:#?}"
        );
    }

    #[test]
    fn the_example_validates_and_expands() {
        let project = Definitions::from_yaml(FRAUD)
            .unwrap()
            .validate(&catalog)
            .unwrap();
        let names: Vec<String> = project.services["fraud_v1"]
            .iter()
            .map(ServedFeature::qualified)
            .collect();
        assert_eq!(
            names,
            [
                "user_stats:txn_amount_avg_7d",
                "user_stats:account_age_days",
                "txn_risk:z",
                "txn_risk:is_new"
            ]
        );
        let view = &project.definitions.feature_views[0];
        assert_eq!(view.ttl, "7d".parse().unwrap());
        assert_eq!(
            project.definitions.entities[0].join_keys[0].dtype,
            KeyType::Int64
        );
        // What is written reads back the same.
        let again = Definitions::from_yaml(&project.definitions.to_yaml().unwrap()).unwrap();
        assert_eq!(again, project.definitions);
    }

    #[test]
    fn syntax_errors_and_unknown_keys_name_the_line() {
        let found = problems(
            "project: fraud\nentities: [{name: user, join_keys: [user_id], colour: red}]\n",
        );
        assert!(found[0].starts_with("line 2"), "{found:?}");
        assert!(found[0].contains("colour"), "{found:?}");
        let found = problems(&FRAUD.replace("online: true,", "online: true, colour: red,"));
        assert!(found[0].contains("colour"), "{found:?}");
        let found = problems("project: [\n");
        assert!(found[0].starts_with("line"), "{found:?}");
    }

    #[test]
    fn unknown_references() {
        assert_problem(
            &FRAUD.replace("source: user_stats,", "source: nope,"),
            "unknown source `nope`",
        );
        assert_problem(
            &FRAUD.replace("entities: [user]", "entities: [usr]"),
            "unknown entity `usr`",
        );
        assert_problem(
            &FRAUD.replace("risk@1.0.0", "risk@2.0.0"),
            "module `risk@2.0.0` is not uploaded",
        );
        assert_problem(
            &FRAUD.replace("\"user_stats:*\"", "\"user_stat:*\""),
            "`user_stat` is neither",
        );
        assert_problem(
            &FRAUD.replace("\"txn_risk:*\"", "\"txn_risk:zz\""),
            "no output `zz`",
        );
        assert_problem(
            &FRAUD.replace("request:amount]", "request:amount, user_stats:nope]"),
            "declares no input `nope`",
        );
        assert_problem(
            &FRAUD.replace(
                "request_schema: [{name: amount, dtype: float64}]",
                "request_schema: []",
            ),
            "request field `amount` is not in request_schema",
        );
        assert_problem(
            &FRAUD.replace(", request:amount]", "]"),
            "needs input `amount`",
        );
    }

    #[test]
    fn type_mismatches_and_duplicates() {
        assert_problem(
            &FRAUD.replace(
                "{name: account_age_days, dtype: int64}",
                "{name: account_age_days, dtype: float64}",
            ),
            "is float64, but module risk@1.0.0 declares input `account_age_days` as int64",
        );
        assert_problem(
            &FRAUD.replace(
                "feature_services: [",
                "feature_services: [{name: fraud_v1, features: [\"user_stats:*\"]}, ",
            ),
            "duplicate name `fraud_v1`",
        );
        assert_problem(
            &FRAUD.replace(
                "features: [\"user_stats:*\", \"txn_risk:*\"]",
                "features: [\"user_stats:*\", \"user_stats:account_age_days\"]",
            ),
            "listed twice",
        );
        assert_problem(&FRAUD.replace("ttl: 7d", "ttl: 7 days"), "invalid duration");
        assert_problem(
            &FRAUD.replace("name: txn_amount_avg_7d", "name: user_id"),
            "join key",
        );
    }

    #[test]
    fn inputs_can_be_renamed_and_read_the_request_time() {
        let renamed = FRAUD
            .replace(
                "inputs: [user_stats:txn_amount_avg_7d,",
                "inputs: [{from: \"user_stats:txn_amount_avg_7d\", as: avg}, request:request_time,",
            )
            .replace("risk@1.0.0", "renamed@1");
        let modules = |m: &ModuleRef| {
            (m.name == "renamed").then(|| {
                let mut s = risk_signature();
                s.inputs[1].name = "avg".into();
                s.inputs
                    .push(ColumnSpec::new("request_time", DType::Timestamp));
                s
            })
        };
        let project = Definitions::from_yaml(&renamed)
            .unwrap()
            .validate(&modules)
            .unwrap();
        let inputs = &project.definitions.transforms[0].inputs;
        assert_eq!(inputs[0].input_name(), "avg");
        assert_eq!(inputs[0].to_string(), "user_stats:txn_amount_avg_7d as avg");
        let again = Definitions::from_yaml(&project.definitions.to_yaml().unwrap()).unwrap();
        assert_eq!(again, project.definitions, "aliases survive a round trip");
        // Without the alias the module's input is not fed.
        let error = Definitions::from_yaml(&renamed.replace(", as: avg}", ", as: mean}"))
            .unwrap()
            .validate(&modules)
            .unwrap_err();
        assert!(
            error.to_string().contains("declares no input `mean`"),
            "{error}"
        );
    }

    /// The problems `validate_yaml` finds in `yaml`, as (line, message) pairs.
    fn located(yaml: &str) -> Vec<(Option<usize>, String)> {
        match Definitions::validate_yaml(yaml, &catalog) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| (p.line, p.to_string()))
                .collect(),
        }
    }

    #[test]
    fn problems_name_their_line() {
        // Flow style: several problems, each on the line of what is wrong.
        let yaml = FRAUD
            .replace("source: user_stats,", "source: nope,")
            .replace("risk@1.0.0", "risk@2.0.0")
            .replace("\"user_stats:*\"", "\"user_stat:*\"");
        let found = located(&yaml);
        let line_of = |needle: &str| {
            found
                .iter()
                .find(|(_, text)| text.contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in {found:#?}"))
                .0
        };
        assert_eq!(line_of("unknown source `nope`"), Some(6));
        assert_eq!(line_of("module `risk@2.0.0` is not uploaded"), Some(9));
        assert_eq!(line_of("`user_stat` is neither"), Some(12));
        assert!(
            found[0]
                .1
                .starts_with("line 6, feature_views[0] \"user_stats\" .source: "),
            "{found:#?}"
        );

        // Block style: a nested feature and an input, each on its own line.
        let block = "project: fraud
entities:
  - name: user
    join_keys: [user_id]
sources:
  - name: user_stats
feature_views:
  - name: user_stats
    entities: [user]
    source: user_stats
    features:
      - name: txn_amount_avg_7d
        dtype: float64
      - name: account_age_days
        dtype: float64
transforms:
  - name: txn_risk
    module: risk@1.0.0
    inputs:
      - user_stats:txn_amount_avg_7d
      - user_stats:account_age_days
      - request:amount
      - request:colour
    request_schema: [{name: amount, dtype: float64}]
";
        let found = located(block);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].0, Some(21), "{found:#?}");
        assert!(found[0].1.contains("as int64"), "{found:#?}");
        assert_eq!(found[1].0, Some(23), "{found:#?}");
        assert!(found[1].1.contains("`colour`"), "{found:#?}");

        // Syntax errors keep the parser's line and column.
        let found = located("project: fraud\nentities: [{name: user, colour: red}]\n");
        assert_eq!(found[0].0, Some(2));
        assert!(found[0].1.starts_with("line 2, column"), "{found:#?}");
    }

    #[test]
    fn cycles_are_named() {
        let signature = |input: &str, output: &str| Signature {
            inputs: vec![ColumnSpec::new(input, DType::Float64)],
            outputs: vec![ColumnSpec::new(output, DType::Float64)],
        };
        let modules = move |m: &ModuleRef| match m.name.as_str() {
            "a" => Some(signature("y", "x")),
            "b" => Some(signature("x", "y")),
            _ => None,
        };
        let yaml = r#"
project: p
transforms:
  - {name: ta, module: a@1, inputs: [tb:y]}
  - {name: tb, module: b@1, inputs: [ta:x]}
"#;
        let error = Definitions::from_yaml(yaml)
            .unwrap()
            .validate(&modules)
            .unwrap_err();
        assert!(
            error.to_string().contains("cycle: ta -> tb -> ta"),
            "{error}"
        );
        let chained = r#"
project: p
transforms:
  - {name: tb, module: b@1, inputs: [ta:x]}
  - {name: ta, module: a@1, inputs: [request:y], request_schema: [{name: y, dtype: float64}]}
"#;
        let project = Definitions::from_yaml(chained)
            .unwrap()
            .validate(&modules)
            .unwrap();
        assert_eq!(
            project.transform_order,
            [1, 0],
            "ta runs before tb, which reads it"
        );
    }
}
