//! A worker that panics fails the backfill or the materialization with an internal error:
//! never an empty result served as `NOT_FOUND`, never a training set with gaps.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use skewless_core::definitions::ModuleRef;
use skewless_core::{DType, Definitions, Fault, Project};
use skewless_online::{LocalStore, OnlineStore, StoreOptions, ViewSchema};
use skewless_plan::ServicePlan;

use crate::workers::hook::panic_in;
use crate::{BackfillOptions, Error, NoProgress, Window, backfill, materialize};

const DEFS: &str = r#"
project: panics
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: stats, path: stats.parquet, timestamp_field: ts}]
feature_views:
  - {name: stats, entities: [user], source: stats, features: [{name: value, dtype: float64}]}
feature_services: [{name: svc, features: ["stats:value"]}]
"#;

fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    crate::write_parquet_atomic(path, batch.schema(), &[batch]).unwrap();
}

fn fixture(dir: &Path) -> Project {
    let users: Vec<i64> = (0..1000).collect();
    write(
        &dir.join("stats.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(users.clone()))),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![10; 1000])),
            ),
            ("value", Arc::new(Float64Array::from(vec![1.5; 1000]))),
        ],
    );
    write(
        &dir.join("frame.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(users))),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![20; 1000])),
            ),
        ],
    );
    Definitions::from_yaml(DEFS)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap()
}

fn assert_internal(err: &Error, worker: &str) {
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    assert_eq!(err.fault(), Fault::Internal);
    let text = err.to_string();
    assert!(
        text.contains(&format!("a {worker} worker panicked")),
        "{text}"
    );
}

#[test]
fn a_join_worker_that_panics_fails_the_backfill_with_an_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    let project = fixture(dir.path());
    let plan = ServicePlan::for_service(&project, "svc", &|_| None).unwrap();
    let out = dir.path().join("train.parquet");
    let run = |partitions| {
        let options = BackfillOptions {
            threads: 2,
            partitions,
            ..BackfillOptions::default()
        };
        let frame = dir.path().join("frame.parquet");
        backfill(
            &project,
            dir.path(),
            &plan,
            &frame,
            &out,
            &options,
            &NoProgress,
        )
    };
    for partitions in [None, Some(3)] {
        for worker in [
            "as-of match",
            "key lookup",
            "transform chunk",
            "output writer",
        ] {
            let err = panic_in(worker, || run(partitions)).unwrap_err();
            assert_internal(&err, worker);
            assert!(!out.exists(), "no training set after a failed backfill");
        }
    }
    // Without the injected panic the same backfill writes every row.
    let stats = run(None).unwrap();
    assert_eq!(stats.rows, 1000);
}

#[test]
fn a_worker_that_panics_fails_the_materialization_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let project = fixture(dir.path());
    let schema = ViewSchema {
        name: "stats".into(),
        features: vec![("value".into(), DType::Float64)],
    };
    let store = LocalStore::open(
        &dir.path().join("online"),
        &[schema],
        StoreOptions::default(),
    )
    .unwrap();
    let windows = [Window {
        view: "stats".into(),
        start: 0,
        end: 100,
    }];
    let run = || materialize(&project, dir.path(), &store, &windows, 2, &NoProgress);
    for worker in ["latest row", "Parquet decode"] {
        let err = panic_in(worker, run).unwrap_err();
        assert_internal(&err, worker);
        assert_eq!(store.stats().rows, [("stats".to_owned(), 0)]);
    }
    assert_eq!(run().unwrap().rows_written(), 1000);
    assert_eq!(store.stats().rows, [("stats".to_owned(), 1000)]);
}

#[test]
fn an_aggregate_sweep_worker_that_panics_fails_the_backfill() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let defs = r#"
project: panics
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: stats, path: stats.parquet, timestamp_field: ts, columns: [{name: value, dtype: float64}]}]
feature_views:
  - {name: agg, entities: [user], source: stats, online: false, hop: 1s,
     aggregations: [{name: value_mean, function: mean, column: value, window: 10s}]}
feature_services: [{name: svc, features: ["agg:value_mean"]}]
"#;
    let project = Definitions::from_yaml(defs)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap();
    let plan = ServicePlan::for_service(&project, "svc", &|_| None).unwrap();
    let out = dir.path().join("train.parquet");
    let frame = dir.path().join("frame.parquet");
    let options = BackfillOptions {
        threads: 2,
        ..BackfillOptions::default()
    };
    let run = || {
        backfill(
            &project,
            dir.path(),
            &plan,
            &frame,
            &out,
            &options,
            &NoProgress,
        )
    };
    let err = panic_in("aggregate sweep", run).unwrap_err();
    assert_internal(&err, "aggregate sweep");
    assert!(!out.exists());
    assert_eq!(run().unwrap().rows, 1000);
}
