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
    Command::new(env!("CARGO_BIN_EXE_skewless"))
        .arg("quickstart")
        .args(["--module", artifacts::FRAUD_RISK])
        .args(["--module", artifacts::GEO_DISTANCE])
        .args(["--module", artifacts::MERCHANT_CATEGORY])
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
        "3. backfilled 4000 rows x 16 features",
        "4. materialized",
        "5. serving on http://127.0.0.1:",
        "6. served the last 500 transactions as traffic, then verified 200 of them again at 2026-10-31T00:00:00.000000Z: 3200 values, 0 mismatches against the offline path",
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

    // Point in time: each training row sees the statistics written at the last midnight
    // before it, which count that user's transactions in the 7 days before that midnight.
    let txns = read(&qs.join("transactions.parquet"));
    let training = read(&qs.join("training_set.parquet"));
    assert_eq!(training.num_rows(), 4000);
    assert!(
        training.column_by_name("is_fraud").is_some(),
        "labels carried through"
    );
    let users = i64s(&txns, "user_id");
    let times = i64s(&txns, "event_timestamp");
    let mut by_user: HashMap<i64, Vec<i64>> = HashMap::new();
    for (u, t) in users.iter().zip(&times) {
        by_user.entry(u.unwrap()).or_default().push(t.unwrap());
    }
    let counts = i64s(&training, "user_stats:txn_count_7d");
    let day = 86_400_000_000i64;
    let (mut present, mut checked) = (0, 0);
    for row in 0..training.num_rows() {
        let (user, at) = (users[row].unwrap(), times[row].unwrap());
        let midnight = at.div_euclid(day) * day;
        let want = by_user[&user]
            .iter()
            .filter(|&&t| t >= midnight - 7 * day && t < midnight)
            .count() as i64;
        // With transactions in that week, the midnight's row exists and is the latest at
        // or before `at`. Without, an older row may still be within the 2-day TTL.
        match counts[row] {
            Some(got) => {
                present += 1;
                if want > 0 {
                    assert_eq!(got, want, "row {row}: user {user} at {at}");
                    checked += 1;
                }
            }
            None => assert!(
                want == 0 || midnight <= 1_788_220_800_000_000,
                "row {row}: a user with {want} transactions in the week before has no statistics"
            ),
        }
    }
    assert!(
        checked > 3000 && present >= checked,
        "{checked} of {present} rows checked"
    );

    // The same seed gives the same data; a second run reuses its own directory.
    let first = std::fs::read(qs.join("transactions.parquet")).unwrap();
    let again = quickstart(&qs, "4000");
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
