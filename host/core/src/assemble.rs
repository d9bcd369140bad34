//! The assembly rules shared by serving and training: how a stored feature row becomes
//! typed columns as of a time `t`, with a status per row.
//!
//! The online store and the point-in-time join both fill a [`ViewColumnsBuilder`]; it
//! applies the one TTL rule ([`Ttl::admits`]) and builds the canonical Arrow arrays, so a
//! value has the same bits and the same null in both places.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};

use crate::{DType, Ttl, UTC, canonical_f32, canonical_f64, has_other_nan_f32};

/// Why a feature value is what it is, per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// A value was found (or computed) and is not null.
    Present,
    /// A value was found (or computed), and it is null.
    NullValue,
    /// No row for the entity at or before `t`.
    NotFound,
    /// The latest row is older than the view's TTL allows at `t`; its values are withheld.
    OutsideMaxAge,
    /// The transform computing the feature failed for this batch.
    TransformError,
}

impl Status {
    /// The name used in responses: `PRESENT`, `NOT_FOUND`, ...
    pub fn name(self) -> &'static str {
        match self {
            Status::Present => "PRESENT",
            Status::NullValue => "NULL_VALUE",
            Status::NotFound => "NOT_FOUND",
            Status::OutsideMaxAge => "OUTSIDE_MAX_AGE",
            Status::TransformError => "TRANSFORM_ERROR",
        }
    }

    /// The status called `name` ([`Status::name`]), if there is one.
    pub fn from_name(name: &str) -> Option<Status> {
        [
            Status::Present,
            Status::NullValue,
            Status::NotFound,
            Status::OutsideMaxAge,
            Status::TransformError,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// One stored value, borrowed from wherever the row lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Null.
    Null,
    /// A bool.
    Bool(bool),
    /// An int64.
    Int64(i64),
    /// A float64.
    Float64(f64),
    /// A string.
    String(&'a str),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// A float32 list as little-endian bytes (4 per item).
    Float32List(&'a [u8]),
    /// A float32 list, borrowed from an Arrow array.
    Float32Slice(&'a [f32]),
}

/// Reads [`Value`]s out of an array of a dtype's canonical Arrow type, downcasting once
/// per array rather than once per value. The one reader the online store (encoding rows),
/// the as-of join and the JSON responses share.
#[derive(Debug, Clone, Copy)]
pub enum ValueReader<'a> {
    /// bool
    Bool(&'a arrow_array::BooleanArray),
    /// int64
    Int64(&'a arrow_array::Int64Array),
    /// float64
    Float64(&'a arrow_array::Float64Array),
    /// string
    String(&'a arrow_array::StringArray),
    /// timestamp
    Timestamp(&'a arrow_array::TimestampMicrosecondArray),
    /// float32_list: the list array and its flat items
    Float32List(&'a arrow_array::ListArray, &'a [f32]),
}

impl<'a> ValueReader<'a> {
    /// A reader of `array` as `dtype`; `None` if the array is not of `dtype`'s canonical
    /// type.
    pub fn new(array: &'a ArrayRef, dtype: DType) -> Option<Self> {
        use arrow_array::cast::AsArray;
        if *array.data_type() != dtype.arrow_type() {
            return None;
        }
        Some(match dtype {
            DType::Bool => ValueReader::Bool(array.as_boolean()),
            DType::Int64 => ValueReader::Int64(array.as_primitive()),
            DType::Float64 => ValueReader::Float64(array.as_primitive()),
            DType::String => ValueReader::String(array.as_string()),
            DType::Timestamp => ValueReader::Timestamp(array.as_primitive()),
            DType::Float32List => {
                let list = array.as_list::<i32>();
                let items = list
                    .values()
                    .as_primitive::<arrow_array::types::Float32Type>()
                    .values();
                ValueReader::Float32List(list, items)
            }
        })
    }

    /// The value at row `i` ([`Value::Null`] for a null).
    #[inline]
    pub fn value(&self, i: usize) -> Value<'a> {
        use arrow_array::Array;
        match *self {
            ValueReader::Bool(a) if a.is_valid(i) => Value::Bool(a.value(i)),
            ValueReader::Int64(a) if a.is_valid(i) => Value::Int64(a.value(i)),
            ValueReader::Float64(a) if a.is_valid(i) => Value::Float64(a.value(i)),
            ValueReader::String(a) if a.is_valid(i) => Value::String(a.value(i)),
            ValueReader::Timestamp(a) if a.is_valid(i) => Value::Timestamp(a.value(i)),
            ValueReader::Float32List(a, items) if a.is_valid(i) => {
                let offsets = a.value_offsets();
                Value::Float32Slice(&items[offsets[i] as usize..offsets[i + 1] as usize])
            }
            _ => Value::Null,
        }
    }
}

/// An Arrow builder for one dtype.
#[derive(Debug)]
pub enum ColumnBuilder {
    /// bool
    Bool(BooleanBuilder),
    /// int64
    Int64(Int64Builder),
    /// float64
    Float64(Float64Builder),
    /// string
    String(StringBuilder),
    /// timestamp
    Timestamp(TimestampMicrosecondBuilder),
    /// float32_list
    Float32List(ListBuilder<Float32Builder>),
}

impl ColumnBuilder {
    /// A builder for `dtype` with room for `rows` values.
    pub fn new(dtype: DType, rows: usize) -> Self {
        match dtype {
            DType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows)),
            DType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            DType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            DType::String => ColumnBuilder::String(StringBuilder::with_capacity(rows, rows * 8)),
            DType::Timestamp => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(UTC),
            ),
            DType::Float32List => {
                ColumnBuilder::Float32List(ListBuilder::with_capacity(Float32Builder::new(), rows))
            }
        }
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        match self {
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::String(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Float32List(b) => b.append_null(),
        }
    }

    /// Appends a value; a value of another dtype than the builder's is appended as null
    /// (the store and the join only hand over values of the view's declared dtypes).
    pub fn push(&mut self, value: Value<'_>) {
        match (self, value) {
            (ColumnBuilder::Bool(b), Value::Bool(v)) => b.append_value(v),
            (ColumnBuilder::Int64(b), Value::Int64(v)) => b.append_value(v),
            // One NaN everywhere (ADR 0008): what the store, the join and responses build.
            (ColumnBuilder::Float64(b), Value::Float64(v)) => b.append_value(canonical_f64(v)),
            (ColumnBuilder::String(b), Value::String(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), Value::Timestamp(v)) => b.append_value(v),
            (ColumnBuilder::Float32List(b), Value::Float32List(bytes)) => {
                for chunk in bytes.chunks_exact(4) {
                    let item = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    b.values().append_value(canonical_f32(item));
                }
                b.append(true);
            }
            (ColumnBuilder::Float32List(b), Value::Float32Slice(items)) => {
                if has_other_nan_f32(items) {
                    b.values()
                        .extend(items.iter().map(|&v| Some(canonical_f32(v))));
                } else {
                    b.values().append_slice(items);
                }
                b.append(true);
            }
            (builder, _) => builder.push_null(),
        }
    }

    /// The finished array.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::String(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32List(b) => Arc::new(b.finish()),
        }
    }
}

/// A view's features for a batch of rows, as of each row's time.
#[derive(Debug, Clone)]
pub struct ViewColumns {
    /// One array per feature of the view, in the view's order.
    pub columns: Vec<ArrayRef>,
    /// Per row: `Present` (a row counted), `NotFound` or `OutsideMaxAge`.
    pub status: Vec<Status>,
    /// Per row: the event time of the row that counted.
    pub event_ts: Vec<Option<i64>>,
}

/// Builds [`ViewColumns`] row by row under the TTL rule.
#[derive(Debug)]
pub struct ViewColumnsBuilder {
    ttl: Ttl,
    columns: Vec<ColumnBuilder>,
    status: Vec<Status>,
    event_ts: Vec<Option<i64>>,
}

impl ViewColumnsBuilder {
    /// A builder for a view with these feature dtypes and TTL, for `rows` rows.
    pub fn new(dtypes: impl IntoIterator<Item = DType>, ttl: Ttl, rows: usize) -> Self {
        Self {
            ttl,
            columns: dtypes
                .into_iter()
                .map(|d| ColumnBuilder::new(d, rows))
                .collect(),
            status: Vec::with_capacity(rows),
            event_ts: Vec::with_capacity(rows),
        }
    }

    /// No row for the entity.
    pub fn push_missing(&mut self) {
        self.push_nulls(Status::NotFound, None);
    }

    /// The entity's latest row at or before `at` has event time `event_ts`; `value(i)`
    /// reads its feature `i`. A row from after `at` counts as missing; one older than the
    /// TTL allows is withheld as `OutsideMaxAge`.
    pub fn push_row<'a>(
        &mut self,
        event_ts: i64,
        at: i64,
        mut value: impl FnMut(usize) -> Value<'a>,
    ) {
        if event_ts > at {
            self.push_nulls(Status::NotFound, None);
        } else if !self.ttl.admits(event_ts, at) {
            self.push_nulls(Status::OutsideMaxAge, Some(event_ts));
        } else {
            for (i, column) in self.columns.iter_mut().enumerate() {
                column.push(value(i));
            }
            self.status.push(Status::Present);
            self.event_ts.push(Some(event_ts));
        }
    }

    fn push_nulls(&mut self, status: Status, event_ts: Option<i64>) {
        for column in &mut self.columns {
            column.push_null();
        }
        self.status.push(status);
        self.event_ts.push(event_ts);
    }

    /// The finished columns.
    pub fn finish(mut self) -> ViewColumns {
        ViewColumns {
            columns: self.columns.iter_mut().map(ColumnBuilder::finish).collect(),
            status: self.status,
            event_ts: self.event_ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Float64Array};

    use super::*;

    #[test]
    fn ttl_and_missing_rows_become_nulls_with_their_status() {
        let mut b = ViewColumnsBuilder::new([DType::Float64], Ttl::from_micros(10), 4);
        b.push_row(95, 100, |_| Value::Float64(1.5));
        b.push_row(89, 100, |_| Value::Float64(2.5));
        b.push_missing();
        b.push_row(101, 100, |_| Value::Float64(3.5));
        let out = b.finish();
        assert_eq!(
            out.status,
            [
                Status::Present,
                Status::OutsideMaxAge,
                Status::NotFound,
                Status::NotFound
            ]
        );
        assert_eq!(out.event_ts, [Some(95), Some(89), None, None]);
        let values = out.columns[0]
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(values.value(0), 1.5);
        assert_eq!(values.null_count(), 3);
    }

    #[test]
    fn builders_make_canonical_types() {
        for dtype in DType::ALL {
            let mut b = ColumnBuilder::new(dtype, 1);
            b.push_null();
            assert_eq!(*b.finish().data_type(), dtype.arrow_type(), "{dtype}");
        }
    }
}
