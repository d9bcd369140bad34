//! Which events a window counts at a time `t`.
//!
//! A window of length `W` with hop `h`, asked at `t`, counts the events with
//! `floor((t − W) / h)·h ≤ event < t` that had arrived before `t` (`created < t`) and
//! were not later than the source's allowed lateness (`created − event ≤ lateness`).
//! The tail is hop-aligned, so a window is a whole number of tiles plus the head; the
//! head is exact and excludes `t`, so a row scored at `t` never sees its own event.

/// A window length and hop, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// The window length `W`.
    pub length: i64,
    /// The hop `h`: tiles are `[k·h, (k+1)·h)`.
    pub hop: i64,
}

impl Window {
    /// The first event time counted at `t`: `floor((t − W) / h)·h`.
    pub fn start(&self, t: i64) -> i64 {
        let tail = i128::from(t) - i128::from(self.length);
        let hop = i128::from(self.hop);
        let start = tail.div_euclid(hop) * hop;
        start.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The tile an event time falls in.
    pub fn tile(&self, event: i64) -> i64 {
        event.div_euclid(self.hop)
    }

    /// Whether an event at `event` lies in the window asked at `t`.
    pub fn covers(&self, t: i64, event: i64) -> bool {
        self.start(t) <= event && event < t
    }
}

/// Whether an event that happened at `event` and arrived at `created` counts at `t` for
/// a source allowing `lateness` (microseconds; `None` is no limit), window aside.
pub fn arrived(t: i64, event: i64, created: i64, lateness: Option<i64>) -> bool {
    created < t && lateness.is_none_or(|l| !is_late(event, created, l))
}

/// Whether an event arrived later than `lateness` after it happened: refused by push,
/// dropped by the backfill alike.
pub fn is_late(event: i64, created: i64, lateness: i64) -> bool {
    i128::from(created) - i128::from(event) > i128::from(lateness)
}
