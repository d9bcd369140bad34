//! The point-in-time backfill against a brute-force reference on randomized data: ties
//! in event and created time, TTL edges, nulls, late and duplicated rows, a composite
//! key, two views; and the backfill's contract (every entity row once, in order).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use skewless_core::Definitions;
use skewless_core::definitions::ModuleRef;
use skewless_plan::ServicePlan;

use crate::support::{Lcg, read_parquet as read, write_parquet as write};

const DEFS: &str = r#"
project: pit
entities:
  - {name: user, join_keys: [user_id]}
  - {name: merchant, join_keys: [{name: merchant, dtype: string}]}
sources:
  - {name: stats, path: stats.parquet, timestamp_field: ts, created_timestamp_field: created}
  - {name: pairs, path: pairs}
feature_views:
  - {name: stats, entities: [user], source: stats, ttl: 100s, features: [{name: value, dtype: float64}]}
  - {name: pairs, entities: [user, merchant], source: pairs, features: [{name: count, dtype: int64}]}
feature_services: [{name: svc, features: ["stats:*", "pairs:*"]}]
"#;

const S: i64 = 1_000_000;

/// Two threads; `partitions` forces the partitioned join (in memory, as the test inputs
/// are far under the default memory limit).
fn options(partitions: Option<usize>) -> skewless_offline::BackfillOptions {
    skewless_offline::BackfillOptions {
        threads: 2,
        partitions,
        ..Default::default()
    }
}

#[test]
fn backfill_equals_a_brute_force_point_in_time_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(7);
    // View `stats`: single key, ties in ts and created, nulls, rows out of order.
    let n = 3000;
    let s_user: Vec<i64> = (0..n).map(|_| rng.next(40) as i64).collect();
    let s_ts: Vec<i64> = (0..n).map(|_| rng.next(6000) as i64 * S).collect();
    let s_created: Vec<Option<i64>> = (0..n)
        .map(|_| (rng.next(5) > 0).then(|| rng.next(3) as i64))
        .collect();
    let s_value: Vec<Option<f64>> = (0..n)
        .map(|i| (rng.next(10) > 0).then_some(i as f64 + 0.5))
        .collect();
    write(
        &dir.path().join("stats.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(s_user.clone())) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(s_ts.clone()).with_timezone("UTC")),
            ),
            (
                "created",
                Arc::new(TimestampMicrosecondArray::from(s_created.clone())),
            ),
            ("value", Arc::new(Float64Array::from(s_value.clone()))),
        ],
    );
    // View `pairs`: a composite key, no TTL, split over two files in a directory (file
    // order breaks ties), timestamps as naive milliseconds.
    std::fs::create_dir(dir.path().join("pairs")).unwrap();
    let merchants = ["a", "b", "c"];
    let mut pairs = Vec::new();
    for file in ["part-0.parquet", "part-1.parquet"] {
        let m = 800;
        let user: Vec<i64> = (0..m).map(|_| rng.next(40) as i64).collect();
        let merchant: Vec<&str> = (0..m).map(|_| merchants[rng.next(3) as usize]).collect();
        let ts: Vec<i64> = (0..m).map(|_| rng.next(7000) as i64 * 1000).collect();
        let count: Vec<i64> = (0..m).map(|i| i as i64 + pairs.len() as i64).collect();
        for i in 0..m {
            pairs.push((user[i], merchant[i], ts[i] * 1000, count[i]));
        }
        write(
            &dir.path().join("pairs").join(file),
            vec![
                ("user_id", Arc::new(Int64Array::from(user)) as ArrayRef),
                ("merchant", Arc::new(StringArray::from(merchant))),
                (
                    "event_timestamp",
                    Arc::new(arrow_array::TimestampMillisecondArray::from(ts)),
                ),
                ("count", Arc::new(Int64Array::from(count))),
            ],
        );
    }
    // The entity frame: duplicated (key, time) rows, times on TTL edges, unknown keys, a
    // label carried through.
    let e = 2000;
    let e_user: Vec<i64> = (0..e).map(|_| rng.next(45) as i64).collect();
    let e_merchant: Vec<&str> = (0..e).map(|_| merchants[rng.next(3) as usize]).collect();
    let e_ts: Vec<i64> = (0..e).map(|_| rng.next(7000) as i64 * S).collect();
    let label: Vec<i64> = (0..e).map(|i| i as i64).collect();
    let entities = dir.path().join("entities.parquet");
    write(
        &entities,
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(e_user.clone())) as ArrayRef,
            ),
            ("merchant", Arc::new(StringArray::from(e_merchant.clone()))),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(e_ts.clone())),
            ),
            ("label", Arc::new(Int64Array::from(label.clone()))),
        ],
    );

    let project = Definitions::from_yaml(DEFS)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap();
    let plan = ServicePlan::for_service(&project, "svc", &|_| None).unwrap();
    let out = dir.path().join("training.parquet");
    let stats = skewless_offline::backfill(
        &project,
        dir.path(),
        &plan,
        &entities,
        &out,
        &options(None),
        &skewless_offline::NoProgress,
    )
    .unwrap();
    assert_eq!(stats.rows, e);
    assert_eq!(stats.partitions, 1, "these inputs fit in memory");
    let got = read(&out);
    let names: Vec<String> = got
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "user_id",
            "merchant",
            "event_timestamp",
            "label",
            "stats:value",
            "pairs:count"
        ]
    );
    assert_eq!(
        got.column(3).as_primitive::<Int64Type>().values().to_vec(),
        label,
        "rows once, in order"
    );
    let value = got.column(4).as_primitive::<Float64Type>();
    let count = got.column(5).as_primitive::<Int64Type>();
    let ttl = 100 * S;
    let mut checked = [0usize; 2];
    for row in 0..e {
        let (u, m, t) = (e_user[row], e_merchant[row], e_ts[row]);
        // stats: the latest row with ts <= t, ties to the larger created (null loses),
        // then to the later row; withheld if older than the TTL.
        let best = (0..n)
            .filter(|&i| s_user[i] == u && s_ts[i] <= t)
            .max_by_key(|&i| (s_ts[i], s_created[i].unwrap_or(i64::MIN), i));
        let expected = best
            .filter(|&i| s_ts[i] >= t - ttl)
            .and_then(|i| s_value[i]);
        let actual = value.is_valid(row).then(|| value.value(row));
        assert_eq!(
            actual.map(f64::to_bits),
            expected.map(f64::to_bits),
            "stats at row {row}"
        );
        checked[0] += usize::from(expected.is_some());
        let best = pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.0 == u && p.1 == m && p.2 <= t)
            .max_by_key(|(i, p)| (p.2, *i))
            .map(|(_, p)| p.3);
        let actual = count.is_valid(row).then(|| count.value(row));
        assert_eq!(actual, best, "pairs at row {row}");
        checked[1] += usize::from(best.is_some());
    }
    assert!(
        checked[0] > 500 && checked[0] < e,
        "both matches and misses: {checked:?}"
    );
    assert!(checked[1] > 500, "{checked:?}");

    // And against DuckDB's ASOF JOIN, an independent implementation.
    let reference = dir.path().join("duckdb.parquet");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/duckdb_asof.py");
    let status = std::process::Command::new("python3")
        .arg(script)
        .arg(dir.path().join("stats.parquet"))
        .arg(dir.path().join("pairs"))
        .arg(&entities)
        .arg(&reference)
        .status()
        .expect("python3 runs (scripts/test installs duckdb)");
    assert!(
        status.success(),
        "the DuckDB reference failed: is duckdb installed? (scripts/test installs it)"
    );
    let duck = read(&reference);
    assert_eq!(duck.num_rows(), e);
    let duck_value = duck
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>();
    let duck_count = duck
        .column_by_name("count")
        .unwrap()
        .as_primitive::<Int64Type>();
    for row in 0..e {
        let ours = value.is_valid(row).then(|| value.value(row).to_bits());
        let theirs = duck_value
            .is_valid(row)
            .then(|| duck_value.value(row).to_bits());
        assert_eq!(ours, theirs, "stats at row {row} differs from DuckDB");
        let ours = count.is_valid(row).then(|| count.value(row));
        let theirs = duck_count.is_valid(row).then(|| duck_count.value(row));
        assert_eq!(ours, theirs, "pairs at row {row} differs from DuckDB");
    }

    // Partitioned: split by entity key and joined a partition at a time, in memory when
    // the partitions are forced, or in spill files because the inputs exceed the memory
    // limit (with the count forced, or picked from the limit). Same rows, bit for bit.
    let limited = |partitions| skewless_offline::BackfillOptions {
        memory_limit: 1,
        ..options(partitions)
    };
    for (options, partitions, to_disk) in [
        (options(Some(7)), 7, false),
        (limited(Some(5)), 5, true),
        (limited(None), 128, true),
    ] {
        let spilled = dir.path().join(format!("spilled-{partitions}.parquet"));
        let stats = skewless_offline::backfill(
            &project,
            dir.path(),
            &plan,
            &entities,
            &spilled,
            &options,
            &skewless_offline::NoProgress,
        )
        .unwrap();
        assert_eq!((stats.partitions, stats.spilled), (partitions, to_disk));
        assert_eq!(read(&spilled), got, "{partitions} partitions");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".skewless"))
        .collect();
    assert!(leftovers.is_empty(), "spill files removed: {leftovers:?}");
}

#[test]
fn bad_input_is_named_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let project = Definitions::from_yaml(DEFS)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap();
    let plan = ServicePlan::for_service(&project, "svc", &|_| None).unwrap();
    let out = dir.path().join("training.parquet");
    let entities = dir.path().join("entities.parquet");
    let run = || {
        skewless_offline::backfill(
            &project,
            dir.path(),
            &plan,
            &entities,
            &out,
            &options(None),
            &skewless_offline::NoProgress,
        )
        .unwrap_err()
        .to_string()
    };

    assert!(
        run().contains("entities.parquet"),
        "a missing file is named"
    );
    write(
        &entities,
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("merchant", Arc::new(StringArray::from(vec!["a"]))),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![1])),
            ),
        ],
    );
    let error = run();
    assert!(error.contains("stats.parquet"), "{error}");
    write(
        &dir.path().join("stats.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1]))),
            ("value", Arc::new(Float64Array::from(vec![1.0]))),
        ],
    );
    let error = run();
    assert!(error.contains("no column `created`"), "{error}");
    write(
        &dir.path().join("stats.parquet"),
        vec![
            (
                "user_id",
                Arc::new(StringArray::from(vec!["1"])) as ArrayRef,
            ),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1]))),
            (
                "created",
                Arc::new(TimestampMicrosecondArray::from(vec![1])),
            ),
            ("value", Arc::new(Float64Array::from(vec![1.0]))),
        ],
    );
    let error = run();
    assert!(
        error.contains("column `user_id` is Utf8") && error.contains("int64"),
        "{error}"
    );
    assert!(
        !out.exists(),
        "no output under the final name after a failure"
    );

    // An empty entity frame gives an empty training set with every column.
    write(
        &dir.path().join("stats.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1]))),
            (
                "created",
                Arc::new(TimestampMicrosecondArray::from(vec![1])),
            ),
            ("value", Arc::new(Float64Array::from(vec![1.0]))),
        ],
    );
    std::fs::create_dir_all(dir.path().join("pairs")).unwrap();
    write(
        &dir.path().join("pairs").join("p.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("merchant", Arc::new(StringArray::from(vec!["a"]))),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![1])),
            ),
            ("count", Arc::new(Int64Array::from(vec![1]))),
        ],
    );
    write(
        &entities,
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(Vec::<i64>::new())) as ArrayRef,
            ),
            ("merchant", Arc::new(StringArray::from(Vec::<&str>::new()))),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(Vec::<i64>::new())),
            ),
        ],
    );
    let stats = skewless_offline::backfill(
        &project,
        dir.path(),
        &plan,
        &entities,
        &out,
        &options(None),
        &skewless_offline::NoProgress,
    )
    .unwrap();
    assert_eq!(stats.rows, 0);
    let empty =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(empty.schema().fields().len(), 5);
}

/// A derived feature: a transform's outputs over the whole history, written with plain
/// names, declared as the source of another view, and joined as of later rows.
#[test]
fn a_derived_feature_backfilled_with_plain_names_is_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let fraud = crate::support::load(skewless_test_artifacts::FRAUD_RISK);
    let day = 86_400 * S;
    // History: one row of 7-day statistics per user, and transactions after it.
    write(
        &dir.path().join("stats.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
            ),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![0, 0]))),
            (
                "created",
                Arc::new(TimestampMicrosecondArray::from(vec![0, 0])),
            ),
            ("value", Arc::new(Float64Array::from(vec![10.0, 20.0]))),
        ],
    );
    let history = dir.path().join("transactions.parquet");
    write(
        &history,
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 2, 1])) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![day, day, 2 * day])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]))),
        ],
    );
    let defs = |extra: &str| {
        format!(
            r#"
project: derived
entities: [{{name: user, join_keys: [user_id]}}]
sources:
  - {{name: stats, path: stats.parquet, timestamp_field: ts, created_timestamp_field: created}}
{extra}
feature_views:
  - {{name: stats, entities: [user], source: stats, features: [{{name: value, dtype: float64}}]}}
transforms:
  - {{name: risk, module: fraud_risk@1.0.0,
     inputs: [{{from: "stats:value", as: txn_amount_avg_7d}}, {{from: "stats:value", as: txn_amount_max_7d}},
              request:account_age_days, request:amount],
     request_schema: [{{name: amount, dtype: float64}}, {{name: account_age_days, dtype: int64}}]}}
"#
        )
    };
    let catalog = |_: &ModuleRef| Some(fraud.signature().clone());
    let project = Definitions::from_yaml(&defs(""))
        .unwrap()
        .validate(&catalog)
        .unwrap();
    let modules = |_: &ModuleRef| Some(fraud.clone());
    let plan =
        ServicePlan::for_features(&project, &["risk:amount_log1p".into()], &modules).unwrap();
    // The frame needs the request fields the transform reads.
    let frame = dir.path().join("frame.parquet");
    write(
        &frame,
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 2, 1])) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![day, day, 2 * day])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]))),
            (
                "account_age_days",
                Arc::new(Int64Array::from(vec![5, 6, 7])),
            ),
        ],
    );
    let derived = dir.path().join("risk_history.parquet");
    let made = skewless_offline::backfill(
        &project,
        dir.path(),
        &plan,
        &frame,
        &derived,
        &skewless_offline::BackfillOptions {
            names: skewless_offline::ColumnNames::Plain,
            ..options(None)
        },
        &skewless_offline::NoProgress,
    );
    assert!(made.is_ok(), "{made:?}");
    let written = read(&derived);
    let names: Vec<String> = written
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "user_id",
            "event_timestamp",
            "amount",
            "account_age_days",
            "amount_log1p"
        ]
    );

    // Declared as a source, the derived history feeds a view like any other.
    let project = Definitions::from_yaml(&defs(
        "  - {name: risk_history, path: risk_history.parquet}\n",
    ))
    .unwrap();
    let mut project = project;
    project.feature_views.push(
        serde_yaml_ng::from_str(
            "{name: risk_view, entities: [user], source: risk_history, features: [{name: amount_log1p, dtype: float64}]}",
        )
        .unwrap(),
    );
    let project = project.validate(&catalog).unwrap();
    let plan =
        ServicePlan::for_features(&project, &["risk_view:amount_log1p".into()], &modules).unwrap();
    let entities = dir.path().join("later.parquet");
    write(
        &entities,
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 1, 2])) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![day + 1, 3 * day, 0])),
            ),
        ],
    );
    let out = dir.path().join("out.parquet");
    skewless_offline::backfill(
        &project,
        dir.path(),
        &plan,
        &entities,
        &out,
        &options(None),
        &skewless_offline::NoProgress,
    )
    .unwrap();
    let got = read(&out);
    let values: Vec<Option<f64>> = got
        .column_by_name("risk_view:amount_log1p")
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect();
    assert_eq!(values, vec![Some(1f64.ln_1p()), Some(3f64.ln_1p()), None]);

    // Plain names that collide are refused before anything is written.
    let plan =
        ServicePlan::for_features(&project, &["risk:*".into(), "stats:value".into()], &modules)
            .unwrap();
    let clash = dir.path().join("clash.parquet");
    write(
        &clash,
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![day])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![1.0]))),
            ("account_age_days", Arc::new(Int64Array::from(vec![5]))),
            ("amount_log1p", Arc::new(Float64Array::from(vec![0.0]))),
        ],
    );
    let e = skewless_offline::backfill(
        &project,
        dir.path(),
        &plan,
        &clash,
        &dir.path().join("never.parquet"),
        &skewless_offline::BackfillOptions {
            names: skewless_offline::ColumnNames::Plain,
            ..options(None)
        },
        &skewless_offline::NoProgress,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("`amount_log1p`") && e.to_string().contains("already taken"),
        "{e}"
    );
    assert!(!dir.path().join("never.parquet").exists());
}

/// Timestamps with a time zone are instants whatever the zone; naive ones are UTC. The
/// same instants in another zone or unit join the same rows.
#[test]
fn time_zones_and_units_name_the_same_instants() {
    let dir = tempfile::tempdir().unwrap();
    let defs = r#"
project: tz
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: s, path: s.parquet}]
feature_views: [{name: v, entities: [user], source: s, ttl: 1h, features: [{name: x, dtype: float64}]}]
feature_services: [{name: svc, features: ["v:*"]}]
"#;
    let project = Definitions::from_yaml(defs)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap();
    let plan = ServicePlan::for_service(&project, "svc", &|_| None).unwrap();
    let hour = 3600 * S;
    let t = 1_795_132_800 * S;
    // Naive source times: read as UTC.
    write(
        &dir.path().join("s.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 1])) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![t, t + hour])),
            ),
            ("x", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
        ],
    );
    // Entity rows at t + 30 min, t + 90 min and t + 3 h (past the TTL).
    let at_ms = [
        t / 1000 + 1_800_000,
        t / 1000 + 5_400_000,
        t / 1000 + 10_800_000,
    ];
    let frames: Vec<(&str, ArrayRef)> = vec![
        (
            "utc-micros",
            Arc::new(
                TimestampMicrosecondArray::from(at_ms.iter().map(|m| m * 1000).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
        ),
        (
            "plus-two-millis",
            Arc::new(
                arrow_array::TimestampMillisecondArray::from(at_ms.to_vec())
                    .with_timezone("+02:00"),
            ),
        ),
        (
            "paris-seconds",
            Arc::new(
                arrow_array::TimestampSecondArray::from(
                    at_ms.iter().map(|m| m / 1000).collect::<Vec<_>>(),
                )
                .with_timezone("Europe/Paris"),
            ),
        ),
    ];
    for (name, times) in frames {
        let entities = dir.path().join(format!("{name}.parquet"));
        write(
            &entities,
            vec![
                (
                    "user_id",
                    Arc::new(Int64Array::from(vec![1, 1, 1])) as ArrayRef,
                ),
                ("event_timestamp", times),
            ],
        );
        let out = dir.path().join(format!("{name}-out.parquet"));
        skewless_offline::backfill(
            &project,
            dir.path(),
            &plan,
            &entities,
            &out,
            &options(None),
            &skewless_offline::NoProgress,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = read(&out);
        let x: Vec<Option<f64>> = got
            .column_by_name("v:x")
            .unwrap()
            .as_primitive::<Float64Type>()
            .iter()
            .collect();
        assert_eq!(x, vec![Some(1.0), Some(2.0), None], "{name}");
    }
}

/// A spilled backfill that fails after it began spilling (a source whose data pages are
/// corrupt, behind a valid footer) leaves neither its spill directory nor an output.
#[test]
fn a_failed_spilled_backfill_removes_its_spill_files() {
    let dir = tempfile::tempdir().unwrap();
    let project = Definitions::from_yaml(DEFS)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap();
    let plan = ServicePlan::for_service(&project, "svc", &|_| None).unwrap();
    let n = 2000;
    let users = || Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef;
    let times = || {
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            (0..n).map(|i| i * S),
        ))
    };
    let stats = dir.path().join("stats.parquet");
    write(
        &stats,
        vec![
            ("user_id", users()),
            ("ts", times()),
            ("created", times()),
            (
                "value",
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))),
            ),
        ],
    );
    std::fs::create_dir_all(dir.path().join("pairs")).unwrap();
    let merchants = || {
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("m{i}")),
        )) as ArrayRef
    };
    write(
        &dir.path().join("pairs/p.parquet"),
        vec![
            ("user_id", users()),
            ("merchant", merchants()),
            ("event_timestamp", times()),
            ("count", Arc::new(Int64Array::from_iter_values(0..n))),
        ],
    );
    let entities = dir.path().join("entities.parquet");
    write(
        &entities,
        vec![
            ("user_id", users()),
            ("merchant", merchants()),
            ("event_timestamp", times()),
        ],
    );
    let spill = dir.path().join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let out = dir.path().join("training.parquet");
    let run = || {
        skewless_offline::backfill(
            &project,
            dir.path(),
            &plan,
            &entities,
            &out,
            &skewless_offline::BackfillOptions {
                spill_dir: Some(spill.clone()),
                // Over the limit: the partitions go to spill files.
                memory_limit: 1,
                ..options(Some(4))
            },
            &skewless_offline::NoProgress,
        )
    };
    // It works as given, and cleans up after itself.
    let done = run().unwrap();
    assert_eq!((done.partitions, done.spilled), (4, true));
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
    std::fs::remove_file(&out).unwrap();

    // The first page header of the stats file, garbled; the footer still reads.
    let mut bytes = std::fs::read(&stats).unwrap();
    for b in &mut bytes[4..24] {
        *b = 0xff;
    }
    std::fs::write(&stats, bytes).unwrap();
    let error = run().unwrap_err().to_string();
    assert!(error.contains("stats.parquet"), "{error}");
    let left: Vec<_> = std::fs::read_dir(&spill).unwrap().collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
    assert!(!out.exists(), "no output under the final name");
}
