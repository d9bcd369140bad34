//! The input batch: typed views of its columns by name.

use super::*;
use crate::contract::wit;
use crate::signature::Spec;
use crate::{DType, Error, Result};

/// The input batch: the declared input columns, by name.
#[derive(Debug)]
pub struct Input {
    pub(super) rows: usize,
    pub(super) columns: Vec<wit::Column>,
    /// Each column's text, checked as UTF-8 once per batch (strings only).
    pub(super) texts: Vec<Option<String>>,
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
