//! The byte form of kernel states, for stores that keep tiles outside the process (the
//! Redis online store): little-endian integers, lengths before contents. Decoding checks
//! every bound a later merge or finalize relies on, so bytes that did not come from
//! [`Timeline::encode`](crate::Timeline::encode) give an error, never a panic or a
//! plausible value.

/// What decoding refuses: the bytes are not a state of this view.
pub type Error = String;

/// Appends little-endian values to a buffer.
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A length, as a u32.
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("kernel collections hold fewer than 2^32 items"));
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.0.extend_from_slice(v);
    }
}

/// Reads what a [`Writer`] wrote; every read names what was cut short.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("cut short reading {what} at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, Error> {
        self.array(what).map(u32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, Error> {
        self.array(what).map(u64::from_le_bytes)
    }
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, Error> {
        self.array(what).map(i64::from_le_bytes)
    }
    pub(crate) fn i128(&mut self, what: &str) -> Result<i128, Error> {
        self.array(what).map(i128::from_le_bytes)
    }
    /// A length of items of at least `min_bytes` each: refused when the rest is too short
    /// to hold them, so a damaged length cannot make a huge allocation.
    pub(crate) fn len(&mut self, what: &str, min_bytes: usize) -> Result<usize, Error> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_bytes.max(1)) > self.bytes.len() - self.at {
            return Err(format!("{what}: {n} items do not fit the bytes left"));
        }
        Ok(n)
    }
    pub(crate) fn bytes(&mut self, what: &str) -> Result<&'a [u8], Error> {
        let n = self.len(what, 1)?;
        self.take(n, what)
    }
    /// Steps back `n` bytes (to read again what was peeked at).
    pub(crate) fn back(&mut self, n: usize) {
        self.at -= n.min(self.at);
    }
    /// Errs unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes left over after the state",
                self.bytes.len() - self.at
            ))
        }
    }
}
