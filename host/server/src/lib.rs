//! The Skewless HTTP server: module upload, definitions, push ingestion, the serving
//! endpoint, discovery, health and metrics (see `docs/api.md`).
//!
//! It speaks HTTP and JSON and owns the mapping of errors to HTTP statuses; everything
//! else is a call into the crates below. The serving endpoint turns the request's JSON
//! into Arrow and calls the online half of the one path,
//! [`skewless_online::serve`] (beside the offline half, the backfill); apply,
//! materialization, verify, drift and the sample are [`skewless_ops`]'s.

#![deny(missing_docs)]

mod accept;
mod error;
mod extract;
mod jobs;
mod metrics;

mod routes;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use skewless_engine::Engine;
use skewless_online::{LocalStore, OnlineStore, RedisOptions, RedisStore, StoreOptions};
use skewless_ops::Serving;
use skewless_registry::Registry;

pub use error::ApiError;

/// Wraps the online store a server opens: see [`Server::bind_layered`].
pub type StoreLayer = Box<dyn FnOnce(Arc<dyn OnlineStore>) -> Arc<dyn OnlineStore> + Send>;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The data directory: `registry/` and `online/` live here.
    pub data_dir: PathBuf,
    /// The bearer token writes must carry; required unless listening on loopback.
    pub token: Option<String>,
    /// The largest request body, except module uploads, in bytes.
    pub max_body_bytes: usize,
    /// The largest module upload, in bytes.
    pub max_module_bytes: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may sit idle before its next request; the connection is closed after.
    pub header_read_timeout: std::time::Duration,
    /// The most connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// When the online store snapshots.
    pub store: StoreOptions,
    /// Keep the online store in Redis rather than in the data directory.
    pub redis: Option<RedisOptions>,
    /// What relative paths in jobs resolve against: source paths in the definitions and
    /// the entity frame and output of `POST /v1/backfill`.
    pub source_root: PathBuf,
    /// Served rows kept per feature service for `verify` and drift (a uniform sample of
    /// everything served); 0 keeps none.
    pub sample_rows: usize,
}

impl ServerConfig {
    /// Defaults for `data_dir` on 127.0.0.1:6566.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6566)),
            data_dir: data_dir.into(),
            token: None,
            max_body_bytes: 16 << 20,
            max_module_bytes: 256 << 20,
            header_read_timeout: std::time::Duration::from_secs(30),
            max_connections: 4096,
            store: StoreOptions::default(),
            redis: None,
            source_root: PathBuf::from("."),
            sample_rows: 1000,
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to listen on {0} without a token: writes would be open to the network; pass --token (or SKEWLESS_TOKEN), or listen on 127.0.0.1"
    )]
    Insecure(SocketAddr),
    /// The registry could not be opened.
    #[error("registry: {0}")]
    Registry(#[from] skewless_registry::Error),
    /// The online store could not be opened.
    #[error("online store: {0}")]
    Store(#[from] skewless_online::Error),
    /// The applied definitions could not be planned.
    #[error("planning the applied definitions: {0}")]
    Plan(#[from] skewless_plan::Error),
    /// A start-up task failed unexpectedly (a bug).
    #[error("internal error while starting: {0}")]
    Internal(String),
    /// The address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    state: Arc<state::AppState>,
    listener: tokio::net::TcpListener,
}

impl Server {
    /// Opens the data directory (registry, then the online store with the applied views,
    /// replaying its log) and binds the address.
    pub async fn bind(config: ServerConfig, engine: Engine) -> Result<Self, StartError> {
        Self::bind_layered(config, engine, Box::new(|store| store)).await
    }

    /// [`Server::bind`], with every store call going through `layer`, which wraps the
    /// store the configuration opens (to instrument it, cache it, or, in the differential
    /// suite's test of itself, to plant a skew).
    pub async fn bind_layered(
        config: ServerConfig,
        engine: Engine,
        layer: StoreLayer,
    ) -> Result<Self, StartError> {
        if !config.listen.ip().is_loopback() && config.token.as_deref().is_none_or(str::is_empty) {
            return Err(StartError::Insecure(config.listen));
        }
        let data_dir = config.data_dir.clone();
        let store_options = config.store.clone();
        let redis = config.redis.clone();
        let source_root = config.source_root.clone();
        let (registry, store, serving) = tokio::task::spawn_blocking(move || {
            let registry = Arc::new(Registry::open(&data_dir, engine)?);
            let project = registry.project();
            let schemas = project
                .as_deref()
                .map(skewless_online::view_schemas)
                .unwrap_or_default();
            let store: Arc<dyn OnlineStore> = match &redis {
                Some(redis) => Arc::new(RedisStore::open(redis, &schemas)?),
                None => Arc::new(LocalStore::open(
                    &data_dir.join("online"),
                    &schemas,
                    store_options,
                )?),
            };
            let store = layer(store);
            if let Some(project) = &project {
                skewless_ops::events::set_event_sources(&*store, project, &source_root)?;
            }
            let serving = match &project {
                Some(p) => Serving::build(p, &registry)?,
                None => Serving::empty(),
            };
            Ok::<_, StartError>((registry, store, serving))
        })
        .await
        .map_err(|e| StartError::Internal(e.to_string()))??;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let state = Arc::new(state::AppState::new(config, registry, store, serving));
        Ok(Server { state, listener })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.listen)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    ///
    /// Needs a multi-threaded tokio runtime: transform calls run under
    /// `block_in_place`, so a slow guest never stalls the other requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = routes::router(self.state.clone());
        tracing::info!(addr = %self.local_addr(), "serving");
        accept::serve(self.listener, app, self.state, shutdown).await
    }
}
