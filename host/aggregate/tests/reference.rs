//! The kernel against exact arithmetic in Python (`fractions`, integer square roots): on
//! random windows of cent amounts, of large and tiny magnitudes and of int64s, every sum,
//! mean, variance and standard deviation is the correctly rounded exact value.

mod common;

use common::Rng;

use std::io::Write;
use std::process::{Command, Stdio};

use skewless_aggregate::{Aggregate, EventTime, Function, Input, Scalar};
use skewless_core::DType;

const FUNCTIONS: [Function; 6] = [
    Function::Sum,
    Function::Mean,
    Function::VarPop,
    Function::VarSamp,
    Function::StddevPop,
    Function::StddevSamp,
];

const PYTHON: &str = r#"
import json, math, struct, sys
from fractions import Fraction as F

def bits(x):
    return None if x is None else struct.unpack("<Q", struct.pack("<d", x))[0]

def to_float(f):
    try:
        return float(f)
    except OverflowError:
        return math.inf if f > 0 else -math.inf

def nearest_sqrt(v):
    if v == 0:
        return 0.0
    # A guess within an ulp: the integer root of v scaled to about 2^120, scaled back.
    k = 120 - (v.numerator.bit_length() - v.denominator.bit_length())
    k += k % 2
    scaled = v.numerator * 2**k // v.denominator if k >= 0 else v.numerator // (v.denominator * 2**-k)
    guess = math.ldexp(float(math.isqrt(scaled)), -k // 2)
    best = None
    for c in (math.nextafter(guess, 0), guess, math.nextafter(guess, math.inf)):
        lo = (F(c) + F(math.nextafter(c, 0))) / 2
        hi = (F(c) + F(math.nextafter(c, math.inf))) / 2
        if lo * lo <= v <= hi * hi:
            best = c
    assert best is not None, v
    return best

out = []
for line in sys.stdin:
    xs = [F(x) for x in json.loads(line)]
    n = len(xs)
    s = sum(xs, F(0))
    mean = s / n
    ss = sum((x - mean) ** 2 for x in xs)
    row = [to_float(s), to_float(mean), to_float(ss / n)]
    row.append(to_float(ss / (n - 1)) if n > 1 else None)
    row.append(nearest_sqrt(ss / n))
    row.append(nearest_sqrt(ss / (n - 1)) if n > 1 else None)
    row = [bits(x) for x in row]
    naive = math.fsum(float(x) for x in xs) / n
    row.append(naive != to_float(mean))
    row.append(n > 1 and math.sqrt(to_float(ss / n)) != nearest_sqrt(ss / n))
    out.append(row)
print(json.dumps(out))
"#;

/// A window's values: cent amounts mostly, else magnitudes far apart, or int64s.
fn window(rng: &mut Rng) -> (DType, Vec<f64>, Vec<i64>, bool) {
    let n = 1 + rng.below(60) as usize;
    match rng.below(4) {
        0 => {
            let kinds = [1e300, 1e-300, 1e150, 3.0, 5e-324];
            let v = (0..n)
                .map(|_| {
                    let k = kinds[rng.below(kinds.len() as u64) as usize];
                    let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
                    sign * k * (1.0 + rng.below(1000) as f64 / 7.0)
                })
                .collect();
            (DType::Float64, v, Vec::new(), false)
        }
        1 => {
            let v = (0..n)
                .map(|_| rng.below(2_000_000_000) as i64 - 1_000_000_000)
                .collect();
            (DType::Int64, Vec::new(), v, false)
        }
        _ => {
            let v = (0..n).map(|_| rng.below(100_000) as f64 / 100.0).collect();
            (DType::Float64, v, Vec::new(), true)
        }
    }
}

#[test]
fn sums_means_variances_and_deviations_are_correctly_rounded() {
    let mut rng = Rng(3);
    let windows: Vec<_> = (0..400).map(|_| window(&mut rng)).collect();
    let mut python = Command::new("python3")
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        let mut stdin = python.stdin.take().unwrap();
        for (dtype, floats, ints, _) in &windows {
            // Exact decimal text of each value: repr round-trips, ints are exact.
            let items: Vec<String> = match dtype {
                DType::Int64 => ints.iter().map(|v| format!("\"{v}\"")).collect(),
                _ => floats
                    .iter()
                    .map(|v| format!("\"{}\"", exact_decimal(*v)))
                    .collect(),
            };
            writeln!(stdin, "[{}]", items.join(",")).unwrap();
        }
    }
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<Vec<serde_json::Value>> = serde_json::from_slice(&output.stdout).unwrap();
    let (mut mean_differs, mut stddev_differs, mut cent_windows) = (0, 0, 0);
    for ((dtype, floats, ints, cents), want) in windows.iter().zip(&expected) {
        for (i, function) in FUNCTIONS.iter().enumerate() {
            if *function == Function::Sum && *dtype == DType::Int64 {
                continue;
            }
            let agg = Aggregate {
                function: *function,
                input: Some(*dtype),
            };
            let mut state = agg.init();
            let at = EventTime {
                event: 0,
                created: 0,
            };
            match dtype {
                DType::Int64 => ints
                    .iter()
                    .for_each(|v| agg.update(&mut state, Input::Int(*v), at)),
                _ => floats
                    .iter()
                    .for_each(|v| agg.update(&mut state, Input::Float(*v), at)),
            }
            let got = match agg.finalize(&state).unwrap() {
                Some(Scalar::Float(v)) => Some(v),
                None => None,
                other => panic!("{other:?}"),
            };
            let want = want[i].as_u64().map(f64::from_bits);
            let same = match (got, want) {
                (Some(g), Some(w)) => g.to_bits() == w.to_bits() || (g == 0.0 && w == 0.0),
                (g, w) => g == w,
            };
            assert!(
                same,
                "{function:?} of {floats:?}{ints:?}: got {got:?}, exact {want:?}"
            );
        }
        if *cents {
            cent_windows += 1;
            mean_differs += usize::from(want[6].as_bool() == Some(true));
            stddev_differs += usize::from(want[7].as_bool() == Some(true));
        }
    }
    // What a naive kernel would get wrong here (docs/aggregations.md quotes it).
    eprintln!(
        "of {cent_windows} windows of cent amounts, fsum/n misses the correctly rounded mean in {mean_differs} and sqrt(rounded variance) misses the correctly rounded deviation in {stddev_differs}"
    );
}

/// The exact decimal expansion of a finite binary64 (Python's `Fraction` reads it).
fn exact_decimal(v: f64) -> String {
    // `{:e}` with enough digits is exact for every binary64 (at most 767 significant).
    format!("{v:.800e}")
}
