//! Tests of event sources in the local store: tiles read as of a time, the offline log
//! written once per event whatever the crashes, and LSNs that never reuse a log's.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{ArrayRef, Float64Array, Int64Array};
use skewless_aggregate::{Aggregate, Function, Spec, ViewAggregates};
use skewless_core::Ttl;
use skewless_core::definitions::Feature;
use skewless_core::key::{KeyBuf, KeyType};

use super::*;
use crate::events::{EventBatch, EventSchema, EventView, History, KeyedEvent};

const MINUTE: i64 = 60_000_000;

fn schema(log: &Path) -> EventSchema {
    let aggregates = ViewAggregates {
        name: "user_txn".into(),
        spec: Spec {
            hop: 5 * MINUTE,
            aggregates: vec![
                (
                    Aggregate {
                        function: Function::Count,
                        input: None,
                    },
                    60 * MINUTE,
                ),
                (
                    Aggregate {
                        function: Function::Sum,
                        input: Some(DType::Float64),
                    },
                    60 * MINUTE,
                ),
            ],
            inputs: vec![None, Some(0)],
        },
        columns: vec![Feature {
            name: "amount".into(),
            dtype: DType::Float64,
            description: None,
        }],
        inputs: vec![None, Some(0)],
        outputs: vec![DType::Int64, DType::Float64],
        lateness: Some(10 * MINUTE),
    };
    EventSchema {
        lateness: Some(10 * MINUTE),
        source: "transactions".into(),
        log_dir: log.to_owned(),
        timestamp_field: "event_timestamp".into(),
        created_field: "ingested_at".into(),
        columns: vec![
            ("user_id".into(), DType::Int64),
            ("amount".into(), DType::Float64),
        ],
        keys: vec![KeyType::Int64],
        views: vec![Arc::new(EventView {
            aggregates,
            keys: vec![(0, KeyType::Int64)],
            inputs: vec![1],
            lateness: 10 * MINUTE,
        })],
    }
}

fn no_history() -> History {
    Arc::new(|_, _, _| Ok(Vec::<KeyedEvent>::new()))
}

/// Events (user, event time, amount), all arrived at `created`.
fn append(store: &LocalStore, events: &[(i64, i64, f64)], created: i64) {
    let batch = EventBatch {
        event_ts: events.iter().map(|e| e.1).collect(),
        created_ts: Some(vec![created; events.len()]),
        columns: vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.0))) as ArrayRef,
            Arc::new(Float64Array::from_iter_values(events.iter().map(|e| e.2))),
        ],
    };
    store.append_events("transactions", batch).unwrap();
}

/// (count, sum) of `user` as of `at`.
fn read(store: &LocalStore, log: &Path, user: i64, at: i64) -> Result<(i64, f64)> {
    let mut key = KeyBuf::new();
    key.push_int(user);
    let mut out = ViewColumnsBuilder::new([DType::Int64, DType::Float64], Ttl::UNLIMITED, 1);
    let fingerprint = schema(log).views[0].fingerprint();
    store.read("user_txn", fingerprint, &[key.as_bytes()], at, &mut out)?;
    let columns = out.finish();
    assert_eq!(
        columns.event_ts,
        [Some(at)],
        "aggregates are as of the read"
    );
    Ok((
        columns.columns[0].as_primitive::<Int64Type>().value(0),
        columns.columns[1].as_primitive::<Float64Type>().value(0),
    ))
}

/// Each offline log file's name and its (user, event time, amount, created) rows.
/// (user, event time, amount, created).
type Logged = (i64, i64, f64, i64);

fn log_files(log: &Path) -> Vec<(String, Vec<Logged>)> {
    let mut names: Vec<String> = std::fs::read_dir(log)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter(|n| n.ends_with(".parquet"))
        .map(|name| {
            let file = File::open(log.join(&name)).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            let mut rows = Vec::new();
            for batch in reader {
                let batch = batch.unwrap();
                let column = |name: &str| batch.column_by_name(name).unwrap().clone();
                let (users, amounts) = (column("user_id"), column("amount"));
                let (times, created) = (column("event_timestamp"), column("ingested_at"));
                for i in 0..batch.num_rows() {
                    rows.push((
                        users.as_primitive::<Int64Type>().value(i),
                        times.as_primitive::<TimestampMicrosecondType>().value(i),
                        amounts.as_primitive::<Float64Type>().value(i),
                        created.as_primitive::<TimestampMicrosecondType>().value(i),
                    ));
                }
            }
            (name, rows)
        })
        .collect()
}

fn open(dir: &Path, log: &Path) -> LocalStore {
    let store = LocalStore::open(dir, &[], StoreOptions::default()).unwrap();
    store
        .set_event_sources(&[schema(log)], no_history(), &[])
        .unwrap();
    store
}

#[test]
fn events_are_read_as_of_a_time_through_the_window_and_arrival_rules() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let store = open(&dir.path().join("online"), &log);
    let now = skewless_core::now_micros();
    let t = now + MINUTE; // ahead of every arrival below
    append(
        &store,
        &[
            (1, t - 30 * MINUTE, 1.5),
            (1, t - 2 * MINUTE, 2.25),
            (1, t, 100.0),              // at t: the window end excludes it
            (1, t - 90 * MINUTE, 50.0), // before the window
            (2, t - MINUTE, 7.0),
        ],
        now - MINUTE,
    );
    assert_eq!(read(&store, &log, 1, t).unwrap(), (2, 3.75));
    assert_eq!(read(&store, &log, 2, t).unwrap(), (1, 7.0));
    // A key with no events: empty windows, present.
    assert_eq!(read(&store, &log, 3, t).unwrap(), (0, 0.0));
    // An event that arrives at t does not count at t.
    append(&store, &[(2, t - MINUTE, 1.0)], t);
    assert_eq!(read(&store, &log, 2, t).unwrap(), (1, 7.0));
    assert_eq!(read(&store, &log, 2, t + 1).unwrap(), (2, 8.0));
    // Too long ago for the sealed tiles: refused, not answered from the wrong events.
    let old = read(&store, &log, 1, now - 60 * MINUTE).unwrap_err();
    assert!(
        matches!(old, Error::TooOld { .. }) && old.to_string().contains("use a backfill"),
        "{old}"
    );
    let stats = store.stats();
    assert_eq!(stats.aggregates[0].0, "user_txn");
    assert_eq!(stats.aggregates[0].1.keys, 2);
    assert_eq!(stats.events_unflushed, 6);
}

#[test]
fn every_logged_event_reaches_the_offline_log_once_through_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (online, log) = (dir.path().join("online"), dir.path().join("log"));
    let now = skewless_core::now_micros();
    {
        let store = open(&online, &log);
        append(
            &store,
            &[(1, now - MINUTE, 1.0), (2, now - MINUTE, 2.0)],
            now,
        );
        append(&store, &[(1, now - 2 * MINUTE, 3.0)], now);
        assert!(
            log_files(&log).is_empty(),
            "nothing flushed before its time"
        );
        store.flush_events().unwrap();
        let files = log_files(&log);
        assert_eq!(files.len(), 1, "{files:?}");
        let (name, rows) = &files[0];
        assert_eq!(name, &crate::offline_log::file_name(1, 3));
        assert_eq!(
            rows,
            &[
                (1, now - MINUTE, 1.0, now),
                (2, now - MINUTE, 2.0, now),
                (1, now - 2 * MINUTE, 3.0, now)
            ]
        );
        append(&store, &[(3, now - MINUTE, 4.0)], now);
        // Closing flushes what waits.
    }
    let files = log_files(&log);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[1].0, crate::offline_log::file_name(4, 4));
    // The log still holds every record (no snapshot yet): a restart flushes none again.
    drop(open(&online, &log));
    assert_eq!(log_files(&log), files);
    // A lost file (a crash after its events were logged, before the flush): the restart
    // writes its events from the log, once.
    std::fs::remove_file(log.join(&files[1].0)).unwrap();
    drop(LocalStore::open(&online, &[], StoreOptions::default()).unwrap());
    assert_eq!(log_files(&log), files);
}

#[test]
fn a_new_store_over_a_kept_offline_log_numbers_its_events_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let now = skewless_core::now_micros();
    {
        let store = open(&dir.path().join("first"), &log);
        append(
            &store,
            &[(1, now - MINUTE, 1.0), (1, now - MINUTE, 2.0)],
            now,
        );
    }
    {
        let store = open(&dir.path().join("second"), &log);
        append(&store, &[(1, now - MINUTE, 3.0)], now);
    }
    let names: Vec<String> = log_files(&log).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            crate::offline_log::file_name(1, 2),
            crate::offline_log::file_name(3, 3)
        ]
    );
}

#[test]
fn tiles_are_built_from_history_and_kept_when_the_view_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let now = skewless_core::now_micros();
    let store = LocalStore::open(&dir.path().join("online"), &[], StoreOptions::default()).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let history = {
        let calls = calls.clone();
        let history: History = Arc::new(move |_, _, since| {
            calls.fetch_add(1, Ordering::SeqCst);
            // A window and two hops: the earliest answerable read is a hop back.
            assert!(
                since <= now - 69 * MINUTE,
                "reaches back a window and two hops: {since} against {now}"
            );
            let mut key = KeyBuf::new();
            key.push_int(9);
            let event = |event: i64, created: i64| skewless_aggregate::Event {
                at: skewless_aggregate::EventTime { event, created },
                values: vec![Some(skewless_aggregate::Scalar::Float(0.5))].into(),
            };
            Ok(vec![
                (
                    Box::from(key.as_bytes()),
                    event(now - 20 * MINUTE, now - 20 * MINUTE),
                ),
                // Later than the lateness allows: dropped, as the backfill drops it.
                (
                    Box::from(key.as_bytes()),
                    event(now - 40 * MINUTE, now - 5 * MINUTE),
                ),
            ])
        });
        history
    };
    store
        .set_event_sources(&[schema(&log)], history.clone(), &[])
        .unwrap();
    assert_eq!(read(&store, &log, 9, now + 1).unwrap(), (1, 0.5));
    store
        .set_event_sources(&[schema(&log)], history.clone(), &[])
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "an unchanged view keeps its tiles"
    );
    let mut changed = schema(&log);
    Arc::make_mut(&mut changed.views[0])
        .aggregates
        .spec
        .aggregates[0]
        .1 = 30 * MINUTE;
    store.set_event_sources(&[changed], history, &[]).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a changed view is built again"
    );
    assert!(matches!(
        read(&store, &log, 9, now + 1),
        Err(Error::SchemaChanged(_))
    ));
}

#[test]
fn a_read_waits_for_an_in_flight_push_of_its_entity_that_arrived_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let store = Arc::new(open(&dir.path().join("online"), &log));
    let now = skewless_core::now_micros();
    let created = now - 1_000_000;
    let source = store.events.sources.read().unwrap()["transactions"].clone();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(Float64Array::from(vec![2.5])),
    ];
    let encoder = row::RowEncoder::new(&columns, &source.dtypes).unwrap();
    let rows = vec![encoder.encode(0, now - MINUTE, created)];
    // Stamped and being logged: a read after its arrival must count it, so it waits.
    source.mark(&rows, true);
    let folding = {
        let (source, rows) = (source.clone(), rows.clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            source.apply(&rows, now, true);
        })
    };
    // A read as of its arrival or before does not count it, and does not wait.
    let started = Instant::now();
    assert_eq!(read(&store, &log, 1, created).unwrap(), (0, 0.0));
    assert!(started.elapsed() < std::time::Duration::from_millis(250));
    assert_eq!(read(&store, &log, 1, now + MINUTE).unwrap(), (1, 2.5));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "the read waited for the fold"
    );
    folding.join().unwrap();
    // Another key is never held up.
    source.mark(&rows, true);
    let started = Instant::now();
    assert_eq!(read(&store, &log, 2, now + MINUTE).unwrap(), (0, 0.0));
    assert!(started.elapsed() < std::time::Duration::from_millis(250));
    source.mark(&rows, false);
    assert_eq!(read(&store, &log, 1, now + MINUTE).unwrap(), (1, 2.5));
}

#[test]
fn a_failed_flush_keeps_its_events_and_the_later_ones_for_the_next_try() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let store = open(&dir.path().join("online"), &log);
    // A file where the log's directory should be: every write there fails.
    std::fs::write(&log, b"in the way").unwrap();
    let now = skewless_core::now_micros();
    append(&store, &[(1, now - MINUTE, 1.0)], now);
    let refused = store.flush_events().unwrap_err();
    assert!(
        refused.to_string().contains("not in their offline log yet"),
        "{refused}"
    );
    append(&store, &[(2, now - MINUTE, 2.0)], now);
    assert_eq!(store.stats().events_unflushed, 2);
    std::fs::remove_file(&log).unwrap();
    store.flush_events().unwrap();
    let files = log_files(&log);
    let rows: Vec<Logged> = files.into_iter().flat_map(|(_, rows)| rows).collect();
    assert_eq!(
        rows,
        [(1, now - MINUTE, 1.0, now), (2, now - MINUTE, 2.0, now)]
    );
    assert_eq!(store.stats().events_unflushed, 0);
}

/// Arrivals the push does not state are stamped by the store as it takes the events
/// (after marking them in flight): the stamp is the arrival in the offline log, and an
/// event that stamp makes later than the lateness is refused, counted, and neither
/// stored nor left marked.
#[test]
fn the_store_stamps_arrivals_and_refuses_what_the_stamp_makes_late() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let store = open(&dir.path().join("online"), &log);
    let before = skewless_core::now_micros();
    let batch = |at: i64| EventBatch {
        event_ts: vec![at],
        created_ts: None,
        columns: vec![
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
            Arc::new(Float64Array::from(vec![2.0])),
        ],
    };
    assert_eq!(
        store
            .append_events("transactions", batch(before - MINUTE))
            .unwrap(),
        0
    );
    // The schema's lateness is 10 minutes.
    let late = store
        .append_events("transactions", batch(before - 11 * MINUTE))
        .unwrap();
    assert_eq!(late, 1);
    let after = skewless_core::now_micros();
    let started = Instant::now();
    assert_eq!(read(&store, &log, 1, after + 1).unwrap(), (1, 2.0));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "a read waited for a refused event"
    );
    store.flush_events().unwrap();
    let rows: Vec<Logged> = log_files(&log).into_iter().flat_map(|(_, r)| r).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let stamped = rows[0].3;
    assert!(before <= stamped && stamped <= after, "stamped {stamped}");
}
