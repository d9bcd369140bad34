//! The same input gives the same output bits, call after call, instance after instance:
//! NaN payloads are canonical, the clock is frozen, randomness is constant, and no state
//! survives a call.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use skewless_engine::{Engine, EngineConfig};
use skewless_test_artifacts as artifacts;

use crate::support::{batch, load};

/// Inputs that produce NaNs with payloads and signs that differ between x86 and ARM
/// unless canonicalized.
fn nan_input() -> RecordBatch {
    let special = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001), // signalling NaN
        f64::from_bits(0xfff8_dead_beef_0001), // NaN with a payload
        f64::MIN_POSITIVE,
        1e308,
    ];
    let a: Vec<f64> = special.iter().flat_map(|&x| special.map(|_| x)).collect();
    let b: Vec<f64> = special.iter().flat_map(|_| special).collect();
    batch(vec![
        ("a", Arc::new(Float64Array::from(a)) as ArrayRef),
        ("b", Arc::new(Float64Array::from(b)) as ArrayRef),
    ])
}

/// Every float output of the determinism guest, SIMD and fused multiply-adds included.
const FLOAT_OUTPUTS: [&str; 8] = [
    "quotient",
    "difference",
    "sqrt",
    "product",
    "f32_sum",
    "simd",
    "relaxed_madd",
    "scalar_fma",
];

fn float_bits(batch: &RecordBatch, column: &str) -> Vec<u64> {
    let array = batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>();
    array.values().iter().map(|v| v.to_bits()).collect()
}

fn int(batch: &RecordBatch, column: &str) -> i64 {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Int64Type>()
        .value(0)
}

#[test]
fn nan_arithmetic_is_bit_identical_across_calls_and_engines() {
    let input = nan_input();
    let t = load(artifacts::DETERMINISM);
    let first = t.call(&input).unwrap();
    for _ in 0..3 {
        let again = t.call(&input).unwrap();
        for column in FLOAT_OUTPUTS {
            assert_eq!(
                float_bits(&first, column),
                float_bits(&again, column),
                "{column}"
            );
        }
    }
    // A separately built engine (as another process or host would have) agrees too.
    let other = Engine::new(EngineConfig::default()).unwrap();
    let t2 = other.load_file(artifacts::DETERMINISM).unwrap();
    let elsewhere = t2.call(&input).unwrap();
    for column in FLOAT_OUTPUTS {
        assert_eq!(
            float_bits(&first, column),
            float_bits(&elsewhere, column),
            "{column}"
        );
    }
    // And every NaN it produced is the canonical one.
    for column in FLOAT_OUTPUTS {
        for bits in float_bits(&first, column) {
            if f64::from_bits(bits).is_nan() {
                assert_eq!(
                    bits, 0x7ff8_0000_0000_0000,
                    "{column}: non-canonical NaN {bits:#x}"
                );
            }
        }
    }
}

#[test]
fn clock_random_and_hashing_are_constant() {
    let input = nan_input();
    let t = load(artifacts::DETERMINISM);
    let first = t.call(&input).unwrap();
    assert_eq!(
        int(&first, "clock_micros"),
        0,
        "the clock is frozen at the epoch"
    );
    let second = t.call(&input).unwrap();
    for column in ["random", "hash_order"] {
        assert_eq!(int(&first, column), int(&second, column), "{column}");
    }
    assert_ne!(int(&first, "random"), 0);
}

#[test]
fn no_state_survives_a_call() {
    let input = nan_input();
    let t = load(artifacts::DETERMINISM);
    for _ in 0..5 {
        let out = t.call(&input).unwrap();
        assert_eq!(
            int(&out, "call_number"),
            1,
            "a static counter must restart every call"
        );
    }
}

#[test]
fn output_does_not_depend_on_batching() {
    // One call over all rows equals calls over slices: a transform is row-wise here, and
    // the engine adds nothing that depends on batch boundaries.
    let input = nan_input();
    let t = load(artifacts::DETERMINISM);
    let whole = t.call(&input).unwrap();
    let mut parts = Vec::new();
    let mut offset = 0;
    while offset < input.num_rows() {
        let len = 17.min(input.num_rows() - offset);
        let part = t.call(&input.slice(offset, len)).unwrap();
        parts.extend(float_bits(&part, "quotient"));
        offset += len;
    }
    assert_eq!(float_bits(&whole, "quotient"), parts);
    assert_eq!(whole.column(0).len(), input.num_rows());
}
