//! What requests share: the registry, the store, and the current plans.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use skewless_core::Project;
use skewless_online::{OnlineStore, ViewSchema};
use skewless_plan::ServicePlan;
use skewless_registry::Registry;

use crate::ServerConfig;
use crate::metrics::Metrics;

/// The plans of the applied definitions. Replaced whole on apply; a request keeps the
/// `Arc` it started with, so an apply never fails an in-flight request.
#[derive(Debug)]
pub struct Serving {
    /// The applied project.
    pub project: Option<Arc<Project>>,
    /// Each service's plan, built at apply.
    pub services: HashMap<String, Arc<ServicePlan>>,
    /// Plans of ad-hoc feature lists, built on first use.
    pub adhoc: DashMap<String, Arc<ServicePlan>>,
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
            fingerprints: view_schemas(project)
                .into_iter()
                .map(|s| (s.name.clone(), s.fingerprint()))
                .collect(),
        })
    }
}

/// The online store schemas of a project's online views.
pub fn view_schemas(project: &Project) -> Vec<ViewSchema> {
    project
        .definitions()
        .feature_views
        .iter()
        .filter(|v| v.online)
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

#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: ServerConfig,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<dyn OnlineStore>,
    serving: RwLock<Arc<Serving>>,
    pub(crate) metrics: Metrics,
    /// Serializes applies, so the plan swap follows the registry's order.
    pub(crate) applying: tokio::sync::Mutex<()>,
    /// Backfills and materializations started over HTTP.
    pub(crate) jobs: crate::jobs::Jobs,
    /// What each feature service served, sampled.
    pub(crate) samples: crate::sample::Samples,
    /// The last drift computed per (service, feature), exported as gauges.
    pub(crate) drift:
        std::sync::Mutex<std::collections::BTreeMap<(String, String), crate::drift::FeatureDrift>>,
}

impl AppState {
    pub(crate) fn new(
        config: ServerConfig,
        registry: Arc<Registry>,
        store: Arc<dyn OnlineStore>,
        serving: Serving,
    ) -> Self {
        Self {
            samples: crate::sample::Samples::new(config.sample_rows),
            drift: std::sync::Mutex::default(),
            config,
            registry,
            store,
            serving: RwLock::new(Arc::new(serving)),
            metrics: Metrics::default(),
            applying: tokio::sync::Mutex::new(()),
            jobs: crate::jobs::Jobs::default(),
        }
    }

    pub(crate) fn serving(&self) -> Arc<Serving> {
        self.serving
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn swap(&self, serving: Serving) {
        *self.serving.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(serving);
    }
}
