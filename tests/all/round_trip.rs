//! Every dtype, with nulls, survives Arrow → contract → guest → contract → Arrow unchanged.

use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, LargeStringArray,
    RecordBatch, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
};
use skewless_test_artifacts as artifacts;

use crate::support::{batch, load};

fn embeddings(rows: usize) -> ArrayRef {
    let mut list = ListBuilder::new(Float32Builder::new());
    for i in 0..rows {
        match i % 4 {
            0 => list.append_null(),
            1 => list.append_value([]),
            2 => list.append_value([Some(f32::NAN), Some(-0.0), Some(i as f32)]),
            _ => list.append_value((0..8).map(|j| Some(j as f32 / 3.0))),
        }
    }
    Arc::new(list.finish())
}

fn every_dtype(rows: usize) -> RecordBatch {
    let opt = |i: usize| i % 3 != 1;
    batch(vec![
        (
            "b",
            Arc::new(BooleanArray::from_iter(
                (0..rows).map(|i| opt(i).then_some(i % 2 == 0)),
            )) as ArrayRef,
        ),
        (
            "i",
            Arc::new(Int64Array::from_iter(
                (0..rows).map(|i| opt(i).then_some(i as i64 * -7919)),
            )),
        ),
        (
            "f",
            Arc::new(Float64Array::from_iter((0..rows).map(|i| {
                opt(i).then_some(match i % 5 {
                    0 => f64::NAN,
                    1 => -0.0,
                    2 => f64::INFINITY,
                    _ => i as f64 / 7.0,
                })
            }))),
        ),
        (
            "s",
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| opt(i).then(|| "é🦀".repeat(i % 4))),
            )),
        ),
        (
            "t",
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    (0..rows).map(|i| opt(i).then_some(1_700_000_000_000_000 + i as i64)),
                )
                .with_timezone("UTC"),
            ),
        ),
        ("e", embeddings(rows)),
    ])
}

#[test]
fn every_dtype_round_trips_through_a_guest() {
    let t = load(artifacts::ECHO);
    for rows in [0, 1, 7, 8, 9, 1000] {
        let input = every_dtype(rows);
        let output = t.call(&input).unwrap();
        assert_eq!(output.num_rows(), rows);
        for (name, original) in input.schema().fields().iter().zip(input.columns()) {
            let back = output.column_by_name(name.name()).unwrap();
            assert_eq!(
                original.data_type(),
                back.data_type(),
                "{rows} rows, {}",
                name.name()
            );
            assert_eq!(
                original.logical_nulls(),
                back.logical_nulls(),
                "{}",
                name.name()
            );
            // Debug output compares NaNs by their printed bits, unlike PartialEq.
            assert_eq!(
                format!("{original:?}"),
                format!("{back:?}"),
                "{}",
                name.name()
            );
        }
    }
}

/// One NaN everywhere (ADR 0008): a NaN of any sign or payload going into a transform,
/// as a Parquet frame may hold one offline while JSON online cannot, arrives as the
/// canonical one, and so does one a transform makes by bit-cast.
#[test]
fn every_nan_crosses_the_guest_boundary_as_the_canonical_one() {
    let nans = [
        f64::from_bits(0xfff8_0000_0000_0000),
        f64::from_bits(0x7ff8_dead_beef_0001),
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::from_bits(skewless_core::CANONICAL_NAN_F64),
    ];
    let base = every_dtype(nans.len());
    let schema = base.schema();
    let mut input: Vec<(&str, ArrayRef)> = schema
        .fields()
        .iter()
        .zip(base.columns())
        .map(|(f, c)| (f.name().as_str(), Arc::clone(c)))
        .collect();
    input[2].1 = Arc::new(Float64Array::from(nans.to_vec()));
    let mut list = ListBuilder::new(Float32Builder::new());
    for bits in [0xffc0_0000u32, 0x7fc0_0001, 0x7f80_0001, 0x7fc0_0000] {
        list.append_value([Some(f32::from_bits(bits)), Some(1.5)]);
    }
    input[5].1 = Arc::new(list.finish());
    let echo = load(artifacts::ECHO);
    let out = echo.call(&batch(input)).unwrap();
    let f = out
        .column_by_name("f")
        .unwrap()
        .as_primitive::<Float64Type>();
    for v in f.values() {
        assert_eq!(v.to_bits(), skewless_core::CANONICAL_NAN_F64, "{v:?}");
    }
    let e = out.column_by_name("e").unwrap().as_list::<i32>();
    let items = e.values().as_primitive::<Float32Type>();
    for (i, v) in items.values().iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(v.to_bits(), skewless_core::CANONICAL_NAN_F32, "{v:?}");
        }
    }
    let hostile = load(artifacts::HOSTILE);
    let out = hostile
        .call(&crate::support::hostile_input("nan", 3))
        .unwrap();
    let y = out
        .column_by_name("y")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!(
        y.values()
            .iter()
            .all(|v| v.to_bits() == skewless_core::CANONICAL_NAN_F64)
    );
}

#[test]
fn sliced_input_round_trips() {
    let t = load(artifacts::ECHO);
    let input = every_dtype(100).slice(13, 50);
    let output = t.call(&input).unwrap();
    for (original, back) in input.columns().iter().zip(output.columns()) {
        assert_eq!(format!("{original:?}"), format!("{back:?}"));
    }
}

#[test]
fn lossless_variants_are_widened_on_the_way_in() {
    let t = load(artifacts::ECHO);
    let canonical = every_dtype(5);
    let schema = canonical.schema();
    let mut columns: Vec<(&str, ArrayRef)> = schema
        .fields()
        .iter()
        .zip(canonical.columns())
        .map(|(f, c)| (f.name().as_str(), Arc::clone(c)))
        .collect();
    columns[1].1 = Arc::new(Int32Array::from(vec![
        Some(1),
        None,
        Some(-3),
        Some(4),
        Some(5),
    ]));
    columns[3].1 = Arc::new(LargeStringArray::from(vec![
        Some("a"),
        None,
        Some(""),
        Some("d"),
        Some("e"),
    ]));
    columns[4].1 = Arc::new(TimestampNanosecondArray::from(vec![
        Some(1_000),
        None,
        Some(0),
        Some(-5_000),
        Some(7_000),
    ]));
    let output = t.call(&batch(columns)).unwrap();
    let i = output.column_by_name("i").unwrap();
    assert_eq!(
        format!("{i:?}"),
        format!(
            "{:?}",
            Int64Array::from(vec![Some(1), None, Some(-3), Some(4), Some(5)])
        )
    );
    let ts = output.column_by_name("t").unwrap();
    let want = TimestampMicrosecondArray::from(vec![Some(1), None, Some(0), Some(-5), Some(7)])
        .with_timezone("UTC");
    assert_eq!(format!("{ts:?}"), format!("{want:?}"));
    assert_eq!(output.column_by_name("s").unwrap().null_count(), 1);
}
