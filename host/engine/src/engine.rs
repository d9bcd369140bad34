use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::bindings::FeatureTransformPre;
use sha2::{Digest, Sha256};

use crate::cache::{CompileCache, sha256_hex};
use crate::sandbox::CallState;
use crate::transform::Transform;
use crate::{EngineConfig, Error, Limits, Result, WASMTIME_VERSION};

/// Import namespaces a component may use: the WASI 0.2 interfaces language runtimes pull
/// in. Everything behind them is locked down (see [`crate::sandbox`]).
const ALLOWED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Loads, validates and compiles transforms, and owns everything their calls share: the
/// wasmtime engine and its settings, the WASI linker, the instance pool, the deadline clock
/// and the compile cache. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.inner.limits)
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

pub(crate) struct EngineInner {
    pub(crate) wasmtime: wasmtime::Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) limits: Limits,
    pub(crate) epoch_tick: Duration,
    fingerprint: String,
    cache: Option<CompileCache>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// Builds an engine with `config`.
    pub fn new(config: EngineConfig) -> Result<Self> {
        let wasmtime = wasmtime::Engine::new(&wasmtime_config(&config))
            .map_err(|e| Error::Internal(format!("engine configuration: {e:#}")))?;
        let mut linker = Linker::new(&wasmtime);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| crate::sandbox::link_frozen_timers(&mut linker))
            .map_err(|e| Error::Internal(format!("linking WASI: {e:#}")))?;
        let cache = config.cache_dir.map(CompileCache::open).transpose()?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(&wasmtime, config.epoch_tick, Arc::clone(&ticker_stop))?;
        let fingerprint = fingerprint(&wasmtime);
        Ok(Self {
            inner: Arc::new(EngineInner {
                wasmtime,
                linker,
                limits: config.limits,
                epoch_tick: config.epoch_tick,
                fingerprint,
                cache,
                ticker_stop,
            }),
        })
    }

    /// The per-call limits every transform of this engine runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The engine fingerprint: wasmtime version and code-generation settings, hashed.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Reads a component from `path` and [`load`](Self::load)s it, labelled by file name.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Transform> {
        let path = path.as_ref();
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let bytes = std::fs::read(path).map_err(|e| Error::InvalidComponent {
            transform: label.clone(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        self.load(&label, &bytes)
    }

    /// Validates and compiles (or loads from cache) the component `bytes`, labelled
    /// `label` in errors (such as `fraud_risk@1.0.0`): checks it is a component, imports
    /// only WASI 0.2, exports the `skewless:transform` world, and declares a valid
    /// signature. The returned [`Transform`] is ready to call from any thread.
    pub fn load(&self, label: &str, bytes: &[u8]) -> Result<Transform> {
        check_header(label, bytes)?;
        let sha256 = sha256_hex(bytes);
        let (component, from_cache) = self.compile(label, &sha256, bytes)?;
        self.check_imports(label, &component)?;
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            Error::UnsupportedImport {
                transform: label.to_owned(),
                imports: vec![format!("{e:#}")],
            }
        })?;
        let pre = FeatureTransformPre::new(instance_pre).map_err(|e| Error::WrongWorld {
            transform: label.to_owned(),
            reason: format!("{e:#}"),
        })?;
        let transform = Transform::new(self.clone(), label.to_owned(), sha256, pre, from_cache)?;
        if !from_cache {
            self.remember(label, transform.sha256(), &component)?;
        }
        Ok(transform)
    }

    /// The compiled component, and whether it came from the cache.
    fn compile(&self, label: &str, sha256: &str, bytes: &[u8]) -> Result<(Component, bool)> {
        let engine = &self.inner.wasmtime;
        let key = self.cache_key(sha256);
        if let Some(cache) = &self.inner.cache
            && let Some(artifact) = cache.get(&key)
        {
            // SAFETY: the cache hands back only bytes this host serialized itself
            // (their digest is checked against the one recorded at write time), and
            // wasmtime checks the version and settings they were compiled with.
            #[expect(unsafe_code, reason = "deserializing our own compiled artifact")]
            let loaded = unsafe { Component::deserialize(engine, &artifact) };
            match loaded {
                Ok(component) => {
                    tracing::debug!(
                        transform = label,
                        key,
                        "loaded compiled component from cache"
                    );
                    return Ok((component, true));
                }
                Err(e) => {
                    tracing::warn!(transform = label, key, error = %e, "cached artifact unusable; recompiling")
                }
            }
        }
        let started = std::time::Instant::now();
        let component = Component::new(engine, bytes).map_err(|e| Error::InvalidComponent {
            transform: label.to_owned(),
            reason: format!("{e:#}"),
        })?;
        tracing::info!(
            transform = label,
            bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled component"
        );
        Ok((component, false))
    }

    /// Caches a freshly compiled component. Called only once the component has passed
    /// every check, so refused uploads never take cache space.
    fn remember(&self, label: &str, sha256: &str, component: &Component) -> Result<()> {
        let Some(cache) = &self.inner.cache else {
            return Ok(());
        };
        let artifact = component
            .serialize()
            .map_err(|e| Error::Internal(format!("serializing {label}: {e:#}")))?;
        cache.put(&self.cache_key(sha256), &artifact)
    }

    fn cache_key(&self, sha256: &str) -> String {
        format!("{sha256}-{}", self.inner.fingerprint)
    }

    fn check_imports(&self, label: &str, component: &Component) -> Result<()> {
        let ty = component.component_type();
        let refused: Vec<String> = ty
            .imports(&self.inner.wasmtime)
            .map(|(name, _)| name)
            .filter(|name| !is_allowed_import(name))
            .map(str::to_owned)
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(Error::UnsupportedImport {
                transform: label.to_owned(),
                imports: refused,
            })
        }
    }
}

fn is_allowed_import(name: &str) -> bool {
    ALLOWED_IMPORTS
        .iter()
        .any(|prefix| name.starts_with(prefix))
        && name.contains("@0.2.")
}

/// Tells apart "not wasm", "a core module" and "a component" from the 8-byte header.
fn check_header(label: &str, bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(Error::NotWasm {
            transform: label.to_owned(),
        });
    }
    // Core modules have version 1 and layer 0; components a version with layer 1.
    let layer = u16::from_le_bytes([bytes[6], bytes[7]]);
    if layer == 0 {
        return Err(Error::NotAComponent {
            transform: label.to_owned(),
        });
    }
    Ok(())
}

/// The wasmtime settings of every Skewless engine. Everything here exists for one of two
/// reasons: bit-identical results on every host, or containing a hostile guest.
fn wasmtime_config(config: &EngineConfig) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true)
        // Determinism: NaN bit patterns are canonical and relaxed SIMD instructions take
        // their deterministic semantics, so a float has the same bits on every CPU.
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .cranelift_opt_level(OptLevel::Speed)
        // Deadlines: a ticker thread advances the epoch; each call sets its own deadline.
        .epoch_interruption(true)
        .max_wasm_stack(config.limits.max_wasm_stack)
        .parallel_compilation(true);

    // Every call gets a fresh instance; the pooling allocator makes that cost microseconds.
    let slots = config.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(16))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(16))
        .total_stacks(slots)
        .max_memories_per_component(4)
        .max_memory_size(config.limits.memory_bytes)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .table_elements(1 << 20)
        // Resetting a slot by memset rather than madvise keeps its pages mapped: the next
        // call does not page-fault its way through fresh memory. Measured: a 1M-row
        // float64 call went from 8.6 ms to 3.5 ms (BENCHMARKS.md).
        .linear_memory_keep_resident(64 << 20)
        .table_keep_resident(1 << 20)
        // On Linux 6.7+, reset only the pages a call dirtied instead of memsetting the
        // slot's low addresses (falls back to memset where the ioctl is missing).
        .pagemap_scan(wasmtime::Enabled::Auto);
    // Initialize each instance's memory by copying the data segments, not by mapping a
    // copy-on-write image: mapping and unmapping an image on every call takes the
    // process's memory-map lock, so concurrent calls of a large component (Python,
    // JavaScript) ran no faster on two threads than on one. Measured (BENCHMARKS.md).
    c.memory_init_cow(false);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

/// wasmtime version plus everything wasmtime says makes compiled code incompatible, by
/// sha256: a key that stays the same across Rust releases, as the cache outlives them
/// (`DefaultHasher`'s algorithm may change with any release).
fn fingerprint(engine: &wasmtime::Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher
        .0
        .update(format!("wasmtime-{WASMTIME_VERSION}-").as_bytes());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(hasher.0.finalize())[..16].to_owned()
}

/// Feeds what a `Hash` impl writes into sha256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Only the digest is read (`fingerprint`); a u64 view is its first 8 bytes.
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(
            digest[..8]
                .try_into()
                .expect("a sha256 digest has 32 bytes"),
        )
    }
}

fn spawn_epoch_ticker(
    engine: &wasmtime::Engine,
    tick: Duration,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let engine = engine.clone();
    thread::Builder::new()
        .name("skewless-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .map(drop)
        .map_err(|e| Error::Internal(format!("spawning the deadline ticker: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tells_core_modules_from_components() {
        let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
        let component = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
        assert!(matches!(
            check_header("x", b"hello"),
            Err(Error::NotWasm { .. })
        ));
        assert!(matches!(
            check_header("x", &core),
            Err(Error::NotAComponent { .. })
        ));
        assert!(check_header("x", &component).is_ok());
    }

    #[test]
    fn only_wasi_p2_imports_are_allowed() {
        assert!(is_allowed_import("wasi:cli/environment@0.2.6"));
        assert!(is_allowed_import("wasi:io/streams@0.2.0"));
        assert!(!is_allowed_import("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_allowed_import("wasi:cli/environment@0.3.0"));
        assert!(!is_allowed_import("acme:net/fetch"));
    }
}
