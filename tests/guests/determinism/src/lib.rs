//! Everything that could make a result depend on more than its input, in one transform:
//! NaN-producing arithmetic (whose bit patterns differ between CPUs unless canonicalized),
//! the wall clock, the random source, hash-map iteration order, and state kept in a static
//! between calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use skewless_sdk::{DType, Input, Output, Result, Signature, Transform, ValuesColumn, export};

static CALLS: AtomicI64 = AtomicI64::new(0);

#[derive(Debug)]
struct Determinism;

impl Transform for Determinism {
    fn signature() -> Signature {
        Signature::new()
            .input("a", DType::Float64)
            .input("b", DType::Float64)
            .output("quotient", DType::Float64)
            .output("difference", DType::Float64)
            .output("sqrt", DType::Float64)
            .output("product", DType::Float64)
            .output("f32_sum", DType::Float64)
            .output("simd", DType::Float64)
            .output("relaxed_madd", DType::Float64)
            .output("scalar_fma", DType::Float64)
            .output("clock_micros", DType::Int64)
            .output("random", DType::Int64)
            .output("hash_order", DType::Int64)
            .output("call_number", DType::Int64)
    }

    fn transform(input: &Input) -> Result<Output> {
        let a = input.float64("a")?;
        let b = input.float64("b")?;
        let rows = input.rows();
        let call = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(-1);
        let random = random_keyed_hash();
        let map: HashMap<i64, i64> = (0..64).map(|i| (i, i)).collect();
        let order = map.keys().take(8).fold(0i64, |acc, k| acc * 64 + k);

        let constant = |v: i64| ValuesColumn::from_values(vec![v; rows]);
        Ok(Output::new(rows)
            .float64("quotient", a.zip_map(&b, |x, y| x / y))
            .float64("difference", a.zip_map(&b, |x, y| (x * y) - (x * y)))
            .float64("sqrt", a.map(|x| (-x.abs() - 1.0).sqrt()))
            .float64("product", a.zip_map(&b, |x, y| x * y * f64::INFINITY))
            .float64("f32_sum", a.zip_map(&b, |x, y| f64::from((x as f32) + (y as f32) * f32::NAN)))
            .float64("simd", a.zip_map(&b, |x, y| lanes(x, y).0))
            .float64("relaxed_madd", a.zip_map(&b, |x, y| lanes(x, y).1))
            // `mul_add` is one rounding (a correctly rounded software fma in wasm): the
            // rounding error of x * y, the same everywhere.
            .float64("scalar_fma", a.zip_map(&b, |x, y| x.mul_add(y, -(x * y))))
            .int64("clock_micros", constant(clock))
            .int64("random", constant(random))
            .int64("hash_order", constant(order))
            .int64("call_number", constant(call)))
    }
}

/// SIMD lanes: (1) min (NaN-propagating, -0 below +0), sqrt, multiply and add on f64x2;
/// (2) the relaxed fused multiply-add of x * y - x * y, which is the rounding error of
/// x * y where the hardware fuses and 0 where it does not, unless the engine pins it.
#[target_feature(enable = "simd128,relaxed-simd")]
fn lanes(x: f64, y: f64) -> (f64, f64) {
    use core::arch::wasm32::*;
    let v = f64x2(x, y);
    let w = f64x2(y, x);
    let min = f64x2_min(v, w);
    let mixed = f64x2_add(f64x2_sqrt(f64x2_sub(min, w)), f64x2_mul(v, w));
    let product = f64x2_mul(v, w);
    let fused = f64x2_relaxed_madd(v, w, f64x2_neg(product));
    (
        f64x2_extract_lane::<0>(mixed) - f64x2_extract_lane::<1>(mixed),
        f64x2_extract_lane::<0>(fused),
    )
}

/// A hash under fresh `RandomState` keys, which std draws from the WASI random source:
/// it changes whenever that source does.
fn random_keyed_hash() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() as i64
}

export!(Determinism);
