//! Typed views over the input batch, and typed columns for the output.

mod input;
mod lists;
mod output;
mod strings;
mod testing;
#[cfg(test)]
mod tests;
mod values;

pub use input::Input;
pub use lists::{Float32ListColumn, Float32Lists};
pub use output::Output;
pub use strings::{StringColumn, Strings};
pub use testing::InputBuilder;
pub use values::{Values, ValuesColumn};

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
