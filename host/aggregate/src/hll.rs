//! The approximate distinct count: HyperLogLog with 2^12 registers over a fixed hash.
//!
//! The hash is part of the format: the same value hashes to the same bits on every host,
//! in every release, so a sketch built online merges with one built offline. Tiles with
//! few values keep sparse registers; a union is the register-wise maximum, which does not
//! depend on the order of values or of merges.

/// log2 of the register count.
use crate::codec::{self, Reader, Writer};

const P: u32 = 12;
const REGISTERS: usize = 1 << P;
/// Sparse entries past which the registers are kept dense.
const SPARSE_MAX: usize = 512;

/// SplitMix64's finalizer: a bijection with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fixed hash of `bytes`: each little-endian 8-byte word (the last zero-padded)
/// folded in through [`mix`], then the length.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0x5ce3_1e55_0000_0001;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    mix(h ^ bytes.len() as u64)
}

/// A HyperLogLog sketch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hll {
    /// `(register << 8) | rank`, sorted by register, one entry per register.
    Sparse(Vec<u32>),
    /// Every register's rank.
    Dense(Box<[u8]>),
}

impl Default for Hll {
    fn default() -> Self {
        Hll::Sparse(Vec::new())
    }
}

impl Hll {
    /// Counts a value whose [`hash`] is `h`.
    pub fn insert_hash(&mut self, h: u64) {
        let register = (h >> (64 - P)) as u32;
        // The rank of the first set bit after the register bits (a guard bit caps it).
        let rank = ((h << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
        self.raise(register, rank);
    }

    fn raise(&mut self, register: u32, rank: u8) {
        match self {
            Hll::Dense(ranks) => {
                let r = &mut ranks[register as usize];
                *r = (*r).max(rank);
            }
            Hll::Sparse(entries) => {
                match entries.binary_search_by_key(&register, |e| e >> 8) {
                    Ok(i) => {
                        let old = (entries[i] & 0xff) as u8;
                        if rank > old {
                            entries[i] = (register << 8) | u32::from(rank);
                        }
                    }
                    Err(i) => entries.insert(i, (register << 8) | u32::from(rank)),
                }
                if entries.len() > SPARSE_MAX {
                    self.densify();
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Hll::Sparse(entries) = self {
            let mut ranks = vec![0u8; REGISTERS].into_boxed_slice();
            for e in entries.iter() {
                ranks[(e >> 8) as usize] = (e & 0xff) as u8;
            }
            *self = Hll::Dense(ranks);
        }
    }

    /// The union with `other`.
    pub fn merge(&mut self, other: &Hll) {
        match other {
            Hll::Sparse(entries) => {
                for e in entries {
                    self.raise(e >> 8, (e & 0xff) as u8);
                }
            }
            Hll::Dense(theirs) => {
                self.densify();
                if let Hll::Dense(mine) = self {
                    for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                        *m = (*m).max(*t);
                    }
                }
            }
        }
    }

    /// The estimated distinct count: the raw HyperLogLog estimate, or linear counting
    /// while it is small. The harmonic sum is exact (an integer in units of 2^-64), so
    /// the estimate depends only on the registers, not on how they are stored.
    pub fn estimate(&self) -> i64 {
        let m = REGISTERS as f64;
        let unit = |rank: u8| 1u128 << (64 - u32::from(rank));
        let (sum, zeros) = match self {
            Hll::Dense(ranks) => (
                ranks.iter().map(|&r| unit(r)).sum::<u128>(),
                ranks.iter().filter(|&&r| r == 0).count(),
            ),
            Hll::Sparse(entries) => {
                let zeros = REGISTERS - entries.len();
                let set: u128 = entries.iter().map(|e| unit((e & 0xff) as u8)).sum();
                (set + zeros as u128 * unit(0), zeros)
            }
        };
        let z = sum as f64 / 2f64.powi(64);
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / z;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as i64
    }
}

impl Hll {
    /// Appends the byte form.
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        match self {
            Hll::Sparse(entries) => {
                w.u8(0);
                w.len(entries.len());
                for &e in entries {
                    w.u32(e);
                }
            }
            Hll::Dense(ranks) => {
                w.u8(1);
                w.bytes(ranks);
            }
        }
    }

    /// Reads [`Hll::encode`]'s form; refuses registers out of range or out of order, and
    /// ranks a 64-bit hash cannot give.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Hll, codec::Error> {
        let max_rank = (64 - P + 1) as u8;
        match r.u8("a sketch's form")? {
            0 => {
                let n = r.len("a sketch's entries", 4)?;
                if n > SPARSE_MAX {
                    return Err(format!(
                        "a sparse sketch of {n} entries (at most {SPARSE_MAX})"
                    ));
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let e = r.u32("a sketch entry")?;
                    let (register, rank) = (e >> 8, (e & 0xff) as u8);
                    let ordered = entries
                        .last()
                        .is_none_or(|&last: &u32| last >> 8 < register);
                    if register as usize >= REGISTERS || rank == 0 || rank > max_rank || !ordered {
                        return Err(format!("a sketch entry {e:#x} is out of range or order"));
                    }
                    entries.push(e);
                }
                Ok(Hll::Sparse(entries))
            }
            1 => {
                let ranks = r.bytes("a sketch's registers")?;
                if ranks.len() != REGISTERS || ranks.iter().any(|&k| k > max_rank) {
                    return Err("a dense sketch of another size or rank".into());
                }
                Ok(Hll::Dense(ranks.into()))
            }
            other => Err(format!("a sketch of unknown form {other}")),
        }
    }
}
