//! String columns: views over input text and owned output columns.

use super::*;

/// A read-only view of a string column.
#[derive(Debug, Clone, Copy)]
pub struct Strings<'a> {
    pub(super) text: &'a str,
    pub(super) offsets: &'a [u32],
    pub(super) validity: Validity<'a>,
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
    pub(super) offsets: Vec<u32>,
    pub(super) bytes: Vec<u8>,
    pub(super) validity: BitBuilder,
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
