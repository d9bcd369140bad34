//! Tests of the comparison: differences that rendered text hides are mismatches.

use arrow_array::Float64Array;
use skewless_core::Definitions;
use skewless_core::definitions::ModuleRef;

use super::*;

const DEFS: &str = r#"
project: bits
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: stats, path: stats.parquet, timestamp_field: ts}]
feature_views:
  - {name: stats, entities: [user], source: stats, features: [{name: value, dtype: float64}]}
feature_services: [{name: svc, features: ["stats:value"]}]
"#;

/// The test of the test: differences that survive rendering as text (a NaN payload or
/// sign, -0.0 against 0.0) are mismatches; the same bits are not.
#[test]
fn compare_finds_differences_that_the_rendered_text_hides() {
    let project = Definitions::from_yaml(DEFS)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap();
    let plan = ServicePlan::for_service(&project, "svc", &|_| None).unwrap();
    let quiet = f64::from_bits(0x7ff8_0000_0000_0000);
    let negative_nan = f64::from_bits(0xfff8_0000_0000_0000);
    let payload = f64::from_bits(0x7ff8_0000_0000_0001);
    let served = [quiet, quiet, -0.0, 1.5, quiet];
    let trained = [negative_nan, payload, 0.0, 1.5, quiet];
    let rows = Rows {
        entities: vec![(0..5).map(|i| json!(i)).collect()],
        request: Vec::new(),
        len: 5,
    };
    let served = ServedColumns {
        columns: vec![Arc::new(Float64Array::from(served.to_vec()))],
        statuses: vec![vec![Status::Present; 5]],
    };
    let training = RecordBatch::try_from_iter([
        (
            "user_id",
            Arc::new(arrow_array::Int64Array::from((0..5).collect::<Vec<i64>>())) as ArrayRef,
        ),
        (
            "stats:value",
            Arc::new(Float64Array::from(trained.to_vec())) as ArrayRef,
        ),
    ])
    .unwrap();
    let report = compare(&plan, &rows, 0, &served, &training, 10).unwrap();
    assert_eq!(report.mismatches, 3, "{report:?}");
    let rows_off: Vec<usize> = report.examples.iter().map(|m| m.row).collect();
    assert_eq!(rows_off, [0, 1, 2]);
    // Two NaNs render alike; the report shows their bits.
    assert_eq!(
        report.examples[0].offline,
        json!("NaN (bits 0xfff8000000000000)")
    );
    assert_eq!(
        report.examples[0].served,
        json!("NaN (bits 0x7ff8000000000000)")
    );
    assert_eq!(report.examples[2].served, json!(-0.0));
}
