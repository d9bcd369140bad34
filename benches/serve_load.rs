//! Load harness for the serving path: req/s and p50/p99/p999 at several concurrencies,
//! for a 1-entity and a 100-entity `POST /v1/features` with a transform, over real HTTP on
//! loopback (server and load generator share the machine); and the in-process lookup +
//! transform latency without HTTP.
//!
//! `cargo bench -p skewless-benches --bench serve_load` measures (10 s per point);
//! `cargo test --benches` runs it briefly as a smoke test. `SKEWLESS_BENCH_LANGUAGE=c`,
//! `python` or `javascript` serves fraud_risk built from that language instead of Rust.
//! `SKEWLESS_BENCH_STORE=redis` keeps the online store in a local `redis-server` (fsync on
//! every write) instead of the data directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use skewless_benches::measuring;
use skewless_core::assemble::ViewColumnsBuilder;
use skewless_core::key::KeyBuf;
use skewless_engine::{Engine, EngineConfig, Limits};
use skewless_online::{LocalStore, OnlineStore, RedisStore, StoreOptions};
use skewless_plan::ServicePlan;
use skewless_registry::Registry;

/// The fraud_risk component to serve: `SKEWLESS_BENCH_LANGUAGE` (default Rust).
fn fraud_risk() -> (&'static str, &'static str) {
    use skewless_test_artifacts as a;
    match std::env::var("SKEWLESS_BENCH_LANGUAGE").as_deref() {
        Ok("c") => ("C", a::FRAUD_RISK_C),
        Ok("python") => ("Python", a::FRAUD_RISK_PY),
        Ok("javascript") => ("JavaScript", a::FRAUD_RISK_JS),
        Ok("rust") | Err(_) => ("Rust", a::FRAUD_RISK),
        Ok(other) => {
            panic!("SKEWLESS_BENCH_LANGUAGE={other}: expected rust, c, python or javascript")
        }
    }
}

/// A Redis server for the online store when `SKEWLESS_BENCH_STORE=redis`.
fn redis() -> Option<skewless_test_artifacts::RedisServer> {
    match std::env::var("SKEWLESS_BENCH_STORE").as_deref() {
        Ok("redis") => Some(skewless_test_artifacts::RedisServer::start()),
        Ok("local") | Err(_) => None,
        Ok(other) => panic!("SKEWLESS_BENCH_STORE={other}: expected local or redis"),
    }
}

fn redis_options(redis: &skewless_test_artifacts::RedisServer) -> skewless_online::RedisOptions {
    let mut options = skewless_online::RedisOptions::new(redis.url());
    options.prefix = "bench".into();
    options
}

const USERS: i64 = 100_000;
const NOW: i64 = 1_795_132_800_000_000;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        limits: Limits {
            deadline: Duration::from_secs(1),
            ..Limits::default()
        },
        max_concurrent_calls: 256,
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn push_body(from: i64, to: i64) -> String {
    let ids: Vec<i64> = (from..to).collect();
    let avg: Vec<f64> = ids.iter().map(|i| 10.0 + (i % 500) as f64).collect();
    let max: Vec<f64> = avg.iter().map(|a| a * 3.0).collect();
    let age: Vec<i64> = ids.iter().map(|i| i % 900).collect();
    format!(
        r#"{{"columns": {{"user_id": {ids:?}, "event_timestamp": {ts:?}, "txn_amount_avg_7d": {avg:?}, "txn_amount_max_7d": {max:?}, "account_age_days": {age:?}}}}}"#,
        ts = vec![NOW - 1; ids.len()]
    )
}

fn request_body(entities: usize, seed: usize) -> String {
    let ids: Vec<i64> = (0..entities)
        .map(|i| ((seed * 7919 + i * 104_729) as i64) % USERS)
        .collect();
    let amounts: Vec<f64> = (0..entities).map(|i| 5.0 + (i % 300) as f64).collect();
    format!(
        r#"{{"feature_service": "fraud_v1", "entities": {{"user_id": {ids:?}}}, "request_data": {{"amount": {amounts:?}}}, "request_time": {NOW}}}"#
    )
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let full = measuring();
    let duration = if full {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(300)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = redis();

    // Setup over HTTP, with the same engine the in-process measurement uses.
    let engine = engine();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = skewless_server::ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.redis = redis.as_ref().map(redis_options);
    let server = server_rt
        .block_on(skewless_server::Server::bind(config, engine.clone()))
        .expect("server");
    let addr = server.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = server_rt.spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http::<Full<Bytes>>();
    let send = {
        let client = client.clone();
        move |method: &'static str, path: String, body: Vec<u8>| {
            let client = client.clone();
            async move {
                let request = hyper::Request::builder()
                    .method(method)
                    .uri(format!("http://{addr}{path}"))
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                let response = client.request(request).await.expect("response");
                let status = response.status().as_u16();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                (status, body)
            }
        }
    };
    client_rt.block_on(async {
        let module = std::fs::read(fraud_risk().1).expect("fraud_risk built");
        let (s, b) = send("PUT", "/v1/transforms/fraud_risk/1.0.0".into(), module).await;
        assert_eq!(s, 201, "{b:?}");
        let (s, b) = send(
            "PUT",
            "/v1/definitions".into(),
            skewless_test_artifacts::fraud_defs("").into_bytes(),
        )
        .await;
        assert_eq!(s, 200, "{b:?}");
        for start in (0..USERS).step_by(10_000) {
            let (s, b) = send(
                "POST",
                "/v1/push/user_stats".into(),
                push_body(start, start + 10_000).into_bytes(),
            )
            .await;
            assert_eq!(s, 200, "{b:?}");
        }
    });

    // In-process: store lookup + one transform call for one entity, no HTTP, no JSON.
    {
        let other = dir.path().join("in-process");
        let registry = Registry::open(&other, engine.clone()).expect("registry");
        let module = std::fs::read(fraud_risk().1).expect("fraud_risk built");
        registry
            .upload("fraud_risk", "1.0.0", &module)
            .expect("upload");
        let (project, ()) = registry
            .apply(&skewless_test_artifacts::fraud_defs(""), |_| {
                Ok::<(), ()>(())
            })
            .expect("apply")
            .expect("prepared");
        let schemas = skewless_online::view_schemas(&project);
        let store: Box<dyn OnlineStore> = match &redis {
            Some(redis) => {
                Box::new(RedisStore::open(&redis_options(redis), &schemas).expect("store"))
            }
            None => Box::new(
                LocalStore::open(&other.join("online"), &schemas, StoreOptions::default())
                    .expect("store"),
            ),
        };
        let plan = ServicePlan::for_service(&project, "fraud_v1", &|m| registry.transform(m))
            .expect("plan");
        let fingerprint = schemas[0].fingerprint();
        let batch = {
            let ids: Vec<i64> = (0..1000).collect();
            skewless_online::WriteBatch {
                keys: ids
                    .iter()
                    .map(|&i| {
                        let mut k = KeyBuf::new();
                        k.push_int(i);
                        Box::from(k.as_bytes())
                    })
                    .collect(),
                event_ts: vec![NOW - 1; ids.len()],
                created_ts: None,
                features: vec![
                    Arc::new(arrow_array::Float64Array::from_iter_values(
                        ids.iter().map(|&i| 10.0 + i as f64),
                    )),
                    Arc::new(arrow_array::Float64Array::from_iter_values(
                        ids.iter().map(|&i| 30.0 + i as f64),
                    )),
                    Arc::new(arrow_array::Int64Array::from_iter_values(
                        ids.iter().copied(),
                    )),
                ],
            }
        };
        store.write("user_stats", batch).expect("write");
        // An interpreter's call takes about a millisecond: 20,000 of them still give a
        // stable p999, in half a minute rather than five.
        let iterations = match (full, fraud_risk().0) {
            (false, _) => 2_000,
            (true, "Python" | "JavaScript") => 20_000,
            (true, _) => 200_000,
        };
        let mut latencies = Vec::with_capacity(iterations);
        let amount: arrow_array::ArrayRef = Arc::new(arrow_array::Float64Array::from(vec![120.0]));
        let mut key = KeyBuf::new();
        for i in 0..iterations {
            let started = Instant::now();
            key.clear();
            key.push_int((i % 1000) as i64);
            let mut builder = ViewColumnsBuilder::new(
                plan.views[0].features.iter().map(|f| f.dtype),
                plan.views[0].ttl,
                1,
            );
            store
                .read(
                    "user_stats",
                    fingerprint,
                    &[key.as_bytes()],
                    NOW,
                    &mut builder,
                )
                .expect("read");
            let output = plan.run(
                1,
                &[NOW],
                vec![builder.finish()],
                std::slice::from_ref(&amount),
            );
            assert!(output.transform_ok[0]);
            latencies.push(started.elapsed().as_nanos() as u64);
        }
        latencies.sort_unstable();
        println!(
            "in-process lookup+transform, 1 entity: {iterations} calls, p50 {:.1} us, p99 {:.1} us, p999 {:.1} us",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999)
        );
    }

    println!(
        "fraud_risk in {}, online store {}",
        fraud_risk().0,
        if redis.is_some() { "in Redis" } else { "local" }
    );
    println!("| entities | concurrency | req/s | p50 ms | p99 ms | p999 ms | errors |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let concurrencies: &[usize] = if full { &[1, 8, 32, 64] } else { &[1, 8] };
    for entities in [1usize, 100] {
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            (0..64)
                .map(|s| Bytes::from(request_body(entities, s)))
                .collect(),
        );
        for &concurrency in concurrencies {
            let stop = Arc::new(AtomicBool::new(false));
            let (latencies, errors, elapsed) = client_rt.block_on(async {
                let started = Instant::now();
                let tasks: Vec<_> = (0..concurrency)
                    .map(|worker| {
                        let (client, bodies, stop) = (client.clone(), bodies.clone(), stop.clone());
                        tokio::spawn(async move {
                            let mut latencies = Vec::new();
                            let mut errors = 0u64;
                            let mut n = worker;
                            while !stop.load(Ordering::Relaxed) {
                                let body = bodies[n % bodies.len()].clone();
                                n += concurrency;
                                let request =
                                    hyper::Request::post(format!("http://{addr}/v1/features"))
                                        .header("content-type", "application/json")
                                        .body(Full::new(body))
                                        .expect("request");
                                let sent = Instant::now();
                                match client.request(request).await {
                                    Ok(response) if response.status() == 200 => {
                                        let _ = response.into_body().collect().await;
                                        latencies.push(sent.elapsed().as_nanos() as u64);
                                    }
                                    _ => errors += 1,
                                }
                            }
                            (latencies, errors)
                        })
                    })
                    .collect();
                tokio::time::sleep(duration).await;
                stop.store(true, Ordering::Relaxed);
                let mut all = Vec::new();
                let mut errors = 0;
                for task in tasks {
                    let (l, e) = task.await.expect("task");
                    all.extend(l);
                    errors += e;
                }
                (all, errors, started.elapsed())
            });
            let mut latencies = latencies;
            latencies.sort_unstable();
            println!(
                "| {entities} | {concurrency} | {:.0} | {:.3} | {:.3} | {:.3} | {errors} |",
                latencies.len() as f64 / elapsed.as_secs_f64(),
                percentile(&latencies, 0.50) / 1000.0,
                percentile(&latencies, 0.99) / 1000.0,
                percentile(&latencies, 0.999) / 1000.0,
            );
            assert_eq!(errors, 0, "failed requests under load");
        }
    }
    let _ = stop_tx.send(());
    let _ = server_rt.block_on(serving);
}
