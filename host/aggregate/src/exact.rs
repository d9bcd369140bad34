//! Exact sums of binary64 values and of their squares, and correct rounding of exact
//! ratios and square roots back to binary64.
//!
//! Every finite binary64 value is an integer multiple of 2^-1074 and every square of one
//! an integer multiple of 2^-2148, so an integer counting units of 2^-[`SCALE`] holds any
//! sum of values and of squares exactly. The integer is kept as signed 32-bit digits in
//! `i64` limbs with deferred carries, only over the digits in use: adding is a few integer
//! adds, merging is adding limbs, and the result never depends on the order of either.

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{ToPrimitive, Zero};
use smallvec::SmallVec;

use crate::codec::{self, Reader, Writer};

/// The unit of an [`Exact`] is 2^-SCALE: the square of the smallest subnormal.
pub const SCALE: u32 = 2148;

const LIMB_BITS: u32 = 32;
const LOW: i64 = (1 << LIMB_BITS) - 1;
/// Each add puts at most two values below 2^32 into a limb: normalizing after this many
/// adds keeps every limb far from i64's range.
const NORMALIZE_AFTER: u32 = 1 << 28;

/// An exact integer, in units of 2^-[`SCALE`].
#[derive(Debug, Clone, Default)]
pub struct Exact {
    /// The digit index of `limbs[0]`: limb `i` weighs 2^(32·(base + i)).
    base: u32,
    /// Signed digits; their sum, each at its weight, is the value. Inline up to six
    /// (a cent amount's sum or sum of squares needs four or five), so a tile's state
    /// usually allocates nothing.
    limbs: SmallVec<[i64; 6]>,
    /// Adds since the carries were last propagated.
    pending: u32,
}

impl Exact {
    /// Adds `±magnitude · 2^bit` units.
    pub fn add(&mut self, magnitude: u128, bit: u32, negative: bool) {
        if magnitude == 0 {
            return;
        }
        let first = bit / LIMB_BITS;
        let shift = bit % LIMB_BITS;
        let top = (128 - magnitude.leading_zeros() + shift).div_ceil(LIMB_BITS);
        self.cover(first, first + top);
        let at = (first - self.base) as usize;
        for i in 0..4 {
            let digit = ((magnitude >> (32 * i)) as u64) & (LOW as u64);
            if digit == 0 {
                continue;
            }
            let v = digit << shift;
            let (lo, hi) = ((v as i64) & LOW, (v >> LIMB_BITS) as i64);
            let (lo, hi) = if negative { (-lo, -hi) } else { (lo, hi) };
            self.limbs[at + i] += lo;
            if hi != 0 {
                self.limbs[at + i + 1] += hi;
            }
        }
        self.pending += 1;
        if self.pending >= NORMALIZE_AFTER {
            self.normalize();
        }
    }

    /// Adds every unit of `other`.
    pub fn merge(&mut self, other: &Exact) {
        self.combine(other, 1);
    }

    /// Takes away every unit of `other`.
    pub fn unmerge(&mut self, other: &Exact) {
        self.combine(other, -1);
    }

    /// Adds `sign` (±1) times `other`, limb by limb.
    fn combine(&mut self, other: &Exact, sign: i64) {
        if other.limbs.is_empty() {
            return;
        }
        let end = other.base + other.limbs.len() as u32;
        self.cover(other.base, end);
        let at = (other.base - self.base) as usize;
        for (mine, theirs) in self.limbs[at..].iter_mut().zip(&other.limbs) {
            *mine += sign * theirs;
        }
        self.pending += other.pending + 1;
        if self.pending >= NORMALIZE_AFTER {
            self.normalize();
        }
    }

    /// The value, in units of 2^-[`SCALE`].
    pub fn to_bigint(&self) -> BigInt {
        let mut value = BigInt::zero();
        for &limb in self.limbs.iter().rev() {
            value <<= LIMB_BITS;
            value += limb;
        }
        value << (LIMB_BITS * self.base)
    }

    /// The value as `m · 2^(32·base)` units with `m` in an i128, when it fits (a sum of
    /// a few limbs, as sums of ordinary amounts are): `(m, 32·base)`.
    pub fn to_i128(&self) -> Option<(i128, u32)> {
        if self.limbs.len() > 3 {
            return None;
        }
        let mut m = 0i128;
        for &limb in self.limbs.iter().rev() {
            m = m
                .checked_mul(1 << LIMB_BITS)?
                .checked_add(i128::from(limb))?;
        }
        Some((m, LIMB_BITS * self.base))
    }

    /// Whether the value is exactly zero.
    pub fn is_zero(&self) -> bool {
        let mut copy = self.clone();
        copy.normalize();
        copy.limbs.iter().all(|&l| l == 0)
    }

    /// Limbs `[from, to)` exist (with room for one carry digit above).
    fn cover(&mut self, from: u32, to: u32) {
        let to = to + 1;
        if self.limbs.is_empty() {
            self.base = from;
            self.limbs = smallvec::smallvec![0; (to - from) as usize];
            return;
        }
        if from < self.base {
            let grow = (self.base - from) as usize;
            self.limbs.insert_many(0, std::iter::repeat_n(0, grow));
            self.base = from;
        }
        let end = self.base + self.limbs.len() as u32;
        if to > end {
            self.limbs.resize(self.limbs.len() + (to - end) as usize, 0);
        }
    }

    /// Propagates carries: every limb but the last in `[0, 2^32)`.
    pub(crate) fn normalize(&mut self) {
        let mut carry = 0i64;
        for limb in &mut self.limbs {
            let v = *limb + carry;
            *limb = v & LOW;
            carry = v >> LIMB_BITS;
        }
        while carry != 0 && carry != -1 {
            self.limbs.push(carry & LOW);
            carry >>= LIMB_BITS;
        }
        if carry == -1 {
            // Negative: the top digit carries the sign.
            match self.limbs.last_mut() {
                Some(top) => *top -= 1 << LIMB_BITS,
                None => self.limbs.push(-1),
            }
        }
        self.pending = 0;
    }
}

/// The highest limb index an exact sum of binary64 values or squares can reach (with
/// 64 bits of count to spare): decoding refuses limbs above it.
const MAX_LIMB: u32 = (2 * 1024 + SCALE + 64) / LIMB_BITS + 2;

impl Exact {
    /// Appends the byte form (normalized: the same value always gives the same bytes).
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let mut copy = self.clone();
        copy.normalize();
        // Zero digits at either end carry nothing.
        let first = copy.limbs.iter().position(|&l| l != 0);
        let last = copy.limbs.iter().rposition(|&l| l != 0);
        match (first, last) {
            (Some(first), Some(last)) => {
                w.u32(copy.base + first as u32);
                w.len(last + 1 - first);
                for &limb in &copy.limbs[first..=last] {
                    w.i64(limb);
                }
            }
            _ => {
                w.u32(0);
                w.len(0);
            }
        }
    }

    /// Reads [`Exact::encode`]'s form; refuses digits out of their normalized range.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Exact, codec::Error> {
        let base = r.u32("an exact sum's base")?;
        let n = r.len("an exact sum's digits", 8)?;
        if n > 0 && base.checked_add(n as u32).is_none_or(|end| end > MAX_LIMB) {
            return Err(format!("an exact sum's digits reach past limb {MAX_LIMB}"));
        }
        let mut limbs = SmallVec::with_capacity(n);
        for i in 0..n {
            let limb = r.i64("an exact sum's digit")?;
            let top = i + 1 == n;
            let fits = if top {
                (-LOW..=LOW).contains(&limb)
            } else {
                (0..=LOW).contains(&limb)
            };
            if !fits {
                return Err(format!("an exact sum's digit {limb} is not normalized"));
            }
            limbs.push(limb);
        }
        Ok(Exact {
            base: if n == 0 { 0 } else { base },
            limbs,
            pending: 0,
        })
    }
}

/// A finite binary64 value as `(negative, mantissa, exponent)` with `|x| = m · 2^e`.
pub(crate) fn decompose(x: f64) -> (bool, u64, i32) {
    let bits = x.to_bits();
    let negative = bits >> 63 == 1;
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    if biased == 0 {
        (negative, fraction, -1074)
    } else {
        (negative, fraction | (1 << 52), biased - 1075)
    }
}

/// Adds finite `x` to `sum` and, when given, `x²` to `squares`, both exactly.
pub(crate) fn add_f64(sum: &mut Exact, squares: Option<&mut Exact>, x: f64) {
    let (negative, m, e) = decompose(x);
    sum.add(u128::from(m), (e + SCALE as i32) as u32, negative);
    if let Some(squares) = squares {
        let m = u128::from(m);
        squares.add(m * m, (2 * e + SCALE as i32) as u32, false);
    }
}

/// Adds `v` to `sum` and, when given, `v²` to `squares`, both exactly.
pub(crate) fn add_i64(sum: &mut Exact, squares: Option<&mut Exact>, v: i64) {
    let m = u128::from(v.unsigned_abs());
    sum.add(m, SCALE, v < 0);
    if let Some(squares) = squares {
        squares.add(m * m, SCALE, false);
    }
}

/// 2^k for k in [-1074, 1023].
fn pow2(k: i64) -> f64 {
    if k >= -1022 {
        f64::from_bits(((k + 1023) as u64) << 52)
    } else {
        f64::from_bits(1 << (k + 1074))
    }
}

/// `(magnitude + δ) · 2^-s`, `0 ≤ δ < 1` and `δ > 0` exactly when `inexact`, rounded to
/// nearest binary64 with ties to even (overflow to infinity, gradual underflow).
/// `magnitude` must carry at least 55 bits, so the guard bits are in it.
fn round_scaled(magnitude: BigUint, inexact: bool, s: i64, negative: bool) -> f64 {
    let sign = if negative { -1.0 } else { 1.0 };
    if magnitude.is_zero() {
        return 0.0 * sign;
    }
    let bits = magnitude.bits() as i64;
    debug_assert!(bits >= 55, "not enough bits to round: {bits}");
    let exponent = bits - 1 - s;
    if exponent > 1023 {
        return f64::INFINITY * sign;
    }
    let ulp = (exponent - 52).max(-1074);
    let shift = (ulp + s) as u64;
    let quotient = &magnitude >> shift;
    let rest = magnitude - (&quotient << shift);
    let half = BigUint::from(1u8) << (shift - 1);
    let mut q = quotient.to_u64().expect("at most 53 bits");
    let up = match rest.cmp(&half) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => inexact || q & 1 == 1,
        std::cmp::Ordering::Less => false,
    };
    if up {
        q += 1;
    }
    // q ≤ 2^53, so the conversion is exact; the product only rounds by overflowing.
    (q as f64) * pow2(ulp) * sign
}

/// [`round_scaled`] in u128 arithmetic: `None` where the shift leaves that range (a
/// result deep in the subnormals), for the exact path to answer.
fn round_scaled_u128(magnitude: u128, inexact: bool, s: i64, negative: bool) -> Option<f64> {
    let sign = if negative { -1.0 } else { 1.0 };
    let bits = 128 - i64::from(magnitude.leading_zeros());
    if bits < 55 {
        return None;
    }
    let exponent = bits - 1 - s;
    if exponent > 1023 {
        return Some(f64::INFINITY * sign);
    }
    let ulp = (exponent - 52).max(-1074);
    let shift = ulp + s;
    if !(1..128).contains(&shift) {
        return None;
    }
    let quotient = magnitude >> shift;
    let rest = magnitude - (quotient << shift);
    let half = 1u128 << (shift - 1);
    let mut q = u64::try_from(quotient).ok()?;
    let up = match rest.cmp(&half) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => inexact || q & 1 == 1,
        std::cmp::Ordering::Less => false,
    };
    if up {
        q += 1;
    }
    Some((q as f64) * pow2(ulp) * sign)
}

/// [`round_ratio`] of a magnitude that fits in u128 over a u64, without big integers;
/// `None` where it cannot say (the caller takes the exact path).
pub fn round_ratio_u128(
    magnitude: u128,
    denominator: u64,
    scale: i64,
    negative: bool,
) -> Option<f64> {
    if magnitude == 0 || denominator == 0 {
        return None;
    }
    let n_bits = 128 - i64::from(magnitude.leading_zeros());
    let d_bits = 64 - i64::from(denominator.leading_zeros());
    // Enough quotient bits to round: at least 56, as the exact path asks.
    let s = 56 + d_bits - n_bits;
    let (q, r) = if s >= 0 {
        // n·2^s has 56 + d_bits ≤ 120 bits.
        let n = magnitude << s;
        (n / u128::from(denominator), n % u128::from(denominator))
    } else {
        // d·2^-s has n_bits - 56 ≤ 72 bits.
        let d = u128::from(denominator) << (-s);
        (magnitude / d, magnitude % d)
    };
    round_scaled_u128(q, r != 0, s + scale, negative)
}

/// `numerator / denominator · 2^-scale`, correctly rounded.
pub fn round_ratio(numerator: &BigInt, denominator: &BigUint, scale: i64) -> f64 {
    let negative = numerator.sign() == Sign::Minus;
    let n = numerator.magnitude();
    if n.is_zero() {
        return if negative { -0.0 } else { 0.0 };
    }
    // Enough quotient bits to round: at least 56.
    let s = 56 + denominator.bits() as i64 - n.bits() as i64;
    let (q, r) = if s >= 0 {
        (n << s as u64).div_rem(denominator)
    } else {
        n.div_rem(&(denominator << (-s) as u64))
    };
    round_scaled(q, !r.is_zero(), s + scale, negative)
}

/// `sqrt(numerator / denominator · 2^-scale)` for a non-negative numerator and an even
/// scale, correctly rounded.
pub fn round_sqrt_ratio(numerator: &BigUint, denominator: &BigUint, scale: i64) -> f64 {
    debug_assert!(scale % 2 == 0);
    if numerator.is_zero() {
        return 0.0;
    }
    // floor(sqrt(floor(x))) = floor(sqrt(x)); ask for at least 57 root bits.
    let s = ((116 + denominator.bits() as i64 - numerator.bits() as i64) / 2 + 1).max(0);
    let (q, r) = (numerator << (2 * s) as u64).div_rem(denominator);
    let root = q.sqrt();
    let inexact = !r.is_zero() || &root * &root != q;
    round_scaled(root, inexact, s + scale / 2, false)
}
