use std::path::PathBuf;
use std::time::Duration;

/// Limits every transform call runs under. A call that exceeds one fails alone, with an
/// error naming the limit; the engine and every other call carry on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory one call's instance may grow to, in bytes. It also bounds
    /// the input a call can take, since the input is copied into guest memory.
    pub memory_bytes: usize,
    /// How long one call may run before it is interrupted (checked at epoch ticks, so
    /// the real cut-off is up to one [`EngineConfig::epoch_tick`] later).
    pub deadline: Duration,
    /// The largest output batch a call may return, in bytes of column data.
    pub max_output_bytes: usize,
    /// The most WebAssembly stack one call may use, in bytes.
    pub max_wasm_stack: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            deadline: Duration::from_secs(10),
            max_output_bytes: 256 << 20,
            max_wasm_stack: 1 << 20,
        }
    }
}

/// How to build an [`Engine`](crate::Engine).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Per-call limits.
    pub limits: Limits,
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// How many calls may run at once (instance slots of the pooling allocator).
    pub max_concurrent_calls: u32,
    /// How often the deadline clock ticks.
    pub epoch_tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            cache_dir: None,
            max_concurrent_calls: 128,
            epoch_tick: Duration::from_millis(5),
        }
    }
}
