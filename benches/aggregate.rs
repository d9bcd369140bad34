//! The aggregation kernel: events folded into a tile per function (cent amounts, the
//! shape of transaction streams), tiles merged, windows finalized; against a naive f64
//! running sum, the cost of exactness.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use skewless_aggregate::{Aggregate, EventTime, Function, Input};
use skewless_benches::measuring;
use skewless_core::DType;

fn amounts(n: usize) -> Vec<f64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 100_000) as f64 / 100.0
        })
        .collect()
}

const FUNCTIONS: [Function; 8] = [
    Function::Count,
    Function::Sum,
    Function::Mean,
    Function::Max,
    Function::StddevSamp,
    Function::Last,
    Function::ApproxCountDistinct,
    Function::Min,
];

fn update(c: &mut Criterion) {
    let n = if measuring() { 100_000 } else { 1_000 };
    let values = amounts(n);
    let mut group = c.benchmark_group("aggregate/update");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("naive_f64_sum", |b| {
        b.iter(|| values.iter().fold(0.0f64, |a, v| a + v))
    });
    for function in FUNCTIONS {
        let agg = Aggregate {
            function,
            input: Some(DType::Float64),
        };
        group.bench_function(BenchmarkId::from_parameter(function.name()), |b| {
            b.iter(|| {
                let mut state = agg.init();
                for (i, v) in values.iter().enumerate() {
                    let at = EventTime {
                        event: i as i64,
                        created: i as i64,
                    };
                    agg.update(&mut state, Input::Float(*v), at);
                }
                state
            })
        });
    }
    group.finish();
}

/// A 7-day window of 5-minute tiles (2016), 10 events each: merged, then finalized.
fn merge_and_finalize(c: &mut Criterion) {
    let tiles = if measuring() { 2016 } else { 16 };
    let values = amounts(tiles * 10);
    let mut group = c.benchmark_group("aggregate/window_of_tiles");
    group.throughput(Throughput::Elements(tiles as u64));
    for function in FUNCTIONS {
        let agg = Aggregate {
            function,
            input: Some(DType::Float64),
        };
        let states: Vec<_> = values
            .chunks(10)
            .enumerate()
            .map(|(i, chunk)| {
                let mut state = agg.init();
                for v in chunk {
                    let at = EventTime {
                        event: i as i64,
                        created: i as i64,
                    };
                    agg.update(&mut state, Input::Float(*v), at);
                }
                state
            })
            .collect();
        group.bench_function(BenchmarkId::from_parameter(function.name()), |b| {
            b.iter(|| {
                let mut window = agg.init();
                for s in &states {
                    agg.merge(&mut window, s);
                }
                agg.finalize(&window).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, update, merge_and_finalize);
criterion_main!(benches);
