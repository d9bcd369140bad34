//! Entity keys: the bytes that identify one entity in the online store.
//!
//! A key is the concatenation of its join-key values in the entity's declared order, each
//! tagged with its type, so `(1, "a")` and `("1a")` can never collide and an int64 key and
//! a string key never compare equal. The encoding is stable: it is written to the
//! write-ahead log and to snapshots.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef};

/// Tag byte of an int64 key part.
const TAG_INT: u8 = 1;
/// Tag byte of a string key part.
const TAG_STR: u8 = 2;

/// The dtype of a join key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    /// A signed 64-bit integer key.
    Int64,
    /// A UTF-8 string key.
    String,
}

impl KeyType {
    /// The dtype name, as written in definitions.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Int64 => "int64",
            KeyType::String => "string",
        }
    }

    /// The feature dtype of the same values.
    pub fn dtype(self) -> crate::DType {
        match self {
            KeyType::Int64 => crate::DType::Int64,
            KeyType::String => crate::DType::String,
        }
    }
}

/// Builds entity keys into a reusable buffer.
#[derive(Debug, Default, Clone)]
pub struct KeyBuf(Vec<u8>);

impl KeyBuf {
    /// An empty key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the parts written so far, keeping the allocation.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Appends an int64 part.
    pub fn push_int(&mut self, value: i64) {
        self.0.push(TAG_INT);
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    /// Appends a string part.
    pub fn push_str(&mut self, value: &str) {
        self.0.push(TAG_STR);
        // A join-key value longer than 4 GiB cannot reach here: request and push bodies
        // are bounded far below that.
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(value.as_bytes());
    }

    /// The encoded key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Encoded entity keys of a batch of rows, in one buffer; `None` for a row with a null
/// key part.
#[derive(Debug, Default, Clone)]
pub struct KeyColumn {
    bytes: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is row i's key.
    offsets: Vec<usize>,
    valid: Vec<bool>,
    /// The key itself when it is a single int64 column: looked up without bytes.
    ints: Option<Vec<i64>>,
}

impl KeyColumn {
    /// Encodes the keys of `rows` rows from their join-key columns (canonical types:
    /// int64 or utf8), in key order.
    pub fn encode(columns: &[(ArrayRef, KeyType)], rows: usize) -> Self {
        let mut keys = KeyColumn {
            bytes: Vec::with_capacity(rows * 9 * columns.len()),
            offsets: Vec::with_capacity(rows + 1),
            valid: Vec::with_capacity(rows),
            ints: None,
        };
        if let [(array, KeyType::Int64)] = columns {
            keys.ints = Some(array.as_primitive::<Int64Type>().values()[..rows].to_vec());
        }
        keys.offsets.push(0);
        let mut key = KeyBuf::new();
        for row in 0..rows {
            key.clear();
            let mut valid = true;
            for (array, key_type) in columns {
                if array.is_null(row) {
                    valid = false;
                    continue;
                }
                match key_type {
                    KeyType::Int64 => key.push_int(array.as_primitive::<Int64Type>().value(row)),
                    KeyType::String => key.push_str(array.as_string::<i32>().value(row)),
                }
            }
            keys.bytes.extend_from_slice(key.as_bytes());
            keys.offsets.push(keys.bytes.len());
            keys.valid.push(valid);
        }
        keys
    }

    /// Row `i`'s key, or `None` if a part is null.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.valid[i].then(|| &self.bytes[self.offsets[i]..self.offsets[i + 1]])
    }

    /// Row `i`'s key as an integer, when the key is a single int64 column; `Some(None)`
    /// if it is null.
    #[inline]
    pub fn int(&self, i: usize) -> Option<Option<i64>> {
        self.ints
            .as_ref()
            .map(|ints| self.valid[i].then(|| ints[i]))
    }

    /// Whether the key is a single int64 column, so [`KeyColumn::int`] answers.
    pub fn is_single_int(&self) -> bool {
        self.ints.is_some()
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }
}

/// FNV-1a over `bytes`: a stable 64-bit hash (the same in every process and release),
/// for schema fingerprints and key partitioning. Not for untrusted-input hash tables.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Renders an encoded key for messages and listings: `42`, `"abc"`, `(42, "abc")`.
pub fn display_key(mut bytes: &[u8]) -> String {
    let mut parts = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        match tag {
            TAG_INT if rest.len() >= 8 => {
                let (value, rest) = rest.split_at(8);
                let value = i64::from_be_bytes(value.try_into().expect("split at 8 bytes"));
                parts.push(value.to_string());
                bytes = rest;
            }
            TAG_STR if rest.len() >= 4 => {
                let (len, rest) = rest.split_at(4);
                let len = u32::from_le_bytes(len.try_into().expect("split at 4 bytes")) as usize;
                let len = len.min(rest.len());
                let (text, rest) = rest.split_at(len);
                parts.push(format!("{:?}", String::from_utf8_lossy(text)));
                bytes = rest;
            }
            _ => {
                parts.push(format!("<{} undecodable bytes>", bytes.len()));
                break;
            }
        }
    }
    if let [only] = parts.as_mut_slice() {
        std::mem::take(only)
    } else {
        format!("({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_do_not_collide() {
        let mut a = KeyBuf::new();
        a.push_int(1);
        a.push_str("a");
        let mut b = KeyBuf::new();
        b.push_str("1a");
        let mut c = KeyBuf::new();
        c.push_str("1");
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_ne!(b.as_bytes(), c.as_bytes());
        assert_eq!(display_key(a.as_bytes()), "(1, \"a\")");
        assert_eq!(display_key(c.as_bytes()), "\"1\"");
        let mut d = KeyBuf::new();
        d.push_int(-7);
        assert_eq!(display_key(d.as_bytes()), "-7");
    }
}
