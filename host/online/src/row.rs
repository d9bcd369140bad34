//! The compact row: one allocation per stored row, whatever the number of features.
//!
//! ```text
//! [event_ts i64][created_ts i64][lsn u64][null bitmap, 1 bit per feature]
//! [one 8-byte slot per feature][variable-length bytes]
//! ```
//! Fixed-width values sit in their slot; a string or float32 list stores `(offset, len)`
//! into the variable area. All integers are little-endian.

use arrow_array::ArrayRef;
use skewless_core::assemble::{Value, ValueReader, ViewColumnsBuilder};
use skewless_core::{DType, canonical_f32, canonical_f64};

/// Bytes before the null bitmap.
pub(crate) const HEADER: usize = 24;
/// The created timestamp stored when a source has none: loses every tie.
pub(crate) const NO_CREATED: i64 = i64::MIN;

/// Where a feature's value sits in the row.
fn layout(features: usize) -> (usize, usize) {
    let bitmap = features.div_ceil(8);
    (HEADER + bitmap, HEADER + bitmap + features * 8)
}

/// The ordering key of a row: a write replaces a stored row only if its key is larger.
#[inline]
pub(crate) fn order_key(row: &[u8]) -> (i64, i64, u64) {
    (event_ts(row), read_i64(row, 8), read_u64(row, 16))
}

#[inline]
pub(crate) fn event_ts(row: &[u8]) -> i64 {
    read_i64(row, 0)
}

#[inline]
pub(crate) fn created_ts(row: &[u8]) -> i64 {
    read_i64(row, 8)
}

#[inline]
fn read_i64(row: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(word(row, at))
}

#[inline]
fn read_u64(row: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(word(row, at))
}

#[inline]
fn read_u32(row: &[u8], at: usize) -> usize {
    let bytes: [u8; 4] = row[at..at + 4].try_into().expect("a 4-byte slice");
    u32::from_le_bytes(bytes) as usize
}

#[inline]
fn word(row: &[u8], at: usize) -> [u8; 8] {
    row[at..at + 8].try_into().expect("an 8-byte slice")
}

/// Sets the created time of an encoded row.
pub(crate) fn set_created_ts(row: &mut [u8], created_ts: i64) {
    row[8..16].copy_from_slice(&created_ts.to_le_bytes());
}

/// Sets the log sequence number of an encoded row.
pub(crate) fn set_lsn(row: &mut [u8], lsn: u64) {
    row[16..24].copy_from_slice(&lsn.to_le_bytes());
}

/// Adds `stored` (a row of features `dtypes`, or none for a missing key) to `out`, as
/// of `at`. A stored row that does not decode (shorter than its layout, a string slot out
/// of bounds or not UTF-8) is an error naming what is wrong, never a default value; `out`
/// is then partly filled and must be discarded.
pub(crate) fn push(
    out: &mut ViewColumnsBuilder,
    stored: Option<&[u8]>,
    dtypes: &[DType],
    at: i64,
) -> Result<(), String> {
    let Some(bytes) = stored else {
        out.push_missing();
        return Ok(());
    };
    if !fits(bytes, dtypes.len()) {
        return Err(format!(
            "a stored row of {} bytes is shorter than the layout of {} features",
            bytes.len(),
            dtypes.len()
        ));
    }
    let mut broken = None;
    out.push_row(event_ts(bytes), at, |i| {
        value(bytes, dtypes, i).unwrap_or_else(|why| {
            broken.get_or_insert(why);
            Value::Null
        })
    });
    broken.map_or(Ok(()), Err)
}

/// Reads feature `i` of an encoded row whose features have `dtypes` (the row [`fits`]).
pub(crate) fn value<'a>(row: &'a [u8], dtypes: &[DType], i: usize) -> Result<Value<'a>, String> {
    let (slots, var) = layout(dtypes.len());
    if row[HEADER + i / 8] & (1 << (i % 8)) == 0 {
        return Ok(Value::Null);
    }
    let slot = slots + i * 8;
    Ok(match dtypes[i] {
        DType::Bool => Value::Bool(row[slot] != 0),
        DType::Int64 => Value::Int64(read_i64(row, slot)),
        DType::Float64 => Value::Float64(f64::from_bits(read_u64(row, slot))),
        DType::Timestamp => Value::Timestamp(read_i64(row, slot)),
        DType::String | DType::Float32List => {
            let start = var + read_u32(row, slot);
            let end = start + read_u32(row, slot + 4);
            let bytes = row.get(start..end).ok_or_else(|| {
                format!(
                    "feature {i} points at bytes {start}..{end} of a {}-byte row",
                    row.len()
                )
            })?;
            if dtypes[i] == DType::String {
                Value::String(
                    std::str::from_utf8(bytes)
                        .map_err(|e| format!("feature {i} is not UTF-8: {e}"))?,
                )
            } else {
                Value::Float32List(bytes)
            }
        }
    })
}

/// Checks `batch` against a view's feature dtypes and encodes its rows, keyed, in batch
/// order (the LSN left 0).
pub(crate) fn encode_batch(
    view: &str,
    dtypes: &[DType],
    batch: crate::WriteBatch,
) -> crate::Result<Vec<crate::wal::KeyedRow>> {
    let rows = batch.keys.len();
    let invalid = |reason: String| crate::Error::InvalidBatch {
        view: view.to_owned(),
        reason,
    };
    if batch.event_ts.len() != rows
        || batch.created_ts.as_ref().is_some_and(|c| c.len() != rows)
        || batch.features.iter().any(|f| f.len() != rows)
    {
        return Err(invalid(
            "keys, timestamps and feature columns differ in length".into(),
        ));
    }
    if batch.keys.iter().any(|k| k.is_empty()) {
        return Err(invalid("an empty entity key".into()));
    }
    if batch.features.len() != dtypes.len() {
        return Err(invalid(format!(
            "{} feature columns given, the view has {}",
            batch.features.len(),
            dtypes.len()
        )));
    }
    let encoder = RowEncoder::new(&batch.features, dtypes).ok_or_else(|| {
        invalid("a feature column is not of its dtype's canonical Arrow type".into())
    })?;
    Ok(batch
        .keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let created = batch.created_ts.as_ref().map_or(NO_CREATED, |c| c[i]);
            (key, encoder.encode(i, batch.event_ts[i], created))
        })
        .collect())
}

/// Whether `row` is long enough to be a row of `features` features: what [`value`] can
/// read without going out of bounds.
pub(crate) fn fits(row: &[u8], features: usize) -> bool {
    row.len() >= layout(features).1
}

/// Encodes rows of a batch of feature columns (canonical Arrow types, in the view's
/// order).
pub(crate) struct RowEncoder<'a> {
    columns: Vec<ValueReader<'a>>,
}

impl<'a> RowEncoder<'a> {
    /// Readers for the columns; `None` if one is not of its dtype's canonical type.
    pub(crate) fn new(columns: &'a [ArrayRef], dtypes: &[DType]) -> Option<Self> {
        if columns.len() != dtypes.len() {
            return None;
        }
        let columns = columns
            .iter()
            .zip(dtypes)
            .map(|(array, dtype)| ValueReader::new(array, *dtype))
            .collect::<Option<Vec<_>>>()?;
        Some(RowEncoder { columns })
    }

    /// Encodes row `row` with its event and created times (the LSN is set later).
    pub(crate) fn encode(&self, row: usize, event_ts: i64, created_ts: i64) -> Box<[u8]> {
        let n = self.columns.len();
        let (slots, var) = layout(n);
        let var_len: usize = self
            .columns
            .iter()
            .map(|c| match c.value(row) {
                Value::String(s) => s.len(),
                Value::Float32Slice(items) => items.len() * 4,
                _ => 0,
            })
            .sum();
        let mut out = vec![0u8; var + var_len];
        out[0..8].copy_from_slice(&event_ts.to_le_bytes());
        out[8..16].copy_from_slice(&created_ts.to_le_bytes());
        let mut cursor = 0usize;
        for (i, column) in self.columns.iter().enumerate() {
            let value = column.value(row);
            if value == Value::Null {
                continue;
            }
            out[HEADER + i / 8] |= 1 << (i % 8);
            let slot = slots + i * 8;
            let fixed =
                |out: &mut [u8], bytes: [u8; 8]| out[slot..slot + 8].copy_from_slice(&bytes);
            let mut var_bytes = |out: &mut [u8], len: usize, fill: &mut dyn FnMut(&mut [u8])| {
                let start = var + cursor;
                fill(&mut out[start..start + len]);
                out[slot..slot + 4].copy_from_slice(&(cursor as u32).to_le_bytes());
                out[slot + 4..slot + 8].copy_from_slice(&(len as u32).to_le_bytes());
                cursor += len;
            };
            match value {
                Value::Bool(b) => out[slot] = u8::from(b),
                Value::Int64(v) | Value::Timestamp(v) => fixed(&mut out, v.to_le_bytes()),
                // One NaN everywhere (ADR 0008): a pushed or materialized NaN of any
                // payload is stored as the canonical one.
                Value::Float64(v) => fixed(&mut out, canonical_f64(v).to_bits().to_le_bytes()),
                Value::String(s) => var_bytes(&mut out, s.len(), &mut |dst| {
                    dst.copy_from_slice(s.as_bytes())
                }),
                Value::Float32Slice(items) => var_bytes(&mut out, items.len() * 4, &mut |dst| {
                    for (chunk, v) in dst.chunks_exact_mut(4).zip(items) {
                        chunk.copy_from_slice(&canonical_f32(*v).to_le_bytes());
                    }
                }),
                // Readers of canonical arrays never yield the byte form.
                Value::Float32List(_) | Value::Null => {}
            }
        }
        out.into_boxed_slice()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{Float32Builder, ListBuilder};
    use arrow_array::{
        BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };

    use super::*;

    #[test]
    fn every_dtype_round_trips_with_nulls() {
        let mut lists = ListBuilder::new(Float32Builder::new());
        lists.values().append_slice(&[1.5, -0.0]);
        lists.append(true);
        lists.append_null();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![Some(true), None])),
            Arc::new(Int64Array::from(vec![Some(-3), None])),
            Arc::new(Float64Array::from(vec![
                Some(f64::from_bits(0x7ff8_0000_0000_0001)),
                Some(-0.0),
            ])),
            Arc::new(StringArray::from(vec![Some("héllo"), Some("")])),
            Arc::new(TimestampMicrosecondArray::from(vec![None, Some(7)]).with_timezone("UTC")),
            Arc::new(lists.finish()),
        ];
        let dtypes = DType::ALL;
        let encoder = RowEncoder::new(&columns, &dtypes).unwrap();
        let row = encoder.encode(0, 100, NO_CREATED);
        assert_eq!(event_ts(&row), 100);
        assert_eq!(value(&row, &dtypes, 0).unwrap(), Value::Bool(true));
        assert_eq!(value(&row, &dtypes, 1).unwrap(), Value::Int64(-3));
        match value(&row, &dtypes, 2).unwrap() {
            // One NaN everywhere (ADR 0008): a payload NaN is stored as the canonical one.
            Value::Float64(v) => assert_eq!(
                v.to_bits(),
                skewless_core::CANONICAL_NAN_F64,
                "NaN canonicalized"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(value(&row, &dtypes, 3).unwrap(), Value::String("héllo"));
        assert_eq!(value(&row, &dtypes, 4).unwrap(), Value::Null);
        let expected: Vec<u8> = [1.5f32, -0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            value(&row, &dtypes, 5).unwrap(),
            Value::Float32List(&expected)
        );

        let row = encoder.encode(1, 5, 9);
        assert_eq!(order_key(&row), (5, 9, 0));
        assert_eq!(value(&row, &dtypes, 0).unwrap(), Value::Null);
        assert_eq!(value(&row, &dtypes, 2).unwrap(), Value::Float64(-0.0));
        assert_eq!(value(&row, &dtypes, 3).unwrap(), Value::String(""));
        assert_eq!(value(&row, &dtypes, 4).unwrap(), Value::Timestamp(7));
        assert_eq!(value(&row, &dtypes, 5).unwrap(), Value::Null);
    }

    #[test]
    fn a_corrupt_stored_row_is_an_error_never_a_default_value() {
        let dtypes = [DType::Int64, DType::String];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(1)])),
            Arc::new(StringArray::from(vec![Some("ok")])),
        ];
        let good = RowEncoder::new(&columns, &dtypes).unwrap().encode(0, 10, 0);
        let read = |row: &[u8]| {
            let mut out = ViewColumnsBuilder::new(dtypes, skewless_core::Ttl::UNLIMITED, 1);
            push(&mut out, Some(row), &dtypes, 20).map(|()| out.finish())
        };
        let view = read(&good).unwrap();
        assert_eq!(view.columns[1].len(), 1);

        // The string's bytes replaced by invalid UTF-8: once served as "".
        let mut not_utf8 = good.to_vec();
        let end = not_utf8.len();
        not_utf8[end - 2..].copy_from_slice(&[0xff, 0xfe]);
        let err = read(&not_utf8).unwrap_err();
        assert!(err.contains("feature 1 is not UTF-8"), "{err}");

        // The string slot pointing past the row.
        let mut out_of_bounds = good.to_vec();
        let (slots, _) = layout(2);
        out_of_bounds[slots + 8 + 4..slots + 16].copy_from_slice(&100u32.to_le_bytes());
        let err = read(&out_of_bounds).unwrap_err();
        assert!(err.contains("points at bytes"), "{err}");

        // Shorter than the layout.
        let err = read(&good[..HEADER + 2]).unwrap_err();
        assert!(err.contains("shorter than the layout"), "{err}");
    }
}
