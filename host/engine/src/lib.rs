//! The Skewless engine: the only crate that touches wasmtime.
//!
//! Wasmtime can run almost anything; this crate narrows it to what Skewless needs and
//! promises. A transform is a WebAssembly component of the `skewless:transform` world
//! (see `wit/`). The engine
//!
//! - validates a component once, at load: a component (not a core module), of our world,
//!   importing nothing beyond WASI 0.2, with a valid declared [`Signature`];
//! - compiles it once, caching the compiled artifact on disk keyed by the component's
//!   sha256, the wasmtime version and the engine settings ([`cache`]);
//! - runs every call in a fresh `Store` built from one shared `InstancePre`, under a memory
//!   cap, an epoch deadline and an output-size cap ([`Limits`]), with a deterministic,
//!   locked-down WASI context ([`sandbox`]): no state survives a call, so the same input
//!   gives the same bits online and offline;
//! - converts Arrow batches to the contract's columnar shape and back, checking the input
//!   against the signature before the call and the output after it ([`convert`]).
//!
//! It does not know about feature views, stores, or HTTP: callers hand it Arrow
//! `RecordBatch`es and get `RecordBatch`es back.

#![deny(missing_docs)]

mod bindings;
pub mod cache;
mod config;
pub mod convert;
mod engine;
mod error;
pub mod sandbox;
mod transform;

pub use cache::sha256_hex;
pub use config::{EngineConfig, Limits};
pub use engine::Engine;
pub use error::{Error, Fault, Result};
pub use skewless_core::{ColumnSpec, DType, Signature};
pub use transform::Transform;

/// The wasmtime release this engine is built on (the workspace's pin, read by `build.rs`);
/// part of the compile-cache key.
pub const WASMTIME_VERSION: &str = env!("SKEWLESS_WASMTIME_VERSION");
