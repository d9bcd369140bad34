//! The example transforms compute what their native logic computes, through the engine.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use skewless_test_artifacts as artifacts;

use crate::support::{batch, load};

/// A deterministic fraud input of `rows` rows with some nulls.
pub fn fraud_input(rows: usize) -> RecordBatch {
    batch(vec![
        (
            "amount",
            Arc::new(Float64Array::from_iter(
                (0..rows).map(|i| (i % 11 != 0).then_some((i % 500) as f64 * 1.25 + 0.5)),
            )) as ArrayRef,
        ),
        (
            "txn_amount_avg_7d",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| (i % 90) as f64 + 0.25),
            )),
        ),
        (
            "txn_amount_max_7d",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| (i % 7) as f64 * 100.0),
            )),
        ),
        (
            "account_age_days",
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| (i % 400) as i64),
            )),
        ),
    ])
}

#[test]
fn fraud_risk_matches_its_native_logic_bit_for_bit() {
    let t = load(artifacts::FRAUD_RISK);
    assert_eq!(
        t.signature().to_string(),
        "(amount: float64, txn_amount_avg_7d: float64, txn_amount_max_7d: float64, account_age_days: int64) -> \
         (amount_zscore_proxy: float64, amount_to_max_ratio: float64, is_new_account: bool, amount_log1p: float64)"
    );
    let input = fraud_input(5000);
    let out = t.call(&input).unwrap();
    let amount = input.column(0).as_primitive::<Float64Type>();
    let avg = input.column(1).as_primitive::<Float64Type>();
    let max = input.column(2).as_primitive::<Float64Type>();
    let age = input.column(3).as_primitive::<Int64Type>();
    let z = out.column(0).as_primitive::<Float64Type>();
    let ratio = out.column(1).as_primitive::<Float64Type>();
    let is_new = out.column(2).as_boolean();
    let log = out.column(3).as_primitive::<Float64Type>();
    for i in 0..input.num_rows() {
        if amount.is_null(i) {
            assert!(
                z.is_null(i) && ratio.is_null(i) && log.is_null(i),
                "row {i}"
            );
            continue;
        }
        let a = amount.value(i);
        let want_z = fraud_risk::amount_zscore_proxy(a, avg.value(i));
        assert_eq!(z.value(i).to_bits(), want_z.to_bits(), "row {i}");
        match fraud_risk::amount_to_max_ratio(a, max.value(i)) {
            Some(r) => assert_eq!(ratio.value(i).to_bits(), r.to_bits(), "row {i}"),
            None => assert!(ratio.is_null(i), "row {i}"),
        }
        assert_eq!(is_new.value(i), age.value(i) < fraud_risk::NEW_ACCOUNT_DAYS);
        // ln_1p comes from the guest's libm; measured equal to the host's on this input.
        assert_eq!(log.value(i).to_bits(), a.ln_1p().to_bits(), "row {i}");
    }
}

#[test]
fn geo_distance_matches_its_native_logic() {
    let t = load(artifacts::GEO_DISTANCE);
    let rows = 1000;
    let coord = |scale: f64, shift: f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            (0..rows).map(|i| ((i as f64 * 37.0 + shift) % (2.0 * scale)) - scale),
        ))
    };
    let input = batch(vec![
        ("lat", coord(89.0, 0.0)),
        ("lon", coord(179.0, 11.0)),
        ("home_lat", coord(89.0, 5.0)),
        ("home_lon", coord(179.0, 3.0)),
    ]);
    let out = t.call(&input).unwrap();
    let d = out.column(0).as_primitive::<Float64Type>();
    let col = |i: usize| input.column(i).as_primitive::<Float64Type>();
    let mut max_ulps = 0u64;
    for i in 0..rows {
        let want = geo_distance::haversine_km(
            col(0).value(i),
            col(1).value(i),
            col(2).value(i),
            col(3).value(i),
        );
        let got = d.value(i);
        max_ulps = max_ulps.max(want.to_bits().abs_diff(got.to_bits()));
        assert_eq!(
            out.column(1).as_boolean().value(i),
            got > geo_distance::FAR_FROM_HOME_KM
        );
    }
    // sin/cos/asin come from the guest's libm, not the host's: allow a few ulps.
    assert!(max_ulps <= 4, "largest difference {max_ulps} ulps");
}

#[test]
fn merchant_category_matches_its_native_logic() {
    let t = load(artifacts::MERCHANT_CATEGORY);
    let names = [
        "Joe's PIZZA #12",
        "",
        "  Shell  Oil ",
        "Ünïcode Market",
        "casino ROYALE",
    ];
    let input = batch(vec![(
        "merchant_name",
        Arc::new(StringArray::from_iter(
            names.iter().map(|n| Some(*n)).chain([None]),
        )) as ArrayRef,
    )]);
    let out = t.call(&input).unwrap();
    let normalized = out.column(0).as_string::<i32>();
    let category = out.column(1).as_string::<i32>();
    let bucket = out.column(3).as_primitive::<Int64Type>();
    for (i, name) in names.iter().enumerate() {
        let n = merchant_category::normalize(name);
        assert_eq!(normalized.value(i), n);
        assert_eq!(category.value(i), merchant_category::category(&n));
        assert_eq!(
            bucket.value(i) as u64,
            merchant_category::fnv1a(n.as_bytes()) % merchant_category::BUCKETS
        );
    }
    assert!(out.columns().iter().all(|c| c.is_null(names.len())));
}
