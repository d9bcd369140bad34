//! What is served: the plans of the applied definitions, and applying new ones (registry,
//! then the online store's views, then the plans), for the server and the CLI alike.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use skewless_core::{DefinitionErrors, Fault, Project};
use skewless_online::OnlineStore;
use skewless_plan::ServicePlan;
use skewless_registry::Registry;

/// Ad-hoc feature lists planned and kept per apply, at most.
const ADHOC_PLANS: usize = 1024;

/// The plans of the applied definitions. Replaced whole on apply; a request keeps the
/// `Arc` it started with, so an apply never fails an in-flight request.
#[derive(Debug)]
pub struct Serving {
    /// The applied project.
    pub project: Option<Arc<Project>>,
    /// Each service's plan, built at apply.
    pub services: HashMap<String, Arc<ServicePlan>>,
    /// Plans of ad-hoc feature lists, built on first use.
    adhoc: DashMap<String, Arc<ServicePlan>>,
    /// Each online view's schema fingerprint.
    pub fingerprints: HashMap<String, u64>,
}

impl Serving {
    /// Nothing applied yet.
    pub fn empty() -> Self {
        Self {
            project: None,
            services: HashMap::new(),
            adhoc: DashMap::new(),
            fingerprints: HashMap::new(),
        }
    }

    /// Plans every service of `project` with the registry's loaded modules.
    pub fn build(
        project: &Arc<Project>,
        registry: &Registry,
    ) -> Result<Self, skewless_plan::Error> {
        let modules = |m: &_| registry.transform(m);
        let mut services = HashMap::new();
        for name in project.services().keys() {
            services.insert(
                name.clone(),
                Arc::new(ServicePlan::for_service(project, name, &modules)?),
            );
        }
        Ok(Self {
            project: Some(project.clone()),
            services,
            adhoc: DashMap::new(),
            fingerprints: skewless_online::fingerprints(project),
        })
    }

    /// The applied project, or [`NoDefinitions`].
    pub fn project(&self) -> Result<&Arc<Project>, NoDefinitions> {
        self.project.as_ref().ok_or(NoDefinitions)
    }

    /// The plan of feature service `name`.
    pub fn service(&self, name: &str) -> Result<Arc<ServicePlan>, skewless_plan::Error> {
        self.services
            .get(name)
            .cloned()
            .ok_or_else(|| skewless_plan::Error::UnknownService(name.to_owned()))
    }

    /// The plan of an ad-hoc feature list (`view:feature`, `view:*`, ...), planned on
    /// first use and kept (up to a bound) until the next apply.
    pub fn features(
        &self,
        registry: &Registry,
        list: &[String],
    ) -> Result<Arc<ServicePlan>, ServingError> {
        let project = self.project()?;
        let cache_key = list.join("\n");
        if let Some(plan) = self.adhoc.get(&cache_key) {
            return Ok(plan.clone());
        }
        let modules = |m: &_| registry.transform(m);
        let plan = Arc::new(ServicePlan::for_features(project, list, &modules)?);
        if self.adhoc.len() < ADHOC_PLANS {
            self.adhoc.insert(cache_key, plan.clone());
        }
        Ok(plan)
    }

    /// Where each online view is materialized to, under its current schema (a watermark
    /// recorded under other features does not count).
    pub fn materialized_until(
        &self,
        registry: &Registry,
    ) -> Result<HashMap<String, i64>, skewless_registry::Error> {
        Ok(registry
            .watermarks()?
            .into_iter()
            .filter(|(view, w)| self.fingerprints.get(view) == Some(&w.fingerprint))
            .map(|(view, w)| (view, w.end_micros))
            .collect())
    }
}

/// No definitions have been applied yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no definitions applied yet (PUT /v1/definitions, or `skewless apply`)")]
pub struct NoDefinitions;

/// Why serving state could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServingError {
    /// Nothing applied.
    #[error(transparent)]
    NoDefinitions(#[from] NoDefinitions),
    /// The features could not be planned.
    #[error(transparent)]
    Plan(#[from] skewless_plan::Error),
}

impl ServingError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            ServingError::NoDefinitions(_) => Fault::Caller,
            ServingError::Plan(e) => e.fault(),
        }
    }
}

/// Why definitions were not applied; nothing changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The definitions do not validate: every problem, with its path and line.
    #[error(transparent)]
    Definitions(DefinitionErrors),
    /// The registry could not store them.
    #[error(transparent)]
    Registry(skewless_registry::Error),
    /// They could not be planned.
    #[error(transparent)]
    Plan(#[from] skewless_plan::Error),
    /// The online store could not take the new views.
    #[error(transparent)]
    Store(#[from] skewless_online::Error),
}

impl From<skewless_registry::Error> for ApplyError {
    fn from(e: skewless_registry::Error) -> Self {
        match e {
            skewless_registry::Error::Definitions(problems) => ApplyError::Definitions(problems),
            other => ApplyError::Registry(other),
        }
    }
}

impl ApplyError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            ApplyError::Definitions(_) => Fault::Caller,
            ApplyError::Registry(e) => e.fault(),
            ApplyError::Plan(e) => e.fault(),
            ApplyError::Store(e) => e.fault(),
        }
    }
}

/// Applies `yaml`: validated and planned against the registry's modules (a refusal
/// changes nothing), persisted by the registry, and the store told the new views and
/// event sources (source paths under `source_root`; the tiles of a new aggregated view
/// are built from its history). The caller makes the returned [`Serving`] current.
pub fn apply(
    registry: &Registry,
    store: &dyn OnlineStore,
    yaml: &str,
    source_root: &std::path::Path,
) -> Result<(Arc<Project>, Serving), ApplyError> {
    let (project, serving) = registry.apply(yaml, |project| {
        // Refused before anything is persisted: a store that cannot keep tiles.
        if !store.keeps_aggregates()
            && let Some(view) = project
                .definitions()
                .feature_views
                .iter()
                .find(|v| v.online && v.is_aggregated())
        {
            return Err(ApplyError::Store(skewless_online::Error::Unsupported(format!(
                "this online store does not keep aggregate tiles, which the online aggregated view `{}` needs; use the local store (no --redis), or declare the view `online: false`",
                view.name
            ))));
        }
        Serving::build(project, registry).map_err(ApplyError::from)
    })??;
    store.set_views(&skewless_online::view_schemas(&project))?;
    crate::events::set_event_sources(store, &project, source_root)?;
    Ok((project, serving))
}
