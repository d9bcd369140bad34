use num_bigint::{BigInt, BigUint};
use skewless_core::DType;

use crate::window::{arrived, is_late};
use crate::*;

// The same generator as the integration tests'.
#[path = "../tests/common/mod.rs"]
mod common;
use common::Rng;

#[test]
fn the_u128_ratio_gives_the_big_integer_ratio_bits() {
    let mut rng = Rng(7);
    let mut answered = 0;
    for _ in 0..200_000 {
        let m = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> rng.below(128);
        let d = (rng.next() >> rng.below(64)).max(1);
        // Scales from deep subnormal to overflowing results, and the unit's.
        let scale = match rng.below(4) {
            0 => i64::from(SCALE) - 32 * rng.below(80) as i64,
            1 => rng.below(2400) as i64 - 1200,
            2 => 1074 + rng.below(140) as i64,
            _ => -(rng.below(1100) as i64),
        };
        let negative = rng.below(2) == 0;
        let Some(fast) = crate::exact::round_ratio_u128(m, d, scale, negative) else {
            continue;
        };
        answered += 1;
        let signed = if negative {
            -BigInt::from(m)
        } else {
            BigInt::from(m)
        };
        let exact = round_ratio(&signed, &BigUint::from(d), scale);
        assert_eq!(fast.to_bits(), exact.to_bits(), "{m} / {d} · 2^-{scale}");
    }
    assert!(answered > 150_000, "the fast path answered only {answered}");
}

#[test]
fn ratios_round_as_ieee_division_does() {
    let mut rng = Rng(1);
    for _ in 0..20_000 {
        let a = (rng.next() >> 11) as i64 * if rng.below(2) == 0 { 1 } else { -1 };
        let b = (rng.next() >> (11 + rng.below(40))).max(1);
        let got = round_ratio(&BigInt::from(a), &BigUint::from(b), 0);
        assert_eq!(got.to_bits(), (a as f64 / b as f64).to_bits(), "{a} / {b}");
    }
    // Gradual underflow, ties to even, overflow.
    let one = BigInt::from(1);
    let unit = BigUint::from(1u8);
    assert_eq!(round_ratio(&one, &unit, 1074).to_bits(), 1);
    assert_eq!(
        round_ratio(&one, &unit, 1075).to_bits(),
        0,
        "a tie goes to even 0"
    );
    assert_eq!(round_ratio(&BigInt::from(3), &unit, 1075).to_bits(), 2);
    assert_eq!(round_ratio(&one, &unit, -1024), f64::INFINITY);
    assert_eq!(
        round_ratio(&BigInt::from(-1), &unit, -1024),
        f64::NEG_INFINITY
    );
    assert_eq!(
        round_ratio(&one, &unit, -1023),
        f64::from_bits(0x7fe0_0000_0000_0000)
    );
}

#[test]
fn square_roots_round_as_ieee_sqrt_does() {
    let mut rng = Rng(2);
    for _ in 0..20_000 {
        let a = (rng.next() >> (11 + rng.below(50))).max(1);
        let got = round_sqrt_ratio(&BigUint::from(a), &BigUint::from(1u8), 0);
        assert_eq!(got.to_bits(), (a as f64).sqrt().to_bits(), "sqrt {a}");
    }
    // sqrt(2^-1074 · 4) = 2^-536, and sqrt of a quarter.
    let got = round_sqrt_ratio(&BigUint::from(4u8), &BigUint::from(1u8), 1074);
    assert_eq!(got, 2f64.powi(-536));
    assert_eq!(
        round_sqrt_ratio(&BigUint::from(1u8), &BigUint::from(4u8), 0),
        0.5
    );
}

fn run(function: Function, input: Option<DType>, values: &[Input<'_>]) -> Option<Scalar> {
    let agg = Aggregate { function, input };
    let mut state = agg.init();
    for (i, v) in values.iter().enumerate() {
        let at = EventTime {
            event: i as i64,
            created: i as i64,
        };
        agg.update(&mut state, *v, at);
    }
    agg.finalize(&state).unwrap()
}

fn floats(values: &[f64]) -> Vec<Input<'static>> {
    values.iter().map(|&v| Input::Float(v)).collect()
}

fn float(s: Option<Scalar>) -> f64 {
    match s {
        Some(Scalar::Float(v)) => v,
        other => panic!("not a float: {other:?}"),
    }
}

#[test]
fn float_sums_are_exact_then_rounded_once() {
    let f = Some(DType::Float64);
    let sum = |v: &[f64]| float(run(Function::Sum, f, &floats(v)));
    assert_eq!(sum(&[1e308, 1e308, -1e308]), 1e308);
    assert_eq!(sum(&[0.1; 10]), 1.0);
    assert_eq!(sum(&[1e100, 1.0, -1e100]), 1.0);
    assert_eq!(sum(&[5e-324, 5e-324]).to_bits(), 2);
    assert_eq!(sum(&[1e308, 1e308]), f64::INFINITY);
    assert_eq!(sum(&[1e-300, 1e300, -1e300]), 1e-300);
    // The mean is the exact sum divided once: 0.1 + 0.2 + 0.3 in binary, over 3.
    let mean = float(run(Function::Mean, f, &floats(&[0.1, 0.2, 0.3])));
    assert_eq!(mean, 0.2);
    let ints: Vec<Input<'_>> = [1, 2].iter().map(|&v| Input::Int(v)).collect();
    assert_eq!(float(run(Function::Mean, Some(DType::Int64), &ints)), 1.5);
}

#[test]
fn variance_and_stddev_neither_overflow_nor_cancel() {
    let f = Some(DType::Float64);
    let big = floats(&[1e300, -1e300]);
    assert_eq!(float(run(Function::StddevPop, f, &big)), 1e300);
    assert_eq!(
        float(run(Function::VarPop, f, &big)),
        f64::INFINITY,
        "1e600 overflows"
    );
    let samp = float(run(Function::StddevSamp, f, &big));
    assert_eq!(samp, 1e300 * std::f64::consts::SQRT_2);
    // Large offset, small spread: a naive Σx² − (Σx)²/n loses every digit here.
    let offset = floats(&[1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0]);
    assert_eq!(float(run(Function::VarSamp, f, &offset)), 1.0);
    assert_eq!(float(run(Function::VarPop, f, &offset)), 2.0 / 3.0);
    // Null below the values each needs.
    assert_eq!(run(Function::VarSamp, f, &floats(&[1.0])), None);
    assert_eq!(float(run(Function::VarPop, f, &floats(&[1.0]))), 0.0);
    assert_eq!(run(Function::StddevPop, f, &[]), None);
}

#[test]
fn nan_zero_sign_and_null_rules() {
    let f = Some(DType::Float64);
    let nan = f64::from_bits(skewless_core::CANONICAL_NAN_F64);
    for order in [[0.0, -0.0], [-0.0, 0.0]] {
        let v = floats(&order);
        assert_eq!(
            float(run(Function::Min, f, &v)).to_bits(),
            (-0.0f64).to_bits()
        );
        assert_eq!(float(run(Function::Max, f, &v)).to_bits(), 0.0f64.to_bits());
        assert_eq!(float(run(Function::Sum, f, &v)).to_bits(), 0.0f64.to_bits());
    }
    assert_eq!(
        float(run(Function::Sum, f, &floats(&[-0.0, -0.0]))).to_bits(),
        (-0.0f64).to_bits()
    );
    for function in [Function::Min, Function::Max, Function::Sum, Function::Mean] {
        let v = floats(&[1.0, nan, 2.0]);
        assert!(float(run(function, f, &v)).is_nan(), "{function:?}");
    }
    assert!(
        float(run(
            Function::Sum,
            f,
            &floats(&[f64::INFINITY, f64::NEG_INFINITY])
        ))
        .is_nan()
    );
    assert_eq!(
        float(run(Function::Sum, f, &floats(&[f64::INFINITY, 1.0]))),
        f64::INFINITY
    );
    // Nulls are skipped by every function.
    let v = [Input::Null, Input::Float(2.0), Input::Null];
    assert_eq!(run(Function::Count, f, &v), Some(Scalar::Int(1)));
    assert_eq!(float(run(Function::Mean, f, &v)), 2.0);
    assert_eq!(run(Function::First, f, &v), Some(Scalar::Float(2.0)));
    // The empty window: count 0, sum 0, the others null.
    assert_eq!(run(Function::Count, f, &[]), Some(Scalar::Int(0)));
    assert_eq!(float(run(Function::Sum, f, &[])).to_bits(), 0);
    assert_eq!(
        run(Function::Sum, Some(DType::Int64), &[]),
        Some(Scalar::Int(0))
    );
    for function in [
        Function::Mean,
        Function::Min,
        Function::Max,
        Function::First,
        Function::Last,
    ] {
        assert_eq!(run(function, f, &[]), None, "{function:?}");
    }
    assert_eq!(
        run(Function::ApproxCountDistinct, f, &[]),
        Some(Scalar::Int(0))
    );
}

#[test]
fn int_sums_are_exact_or_refused() {
    let i = Some(DType::Int64);
    let v = [
        Input::Int(i64::MAX),
        Input::Int(i64::MAX),
        Input::Int(i64::MIN),
        Input::Int(i64::MIN),
    ];
    assert_eq!(run(Function::Sum, i, &v), Some(Scalar::Int(-2)));
    let agg = Aggregate {
        function: Function::Sum,
        input: i,
    };
    let mut state = agg.init();
    let at = EventTime {
        event: 0,
        created: 0,
    };
    agg.update(&mut state, Input::Int(i64::MAX), at);
    agg.update(&mut state, Input::Int(1), at);
    let err = agg.finalize(&state).unwrap_err();
    assert!(err.to_string().contains("out of int64's range"), "{err}");
}

#[test]
fn first_and_last_break_time_ties_by_arrival_then_value() {
    let agg = Aggregate {
        function: Function::Last,
        input: Some(DType::String),
    };
    let events = [
        (
            EventTime {
                event: 5,
                created: 9,
            },
            "b",
        ),
        (
            EventTime {
                event: 5,
                created: 9,
            },
            "a",
        ),
        (
            EventTime {
                event: 5,
                created: 7,
            },
            "z",
        ),
        (
            EventTime {
                event: 1,
                created: 99,
            },
            "y",
        ),
    ];
    let first = Aggregate {
        function: Function::First,
        ..agg
    };
    for rotation in 0..events.len() {
        let mut last_state = agg.init();
        let mut first_state = first.init();
        for (at, v) in events.iter().cycle().skip(rotation).take(events.len()) {
            agg.update(&mut last_state, Input::Str(v), *at);
            first.update(&mut first_state, Input::Str(v), *at);
        }
        assert_eq!(
            agg.finalize(&last_state).unwrap(),
            Some(Scalar::Str("b".into()))
        );
        assert_eq!(
            first.finalize(&first_state).unwrap(),
            Some(Scalar::Str("y".into()))
        );
    }
}

#[test]
fn distinct_counts_are_close_and_the_hash_is_fixed() {
    // The hash is part of the stored format: these bits never change.
    assert_eq!(hash(b""), 0xcd3b_635f_0a75_9bc2);
    assert_ne!(hash(b"a"), hash(b"b"));
    let agg = Aggregate {
        function: Function::ApproxCountDistinct,
        input: Some(DType::Int64),
    };
    for n in [1i64, 100, 1_000, 5_000, 10_000, 12_000, 50_000, 200_000] {
        let mut state = agg.init();
        let at = EventTime {
            event: 0,
            created: 0,
        };
        for v in 0..n {
            // Every value twice: duplicates do not count.
            agg.update(&mut state, Input::Int(v * 7919), at);
            agg.update(&mut state, Input::Int(v * 7919), at);
        }
        let Some(Scalar::Int(got)) = agg.finalize(&state).unwrap() else {
            panic!()
        };
        let error = (got - n).abs() as f64 / n as f64;
        assert!(
            error <= if n <= 100 { 0.03 } else { 0.05 },
            "{n} distinct estimated {got}"
        );
    }
    // The estimate depends on the registers only, not on whether they are kept sparse.
    let mut sparse = Hll::default();
    for v in 0..300u64 {
        sparse.insert_hash(hash(&v.to_le_bytes()));
    }
    assert!(matches!(sparse, Hll::Sparse(_)));
    let mut dense = Hll::Dense(vec![0u8; 4096].into_boxed_slice());
    dense.merge(&sparse);
    assert_eq!(dense.estimate(), sparse.estimate());
    // -0.0 and 0.0 are one value, and so is every NaN (they arrive canonical).
    let f = Some(DType::Float64);
    let v = floats(&[0.0, -0.0, 1.5]);
    assert_eq!(
        run(Function::ApproxCountDistinct, f, &v),
        Some(Scalar::Int(2))
    );
}

/// A value of `dtype` from the awkward corners: NaN, ±0.0, ±inf, subnormals, 1e300 next
/// to 1e-300, nulls, unicode.
fn awkward(rng: &mut Rng, dtype: DType) -> Input<'static> {
    const STRINGS: [&str; 6] = ["", "a", "é", "日本", "🦀", "a\u{0}b"];
    if rng.below(10) == 0 {
        return Input::Null;
    }
    match dtype {
        DType::Int64 => Input::Int(match rng.below(4) {
            0 => i64::from(rng.below(100) as i32 - 50),
            1 => (rng.next() >> 12) as i64 * if rng.below(2) == 0 { 1 } else { -1 },
            _ => rng.below(1_000_000) as i64,
        }),
        DType::Float64 => Input::Float(match rng.below(12) {
            0 => f64::from_bits(skewless_core::CANONICAL_NAN_F64),
            1 => -0.0,
            2 => 0.0,
            3 => 5e-324 * rng.below(1000) as f64,
            4 => 1e300,
            5 => -1e300,
            6 => 1e-300,
            7 if rng.below(20) == 0 => f64::INFINITY,
            _ => (rng.below(2_000_000) as f64 - 1_000_000.0) / 100.0,
        }),
        _ => Input::Str(STRINGS[rng.below(STRINGS.len() as u64) as usize]),
    }
}

fn same_bits(a: &Option<Scalar>, b: &Option<Scalar>) -> bool {
    match (a, b) {
        (Some(Scalar::Float(x)), Some(Scalar::Float(y))) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// The value depends only on the set of events: any order, any split into partial
/// states, any order of merging gives the same bits, for every function and dtype.
#[test]
fn every_function_is_order_and_partition_independent() {
    let mut rng = Rng(7);
    for &(name, function) in Function::NAMES.iter() {
        for &dtype in function.accepts() {
            let agg = Aggregate {
                function,
                input: Some(dtype),
            };
            for trial in 0..20 {
                let n = rng.below(200) as usize;
                let events: Vec<(EventTime, Input<'static>)> = (0..n)
                    .map(|_| {
                        let event = rng.below(50) as i64;
                        let at = EventTime {
                            event,
                            created: event + rng.below(3) as i64,
                        };
                        (at, awkward(&mut rng, dtype))
                    })
                    .collect();
                let mut whole = agg.init();
                for (at, v) in &events {
                    agg.update(&mut whole, *v, *at);
                }
                let expected = agg.finalize(&whole);
                // Shuffled, cut into random pieces, merged in a shuffled order.
                let mut shuffled = events.clone();
                for i in (1..shuffled.len()).rev() {
                    shuffled.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let mut pieces = Vec::new();
                let mut rest = &shuffled[..];
                while !rest.is_empty() {
                    let take = 1 + rng.below(rest.len() as u64) as usize;
                    let mut state = agg.init();
                    for (at, v) in &rest[..take] {
                        agg.update(&mut state, *v, *at);
                    }
                    pieces.push(state);
                    rest = &rest[take..];
                }
                for i in (1..pieces.len()).rev() {
                    pieces.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let mut merged = agg.init();
                for piece in &pieces {
                    agg.merge(&mut merged, piece);
                }
                let got = agg.finalize(&merged);
                match (&expected, &got) {
                    (Ok(e), Ok(g)) => assert!(
                        same_bits(e, g),
                        "{name} over {dtype:?}, trial {trial}: {e:?} then {g:?}"
                    ),
                    (e, g) => assert_eq!(e, g, "{name} over {dtype:?}"),
                }
            }
        }
    }
}

/// The accumulator against an independent exact sum (big integers at each value's own
/// weight), across carries, sign changes and normalization.
#[test]
fn the_accumulator_is_an_exact_integer() {
    let mut rng = Rng(11);
    for _ in 0..200 {
        let mut exact = Exact::default();
        let mut reference = BigInt::from(0);
        for _ in 0..rng.below(300) {
            let magnitude = u128::from(rng.next()) * u128::from(rng.next() >> rng.below(64));
            let bit = rng.below(4000) as u32;
            let negative = rng.below(2) == 0;
            exact.add(magnitude, bit, negative);
            let term = BigInt::from(magnitude) << bit;
            reference += if negative { -term } else { term };
            if rng.below(50) == 0 {
                exact.normalize();
            }
            if rng.below(50) == 0 {
                let other = exact.clone();
                exact.merge(&other);
                reference = &reference * 2;
            }
        }
        assert_eq!(exact.to_bigint(), reference);
        assert_eq!(exact.is_zero(), reference == BigInt::from(0));
        exact.normalize();
        assert_eq!(exact.to_bigint(), reference);
    }
}

#[test]
fn many_adds_and_merges_keep_the_sum_exact() {
    // Enough adds to cross the carry normalization, with cancellation at the end.
    let agg = Aggregate {
        function: Function::Sum,
        input: Some(DType::Float64),
    };
    let mut a = agg.init();
    let mut b = agg.init();
    let at = EventTime {
        event: 0,
        created: 0,
    };
    for i in 0..300_000u64 {
        let v = (i % 1000) as f64 * 0.01 + 1e-10;
        agg.update(&mut a, Input::Float(v), at);
        agg.update(&mut b, Input::Float(-v), at);
    }
    agg.update(&mut a, Input::Float(0.5), at);
    agg.merge(&mut a, &b);
    assert_eq!(float(agg.finalize(&a).unwrap()), 0.5);
}

#[test]
fn windows_have_a_hop_aligned_tail_and_an_exact_head_that_excludes_t() {
    const MIN: i64 = 60_000_000;
    let w = Window {
        length: 60 * MIN,
        hop: 5 * MIN,
    };
    // At 10:07 a 1 h window with 5 min hops starts at 09:05.
    let t = 10 * 60 * MIN + 7 * MIN;
    assert_eq!(w.start(t), 9 * 60 * MIN + 5 * MIN);
    assert!(w.covers(t, w.start(t)));
    assert!(!w.covers(t, w.start(t) - 1));
    assert!(w.covers(t, t - 1));
    assert!(!w.covers(t, t), "the head excludes t");
    // Before the epoch the floor still rounds down.
    assert_eq!(w.start(-1), -65 * MIN);
    assert_eq!(w.tile(-1), -1);
    assert_eq!(w.start(i64::MIN), i64::MIN);
    // Arrival: strictly before t, and not later than the allowed lateness.
    assert!(arrived(100, 10, 99, None));
    assert!(!arrived(100, 10, 100, None));
    assert!(arrived(100, 10, 20, Some(10)));
    assert!(!arrived(100, 10, 21, Some(10)));
    assert!(is_late(0, 11, 10) && !is_late(0, 10, 10));
}
