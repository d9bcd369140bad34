//! Entity keys: the bytes that identify one entity in the online store.
//!
//! A key is the concatenation of its join-key values in the entity's declared order, each
//! tagged with its type, so `(1, "a")` and `("1a")` can never collide and an int64 key and
//! a string key never compare equal. The encoding is stable: it is written to the
//! write-ahead log and to snapshots.

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
                let value = i64::from_be_bytes(value.try_into().unwrap_or_default());
                parts.push(value.to_string());
                bytes = rest;
            }
            TAG_STR if rest.len() >= 4 => {
                let (len, rest) = rest.split_at(4);
                let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
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
    if parts.len() == 1 {
        parts.pop().unwrap_or_default()
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
