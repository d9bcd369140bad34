//! Aggregate tiles in the Redis store, against a real `redis-server`: arrivals the store
//! stamps (and the lateness that stamp decides), reads that wait for a push in flight,
//! damaged timelines refused, pushes refused while a rebuild runs, and the offline log
//! flushed from Redis once per event.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Float64Array, Int64Array};
use skewless_core::assemble::ViewColumnsBuilder;
use skewless_core::definitions::{Definitions, ModuleRef};
use skewless_core::key::KeyBuf;
use skewless_core::{DType, Project, Ttl, now_micros};
use skewless_online::{EventBatch, OnlineStore, RedisStore};

use crate::support::{RedisServer, read_parquet, redis_options};

const MINUTE: i64 = 60_000_000;

const DEFS: &str = r#"
project: redis_tiles
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: transactions, path: transactions/, timestamp_field: event_timestamp,
     created_timestamp_field: ingested_at, allowed_lateness: 1h, push: true,
     columns: [{name: amount, dtype: float64}]}
feature_views:
  - name: user_txn
    entities: [user]
    source: transactions
    hop: 5m
    aggregations:
      - {name: txn_count_1h, function: count, window: 1h}
      - {name: amount_sum_1h, function: sum, column: amount, window: 1h}
      - {name: txn_count_1d, function: count, window: 1d}
"#;

fn project() -> Arc<Project> {
    Arc::new(
        Definitions::from_yaml(DEFS)
            .unwrap()
            .validate(&|_: &ModuleRef| None)
            .unwrap(),
    )
}

/// A store on `redis` with the definitions' event source declared (its log under `root`).
fn store(redis: &RedisServer, root: &Path) -> (RedisStore, u64) {
    let store = RedisStore::open(&redis_options(redis, "aggs"), &[]).unwrap();
    let project = project();
    let schemas = skewless_online::event_schemas(&project, root).unwrap();
    let fingerprint = schemas[0].views[0].fingerprint();
    let history = skewless_ops::events::history(project, root.to_owned());
    store.set_event_sources(&schemas, history, &[]).unwrap();
    (store, fingerprint)
}

/// Events `(user, event time, amount)` with arrivals stamped by the store; returns how
/// many it refused as late.
fn push(store: &RedisStore, events: &[(i64, i64, f64)]) -> usize {
    let batch = EventBatch {
        event_ts: events.iter().map(|e| e.1).collect(),
        created_ts: None,
        columns: vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.0))) as ArrayRef,
            Arc::new(Float64Array::from_iter_values(events.iter().map(|e| e.2))),
        ],
    };
    store.append_events("transactions", batch).unwrap()
}

fn key(user: i64) -> Box<[u8]> {
    let mut k = KeyBuf::new();
    k.push_int(user);
    k.as_bytes().into()
}

/// `txn_count_1h` of `user` as of `at`.
fn count(store: &RedisStore, fingerprint: u64, user: i64, at: i64) -> skewless_online::Result<i64> {
    Ok(counts(store, fingerprint, user, at)?.0)
}

/// `txn_count_1h` and `txn_count_1d` of `user` as of `at`.
fn counts(
    store: &RedisStore,
    fingerprint: u64,
    user: i64,
    at: i64,
) -> skewless_online::Result<(i64, i64)> {
    let keys = [key(user)];
    let refs: Vec<&[u8]> = keys.iter().map(|k| &**k).collect();
    let dtypes = [DType::Int64, DType::Float64, DType::Int64];
    let mut out = ViewColumnsBuilder::new(dtypes, Ttl::UNLIMITED, 1);
    store.read("user_txn", fingerprint, &refs, at, &mut out)?;
    let columns = out.finish().columns;
    let int = |c: usize| columns[c].as_primitive::<Int64Type>().value(0);
    Ok((int(0), int(2)))
}

fn connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .unwrap()
}

/// The one key matching `pattern`.
fn only_key(con: &mut redis::Connection, pattern: &str) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(pattern).query(con).unwrap();
    assert_eq!(keys.len(), 1, "keys matching {pattern}");
    keys.into_iter().next().unwrap()
}

#[test]
fn stamped_arrivals_decide_lateness_and_a_read_waits_for_a_push_in_flight() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, fingerprint) = store(&redis, dir.path());
    let now = now_micros();
    // One event on time; one more than the hour of lateness before its arrival: refused,
    // counted, and in neither the tiles nor the log.
    assert_eq!(push(&store, &[(1, now - MINUTE, 2.0)]), 0);
    assert_eq!(push(&store, &[(1, now - 61 * MINUTE, 3.0)]), 1);
    let later = now_micros() + 1;
    let started = Instant::now();
    assert_eq!(count(&store, fingerprint, 1, later).unwrap(), 1);
    // The refused push took back its in-flight mark: the read did not wait for it.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a read waited {:?} for a push refused as late",
        started.elapsed()
    );

    // A push of user 1 in flight (marked, not committed): a read waits for it.
    let mut con = connection(&redis);
    let timeline = only_key(&mut con, "aggs:tl:user_txn:*");
    let busy = [b"aggs:busy:".as_slice(), &timeline[b"aggs:tl:".len()..]].concat();
    redis::cmd("INCR").arg(&busy).query::<()>(&mut con).unwrap();
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            let mut con = connection(&redis);
            redis::cmd("DECR").arg(&busy).query::<()>(&mut con).unwrap();
        });
        assert_eq!(count(&store, fingerprint, 1, now_micros()).unwrap(), 1);
    });
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the read did not wait for the push in flight"
    );
    // Another entity does not wait.
    assert_eq!(count(&store, fingerprint, 2, now_micros()).unwrap(), 0);

    // The offline log gets the accepted event once, with the stamped arrival.
    store.flush_events().unwrap();
    store.flush_events().unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("transactions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let log = read_parquet(&files[0]);
    assert_eq!(log.num_rows(), 1);
    let arrived = log
        .column_by_name("ingested_at")
        .unwrap()
        .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
        .value(0);
    assert!(
        now <= arrived && arrived < later,
        "stamped {arrived}, pushed at {now}"
    );
    let left: i64 = redis::cmd("XLEN")
        .arg("aggs:events:transactions")
        .query(&mut con)
        .unwrap();
    assert_eq!(left, 0, "flushed events stay in the stream");
    assert_eq!(store.stats().events_unflushed, 0);
}

#[test]
fn a_damaged_timeline_fails_the_read_and_a_rebuild_in_progress_refuses_pushes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, fingerprint) = store(&redis, dir.path());
    let now = now_micros();
    push(&store, &[(1, now - MINUTE, 2.0), (2, now - MINUTE, 4.0)]);
    let mut con = connection(&redis);

    // A rebuild running on another server: pushes are refused (retryable), reads of the
    // tiles held go on.
    redis::cmd("SET")
        .arg("aggs:rebuilding:transactions")
        .arg(1)
        .query::<()>(&mut con)
        .unwrap();
    let batch = EventBatch {
        event_ts: vec![now - MINUTE],
        created_ts: None,
        columns: vec![
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
            Arc::new(Float64Array::from(vec![1.0])),
        ],
    };
    let error = store.append_events("transactions", batch).unwrap_err();
    assert!(
        matches!(error, skewless_online::Error::SourceChanged(_)),
        "{error}"
    );
    assert_eq!(error.fault(), skewless_core::Fault::Unavailable);
    assert_eq!(count(&store, fingerprint, 1, now_micros()).unwrap(), 1);
    redis::cmd("DEL")
        .arg("aggs:rebuilding:transactions")
        .query::<()>(&mut con)
        .unwrap();
    // Nothing of the refused push is anywhere.
    assert_eq!(count(&store, fingerprint, 1, now_micros()).unwrap(), 1);
    assert_eq!(store.stats().events_unflushed, 2);

    // Bytes under a timeline's key that are not a timeline: an error naming it, never a
    // value; the other entities still read.
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("aggs:tl:user_txn:*")
        .query(&mut con)
        .unwrap();
    let damaged = keys
        .iter()
        .find(|k| k.ends_with(&key(1)))
        .expect("user 1's timeline");
    redis::cmd("SET")
        .arg(damaged)
        .arg(b"\x01\x00garbage".as_slice())
        .query::<()>(&mut con)
        .unwrap();
    let error = count(&store, fingerprint, 1, now_micros()).unwrap_err();
    assert!(error.to_string().contains("a stored timeline"), "{error}");
    assert_eq!(error.fault(), skewless_core::Fault::Internal);
    assert_eq!(count(&store, fingerprint, 2, now_micros()).unwrap(), 1);
}

/// Two stores on one prefix (two servers) push the same three users at once: recent
/// events, which append to the users' raw lists, and replayed old ones, which fold into
/// sealed tiles and rewrite a user's timeline whole. Every event is counted once: a
/// rewrite that raced an append is refused by the list's length and done again.
#[test]
fn appends_and_rewrites_of_the_same_entities_from_two_servers_count_each_event_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (first, fingerprint) = store(&redis, dir.path());
    let (second, _) = store(&redis, dir.path());
    let now = now_micros();
    let pushes = 60;
    std::thread::scope(|scope| {
        for (t, store) in [&first, &second, &first, &second].into_iter().enumerate() {
            scope.spawn(move || {
                for p in 0..pushes {
                    let users: Vec<i64> = (0..12).map(|i| (i + t as i64 + p) % 3).collect();
                    // Odd threads replay history: three hours old, arrived a minute later.
                    let old = t % 2 == 1;
                    let event = if old {
                        now - 180 * MINUTE
                    } else {
                        now - MINUTE
                    };
                    let batch = EventBatch {
                        event_ts: vec![event; users.len()],
                        created_ts: old.then(|| vec![event + MINUTE; users.len()]),
                        columns: vec![
                            Arc::new(Int64Array::from(users.clone())) as ArrayRef,
                            Arc::new(Float64Array::from(vec![1.0; users.len()])),
                        ],
                    };
                    assert_eq!(store.append_events("transactions", batch).unwrap(), 0);
                }
            });
        }
    });
    let at = now_micros() + 1;
    let mut total = 0;
    for user in 0..3 {
        let (hour, day) = counts(&first, fingerprint, user, at).unwrap();
        assert_eq!(counts(&second, fingerprint, user, at).unwrap(), (hour, day));
        assert_eq!(hour, 2 * pushes * 12 / 3, "user {user}: the recent events");
        total += day;
    }
    assert_eq!(total, 4 * pushes * 12, "every event, once");
}
