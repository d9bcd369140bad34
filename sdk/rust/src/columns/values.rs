//! Fixed-width columns: views over input values and owned output columns.

use std::borrow::Cow;

use super::*;

/// A read-only view of a fixed-width column (`f64`, `i64`, timestamps as `i64`
/// microseconds, `bool`): one flat slice of values plus validity.
#[derive(Debug, Clone)]
pub struct Values<'a, T: Clone> {
    pub(super) values: Cow<'a, [T]>,
    pub(super) validity: Validity<'a>,
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
    pub(super) values: Vec<T>,
    pub(super) validity: Option<Vec<u8>>,
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
