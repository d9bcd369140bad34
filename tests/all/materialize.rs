//! Materialization against a brute-force reference: the latest row per entity within the
//! window (ties to the larger created time, then the later row), written to the real
//! online store and read back; row groups outside the window are skipped by statistics
//! and the result is the same; watermarks plan the incremental windows.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use skewless_core::assemble::{Status, ViewColumnsBuilder};
use skewless_core::definitions::ModuleRef;
use skewless_core::key::KeyBuf;
use skewless_core::{DType, Definitions, Project, Ttl};
use skewless_offline::{NoProgress, Window};
use skewless_online::{LocalStore, OnlineStore, StoreOptions};

const DEFS: &str = r#"
project: mat
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: stats, path: stats.parquet, timestamp_field: ts, created_timestamp_field: created}
feature_views:
  - {name: stats, entities: [user], source: stats, ttl: 1h, features: [{name: value, dtype: float64}]}
  - {name: offline_only, entities: [user], source: stats, online: false, features: [{name: value, dtype: float64}]}
"#;

const S: i64 = 1_000_000;

fn project() -> Project {
    Definitions::from_yaml(DEFS)
        .unwrap()
        .validate(&|_: &ModuleRef| None)
        .unwrap()
}

struct Rows {
    user: Vec<i64>,
    ts: Vec<i64>,
    created: Vec<Option<i64>>,
    value: Vec<f64>,
}

/// Rows sorted by time (as logs usually are) in row groups of 100, so that statistics
/// can skip; ties in time and created time; a few keys.
fn write_source(dir: &Path) -> Rows {
    let mut seed = 11u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let n = 2000;
    let mut ts: Vec<i64> = (0..n).map(|_| next(200) as i64 * 50 * S).collect();
    ts.sort_unstable();
    let rows = Rows {
        user: (0..n).map(|_| next(60) as i64).collect(),
        created: (0..n)
            .map(|_| (next(4) > 0).then(|| next(3) as i64))
            .collect(),
        value: (0..n).map(|i| i as f64 + 0.25).collect(),
        ts,
    };
    let batch = RecordBatch::try_from_iter(vec![
        (
            "user_id",
            Arc::new(Int64Array::from(rows.user.clone())) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(rows.ts.clone())),
        ),
        (
            "created",
            Arc::new(TimestampMicrosecondArray::from(rows.created.clone())),
        ),
        ("value", Arc::new(Float64Array::from(rows.value.clone()))),
    ])
    .unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(100))
        .build();
    let file = std::fs::File::create(dir.join("stats.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    rows
}

/// The reference: per key, the row in the window with the largest (ts, created, index).
fn expected(rows: &Rows, key: i64, start: i64, end: i64) -> Option<(i64, f64)> {
    (0..rows.user.len())
        .filter(|&i| rows.user[i] == key && (start..=end).contains(&rows.ts[i]))
        .max_by_key(|&i| (rows.ts[i], rows.created[i].unwrap_or(i64::MIN), i))
        .map(|i| (rows.ts[i], rows.value[i]))
}

fn store_values(store: &LocalStore, keys: &[i64], at: i64) -> Vec<Option<(i64, f64)>> {
    let schema = skewless_online::view_schemas(&project())
        .into_iter()
        .find(|s| s.name == "stats")
        .unwrap();
    let encoded: Vec<Vec<u8>> = keys
        .iter()
        .map(|&k| {
            let mut key = KeyBuf::new();
            key.push_int(k);
            key.as_bytes().to_vec()
        })
        .collect();
    let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let mut out = ViewColumnsBuilder::new([DType::Float64], Ttl::UNLIMITED, keys.len());
    store
        .read("stats", schema.fingerprint(), &refs, at, &mut out)
        .unwrap();
    let view = out.finish();
    let values = view.columns[0].as_primitive::<Float64Type>();
    (0..keys.len())
        .map(|i| {
            (view.status[i] == Status::Present)
                .then(|| (view.event_ts[i].unwrap_or_default(), values.value(i)))
        })
        .collect()
}

#[test]
fn materialize_loads_the_latest_row_per_entity_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let rows = write_source(dir.path());
    let project = project();
    let store = LocalStore::open(
        &dir.path().join("online"),
        &skewless_online::view_schemas(&project),
        StoreOptions::default(),
    )
    .unwrap();
    let (start, end) = (4_000 * S, 6_000 * S);
    let windows =
        skewless_offline::plan_windows(&project, &[], Some(start), end, |_| None).unwrap();
    assert_eq!(
        windows,
        vec![Window {
            view: "stats".into(),
            start,
            end
        }],
        "every online view, and only those"
    );
    let stats =
        skewless_offline::materialize(&project, dir.path(), &store, &windows, 2, &NoProgress)
            .unwrap();
    let view = &stats.views[0];
    assert!(
        view.source.row_groups_skipped >= 10,
        "a fifth of a time-sorted file is in the window: most row groups are skipped, got {:?}",
        view.source
    );
    let keys: Vec<i64> = (0..65).collect();
    let got = store_values(&store, &keys, i64::MAX);
    let want: Vec<_> = keys
        .iter()
        .map(|&k| expected(&rows, k, start, end))
        .collect();
    assert_eq!(got, want);
    assert_eq!(view.rows_written, want.iter().flatten().count());
    assert_eq!(
        view.rows_in_window,
        rows.ts
            .iter()
            .filter(|t| (start..=end).contains(*t))
            .count()
    );

    // The next window on top: newer rows replace, keys absent from it keep their value.
    let later = [Window {
        view: "stats".into(),
        start: end,
        end: 8_000 * S,
    }];
    skewless_offline::materialize(&project, dir.path(), &store, &later, 1, &NoProgress).unwrap();
    let got = store_values(&store, &keys, i64::MAX);
    let want: Vec<_> = keys
        .iter()
        .map(|&k| expected(&rows, k, start, 8_000 * S))
        .collect();
    assert_eq!(got, want, "two windows in a row equal one window over both");
}

#[test]
fn windows_follow_watermarks_and_refuse_what_cannot_be_materialized() {
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    let project = project();
    let end = 10_000 * S;
    // Incremental: from the watermark, else one TTL (1h) before the end.
    let w = skewless_offline::plan_windows(&project, &[], None, end, |_| Some(42)).unwrap();
    assert_eq!((w[0].start, w[0].end), (42, end));
    let w = skewless_offline::plan_windows(&project, &[], None, end, |_| None).unwrap();
    assert_eq!(w[0].start, end - 3600 * S);

    let e = skewless_offline::plan_windows(&project, &["nope".into()], None, end, |_| None)
        .unwrap_err();
    assert!(e.to_string().contains("no feature view `nope`"), "{e}");

    let store = LocalStore::open(
        &dir.path().join("online"),
        &skewless_online::view_schemas(&project),
        StoreOptions::default(),
    )
    .unwrap();
    let offline_only = [Window {
        view: "offline_only".into(),
        start: 0,
        end,
    }];
    let e =
        skewless_offline::materialize(&project, dir.path(), &store, &offline_only, 2, &NoProgress)
            .unwrap_err();
    assert!(e.to_string().contains("not online"), "{e}");
    let backwards = [Window {
        view: "stats".into(),
        start: end,
        end: 0,
    }];
    let e = skewless_offline::materialize(&project, dir.path(), &store, &backwards, 2, &NoProgress)
        .unwrap_err();
    assert!(e.to_string().contains("starts after it ends"), "{e}");
    std::fs::remove_file(dir.path().join("stats.parquet")).unwrap();
    let all = [Window {
        view: "stats".into(),
        start: 0,
        end,
    }];
    let e = skewless_offline::materialize(&project, dir.path(), &store, &all, 2, &NoProgress)
        .unwrap_err();
    assert!(
        e.to_string().contains("stats.parquet"),
        "names the missing file: {e}"
    );
    assert_eq!(
        store_values(&store, &[1, 2, 3], i64::MAX),
        vec![None; 3],
        "nothing written"
    );
}

/// Watermarks move forward only, and one recorded under other features of the view does
/// not count: the store dropped those rows when the features changed.
#[test]
fn a_watermark_counts_only_for_the_schema_it_was_recorded_under() {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        skewless_registry::Registry::open(dir.path(), crate::support::engine().clone()).unwrap();
    let apply = |yaml: &str| {
        registry
            .apply(yaml, |_| Ok::<(), std::convert::Infallible>(()))
            .unwrap()
            .unwrap()
            .0
    };
    let end = 10_000 * S;
    let start_of = |project: &Project| {
        skewless_ops::plan_materialization(&registry, project, &["stats".into()], None, end)
            .unwrap()[0]
            .start
    };
    let project = apply(DEFS);
    assert_eq!(
        start_of(&project),
        end - 3600 * S,
        "no watermark: one TTL back"
    );
    let fingerprint = skewless_online::view_schemas(&project)[0].fingerprint();
    registry
        .advance_watermark("stats", fingerprint, 5_000 * S)
        .unwrap();
    registry
        .advance_watermark("stats", fingerprint, 4_000 * S)
        .unwrap();
    assert_eq!(
        start_of(&project),
        5_000 * S,
        "from the watermark, which never moves back"
    );

    let changed = apply(&DEFS.replace(
        "features: [{name: value, dtype: float64}]}\n  - {name: offline_only",
        "features: [{name: value, dtype: float64}, {name: extra, dtype: int64}]}\n  - {name: offline_only",
    ));
    assert_eq!(
        start_of(&changed),
        end - 3600 * S,
        "the old schema's watermark is ignored"
    );
    let fingerprint = skewless_online::view_schemas(&changed)[0].fingerprint();
    registry
        .advance_watermark("stats", fingerprint, 2_000 * S)
        .unwrap();
    assert_eq!(
        start_of(&changed),
        2_000 * S,
        "restarted under the new schema"
    );
}
