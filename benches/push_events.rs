//! Events into the online aggregate tiles, in process: the local store's
//! `append_events` (write-ahead log record fsynced, then folded into the tiles of the
//! issue's seven aggregates over 1 h to 30 d windows with 5 min hops), from 1, 2 and 8
//! threads appending batches of 1,000 events of 100,000 users; then the memory the tiles
//! take per key and per aggregate (RSS), and the time a restart takes to build the tiles
//! again from the offline log the pushes became.
//!
//! `cargo bench -p skewless-benches --bench push_events` pushes 4M events (a day of them,
//! so each key fills its day's tiles); `cargo test --benches` pushes 40k once. Then the
//! same into the Redis store (a `redis-server` started here, fsyncing every write): 400k
//! events (4k under test), events/s, Redis's memory per key, reads of one key per second,
//! and the flush of its stream into the offline log.
//! Over HTTP, with the real binary and wrk, see benches/serve_wrk.sh.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use skewless_benches::{measuring, rss_kb};
use skewless_core::Ttl;
use skewless_core::assemble::ViewColumnsBuilder;
use skewless_core::key::KeyBuf;
use skewless_core::{Definitions, Project};
use skewless_online::{EventBatch, LocalStore, OnlineStore, RedisStore, StoreOptions};

const DEFS: &str = r#"
project: bench
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: transactions, path: events/, timestamp_field: event_timestamp,
     created_timestamp_field: ingested_at, allowed_lateness: 1h,
     columns: [{name: amount, dtype: float64}, {name: merchant, dtype: string}]}
feature_views:
  - name: user_txn
    entities: [user]
    source: transactions
    hop: 5m
    aggregations:
      - {name: txn_count_1h,     function: count,  window: 1h}
      - {name: amount_sum_24h,   function: sum,    column: amount, window: 24h}
      - {name: amount_mean_7d,   function: mean,   column: amount, window: 7d}
      - {name: amount_max_7d,    function: max,    column: amount, window: 7d}
      - {name: amount_stddev_7d, function: stddev, column: amount, window: 7d}
      - {name: last_merchant,    function: last,   column: merchant, window: 30d}
      - {name: merchants_30d,    function: approx_count_distinct, column: merchant, window: 30d}
"#;

const USERS: u64 = 100_000;
const BATCH: usize = 1_000;
const AGGREGATES: usize = 7;
const HOUR: i64 = 3_600_000_000;

fn project() -> Arc<Project> {
    Arc::new(
        Definitions::from_yaml(DEFS)
            .expect("definitions parse")
            .validate(&|_: &skewless_core::definitions::ModuleRef| None)
            .expect("definitions validate"),
    )
}

/// Batch `b` of a thread: events spread over the day before `now`, each arriving within a
/// minute of happening (a replay stating its arrivals), cent amounts, one of 1,000
/// merchants. Events older than the hour of lateness fold into sealed tiles.
fn batch(seed: u64, b: u64, now: i64, merchants: &[String]) -> EventBatch {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b;
    let mut next = |n: u64| {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    };
    let mut users = Vec::with_capacity(BATCH);
    let mut times = Vec::with_capacity(BATCH);
    let mut amounts = Vec::with_capacity(BATCH);
    let mut names = Vec::with_capacity(BATCH);
    let mut arrivals = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        users.push(next(USERS) as i64);
        let at = now - 60_000_000 - next(24 * HOUR as u64) as i64;
        times.push(at);
        arrivals.push(at + next(60_000_000) as i64);
        amounts.push(next(100_000) as f64 / 100.0);
        names.push(merchants[next(merchants.len() as u64) as usize].as_str());
    }
    EventBatch {
        event_ts: times,
        created_ts: Some(arrivals),
        columns: vec![
            Arc::new(Int64Array::from(users)) as ArrayRef,
            Arc::new(Float64Array::from(amounts)),
            Arc::new(StringArray::from(names)),
        ],
    }
}

/// Appends `batches` batches from each of `threads` threads; returns events/s.
fn push(
    store: &dyn OnlineStore,
    threads: u64,
    batches: u64,
    now: i64,
    merchants: &[String],
) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for b in 0..batches {
                    let events = batch(t + 1, b, now, merchants);
                    store.append_events("transactions", events).expect("append");
                }
            });
        }
    });
    (threads * batches * BATCH as u64) as f64 / started.elapsed().as_secs_f64()
}

fn open(dir: &Path, project: &Arc<Project>) -> (LocalStore, f64) {
    let started = Instant::now();
    let store = LocalStore::open(&dir.join("online"), &[], StoreOptions::default()).expect("open");
    skewless_ops::events::set_event_sources(&store, project, dir).expect("event sources");
    (store, started.elapsed().as_secs_f64())
}

fn main() {
    let events = if measuring() { 4_000_000 } else { 40_000 };
    let dir = tempfile::tempdir().expect("a scratch directory");
    let project = project();
    let merchants: Vec<String> = (0..1000).map(|i| format!("merchant #{i}")).collect();
    let before = rss_kb();
    let (store, _) = open(dir.path(), &project);
    let now = skewless_core::now_micros();
    let batches = (events / BATCH as u64).max(2);
    let one = push(&store, 1, batches / 4, now, &merchants);
    let two = push(&store, 2, batches / 8, now, &merchants);
    // More appenders than cores: their records share fsyncs (group commit).
    let eight = push(&store, 8, batches / 16, now, &merchants);
    let stats = store.stats();
    let counts = stats.aggregates[0].1;
    let rss = rss_kb().saturating_sub(before);
    println!(
        "push_events: {events} events of {USERS} users into {AGGREGATES} aggregates: 1 thread {one:.0} events/s, 2 threads {two:.0} events/s, 8 threads {eight:.0} events/s (batches of {BATCH}, one log record each, fsynced in groups)"
    );
    println!(
        "push_events: {} keys, {} tiles, {} raw events held (younger than the hour of lateness); RSS +{} MiB: {:.0} bytes per key, {:.0} per key and aggregate",
        counts.keys,
        counts.tiles,
        counts.raw_events,
        rss / 1024,
        rss as f64 * 1024.0 / counts.keys as f64,
        rss as f64 * 1024.0 / counts.keys as f64 / AGGREGATES as f64
    );
    let flushing = Instant::now();
    store.flush_events().expect("flush");
    let flushed = flushing.elapsed().as_secs_f64();
    drop(store);
    let (store, restart) = open(dir.path(), &project);
    let again = store.stats().aggregates[0].1;
    assert_eq!(
        again.keys, counts.keys,
        "the restart built every key's tiles"
    );
    println!(
        "push_events: flushing to the offline log took {flushed:.2} s; a restart built the tiles of {} keys from it in {restart:.2} s",
        again.keys
    );
    drop(store);
    redis(events / 10, &project, &merchants);
}

/// The same pushes into the Redis store, and reads of one key.
fn redis(events: u64, project: &Arc<Project>, merchants: &[String]) {
    let server = skewless_test_artifacts::RedisServer::start();
    let dir = tempfile::tempdir().expect("a scratch directory");
    let mut options = skewless_online::RedisOptions::new(server.url());
    options.prefix = "bench".into();
    let store = RedisStore::open(&options, &[]).expect("redis store");
    skewless_ops::events::set_event_sources(&store, project, dir.path()).expect("event sources");
    let now = skewless_core::now_micros();
    let batches = (events / BATCH as u64).max(2);
    let mut con = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("a connection to redis");
    // Redis's own count of the memory its data takes.
    let mut used = || -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query(&mut con)
            .expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory in INFO")
    };
    let before = used();
    let one = push(&store, 1, (batches / 2).max(1), now, merchants);
    let two = push(&store, 2, (batches / 4).max(1), now, merchants);
    let eight = push(&store, 8, (batches / 16).max(1), now, merchants);
    // The events wait in the stream until flushed: the tiles alone are measured after.
    let flushing = Instant::now();
    store.flush_events().expect("flush");
    let flushed = flushing.elapsed().as_secs_f64();
    let bytes = used().saturating_sub(before);
    let keys: u64 = server
        .command("DBSIZE")
        .trim_start_matches(':')
        .parse()
        .expect("DBSIZE answers a number");
    println!(
        "push_events redis: {events} events of {USERS} users into {AGGREGATES} aggregates: 1 thread {one:.0} events/s, 2 threads {two:.0} events/s, 8 threads {eight:.0} events/s (optimistic transactions of {BATCH} events, appendfsync always); {keys} keys, {:.0} bytes of redis memory per key; flushing the stream to the offline log took {flushed:.2} s",
        bytes as f64 / keys.max(1) as f64
    );
    let spec = project
        .definitions()
        .feature_views
        .iter()
        .find(|v| v.name == "user_txn")
        .expect("the view");
    let fingerprint = skewless_online::event_schemas(project, dir.path()).expect("schemas")[0]
        .views[0]
        .fingerprint();
    let reads = if measuring() { 20_000 } else { 200 };
    let started = Instant::now();
    let mut key = KeyBuf::new();
    for i in 0..reads {
        key.clear();
        key.push_int((i * 7919 % USERS as usize) as i64);
        let mut out =
            ViewColumnsBuilder::new(spec.features.iter().map(|f| f.dtype), Ttl::UNLIMITED, 1);
        store
            .read("user_txn", fingerprint, &[key.as_bytes()], now, &mut out)
            .expect("read");
    }
    let per_read = started.elapsed().as_secs_f64() / reads as f64;
    println!(
        "push_events redis: reads of one key's {AGGREGATES} aggregates, one thread: {:.0} µs each ({:.0}/s)",
        per_read * 1e6,
        1.0 / per_read,
    );
}
