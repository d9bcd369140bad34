//! Shared pieces of the Skewless benchmarks: inputs, and the native twins of the guest
//! kernels, written the way a careful Rust engineer would write them over Arrow.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer};

/// Whether the bench binary runs for real (`cargo bench`) rather than once as a smoke test
/// (`cargo test --benches`): smoke runs use small inputs.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The kernels' input: `x` (float64, every 10th row null) and `s` (short strings).
pub fn kernel_input(rows: usize) -> RecordBatch {
    let words = [
        "alpha",
        "Bravo charlie",
        "delta-ECHO",
        "",
        "foxtrot golf hotel",
        "india",
    ];
    RecordBatch::try_from_iter([
        (
            "x",
            Arc::new(Float64Array::from_iter(
                (0..rows).map(|i| (i % 10 != 0).then_some(i as f64 * 0.25)),
            )) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| (i % 10 != 3).then_some(words[i % words.len()])),
            )),
        ),
    ])
    .expect("valid batch")
}

/// Native twin of the guest's float64 kernel: `y = x * 1.5 + 2.0`.
pub fn native_f64(x: &ArrayRef) -> Float64Array {
    x.as_primitive::<Float64Type>().unary(|v| v * 1.5 + 2.0)
}

/// Native twin of the guest's string kernel: ASCII upper-case and byte length.
pub fn native_string(s: &ArrayRef) -> (StringArray, Int64Array) {
    let s = s.as_string::<i32>();
    let mut upper = arrow_array::builder::StringBuilder::with_capacity(s.len(), s.values().len());
    let mut scratch = String::new();
    for i in 0..s.len() {
        if s.is_null(i) {
            upper.append_null();
        } else {
            scratch.clear();
            scratch.push_str(s.value(i));
            scratch.make_ascii_uppercase();
            upper.append_value(&scratch);
        }
    }
    let len = Int64Array::new(
        s.value_offsets()
            .windows(2)
            .map(|w| i64::from(w[1] - w[0]))
            .collect(),
        s.nulls().cloned(),
    );
    (upper.finish(), len)
}

/// The fraud transform's columns, `rows` long.
pub fn fraud_input(rows: usize, offset: usize) -> RecordBatch {
    let f = |g: fn(usize) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter((offset..offset + rows).map(g)))
    };
    RecordBatch::try_from_iter([
        (
            "amount",
            f(|i| (i % 11 != 0).then_some((i % 500) as f64 * 1.25 + 0.5)),
        ),
        ("txn_amount_avg_7d", f(|i| Some((i % 90) as f64 + 0.25))),
        ("txn_amount_max_7d", f(|i| Some((i % 7) as f64 * 100.0))),
        (
            "account_age_days",
            Arc::new(Int64Array::from_iter_values(
                (offset..offset + rows).map(|i| (i % 400) as i64),
            )),
        ),
    ])
    .expect("valid batch")
}

/// The fraud transform compiled natively: the example crate's own formulas, over Arrow
/// arrays, with the same null rules as the guest.
pub fn native_fraud(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .expect("column")
            .as_primitive::<Float64Type>()
    };
    let (amount, avg, max) = (
        col("amount"),
        col("txn_amount_avg_7d"),
        col("txn_amount_max_7d"),
    );
    let age = batch
        .column_by_name("account_age_days")
        .expect("column")
        .as_primitive::<arrow_array::types::Int64Type>();
    let both = |a: &Float64Array, b: &Float64Array| NullBuffer::union(a.nulls(), b.nulls());
    let zscore = Float64Array::new(
        amount
            .values()
            .iter()
            .zip(avg.values())
            .map(|(&a, &m)| fraud_risk::amount_zscore_proxy(a, m))
            .collect(),
        both(amount, avg),
    );
    let ratio_valid: BooleanBuffer = max.values().iter().map(|&m| m > 0.0).collect();
    let ratio = Float64Array::new(
        amount
            .values()
            .iter()
            .zip(max.values())
            .map(|(&a, &m)| a / m)
            .collect(),
        NullBuffer::union(
            both(amount, max).as_ref(),
            Some(&NullBuffer::new(ratio_valid)),
        ),
    );
    let is_new = BooleanArray::new(
        age.values()
            .iter()
            .map(|&d| d < fraud_risk::NEW_ACCOUNT_DAYS)
            .collect(),
        age.nulls().cloned(),
    );
    let log1p = Float64Array::new(
        amount.values().iter().map(|a| a.ln_1p()).collect(),
        amount.nulls().cloned(),
    );
    Ok(RecordBatch::try_from_iter_with_nullable([
        ("amount_zscore_proxy", Arc::new(zscore) as ArrayRef, true),
        ("amount_to_max_ratio", Arc::new(ratio), true),
        ("is_new_account", Arc::new(is_new), true),
        ("amount_log1p", Arc::new(log1p), true),
    ])?)
}

/// Writes `rows` rows to `path` as Parquet, `batch(start, n)` making each batch of up to
/// 2^20 rows; written to a temporary file and renamed, so a cached input is never half.
pub fn write_parquet_batches(
    path: &std::path::Path,
    rows: usize,
    mut batch: impl FnMut(usize, usize) -> RecordBatch,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp)?;
    let mut writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    for start in (0..rows).step_by(1 << 20) {
        let b = batch(start, (1 << 20).min(rows - start));
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(parquet::arrow::ArrowWriter::try_new(
                file.try_clone()?,
                b.schema(),
                None,
            )?),
        };
        w.write(&b)?;
    }
    if let Some(w) = writer {
        w.close()?;
    }
    std::fs::rename(tmp, path)?;
    Ok(())
}

/// The peak resident set of this process, in KiB (VmHWM).
pub fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

/// The resident set of this process now, in KiB (VmRSS).
pub fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}

/// A KiB figure of /proc/self/status (0 where there is none).
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs a benchmark process that prints `elapsed_s=S peak_rss_kb=K [partitions=P]`;
/// returns (S, K, P or 0).
pub fn measure(command: &mut std::process::Command) -> anyhow::Result<(f64, u64, u64)> {
    use anyhow::Context;
    let output = command.output().context("starting a benchmark process")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!("{text}{}", String::from_utf8_lossy(&output.stderr));
    }
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .with_context(|| format!("no {name} in {text:?}"))
    };
    Ok((
        field("elapsed_s=")?.parse()?,
        field("peak_rss_kb=")?.parse()?,
        field("partitions=").map_or(Ok(0), str::parse)?,
    ))
}
