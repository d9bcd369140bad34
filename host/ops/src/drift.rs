//! Drift: the distribution of the values a service served (its sample) against a
//! training set, per feature.
//!
//! - **PSI** (population stability index): numeric values fall into ten bins cut at the
//!   training set's deciles; strings and bools into their training categories (the 20 most
//!   frequent, the rest as one "other"). `PSI = Σ (s - t) · ln(s / t)` over the bins' served
//!   and training shares, an empty bin counting as a share of 0.0001. Common reading: below
//!   0.1 stable, 0.1–0.25 moderate shift, above 0.25 a large shift.
//! - **KS**: the two-sample Kolmogorov–Smirnov statistic, the largest gap between the two
//!   empirical distribution functions (numeric features only).
//! - **Null rates**: the share of nulls on each side and their difference.
//!
//! Nulls and NaNs are left out of PSI and KS; float32 lists get null rates only.
//!
//! The training set is read once, streaming: row and null counts are exact, and the
//! deciles and categories come from a uniform sample of [`TRAINING_SAMPLE_ROWS`] rows, so
//! that a training set of any size takes bounded memory.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::{Array, ArrayRef, RecordBatch};
use serde::Serialize;
use serde_json::Value as Json;
use skewless_core::DType;
use skewless_core::assemble::{Value, ValueReader};
use skewless_plan::ServicePlan;

use crate::sample::ServedRow;
use crate::{Error, json};

/// The smallest share a bin counts with, so that an empty bin does not make PSI infinite.
const EMPTY_SHARE: f64 = 1e-4;
/// Categories kept by name; the rest are one bin.
const CATEGORIES: usize = 20;
/// Training rows kept for the deciles and categories.
pub const TRAINING_SAMPLE_ROWS: usize = 100_000;

/// A training set as drift needs it: a uniform sample of its rows (the service's feature
/// columns), and exact row and null counts per feature.
#[derive(Debug)]
pub struct Training {
    /// Up to `capacity` rows, each row of the file equally likely to be here.
    sample: Option<RecordBatch>,
    /// Rows read.
    rows: u64,
    /// Nulls per feature, by qualified name.
    nulls: HashMap<String, usize>,
    capacity: usize,
    rng: u64,
}

impl Training {
    /// Streams the feature columns of `plan` from the Parquet file or directory at `path`,
    /// keeping a sample of at most `capacity` rows.
    pub fn read(path: &Path, plan: &ServicePlan, capacity: usize) -> Result<Self, Error> {
        let names: Vec<&str> = plan.features.iter().map(|f| f.qualified.as_str()).collect();
        let mut training = Training {
            sample: None,
            rows: 0,
            nulls: HashMap::new(),
            capacity,
            rng: 0x7a1d_5eed_0bad_cafe,
        };
        let context = format!("the training set (is it a backfill of {}?)", plan.name);
        skewless_offline::scan(path, Some(&names), "training set", None, 65_536, |batch| {
            training
                .add(&batch)
                .map_err(|source| skewless_offline::Error::Arrow {
                    context: format!("sampling {}", path.display()),
                    source,
                })
        })
        .map_err(Error::offline(&context))?;
        Ok(training)
    }

    /// Counts `batch` and offers its rows to the sample (reservoir sampling, algorithm R).
    fn add(&mut self, batch: &RecordBatch) -> Result<(), arrow_schema::ArrowError> {
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            *self.nulls.entry(field.name().clone()).or_default() += column.null_count();
        }
        let kept = self.sample.as_ref().map_or(0, RecordBatch::num_rows);
        // Where each row of the new sample comes from: (0, row) the old one, (1, row) this batch.
        let mut picks: Vec<(usize, usize)> = (0..kept).map(|i| (0, i)).collect();
        for row in 0..batch.num_rows() {
            self.rows += 1;
            if picks.len() < self.capacity {
                picks.push((1, row));
                continue;
            }
            let j = self.next_random() % self.rows;
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| picks.get_mut(j)) {
                *slot = (1, row);
            }
        }
        if picks.iter().all(|&(from, _)| from == 0) {
            return Ok(());
        }
        let empty;
        let old = match &self.sample {
            Some(old) => old,
            None => {
                empty = RecordBatch::new_empty(batch.schema());
                &empty
            }
        };
        self.sample = Some(arrow_select::interleave::interleave_record_batch(
            &[old, batch],
            &picks,
        )?);
        Ok(())
    }

    fn next_random(&mut self) -> u64 {
        crate::sample::splitmix64(&mut self.rng)
    }

    /// The side of `feature`: the sample's values, with the exact row and null counts.
    fn side(&self, feature: &str, dtype: DType) -> Side {
        let column = self
            .sample
            .as_ref()
            .and_then(|s| s.column_by_name(feature))
            .map_or(Column::Opaque, |array| side(array, dtype).column);
        Side {
            rows: usize::try_from(self.rows).unwrap_or(usize::MAX),
            // Null counts are kept per column of the training set; a feature it lacks
            // (reported as such by the comparison) has none.
            nulls: self.nulls.get(feature).copied().unwrap_or(0),
            column,
        }
    }
}

/// The drift of one feature.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureDrift {
    /// The qualified feature.
    pub feature: String,
    /// Its dtype.
    pub dtype: String,
    /// Served values in the sample.
    pub served_rows: usize,
    /// Training rows.
    pub training_rows: usize,
    /// Share of nulls among the served values.
    pub served_null_rate: f64,
    /// Share of nulls in the training set.
    pub training_null_rate: f64,
    /// `served_null_rate - training_null_rate`.
    pub null_rate_diff: f64,
    /// PSI, when both sides have a non-null value.
    pub psi: Option<f64>,
    /// The KS statistic, for numeric features with a value on both sides.
    pub ks: Option<f64>,
}

/// What one side's column holds, reduced to what the statistics need.
enum Column {
    Numbers(Vec<f64>),
    Categories(Vec<String>),
    /// Only null counts.
    Opaque,
}

struct Side {
    rows: usize,
    nulls: usize,
    column: Column,
}

fn side(array: &ArrayRef, dtype: DType) -> Side {
    let rows = array.len();
    let nulls = array.null_count();
    let Some(reader) = ValueReader::new(array, dtype) else {
        return Side {
            rows,
            nulls: rows,
            column: Column::Opaque,
        };
    };
    let values = (0..rows).map(|i| reader.value(i));
    let column = match dtype {
        DType::Int64 | DType::Float64 | DType::Timestamp => Column::Numbers(
            values
                .filter_map(|v| match v {
                    Value::Int64(x) | Value::Timestamp(x) => Some(x as f64),
                    Value::Float64(x) if !x.is_nan() => Some(x),
                    _ => None,
                })
                .collect(),
        ),
        DType::Bool | DType::String => Column::Categories(
            values
                .filter_map(|v| match v {
                    Value::Bool(b) => Some(b.to_string()),
                    Value::String(s) => Some(s.to_owned()),
                    _ => None,
                })
                .collect(),
        ),
        DType::Float32List => Column::Opaque,
    };
    Side {
        rows,
        nulls,
        column,
    }
}

/// The drift of every feature of `plan`: the sample's served values against the
/// training set's columns (named as the backfill names them, `view:feature`).
pub fn drift(
    plan: &ServicePlan,
    served: &[ServedRow],
    training: &Training,
) -> Result<Vec<FeatureDrift>, Error> {
    let mut out = Vec::with_capacity(plan.features.len());
    for (i, feature) in plan.features.iter().enumerate() {
        let values: Vec<Json> = served.iter().map(|r| r.values[i].clone()).collect();
        let served_array = json::column(&values, feature.dtype)
            .map_err(|e| Error::Internal(format!("the sample of {}{e}", feature.qualified)))?;
        let s = side(&served_array, feature.dtype);
        let t = training.side(&feature.qualified, feature.dtype);
        let rate = |side: &Side| {
            if side.rows == 0 {
                0.0
            } else {
                side.nulls as f64 / side.rows as f64
            }
        };
        let (psi, ks) = match (&s.column, &t.column) {
            (Column::Numbers(a), Column::Numbers(b)) if !a.is_empty() && !b.is_empty() => {
                let mut a = a.clone();
                let mut b = b.clone();
                a.sort_by(f64::total_cmp);
                b.sort_by(f64::total_cmp);
                (Some(numeric_psi(&a, &b)), Some(ks(&a, &b)))
            }
            (Column::Categories(a), Column::Categories(b)) if !a.is_empty() && !b.is_empty() => {
                (Some(categorical_psi(a, b)), None)
            }
            _ => (None, None),
        };
        out.push(FeatureDrift {
            feature: feature.qualified.clone(),
            dtype: feature.dtype.to_string(),
            served_rows: s.rows,
            training_rows: t.rows,
            served_null_rate: rate(&s),
            training_null_rate: rate(&t),
            null_rate_diff: rate(&s) - rate(&t),
            psi,
            ks,
        });
    }
    Ok(out)
}

fn psi(served: &[usize], trained: &[usize]) -> f64 {
    let (ns, nt) = (
        served.iter().sum::<usize>() as f64,
        trained.iter().sum::<usize>() as f64,
    );
    served
        .iter()
        .zip(trained)
        .map(|(&s, &t)| {
            let s = (s as f64 / ns).max(EMPTY_SHARE);
            let t = (t as f64 / nt).max(EMPTY_SHARE);
            (s - t) * (s / t).ln()
        })
        .sum()
}

/// PSI over ten bins cut at the training deciles; both slices sorted.
fn numeric_psi(served: &[f64], trained: &[f64]) -> f64 {
    let mut edges: Vec<f64> = (1..10)
        .map(|q| trained[(q * trained.len() / 10).min(trained.len() - 1)])
        .collect();
    edges.dedup();
    let counts = |values: &[f64]| {
        let mut bins = vec![0usize; edges.len() + 1];
        for v in values {
            bins[edges.partition_point(|e| e <= v)] += 1;
        }
        bins
    };
    psi(&counts(served), &counts(trained))
}

/// PSI over the training set's most frequent categories and one "other" bin.
fn categorical_psi(served: &[String], trained: &[String]) -> f64 {
    let mut frequency: HashMap<&str, usize> = HashMap::new();
    for t in trained {
        *frequency.entry(t).or_default() += 1;
    }
    let mut top: Vec<(&str, usize)> = frequency.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    top.truncate(CATEGORIES);
    let index: HashMap<&str, usize> = top.iter().enumerate().map(|(i, (c, _))| (*c, i)).collect();
    let counts = |values: &[String]| {
        let mut bins = vec![0usize; index.len() + 1];
        for v in values {
            bins[index.get(v.as_str()).copied().unwrap_or(index.len())] += 1;
        }
        bins
    };
    psi(&counts(served), &counts(trained))
}

/// The two-sample KS statistic; both slices sorted.
fn ks(a: &[f64], b: &[f64]) -> f64 {
    let (mut i, mut j, mut gap) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        gap = gap.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    gap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<f64>) -> Vec<f64> {
        v.sort_by(f64::total_cmp);
        v
    }

    fn training(capacity: usize) -> Training {
        Training {
            sample: None,
            rows: 0,
            nulls: HashMap::new(),
            capacity,
            rng: 1,
        }
    }

    /// 50 batches of 1,000 rows: `v:x` is the row number, null on every tenth row.
    fn feed(t: &mut Training) {
        let schema =
            std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
                "v:x",
                arrow_schema::DataType::Float64,
                true,
            )]));
        for b in 0..50 {
            let values = arrow_array::Float64Array::from_iter((0..1000).map(|i| {
                let n = b * 1000 + i;
                (n % 10 != 0).then_some(f64::from(n))
            }));
            let batch =
                RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(values)]).unwrap();
            t.add(&batch).unwrap();
        }
    }

    fn numbers(side: &Side) -> Vec<f64> {
        match &side.column {
            Column::Numbers(v) => sorted(v.clone()),
            _ => panic!("numbers expected"),
        }
    }

    #[test]
    fn a_large_training_set_is_sampled_uniformly_with_exact_counts() {
        let mut all = training(usize::MAX);
        feed(&mut all);
        let mut sampled = training(1000);
        feed(&mut sampled);
        assert_eq!(sampled.sample.as_ref().unwrap().num_rows(), 1000, "bounded");
        let (full, part) = (
            all.side("v:x", DType::Float64),
            sampled.side("v:x", DType::Float64),
        );
        assert_eq!((part.rows, part.nulls), (50_000, 5_000), "counts are exact");
        assert_eq!((full.rows, full.nulls), (50_000, 5_000));
        let (full, part) = (numbers(&full), numbers(&part));
        assert_eq!(
            full.len(),
            45_000,
            "a capacity above the rows keeps every row"
        );
        // Uniform over the whole file, not its first rows: the deciles agree.
        let psi = numeric_psi(&part, &full);
        assert!(psi < 0.05, "psi {psi}");
        assert!(ks(&part, &full) < 0.06, "ks {}", ks(&part, &full));
        let median = part[part.len() / 2];
        assert!((22_000.0..28_000.0).contains(&median), "median {median}");
    }

    #[test]
    fn ks_of_known_samples() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(ks(&a, &a), 0.0);
        // Disjoint samples: the functions are 1 apart once one is exhausted.
        assert_eq!(ks(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        // a = {1,2,3,4}, b = {3,4,5,6}: at x = 2, F_a = 0.5 and F_b = 0; at x = 4, 1 vs 0.5.
        assert_eq!(ks(&a, &[3.0, 4.0, 5.0, 6.0]), 0.5);
        // Ties across the samples are stepped over together.
        assert_eq!(ks(&[1.0, 1.0, 2.0], &[1.0, 2.0, 2.0]), 1.0 / 3.0);
    }

    #[test]
    fn psi_is_zero_for_the_same_distribution_and_grows_with_a_shift() {
        let base = sorted((0..1000).map(f64::from).collect());
        assert!(numeric_psi(&base, &base).abs() < 1e-12);
        let slightly = sorted((50..1050).map(f64::from).collect());
        let far = sorted((600..1600).map(f64::from).collect());
        let (small, large) = (numeric_psi(&slightly, &base), numeric_psi(&far, &base));
        assert!(small > 0.0 && small < 0.1, "{small}");
        assert!(large > 0.25, "{large}");
    }

    #[test]
    fn psi_by_hand() {
        // Shares 0.5/0.5 against 0.25/0.75: (0.25)ln2 + (-0.25)ln(2/3).
        let expected = 0.25 * 2f64.ln() - 0.25 * (2.0f64 / 3.0).ln();
        assert!((psi(&[1, 1], &[1, 3]) - expected).abs() < 1e-12);
        let cats = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(
            (categorical_psi(&cats(&["a", "b"]), &cats(&["a", "b", "b", "b"])) - expected).abs()
                < 1e-12
        );
    }
}
