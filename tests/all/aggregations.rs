//! Aggregate features in a backfill against an independent reference: the documented
//! window as a DuckDB range join and every aggregate in exact arithmetic
//! (tests/reference/duckdb_windows.py), on random event histories with ties, late and
//! out-of-order arrivals, nulls, NaN, -0.0 and extreme magnitudes; in memory and
//! partitioned alike.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use serde_json::Value;
use skewless_core::Definitions;
use skewless_core::definitions::ModuleRef;
use skewless_plan::ServicePlan;

use crate::support::{Lcg, read_parquet, write_parquet};

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
/// 2026-11-01T00:00:00Z.
const T0: i64 = 1_793_491_200_000_000;

const DEFS: &str = r#"
project: windows
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: transactions, path: events.parquet, timestamp_field: event_timestamp,
     created_timestamp_field: ingested_at, allowed_lateness: 1h,
     columns: [{name: amount, dtype: float64}, {name: merchant, dtype: string}]}
feature_views:
  - name: user_txn
    entities: [user]
    source: transactions
    online: false
    hop: 5m
    aggregations:
      - {name: txn_count_1h,     function: count, window: 1h}
      - {name: amounts_24h,      function: count, column: amount, window: 24h}
      - {name: amount_sum_24h,   function: sum, column: amount, window: 24h}
      - {name: amount_mean_7d,   function: mean, column: amount, window: 7d}
      - {name: amount_min_6h,    function: min, column: amount, window: 6h}
      - {name: amount_max_7d,    function: max, column: amount, window: 7d}
      - {name: amount_var_24h,   function: var_pop, column: amount, window: 24h}
      - {name: amount_stddev_7d, function: stddev, column: amount, window: 7d}
      - {name: first_merchant,   function: first, column: merchant, window: 7d}
      - {name: last_merchant,    function: last, column: merchant, window: 30d}
      - {name: merchants_30d,    function: approx_count_distinct, column: merchant, window: 30d}
feature_services: [{name: txn, features: ["user_txn:*"]}]
"#;

/// (function, column, window) of DEFS, in order, for the reference.
const SPEC: [(&str, Option<&str>, i64); 11] = [
    ("count", None, HOUR),
    ("count", Some("amount"), 24 * HOUR),
    ("sum", Some("amount"), 24 * HOUR),
    ("mean", Some("amount"), 168 * HOUR),
    ("min", Some("amount"), 6 * HOUR),
    ("max", Some("amount"), 168 * HOUR),
    ("var_pop", Some("amount"), 24 * HOUR),
    ("stddev_samp", Some("amount"), 168 * HOUR),
    ("first", Some("merchant"), 168 * HOUR),
    ("last", Some("merchant"), 720 * HOUR),
    ("approx_count_distinct", Some("merchant"), 720 * HOUR),
];

/// A number in `0..n` for any `n` (`Lcg::next` gives 31 bits).
fn below(rng: &mut Lcg, n: u64) -> u64 {
    ((rng.next(1 << 31) << 31) | rng.next(1 << 31)) % n
}

fn amount(rng: &mut Lcg) -> Option<f64> {
    Some(match rng.next(40) {
        0 => return None,
        1 => f64::NAN,
        2 => -0.0,
        3 => 1e300,
        4 => -1e300,
        5 => 1e-300,
        _ => rng.next(100_000) as f64 / 100.0,
    })
}

#[test]
fn aggregate_features_equal_exact_arithmetic_over_the_documented_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(2026);
    let merchants = [
        "Café de Flore",
        "Lucky Casino",
        "日本橋",
        "🦀 shack",
        "",
        "ACME",
    ];
    let n = 6_000;
    let (mut user, mut ts, mut created, mut amounts, mut merchant) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        user.push(rng.next(25) as i64);
        // Ten days, on whole minutes a third of the time (ties), else any microsecond.
        let t = T0
            + if rng.chance(33) {
                rng.next(10 * 24 * 60) as i64 * MINUTE
            } else {
                below(&mut rng, 10 * 24 * 3_600_000_000) as i64
            };
        ts.push(t);
        // Most arrive within minutes, some up to 90 min late (past the allowed hour).
        let delay = if rng.chance(85) {
            below(&mut rng, 5 * MINUTE as u64)
        } else {
            below(&mut rng, 90 * MINUTE as u64)
        };
        // A few producers' clocks run ahead: arrival stamped before the event time.
        let skew = if rng.chance(3) {
            -(rng.next(1_000_000) as i64) - 1
        } else {
            0
        };
        created.push(t + delay as i64 * i64::from(skew == 0) + skew);
        amounts.push(amount(&mut rng));
        merchant.push(if rng.chance(5) {
            None
        } else {
            Some(rng.pick(&merchants))
        });
    }
    write_parquet(
        &dir.path().join("events.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(user.clone()))),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(ts.clone()).with_timezone("UTC")),
            ),
            (
                "ingested_at",
                Arc::new(TimestampMicrosecondArray::from(created.clone()).with_timezone("UTC")),
            ),
            ("amount", Arc::new(Float64Array::from(amounts))),
            ("merchant", Arc::new(StringArray::from(merchant))),
        ],
    );
    // Entity rows: random times, a tenth exactly at an event's time (the head excludes it).
    let rows = 1_500;
    let (mut e_user, mut e_ts) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        if rng.chance(10) {
            let i = rng.next(n as u64) as usize;
            e_user.push(user[i]);
            e_ts.push(ts[i]);
        } else {
            e_user.push(rng.next(27) as i64);
            e_ts.push(T0 + below(&mut rng, 11 * 24 * 3_600_000_000) as i64);
        }
    }
    let entities = dir.path().join("entities.parquet");
    write_parquet(
        &entities,
        vec![
            ("user_id", Arc::new(Int64Array::from(e_user))),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(e_ts).with_timezone("UTC")),
            ),
        ],
    );

    // The reference.
    let spec = serde_json::json!({
        "hop": 5 * MINUTE,
        "lateness": HOUR,
        "aggregates": SPEC.iter().map(|(f, c, w)| serde_json::json!([f, c, w])).collect::<Vec<_>>(),
    });
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let expected_path = dir.path().join("expected.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/duckdb_windows.py");
    let status = std::process::Command::new("python3")
        .arg(script)
        .arg(dir.path().join("events.parquet"))
        .arg(&entities)
        .arg(&spec_path)
        .arg(&expected_path)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "the DuckDB reference failed");
    let expected: Vec<Vec<Value>> =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    assert_eq!(expected.len(), rows);

    let project = Definitions::from_yaml(DEFS)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap();
    let plan = ServicePlan::for_service(&project, "txn", &|_| None).unwrap();
    for partitions in [None, Some(3)] {
        let out = dir.path().join(format!("training-{partitions:?}.parquet"));
        let options = skewless_offline::BackfillOptions {
            threads: 2,
            partitions,
            ..Default::default()
        };
        skewless_offline::backfill(
            &project,
            dir.path(),
            &plan,
            &entities,
            &out,
            &options,
            &skewless_offline::NoProgress,
        )
        .unwrap();
        let got = read_parquet(&out);
        assert_eq!(got.num_rows(), rows);
        let mut nonempty = 0;
        for (a, (function, _, _)) in SPEC.iter().enumerate() {
            let column = got.column(2 + a);
            for (r, want) in expected.iter().map(|row| &row[a]).enumerate() {
                let here = format!("{function} (feature {a}), row {r}, partitions {partitions:?}");
                match (function, want) {
                    (_, Value::Null) => assert!(column.is_null(r), "{here}: want null"),
                    (&"approx_count_distinct", want) => {
                        let exact = want["distinct"].as_i64().unwrap();
                        let est = column.as_primitive::<Int64Type>().value(r);
                        assert!(
                            (est - exact).abs() <= exact / 30 + 1,
                            "{here}: {est} for {exact}"
                        );
                    }
                    (&"count", want) => {
                        assert_eq!(
                            column.as_primitive::<Int64Type>().value(r),
                            want.as_i64().unwrap(),
                            "{here}"
                        );
                        nonempty += usize::from(want.as_i64() != Some(0));
                    }
                    (&"first" | &"last", want) => {
                        assert_eq!(
                            column.as_string::<i32>().value(r),
                            want.as_str().unwrap(),
                            "{here}"
                        );
                    }
                    (_, want) => {
                        assert!(column.is_valid(r), "{here}: null, want {want}");
                        let got = column.as_primitive::<Float64Type>().value(r);
                        let want = f64::from_bits(want["f"].as_u64().unwrap());
                        assert!(
                            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                            "{here}: {got:e} ({:#x}), exact {want:e} ({:#x})",
                            got.to_bits(),
                            want.to_bits()
                        );
                    }
                }
            }
        }
        // The data reached the windows: most counts are not zero.
        assert!(nonempty > rows, "only {nonempty} non-empty counts");
    }
}
