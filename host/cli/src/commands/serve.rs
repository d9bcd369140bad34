//! `skewless serve`: the HTTP server on a data directory (or a Redis store) until Ctrl-C or
//! SIGTERM, finishing in-flight requests. This is the only use of `skewless-server`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::EngineArgs;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The data directory (registry, online store, compiled modules).
    #[arg(long, env = "SKEWLESS_DATA_DIR", default_value = "skewless-data")]
    data_dir: PathBuf,
    /// The address to listen on. A non-loopback address needs --token.
    #[arg(long, env = "SKEWLESS_LISTEN", default_value = "127.0.0.1:6566")]
    listen: std::net::SocketAddr,
    /// The bearer token that writes (upload, apply, push) must carry.
    #[arg(long, env = "SKEWLESS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The largest request body, except module uploads, in MiB.
    #[arg(long, default_value_t = 16)]
    max_body_mib: usize,
    /// The largest module upload, in MiB.
    #[arg(long, default_value_t = 256)]
    max_module_mib: usize,
    /// Snapshot the online store after this many MiB of write-ahead log.
    #[arg(long, default_value_t = 256)]
    snapshot_after_mib: u64,
    /// The directory that relative paths of jobs (`POST /v1/backfill`, `POST
    /// /v1/materialize`) resolve against, source paths in the definitions included.
    #[arg(long, default_value = ".")]
    source_root: PathBuf,
    /// Snapshot the online store at least this often while there are writes, in seconds.
    #[arg(long, default_value_t = 300)]
    snapshot_interval_secs: u64,
    /// Start although the online store's write-ahead log has damaged records: keep every
    /// intact record and skip the damaged bytes (their rows are lost; each skip is logged).
    /// Without it, damage stops the start with an error naming the segment and the byte,
    /// and nothing is changed. Needed until the next snapshot covers the damaged segment.
    #[arg(long)]
    recover_skip_corrupt: bool,
    /// Write pushed events to their source's offline log (Parquet under its `path`) once
    /// the oldest has waited this many seconds; a backfill started over HTTP flushes
    /// first, one run offline sees what was flushed. With --redis, pushed events wait in
    /// Redis, and every server on the store flushes this often, one at a time, into the
    /// same (shared) source directories.
    #[arg(long, default_value_t = 60)]
    event_flush_secs: u64,
    /// Close a connection whose client has not sent a request's headers within this many
    /// seconds, and a keep-alive connection idle that long (slow or stuck clients cannot
    /// hold sockets forever).
    #[arg(long, default_value_t = 30)]
    header_timeout_secs: u64,
    /// The most connections served at once; one more is answered 503 and closed.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Served rows kept per feature service (a uniform sample) for `skewless verify` and
    /// the drift report; 0 keeps none.
    #[arg(long, default_value_t = 1000)]
    sample_rows: usize,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Where the online store lives when it is not in the data directory.
#[derive(Debug, Clone, Args)]
pub(crate) struct RedisArgs {
    /// Keep the online store in Redis (`redis://[user:password@]host:port[/db]`) instead
    /// of the data directory, so that several servers serve from one store. Redis must
    /// fsync every write (`appendonly yes`, `appendfsync always`) unless
    /// --redis-allow-unsynced is given.
    #[arg(long, env = "SKEWLESS_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// The prefix of every Redis key: servers sharing a Redis and a prefix must apply the
    /// same definitions.
    #[arg(long, default_value = "skewless", requires = "redis")]
    redis_prefix: String,
    /// Use a Redis that does not fsync every write: a write acknowledged just before Redis
    /// crashes can be lost.
    #[arg(long, requires = "redis")]
    redis_allow_unsynced: bool,
}

impl RedisArgs {
    pub(crate) fn options(&self) -> Option<skewless_online::RedisOptions> {
        self.redis
            .as_ref()
            .map(|url| skewless_online::RedisOptions {
                url: url.clone(),
                prefix: self.redis_prefix.clone(),
                require_fsync: !self.redis_allow_unsynced,
                ..skewless_online::RedisOptions::new(url.clone())
            })
    }
}

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let engine = args
        .engine
        .engine_with(1_000, Some(args.data_dir.join("compiled")))?;
    let store = skewless_online::StoreOptions {
        recover_skip_corrupt: args.recover_skip_corrupt,
        event_flush_interval: std::time::Duration::from_secs(args.event_flush_secs),
        ..skewless_online::StoreOptions::new(
            args.snapshot_after_mib << 20,
            Duration::from_secs(args.snapshot_interval_secs),
        )
    };
    let config = skewless_server::ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        token: args.token.clone(),
        max_body_bytes: args.max_body_mib << 20,
        max_module_bytes: args.max_module_mib << 20,
        store,
        redis: args.redis.options().map(|o| skewless_online::RedisOptions {
            event_flush_interval: std::time::Duration::from_secs(args.event_flush_secs),
            ..o
        }),
        source_root: args.source_root.clone(),
        sample_rows: args.sample_rows,
        header_read_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        max_connections: args.max_connections,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skewless-http")
        .build()?;
    runtime.block_on(async move {
        let server = skewless_server::Server::bind(config, engine).await?;
        // Tests and scripts read this line to learn the port when listening on :0.
        println!("listening on http://{}", server.local_addr());
        server.run(shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
