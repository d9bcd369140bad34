//! The aggregate functions: what each accepts and returns, and its partial state with
//! `update`, `merge` and `finalize`.

use std::cmp::Ordering;

use num_bigint::{BigInt, BigUint};
use skewless_core::DType;
pub use skewless_core::aggregation::Function;

use crate::codec::{self, Reader, Writer};
use crate::exact::{self, Exact, SCALE};
use crate::hll::{self, Hll};

/// One aggregate: a function over a column of a dtype (none: `count` of events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregate {
    /// The function.
    pub function: Function,
    /// The column's dtype.
    pub input: Option<DType>,
}

/// One input value. A null is skipped by every function; `count` without a column is
/// given any non-null value per event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input<'a> {
    /// No value.
    Null,
    /// An int64.
    Int(i64),
    /// A float64 (NaNs arrive canonical, ADR 0008).
    Float(f64),
    /// A string.
    Str(&'a str),
}

/// A finished value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// An int64.
    Int(i64),
    /// A float64.
    Float(f64),
    /// A string (shared: copying a scalar never copies its text).
    Str(std::sync::Arc<str>),
}

impl Scalar {
    fn from_input(v: Input<'_>) -> Option<Scalar> {
        match v {
            Input::Null => None,
            Input::Int(v) => Some(Scalar::Int(v)),
            Input::Float(v) => Some(Scalar::Float(v)),
            Input::Str(v) => Some(Scalar::Str(v.into())),
        }
    }

    /// A total order: ints by value, floats by IEEE total order (so `-0.0 < 0.0`),
    /// strings by bytes.
    fn total_cmp(&self, other: &Scalar) -> Ordering {
        match (self, other) {
            (Scalar::Int(a), Scalar::Int(b)) => a.cmp(b),
            (Scalar::Float(a), Scalar::Float(b)) => a.total_cmp(b),
            (Scalar::Str(a), Scalar::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Scalar::Int(_) => 0,
            Scalar::Float(_) => 1,
            Scalar::Str(_) => 2,
        }
    }

    fn is_nan(&self) -> bool {
        matches!(self, Scalar::Float(v) if v.is_nan())
    }
}

/// When an event happened and when it arrived (microseconds since the epoch; a source
/// without arrival times gives the event time for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventTime {
    /// The event time.
    pub event: i64,
    /// The arrival time.
    pub created: i64,
}

/// Sums, and sums of squares, of a numeric column; exact.
#[derive(Debug, Clone, Default)]
pub struct Moments {
    n: u64,
    negative_zeros: u64,
    nans: u64,
    positive_infinities: u64,
    negative_infinities: u64,
    sum: Exact,
    squares: Option<Exact>,
}

impl Moments {
    fn with_squares() -> Moments {
        Moments {
            squares: Some(Exact::default()),
            ..Moments::default()
        }
    }

    fn update(&mut self, v: Input<'_>) {
        match v {
            Input::Int(v) => {
                self.n += 1;
                exact::add_i64(&mut self.sum, self.squares.as_mut(), v);
            }
            Input::Float(v) => {
                self.n += 1;
                if v.is_nan() {
                    self.nans += 1;
                } else if v == f64::INFINITY {
                    self.positive_infinities += 1;
                } else if v == f64::NEG_INFINITY {
                    self.negative_infinities += 1;
                } else {
                    if v == 0.0 && v.is_sign_negative() {
                        self.negative_zeros += 1;
                    }
                    exact::add_f64(&mut self.sum, self.squares.as_mut(), v);
                }
            }
            Input::Null | Input::Str(_) => {}
        }
    }

    fn merge(&mut self, other: &Moments) {
        self.n += other.n;
        self.negative_zeros += other.negative_zeros;
        self.nans += other.nans;
        self.positive_infinities += other.positive_infinities;
        self.negative_infinities += other.negative_infinities;
        self.sum.merge(&other.sum);
        if let (Some(mine), Some(theirs)) = (self.squares.as_mut(), other.squares.as_ref()) {
            mine.merge(theirs);
        }
    }

    fn unmerge(&mut self, other: &Moments) {
        self.n -= other.n;
        self.negative_zeros -= other.negative_zeros;
        self.nans -= other.nans;
        self.positive_infinities -= other.positive_infinities;
        self.negative_infinities -= other.negative_infinities;
        self.sum.unmerge(&other.sum);
        if let (Some(mine), Some(theirs)) = (self.squares.as_mut(), other.squares.as_ref()) {
            mine.unmerge(theirs);
        }
    }

    /// IEEE's answer for a sum with non-finite terms, if there are any.
    fn non_finite(&self) -> Option<f64> {
        let both = self.positive_infinities > 0 && self.negative_infinities > 0;
        if self.nans > 0 || both {
            Some(f64::from_bits(skewless_core::CANONICAL_NAN_F64))
        } else if self.positive_infinities > 0 {
            Some(f64::INFINITY)
        } else if self.negative_infinities > 0 {
            Some(f64::NEG_INFINITY)
        } else {
            None
        }
    }

    /// `total / n`, correctly rounded; a zero result is `-0.0` only when every term was.
    fn ratio(&self, total: &BigInt, n: u64) -> f64 {
        if total.sign() == num_bigint::Sign::NoSign {
            return if self.negative_zeros == self.n {
                -0.0
            } else {
                0.0
            };
        }
        // Without the trailing zero bits (most of them: the unit is 2^-2148), the
        // division is of small numbers.
        let zeros = total.trailing_zeros().unwrap_or(0);
        let scale = i64::from(SCALE) - zeros as i64;
        exact::round_ratio(&(total >> zeros), &BigUint::from(n), scale)
    }

    fn sum(&self) -> f64 {
        if let Some(v) = self.non_finite() {
            return v;
        }
        if self.n == 0 {
            return 0.0;
        }
        self.ratio_of_sum(1)
    }

    fn mean(&self) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        if let Some(v) = self.non_finite() {
            return Some(v);
        }
        Some(self.ratio_of_sum(self.n))
    }

    /// The exact sum over `n`, correctly rounded: in u128 arithmetic when the sum fits (as
    /// sums of ordinary amounts do), else through big integers; the same bits either way.
    fn ratio_of_sum(&self, n: u64) -> f64 {
        if let Some((m, shift)) = self.sum.to_i128()
            && m != 0
            && let Some(v) = exact::round_ratio_u128(
                m.unsigned_abs(),
                n,
                i64::from(SCALE) - i64::from(shift),
                m < 0,
            )
        {
            return v;
        }
        self.ratio(&self.sum.to_bigint(), n)
    }

    /// `n·Σx² − (Σx)²` as `(spread, divisor, scale)`: the variance is
    /// `spread / divisor · 2^-scale`, with `scale` even (for the square root).
    /// `Err(Some(nan))` for a non-finite term; `Err(None)` for moments that contradict
    /// each other.
    #[allow(clippy::type_complexity)]
    fn variance_parts(&self, sample: bool) -> Option<Result<(BigUint, BigUint, i64), Option<f64>>> {
        let least = if sample { 2 } else { 1 };
        if self.n < least {
            return None;
        }
        if self.non_finite().is_some() {
            return Some(Err(Some(f64::from_bits(skewless_core::CANONICAL_NAN_F64))));
        }
        let s = self.sum.to_bigint();
        let q = self
            .squares
            .as_ref()
            .expect("moments for a variance keep squares")
            .to_bigint();
        // n·q·2^SCALE − s², both in units of 2^-2·SCALE, without the trailing zero bits
        // they share (an even number of them, so the scale stays even).
        let (a, b) = (s.trailing_zeros(), q.trailing_zeros());
        let shared = match (a, b) {
            (Some(a), Some(b)) => (2 * a).min(b + u64::from(SCALE)),
            (Some(a), None) => 2 * a,
            (None, Some(b)) => b + u64::from(SCALE),
            (None, None) => 0,
        } & !1;
        let squared = match a {
            Some(a) => {
                let r = &s >> a;
                (&r * &r) << (2 * a - shared)
            }
            None => BigInt::default(),
        };
        let scaled = match b {
            Some(b) => (BigInt::from(self.n) * (&q >> b)) << (b + u64::from(SCALE) - shared),
            None => BigInt::default(),
        };
        // n·Σx² ≥ (Σx)² (Cauchy–Schwarz), exactly, for moments of actual values; only
        // damaged stored moments break it.
        let Some(spread) = (scaled - squared).to_biguint() else {
            return Some(Err(None));
        };
        let divisor = if sample {
            BigUint::from(self.n) * BigUint::from(self.n - 1)
        } else {
            BigUint::from(self.n) * BigUint::from(self.n)
        };
        Some(Ok((spread, divisor, 2 * i64::from(SCALE) - shared as i64)))
    }

    fn variance(&self, sample: bool) -> Result<Option<f64>, Error> {
        Ok(Some(match self.variance_parts(sample) {
            None => return Ok(None),
            Some(Err(Some(nan))) => nan,
            Some(Err(None)) => return Err(Error::Inconsistent),
            Some(Ok((spread, divisor, scale))) => {
                exact::round_ratio(&BigInt::from(spread), &divisor, scale)
            }
        }))
    }

    fn stddev(&self, sample: bool) -> Result<Option<f64>, Error> {
        Ok(Some(match self.variance_parts(sample) {
            None => return Ok(None),
            Some(Err(Some(nan))) => nan,
            Some(Err(None)) => return Err(Error::Inconsistent),
            Some(Ok((spread, divisor, scale))) => exact::round_sqrt_ratio(&spread, &divisor, scale),
        }))
    }
}

/// The partial aggregate of some events: what a tile holds.
#[derive(Debug, Clone)]
pub enum State {
    /// Events or non-null values.
    Count(u64),
    /// An int64 sum, exact.
    IntSum(i128),
    /// Float sums, means and variances (inline: boxing them saves a quarter of the
    /// online tiles' memory but costs the backfill about 9%, BENCHMARKS.md).
    Moments(Moments),
    /// The least or greatest value so far.
    Extreme(Option<Scalar>),
    /// The earliest or latest value so far, with its event and arrival times.
    Pick(Option<(EventTime, Scalar)>),
    /// Distinct values.
    Distinct(Hll),
}

/// What finalizing can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An int64 sum out of int64's range.
    #[error("the int64 sum {0} is out of int64's range; sum a float64 column instead")]
    Overflow(i128),
    /// Stored moments whose sum of squares is less than their sum allows: damaged data.
    #[error(
        "stored moments contradict each other (a sum of squares below what the sum allows): the stored tiles are damaged"
    )]
    Inconsistent,
}

impl Aggregate {
    /// The state of no events.
    pub fn init(&self) -> State {
        match self.function {
            Function::Count => State::Count(0),
            Function::Sum if self.input == Some(DType::Int64) => State::IntSum(0),
            Function::Sum | Function::Mean => State::Moments(Moments::default()),
            Function::VarPop | Function::VarSamp | Function::StddevPop | Function::StddevSamp => {
                State::Moments(Moments::with_squares())
            }
            Function::Min | Function::Max => State::Extreme(None),
            Function::First | Function::Last => State::Pick(None),
            Function::ApproxCountDistinct => State::Distinct(Hll::default()),
        }
    }

    /// Adds one event's value.
    pub fn update(&self, state: &mut State, value: Input<'_>, at: EventTime) {
        if value == Input::Null {
            return;
        }
        match state {
            State::Count(n) => *n += 1,
            State::IntSum(total) => {
                if let Input::Int(v) = value {
                    *total += i128::from(v);
                }
            }
            State::Moments(m) => m.update(value),
            State::Extreme(best) => {
                let v = Scalar::from_input(value).expect("not null");
                self.keep_extreme(best, v);
            }
            State::Pick(best) => {
                let v = Scalar::from_input(value).expect("not null");
                self.keep_pick(best, (at, v));
            }
            State::Distinct(sketch) => sketch.insert_hash(distinct_hash(value)),
        }
    }

    /// Adds every event of `other` (a state of the same aggregate).
    pub fn merge(&self, state: &mut State, other: &State) {
        match (state, other) {
            (State::Count(a), State::Count(b)) => *a += b,
            (State::IntSum(a), State::IntSum(b)) => *a += b,
            (State::Moments(a), State::Moments(b)) => a.merge(b),
            (State::Extreme(a), State::Extreme(Some(b))) => self.keep_extreme(a, b.clone()),
            (State::Pick(a), State::Pick(Some(b))) => self.keep_pick(a, b.clone()),
            (State::Distinct(a), State::Distinct(b)) => a.merge(b),
            (State::Extreme(_), State::Extreme(None)) | (State::Pick(_), State::Pick(None)) => {}
            (a, b) => unreachable!("states of one aggregate: {a:?} and {b:?}"),
        }
    }

    /// Takes the events of `other` back out of `state`, which holds them, where the
    /// function allows it exactly (counts, int sums, the exact moments); `false` when it
    /// cannot (a minimum, a pick, a sketch), leaving `state` unchanged.
    pub fn unmerge(&self, state: &mut State, other: &State) -> bool {
        match (state, other) {
            (State::Count(a), State::Count(b)) => *a -= b,
            (State::IntSum(a), State::IntSum(b)) => *a -= b,
            (State::Moments(a), State::Moments(b)) => a.unmerge(b),
            _ => return false,
        }
        true
    }

    /// Whether [`Aggregate::unmerge`] works for this function.
    pub fn invertible(&self) -> bool {
        matches!(
            self.init(),
            State::Count(_) | State::IntSum(_) | State::Moments(_)
        )
    }

    fn keep_extreme(&self, best: &mut Option<Scalar>, v: Scalar) {
        let replace = match best {
            None => true,
            Some(b) if b.is_nan() => false,
            Some(_) if v.is_nan() => true,
            Some(b) => {
                let order = v.total_cmp(b);
                match self.function {
                    Function::Min => order == Ordering::Less,
                    _ => order == Ordering::Greater,
                }
            }
        };
        if replace {
            *best = Some(v);
        }
    }

    /// First: the least (event time, arrival time, value); last: the greatest. Ties on
    /// both times go to the value's total order, so any order of events agrees.
    fn keep_pick(&self, best: &mut Option<(EventTime, Scalar)>, v: (EventTime, Scalar)) {
        let replace = match best {
            None => true,
            Some(b) => {
                let order = v.0.cmp(&b.0).then_with(|| v.1.total_cmp(&b.1));
                match self.function {
                    Function::First => order == Ordering::Less,
                    _ => order == Ordering::Greater,
                }
            }
        };
        if replace {
            *best = Some(v);
        }
    }

    /// The value of the events in `state`; `None` is null.
    pub fn finalize(&self, state: &State) -> Result<Option<Scalar>, Error> {
        Ok(match state {
            State::Count(n) => Some(Scalar::Int(*n as i64)),
            State::IntSum(total) => Some(Scalar::Int(
                i64::try_from(*total).map_err(|_| Error::Overflow(*total))?,
            )),
            State::Moments(m) => match self.function {
                Function::Sum => Some(Scalar::Float(m.sum())),
                Function::Mean => m.mean().map(Scalar::Float),
                Function::VarPop => m.variance(false)?.map(Scalar::Float),
                Function::VarSamp => m.variance(true)?.map(Scalar::Float),
                Function::StddevPop => m.stddev(false)?.map(Scalar::Float),
                Function::StddevSamp => m.stddev(true)?.map(Scalar::Float),
                other => unreachable!("{other:?} keeps no moments"),
            },
            State::Extreme(best) => best.clone(),
            State::Pick(best) => best.as_ref().map(|(_, v)| v.clone()),
            State::Distinct(sketch) => Some(Scalar::Int(sketch.estimate())),
        })
    }
}

impl Scalar {
    /// Appends the byte form of a value or a null.
    pub(crate) fn encode(value: Option<&Scalar>, w: &mut Writer<'_>) {
        match value {
            None => w.u8(0),
            Some(Scalar::Int(v)) => {
                w.u8(1);
                w.i64(*v);
            }
            Some(Scalar::Float(v)) => {
                w.u8(2);
                w.u64(v.to_bits());
            }
            Some(Scalar::Str(v)) => {
                w.u8(3);
                w.bytes(v.as_bytes());
            }
        }
    }

    /// Reads [`Scalar::encode`]'s form.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Option<Scalar>, codec::Error> {
        Ok(match r.u8("a value's type")? {
            0 => None,
            1 => Some(Scalar::Int(r.i64("an int64 value")?)),
            2 => Some(Scalar::Float(f64::from_bits(r.u64("a float64 value")?))),
            3 => {
                let text = std::str::from_utf8(r.bytes("a string value")?)
                    .map_err(|_| "a string value that is not UTF-8".to_owned())?;
                Some(Scalar::Str(text.into()))
            }
            other => return Err(format!("a value of unknown type {other}")),
        })
    }

    /// Whether this is a value `input` (an aggregate's column dtype) can give.
    pub(crate) fn fits(&self, input: Option<DType>) -> bool {
        matches!(
            (self, input),
            (Scalar::Int(_), Some(DType::Int64))
                | (Scalar::Float(_), Some(DType::Float64))
                | (Scalar::Str(_), Some(DType::String))
        )
    }
}

impl EventTime {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.i64(self.event);
        w.i64(self.created);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<EventTime, codec::Error> {
        Ok(EventTime {
            event: r.i64("an event time")?,
            created: r.i64("an arrival time")?,
        })
    }
}

/// Stored counts are below 2^MAX_COUNT_BITS events (a tile of more is not plausible):
/// decoding refuses larger ones, so merging many stored states cannot overflow.
const MAX_COUNT_BITS: u32 = 40;

fn count(n: u64) -> Result<u64, codec::Error> {
    if n >> MAX_COUNT_BITS == 0 {
        Ok(n)
    } else {
        Err(format!("a count of {n} events in one tile"))
    }
}

impl Aggregate {
    /// Appends the byte form of `state`, one of this aggregate's.
    pub(crate) fn encode_state(&self, state: &State, w: &mut Writer<'_>) {
        match state {
            State::Count(n) => w.u64(*n),
            State::IntSum(total) => w.i128(*total),
            State::Moments(m) => {
                for n in [
                    m.n,
                    m.negative_zeros,
                    m.nans,
                    m.positive_infinities,
                    m.negative_infinities,
                ] {
                    w.u64(n);
                }
                m.sum.encode(w);
                if let Some(q) = &m.squares {
                    q.encode(w);
                }
            }
            State::Extreme(best) => Scalar::encode(best.as_ref(), w),
            State::Pick(best) => match best {
                None => w.u8(0),
                Some((at, v)) => {
                    w.u8(1);
                    at.encode(w);
                    Scalar::encode(Some(v), w);
                }
            },
            State::Distinct(sketch) => sketch.encode(w),
        }
    }

    /// Reads a state of this aggregate ([`Aggregate::encode_state`]); refuses one of
    /// another shape, or counts that do not add up.
    pub(crate) fn decode_state(&self, r: &mut Reader<'_>) -> Result<State, codec::Error> {
        let value = |r: &mut Reader<'_>| -> Result<Scalar, codec::Error> {
            match Scalar::decode(r)? {
                Some(v) if v.fits(self.input) => Ok(v),
                Some(v) => Err(format!("a value {v:?} of another type than the column's")),
                None => Err("a missing value where one is kept".into()),
            }
        };
        Ok(match self.init() {
            State::Count(_) => State::Count(count(r.u64("a count")?)?),
            State::IntSum(_) => {
                let total = r.i128("an int64 sum")?;
                // A sum of at most 2^MAX_COUNT_BITS int64s; merging many stays in range.
                if total.unsigned_abs() >> (63 + MAX_COUNT_BITS) != 0 {
                    return Err(format!("an int64 sum {total} no events can add up to"));
                }
                State::IntSum(total)
            }
            State::Moments(init) => {
                let mut counts = [0u64; 5];
                for c in &mut counts {
                    *c = r.u64("a count of moments")?;
                }
                let [
                    n,
                    negative_zeros,
                    nans,
                    positive_infinities,
                    negative_infinities,
                ] = counts;
                count(n)?;
                let special = negative_zeros
                    .checked_add(nans)
                    .and_then(|s| s.checked_add(positive_infinities))
                    .and_then(|s| s.checked_add(negative_infinities));
                if special.is_none_or(|s| s > n) {
                    return Err("moments whose special values outnumber their values".into());
                }
                let sum = Exact::decode(r)?;
                let squares = match init.squares {
                    Some(_) => Some(Exact::decode(r)?),
                    None => None,
                };
                State::Moments(Moments {
                    n,
                    negative_zeros,
                    nans,
                    positive_infinities,
                    negative_infinities,
                    sum,
                    squares,
                })
            }
            State::Extreme(_) => State::Extreme(match r.u8("an extreme's type")? {
                0 => None,
                _ => {
                    // The tag byte was the value's own: read it again with the value.
                    r.back(1);
                    Some(value(r)?)
                }
            }),
            State::Pick(_) => State::Pick(match r.u8("a pick's presence")? {
                0 => None,
                1 => Some((EventTime::decode(r)?, value(r)?)),
                other => return Err(format!("a pick of unknown form {other}")),
            }),
            State::Distinct(_) => State::Distinct(Hll::decode(r)?),
        })
    }
}

/// The hash a distinct count keeps: a type tag, then the value's bytes (floats by their
/// bits, `-0.0` as `0.0`, every NaN the canonical one).
fn distinct_hash(value: Input<'_>) -> u64 {
    let mut bytes = Vec::with_capacity(16);
    match value {
        Input::Int(v) => {
            bytes.push(1);
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        Input::Float(v) => {
            let v = if v == 0.0 {
                0.0
            } else {
                skewless_core::canonical_f64(v)
            };
            bytes.push(2);
            bytes.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Input::Str(v) => {
            bytes.push(3);
            bytes.extend_from_slice(v.as_bytes());
        }
        Input::Null => {}
    }
    hll::hash(&bytes)
}
