//! Shared helpers: one engine per test binary, batch builders.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use skewless_engine::{Engine, EngineConfig, Limits, Transform};

/// Limits small enough that hostile guests hit them fast.
pub fn test_limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        deadline: Duration::from_millis(500),
        max_output_bytes: 16 << 20,
        ..Limits::default()
    }
}

/// One engine for the whole test binary, as a server would have.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(EngineConfig {
            limits: test_limits(),
            max_concurrent_calls: 32,
            // Shared by every test server of every run: a Python or JavaScript component
            // takes seconds to compile, a cached one milliseconds to load.
            cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compiled")),
            ..EngineConfig::default()
        })
        .expect("engine")
    })
}

/// Loads a fixture component by path.
pub fn load(path: &str) -> Transform {
    engine().load_file(path).expect("fixture loads")
}

/// A batch from named columns.
pub fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("valid batch")
}

/// The hostile guest's input: `mode` in every row, and `x`.
pub fn hostile_input(mode: &str, rows: usize) -> RecordBatch {
    batch(vec![
        (
            "mode",
            Arc::new(StringArray::from(vec![mode; rows])) as ArrayRef,
        ),
        (
            "x",
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
        ),
    ])
}

/// A server on 127.0.0.1:0 in its own runtime, stopped on drop.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server over `data_dir`, with an optional write token.
    pub fn start(data_dir: &std::path::Path, token: Option<&str>) -> TestServer {
        Self::start_with(data_dir, token, skewless_online::StoreOptions::default())
    }

    /// [`TestServer::start`] with these online-store options.
    pub fn start_with(
        data_dir: &std::path::Path,
        token: Option<&str>,
        store: skewless_online::StoreOptions,
    ) -> TestServer {
        Self::start_configured(data_dir, |config| {
            config.store = store;
            config.token = token.map(str::to_owned);
        })
    }

    /// A server over `data_dir` with the test defaults, then `configure` applied.
    pub fn start_configured(
        data_dir: &std::path::Path,
        configure: impl FnOnce(&mut skewless_server::ServerConfig),
    ) -> TestServer {
        Self::start_layered(data_dir, configure, Box::new(|store| store))
    }

    /// [`TestServer::start_configured`], the store wrapped in `layer`.
    pub fn start_layered(
        data_dir: &std::path::Path,
        configure: impl FnOnce(&mut skewless_server::ServerConfig),
        layer: skewless_server::StoreLayer,
    ) -> TestServer {
        let mut config = skewless_server::ServerConfig::new(data_dir);
        config.listen = "127.0.0.1:0".parse().unwrap();
        // Jobs read their Parquet files from the data directory.
        config.source_root = data_dir.to_owned();
        config.max_body_bytes = 1 << 20;
        config.max_module_bytes = 8 << 20;
        configure(&mut config);
        let engine = engine().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = skewless_server::Server::bind_layered(config, engine, layer)
                    .await
                    .expect("server starts");
                ready.send(server.local_addr()).unwrap();
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TestServer {
            addr: addr.recv().expect("server reports its address"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// One request; returns the status and body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> (u16, String) {
        http(self.addr, method, path, body, token)
    }

    /// Waits for the job `accepted` (a 202 answer) to end; returns its last status.
    pub fn wait_job(&self, accepted: &serde_json::Value) -> serde_json::Value {
        let id = accepted["id"].as_str().expect("a job id");
        assert_eq!(accepted["state"], "running");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, job) =
                self.json("GET", &format!("/v1/jobs/{id}"), &serde_json::Value::Null);
            assert_eq!(status, 200, "{job}");
            if job["state"] != "running" {
                return job;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} still running: {job}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A JSON request; returns the status and parsed body.
    pub fn json(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let (status, text) = self.call(method, path, body.to_string().as_bytes(), None);
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, value)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A minimal HTTP/1.1 client over one connection: enough for tests, no mocks.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    token: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n{auth}connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (413) before reading a large body; a reset then is expected.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Writes one Parquet file of `columns`, creating its directory.
pub fn write_parquet(path: &std::path::Path, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().expect("a file path")).unwrap();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Every row of a Parquet file (or directory), in one batch.
pub fn read_parquet(path: &std::path::Path) -> RecordBatch {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .expect("a batch, even an empty file has its schema");
    arrow_select::concat::concat_batches(&schema, &batches).unwrap()
}

/// A small deterministic generator: the tests need variety, not quality.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next(100) < percent
    }

    /// One of `items`.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.next(items.len() as u64) as usize].clone()
    }
}

pub use skewless_test_artifacts::RedisServer;

/// Options for an online store under `prefix` on `redis`.
pub fn redis_options(redis: &RedisServer, prefix: &str) -> skewless_online::RedisOptions {
    let mut options = skewless_online::RedisOptions::new(redis.url());
    options.prefix = prefix.to_owned();
    options
}

/// A store wrapped with planted faults, for tests of what Skewless does when its store
/// misbehaves. Everything not planted goes to the store it wraps.
#[derive(Debug)]
pub struct FaultyStore {
    inner: std::sync::Arc<dyn skewless_online::OnlineStore>,
    /// Reads one microsecond late: a skew at the TTL boundary (`at - ttl < ts` instead of
    /// `<=`), for the tests of the differential suite and of verify.
    skew: bool,
    /// While set, writes are refused as a full disk refuses them.
    full: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl FaultyStore {
    /// A [`skewless_server::StoreLayer`] that plants the TTL-boundary skew.
    pub fn skewed() -> skewless_server::StoreLayer {
        Box::new(|inner| {
            std::sync::Arc::new(FaultyStore {
                inner,
                skew: true,
                full: None,
            })
        })
    }

    /// A [`skewless_server::StoreLayer`] whose store refuses writes while `full` is set.
    pub fn full_disk(
        full: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> skewless_server::StoreLayer {
        Box::new(move |inner| {
            std::sync::Arc::new(FaultyStore {
                inner,
                skew: false,
                full: Some(full),
            })
        })
    }

    fn is_full(&self) -> bool {
        self.full
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl skewless_online::OnlineStore for FaultyStore {
    fn set_views(&self, views: &[skewless_online::ViewSchema]) -> skewless_online::Result<()> {
        self.inner.set_views(views)
    }

    fn write(&self, view: &str, batch: skewless_online::WriteBatch) -> skewless_online::Result<()> {
        if self.is_full() {
            return Err(skewless_online::Error::WriteRefused(
                "wal-000000000000.log: No space left on device".into(),
            ));
        }
        self.inner.write(view, batch)
    }

    fn read(
        &self,
        view: &str,
        fingerprint: u64,
        keys: &[&[u8]],
        at: i64,
        out: &mut skewless_core::assemble::ViewColumnsBuilder,
    ) -> skewless_online::Result<()> {
        let at = if self.skew { at.saturating_add(1) } else { at };
        self.inner.read(view, fingerprint, keys, at, out)
    }

    fn stats(&self) -> skewless_online::StoreStats {
        self.inner.stats()
    }

    fn writable(&self) -> Option<bool> {
        if self.is_full() {
            Some(false)
        } else {
            self.inner.writable()
        }
    }

    fn blocks(&self) -> bool {
        self.inner.blocks()
    }

    fn set_event_sources(
        &self,
        sources: &[skewless_online::EventSchema],
        history: skewless_online::History,
        rebuild: &[String],
    ) -> skewless_online::Result<()> {
        self.inner.set_event_sources(sources, history, rebuild)
    }

    fn keeps_aggregates(&self) -> bool {
        self.inner.keeps_aggregates()
    }

    fn append_events(
        &self,
        source: &str,
        batch: skewless_online::EventBatch,
    ) -> skewless_online::Result<usize> {
        if self.is_full() {
            return Err(skewless_online::Error::WriteRefused(
                "wal-000000000000.log: No space left on device".into(),
            ));
        }
        self.inner.append_events(source, batch)
    }

    fn flush_events(&self) -> skewless_online::Result<()> {
        self.inner.flush_events()
    }
}
