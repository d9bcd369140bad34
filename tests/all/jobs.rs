//! Backfills and materializations run by the server as jobs, over real HTTP: a job id at
//! once, progress while it runs, the result or the reason it failed; paths confined to
//! the server's source root; materialized rows served by `POST /v1/features`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{ArrayRef, Float64Array, Int64Array, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use skewless_test_artifacts::FRAUD_RISK;

use crate::support::{TestServer, write_parquet as write};

/// The fraud definitions, the view read from `history/user_stats.parquet`.
pub(crate) fn defs() -> String {
    skewless_test_artifacts::fraud_defs("path: history/user_stats.parquet")
}

/// 2026-11-20T00:00:00Z in microseconds.
pub(crate) const T0: i64 = 1_795_132_800_000_000;
pub(crate) const DAY: i64 = 86_400_000_000;

/// Users 1..=3, two rows each: day -3 and day -1 (user 3's later row is after the window
/// materialized below).
fn setup(dir: &Path) -> TestServer {
    write(
        &dir.join("history/user_stats.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 1, 2, 3])) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    T0 - 3 * DAY,
                    T0 - 3 * DAY,
                    T0 - 3 * DAY,
                    T0 - DAY,
                    T0 - DAY,
                    T0 + DAY,
                ])),
            ),
            (
                "txn_amount_avg_7d",
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0])),
            ),
            (
                "txn_amount_max_7d",
                Arc::new(Float64Array::from(vec![5.0, 6.0, 7.0, 50.0, 60.0, 70.0])),
            ),
            (
                "account_age_days",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])),
            ),
        ],
    );
    let server = TestServer::start(dir, None);
    let (status, body) = server.call(
        "PUT",
        "/v1/transforms/fraud_risk/1.0.0",
        &std::fs::read(FRAUD_RISK).unwrap(),
        None,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.call("PUT", "/v1/definitions", defs().as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    server
}

#[test]
fn materialize_job_fills_the_store_the_server_serves_and_moves_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path());
    let (status, accepted) = server.json(
        "POST",
        "/v1/materialize",
        &json!({"start": T0 - 10 * DAY, "end": "2026-11-20T00:00:00Z"}),
    );
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_job(&accepted);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["views"][0]["rows_in_window"], 5);
    assert_eq!(job["result"]["views"][0]["rows_written"], 3);
    assert_eq!(
        (job["done"].as_u64(), job["total"].as_u64()),
        (Some(3), Some(3))
    );

    let (status, body) = server.json(
        "POST",
        "/v1/features",
        &json!({"feature_service": "fraud_v1", "entities": {"user_id": [1, 2, 3, 4]},
                "request_data": {"amount": [1.0, 1.0, 1.0, 1.0]}, "request_time": T0}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["values"], json!([10.0, 20.0, 3.0, null]));

    // Incremental: from the watermark (T0) to T0 + 2 days picks up user 3's late row.
    let (status, accepted) = server.json("POST", "/v1/materialize", &json!({"end": T0 + 2 * DAY}));
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        accepted["request"]["windows"][0]["start"], "2026-11-20T00:00:00.000000Z",
        "starts at the watermark"
    );
    let job = server.wait_job(&accepted);
    assert_eq!(job["result"]["views"][0]["rows_written"], 1, "{job}");
    let watermarks: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("registry/watermarks.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(watermarks["user_stats"]["end_micros"], T0 + 2 * DAY);
    // An end before the watermark has nothing to load: refused, naming the watermark.
    let (status, refused) = server.json("POST", "/v1/materialize", &json!({"end": T0}));
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("is materialized up to 2026-11-22T00:00:00.000000Z, after `end`"),
        "{refused}"
    );
    let (_, jobs) = server.json("GET", "/v1/jobs", &json!(null));
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2);
}

#[test]
fn backfill_job_writes_the_training_set_under_the_source_root() {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path());
    write(
        &dir.path().join("entities.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![T0, T0 - 2 * DAY, T0])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![5.0, 5.0, 5.0]))),
        ],
    );
    let (status, accepted) = server.json(
        "POST",
        "/v1/backfill",
        &json!({"service": "fraud_v1", "entities": "entities.parquet", "out": "out/train.parquet"}),
    );
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_job(&accepted);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["rows"], 3);
    let file = std::fs::File::open(dir.path().join("out/train.parquet")).unwrap();
    let batch = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let avg = batch
        .column_by_name("user_stats:txn_amount_avg_7d")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(
        avg.values().to_vec(),
        vec![10.0, 2.0, 3.0],
        "as of each row's time"
    );
    assert!(batch.column_by_name("txn_risk:amount_log1p").is_some());

    // A failing job reports why: the entity frame lacks the request field.
    write(
        &dir.path().join("no_amount.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![T0])),
            ),
        ],
    );
    let (status, accepted) = server.json(
        "POST",
        "/v1/backfill",
        &json!({"service": "fraud_v1", "entities": "no_amount.parquet", "out": "bad.parquet"}),
    );
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_job(&accepted);
    assert_eq!(job["state"], "failed");
    assert!(job["error"].as_str().unwrap().contains("`amount`"), "{job}");
    // The frame is the caller's to fix, and the status says so.
    assert_eq!(job["fault"], "caller", "{job}");
    assert!(!dir.path().join("bad.parquet").exists());
}

#[test]
fn job_requests_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path());
    let refusals = [
        (
            "/v1/backfill",
            json!({"service": "fraud_v1", "entities": "../x.parquet", "out": "o.parquet"}),
            400,
            "without `..`",
        ),
        (
            "/v1/backfill",
            json!({"service": "fraud_v1", "entities": "/etc/passwd", "out": "o.parquet"}),
            400,
            "relative to the server's source root",
        ),
        (
            "/v1/backfill",
            json!({"service": "fraud_v1", "entities": "missing.parquet", "out": "o.parquet"}),
            400,
            "does not exist",
        ),
        (
            "/v1/backfill",
            json!({"service": "nope", "entities": "e.parquet", "out": "o.parquet"}),
            404,
            "no feature service `nope`",
        ),
        (
            "/v1/backfill",
            json!({"service": "fraud_v1", "entities": "e.parquet"}),
            400,
            "missing field `out`",
        ),
        ("/v1/materialize", json!({"end": "yesterday"}), 400, "end:"),
        (
            "/v1/materialize",
            json!({"end": T0, "views": ["nope"]}),
            400,
            "no feature view `nope`",
        ),
        (
            "/v1/materialize",
            json!({"end": T0, "typo": 1}),
            400,
            "unknown field `typo`",
        ),
        (
            "/v1/materialize",
            json!({"start": T0, "end": T0 - 1}),
            400,
            "the window starts at 2026-11-20T00:00:00.000000Z, after its end",
        ),
    ];
    for (path, body, want, says) in refusals {
        let (status, reply) = server.json("POST", path, &body);
        assert_eq!(status, want, "{path} {body}: {reply}");
        assert!(
            reply["error"].as_str().unwrap_or_default().contains(says),
            "{path} {body}: {reply}"
        );
    }
    let (_, jobs) = server.json("GET", "/v1/jobs", &json!(null));
    assert_eq!(jobs["jobs"], json!([]), "no refused request started a job");
    let (status, _) = server.json("GET", "/v1/jobs/backfill-99", &json!(null));
    assert_eq!(status, 404);
}
