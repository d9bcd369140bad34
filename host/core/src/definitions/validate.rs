//! The checks that make definitions a [`Project`](super::Project), and the expansion of
//! feature references.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;
use crate::{DType, Signature};

/// The most tiles a window may span (window / hop): each key keeps that many online.
const MAX_TILES: i64 = 10_000;

/// The smallest whole-second hop that keeps a `window` within [`MAX_TILES`].
fn least_hop(window: i64) -> Interval {
    const SECOND: i64 = 1_000_000;
    let hop = (window + MAX_TILES - 1) / MAX_TILES;
    Interval::from_micros((hop + SECOND - 1) / SECOND * SECOND)
}

#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
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

    pub(super) fn project(&mut self, d: &Definitions) {
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
        if v.features.is_empty() && v.aggregations.is_empty() {
            self.problem(&here, "a feature view needs at least one feature");
        }
        if v.online
            && !v.is_aggregated()
            && source.is_some_and(|s| s.push)
            && let Some(agg) = d
                .feature_views
                .iter()
                .find(|a| a.source == v.source && a.online && a.is_aggregated())
        {
            self.problem(
                &here,
                format!(
                    "source `{}` is an event source (it feeds the online aggregated view `{}`): a push to it updates aggregates only, so this view would never see one; give it its own source, or declare it `online: false`",
                    v.source, agg.name
                ),
            );
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
        self.aggregations(&here, v, source, &reserved, &mut seen);
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

    /// An aggregated view's hop and aggregations, against its source's event columns.
    fn aggregations<'a>(
        &mut self,
        here: &str,
        v: &'a FeatureView,
        source: Option<&Source>,
        reserved: &HashSet<&str>,
        seen: &mut HashSet<&'a str>,
    ) {
        use crate::aggregation::Function;
        if v.aggregations.is_empty() {
            if v.hop.is_some() {
                self.problem(
                    format!("{here} .hop"),
                    "`hop` is for views with `aggregations`",
                );
            }
            return;
        }
        if !v.features.is_empty() {
            self.problem(
                here,
                "a feature view has either `features` (stored columns) or `aggregations` (computed from events), not both; split it in two",
            );
        }
        let hop = v.hop.map(Interval::micros);
        match hop {
            None => self.problem(
                here,
                "an aggregated view needs a `hop` (the tile width, e.g. `5m`), which every window is a multiple of",
            ),
            Some(h) if h <= 0 => self.problem(format!("{here} .hop"), "the hop must be positive"),
            Some(_) => {}
        }
        let names: Vec<&str> = Function::NAMES.iter().map(|(n, _)| *n).collect();
        for (j, a) in v.aggregations.iter().enumerate() {
            let aat = format!("{here} .aggregations[{j}]");
            self.name(&aat, "feature name", &a.name);
            if !seen.insert(a.name.as_str()) {
                self.problem(&aat, format!("duplicate feature `{}`", a.name));
            }
            if reserved.contains(a.name.as_str()) {
                self.problem(
                    &aat,
                    format!(
                        "feature `{}` has the name of a join key or timestamp column of the view",
                        a.name
                    ),
                );
            }
            let Some(function) = Function::from_name(&a.function) else {
                self.problem(
                    format!("{aat} .function"),
                    format!(
                        "unknown function `{}`; known: {}",
                        a.function,
                        names.join(", ")
                    ),
                );
                continue;
            };
            match (&a.column, source) {
                (None, _) if function == Function::Count => {}
                (None, _) => self.problem(
                    &aat,
                    format!("`{}` needs a `column` of the source", a.function),
                ),
                (Some(column), Some(s)) => match s.columns.iter().find(|c| &c.name == column) {
                    None => self.problem(
                        format!("{aat} .column"),
                        format!(
                            "source `{}` declares no column `{column}`; list the event columns with their dtypes in the source's `columns`",
                            s.name
                        ),
                    ),
                    Some(c) if !function.accepts().contains(&c.dtype) => self.problem(
                        format!("{aat} .column"),
                        format!(
                            "`{}` does not take a {} column (`{column}`); it takes {}",
                            a.function,
                            c.dtype,
                            function.accepts().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                        ),
                    ),
                    Some(_) => {}
                },
                (Some(_), None) => {}
            }
            let window = a.window.micros();
            if window <= 0 {
                self.problem(format!("{aat} .window"), "the window must be positive");
            } else if let Some(h) = hop.filter(|h| *h > 0) {
                if window % h != 0 {
                    self.problem(
                        format!("{aat} .window"),
                        format!("the hop {} does not divide the window {}; make the window a multiple of the hop", Interval::from_micros(h), a.window),
                    );
                } else if let Some(retention) = source.and_then(|s| s.retention)
                    && window + h > retention.micros()
                {
                    self.problem(
                        format!("{aat} .window"),
                        format!(
                            "a {} window with a {} hop reads up to {} back, beyond the source's retention of {retention}; shorten the window or keep the history longer",
                            a.window,
                            Interval::from_micros(h),
                            Interval::from_micros(window + h)
                        ),
                    );
                } else if window / h > MAX_TILES {
                    self.problem(
                        format!("{aat} .window"),
                        format!(
                            "a {} window of {} hops holds {} tiles per key, over the limit of {MAX_TILES}; use a hop of at least {}",
                            a.window,
                            Interval::from_micros(h),
                            window / h,
                            least_hop(window)
                        ),
                    );
                }
            }
        }
        if v.online
            && let Some(s) = source
        {
            self.online_event_source(here, v, s);
        }
    }

    /// What serving an aggregated view needs of its source: a lateness to seal tiles by,
    /// and, when it takes pushes, arrival times and a directory for its offline log.
    fn online_event_source(&mut self, here: &str, v: &FeatureView, s: &Source) {
        let need = |what: &str| {
            format!(
                "the online aggregated view `{}` needs its source `{}` to {what}; or declare the view `online: false`",
                v.name, s.name
            )
        };
        if s.allowed_lateness.is_none() {
            self.problem(
                here,
                need("declare `allowed_lateness` (e.g. `1h`): tiles are sealed that long after they end, and later events are refused online and dropped offline alike"),
            );
        }
        if !s.push {
            return;
        }
        if s.created_timestamp_field.is_none() {
            self.problem(
                here,
                need("declare `created_timestamp_field`: the server stamps each pushed event's arrival there, and the backfill reads it to see exactly what was served"),
            );
        }
        match s.path.as_deref() {
            None => self.problem(
                here,
                need("have a `path` (a directory): pushed events are kept there as Parquet, the offline log"),
            ),
            Some(p) if p.ends_with(".parquet") => self.problem(
                here,
                need("have a directory `path`, not a file: pushed events are added to it as Parquet files"),
            ),
            Some(_) => {}
        }
    }

    /// Checks each transform against its module's signature; returns the signatures and,
    /// for each transform whose inputs all resolved, where each signature input comes from.
    pub(super) fn transforms(
        &mut self,
        d: &Definitions,
        modules: &dyn ModuleCatalog,
    ) -> (Vec<Option<Signature>>, Vec<Option<Vec<ResolvedInput>>>) {
        let signatures: Vec<Option<Signature>> = d
            .transforms
            .iter()
            .map(|t| modules.signature(&t.module))
            .collect();
        let mut all_inputs = vec![None; d.transforms.len()];
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
            let mut resolved: Vec<Option<ResolvedInput>> = vec![None; signature.inputs.len()];
            for (j, input) in t.inputs.iter().enumerate() {
                let iat = format!("{here} .inputs[{j}] `{input}`");
                let Some(spec_index) = signature
                    .inputs
                    .iter()
                    .position(|s| s.name == input.input_name())
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
                let spec = &signature.inputs[spec_index];
                if !fed.insert(input.input_name()) {
                    self.problem(iat, format!("input `{}` is fed twice", input.input_name()));
                    continue;
                }
                let found = if input.scope == REQUEST_SCOPE && input.name == REQUEST_TIME {
                    Some((DType::Timestamp, ResolvedInput::RequestTime))
                } else if input.scope == REQUEST_SCOPE {
                    match t.request_schema.iter().find(|f| f.name == input.name) {
                        Some(field) => Some((field.dtype, ResolvedInput::Request(field.clone()))),
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
                    match view
                        .feature_list()
                        .iter()
                        .position(|f| f.name == input.name)
                    {
                        Some(feature) => Some((
                            view.feature_list()[feature].dtype,
                            ResolvedInput::View {
                                view: ViewId(v),
                                feature,
                            },
                        )),
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
                        .and_then(|s| s.outputs.iter().position(|o| o.name == input.name))
                    {
                        Some(output) => Some((
                            signatures[other].as_ref().expect("found an output").outputs[output]
                                .dtype,
                            ResolvedInput::Transform {
                                transform: TransformId(other),
                                output,
                            },
                        )),
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
                if let Some((dtype, source)) = found {
                    resolved[spec_index] = Some(source);
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
            all_inputs[i] = resolved.into_iter().collect::<Option<Vec<_>>>();
        }
        (signatures, all_inputs)
    }

    /// Orders transforms so each comes after those it reads; reports cycles.
    pub(super) fn order(&mut self, d: &Definitions) -> Vec<usize> {
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
                            // State 1 means `dep` is on the stack.
                            let from = stack
                                .iter()
                                .position(|&(n, _)| n == dep)
                                .expect("a node in progress is on the stack");
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

    pub(super) fn services(
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
            .feature_list()
            .iter()
            .enumerate()
            .filter(|(_, f)| name == "*" || f.name == name)
            .map(|(column, f)| ServedFeature {
                owner: Owner::View(ViewId(v)),
                owner_name: view.name.clone(),
                name: f.name.clone(),
                dtype: f.dtype,
                column,
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
            .enumerate()
            .filter(|(_, o)| name == "*" || o.name == name)
            .map(|(column, o)| ServedFeature {
                owner: Owner::Transform(TransformId(t)),
                owner_name: owner.to_owned(),
                name: o.name.clone(),
                dtype: o.dtype,
                column,
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
