//! The differential suite for aggregations: random event histories (ties on time, late
//! and out-of-order arrivals, NaN, ±0.0, subnormals, 1e300 beside 1e-300, nulls, unicode)
//! partly in the source's Parquet before the server starts and partly pushed over HTTP in
//! a random order and random batch sizes; the aggregates served at T equal the backfill
//! at T bit for bit, for every function; another push order gives the same bits; a
//! restart serves them again; and a planted skew (the window end inclusive online) is
//! found.

use std::path::Path;
use std::sync::Arc;

use arrow_array::TimestampMicrosecondArray;
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use serde_json::{Value, json};

use crate::differential::{seed, served, trained};
use crate::support::{FaultyStore, Lcg, TestServer, read_parquet, write_parquet};

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const LATENESS: i64 = HOUR;

const DEFS: &str = r#"
project: online_windows
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: transactions, path: transactions/, timestamp_field: event_timestamp,
     created_timestamp_field: ingested_at, allowed_lateness: 1h,
     columns: [{name: amount, dtype: float64}, {name: merchant, dtype: string},
               {name: qty, dtype: int64}, {name: score, dtype: int64}]}
feature_views:
  - name: user_txn
    entities: [user]
    source: transactions
    hop: 5m
    aggregations:
      - {name: txn_count_1h,     function: count, window: 1h}
      - {name: amounts_24h,      function: count, column: amount, window: 24h}
      - {name: amount_sum_24h,   function: sum, column: amount, window: 24h}
      - {name: amount_mean_7d,   function: mean, column: amount, window: 7d}
      - {name: amount_min_6h,    function: min, column: amount, window: 6h}
      - {name: amount_max_7d,    function: max, column: amount, window: 7d}
      - {name: amount_var_24h,   function: var_pop, column: amount, window: 24h}
      - {name: amount_vars_24h,  function: var_samp, column: amount, window: 24h}
      - {name: amount_sdp_7d,    function: stddev_pop, column: amount, window: 7d}
      - {name: amount_stddev_7d, function: stddev, column: amount, window: 7d}
      - {name: qty_sum_7d,       function: sum, column: qty, window: 7d}
      - {name: qty_mean_24h,     function: mean, column: qty, window: 24h}
      - {name: score_min_7d,     function: min, column: score, window: 7d}
      - {name: score_max_7d,     function: max, column: score, window: 7d}
      - {name: first_merchant,   function: first, column: merchant, window: 7d}
      - {name: last_merchant,    function: last, column: merchant, window: 8d}
      - {name: last_score,       function: last, column: score, window: 1h}
      - {name: merchants_8d,     function: approx_count_distinct, column: merchant, window: 8d}
feature_services: [{name: txn, features: ["user_txn:*"]}]
"#;

const USERS: i64 = 12;

/// One event of the history.
#[derive(Debug, Clone)]
struct Event {
    user: i64,
    event: i64,
    created: i64,
    amount: Option<f64>,
    merchant: Option<&'static str>,
    qty: Option<i64>,
    score: Option<i64>,
}

fn below(rng: &mut Lcg, n: u64) -> u64 {
    ((rng.next(1 << 31) << 31) | rng.next(1 << 31)) % n.max(1)
}

fn amount(rng: &mut Lcg) -> Option<f64> {
    Some(match rng.next(30) {
        0 => return None,
        1 => f64::NAN,
        2 => -0.0,
        3 => 0.0,
        4 => 1e300,
        5 => -1e300,
        6 => 1e-300,
        7 => 5e-324, // the least subnormal
        8 => -2.2250738585072014e-308,
        _ => rng.next(100_000) as f64 / 100.0,
    })
}

/// A history of events before (and at) `t`, arriving up to `t`.
fn history(rng: &mut Lcg, t: i64, n: usize) -> Vec<Event> {
    let merchants = [
        "Café de Flore",
        "Lucky Casino",
        "日本橋",
        "🦀 shack",
        "",
        "ACME",
    ];
    // Edges: the window end itself, a hop boundary of the tail, and shared instants.
    let edges = [
        t,
        t - HOUR,
        t - 24 * HOUR,
        t - 7 * 24 * HOUR,
        t - 5 * MINUTE,
    ];
    (0..n)
        .map(|_| {
            let event = match rng.next(10) {
                0 => rng.pick(&edges) - rng.next(2) as i64,
                1 => t - rng.next(48) as i64 * 10 * MINUTE, // ties on whole 10 minutes
                _ => t - 1 - below(rng, 8 * 24 * HOUR as u64) as i64,
            };
            // Most arrive within minutes; some later than the hour allowed; a few with
            // their producer's clock ahead (arrival before the event); some right at t.
            let delay = match rng.next(20) {
                0..=1 => LATENESS + 1 + below(rng, LATENESS as u64) as i64,
                2 => LATENESS,
                3 => -(rng.next(1_000_000) as i64) - 1,
                _ => below(rng, 5 * MINUTE as u64) as i64,
            };
            let created = if rng.chance(3) {
                t
            } else {
                (event + delay).min(t)
            };
            Event {
                user: rng.next(USERS as u64) as i64,
                event,
                created,
                amount: amount(rng),
                merchant: if rng.chance(5) {
                    None
                } else {
                    Some(rng.pick(&merchants))
                },
                qty: (!rng.chance(5)).then(|| rng.next(2_000_000) as i64 - 1_000_000),
                score: match rng.next(12) {
                    0 => None,
                    1 => Some(i64::MIN),
                    2 => Some(i64::MAX),
                    _ => Some(rng.next(1000) as i64),
                },
            }
        })
        .collect()
}

fn is_late(e: &Event) -> bool {
    e.created - e.event > LATENESS
}

fn write_history(path: &Path, events: &[Event]) {
    let ts = |f: fn(&Event) -> i64| {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(f)).with_timezone("UTC"),
        ) as ArrayRef
    };
    write_parquet(
        path,
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.user))),
            ),
            ("event_timestamp", ts(|e| e.event)),
            ("ingested_at", ts(|e| e.created)),
            (
                "amount",
                Arc::new(Float64Array::from_iter(events.iter().map(|e| e.amount))),
            ),
            (
                "merchant",
                Arc::new(StringArray::from_iter(events.iter().map(|e| e.merchant))),
            ),
            (
                "qty",
                Arc::new(Int64Array::from_iter(events.iter().map(|e| e.qty))),
            ),
            (
                "score",
                Arc::new(Int64Array::from_iter(events.iter().map(|e| e.score))),
            ),
        ],
    );
}

fn float_json(v: Option<f64>) -> Value {
    match v {
        None => Value::Null,
        Some(x) if x.is_nan() => json!("NaN"),
        Some(x) => json!(x),
    }
}

/// Pushes `events` in batches of random sizes; returns the late counts answered.
fn push(server: &TestServer, rng: &mut Lcg, events: &[Event]) -> usize {
    let mut late = 0;
    let mut rest = events;
    while !rest.is_empty() {
        let n = (1 + rng.next(40) as usize).min(rest.len());
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let body = json!({"columns": {
            "user_id": batch.iter().map(|e| e.user).collect::<Vec<_>>(),
            "event_timestamp": batch.iter().map(|e| e.event).collect::<Vec<_>>(),
            "ingested_at": batch.iter().map(|e| e.created).collect::<Vec<_>>(),
            "amount": batch.iter().map(|e| float_json(e.amount)).collect::<Vec<_>>(),
            "merchant": batch.iter().map(|e| e.merchant).collect::<Vec<_>>(),
            "qty": batch.iter().map(|e| e.qty).collect::<Vec<_>>(),
            "score": batch.iter().map(|e| e.score).collect::<Vec<_>>(),
        }});
        let (status, answer) = server.json("POST", "/v1/push/transactions", &body);
        assert_eq!(status, 200, "{answer}");
        let expected_late = batch.iter().filter(|e| is_late(e)).count();
        assert_eq!(answer["late"], expected_late, "{answer}");
        assert_eq!(answer["rows"], n - expected_late, "{answer}");
        late += expected_late;
    }
    late
}

fn shuffle<T>(rng: &mut Lcg, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.next(i as u64 + 1) as usize);
    }
}

/// What the served and backfilled values of one case are made of.
struct Case {
    t: i64,
    history: Vec<Event>,
    pushed: Vec<Event>,
}

impl Case {
    fn draw(seed: u64) -> Case {
        let mut rng = Lcg(seed);
        // Ahead of the clock, so that every arrival up to t can be pushed (the server
        // refuses times more than five minutes ahead) and the read at t is after them.
        let t = skewless_core::now_micros() / 1_000_000 * 1_000_000 + 2 * MINUTE;
        let mut events = history(&mut rng, t, 500);
        shuffle(&mut rng, &mut events);
        let pushed = events.split_off(events.len() / 3);
        Case {
            t,
            history: events,
            pushed,
        }
    }

    /// A server over a fresh directory holding the case's Parquet history, with the
    /// definitions applied.
    fn server(
        &self,
        dir: &Path,
        configure: impl FnOnce(&mut skewless_server::ServerConfig),
    ) -> TestServer {
        self.server_layered(dir, configure, Box::new(|s| s))
    }

    fn server_layered(
        &self,
        dir: &Path,
        configure: impl FnOnce(&mut skewless_server::ServerConfig),
        layer: skewless_server::StoreLayer,
    ) -> TestServer {
        std::fs::create_dir_all(dir.join("transactions")).unwrap();
        write_history(&dir.join("transactions/history.parquet"), &self.history);
        let server = TestServer::start_layered(dir, configure, layer);
        let (status, body) = server.call("PUT", "/v1/definitions", DEFS.as_bytes(), None);
        assert_eq!(status, 200, "{body}");
        server
    }

    fn request(&self) -> Value {
        json!({
            "feature_service": "txn",
            "entities": {"user_id": (0..=USERS).collect::<Vec<_>>()},
            "request_time": self.t,
        })
    }
}

/// Every difference between `online` (a /v1/features answer) and the backfill of the
/// same users at `t` by `server`.
fn differences(server: &TestServer, dir: &Path, t: i64, online: &Value) -> Vec<String> {
    let users: Vec<i64> = (0..=USERS).collect();
    write_parquet(
        &dir.join("entities.parquet"),
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(users.clone())) as ArrayRef,
            ),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from(vec![t; users.len()])),
            ),
        ],
    );
    let (status, accepted) = server.json(
        "POST",
        "/v1/backfill",
        &json!({"service": "txn", "entities": "entities.parquet", "out": "training.parquet"}),
    );
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_job(&accepted);
    assert_eq!(job["state"], "succeeded", "{job}");
    let offline = read_parquet(&dir.join("training.parquet"));
    let names: Vec<&str> = online["metadata"]["feature_names"]
        .as_array()
        .expect("feature names")
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let mut diffs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let array = offline
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name} in the training set"));
        let values = online["results"][i]["values"].as_array().expect("values");
        assert_eq!(values.len(), offline.num_rows());
        for (row, value) in values.iter().enumerate() {
            let (s, t) = (
                served(value, array.data_type()),
                trained(array.as_ref(), row),
            );
            if s != t {
                diffs.push(format!("`{name}` user {row}: served {s:?}, trained {t:?}"));
            }
        }
        let statuses = online["results"][i]["statuses"].as_array().unwrap();
        // Every entity has aggregates (an empty window's mean is a null value).
        assert!(
            statuses.iter().all(|s| s == "PRESENT" || s == "NULL_VALUE"),
            "{name}: {statuses:?}"
        );
    }
    diffs
}

/// Fails naming the first of `diffs`, if any.
fn assert_same(seed: u64, diffs: Vec<String>) {
    assert!(
        diffs.is_empty(),
        "seed {seed}: {} differences; the first:\n{}",
        diffs.len(),
        diffs[..diffs.len().min(10)].join("\n")
    );
}

#[test]
fn served_aggregates_equal_the_backfill_bit_for_bit_in_any_push_order() {
    for case in 0..3u64 {
        let seed = seed() ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let drawn = Case::draw(seed);
        let mut rng = Lcg(seed ^ 1);
        let dir = tempfile::tempdir().unwrap();
        let server = drawn.server(dir.path(), |_| {});
        let late = push(&server, &mut rng, &drawn.pushed);
        assert!(late > 0, "the case pushes late events");
        let (status, online) = server.json("POST", "/v1/features", &drawn.request());
        assert_eq!(status, 200, "{online}");
        assert_same(seed, differences(&server, dir.path(), drawn.t, &online));
        // The served values are not trivially empty.
        let count = &online["results"][0]["values"];
        assert!(
            count
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v.as_i64() > Some(0)),
            "{count}"
        );

        // The same events pushed in another order and other batches: the same bits.
        let other = tempfile::tempdir().unwrap();
        let second = drawn.server(other.path(), |_| {});
        let mut reordered = drawn.pushed.clone();
        shuffle(&mut rng, &mut reordered);
        push(&second, &mut rng, &reordered);
        let (status, again) = second.json("POST", "/v1/features", &drawn.request());
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            again["results"], online["results"],
            "seed {seed}: push order showed"
        );
        drop(second);

        // A restart builds the tiles again from the offline log: the same bits.
        drop(server);
        let server = TestServer::start_layered(dir.path(), |_| {}, Box::new(|s| s));
        let (status, restarted) = server.json("POST", "/v1/features", &drawn.request());
        assert_eq!(status, 200, "{restarted}");
        assert_eq!(
            restarted["results"], online["results"],
            "seed {seed}: after a restart"
        );
    }
}

#[test]
fn a_planted_inclusive_window_end_is_found() {
    let drawn = Case::draw(seed());
    let mut rng = Lcg(seed() ^ 1);
    let dir = tempfile::tempdir().unwrap();
    // Reads one microsecond late: events at exactly t (and arrivals at t) count.
    let server = drawn.server_layered(dir.path(), |_| {}, FaultyStore::skewed());
    push(&server, &mut rng, &drawn.pushed);
    let (status, online) = server.json("POST", "/v1/features", &drawn.request());
    assert_eq!(status, 200, "{online}");
    let diffs = differences(&server, dir.path(), drawn.t, &online);
    assert!(
        !diffs.is_empty(),
        "serving with the window end included went unnoticed"
    );
}

/// The served `txn_count_1h` of `user` now.
fn count_now(server: &TestServer, user: i64) -> i64 {
    let (status, answer) = server.json(
        "POST",
        "/v1/features",
        &json!({"feature_service": "txn", "entities": {"user_id": [user]}}),
    );
    assert_eq!(status, 200, "{answer}");
    answer["results"][0]["values"][0].as_i64().expect("a count")
}

#[test]
fn bad_event_pushes_are_refused_by_name_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("transactions")).unwrap();
    let server = TestServer::start(dir.path(), None);
    let (status, body) = server.call("PUT", "/v1/definitions", DEFS.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    let now = skewless_core::now_micros();
    let event = |fields: &[(&str, Value)]| {
        let mut columns = json!({
            "user_id": [1, 1],
            "event_timestamp": [now - MINUTE, now - MINUTE],
            "amount": [1.5, 2.5],
            "merchant": ["a", "b"],
            "qty": [1, 2],
            "score": [3, 4],
        });
        for (name, value) in fields {
            if value.is_null() {
                columns.as_object_mut().unwrap().remove(*name);
            } else {
                columns[*name] = value.clone();
            }
        }
        json!({ "columns": columns })
    };
    for (fields, needle) in [
        (
            vec![("event_timestamp", json!([now - MINUTE, now + 10 * MINUTE]))],
            "columns.event_timestamp[1]",
        ),
        (
            vec![("ingested_at", json!([now, now + HOUR]))],
            "more than 5 minutes ahead of the server's clock",
        ),
        (
            vec![("merchant", Value::Null)],
            "columns.merchant is missing",
        ),
        (vec![("amount", json!([1.0, "many"]))], "columns.amount[1]"),
        (vec![("user_id", json!([1, null]))], "columns.user_id[1]"),
        (
            vec![("colour", json!(["red", "blue"]))],
            "columns.colour is not",
        ),
        (vec![("qty", json!([1]))], "columns.qty has 1 values"),
    ] {
        let (status, answer) = server.json("POST", "/v1/push/transactions", &event(&fields));
        assert_eq!(status, 400, "{fields:?}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(needle), "{fields:?}: {error}");
    }
    assert_eq!(count_now(&server, 1), 0, "a refused push stored nothing");

    // Without stated arrivals the server stamps them: an event from two hours ago is
    // later than the hour allowed, refused and counted; the other is kept.
    let mixed = event(&[("event_timestamp", json!([now - 2 * HOUR, now - MINUTE]))]);
    let (status, answer) = server.json("POST", "/v1/push/transactions", &mixed);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["rows"].as_u64(), answer["late"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(count_now(&server, 1), 1);
    let (_, metrics) = server.call("GET", "/metrics", b"", None);
    for line in [
        r#"skewless_push_events_total{source="transactions"} 1"#,
        r#"skewless_push_late_events_total{source="transactions"} 1"#,
        r#"skewless_aggregate_keys{view="user_txn"} 1"#,
        r#"skewless_aggregate_raw_events{view="user_txn"} 1"#,
        "skewless_events_unflushed 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

/// Two servers sharing one Redis store (and one source directory): the tiles built by
/// the first from history are kept by the second, pushes to both at once of the same
/// entities are each counted once, both serve the bits the backfill computes over the
/// offline log they flush, and a restarted server serves them again without a rebuild.
#[test]
fn servers_sharing_a_redis_store_serve_the_backfill_bits_and_count_each_event_once() {
    let redis = crate::support::RedisServer::start();
    let seed = seed() ^ 0x5eed_4ed1;
    let drawn = Case::draw(seed);
    let mut rng = Lcg(seed ^ 1);
    let shared = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let on_redis = |config: &mut skewless_server::ServerConfig| {
        config.redis = Some(crate::support::redis_options(&redis, "tiles"));
        config.store.event_flush_interval = std::time::Duration::from_secs(3600);
    };
    let first = drawn.server(shared.path(), on_redis);
    let second = TestServer::start_configured(other.path(), |config| {
        on_redis(config);
        config.source_root = shared.path().to_owned();
    });
    let (status, body) = second.call("PUT", "/v1/definitions", DEFS.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    // The second found the tiles complete under the same definitions: it kept them.
    let (status, before) = second.json("POST", "/v1/features", &drawn.request());
    assert_eq!(status, 200, "{before}");
    let (_, from_first) = first.json("POST", "/v1/features", &drawn.request());
    assert_eq!(before["results"], from_first["results"]);

    // Half the pushes to each server, at once, over the same users.
    let mut events = drawn.pushed.clone();
    shuffle(&mut rng, &mut events);
    let half = events.split_off(events.len() / 2);
    let mut other_rng = Lcg(seed ^ 2);
    std::thread::scope(|scope| {
        scope.spawn(|| push(&first, &mut rng, &events));
        scope.spawn(|| push(&second, &mut other_rng, &half));
    });
    let (status, online) = first.json("POST", "/v1/features", &drawn.request());
    assert_eq!(status, 200, "{online}");
    let (status, also) = second.json("POST", "/v1/features", &drawn.request());
    assert_eq!(status, 200, "{also}");
    assert_eq!(online["results"], also["results"], "the servers disagree");
    let count = &online["results"][0]["values"];
    assert!(
        count
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_i64() > Some(0)),
        "{count}"
    );
    // The backfill through the first flushes the events both took from Redis into the
    // shared offline log: it sees each one once, as the tiles did.
    assert_same(seed, differences(&first, shared.path(), drawn.t, &online));
    let logged = std::fs::read_dir(shared.path().join("transactions"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("events-")
        })
        .count();
    assert!(logged > 0, "no offline log file was written");

    // A restarted server finds the tiles complete in Redis: the same bits.
    drop(first);
    let first = TestServer::start_configured(shared.path(), on_redis);
    let (status, restarted) = first.json("POST", "/v1/features", &drawn.request());
    assert_eq!(status, 200, "{restarted}");
    assert_eq!(restarted["results"], online["results"], "after a restart");
    // Materializing the view rebuilds its tiles from the offline log: the same bits.
    let (status, accepted) = second.json(
        "POST",
        "/v1/materialize",
        &json!({"end": drawn.t, "views": ["user_txn"]}),
    );
    assert_eq!(status, 202, "{accepted}");
    let job = second.wait_job(&accepted);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["tiles_rebuilt"], json!(["user_txn"]), "{job}");
    let (status, rebuilt) = first.json("POST", "/v1/features", &drawn.request());
    assert_eq!(status, 200, "{rebuilt}");
    assert_eq!(rebuilt["results"], online["results"], "after a rebuild");
}

#[test]
fn materializing_an_aggregated_view_builds_its_tiles_again_from_history_added_since() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("transactions")).unwrap();
    let server = TestServer::start(dir.path(), None);
    let (status, body) = server.call("PUT", "/v1/definitions", DEFS.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(count_now(&server, 3), 0);
    // History dropped into the source's path while serving: not read until asked.
    let now = skewless_core::now_micros();
    let event = |minutes: i64| Event {
        user: 3,
        event: now - minutes * MINUTE,
        created: now - minutes * MINUTE + 1,
        amount: Some(1.0),
        merchant: Some("ACME"),
        qty: Some(1),
        score: Some(1),
    };
    write_history(
        &dir.path().join("transactions/backfilled.parquet"),
        &[event(10), event(20), event(90)],
    );
    assert_eq!(count_now(&server, 3), 0);
    let (status, accepted) = server.json(
        "POST",
        "/v1/materialize",
        &json!({"end": now, "views": ["user_txn"]}),
    );
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_job(&accepted);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["tiles_rebuilt"], json!(["user_txn"]), "{job}");
    // Two of them in the last hour.
    assert_eq!(count_now(&server, 3), 2);
}
