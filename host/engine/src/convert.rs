//! Arrow ⇄ contract conversion, in one place.
//!
//! The contract's columns are Arrow-shaped (flat values + validity bitmap; offsets +
//! bytes), so a conversion is a buffer copy, never a per-row loop over values. On the way
//! in, [`conform_input`] picks the declared inputs out of a batch by name, checks their
//! types and nullability, and widens lossless variants (say `Int32` or a millisecond
//! timestamp) to the canonical Arrow type. On the way out, [`batch_from_wit`] checks every
//! buffer the guest returned before Arrow sees it: a hostile guest cannot make the host
//! panic or build an invalid array.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, ListArray, RecordBatch,
    RecordBatchOptions, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, SchemaRef};
use skewless_core::{ColumnSpec, DType};
use wasmtime::component::{ComponentType, Lower};

use crate::bindings::wit;

/// Why a column failed a check: the column (when one is to blame) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnError {
    /// The column to blame, if any.
    pub column: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl ColumnError {
    fn new(column: &str, reason: impl Into<String>) -> Self {
        Self {
            column: Some(column.to_owned()),
            reason: reason.into(),
        }
    }

    fn batch(reason: impl Into<String>) -> Self {
        Self {
            column: None,
            reason: reason.into(),
        }
    }
}

type Checked<T> = Result<T, ColumnError>;

/// Picks `specs` out of `batch` by name, in `specs` order, and converts each to its
/// dtype's canonical Arrow type. Fails on a missing column, a type that does not convert
/// losslessly, a null in a non-nullable column, or a null inside a float32 list.
pub fn conform_input(batch: &RecordBatch, specs: &[ColumnSpec]) -> Checked<Vec<ArrayRef>> {
    specs
        .iter()
        .map(|spec| {
            let array = batch.column_by_name(&spec.name).ok_or_else(|| {
                let present: Vec<&str> = batch
                    .schema_ref()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                ColumnError::new(
                    &spec.name,
                    format!(
                        "missing (expected {}; the batch has {present:?})",
                        spec.dtype
                    ),
                )
            })?;
            conform_array(array, spec)
        })
        .collect()
}

/// Converts one array to `spec`'s canonical Arrow type, checking nullability.
pub fn conform_array(array: &ArrayRef, spec: &ColumnSpec) -> Checked<ArrayRef> {
    let canonical = spec.dtype.arrow_type();
    let array = if *array.data_type() == canonical {
        Arc::clone(array)
    } else if spec.dtype.accepts(array.data_type()) {
        widen(array, spec.dtype).map_err(|e| {
            ColumnError::new(
                &spec.name,
                format!(
                    "cannot convert {} to {}: {e}",
                    array.data_type(),
                    spec.dtype
                ),
            )
        })?
    } else {
        return Err(ColumnError::new(
            &spec.name,
            format!(
                "has type {}, which does not convert losslessly to {}",
                array.data_type(),
                spec.dtype
            ),
        ));
    };
    if !spec.nullable
        && let Some(row) = first_null(array.as_ref())
    {
        return Err(ColumnError::new(
            &spec.name,
            format!("is declared not null but row {row} is null"),
        ));
    }
    if spec.dtype == DType::Float32List {
        let list = array.as_list::<i32>();
        let (start, end) = offset_range(list.value_offsets());
        if list.values().slice(start, end - start).null_count() > 0 {
            return Err(ColumnError::new(
                &spec.name,
                "holds a null element inside a list; float32_list elements must be non-null",
            ));
        }
    }
    Ok(array)
}

/// Converts an accepted variant to `dtype`'s canonical type (shared with the offline
/// reader, so both convert alike).
fn widen(array: &ArrayRef, dtype: DType) -> Result<ArrayRef, arrow_schema::ArrowError> {
    dtype.to_canonical(array)
}

fn first_null(array: &dyn Array) -> Option<usize> {
    array
        .logical_nulls()
        .and_then(|nulls| nulls.iter().position(|valid| !valid))
}

fn offset_range(offsets: &[i32]) -> (usize, usize) {
    // Arrow guarantees offsets are non-negative and non-decreasing, and an offsets buffer
    // holds at least one entry (an empty array's is `[0]`); none at all means no values.
    let first = offsets.first().copied().unwrap_or(0) as usize;
    let last = offsets.last().copied().unwrap_or(0) as usize;
    (first, last)
}

/// The input batch as the guest receives it, borrowing Arrow's buffers: lowering copies
/// each buffer once, straight into guest memory. Mirrors `batch` in `wit/`; wasmtime
/// checks the mirror against the component's types on every call.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct BatchIn<'a> {
    rows: u32,
    columns: Vec<ColumnIn<'a>>,
}

/// Mirrors `column`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct ColumnIn<'a> {
    name: &'a str,
    validity: Option<&'a [u8]>,
    data: DataIn<'a>,
}

/// Mirrors `column-data`.
#[derive(ComponentType, Lower)]
#[component(variant)]
pub(crate) enum DataIn<'a> {
    #[component(name = "boolean")]
    Boolean(&'a [u8]),
    #[component(name = "int64")]
    Int64(&'a [i64]),
    #[component(name = "float64")]
    Float64(&'a [f64]),
    #[component(name = "utf8")]
    Utf8(Utf8In<'a>),
    #[component(name = "timestamp")]
    Timestamp(&'a [i64]),
    #[component(name = "float32-list")]
    Float32List(Float32ListIn<'a>),
}

/// Mirrors `utf8-data`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct Utf8In<'a> {
    offsets: &'a [u32],
    bytes: &'a [u8],
}

/// Mirrors `float32-list-data`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct Float32ListIn<'a> {
    offsets: &'a [u32],
    values: &'a [f32],
}

/// One conformed input column and the little that cannot be borrowed from it as is:
/// bitmaps realigned to start at bit 0 (a copy only for arrays sliced mid-byte) and
/// offsets rebased to 0 as `u32` (one copy of the offsets, never of the values).
pub(crate) struct Staged {
    array: ArrayRef,
    validity: Option<Buffer>,
    bits: Option<Buffer>,
    offsets: Vec<u32>,
    range: (usize, usize),
}

/// Prepares conformed arrays (see [`conform_input`]) for [`batch_in`].
pub(crate) fn stage(arrays: Vec<ArrayRef>) -> Vec<Staged> {
    arrays
        .into_iter()
        .map(canonical_nans)
        .map(|array| {
            let validity = array
                .nulls()
                .filter(|nulls| nulls.null_count() > 0)
                .map(|nulls| nulls.inner().sliced());
            let bits = (*array.data_type() == DataType::Boolean)
                .then(|| array.as_boolean().values().sliced());
            let raw_offsets = match array.data_type() {
                DataType::Utf8 => Some(array.as_string::<i32>().value_offsets()),
                DataType::List(_) => Some(array.as_list::<i32>().value_offsets()),
                _ => None,
            };
            let (offsets, range) = match raw_offsets {
                Some(raw) => {
                    let range = offset_range(raw);
                    let base = range.0 as i32;
                    (raw.iter().map(|&o| (o - base) as u32).collect(), range)
                }
                None => (Vec::new(), (0, 0)),
            };
            Staged {
                array,
                validity,
                bits,
                offsets,
                range,
            }
        })
        .collect()
}

/// `array` with every NaN made the canonical one (ADR 0008), so that a transform sees the
/// same bits online and offline: a request field offline comes from a Parquet frame,
/// which may hold NaNs of any payload. Arrays without such a NaN (nearly all) are kept as
/// they are; the others are copied once.
fn canonical_nans(array: ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Float64 => {
            let floats = array.as_primitive::<Float64Type>();
            if !skewless_core::has_other_nan_f64(floats.values()) {
                return array;
            }
            Arc::new(floats.unary::<_, Float64Type>(skewless_core::canonical_f64))
        }
        DataType::List(_) => {
            let lists = array.as_list::<i32>();
            let items = lists.values().as_primitive::<Float32Type>();
            if !skewless_core::has_other_nan_f32(items.values()) {
                return array;
            }
            let items: Float32Array = items.unary(skewless_core::canonical_f32);
            let list = ListArray::try_new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                lists.offsets().clone(),
                Arc::new(items),
                lists.nulls().cloned(),
            )
            .expect("the same offsets and nulls over as many items as before");
            Arc::new(list)
        }
        _ => array,
    }
}

/// The contract batch over staged columns, named by `specs`.
pub(crate) fn batch_in<'a>(
    rows: usize,
    specs: &'a [ColumnSpec],
    staged: &'a [Staged],
) -> BatchIn<'a> {
    let bitmap = |buffer: &'a Buffer| &buffer.as_slice()[..rows.div_ceil(8)];
    BatchIn {
        rows: rows as u32,
        columns: specs
            .iter()
            .zip(staged)
            .map(|(spec, column)| {
                let array = column.array.as_ref();
                let (start, end) = column.range;
                let data = match array.data_type() {
                    DataType::Boolean => {
                        DataIn::Boolean(bitmap(column.bits.as_ref().expect("staged bits")))
                    }
                    DataType::Int64 => DataIn::Int64(array.as_primitive::<Int64Type>().values()),
                    DataType::Float64 => {
                        DataIn::Float64(array.as_primitive::<Float64Type>().values())
                    }
                    DataType::Timestamp(..) => {
                        DataIn::Timestamp(array.as_primitive::<TimestampMicrosecondType>().values())
                    }
                    DataType::Utf8 => DataIn::Utf8(Utf8In {
                        offsets: &column.offsets,
                        bytes: &array.as_string::<i32>().values()[start..end],
                    }),
                    DataType::List(_) => DataIn::Float32List(Float32ListIn {
                        offsets: &column.offsets,
                        values: &array
                            .as_list::<i32>()
                            .values()
                            .as_primitive::<Float32Type>()
                            .values()[start..end],
                    }),
                    other => unreachable!("conform_array never yields {other}"),
                };
                ColumnIn {
                    name: &spec.name,
                    validity: column.validity.as_ref().map(bitmap),
                    data,
                }
            })
            .collect(),
    }
}

/// The bytes of column data in a contract batch: what the output-size cap measures.
pub(crate) fn wit_batch_bytes(batch: &wit::Batch) -> usize {
    batch
        .columns
        .iter()
        .map(|c| {
            let validity = c.validity.as_ref().map_or(0, Vec::len);
            let data = match &c.data {
                wit::ColumnData::Boolean(v) => v.len(),
                wit::ColumnData::Int64(v) | wit::ColumnData::Timestamp(v) => v.len() * 8,
                wit::ColumnData::Float64(v) => v.len() * 8,
                wit::ColumnData::Utf8(s) => s.offsets.len() * 4 + s.bytes.len(),
                wit::ColumnData::Float32List(l) => l.offsets.len() * 4 + l.values.len() * 4,
            };
            c.name.len() + validity + data
        })
        .sum()
}

/// Checks a contract batch against `specs` and `rows` and converts it to Arrow with
/// `schema` (built from `specs`). Takes ownership so value buffers move, not copy.
pub(crate) fn batch_from_wit(
    batch: wit::Batch,
    rows: usize,
    specs: &[ColumnSpec],
    schema: &SchemaRef,
) -> Checked<RecordBatch> {
    if batch.rows as usize != rows {
        return Err(ColumnError::batch(format!(
            "has {} rows, but the input had {rows}; a transform returns exactly one row per input row",
            batch.rows
        )));
    }
    if batch.columns.len() != specs.len() {
        let got: Vec<&str> = batch.columns.iter().map(|c| c.name.as_str()).collect();
        let want: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(ColumnError::batch(format!(
            "has columns {got:?}, but the signature declares {want:?}"
        )));
    }
    let mut arrays = Vec::with_capacity(specs.len());
    for (column, spec) in batch.columns.into_iter().zip(specs) {
        if column.name != spec.name {
            return Err(ColumnError::new(
                &spec.name,
                format!(
                    "expected here (signature order), found `{}` instead",
                    column.name
                ),
            ));
        }
        arrays.push(column_from_wit(column, rows, spec)?);
    }
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| ColumnError::batch(e.to_string()))
}

fn column_from_wit(column: wit::Column, rows: usize, spec: &ColumnSpec) -> Checked<ArrayRef> {
    let name = spec.name.as_str();
    let nulls = match column.validity {
        None => None,
        Some(bits) => {
            let bits = bit_buffer(name, "validity bitmap", bits, rows)?;
            Some(NullBuffer::new(bits)).filter(|n| n.null_count() > 0)
        }
    };
    if !spec.nullable
        && let Some(nulls) = &nulls
    {
        let row = nulls
            .iter()
            .position(|v| !v)
            .expect("a buffer kept only when it has a null");
        return Err(ColumnError::new(
            name,
            format!("is declared not null but row {row} is null"),
        ));
    }
    let mismatch = |found: &str| {
        ColumnError::new(
            name,
            format!("is declared {} but holds {found} data", spec.dtype),
        )
    };
    let array: ArrayRef = match (spec.dtype, column.data) {
        (DType::Bool, wit::ColumnData::Boolean(bits)) => Arc::new(BooleanArray::new(
            bit_buffer(name, "boolean values", bits, rows)?,
            nulls,
        )),
        (DType::Int64, wit::ColumnData::Int64(values)) => {
            check_len(name, values.len(), rows)?;
            Arc::new(Int64Array::new(ScalarBuffer::from(values), nulls))
        }
        (DType::Float64, wit::ColumnData::Float64(mut values)) => {
            check_len(name, values.len(), rows)?;
            // A guest can make any NaN by bit-cast, which wasmtime's NaN canonicalization
            // (of arithmetic) does not touch: one NaN everywhere (ADR 0008).
            if skewless_core::has_other_nan_f64(&values) {
                values
                    .iter_mut()
                    .for_each(|v| *v = skewless_core::canonical_f64(*v));
            }
            Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls))
        }
        (DType::Timestamp, wit::ColumnData::Timestamp(values)) => {
            check_len(name, values.len(), rows)?;
            Arc::new(
                TimestampMicrosecondArray::new(ScalarBuffer::from(values), nulls)
                    .with_timezone(skewless_core::UTC),
            )
        }
        (DType::String, wit::ColumnData::Utf8(data)) => {
            let offsets = offsets(name, &data.offsets, rows, data.bytes.len())?;
            let array = StringArray::try_new(offsets, Buffer::from_vec(data.bytes), nulls)
                .map_err(|e| ColumnError::new(name, e.to_string()))?;
            Arc::new(array)
        }
        (DType::Float32List, wit::ColumnData::Float32List(mut data)) => {
            let offsets = offsets(name, &data.offsets, rows, data.values.len())?;
            if skewless_core::has_other_nan_f32(&data.values) {
                data.values
                    .iter_mut()
                    .for_each(|v| *v = skewless_core::canonical_f32(*v));
            }
            let values = Float32Array::new(ScalarBuffer::from(data.values), None);
            let item = Arc::new(Field::new_list_field(DataType::Float32, true));
            let array = ListArray::try_new(item, offsets, Arc::new(values), nulls)
                .map_err(|e| ColumnError::new(name, e.to_string()))?;
            Arc::new(array)
        }
        (_, data) => return Err(mismatch(data_kind(&data))),
    };
    Ok(array)
}

fn data_kind(data: &wit::ColumnData) -> &'static str {
    match data {
        wit::ColumnData::Boolean(_) => "bool",
        wit::ColumnData::Int64(_) => "int64",
        wit::ColumnData::Float64(_) => "float64",
        wit::ColumnData::Utf8(_) => "string",
        wit::ColumnData::Timestamp(_) => "timestamp",
        wit::ColumnData::Float32List(_) => "float32_list",
    }
}

fn check_len(name: &str, len: usize, rows: usize) -> Checked<()> {
    if len != rows {
        return Err(ColumnError::new(
            name,
            format!("has {len} values for {rows} rows"),
        ));
    }
    Ok(())
}

fn bit_buffer(name: &str, what: &str, bits: Vec<u8>, rows: usize) -> Checked<BooleanBuffer> {
    let needed = rows.div_ceil(8);
    if bits.len() < needed {
        return Err(ColumnError::new(
            name,
            format!("{what} has {} bytes; {rows} rows need {needed}", bits.len()),
        ));
    }
    Ok(BooleanBuffer::new(Buffer::from_vec(bits), 0, rows))
}

/// Checks guest offsets before Arrow sees them (Arrow's constructors panic on bad ones).
fn offsets(name: &str, raw: &[u32], rows: usize, values: usize) -> Checked<OffsetBuffer<i32>> {
    if raw.len() != rows + 1 {
        return Err(ColumnError::new(
            name,
            format!("has {} offsets for {rows} rows (needs rows + 1)", raw.len()),
        ));
    }
    if raw[0] != 0 {
        return Err(ColumnError::new(name, "offsets must start at 0"));
    }
    if let Some(row) = raw.windows(2).position(|w| w[1] < w[0]) {
        return Err(ColumnError::new(
            name,
            format!("offsets decrease at row {row}"),
        ));
    }
    let last = raw[rows] as usize;
    if last != values {
        return Err(ColumnError::new(
            name,
            format!("offsets end at {last} but the column holds {values} values"),
        ));
    }
    if last > i32::MAX as usize {
        return Err(ColumnError::new(
            name,
            format!("holds {last} values; at most {} fit in one batch", i32::MAX),
        ));
    }
    let converted: Vec<i32> = raw.iter().map(|&o| o as i32).collect();
    Ok(OffsetBuffer::new(ScalarBuffer::from(converted)))
}

#[cfg(test)]
mod tests;
