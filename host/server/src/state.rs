//! What requests share: the registry, the store, and the current plans.

use std::sync::{Arc, RwLock};

use skewless_online::OnlineStore;
use skewless_ops::Serving;
use skewless_registry::Registry;

use crate::ServerConfig;
use crate::metrics::Metrics;

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
    pub(crate) samples: skewless_ops::sample::Samples,
    /// The last drift computed per (service, feature), exported as gauges.
    pub(crate) drift: std::sync::Mutex<
        std::collections::BTreeMap<(String, String), skewless_ops::drift::FeatureDrift>,
    >,
}

impl AppState {
    pub(crate) fn new(
        config: ServerConfig,
        registry: Arc<Registry>,
        store: Arc<dyn OnlineStore>,
        serving: Serving,
    ) -> Self {
        Self {
            samples: skewless_ops::sample::Samples::new(config.sample_rows),
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
