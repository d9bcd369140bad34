//! `fraud_risk`: request-time risk features for a card transaction.
//!
//! From the transaction amount (a request field) and the user's stored 7-day statistics
//! it derives four features. Only IEEE correctly-rounded operations (+ − × ÷, comparisons)
//! are used, except `ln_1p`, so every language computes the same bits.

use skewless_sdk::{DType, Input, Output, Result, Signature, Transform, ValuesColumn, export};

/// Accounts younger than this many days count as new.
pub const NEW_ACCOUNT_DAYS: i64 = 30;

/// How far the amount sits above the 7-day average, in units of the average (at least 1):
/// a z-score proxy for users whose standard deviation is not stored.
pub fn amount_zscore_proxy(amount: f64, avg_7d: f64) -> f64 {
    (amount - avg_7d) / avg_7d.abs().max(1.0)
}

/// The amount as a fraction of the 7-day maximum; `None` when there is no positive maximum.
pub fn amount_to_max_ratio(amount: f64, max_7d: f64) -> Option<f64> {
    (max_7d > 0.0).then(|| amount / max_7d)
}

/// The transform.
#[derive(Debug)]
pub struct FraudRisk;

impl Transform for FraudRisk {
    fn signature() -> Signature {
        Signature::new()
            .input("amount", DType::Float64)
            .input("txn_amount_avg_7d", DType::Float64)
            .input("txn_amount_max_7d", DType::Float64)
            .input("account_age_days", DType::Int64)
            .output("amount_zscore_proxy", DType::Float64)
            .output("amount_to_max_ratio", DType::Float64)
            .output("is_new_account", DType::Bool)
            .output("amount_log1p", DType::Float64)
    }

    fn transform(input: &Input) -> Result<Output> {
        let amount = input.float64("amount")?;
        let avg = input.float64("txn_amount_avg_7d")?;
        let max = input.float64("txn_amount_max_7d")?;
        let age = input.int64("account_age_days")?;

        let zscore = amount.zip_map(&avg, amount_zscore_proxy);
        let mut ratio = amount.zip_map(&max, |a, m| a / m);
        for (i, &m) in max.values().iter().enumerate() {
            if m.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                ratio.set_null(i);
            }
        }
        let is_new: ValuesColumn<bool> = age.map(|days| days < NEW_ACCOUNT_DAYS);
        let log1p = amount.map(f64::ln_1p);

        Ok(Output::new(input.rows())
            .float64("amount_zscore_proxy", zscore)
            .float64("amount_to_max_ratio", ratio)
            .bool("is_new_account", is_new)
            .float64("amount_log1p", log1p))
    }
}

export!(FraudRisk);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas() {
        assert_eq!(amount_zscore_proxy(150.0, 50.0), 2.0);
        assert_eq!(
            amount_zscore_proxy(0.5, 0.0),
            0.5,
            "average below 1 divides by 1"
        );
        assert_eq!(amount_to_max_ratio(50.0, 200.0), Some(0.25));
        assert_eq!(amount_to_max_ratio(50.0, 0.0), None);
        assert_eq!(amount_to_max_ratio(50.0, f64::NAN), None);
    }

    #[test]
    fn batch_with_nulls() {
        let input = Input::builder(3)
            .float64(
                "amount",
                ValuesColumn::from_options([Some(150.0), Some(10.0), None]),
            )
            .float64(
                "txn_amount_avg_7d",
                ValuesColumn::from_values(vec![50.0, 10.0, 5.0]),
            )
            .float64(
                "txn_amount_max_7d",
                ValuesColumn::from_values(vec![300.0, 0.0, 9.0]),
            )
            .int64(
                "account_age_days",
                ValuesColumn::from_options([Some(400), Some(3), None]),
            )
            .build()
            .unwrap();
        let out = FraudRisk::transform(&input).unwrap();
        let z: Vec<_> = out
            .get_float64("amount_zscore_proxy")
            .unwrap()
            .iter()
            .collect();
        assert_eq!(z, [Some(2.0), Some(0.0), None]);
        let ratio: Vec<_> = out
            .get_float64("amount_to_max_ratio")
            .unwrap()
            .iter()
            .collect();
        assert_eq!(ratio, [Some(0.5), None, None]);
        let new: Vec<_> = out.get_bool("is_new_account").unwrap().iter().collect();
        assert_eq!(new, [Some(false), Some(true), None]);
        let log: Vec<_> = out.get_float64("amount_log1p").unwrap().iter().collect();
        assert_eq!(log[0], Some(151f64.ln()));
        assert_eq!(log[2], None);
    }
}
