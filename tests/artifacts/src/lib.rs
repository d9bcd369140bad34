//! Paths of compiled guest components, for tests and benches.
//!
//! `build.rs` builds every example transform (`example-transforms/`) and every test
//! fixture guest (`tests/guests/`, good and hostile) for `wasm32-wasip2` with the `guest`
//! profile, and exposes each component's absolute path as a constant named after its
//! package (`FRAUD_RISK`, `HOSTILE`, ...).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
