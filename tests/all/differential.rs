//! The guarantee, tested differentially: for random definitions and random Parquet
//! histories, what a server serves at `T` after materializing up to `T` equals, bit for
//! bit, what a backfill computes for the same entities at `T`; every example transform
//! included, and fraud_risk in each language in turn (Rust, C, Python, JavaScript).
//!
//! Each case draws 1–4 views (int64, string and composite keys; TTLs or none; created
//! times or none), a history with ties, nulls, late rows, TTL-edge rows, NaNs of every
//! sign and payload (compared by their bits: there is one NaN on both paths), ±0.0,
//! ±infinity, subnormals, extreme magnitudes, empty and unicode strings, and a request
//! at `T` for known and unknown entities. `SKEWLESS_DIFF_CASES` (default 12) and
//! `SKEWLESS_DIFF_SEED` run more or other cases; a failure names its seed and case.
//!
//! The suite is itself tested: with a planted skew in the online store's TTL boundary
//! (`<` instead of `<=`, a store layer that reads one microsecond late), it must fail.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::DataType;
use serde_json::{Value, json};
use skewless_test_artifacts::{
    FRAUD_RISK, FRAUD_RISK_C, FRAUD_RISK_JS, FRAUD_RISK_PY, GEO_DISTANCE, MERCHANT_CATEGORY,
};

/// fraud_risk in every language the project builds: case `n` serves and backfills with
/// `FRAUD_RISKS[n % 4]` uploaded as fraud_risk@1.0.0.
const FRAUD_RISKS: [(&str, &str); 4] = [
    ("Rust", FRAUD_RISK),
    ("C", FRAUD_RISK_C),
    ("Python", FRAUD_RISK_PY),
    ("JavaScript", FRAUD_RISK_JS),
];

use crate::support::{Lcg, TestServer, read_parquet, write_parquet};

/// 2026-11-20T00:00:00Z in microseconds: the time of every request.
const T: i64 = 1_795_132_800_000_000;
const SECOND: i64 = 1_000_000;
const MERCHANTS: [&str; 6] = ["", "a", "café", "東京", "m-1", "Ω≈ç√ 🙂"];
const USERS: i64 = 12;

#[derive(Clone, Copy, PartialEq)]
enum Keys {
    User,
    Merchant,
    Pair,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Float,
    Int,
    Str,
    Bool,
}

struct View {
    keys: Keys,
    ttl_s: Option<i64>,
    created: bool,
    features: Vec<(String, Kind)>,
}

/// One random case: definitions and the files they read, written under `dir`.
struct Case {
    defs: String,
    views: Vec<View>,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float64",
        Kind::Int => "int64",
        Kind::Str => "string",
        Kind::Bool => "bool",
    }
}

fn float(rng: &mut Lcg) -> Option<f64> {
    if rng.chance(10) {
        return None;
    }
    let (a, b) = (rng.next(2_000_000), rng.next(1000));
    Some(rng.pick(&[
        f64::NAN,
        // NaNs of another sign, payload or kind, as numpy and bit-casts make them: both
        // paths must carry the one canonical NaN (ADR 0008).
        f64::from_bits(0xfff8_0000_0000_0000),
        f64::from_bits(0x7ff8_dead_beef_0001),
        f64::from_bits(0x7ff0_0000_0000_0001),
        -0.0,
        0.0,
        5e-324,
        -5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-300,
        0.1 + 0.2,
        1.0,
        -1.5,
        (a as f64 - 1e6) / 7.0,
        (b as f64) * 1e15,
    ]))
}

fn int(rng: &mut Lcg) -> Option<i64> {
    if rng.chance(10) {
        return None;
    }
    let (a, b) = (rng.next(1000), rng.next(1 << 40));
    Some(rng.pick(&[i64::MIN, i64::MAX, 0, -1, a as i64, b as i64 - (1 << 39)]))
}

fn string(rng: &mut Lcg) -> Option<String> {
    if rng.chance(10) {
        return None;
    }
    let base = rng.pick(&MERCHANTS);
    Some(if rng.chance(50) {
        base.to_owned()
    } else {
        format!("{base}{}", rng.next(100))
    })
}

fn column(kind: Kind, rng: &mut Lcg, rows: usize) -> ArrayRef {
    match kind {
        Kind::Float => Arc::new(Float64Array::from_iter((0..rows).map(|_| float(rng)))),
        Kind::Int => Arc::new(Int64Array::from_iter((0..rows).map(|_| int(rng)))),
        Kind::Str => Arc::new(StringArray::from_iter((0..rows).map(|_| string(rng)))),
        Kind::Bool => Arc::new(BooleanArray::from_iter(
            (0..rows).map(|_| (!rng.chance(10)).then(|| rng.chance(50))),
        )),
    }
}

/// A random user; the last one, `USERS`, is kept for the TTL-edge row.
fn user(rng: &mut Lcg) -> Option<i64> {
    (!rng.chance(5)).then(|| 1 + rng.next(USERS as u64 - 1) as i64)
}

/// A present value of `kind`.
fn fixed(kind: Kind) -> ArrayRef {
    match kind {
        Kind::Float => Arc::new(Float64Array::from(vec![1.5])),
        Kind::Int => Arc::new(Int64Array::from(vec![7])),
        Kind::Str => Arc::new(StringArray::from(vec!["edge"])),
        Kind::Bool => Arc::new(BooleanArray::from(vec![true])),
    }
}

fn merchant(rng: &mut Lcg) -> Option<String> {
    (!rng.chance(5)).then(|| rng.pick(&MERCHANTS).to_owned())
}

impl Case {
    /// Draws a case and writes its history under `dir`. View 0 is keyed by user, always
    /// has a TTL, and holds what the example transforms read.
    fn draw(rng: &mut Lcg, dir: &Path) -> Case {
        let mut views = Vec::new();
        let count = 1 + rng.next(4) as usize;
        for v in 0..count {
            let keys = if v == 0 {
                Keys::User
            } else {
                rng.pick(&[Keys::User, Keys::Merchant, Keys::Pair])
            };
            let ttl_s = if v == 0 || rng.chance(75) {
                Some(rng.pick(&[1, 90, 3600, 2 * 86_400]))
            } else {
                None
            };
            let mut features: Vec<(String, Kind)> = if v == 0 {
                vec![
                    ("txn_amount_avg_7d".into(), Kind::Float),
                    ("txn_amount_max_7d".into(), Kind::Float),
                    ("account_age_days".into(), Kind::Int),
                    ("home_lat".into(), Kind::Float),
                    ("home_lon".into(), Kind::Float),
                ]
            } else {
                Vec::new()
            };
            for f in 0..1 + rng.next(3) {
                let kind = rng.pick(&[Kind::Float, Kind::Int, Kind::Str, Kind::Bool]);
                features.push((format!("f{f}"), kind));
            }
            views.push(View {
                keys,
                ttl_s,
                created: rng.chance(60),
                features,
            });
        }
        for (v, view) in views.iter().enumerate() {
            view.write_history(rng, &dir.join(format!("v{v}.parquet")), v == 0);
        }
        let defs = Case::defs(&views);
        Case { defs, views }
    }

    fn defs(views: &[View]) -> String {
        let mut y = String::from(
            "project: differential\nentities:\n  - {name: user, join_keys: [user_id]}\n  - {name: merchant, join_keys: [{name: merchant, dtype: string}]}\nsources:\n",
        );
        for (v, view) in views.iter().enumerate() {
            let created = if view.created {
                ", created_timestamp_field: created"
            } else {
                ""
            };
            let _ = writeln!(
                y,
                "  - {{name: v{v}, path: v{v}.parquet, timestamp_field: ts{created}}}"
            );
        }
        y.push_str("feature_views:\n");
        for (v, view) in views.iter().enumerate() {
            let entities = match view.keys {
                Keys::User => "[user]",
                Keys::Merchant => "[merchant]",
                Keys::Pair => "[user, merchant]",
            };
            let ttl = view
                .ttl_s
                .map(|s| format!(", ttl: {s}s"))
                .unwrap_or_default();
            let features: Vec<String> = view
                .features
                .iter()
                .map(|(name, kind)| format!("{{name: {name}, dtype: {}}}", kind_name(*kind)))
                .collect();
            let _ = writeln!(
                y,
                "  - {{name: v{v}, entities: {entities}, source: v{v}{ttl}, features: [{}]}}",
                features.join(", ")
            );
        }
        y.push_str(
            "transforms:
  - {name: txn_risk, module: fraud_risk@1.0.0,
     inputs: [v0:txn_amount_avg_7d, v0:txn_amount_max_7d, v0:account_age_days, request:amount],
     request_schema: [{name: amount, dtype: float64}]}
  - {name: geo, module: geo_distance@1.0.0,
     inputs: [request:lat, request:lon, v0:home_lat, v0:home_lon],
     request_schema: [{name: lat, dtype: float64}, {name: lon, dtype: float64}]}
  - {name: merchant_cat, module: merchant_category@1.0.0, inputs: [request:merchant_name],
     request_schema: [{name: merchant_name, dtype: string}]}
feature_services:
  - name: svc
    features: [",
        );
        for v in 0..views.len() {
            let _ = write!(y, "\"v{v}:*\", ");
        }
        y.push_str("\"txn_risk:*\", \"geo:*\", \"merchant_cat:*\"]\n");
        y
    }

    /// Whether some view is keyed by merchant.
    fn has_merchant(&self) -> bool {
        self.views.iter().any(|v| v.keys != Keys::User)
    }
}

impl View {
    /// Rows with ties, late rows after `T`, rows on the TTL edge, null keys and times;
    /// with `edge`, a last row for user `USERS`, present values, exactly one TTL before
    /// `T`, which a TTL boundary off by one would withhold.
    fn write_history(&self, rng: &mut Lcg, path: &Path, edge: bool) {
        let rows = 20 + rng.next(120) as usize;
        let ttl = self.ttl_s.map_or(30 * 86_400 * SECOND, |s| s * SECOND);
        let mut ts: Vec<Option<i64>> = Vec::with_capacity(rows);
        for i in 0..rows {
            let t = match rng.next(9) {
                0 => T - ttl,
                1 => T - ttl - 1,
                2 => T - ttl + 1,
                3 => T,
                4 => T + 1 + rng.next(1000) as i64,
                5 if i > 0 => ts[rng.next(i as u64) as usize].unwrap_or(T),
                6 => T - rng.next(10) as i64 * SECOND,
                _ => T - rng.next((3 * ttl) as u64) as i64,
            };
            ts.push((!rng.chance(3)).then_some(t));
        }
        let mut columns: Vec<(&str, ArrayRef)> = Vec::new();
        if self.keys != Keys::Merchant {
            columns.push((
                "user_id",
                Arc::new(Int64Array::from_iter((0..rows).map(|_| user(rng)))),
            ));
        }
        if self.keys != Keys::User {
            columns.push((
                "merchant",
                Arc::new(StringArray::from_iter((0..rows).map(|_| merchant(rng)))),
            ));
        }
        columns.push(("ts", Arc::new(TimestampMicrosecondArray::from(ts))));
        if self.created {
            columns.push((
                "created",
                Arc::new(TimestampMicrosecondArray::from_iter(
                    (0..rows).map(|_| (!rng.chance(20)).then(|| rng.next(3) as i64 * SECOND)),
                )),
            ));
        }
        for (name, kind) in &self.features {
            columns.push((name.as_str(), column(*kind, rng, rows)));
        }
        if edge {
            let edge_row: Vec<ArrayRef> = columns
                .iter()
                .map(|(name, _)| -> ArrayRef {
                    match *name {
                        "user_id" => Arc::new(Int64Array::from(vec![USERS])),
                        "ts" => Arc::new(TimestampMicrosecondArray::from(vec![T - ttl])),
                        "created" => Arc::new(TimestampMicrosecondArray::from(vec![0])),
                        feature => {
                            let kind = self.features.iter().find(|f| f.0 == feature).map(|f| f.1);
                            fixed(kind.expect("a feature column"))
                        }
                    }
                })
                .collect();
            for ((_, array), extra) in columns.iter_mut().zip(edge_row) {
                *array = arrow_select::concat::concat(&[array.as_ref(), extra.as_ref()]).unwrap();
            }
        }
        write_parquet(path, columns);
    }
}

/// The request: every user (and one unknown) at `T`, with random request fields.
struct Request {
    users: Vec<i64>,
    merchants: Vec<String>,
    amount: Vec<Option<f64>>,
    lat: Vec<Option<f64>>,
    lon: Vec<Option<f64>>,
    merchant_name: Vec<Option<String>>,
}

impl Request {
    fn draw(rng: &mut Lcg) -> Request {
        let users: Vec<i64> = (1..=USERS + 1).collect();
        let rows = users.len();
        Request {
            merchants: (0..rows).map(|_| rng.pick(&MERCHANTS).to_owned()).collect(),
            amount: (0..rows).map(|_| float(rng)).collect(),
            lat: (0..rows).map(|_| float(rng)).collect(),
            lon: (0..rows).map(|_| float(rng)).collect(),
            merchant_name: (0..rows).map(|_| string(rng)).collect(),
            users,
        }
    }

    fn json_floats(values: &[Option<f64>]) -> Value {
        Value::Array(
            values
                .iter()
                .map(|v| match v {
                    None => Value::Null,
                    Some(x) if x.is_nan() => json!("NaN"),
                    Some(x) if *x == f64::INFINITY => json!("Infinity"),
                    Some(x) if *x == f64::NEG_INFINITY => json!("-Infinity"),
                    Some(x) => json!(x),
                })
                .collect(),
        )
    }

    fn body(&self, merchant: bool) -> Value {
        let mut entities = json!({"user_id": self.users});
        if merchant {
            entities["merchant"] = json!(self.merchants);
        }
        json!({
            "feature_service": "svc",
            "entities": entities,
            "request_data": {
                "amount": Self::json_floats(&self.amount),
                "lat": Self::json_floats(&self.lat),
                "lon": Self::json_floats(&self.lon),
                "merchant_name": self.merchant_name,
            },
            "request_time": T,
        })
    }

    fn write_entities(&self, path: &Path) {
        let rows = self.users.len();
        write_parquet(
            path,
            vec![
                (
                    "user_id",
                    Arc::new(Int64Array::from(self.users.clone())) as ArrayRef,
                ),
                (
                    "merchant",
                    Arc::new(StringArray::from(self.merchants.clone())),
                ),
                (
                    "event_timestamp",
                    Arc::new(TimestampMicrosecondArray::from(vec![T; rows])),
                ),
                ("amount", Arc::new(Float64Array::from(self.amount.clone()))),
                ("lat", Arc::new(Float64Array::from(self.lat.clone()))),
                ("lon", Arc::new(Float64Array::from(self.lon.clone()))),
                (
                    "merchant_name",
                    Arc::new(StringArray::from(self.merchant_name.clone())),
                ),
            ],
        );
    }
}

/// A served JSON value as the bits a training set holds, or `None` for null.
pub(crate) fn served(value: &Value, dtype: &DataType) -> Option<String> {
    if value.is_null() {
        return None;
    }
    Some(match dtype {
        DataType::Float64 => {
            let x = match value.as_str() {
                Some("NaN") => f64::from_bits(skewless_core::CANONICAL_NAN_F64),
                Some("Infinity") => f64::INFINITY,
                Some("-Infinity") => f64::NEG_INFINITY,
                _ => value.as_f64().expect("a float64 value"),
            };
            float_bits(x)
        }
        DataType::Int64 => value.as_i64().expect("an int64 value").to_string(),
        DataType::Boolean => value.as_bool().expect("a bool value").to_string(),
        _ => value.as_str().expect("a string value").to_owned(),
    })
}

/// A float's bits, exactly: NaN included, since there is one NaN on both paths (a served
/// `"NaN"` reads as the canonical NaN, and the training set must hold it too).
fn float_bits(x: f64) -> String {
    format!("{:#018x}", x.to_bits())
}

/// A training-set value as the same text.
pub(crate) fn trained(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Float64 => float_bits(array.as_primitive::<Float64Type>().value(row)),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        _ => array.as_string::<i32>().value(row).to_owned(),
    })
}

/// Runs case `case` of `seed` against a fresh server, its online store in `redis` when
/// given; returns every difference between the served and the backfilled values, or
/// panics if the case cannot run at all.
fn differences(
    seed: u64,
    case: u64,
    planted_skew: bool,
    redis: Option<&crate::support::RedisServer>,
) -> Vec<String> {
    let mut rng = Lcg(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let dir = tempfile::tempdir().unwrap();
    let drawn = Case::draw(&mut rng, dir.path());
    let request = Request::draw(&mut rng);
    let layer: skewless_server::StoreLayer = if planted_skew {
        crate::support::FaultyStore::skewed()
    } else {
        Box::new(|store| store)
    };
    let configure = |config: &mut skewless_server::ServerConfig| {
        config.redis = redis.map(|r| crate::support::redis_options(r, &format!("case{case}")));
        // A Python component is about 18 MB.
        config.max_module_bytes = 64 << 20;
    };
    let server = TestServer::start_layered(dir.path(), configure, layer);
    let (language, fraud_risk) = FRAUD_RISKS[(case % 4) as usize];
    for (name, path) in [
        ("fraud_risk", fraud_risk),
        ("geo_distance", GEO_DISTANCE),
        ("merchant_category", MERCHANT_CATEGORY),
    ] {
        let (status, body) = server.call(
            "PUT",
            &format!("/v1/transforms/{name}/1.0.0"),
            &std::fs::read(path).unwrap(),
            None,
        );
        assert!(status == 201 || status == 200, "{name}: {body}");
    }
    let (status, body) = server.call("PUT", "/v1/definitions", drawn.defs.as_bytes(), None);
    assert_eq!(status, 200, "{body}\n{}", drawn.defs);

    // Online: the whole history up to T into the store, then a request at T.
    let (status, accepted) = server.json(
        "POST",
        "/v1/materialize",
        &json!({"start": i64::MIN / 2, "end": T}),
    );
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_job(&accepted);
    assert_eq!(job["state"], "succeeded", "{job}");
    let (status, online) = server.json("POST", "/v1/features", &request.body(drawn.has_merchant()));
    assert_eq!(status, 200, "{online}\n{}", drawn.defs);

    // Offline: the same entities at T through a backfill.
    request.write_entities(&dir.path().join("entities.parquet"));
    let (status, accepted) = server.json(
        "POST",
        "/v1/backfill",
        &json!({"service": "svc", "entities": "entities.parquet", "out": "training.parquet"}),
    );
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_job(&accepted);
    assert_eq!(job["state"], "succeeded", "{job}");
    let offline = read_parquet(&dir.path().join("training.parquet"));

    let names: Vec<&str> = online["metadata"]["feature_names"]
        .as_array()
        .expect("feature names")
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let frame_columns = 7;
    let schema = offline.schema();
    let trained_names: Vec<&str> = schema.fields()[frame_columns..]
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut diffs = Vec::new();
    if names != trained_names {
        diffs.push(format!(
            "columns: served {names:?}, trained {trained_names:?}"
        ));
        return diffs;
    }
    for (i, name) in names.iter().enumerate() {
        let array = offline.column(frame_columns + i);
        let values = online["results"][i]["values"].as_array().expect("values");
        assert_eq!(values.len(), offline.num_rows());
        for (row, value) in values.iter().enumerate() {
            let (s, t) = (served(value, array.data_type()), trained(array, row));
            if s != t {
                diffs.push(format!(
                    "seed {seed} case {case} (fraud_risk in {language}): `{name}` row {row} (user {}): served {s:?}, trained {t:?}",
                    request.users[row]
                ));
            }
        }
    }
    diffs
}

pub(crate) fn seed() -> u64 {
    std::env::var("SKEWLESS_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026)
}

#[test]
fn served_equals_backfilled_bit_for_bit_on_random_cases() {
    let cases: u64 = std::env::var("SKEWLESS_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let seed = seed();
    let mut all = Vec::new();
    for case in 0..cases {
        all.extend(differences(seed, case, false, None));
    }
    assert!(
        all.is_empty(),
        "{} differences; the first:\n{}",
        all.len(),
        all.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn a_planted_ttl_skew_is_found() {
    let seed = seed();
    let found: usize = (0..4)
        .map(|case| differences(seed, case, true, None).len())
        .sum();
    assert!(
        found > 0,
        "serving with `<` instead of `<=` at the TTL edge went unnoticed"
    );
}

#[test]
fn served_from_redis_equals_backfilled_bit_for_bit() {
    let redis = crate::support::RedisServer::start();
    let seed = seed();
    let mut all = Vec::new();
    for case in 0..8 {
        all.extend(differences(seed, case, false, Some(&redis)));
    }
    let keys = redis.command("DBSIZE");
    assert!(
        keys.strip_prefix(':').and_then(|n| n.parse::<u64>().ok()) > Some(8),
        "the rows were served from Redis: DBSIZE {keys}"
    );
    assert!(
        all.is_empty(),
        "{} differences with the store in Redis; the first:\n{}",
        all.len(),
        all.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}
