//! Tests of the column views and builders.

use super::*;
use crate::{DType, Error};

#[test]
fn zip_map_ands_validity() {
    let a = Values::new(&[1.0, 2.0, 3.0][..], Validity(Some(&[0b101])));
    let b = Values::new(&[10.0, 20.0, 30.0][..], Validity(Some(&[0b011])));
    let sum = a.zip_map(&b, |x, y| x + y);
    let view = sum.view();
    assert_eq!(
        view.iter().collect::<Vec<_>>(),
        vec![Some(11.0), None, None]
    );
}

#[test]
fn from_options_builds_validity_only_when_needed() {
    let all = ValuesColumn::from_options([Some(1i64), Some(2)]);
    assert!(all.view().validity().all_valid());
    let some = ValuesColumn::from_options([Some(1i64), None, Some(3)]);
    assert_eq!(
        some.view().iter().collect::<Vec<_>>(),
        vec![Some(1), None, Some(3)]
    );
}

#[test]
fn output_is_ordered_and_checked_against_the_signature() {
    let specs = crate::Signature::new()
        .output("a", DType::Float64)
        .output("b", DType::String)
        .outputs;
    let out = Output::new(2)
        .string("b", [Some("x"), None].into_iter().collect())
        .float64("a", ValuesColumn::from_values(vec![1.0, 2.0]));
    let batch = out.into_wit(2, &specs).unwrap();
    let names: Vec<_> = batch.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(batch.columns[1].validity, Some(vec![0b01]));

    let missing = Output::new(2).float64("a", ValuesColumn::from_values(vec![1.0, 2.0]));
    assert_eq!(
        missing.into_wit(2, &specs).unwrap_err(),
        Error::Other("declared output column `b` was not set".into())
    );
    let short = Output::new(2)
        .float64("a", ValuesColumn::from_values(vec![1.0]))
        .string("b", StringColumn::default());
    assert!(
        short
            .into_wit(2, &specs)
            .unwrap_err()
            .to_string()
            .contains("has 1 rows")
    );
}

#[test]
fn set_null_and_and_validity() {
    let mut c = ValuesColumn::from_values(vec![1.0, 2.0, 3.0]);
    c.set_null(1);
    let c = c.and_validity(Validity(Some(&[0b110])));
    assert_eq!(
        c.view().iter().collect::<Vec<_>>(),
        vec![None, None, Some(3.0)]
    );
}
