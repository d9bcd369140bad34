//! The output batch: typed columns by name, checked against the signature.

use super::*;
use crate::contract::wit;
use crate::signature::Spec;
use crate::{Error, Result};

/// The output batch under construction: one column per declared output.
#[derive(Debug)]
pub struct Output {
    pub(super) rows: usize,
    pub(super) columns: Vec<wit::Column>,
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
