//! `skewless quickstart` as a newcomer runs it: every step, a server that answers, a
//! training set that is point-in-time correct against the generated transactions, the
//! same files from the same seed, and a directory it did not make left alone.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use skewless_test_artifacts as artifacts;

fn quickstart(dir: &Path, rows: &str) -> Output {
    quickstart_with(dir, rows, &[])
}

/// The quickstart with its history ending at `end`.
fn quickstart_ending(dir: &Path, rows: &str, end: &str) -> Output {
    quickstart_with(dir, rows, &["--end", end])
}

fn quickstart_with(dir: &Path, rows: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skewless"))
        .arg("quickstart")
        .args(["--module", artifacts::FRAUD_RISK])
        .args(["--module", artifacts::GEO_DISTANCE])
        .args(["--module", artifacts::MERCHANT_CATEGORY])
        .args(extra)
        .args(["--rows", rows, "--listen", "127.0.0.1:0", "--exit", "--dir"])
        .arg(dir)
        // Off a terminal, progress is a log line every SKEWLESS_PROGRESS_SECS.
        .env("SKEWLESS_LOG", "warn,skewless::progress=info")
        .env("SKEWLESS_PROGRESS_SECS", "0")
        .output()
        .expect("skewless runs")
}

fn read(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn i64s(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no {name}"));
    match column.data_type() {
        arrow_schema::DataType::Int64 => column.as_primitive::<Int64Type>().iter().collect(),
        _ => column
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
    }
}

#[test]
fn quickstart_runs_every_step_and_its_training_set_is_point_in_time_correct() {
    let dir = tempfile::tempdir().unwrap();
    let qs = dir.path().join("qs");
    let out = quickstart(&qs, "4000");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "1. generated 4000 transactions",
        "3. backfilled 4000 rows x 19 features",
        "4. materialized",
        "5. serving on http://127.0.0.1:",
        "6. served the last 500 transactions as traffic, then verified 200 of them again at ",
        ": 3800 values, 0 mismatches against the offline path",
        "7. drift of what was served against training_set.parquet",
        "   txn_risk:amount_log1p              psi ",
        "Check it yourself: skewless verify --service fraud_v1 --defs ",
    ] {
        assert!(stdout.contains(step), "missing `{step}` in:\n{stdout}");
    }
    assert!(stdout.contains("curl -s http://127.0.0.1:"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b'),
        "no terminal colours off a terminal: {stderr}"
    );
    for what in ["backfill", "materialize"] {
        assert!(
            stderr.contains(&format!("progress what=\"{what}\" rows=")),
            "no plain progress line for {what}: {stderr}"
        );
    }
    assert!(
        stdout.contains(r#"txn_risk:amount_log1p"#) && stdout.contains(r#"["PRESENT","PRESENT"]"#),
        "the server answered with features: {stdout}"
    );

    // Point in time: each training row counts that user's transactions in the 7 days
    // before it (the tail aligned to the hour, the row's own time excluded) that had
    // arrived by then.
    let txns = read(&qs.join("transactions.parquet"));
    let events = read(&qs.join("transaction_events/history.parquet"));
    let training = read(&qs.join("training_set.parquet"));
    assert_eq!(training.num_rows(), 4000);
    assert!(
        training.column_by_name("is_fraud").is_some(),
        "labels carried through"
    );
    let users = i64s(&txns, "user_id");
    let times = i64s(&txns, "event_timestamp");
    let mut by_user: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for ((u, t), c) in i64s(&events, "user_id")
        .iter()
        .zip(i64s(&events, "event_timestamp"))
        .zip(i64s(&events, "ingested_at"))
    {
        by_user
            .entry(u.unwrap())
            .or_default()
            .push((t.unwrap(), c.unwrap()));
    }
    let counts = i64s(&training, "user_txn:txn_count_7d");
    let (day, hour) = (86_400_000_000i64, 3_600_000_000i64);
    let mut nonzero = 0;
    for row in 0..training.num_rows() {
        let (user, at) = (users[row].unwrap(), times[row].unwrap());
        let tail = (at - 7 * day).div_euclid(hour) * hour;
        let want = by_user[&user]
            .iter()
            .filter(|&&(t, c)| tail <= t && t < at && c < at)
            .count() as i64;
        assert_eq!(counts[row], Some(want), "row {row}: user {user} at {at}");
        nonzero += usize::from(want > 0);
    }
    assert!(
        nonzero > 2000,
        "only {nonzero} rows with transactions before them"
    );

    // The same seed and end give the same data; a second run reuses its own directory.
    let first = std::fs::read(qs.join("transactions.parquet")).unwrap();
    let end = stdout
        .split(" days up to ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the end of the history in step 1")
        .to_owned();
    let again = quickstart_ending(&qs, "4000", &end);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        first,
        std::fs::read(qs.join("transactions.parquet")).unwrap()
    );
}

#[test]
fn quickstart_leaves_a_directory_it_did_not_make_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep").unwrap();
    let out = quickstart(dir.path(), "100");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not made by the quickstart"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// `--redis`: the same steps with the online store (rows and tiles) in Redis, verified
/// with no mismatch; a second run clears the prefix it made, and a prefix holding keys it
/// did not make is refused, untouched.
#[test]
fn the_quickstart_on_redis_serves_and_verifies_and_clears_only_its_own_prefix() {
    let redis = artifacts::RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Histories ending an hour apart: tiles kept from the first run would not verify.
    for run in 0..2 {
        let end = ((now - 3600 * (1 - run)) * 1_000_000).to_string();
        let out = quickstart_with(
            &dir.path().join("qs"),
            "3000",
            &["--redis", &url, "--redis-prefix", "qs", "--end", &end],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {run}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(": 3800 values, 0 mismatches against the offline path"),
            "run {run}: {stdout}"
        );
    }
    assert_eq!(redis.command("SET other:mine 1"), "+OK");
    let out = quickstart_with(
        &dir.path().join("other"),
        "1000",
        &["--redis", &url, "--redis-prefix", "other"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis prefix `other` holds keys that skewless quickstart did not make"),
        "{stderr}"
    );
    assert_eq!(redis.command("GET other:mine"), "$1", "the key is kept");
}
