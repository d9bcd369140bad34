//! Paths of compiled guest components, for tests and benches.
//!
//! `build.rs` builds every example transform (`example-transforms/`) and every test
//! fixture guest (`tests/guests/`, good and hostile) for `wasm32-wasip2` with the `guest`
//! profile, and exposes each component's absolute path as a constant named after its
//! package (`FRAUD_RISK`, `HOSTILE`, ...).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

mod redis;
pub use redis::RedisServer;

/// The one-view fraud definitions several tests and benches share: entity `user`, view
/// `user_stats` (three features, TTL 7 days) read from `source`, transform `txn_risk`
/// (`fraud_risk@1.0.0`, reading the view and `request:amount`) and service `fraud_v1`.
/// `source` is the source's fields after its name, such as `path: user_stats.parquet`;
/// empty for a push-only source.
pub fn fraud_defs(source: &str) -> String {
    let source = if source.is_empty() {
        String::new()
    } else {
        format!(", {source}")
    };
    format!(
        r#"
project: fraud
entities: [{{name: user, join_keys: [user_id]}}]
sources: [{{name: user_stats{source}}}]
feature_views:
  - {{name: user_stats, entities: [user], source: user_stats, ttl: 7d,
     features: [{{name: txn_amount_avg_7d, dtype: float64}}, {{name: txn_amount_max_7d, dtype: float64}},
                {{name: account_age_days, dtype: int64}}]}}
transforms:
  - {{name: txn_risk, module: fraud_risk@1.0.0,
     inputs: [user_stats:txn_amount_avg_7d, user_stats:txn_amount_max_7d, user_stats:account_age_days, request:amount],
     request_schema: [{{name: amount, dtype: float64}}]}}
feature_services: [{{name: fraud_v1, features: ["user_stats:*", "txn_risk:*"]}}]
"#
    )
}
