//! The Redis online store against a real `redis-server`: the local store's ordering and
//! reads, serving over HTTP from Redis, two servers sharing one store, a restart of
//! either side, `kill -9` of Redis during a push loop, and the refusal of a Redis that
//! would not keep an acknowledged write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{ArrayRef, Float64Array};
use serde_json::json;
use skewless_core::assemble::ViewColumnsBuilder;
use skewless_core::key::KeyBuf;
use skewless_core::{DType, Ttl};
use skewless_online::{OnlineStore, RedisStore, ViewSchema, WriteBatch};

use crate::server::{T0, column, features, push_users, setup};
use crate::support::{RedisServer, TestServer, redis_options};

fn schema(feature: &str) -> ViewSchema {
    ViewSchema {
        name: "stats".into(),
        features: vec![(feature.into(), DType::Float64)],
    }
}

fn key(id: i64) -> Box<[u8]> {
    let mut k = KeyBuf::new();
    k.push_int(id);
    k.as_bytes().into()
}

/// Writes `(id, event_ts, created_ts, value)` rows.
fn write(store: &RedisStore, rows: &[(i64, i64, i64, f64)]) {
    let batch = WriteBatch {
        keys: rows.iter().map(|r| key(r.0)).collect(),
        event_ts: rows.iter().map(|r| r.1).collect(),
        created_ts: Some(rows.iter().map(|r| r.2).collect()),
        features: vec![
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))) as ArrayRef,
        ],
    };
    store.write("stats", batch).unwrap();
}

fn read(store: &RedisStore, feature: &str, ids: &[i64], at: i64, ttl: Ttl) -> Vec<Option<f64>> {
    let keys: Vec<Box<[u8]>> = ids.iter().map(|&i| key(i)).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| &**k).collect();
    let mut out = ViewColumnsBuilder::new([DType::Float64], ttl, ids.len());
    store
        .read("stats", schema(feature).fingerprint(), &refs, at, &mut out)
        .unwrap();
    out.finish().columns[0]
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

#[test]
fn the_newest_row_wins_by_event_then_created_time_and_ties_go_to_the_later_write() {
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis_options(&redis, "order"), &[schema("avg")]).unwrap();
    let at = i64::MAX;
    let ttl = Ttl::UNLIMITED;
    // Negative times, both signs, and the created time that loses every tie (none given).
    write(
        &store,
        &[
            (1, -5, 0, 1.0),
            (2, 3, 0, 2.0),
            (3, -5, i64::MIN, 3.0),
            (4, 7, 5, 4.0),
            (5, 1 << 40, 0, 5.0),
        ],
    );
    write(
        &store,
        &[
            (1, -3, 0, 10.0),            // newer (less negative): replaces
            (2, -3, 0, 20.0),            // older: ignored
            (3, -5, -1, 30.0),           // same event, a created time beats none: replaces
            (4, 7, 5, 40.0),             // a tie: the later write wins
            (5, (1 << 40) - 1, 9, 50.0), // older by one microsecond: ignored
        ],
    );
    assert_eq!(
        read(&store, "avg", &[1, 2, 3, 4, 5, 6], at, ttl),
        [
            Some(10.0),
            Some(2.0),
            Some(30.0),
            Some(40.0),
            Some(5.0),
            None
        ]
    );
    // Within one batch the later row of a key wins a tie, and an older one never does.
    write(&store, &[(6, 1, 1, 1.0), (6, 1, 1, 2.0), (6, 0, 9, 3.0)]);
    assert_eq!(read(&store, "avg", &[6], at, ttl), [Some(2.0)]);
    // TTL applies to what Redis returns as it does to the local store's rows.
    let day = 86_400_000_000;
    assert_eq!(
        read(&store, "avg", &[4, 1], 7 + day, "1d".parse().unwrap()),
        [Some(40.0), None]
    );
    let stats = store.stats();
    assert_eq!(stats.rows, [("stats".to_owned(), 6)]);
    assert!(stats.bytes[0].1 > 6 * 40, "{:?}", stats.bytes);

    // Reopened, with the same features or with none applied, the rows are there: opening
    // drops nothing (another server may share the store).
    drop(store);
    RedisStore::open(&redis_options(&redis, "order"), &[]).unwrap();
    let store = RedisStore::open(&redis_options(&redis, "order"), &[schema("mean")]).unwrap();
    assert_eq!(
        read(&store, "mean", &[1, 2], at, ttl),
        [None, None],
        "other features read as empty"
    );
    let store = RedisStore::open(&redis_options(&redis, "order"), &[schema("avg")]).unwrap();
    assert_eq!(read(&store, "avg", &[2], at, ttl), [Some(2.0)]);
    // Applying other features drops the old rows, keys and all.
    store.set_views(&[schema("mean")]).unwrap();
    assert_eq!(read(&store, "mean", &[1, 2], at, ttl), [None, None]);
    assert_eq!(store.stats().rows, [("stats".to_owned(), 0)]);
    assert_eq!(redis.command("DBSIZE"), ":1", "only the views hash is left");
    store.set_views(&[]).unwrap();
    assert_eq!(
        redis.command("DBSIZE"),
        ":0",
        "a view no longer applied is dropped"
    );
    store.set_views(&[schema("mean")]).unwrap();
    // Another prefix is another store.
    let other = RedisStore::open(&redis_options(&redis, "other"), &[schema("mean")]).unwrap();
    write(&other, &[(1, 1, 1, 1.0)]);
    assert_eq!(read(&store, "mean", &[1], at, ttl), [None]);
}

#[test]
fn two_servers_serve_one_redis_store_and_a_restart_keeps_it() {
    let redis = RedisServer::start();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with_redis = |config: &mut skewless_server::ServerConfig| {
        config.redis = Some(redis_options(&redis, "fraud"));
    };
    let before = {
        let a = TestServer::start_configured(a_dir.path(), with_redis);
        setup(&a);
        push_users(&a);
        let (status, body) = features(&a, json!([1, 2, 3, 99]), json!([150.0, 10.0, 7.0, 5.0]));
        assert_eq!(status, 200, "{body}");
        let avg = column(&body, "user_stats:txn_amount_avg_7d");
        assert_eq!(avg["values"], json!([50.0, null, 0.5, null]));
        assert_eq!(
            avg["statuses"],
            json!(["PRESENT", "OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND"])
        );
        let (_, metrics) = a.call("GET", "/metrics", b"", None);
        assert!(
            metrics.contains("skewless_online_rows{view=\"user_stats\"} 3"),
            "{metrics}"
        );
        body
    };
    // The second server has its own registry and the same store.
    let b = TestServer::start_configured(b_dir.path(), with_redis);
    setup(&b);
    assert_eq!(
        features(&b, json!([1, 2, 3, 99]), json!([150.0, 10.0, 7.0, 5.0])).1,
        before
    );
    // The first one restarted serves the same, from Redis.
    let a = TestServer::start_configured(a_dir.path(), with_redis);
    assert_eq!(
        features(&a, json!([1, 2, 3, 99]), json!([150.0, 10.0, 7.0, 5.0])).1,
        before
    );
    // A push through one is served by the other.
    let (status, _) = a.json(
        "POST",
        "/v1/push/user_stats",
        &json!({"columns": {"user_id": [99], "event_timestamp": [T0], "created": [0],
            "txn_amount_avg_7d": [9.5], "txn_amount_max_7d": [10.0], "account_age_days": [1]}}),
    );
    assert_eq!(status, 200);
    let (_, body) = features(&b, json!([99]), json!([1.0]));
    assert_eq!(
        column(&body, "user_stats:txn_amount_avg_7d")["values"],
        json!([9.5])
    );
}

#[test]
fn kill_9_of_redis_during_a_push_loop_loses_no_acknowledged_write() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(TestServer::start_configured(dir.path(), |config| {
        config.redis = Some(redis_options(&redis, "durable"));
    }));
    setup(&server);

    // Writers push batches of 20 users and keep what was acknowledged (a 200).
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3i64)
        .map(|w| {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut acked, mut refused) = (Vec::new(), 0);
                let mut batch = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<i64> = (0..20).map(|i| w * 1_000_000 + batch * 20 + i).collect();
                    let avg: Vec<f64> = ids.iter().map(|&i| i as f64).collect();
                    let (status, body) = server.json(
                        "POST",
                        "/v1/push/user_stats",
                        &json!({"columns": {"user_id": ids, "event_timestamp": vec![T0; 20],
                            "created": vec![0; 20], "txn_amount_avg_7d": avg,
                            "txn_amount_max_7d": vec![1.0; 20], "account_age_days": vec![1; 20]}}),
                    );
                    match status {
                        200 => acked.extend(ids),
                        // Redis is down: refused, not acknowledged.
                        503 => refused += 1,
                        other => panic!("push answered {other}: {body}"),
                    }
                    batch += 1;
                }
                (acked, refused)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(800));
    redis.kill();
    std::thread::sleep(std::time::Duration::from_millis(300));
    redis.restart();
    std::thread::sleep(std::time::Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut refused) = (Vec::new(), 0);
    for writer in writers {
        let (a, r) = writer.join().expect("writer");
        acked.extend(a);
        refused += r;
    }
    assert!(
        acked.len() >= 200,
        "only {} writes acknowledged",
        acked.len()
    );
    assert!(refused > 0, "no push was refused while Redis was down");

    for chunk in acked.chunks(500) {
        let amounts = vec![1.0; chunk.len()];
        let (status, body) = features(&server, json!(chunk), json!(amounts));
        assert_eq!(status, 200, "{body}");
        let values = column(&body, "user_stats:txn_amount_avg_7d")["values"]
            .as_array()
            .unwrap()
            .clone();
        for (id, value) in chunk.iter().zip(values) {
            assert_eq!(
                value.as_f64(),
                Some(*id as f64),
                "acknowledged write for user {id} lost"
            );
        }
    }
}

#[test]
fn a_redis_that_does_not_fsync_every_write_is_refused_unless_accepted() {
    let redis = RedisServer::start_fsync("everysec");
    let refused = RedisStore::open(&redis_options(&redis, "p"), &[schema("avg")]).unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("appendfsync everysec") && text.contains("appendfsync always"),
        "{text}"
    );
    let mut options = redis_options(&redis, "p");
    options.require_fsync = false;
    let store = RedisStore::open(&options, &[schema("avg")]).unwrap();
    write(&store, &[(1, 1, 1, 1.0)]);
    assert_eq!(read(&store, "avg", &[1], 2, Ttl::UNLIMITED), [Some(1.0)]);

    // No Redis at all: a clear error, not a hang.
    let gone = format!("redis://127.0.0.1:{}/0", redis.port);
    drop(store);
    drop(redis);
    let error = RedisStore::open(&skewless_online::RedisOptions::new(gone), &[]).unwrap_err();
    assert!(
        error.to_string().starts_with("redis: connecting"),
        "{error}"
    );
}

#[test]
fn a_value_that_is_not_a_row_fails_the_read_and_adds_nothing() {
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis_options(&redis, "foreign"), &[schema("avg")]).unwrap();
    write(&store, &[(1, 1, 1, 1.0)]);
    // Something else writes a short value under a row's key.
    let fingerprint = format!("{:016x}", schema("avg").fingerprint());
    let row_key = [
        format!("foreign:row:stats:{fingerprint}:").as_bytes(),
        &key(2),
    ]
    .concat();
    let mut con = redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .unwrap();
    redis::cmd("SET")
        .arg(row_key)
        .arg(b"short".as_slice())
        .query::<()>(&mut con)
        .unwrap();
    let keys = [key(1), key(2)];
    let refs: Vec<&[u8]> = keys.iter().map(|k| &**k).collect();
    let mut out = ViewColumnsBuilder::new([DType::Float64], Ttl::UNLIMITED, 2);
    let error = store
        .read("stats", schema("avg").fingerprint(), &refs, 10, &mut out)
        .unwrap_err();
    assert!(error.to_string().contains("not one of its rows"), "{error}");
    assert_eq!(out.finish().columns[0].len(), 0, "nothing added");
    // The store still serves the rows that are rows.
    assert_eq!(read(&store, "avg", &[1], 10, Ttl::UNLIMITED), [Some(1.0)]);
}

/// Row counts Redis cannot give are unknown, never 0: with Redis down, the feature views
/// list `online_rows: null` and the metrics have no row gauge; with Redis back, both count
/// again.
#[test]
fn row_counts_are_absent_while_redis_is_down_never_zero() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(dir.path(), |config| {
        config.redis = Some(redis_options(&redis, "counts"));
    });
    setup(&server);
    push_users(&server);
    let rows = |server: &TestServer| {
        let (status, views) = server.json("GET", "/v1/feature-views", &json!(null));
        assert_eq!(status, 200, "{views}");
        views["feature_views"][0]["online_rows"].clone()
    };
    let gauge = "skewless_online_rows{view=\"user_stats\"}";
    assert_eq!(rows(&server), json!(3));
    assert!(server.call("GET", "/metrics", b"", None).1.contains(gauge));
    redis.kill();
    assert_eq!(rows(&server), json!(null));
    let (status, metrics) = server.call("GET", "/metrics", b"", None);
    assert_eq!(status, 200);
    assert!(!metrics.contains(gauge), "{metrics}");
    redis.restart();
    assert_eq!(rows(&server), json!(3));
}
