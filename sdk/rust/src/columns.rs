//! Typed views over the input batch, and typed columns for the output.

use std::borrow::Cow;

use crate::contract::wit;
use crate::signature::Spec;
use crate::{DType, Error, Result};

/// Which rows of a column hold a value. Bit `i` set (least significant bit first) means
/// row `i` is valid; no bitmap means every row is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validity<'a>(Option<&'a [u8]>);

impl<'a> Validity<'a> {
    /// Every row valid.
    pub const ALL: Validity<'static> = Validity(None);

    /// Whether row `i` holds a value.
    #[inline]
    pub fn is_valid(&self, i: usize) -> bool {
        match self.0 {
            None => true,
            Some(bits) => bit(bits, i),
        }
    }

    /// Whether every row holds a value.
    pub fn all_valid(&self) -> bool {
        self.0.is_none()
    }

    /// The bitmap, if some row may be null.
    pub fn bits(&self) -> Option<&'a [u8]> {
        self.0
    }

    /// Rows valid in both (a bytewise AND, which vectorizes).
    fn and(self, other: Validity<'_>, rows: usize) -> Option<Vec<u8>> {
        let bytes = rows.div_ceil(8);
        match (self.0, other.0) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a[..bytes.min(a.len())].to_vec()),
            (Some(a), Some(b)) => Some(a.iter().zip(b).take(bytes).map(|(x, y)| x & y).collect()),
        }
    }
}

/// Bit `i` of an LSB-first bitmap; bits past its end read as unset.
#[inline]
fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// A growable validity bitmap.
#[derive(Debug, Clone, Default)]
struct BitBuilder {
    bytes: Vec<u8>,
    len: usize,
    unset: usize,
}

impl BitBuilder {
    fn with_capacity(rows: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(rows.div_ceil(8)),
            len: 0,
            unset: 0,
        }
    }

    #[inline]
    fn push(&mut self, bit: bool) {
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << (self.len % 8);
        } else {
            self.unset += 1;
        }
        self.len += 1;
    }

    /// The bitmap as validity: `None` when every bit is set.
    fn into_validity(self) -> Option<Vec<u8>> {
        (self.unset > 0).then_some(self.bytes)
    }
}

fn pack_bits(values: &[bool]) -> Vec<u8> {
    values
        .chunks(8)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |byte, (i, &b)| byte | (u8::from(b) << i))
        })
        .collect()
}

/// A read-only view of a fixed-width column (`f64`, `i64`, timestamps as `i64`
/// microseconds, `bool`): one flat slice of values plus validity.
#[derive(Debug, Clone)]
pub struct Values<'a, T: Clone> {
    values: Cow<'a, [T]>,
    validity: Validity<'a>,
}

impl<'a, T: Copy> Values<'a, T> {
    /// A view over `values` with `validity`.
    pub fn new(values: impl Into<Cow<'a, [T]>>, validity: Validity<'a>) -> Self {
        Self {
            values: values.into(),
            validity,
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every row's value; the value of a null row is unspecified.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Which rows hold a value.
    pub fn validity(&self) -> Validity<'_> {
        self.validity
    }

    /// Row `i`, or `None` if it is null. Panics if `i` is out of range.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        self.validity.is_valid(i).then(|| self.values[i])
    }

    /// Every row, as `Option`s.
    pub fn iter(&self) -> impl Iterator<Item = Option<T>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Applies `f` to every value (null rows too, whose results are discarded) and keeps
    /// this column's validity. Written as one pass over a slice, so it vectorizes.
    pub fn map<U: Copy>(&self, f: impl Fn(T) -> U) -> ValuesColumn<U> {
        ValuesColumn {
            values: self.values.iter().map(|&v| f(v)).collect(),
            validity: self.validity.0.map(<[u8]>::to_vec),
        }
    }

    /// Applies `f` to the values of both columns row by row; a row is valid when it is
    /// valid in both. Panics if the columns differ in length (they come from one batch).
    pub fn zip_map<U: Copy, V: Copy>(
        &self,
        other: &Values<'_, U>,
        f: impl Fn(T, U) -> V,
    ) -> ValuesColumn<V> {
        assert_eq!(
            self.len(),
            other.len(),
            "zip_map over columns of different lengths"
        );
        ValuesColumn {
            values: self
                .values
                .iter()
                .zip(other.values.iter())
                .map(|(&a, &b)| f(a, b))
                .collect(),
            validity: self.validity.and(other.validity, self.len()),
        }
    }
}

/// An owned fixed-width output column: values plus validity.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuesColumn<T> {
    values: Vec<T>,
    validity: Option<Vec<u8>>,
}

impl<T: Copy> ValuesColumn<T> {
    /// A column with every row valid.
    pub fn from_values(values: Vec<T>) -> Self {
        Self {
            values,
            validity: None,
        }
    }

    /// A column from optional values; `None` rows hold `T::default()` and are null.
    pub fn from_options(options: impl IntoIterator<Item = Option<T>>) -> Self
    where
        T: Default,
    {
        let options = options.into_iter();
        let mut values = Vec::with_capacity(options.size_hint().0);
        let mut bits = BitBuilder::with_capacity(options.size_hint().0);
        for option in options {
            bits.push(option.is_some());
            values.push(option.unwrap_or_default());
        }
        Self {
            values,
            validity: bits.into_validity(),
        }
    }

    /// Also nulls every row that is null in `validity`.
    pub fn and_validity(mut self, validity: Validity<'_>) -> Self {
        let mine = Validity(self.validity.as_deref());
        self.validity = mine.and(validity, self.values.len());
        self
    }

    /// Marks row `i` null.
    pub fn set_null(&mut self, i: usize) {
        let rows = self.values.len();
        let bits = self
            .validity
            .get_or_insert_with(|| vec![0xff; rows.div_ceil(8)]);
        bits[i / 8] &= !(1 << (i % 8));
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A read-only view, to feed one computed column into the next.
    pub fn view(&self) -> Values<'_, T> {
        Values::new(&self.values[..], Validity(self.validity.as_deref()))
    }
}

/// A read-only view of a string column.
#[derive(Debug, Clone, Copy)]
pub struct Strings<'a> {
    text: &'a str,
    offsets: &'a [u32],
    validity: Validity<'a>,
}

impl<'a> Strings<'a> {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which rows hold a value.
    pub fn validity(&self) -> Validity<'a> {
        self.validity
    }

    /// The bytes of text in the column, over all rows: a capacity hint for outputs.
    pub fn total_bytes(&self) -> usize {
        match (self.offsets.first(), self.offsets.last()) {
            (Some(&first), Some(&last)) => (last - first) as usize,
            _ => 0,
        }
    }

    /// Row `i`'s string, whether or not the row is null (a null row's string is empty).
    #[inline]
    pub fn value(&self, i: usize) -> &'a str {
        let (start, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        // `check_offsets` bounded every offset when the column was opened, and Arrow
        // offsets of UTF-8 data sit on character boundaries.
        self.text
            .get(start..end)
            .expect("offsets checked when the column was opened")
    }

    /// Row `i`, or `None` if it is null.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a str> {
        self.validity.is_valid(i).then(|| self.value(i))
    }

    /// Every row, as `Option`s.
    pub fn iter(&self) -> impl Iterator<Item = Option<&'a str>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// An owned string output column, built row by row.
#[derive(Debug, Clone)]
pub struct StringColumn {
    offsets: Vec<u32>,
    bytes: Vec<u8>,
    validity: BitBuilder,
}

impl Default for StringColumn {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl StringColumn {
    /// An empty column with room for `rows` rows and `bytes` bytes of text.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            bytes: Vec::with_capacity(bytes),
            validity: BitBuilder::with_capacity(rows),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, value: Option<&str>) {
        match value {
            Some(s) => self.push_str(s),
            None => self.push_null(),
        }
    }

    /// Appends a string row.
    pub fn push_str(&mut self, value: &str) {
        self.bytes.extend_from_slice(value.as_bytes());
        self.offsets.push(self.bytes.len() as u32);
        self.validity.push(true);
    }

    /// Appends a null row.
    pub fn push_null(&mut self) {
        self.offsets.push(self.bytes.len() as u32);
        self.validity.push(false);
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'s> FromIterator<Option<&'s str>> for StringColumn {
    fn from_iter<I: IntoIterator<Item = Option<&'s str>>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut column = Self::with_capacity(iter.size_hint().0, 0);
        iter.for_each(|v| column.push(v));
        column
    }
}

/// A read-only view of a float32-list column (embeddings).
#[derive(Debug, Clone, Copy)]
pub struct Float32Lists<'a> {
    values: &'a [f32],
    offsets: &'a [u32],
    validity: Validity<'a>,
}

impl<'a> Float32Lists<'a> {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which rows hold a value.
    pub fn validity(&self) -> Validity<'a> {
        self.validity
    }

    /// Row `i`'s elements, whether or not the row is null (a null row's list is empty).
    #[inline]
    pub fn value(&self, i: usize) -> &'a [f32] {
        let (start, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        self.values
            .get(start..end)
            .expect("offsets checked when the column was opened")
    }

    /// Row `i`, or `None` if it is null.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a [f32]> {
        self.validity.is_valid(i).then(|| self.value(i))
    }
}

/// An owned float32-list output column, built row by row.
#[derive(Debug, Clone)]
pub struct Float32ListColumn {
    offsets: Vec<u32>,
    values: Vec<f32>,
    validity: BitBuilder,
}

impl Default for Float32ListColumn {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl Float32ListColumn {
    /// An empty column with room for `rows` rows and `values` elements.
    pub fn with_capacity(rows: usize, values: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: Vec::with_capacity(values),
            validity: BitBuilder::with_capacity(rows),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, value: Option<&[f32]>) {
        if let Some(v) = value {
            self.values.extend_from_slice(v);
        }
        self.offsets.push(self.values.len() as u32);
        self.validity.push(value.is_some());
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The input batch: the declared input columns, by name.
#[derive(Debug)]
pub struct Input {
    rows: usize,
    columns: Vec<wit::Column>,
    /// Each column's text, checked as UTF-8 once per batch (strings only).
    texts: Vec<Option<String>>,
}

impl Input {
    pub(crate) fn new(batch: wit::Batch, specs: &[Spec]) -> Result<Self> {
        let rows = batch.rows as usize;
        for spec in specs {
            if !batch.columns.iter().any(|c| c.name == spec.name) {
                return Err(Error::InvalidInput(format!(
                    "declared input column `{}` is missing",
                    spec.name
                )));
            }
        }
        let mut texts = Vec::with_capacity(batch.columns.len());
        let mut columns = batch.columns;
        for column in &mut columns {
            texts.push(match &mut column.data {
                wit::ColumnData::Utf8(data) => {
                    let bytes = std::mem::take(&mut data.bytes);
                    Some(String::from_utf8(bytes).map_err(|e| {
                        Error::InvalidInput(format!("column `{}` is not UTF-8: {e}", column.name))
                    })?)
                }
                _ => None,
            });
        }
        Ok(Self {
            rows,
            columns,
            texts,
        })
    }

    /// The number of rows in the batch; the output must have as many.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn column(&self, name: &str, dtype: DType) -> Result<(usize, &wit::Column)> {
        let (index, column) = self
            .columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "no input column `{name}`; declare it in the signature"
                ))
            })?;
        let found = match column.data {
            wit::ColumnData::Boolean(_) => DType::Bool,
            wit::ColumnData::Int64(_) => DType::Int64,
            wit::ColumnData::Float64(_) => DType::Float64,
            wit::ColumnData::Utf8(_) => DType::String,
            wit::ColumnData::Timestamp(_) => DType::Timestamp,
            wit::ColumnData::Float32List(_) => DType::Float32List,
        };
        if found != dtype {
            return Err(Error::InvalidInput(format!(
                "input column `{name}` is {}, read as {}",
                found.name(),
                dtype.name()
            )));
        }
        Ok((index, column))
    }

    fn check_len(&self, name: &str, len: usize) -> Result<()> {
        if len == self.rows {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "input column `{name}` has {len} values for {} rows",
                self.rows
            )))
        }
    }

    fn validity<'a>(&self, column: &'a wit::Column) -> Validity<'a> {
        Validity(column.validity.as_deref())
    }

    /// A float64 input column.
    pub fn float64(&self, name: &str) -> Result<Values<'_, f64>> {
        match self.column(name, DType::Float64)? {
            (
                _,
                c @ wit::Column {
                    data: wit::ColumnData::Float64(v),
                    ..
                },
            ) => {
                self.check_len(name, v.len())?;
                Ok(Values::new(&v[..], self.validity(c)))
            }
            _ => unreachable!("dtype checked by Input::column"),
        }
    }

    /// An int64 input column.
    pub fn int64(&self, name: &str) -> Result<Values<'_, i64>> {
        match self.column(name, DType::Int64)? {
            (
                _,
                c @ wit::Column {
                    data: wit::ColumnData::Int64(v),
                    ..
                },
            ) => {
                self.check_len(name, v.len())?;
                Ok(Values::new(&v[..], self.validity(c)))
            }
            _ => unreachable!("dtype checked by Input::column"),
        }
    }

    /// A timestamp input column, as microseconds since the Unix epoch (UTC).
    pub fn timestamp(&self, name: &str) -> Result<Values<'_, i64>> {
        match self.column(name, DType::Timestamp)? {
            (
                _,
                c @ wit::Column {
                    data: wit::ColumnData::Timestamp(v),
                    ..
                },
            ) => {
                self.check_len(name, v.len())?;
                Ok(Values::new(&v[..], self.validity(c)))
            }
            _ => unreachable!("dtype checked by Input::column"),
        }
    }

    /// A bool input column (unpacked from its bitmap).
    pub fn bool(&self, name: &str) -> Result<Values<'_, bool>> {
        match self.column(name, DType::Bool)? {
            (
                _,
                c @ wit::Column {
                    data: wit::ColumnData::Boolean(bits),
                    ..
                },
            ) => {
                if bits.len() < self.rows.div_ceil(8) {
                    return Err(Error::InvalidInput(format!(
                        "input column `{name}` has too few bits for {} rows",
                        self.rows
                    )));
                }
                let values: Vec<bool> = (0..self.rows).map(|i| bit(bits, i)).collect();
                Ok(Values::new(values, self.validity(c)))
            }
            _ => unreachable!("dtype checked by Input::column"),
        }
    }

    /// A string input column.
    pub fn string(&self, name: &str) -> Result<Strings<'_>> {
        match self.column(name, DType::String)? {
            (
                index,
                c @ wit::Column {
                    data: wit::ColumnData::Utf8(data),
                    ..
                },
            ) => {
                let text = self.texts[index]
                    .as_deref()
                    .expect("every utf8 column's text is kept when the batch is opened");
                check_offsets(name, &data.offsets, self.rows, text.len())?;
                Ok(Strings {
                    text,
                    offsets: &data.offsets,
                    validity: self.validity(c),
                })
            }
            _ => unreachable!("dtype checked by Input::column"),
        }
    }

    /// A float32-list input column.
    pub fn float32_list(&self, name: &str) -> Result<Float32Lists<'_>> {
        match self.column(name, DType::Float32List)? {
            (
                _,
                c @ wit::Column {
                    data: wit::ColumnData::Float32List(data),
                    ..
                },
            ) => {
                check_offsets(name, &data.offsets, self.rows, data.values.len())?;
                Ok(Float32Lists {
                    values: &data.values,
                    offsets: &data.offsets,
                    validity: self.validity(c),
                })
            }
            _ => unreachable!("dtype checked by Input::column"),
        }
    }
}

fn check_offsets(name: &str, offsets: &[u32], rows: usize, values: usize) -> Result<()> {
    let ok = offsets.len() == rows + 1
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets.last().is_some_and(|&last| last as usize <= values);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "input column `{name}` has malformed offsets"
        )))
    }
}

/// The output batch under construction: one column per declared output.
#[derive(Debug)]
pub struct Output {
    rows: usize,
    columns: Vec<wit::Column>,
}

impl Output {
    /// An empty output for a batch of `rows` rows.
    pub fn new(rows: usize) -> Self {
        Self {
            rows,
            columns: Vec::new(),
        }
    }

    fn with(mut self, name: &str, validity: Option<Vec<u8>>, data: wit::ColumnData) -> Self {
        self.columns.retain(|c| c.name != name);
        self.columns.push(wit::Column {
            name: name.to_owned(),
            validity,
            data,
        });
        self
    }

    /// Sets a float64 output column.
    pub fn float64(self, name: &str, column: ValuesColumn<f64>) -> Self {
        self.with(
            name,
            column.validity,
            wit::ColumnData::Float64(column.values),
        )
    }

    /// Sets an int64 output column.
    pub fn int64(self, name: &str, column: ValuesColumn<i64>) -> Self {
        self.with(name, column.validity, wit::ColumnData::Int64(column.values))
    }

    /// Sets a timestamp output column (microseconds since the Unix epoch, UTC).
    pub fn timestamp(self, name: &str, column: ValuesColumn<i64>) -> Self {
        self.with(
            name,
            column.validity,
            wit::ColumnData::Timestamp(column.values),
        )
    }

    /// Sets a bool output column.
    pub fn bool(self, name: &str, column: ValuesColumn<bool>) -> Self {
        let bits = pack_bits(&column.values);
        self.with(name, column.validity, wit::ColumnData::Boolean(bits))
    }

    /// Sets a string output column.
    pub fn string(self, name: &str, column: StringColumn) -> Self {
        let data = wit::ColumnData::Utf8(wit::Utf8Data {
            offsets: column.offsets,
            bytes: column.bytes,
        });
        self.with(name, column.validity.into_validity(), data)
    }

    /// Sets a float32-list output column.
    pub fn float32_list(self, name: &str, column: Float32ListColumn) -> Self {
        let data = wit::ColumnData::Float32List(wit::Float32ListData {
            offsets: column.offsets,
            values: column.values,
        });
        self.with(name, column.validity.into_validity(), data)
    }

    /// Orders the columns as the signature declares them, checking that each declared
    /// output is present exactly once with the batch's row count.
    pub(crate) fn into_wit(mut self, rows: usize, specs: &[Spec]) -> Result<wit::Batch> {
        if self.rows != rows {
            return Err(Error::Other(format!(
                "output built for {} rows, but the input has {rows}",
                self.rows
            )));
        }
        let mut ordered = Vec::with_capacity(specs.len());
        for spec in specs {
            let index = self
                .columns
                .iter()
                .position(|c| c.name == spec.name)
                .ok_or_else(|| {
                    Error::Other(format!(
                        "declared output column `{}` was not set",
                        spec.name
                    ))
                })?;
            let column = self.columns.swap_remove(index);
            let len = match &column.data {
                wit::ColumnData::Boolean(_) => rows,
                wit::ColumnData::Int64(v) | wit::ColumnData::Timestamp(v) => v.len(),
                wit::ColumnData::Float64(v) => v.len(),
                wit::ColumnData::Utf8(s) => s.offsets.len() - 1,
                wit::ColumnData::Float32List(l) => l.offsets.len() - 1,
            };
            if len != rows {
                return Err(Error::Other(format!(
                    "output column `{}` has {len} rows, but the input has {rows}",
                    spec.name
                )));
            }
            ordered.push(column);
        }
        if let Some(extra) = self.columns.first() {
            return Err(Error::Other(format!(
                "output column `{}` is not declared in the signature",
                extra.name
            )));
        }
        Ok(wit::Batch {
            rows: rows as u32,
            columns: ordered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_map_ands_validity() {
        let a = Values::new(&[1.0, 2.0, 3.0][..], Validity(Some(&[0b101])));
        let b = Values::new(&[10.0, 20.0, 30.0][..], Validity(Some(&[0b011])));
        let sum = a.zip_map(&b, |x, y| x + y);
        let view = sum.view();
        assert_eq!(
            view.iter().collect::<Vec<_>>(),
            vec![Some(11.0), None, None]
        );
    }

    #[test]
    fn from_options_builds_validity_only_when_needed() {
        let all = ValuesColumn::from_options([Some(1i64), Some(2)]);
        assert!(all.view().validity().all_valid());
        let some = ValuesColumn::from_options([Some(1i64), None, Some(3)]);
        assert_eq!(
            some.view().iter().collect::<Vec<_>>(),
            vec![Some(1), None, Some(3)]
        );
    }

    #[test]
    fn output_is_ordered_and_checked_against_the_signature() {
        let specs = crate::Signature::new()
            .output("a", DType::Float64)
            .output("b", DType::String)
            .outputs;
        let out = Output::new(2)
            .string("b", [Some("x"), None].into_iter().collect())
            .float64("a", ValuesColumn::from_values(vec![1.0, 2.0]));
        let batch = out.into_wit(2, &specs).unwrap();
        let names: Vec<_> = batch.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(batch.columns[1].validity, Some(vec![0b01]));

        let missing = Output::new(2).float64("a", ValuesColumn::from_values(vec![1.0, 2.0]));
        assert_eq!(
            missing.into_wit(2, &specs).unwrap_err(),
            Error::Other("declared output column `b` was not set".into())
        );
        let short = Output::new(2)
            .float64("a", ValuesColumn::from_values(vec![1.0]))
            .string("b", StringColumn::default());
        assert!(
            short
                .into_wit(2, &specs)
                .unwrap_err()
                .to_string()
                .contains("has 1 rows")
        );
    }

    #[test]
    fn set_null_and_and_validity() {
        let mut c = ValuesColumn::from_values(vec![1.0, 2.0, 3.0]);
        c.set_null(1);
        let c = c.and_validity(Validity(Some(&[0b110])));
        assert_eq!(
            c.view().iter().collect::<Vec<_>>(),
            vec![None, None, Some(3.0)]
        );
    }
}

/// Builds an [`Input`] by hand, to unit-test a transform natively (`cargo test`).
#[derive(Debug, Default)]
pub struct InputBuilder {
    rows: usize,
    output: Option<Output>,
}

impl Input {
    /// Starts an input of `rows` rows, for tests: add columns with the [`InputBuilder`]
    /// setters (the same as [`Output`]'s) and call [`InputBuilder::build`].
    pub fn builder(rows: usize) -> InputBuilder {
        InputBuilder {
            rows,
            output: Some(Output::new(rows)),
        }
    }
}

impl InputBuilder {
    fn map(mut self, f: impl FnOnce(Output) -> Output) -> Self {
        self.output = self.output.take().map(f);
        self
    }

    /// Adds a float64 column.
    pub fn float64(self, name: &str, column: ValuesColumn<f64>) -> Self {
        self.map(|o| o.float64(name, column))
    }

    /// Adds an int64 column.
    pub fn int64(self, name: &str, column: ValuesColumn<i64>) -> Self {
        self.map(|o| o.int64(name, column))
    }

    /// Adds a timestamp column (microseconds since the Unix epoch, UTC).
    pub fn timestamp(self, name: &str, column: ValuesColumn<i64>) -> Self {
        self.map(|o| o.timestamp(name, column))
    }

    /// Adds a bool column.
    pub fn bool(self, name: &str, column: ValuesColumn<bool>) -> Self {
        self.map(|o| o.bool(name, column))
    }

    /// Adds a string column.
    pub fn string(self, name: &str, column: StringColumn) -> Self {
        self.map(|o| o.string(name, column))
    }

    /// Adds a float32-list column.
    pub fn float32_list(self, name: &str, column: Float32ListColumn) -> Self {
        self.map(|o| o.float32_list(name, column))
    }

    /// The input, exactly as a transform would receive it.
    pub fn build(self) -> Result<Input> {
        let output = self.output.unwrap_or_else(|| Output::new(self.rows));
        let batch = wit::Batch {
            rows: self.rows as u32,
            columns: output.columns,
        };
        Input::new(batch, &[])
    }
}

impl Output {
    fn find(&self, name: &str) -> Option<&wit::Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Reads back a float64 output column, for tests.
    pub fn get_float64(&self, name: &str) -> Option<Values<'_, f64>> {
        match self.find(name)? {
            c @ wit::Column {
                data: wit::ColumnData::Float64(v),
                ..
            } => Some(Values::new(&v[..], Validity(c.validity.as_deref()))),
            _ => None,
        }
    }

    /// Reads back an int64 output column, for tests.
    pub fn get_int64(&self, name: &str) -> Option<Values<'_, i64>> {
        match self.find(name)? {
            c @ wit::Column {
                data: wit::ColumnData::Int64(v),
                ..
            } => Some(Values::new(&v[..], Validity(c.validity.as_deref()))),
            _ => None,
        }
    }

    /// Reads back a bool output column, for tests.
    pub fn get_bool(&self, name: &str) -> Option<Values<'_, bool>> {
        match self.find(name)? {
            c @ wit::Column {
                data: wit::ColumnData::Boolean(bits),
                ..
            } => {
                let values: Vec<bool> = (0..self.rows).map(|i| bit(bits, i)).collect();
                Some(Values::new(values, Validity(c.validity.as_deref())))
            }
            _ => None,
        }
    }

    /// Reads back a string output column, for tests.
    pub fn get_string(&self, name: &str) -> Option<Strings<'_>> {
        match self.find(name)? {
            c @ wit::Column {
                data: wit::ColumnData::Utf8(data),
                ..
            } => Some(Strings {
                text: std::str::from_utf8(&data.bytes).ok()?,
                offsets: &data.offsets,
                validity: Validity(c.validity.as_deref()),
            }),
            _ => None,
        }
    }
}
