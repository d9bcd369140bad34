//! Plans are built only from validated projects, and never guess: a module that does not
//! hold what validation resolved is an internal error, not feature 0.

use skewless_core::definitions::ModuleRef;
use skewless_core::{ColumnSpec, DType, Definitions, Fault, Signature};
use skewless_plan::{Error, ServicePlan};

const DEFS: &str = r#"
project: plan
entities: [{name: user, join_keys: [user_id]}]
transforms:
  - {name: scaled, module: scale@1.0.0, inputs: [request:x], request_schema: [{name: x, dtype: float64}]}
feature_services: [{name: svc, features: ["scaled:z"]}]
"#;

/// Validation saw a module with outputs `y` and `z`; the loader hands out one with `y`
/// only (bench-f64). Once, the plan served `y` under the name `z`.
#[test]
fn a_module_without_the_validated_output_is_an_internal_error() {
    let validated = Signature {
        inputs: vec![ColumnSpec::new("x", DType::Float64)],
        outputs: vec![
            ColumnSpec::new("y", DType::Float64),
            ColumnSpec::new("z", DType::Float64),
        ],
    };
    let project = Definitions::from_yaml(DEFS)
        .unwrap()
        .validate(&|_: &ModuleRef| Some(validated.clone()))
        .unwrap();
    let other = crate::support::load(skewless_test_artifacts::BENCH_F64);
    let err = ServicePlan::for_service(&project, "svc", &|_| Some(other.clone())).unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    assert_eq!(err.fault(), Fault::Internal);
    assert!(
        err.to_string()
            .contains("another signature than the one the definitions were validated against"),
        "{err}"
    );

    // Inputs the validated module did not declare: internal too, never a guess.
    let strings = crate::support::load(skewless_test_artifacts::BENCH_STRING);
    let err = ServicePlan::for_service(&project, "svc", &|_| Some(strings.clone())).unwrap_err();
    assert_eq!(err.fault(), Fault::Internal, "{err}");

    // The module validation saw plans, by the indices validation resolved.
    let exact = Signature {
        inputs: vec![ColumnSpec::new("x", DType::Float64)],
        outputs: vec![ColumnSpec::new("y", DType::Float64)],
    };
    let served_y = DEFS.replace("scaled:z", "scaled:y");
    let project = Definitions::from_yaml(&served_y)
        .unwrap()
        .validate(&|_: &ModuleRef| Some(exact.clone()))
        .unwrap();
    let plan = ServicePlan::for_service(&project, "svc", &|_| Some(other.clone())).unwrap();
    assert_eq!(plan.features[0].qualified, "scaled:y");
}
