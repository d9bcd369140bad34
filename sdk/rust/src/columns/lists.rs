//! Float32-list columns: views over input lists and owned output columns.

use super::*;

/// A read-only view of a float32-list column (embeddings).
#[derive(Debug, Clone, Copy)]
pub struct Float32Lists<'a> {
    pub(super) values: &'a [f32],
    pub(super) offsets: &'a [u32],
    pub(super) validity: Validity<'a>,
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
    pub(super) offsets: Vec<u32>,
    pub(super) values: Vec<f32>,
    pub(super) validity: BitBuilder,
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
