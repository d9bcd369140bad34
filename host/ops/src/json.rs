//! JSON ⇄ Arrow for requests, pushes and responses, by dtype.
//!
//! Timestamps are RFC 3339 strings (`2024-05-01T12:00:00Z`; without an offset they are
//! taken as UTC) or integers of microseconds since the Unix epoch. Non-finite floats are
//! the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, both ways, so every float64 bit
//! pattern survives the trip: the only NaN Skewless holds is the canonical one, which is
//! what `"NaN"` reads as (ADR 0008).

use arrow_array::ArrayRef;
use serde_json::Value as Json;
use skewless_core::DType;
use skewless_core::assemble::{ColumnBuilder, Value};
use skewless_core::key::{KeyBuf, KeyType};

/// Parses a timestamp given as an RFC 3339 string or integer microseconds.
pub fn parse_timestamp(value: &Json) -> Result<i64, String> {
    match value {
        Json::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("timestamp {n} is not an integer number of microseconds")),
        Json::String(text) => parse_timestamp_text(text),
        other => Err(format!(
            "expected a timestamp (RFC 3339 string or integer microseconds), got {}",
            kind(other)
        )),
    }
}

fn parse_timestamp_text(text: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp_micros()));
    }
    Err(format!("`{text}` is not an RFC 3339 timestamp"))
}

pub use skewless_core::format_timestamp;

/// A window bound as JSON: RFC 3339 when it is an instant chrono can write, else null (an
/// unbounded start, "from the earliest row"), never the bare integer as text.
pub fn bound(micros: i64) -> Json {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(_) => Json::String(format_timestamp(micros)),
        None => Json::Null,
    }
}

/// The JSON type of a value, for messages.
pub fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a float",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn float(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Builds an array of `dtype` from JSON values; the error names the row and what was
/// found.
pub fn column(values: &[Json], dtype: DType) -> Result<ArrayRef, String> {
    let mut builder = ColumnBuilder::new(dtype, values.len());
    let mut list = Vec::new();
    for (row, value) in values.iter().enumerate() {
        if value.is_null() {
            builder.push_null();
            continue;
        }
        let bad = || format!("[{row}]: expected {dtype}, got {}", kind(value));
        let parsed = match dtype {
            DType::Bool => Value::Bool(value.as_bool().ok_or_else(bad)?),
            DType::Int64 => Value::Int64(value.as_i64().ok_or_else(bad)?),
            DType::Float64 => Value::Float64(float(value).ok_or_else(bad)?),
            DType::String => Value::String(value.as_str().ok_or_else(bad)?),
            DType::Timestamp => {
                Value::Timestamp(parse_timestamp(value).map_err(|e| format!("[{row}]: {e}"))?)
            }
            DType::Float32List => {
                let items = value.as_array().ok_or_else(bad)?;
                list.clear();
                for item in items {
                    // Narrowing to binary32 rounds to nearest, as every language does.
                    let item = float(item).ok_or_else(bad)? as f32;
                    list.extend_from_slice(&item.to_le_bytes());
                }
                Value::Float32List(&list)
            }
        };
        builder.push(parsed);
    }
    Ok(builder.finish())
}

/// Builds a join-key column of `key_type` from JSON values: every value there and of the
/// key's type (a null key names no entity); the error names the row and what was found.
pub fn key_column(values: &[Json], key_type: KeyType) -> Result<ArrayRef, String> {
    if let Some(row) = values.iter().position(Json::is_null) {
        return Err(format!("[{row}]: expected {}, got null", key_type.name()));
    }
    column(values, key_type.dtype())
}

/// A request's rows as the one path takes them: one array per join key of `plan` (no
/// nulls) from `entities`, and one per request field from `request`, each aligned with
/// the plan's order. The error names the value: `entities.user_id[3]: expected int64, ...`.
pub fn plan_rows(
    plan: &skewless_plan::ServicePlan,
    entities: &[&Vec<Json>],
    request: &[&Vec<Json>],
) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>), String> {
    let entities = plan
        .join_keys
        .iter()
        .zip(entities)
        .map(|(key, values)| {
            key_column(values, key.dtype).map_err(|e| format!("entities.{}{e}", key.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = plan
        .request_fields
        .iter()
        .zip(request)
        .map(|(field, values)| {
            column(values, field.dtype).map_err(|e| format!("request_data.{}{e}", field.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((entities, request))
}

/// Appends the encoding of `value` as a key part of `key_type` to `key`.
pub fn push_key(key: &mut KeyBuf, value: &Json, key_type: KeyType) -> Result<(), String> {
    let pushed = match (key_type, value) {
        (KeyType::Int64, Json::Number(n)) => n.as_i64().map(|v| key.push_int(v)),
        (KeyType::String, Json::String(s)) => {
            key.push_str(s);
            Some(())
        }
        _ => None,
    };
    pushed.ok_or_else(|| format!("expected {}, got {}", key_type.name(), kind(value)))
}

/// Writes one value as JSON.
pub fn write_value(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Int64(v) => out.extend_from_slice(v.to_string().as_bytes()),
        Value::Float64(v) => write_float(out, v),
        Value::String(s) => write_str(out, s),
        Value::Timestamp(v) => write_str(out, &format_timestamp(v)),
        Value::Float32Slice(items) => write_float32s(out, items.iter().copied()),
        Value::Float32List(bytes) => write_float32s(
            out,
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
    }
}

fn write_float32s(out: &mut Vec<u8>, items: impl Iterator<Item = f32>) {
    out.push(b'[');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_float32(out, v);
    }
    out.push(b']');
}

/// Writes a float64 in the shortest form that reads back to the same bits.
pub fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else {
        write_non_finite(out, v.is_nan(), v > 0.0);
    }
}

fn write_float32(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else {
        write_non_finite(out, v.is_nan(), v > 0.0);
    }
}

fn write_non_finite(out: &mut Vec<u8>, nan: bool, positive: bool) {
    out.extend_from_slice(match (nan, positive) {
        (true, _) => b"\"NaN\"".as_slice(),
        (false, true) => b"\"Infinity\"",
        (false, false) => b"\"-Infinity\"",
    });
}

/// Writes a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use serde_json::json;

    use super::*;

    #[test]
    fn floats_round_trip_bit_for_bit() {
        let values = [
            0.1,
            -0.0,
            5e-324,
            1.7976931348623157e308,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let array = column(
            &values
                .iter()
                .map(|v| {
                    let mut out = Vec::new();
                    write_float(&mut out, *v);
                    serde_json::from_slice(&out).unwrap()
                })
                .collect::<Vec<Json>>(),
            DType::Float64,
        )
        .unwrap();
        let back = array.as_primitive::<Float64Type>();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(back.value(i).to_bits(), v.to_bits(), "{v}");
        }
    }

    #[test]
    fn an_unbounded_window_start_is_null_not_an_integer_in_text() {
        assert_eq!(bound(1_000_000), json!("1970-01-01T00:00:01.000000Z"));
        assert_eq!(bound(i64::MIN), Json::Null);
    }

    #[test]
    fn timestamps_and_type_errors() {
        assert_eq!(
            parse_timestamp(&json!("1970-01-01T00:00:01Z")).unwrap(),
            1_000_000
        );
        assert_eq!(
            parse_timestamp(&json!("1970-01-01T00:00:01")).unwrap(),
            1_000_000
        );
        assert_eq!(
            parse_timestamp(&json!("1970-01-01T01:00:01+01:00")).unwrap(),
            1_000_000
        );
        assert_eq!(parse_timestamp(&json!(7)).unwrap(), 7);
        assert!(parse_timestamp(&json!("yesterday")).is_err());
        assert_eq!(format_timestamp(1_000_000), "1970-01-01T00:00:01.000000Z");
        let error = column(&[json!(1), json!("x")], DType::Int64).unwrap_err();
        assert_eq!(error, "[1]: expected int64, got a string");
    }
}
