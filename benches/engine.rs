//! Engine microbenchmarks: instantiation from `InstancePre`, and one transform call at
//! 1, 100, 10k and 1M rows over float64 and string columns, against the same kernel in
//! native Rust on Arrow arrays.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use skewless_benches::{
    fraud_input, kernel_input, measuring, native_f64, native_fraud, native_string,
};
use skewless_engine::{Engine, EngineConfig};
use skewless_test_artifacts as artifacts;

fn sizes() -> Vec<usize> {
    if measuring() {
        vec![1, 100, 10_000, 1_000_000]
    } else {
        vec![1, 100]
    }
}

fn instantiate(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let mut group = c.benchmark_group("instantiate");
    for (name, path) in [
        ("fraud_risk", artifacts::FRAUD_RISK),
        ("bench_string", artifacts::BENCH_STRING),
    ] {
        let t = engine.load_file(path).unwrap();
        group.bench_function(name, |b| b.iter(|| t.instantiate().unwrap()));
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let wasm_f64 = engine.load_file(artifacts::BENCH_F64).unwrap();
    let wasm_string = engine.load_file(artifacts::BENCH_STRING).unwrap();
    let fraud = engine.load_file(artifacts::FRAUD_RISK).unwrap();

    let mut group = c.benchmark_group("call");
    for rows in sizes() {
        let input = kernel_input(rows);
        // The twins compute the same bits, or the comparison means nothing.
        let f64_only = input.project(&[0]).unwrap();
        let string_only = input.project(&[1]).unwrap();
        let fraud_in = fraud_input(rows, 0);
        assert_eq!(
            wasm_f64.call(&f64_only).unwrap().column(0).as_ref(),
            &native_f64(input.column(0))
        );
        let (upper, len) = native_string(input.column(1));
        let out = wasm_string.call(&string_only).unwrap();
        assert_eq!(out.column(0).as_ref(), &upper);
        assert_eq!(out.column(1).as_ref(), &len);
        assert_eq!(
            fraud.call(&fraud_in).unwrap(),
            native_fraud(&fraud_in).unwrap()
        );

        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("native/f64", rows), &input, |b, input| {
            b.iter(|| native_f64(input.column(0)))
        });
        group.bench_with_input(
            BenchmarkId::new("native/string", rows),
            &input,
            |b, input| b.iter(|| native_string(input.column(1))),
        );
        group.bench_with_input(BenchmarkId::new("wasm/f64", rows), &f64_only, |b, input| {
            b.iter(|| wasm_f64.call(input).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("wasm/string", rows),
            &string_only,
            |b, input| b.iter(|| wasm_string.call(input).unwrap()),
        );
        let fraud_in = fraud_input(rows, 0);
        group.bench_with_input(
            BenchmarkId::new("wasm/fraud_risk", rows),
            &fraud_in,
            |b, input| b.iter(|| fraud.call(input).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("native/fraud_risk", rows),
            &fraud_in,
            |b, input| b.iter(|| native_fraud(input).unwrap()),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(if measuring() { 30 } else { 10 });
    targets = instantiate, kernels
}
criterion_main!(benches);
