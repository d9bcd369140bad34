//! Building inputs by hand, to unit-test a transform natively.

use super::*;
use crate::Result;
use crate::contract::wit;

/// Builds an [`Input`] by hand, to unit-test a transform natively (`cargo test`).
#[derive(Debug, Default)]
pub struct InputBuilder {
    pub(super) rows: usize,
    pub(super) output: Option<Output>,
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
