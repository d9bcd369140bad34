//! `POST /v1/verify`, the served sample, and drift, over real HTTP: rows a service served,
//! recomputed through the offline path from the Parquet sources, agree bit for bit (and a
//! planted skew is reported); the drift report compares served values with a training set.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, TimestampMicrosecondArray};
use serde_json::{Value, json};
use skewless_test_artifacts::FRAUD_RISK;

use crate::jobs::{DAY, T0, defs};
use crate::support::{Lcg, TestServer, write_parquet};

/// Users 1..=40 with three rows each within ten days before T0, and user 1's only row
/// exactly one TTL (7 days) before T0: served at T0 only if `<=` is `<=`.
fn write_history(dir: &Path) {
    let mut rng = Lcg(7);
    let (mut users, mut ts, mut avg, mut max, mut age) =
        (vec![1], vec![T0 - 7 * DAY], vec![12.5], vec![40.0], vec![3]);
    for user in 2..=40 {
        for _ in 0..3 {
            users.push(user);
            ts.push(T0 - rng.next(10 * DAY as u64) as i64);
            avg.push(rng.next(10_000) as f64 / 7.0);
            max.push(rng.next(100_000) as f64 / 3.0);
            age.push(rng.next(900) as i64);
        }
    }
    write_parquet(
        &dir.join("history/user_stats.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(users)) as ArrayRef),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(ts)),
            ),
            ("txn_amount_avg_7d", Arc::new(Float64Array::from(avg))),
            ("txn_amount_max_7d", Arc::new(Float64Array::from(max))),
            ("account_age_days", Arc::new(Int64Array::from(age))),
        ],
    );
}

/// Uploads the module, applies the definitions, and materializes up to T0.
fn prepare(server: &TestServer) {
    let (status, body) = server.call(
        "PUT",
        "/v1/transforms/fraud_risk/1.0.0",
        &std::fs::read(FRAUD_RISK).unwrap(),
        None,
    );
    assert!(status == 201 || status == 200, "{body}");
    let (status, body) = server.call("PUT", "/v1/definitions", defs().as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    let (status, accepted) = server.json(
        "POST",
        "/v1/materialize",
        &json!({"start": T0 - 30 * DAY, "end": T0}),
    );
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(server.wait_job(&accepted)["state"], "succeeded");
}

fn serve(server: &TestServer, users: &[i64], amounts: &[f64]) -> Value {
    let (status, body) = server.json(
        "POST",
        "/v1/features",
        &json!({"feature_service": "fraud_v1", "entities": {"user_id": users},
                "request_data": {"amount": amounts}, "request_time": T0}),
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// Up to `rows` rows of fraud_v1's served sample, and the set of their user ids.
fn served_sample(server: &TestServer, rows: usize) -> (Value, BTreeSet<i64>) {
    let (status, sample) = server.json(
        "GET",
        &format!("/v1/feature-services/fraud_v1/sample?rows={rows}"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{sample}");
    let ids = sample["entities"]["user_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    (sample, ids)
}

fn amounts(rng: &mut Lcg, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| (1 + rng.next(5_000)) as f64 / 4.0 * scale)
        .collect()
}

#[test]
fn verify_replays_served_rows_through_the_offline_path() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    let server = TestServer::start(dir.path(), None);
    prepare(&server);
    let mut rng = Lcg(11);
    for users in [1..=10, 11..=20, 21..=30] {
        let users: Vec<i64> = users.collect();
        serve(&server, &users, &amounts(&mut rng, users.len(), 1.0));
    }
    // Ad-hoc feature lists are not a service's traffic: not sampled.
    let (status, body) = server.json(
        "POST",
        "/v1/features",
        &json!({"features": ["user_stats:*"], "entities": {"user_id": [31]}}),
    );
    assert_eq!(status, 200, "{body}");

    let (sample, ids) = served_sample(&server, 1000);
    assert_eq!(
        (sample["rows"].as_u64(), sample["seen"].as_u64()),
        (Some(30), Some(30))
    );
    assert_eq!(ids, (1..=30).collect());
    assert_eq!(
        sample["values"]["txn_risk:amount_log1p"]
            .as_array()
            .unwrap()
            .len(),
        30
    );

    let (status, report) = server.json("POST", "/v1/verify", &json!({"service": "fraud_v1"}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["at"], "2026-11-20T00:00:00.000000Z", "the watermark");
    assert_eq!(report["rows"], 30);
    assert_eq!(report["features"], 7);
    assert_eq!(report["values_checked"], 210);
    assert_eq!(report["mismatches"], 0, "{report}");

    // Rows given explicitly, with special floats and an unknown user.
    let (status, report) = server.json(
        "POST",
        "/v1/verify",
        &json!({"service": "fraud_v1", "entities": {"user_id": [31, 32, 99]},
                "request_data": {"amount": ["NaN", -0.0, 1e-310]}, "at": T0 - DAY}),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["rows"].as_u64(), report["mismatches"].as_u64()),
        (Some(3), Some(0))
    );
    // A day before the watermark: the report says why differences could be expected.
    assert!(
        report["notes"][0].as_str().unwrap().starts_with(
            "view `user_stats` is materialized to 2026-11-20T00:00:00.000000Z, after 2026-11-19"
        ),
        "{report}"
    );

    // Replays are not traffic: the sample saw only the 30 served rows.
    assert_eq!(served_sample(&server, 1).0["seen"], 30);

    let (_, metrics) = server.call("GET", "/metrics", b"", None);
    assert!(
        metrics.contains("skewless_verify_values_total{service=\"fraud_v1\"} 231"),
        "{metrics}"
    );
    assert!(metrics.contains("skewless_verify_mismatches_total{service=\"fraud_v1\"} 0"));
}

/// One NaN everywhere (ADR 0008): stored NaNs of any sign or payload (numpy writes
/// `0xfff8000000000000` for 0.0/0.0) are the canonical NaN in the training set, in the
/// online store and in what is served, so the bit-exact verify finds nothing, and a client
/// reading `"NaN"` gets the training set's bits.
#[test]
fn stored_nans_of_every_payload_are_the_one_nan_in_training_and_serving() {
    let dir = tempfile::tempdir().unwrap();
    let nans = [
        f64::from_bits(0xfff8_0000_0000_0000),
        f64::from_bits(0x7ff8_dead_beef_0001),
        f64::from_bits(0x7ff0_0000_0000_0001),
    ];
    write_parquet(
        &dir.path().join("history/user_stats.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![T0 - DAY; 3])),
            ),
            (
                "txn_amount_avg_7d",
                Arc::new(Float64Array::from(nans.to_vec())),
            ),
            (
                "txn_amount_max_7d",
                Arc::new(Float64Array::from(nans.to_vec())),
            ),
            (
                "account_age_days",
                Arc::new(Int64Array::from(vec![5, 6, 7])),
            ),
        ],
    );
    let server = TestServer::start(dir.path(), None);
    prepare(&server);
    let served = serve(&server, &[1, 2, 3], &[10.0, 20.0, 30.0]);
    let names = served["metadata"]["feature_names"].as_array().unwrap();
    let avg = names
        .iter()
        .position(|n| n == "user_stats:txn_amount_avg_7d")
        .unwrap();
    assert_eq!(
        served["results"][avg]["values"],
        json!(["NaN", "NaN", "NaN"])
    );
    assert_eq!(served["results"][avg]["statuses"][0], "PRESENT");

    let (status, report) = server.json("POST", "/v1/verify", &json!({"service": "fraud_v1"}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["mismatches"], 0, "{report}");

    // The training set of the same rows holds the canonical NaN, bit for bit.
    write_parquet(
        &dir.path().join("frame.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![T0; 3])),
            ),
            (
                "amount",
                Arc::new(Float64Array::from(vec![10.0, 20.0, 30.0])),
            ),
        ],
    );
    let (status, accepted) = server.json(
        "POST",
        "/v1/backfill",
        &json!({"service": "fraud_v1", "entities": "frame.parquet", "out": "train.parquet"}),
    );
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(server.wait_job(&accepted)["state"], "succeeded");
    let train = crate::support::read_parquet(&dir.path().join("train.parquet"));
    for name in [
        "user_stats:txn_amount_avg_7d",
        "user_stats:txn_amount_max_7d",
    ] {
        let column = train
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone();
        for v in column.values() {
            assert_eq!(
                v.to_bits(),
                skewless_core::CANONICAL_NAN_F64,
                "{name}: {v:?}"
            );
        }
    }
}

#[test]
fn verify_reports_a_planted_ttl_skew() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    let server =
        TestServer::start_layered(dir.path(), |_| {}, crate::support::FaultyStore::skewed());
    prepare(&server);
    serve(&server, &[1, 2, 3], &[10.0, 20.0, 30.0]);
    let (status, report) = server.json("POST", "/v1/verify", &json!({"service": "fraud_v1"}));
    assert_eq!(status, 200, "{report}");
    // User 1's three stored features, and transform outputs that read them; not
    // `amount_log1p`, which reads only the request.
    let by_feature = report["mismatches_by_feature"].as_object().unwrap();
    for stored in ["txn_amount_avg_7d", "txn_amount_max_7d", "account_age_days"] {
        assert_eq!(by_feature[&format!("user_stats:{stored}")], 1, "{report}");
    }
    assert!(
        by_feature.contains_key("txn_risk:amount_zscore_proxy"),
        "{report}"
    );
    assert!(
        !by_feature.contains_key("txn_risk:amount_log1p"),
        "{report}"
    );
    let first = &report["examples"][0];
    assert_eq!(first["entity"], json!({"user_id": 1}));
    assert_eq!(first["feature"], "user_stats:txn_amount_avg_7d");
    assert_eq!(first["served"], Value::Null);
    assert_eq!(first["served_status"], "OUTSIDE_MAX_AGE");
    assert_eq!(first["offline"], 12.5);
}

#[test]
fn the_sample_is_bounded_and_uniform_over_everything_served() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    let server = TestServer::start_configured(dir.path(), |c| c.sample_rows = 8);
    prepare(&server);
    for start in (1..=200).step_by(10) {
        let users: Vec<i64> = (start..start + 10).collect();
        serve(&server, &users, &[1.0; 10]);
    }
    let (sample, ids) = served_sample(&server, 100);
    assert_eq!(
        (sample["rows"].as_u64(), sample["seen"].as_u64()),
        (Some(8), Some(200))
    );
    assert_eq!(ids.len(), 8, "distinct rows: {ids:?}");
    assert!(
        ids.iter().filter(|&&id| id > 100).count() >= 2,
        "later traffic is sampled too: {ids:?}"
    );
    assert_eq!(served_sample(&server, 3).0["rows"], 3);
}

#[test]
fn verify_sample_and_drift_refuse_what_they_cannot_check() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    let server = TestServer::start(dir.path(), None);
    prepare(&server);
    let refused = |method: &str, path: &str, body: Value, status: u16, says: &str| {
        let (got, answer) = server.json(method, path, &body);
        assert_eq!(got, status, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says),
            "{path}: `{error}` should say `{says}`"
        );
    };
    let verify =
        |body: Value, status: u16, says: &str| refused("POST", "/v1/verify", body, status, says);
    verify(json!({"service": "fraud_v1"}), 409, "has served no rows");
    refused(
        "GET",
        "/v1/feature-services/fraud_v1/sample",
        Value::Null,
        409,
        "has served no rows",
    );
    refused(
        "GET",
        "/v1/feature-services/fraud_v1/drift?training=history/user_stats.parquet",
        Value::Null,
        409,
        "has served no rows",
    );
    verify(json!({"service": "nope"}), 404, "no feature service `nope`");
    verify(
        json!({"service": "fraud_v1", "rows": 5, "extra": 1}),
        400,
        "unknown field `extra`",
    );
    verify(
        json!({"service": "fraud_v1", "entities": {"user_id": [1, 2]}, "request_data": {"amount": [1.0]}}),
        400,
        "request_data.amount has 1 values, but other columns have 2",
    );
    verify(
        json!({"service": "fraud_v1", "entities": {"user_id": [1]}}),
        400,
        "request_data.amount is missing",
    );
    serve(&server, &[1, 2], &[1.0, 2.0]);
    verify(
        json!({"service": "fraud_v1", "at": "yesterday"}),
        400,
        "at:",
    );
    let drift = |training: &str, status: u16, says: &str| {
        refused(
            "GET",
            &format!("/v1/feature-services/fraud_v1/drift?training={training}"),
            Value::Null,
            status,
            says,
        );
    };
    drift("missing.parquet", 400, "does not exist");
    drift("../etc/passwd", 400, "without `..`");
    drift(
        "history/user_stats.parquet",
        422,
        "user_stats:txn_amount_avg_7d",
    );

    // The same features under a renamed request field: rows sampled before the apply
    // are laid out for the old request, so they are not replayed.
    let renamed = defs().replace(
        "request:amount],\n     request_schema: [{name: amount,",
        "{from: \"request:amt\", as: amount}],\n     request_schema: [{name: amt,",
    );
    assert_ne!(renamed, defs());
    let (status, body) = server.call("PUT", "/v1/definitions", renamed.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    verify(json!({"service": "fraud_v1"}), 409, "has served no rows");
}

#[test]
fn drift_is_zero_on_the_training_distribution_and_large_on_a_shift() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    let users: Vec<i64> = (1..=40).collect();
    let mut rng = Lcg(5);
    let trained_amounts = amounts(&mut rng, users.len(), 1.0);
    write_parquet(
        &dir.path().join("entities.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(users.clone())) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![T0; users.len()])),
            ),
            (
                "amount",
                Arc::new(Float64Array::from(trained_amounts.clone())),
            ),
        ],
    );
    {
        let server = TestServer::start(dir.path(), None);
        prepare(&server);
        let (status, accepted) = server.json(
            "POST",
            "/v1/backfill",
            &json!({"service": "fraud_v1", "entities": "entities.parquet", "out": "training.parquet"}),
        );
        assert_eq!(status, 202, "{accepted}");
        assert_eq!(server.wait_job(&accepted)["state"], "succeeded");
        // Served exactly the training rows: the same distributions.
        serve(&server, &users, &trained_amounts);
        let (status, drift) = server.json(
            "GET",
            "/v1/feature-services/fraud_v1/drift?training=training.parquet",
            &Value::Null,
        );
        assert_eq!(status, 200, "{drift}");
        let features = drift["features"].as_array().unwrap();
        assert_eq!(features.len(), 7);
        for f in features {
            assert_eq!(f["psi"], 0.0, "{f}");
            assert_eq!(f["null_rate_diff"], 0.0, "{f}");
            assert_eq!(
                (f["served_rows"].as_u64(), f["training_rows"].as_u64()),
                (Some(40), Some(40))
            );
            if f["dtype"] == "bool" {
                assert_eq!(f["ks"], Value::Null, "no KS for categories");
            } else {
                assert_eq!(f["ks"], 0.0, "{f}");
            }
        }
    }
    // A restart starts a new sample; now the requests carry amounts a thousand times larger.
    let server = TestServer::start(dir.path(), None);
    serve(&server, &users, &amounts(&mut rng, users.len(), 1000.0));
    let (status, drift) = server.json(
        "GET",
        "/v1/feature-services/fraud_v1/drift?training=training.parquet",
        &Value::Null,
    );
    assert_eq!(status, 200, "{drift}");
    let feature = |name: &str| {
        drift["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == name)
            .unwrap_or_else(|| panic!("{name} in {drift}"))
            .clone()
    };
    let shifted = feature("txn_risk:amount_log1p");
    assert!(shifted["psi"].as_f64().unwrap() > 0.25, "{shifted}");
    assert!(shifted["ks"].as_f64().unwrap() > 0.9, "{shifted}");
    let stored = feature("user_stats:txn_amount_avg_7d");
    assert_eq!(
        stored["psi"], 0.0,
        "the same users, the same stored values: {stored}"
    );
    let (_, metrics) = server.call("GET", "/metrics", b"", None);
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "skewless_feature_drift_psi{service=\"fraud_v1\",feature=\"txn_risk:amount_log1p\"}",
            )
        })
        .unwrap_or_else(|| panic!("no PSI gauge in {metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value, shifted["psi"].as_f64().unwrap());
}
