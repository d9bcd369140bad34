//! What a transform costs by language: fraud_risk in Rust, C, Python and JavaScript.
//!
//! - upload to ready: `Registry::upload` on a fresh data directory, as `PUT
//!   /v1/transforms/...` does it: validation, compilation with Cranelift, and the write of
//!   the module and its compiled artifact;
//! - restart: `Registry::open` on that directory with a new engine, which loads the
//!   module from the compile cache instead of compiling it again;
//! - instantiate: a fresh instance, the fixed cost of every call;
//! - a call at 1, 100 and 10,000 rows (median).
//!
//! `cargo bench -p skewless-benches --bench languages` prints a Markdown table (recorded
//! in BENCHMARKS.md); under `cargo test` it runs each step once as a smoke test.

use std::path::Path;
use std::time::{Duration, Instant};

use skewless_benches::{fraud_input, measuring};
use skewless_engine::{Engine, EngineConfig};
use skewless_registry::Registry;
use skewless_test_artifacts as artifacts;

fn engine(data_dir: &Path) -> Engine {
    // As `skewless serve` builds it: the compile cache lives in the data directory.
    Engine::new(EngineConfig {
        cache_dir: Some(data_dir.join("compiled")),
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 1000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{micros:.0} µs")
    }
}

fn main() {
    let full = measuring();
    let (uploads, calls) = if full { (3, 101) } else { (1, 1) };
    let languages = [
        ("Rust", artifacts::FRAUD_RISK),
        ("C", artifacts::FRAUD_RISK_C),
        ("Python", artifacts::FRAUD_RISK_PY),
        ("JavaScript", artifacts::FRAUD_RISK_JS),
    ];
    println!(
        "| language | component | upload to ready | restart (from cache) | instantiate | call, 1 row | call, 100 rows | call, 10k rows |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (language, path) in languages {
        let bytes = std::fs::read(path).expect("component");
        let mut upload = Vec::new();
        let mut restart = Vec::new();
        let mut transform = None;
        for _ in 0..uploads {
            let dir = tempfile::tempdir().expect("tempdir");
            let registry = Registry::open(dir.path(), engine(dir.path())).expect("registry");
            let started = Instant::now();
            let (_, info) = registry
                .upload("fraud_risk", "1.0.0", &bytes)
                .expect("upload");
            upload.push(started.elapsed());
            drop(registry);

            let started = Instant::now();
            let registry = Registry::open(dir.path(), engine(dir.path())).expect("reopen");
            let t = registry.transform(&info.reference()).expect("loaded");
            restart.push(started.elapsed());
            assert!(
                t.loaded_from_cache(),
                "{language}: a restart loads from the cache"
            );
            transform = Some(t);
        }
        let t = transform.expect("at least one upload");

        let instantiate = median(
            (0..calls)
                .map(|_| {
                    let started = Instant::now();
                    t.instantiate().expect("instantiate");
                    started.elapsed()
                })
                .collect(),
        );
        let mut per_call = Vec::new();
        for rows in [1, 100, 10_000] {
            let input = fraud_input(rows, 0);
            let samples = (0..calls)
                .map(|_| {
                    let started = Instant::now();
                    let out = t.call(&input).expect("call");
                    assert_eq!(out.num_rows(), rows);
                    started.elapsed()
                })
                .collect();
            per_call.push(median(samples));
        }
        println!(
            "| {language} | {:.1} MB | {} | {} | {} | {} | {} | {} |",
            bytes.len() as f64 / 1e6,
            ms(median(upload)),
            ms(median(restart)),
            us(instantiate),
            us(per_call[0]),
            us(per_call[1]),
            us(per_call[2]),
        );
    }
}
