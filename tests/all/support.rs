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
