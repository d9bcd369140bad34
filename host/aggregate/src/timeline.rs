//! One entity's events for one aggregated view, and its aggregates at a time `t`: the
//! structure both callers drive. The online store inserts pushed events and reads at
//! request time; the backfill ([`sweep`]) inserts history in arrival order and reads at
//! each entity row's time. Both read through [`Timeline::read`], with the same window and
//! arrival rules, and since every state is exact the grouping into tiles never shows in
//! the bits.
//!
//! Events with `event < sealed_until` are folded into hop tiles; later ones are kept raw,
//! because the head of a window is exact (`event < t`, `created < t`) and a tile cannot be
//! cut. A read at `t` needs every folded event to count at `t`, which holds when
//! `t ≥ sealed_until + guard`: offline the guard is 0 (events enter in arrival order, and
//! sealing stops at `t`'s own tile), online it is the allowed lateness (a folded event
//! arrived at most that long after `sealed_until`).

use std::collections::BTreeMap;

use crate::codec::{self, Reader, Writer};
use crate::function::{Aggregate, Error, EventTime, Input, Scalar, State};
use crate::window::{self, Window};

/// The aggregates of one view: each with its window; all share the view's hop.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The tile width, microseconds.
    pub hop: i64,
    /// Each aggregate and its window length (microseconds, a multiple of `hop`).
    pub aggregates: Vec<(Aggregate, i64)>,
    /// Per aggregate, which of an event's values it reads; none: `count` of events.
    pub inputs: Vec<Option<usize>>,
}

impl Spec {
    fn window(&self, i: usize) -> Window {
        Window {
            length: self.aggregates[i].1,
            hop: self.hop,
        }
    }

    /// What aggregate `i` reads of `event`.
    fn input<'e>(&self, i: usize, event: &'e Event) -> Input<'e> {
        match self.inputs[i] {
            None => Input::Int(1),
            Some(c) => input(&event.values[c]),
        }
    }
}

/// One event: its times, and its values (`None` is null), which the [`Spec`]'s
/// aggregates read by index: each value once, however many aggregates read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened and when it arrived.
    pub at: EventTime,
    /// The values its aggregates read ([`Spec::inputs`]).
    pub values: Box<[Option<Scalar>]>,
}

fn input(v: &Option<Scalar>) -> Input<'_> {
    match v {
        None => Input::Null,
        Some(Scalar::Int(v)) => Input::Int(*v),
        Some(Scalar::Float(v)) => Input::Float(*v),
        Some(Scalar::Str(v)) => Input::Str(v),
    }
}

/// What a read can refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// Asked at a time before what the folded tiles can answer exactly.
    #[error(
        "aggregates can be read as of {earliest} µs at the earliest (the tiles before it are folded); use a backfill for earlier times"
    )]
    TooOld {
        /// The earliest time a read is exact at.
        earliest: i64,
    },
    /// A finalize error (an int64 sum out of range).
    #[error(transparent)]
    Finalize(#[from] Error),
}

/// Events a tile keeps as they are before it folds them into one state per aggregate: a
/// few events take less memory and less work than a state per aggregate each (most
/// tiles of a sparse entity hold one or two).
const RAW_TILE: usize = 4;

/// One hop of an entity's sealed events: the events themselves while few, then one
/// partial state per aggregate. Reading either gives the same bits: every state is exact,
/// so folding an event into a run directly or through its tile's state is one sum.
#[derive(Debug, Clone)]
enum Tile {
    Raw(Vec<Event>),
    Folded(Vec<State>),
}

impl Tile {
    /// Adds this tile's events of aggregate `i` to `state`.
    fn merge_into(&self, spec: &Spec, i: usize, state: &mut State) {
        let aggregate = &spec.aggregates[i].0;
        match self {
            Tile::Folded(states) => aggregate.merge(state, &states[i]),
            Tile::Raw(events) => {
                for e in events {
                    aggregate.update(state, spec.input(i, e), e.at);
                }
            }
        }
    }

    /// Takes this tile's events of aggregate `i` out of `state`; `false` (and `state`
    /// unchanged) where the aggregate cannot take events out.
    fn unmerge_from(&self, spec: &Spec, i: usize, state: &mut State) -> bool {
        let aggregate = &spec.aggregates[i].0;
        match self {
            Tile::Folded(states) => aggregate.unmerge(state, &states[i]),
            Tile::Raw(events) => {
                let mut mine = aggregate.init();
                for e in events {
                    aggregate.update(&mut mine, spec.input(i, e), e.at);
                }
                aggregate.unmerge(state, &mine)
            }
        }
    }
}

/// A merged run of tiles `[lo, hi)` for one aggregate.
#[derive(Debug, Clone)]
struct Cached {
    lo: i64,
    hi: i64,
    state: State,
}

/// One entity's tiles and raw recent events for one view.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Every event before this (hop-aligned) is in `tiles`; `None`: nothing folded yet.
    sealed_until: Option<i64>,
    /// Tile index → its events, or one state per aggregate.
    tiles: BTreeMap<i64, Tile>,
    /// Events at or after `sealed_until`.
    recent: Vec<Event>,
    /// Per aggregate, the last merged run of tiles a read used.
    cache: Vec<Option<Cached>>,
}

impl Timeline {
    /// Adds one event.
    pub fn insert(&mut self, spec: &Spec, event: Event) {
        match self.sealed_until {
            Some(until) if event.at.event < until => self.fold(spec, &event),
            _ => self.recent.push(event),
        }
    }

    /// Folds an event into its tile, and into every cached run holding that tile.
    fn fold(&mut self, spec: &Spec, event: &Event) {
        let tile = event.at.event.div_euclid(spec.hop);
        for (i, (aggregate, _)) in spec.aggregates.iter().enumerate() {
            if let Some(Some(c)) = self.cache.get_mut(i)
                && c.lo <= tile
                && tile < c.hi
            {
                aggregate.update(&mut c.state, spec.input(i, event), event.at);
            }
        }
        match self
            .tiles
            .entry(tile)
            .or_insert_with(|| Tile::Raw(Vec::new()))
        {
            Tile::Raw(events) if events.len() < RAW_TILE => events.push(event.clone()),
            full @ Tile::Raw(_) => {
                let Tile::Raw(events) = std::mem::replace(full, Tile::Raw(Vec::new())) else {
                    unreachable!("matched a raw tile")
                };
                let mut states: Vec<State> =
                    spec.aggregates.iter().map(|(a, _)| a.init()).collect();
                for e in events.iter().chain(std::iter::once(event)) {
                    for (i, (aggregate, _)) in spec.aggregates.iter().enumerate() {
                        aggregate.update(&mut states[i], spec.input(i, e), e.at);
                    }
                }
                *full = Tile::Folded(states);
            }
            Tile::Folded(states) => {
                for (i, (aggregate, _)) in spec.aggregates.iter().enumerate() {
                    aggregate.update(&mut states[i], spec.input(i, event), event.at);
                }
            }
        }
    }

    /// Folds every raw event before `until` (rounded down to a hop) into tiles; never
    /// moves back.
    pub fn seal(&mut self, spec: &Spec, until: i64) {
        let until = until.div_euclid(spec.hop) * spec.hop;
        if self.sealed_until.is_some_and(|s| s >= until) {
            return;
        }
        self.sealed_until = Some(until);
        if !self.recent.iter().any(|e| e.at.event < until) {
            return;
        }
        let (fold, keep): (Vec<Event>, Vec<Event>) = std::mem::take(&mut self.recent)
            .into_iter()
            .partition(|e| e.at.event < until);
        self.recent = keep;
        for event in &fold {
            self.fold(spec, event);
        }
    }

    /// Drops the tiles no window asked at `t` or later can reach (and no cached run still
    /// holds: a run's tail is taken out of it tile by tile).
    pub fn expire(&mut self, spec: &Spec, t: i64) {
        let starts =
            (0..spec.aggregates.len()).map(|i| spec.window(i).start(t).div_euclid(spec.hop));
        let runs = self.cache.iter().flatten().map(|c| c.lo);
        let Some(first) = starts.chain(runs).min() else {
            return;
        };
        if self
            .tiles
            .first_key_value()
            .is_some_and(|(k, _)| *k < first)
        {
            self.tiles = self.tiles.split_off(&first);
        }
    }

    /// The earliest time a read is exact at, given `guard`.
    pub fn earliest(&self, guard: i64) -> i64 {
        self.sealed_until
            .map_or(i64::MIN, |s| s.saturating_add(guard))
    }

    /// Every aggregate as of `t`, in the spec's order; `guard` is 0 offline and the
    /// allowed lateness online (see the module's docs).
    pub fn read(
        &mut self,
        spec: &Spec,
        t: i64,
        guard: i64,
    ) -> Result<Vec<Option<Scalar>>, ReadError> {
        let earliest = self.earliest(guard);
        if t < earliest {
            return Err(ReadError::TooOld { earliest });
        }
        self.cache.resize(spec.aggregates.len(), None);
        let hi = self
            .sealed_until
            .map_or(i64::MIN, |s| s.div_euclid(spec.hop));
        let mut out = Vec::with_capacity(spec.aggregates.len());
        for (i, (aggregate, _)) in spec.aggregates.iter().enumerate() {
            let window = spec.window(i);
            let start = window.start(t);
            let lo = start.div_euclid(spec.hop);
            self.merge_run(spec, i, lo, hi);
            let counted = |e: &&Event| {
                window.covers(t, e.at.event) && window::arrived(t, e.at.event, e.at.created, None)
            };
            let cached = &self.cache[i]
                .as_ref()
                .expect("merge_run fills the cache")
                .state;
            let value = if self.recent.iter().any(|e| counted(&e)) {
                // The run and the head's events: a copy, so the run stays reusable.
                let mut state = cached.clone();
                for e in self.recent.iter().filter(counted) {
                    aggregate.update(&mut state, spec.input(i, e), e.at);
                }
                aggregate.finalize(&state)?
            } else {
                aggregate.finalize(cached)?
            };
            out.push(value);
        }
        Ok(out)
    }

    /// Makes the cache of aggregate `i` the merge of its tiles `[lo, hi)`: extended when
    /// only the head moved, merged again when the tail did.
    fn merge_run(&mut self, spec: &Spec, i: usize, lo: i64, hi: i64) {
        let aggregate = &spec.aggregates[i].0;
        let hi = hi.max(lo);
        let run = match self.cache[i].take() {
            Some(mut c) if c.lo == lo && c.hi <= hi => {
                for tile in self.tiles.range(c.hi..hi).map(|(_, t)| t) {
                    tile.merge_into(spec, i, &mut c.state);
                }
                c.hi = hi;
                c
            }
            // The tail moved forward, still inside the run: take the tiles it left out,
            // where that is exact (sums and counts are).
            Some(mut c) if c.lo < lo && lo <= c.hi && c.hi <= hi && aggregate.invertible() => {
                for tile in self.tiles.range(c.lo..lo).map(|(_, t)| t) {
                    tile.unmerge_from(spec, i, &mut c.state);
                }
                for tile in self.tiles.range(c.hi..hi).map(|(_, t)| t) {
                    tile.merge_into(spec, i, &mut c.state);
                }
                c.lo = lo;
                c.hi = hi;
                c
            }
            _ => {
                let mut state = aggregate.init();
                for tile in self.tiles.range(lo..hi).map(|(_, t)| t) {
                    tile.merge_into(spec, i, &mut state);
                }
                Cached { lo, hi, state }
            }
        };
        self.cache[i] = Some(run);
    }

    /// Raw events held (not yet folded).
    pub fn raw_events(&self) -> usize {
        self.recent.len()
    }

    /// Tiles held.
    pub fn tiles(&self) -> usize {
        self.tiles.len()
    }
}

/// The first byte of [`Timeline::encode`]'s form: its version.
const FORMAT: u8 = 1;

impl Event {
    fn encode(&self, w: &mut Writer<'_>) {
        self.at.encode(w);
        w.len(self.values.len());
        for v in &self.values {
            Scalar::encode(v.as_ref(), w);
        }
    }

    /// Reads an event of `spec`: as many values as its aggregates read, each of the type
    /// an aggregate reading it takes.
    fn decode(spec: &Spec, r: &mut Reader<'_>) -> Result<Event, codec::Error> {
        let at = EventTime::decode(r)?;
        let n = r.len("an event's values", 1)?;
        let wanted = spec
            .inputs
            .iter()
            .flatten()
            .map(|&c| c + 1)
            .max()
            .unwrap_or(0);
        if n != wanted {
            return Err(format!(
                "an event of {n} values, where the view reads {wanted}"
            ));
        }
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(Scalar::decode(r)?);
        }
        for (i, (aggregate, _)) in spec.aggregates.iter().enumerate() {
            // A count reads any value; the others, values of their column's type.
            if let Some(c) = spec.inputs[i]
                && let Some(v) = &values[c]
                && aggregate.input.is_some()
                && !v.fits(aggregate.input)
            {
                return Err(format!(
                    "an event value {v:?} of another type than its column's"
                ));
            }
        }
        Ok(Event {
            at,
            values: values.into_boxed_slice(),
        })
    }
}

impl Event {
    /// Appends the byte form of this event alone (as [`Timeline::with_recent`] reads it).
    pub fn encode_bytes(&self, out: &mut Vec<u8>) {
        self.encode(&mut Writer(out));
    }
}

impl Timeline {
    /// The time before which every event is folded into tiles (none before the first
    /// sealing).
    pub fn sealed_until(&self) -> Option<i64> {
        self.sealed_until
    }

    /// Whether [`Timeline::seal`] at `until` would fold anything or move the sealing:
    /// false when the timeline is sealed to `until`'s hop already.
    pub fn would_seal(&self, spec: &Spec, until: i64) -> bool {
        let until = until.div_euclid(spec.hop) * spec.hop;
        self.sealed_until.is_none_or(|s| s < until)
    }

    /// The raw events, those at or after [`Timeline::sealed_until`].
    pub fn recent(&self) -> &[Event] {
        &self.recent
    }

    /// Appends the byte form of the timeline without its raw events (a store that keeps
    /// them apart, as a list it appends to, reads both back with
    /// [`Timeline::with_recent`]).
    pub fn encode_sealed(&self, spec: &Spec, out: &mut Vec<u8>) {
        self.encode_with(spec, out, &[]);
    }

    /// [`Timeline::decode`] of `sealed` (a form without raw events), then each of
    /// `recent` as one event ([`Event::encode_bytes`]), checked to lie at or after the
    /// sealing.
    pub fn with_recent<'a>(
        spec: &Spec,
        sealed: &[u8],
        recent: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Timeline, codec::Error> {
        let mut timeline = Timeline::decode(spec, sealed)?;
        if !timeline.recent.is_empty() {
            return Err("raw events inside the sealed form".into());
        }
        timeline.add_recent(spec, recent)?;
        Ok(timeline)
    }

    /// Adds raw events, each in [`Event::encode_bytes`]'s form, checked to lie at or after
    /// the sealing; on an error, adds none.
    pub fn add_recent<'a>(
        &mut self,
        spec: &Spec,
        recent: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), codec::Error> {
        let mut added = Vec::new();
        for bytes in recent {
            let r = &mut Reader::new(bytes);
            let e = Event::decode(spec, r)?;
            r.finish()?;
            if self.sealed_until.is_some_and(|s| e.at.event < s) {
                return Err("a raw event before the sealed time".into());
            }
            added.push(e);
        }
        self.recent.extend(added);
        Ok(())
    }

    /// Appends the byte form of this timeline of `spec` (its tiles and raw events; not
    /// the read cache, which a decoded timeline rebuilds).
    pub fn encode(&self, spec: &Spec, out: &mut Vec<u8>) {
        self.encode_with(spec, out, &self.recent);
    }

    fn encode_with(&self, spec: &Spec, out: &mut Vec<u8>, recent: &[Event]) {
        let w = &mut Writer(out);
        w.u8(FORMAT);
        match self.sealed_until {
            None => w.u8(0),
            Some(until) => {
                w.u8(1);
                w.i64(until);
            }
        }
        w.len(self.tiles.len());
        for (index, tile) in &self.tiles {
            w.i64(*index);
            match tile {
                Tile::Raw(events) => {
                    w.u8(0);
                    w.len(events.len());
                    for e in events {
                        e.encode(w);
                    }
                }
                Tile::Folded(states) => {
                    w.u8(1);
                    for (state, (aggregate, _)) in states.iter().zip(&spec.aggregates) {
                        aggregate.encode_state(state, w);
                    }
                }
            }
        }
        w.len(recent.len());
        for e in recent {
            e.encode(w);
        }
    }

    /// Reads a timeline of `spec` from [`Timeline::encode`]'s form. Bytes of another
    /// view or damaged ones are refused with what is wrong: every state has its
    /// aggregate's shape, tiles are in order, raw events sit where the sealing puts them.
    pub fn decode(spec: &Spec, bytes: &[u8]) -> Result<Timeline, codec::Error> {
        let r = &mut Reader::new(bytes);
        match r.u8("the format")? {
            FORMAT => {}
            other => return Err(format!("a timeline of unknown format {other}")),
        }
        let sealed_until = match r.u8("the sealing")? {
            0 => None,
            1 => Some(r.i64("the sealed time")?),
            other => return Err(format!("a sealing of unknown form {other}")),
        };
        if sealed_until.is_some_and(|s| s.rem_euclid(spec.hop) != 0) {
            return Err("a sealed time that is not on a hop".into());
        }
        let limit = sealed_until.map_or(i64::MIN, |s| s.div_euclid(spec.hop));
        let mut tiles = BTreeMap::new();
        let n = r.len("the tiles", 9)?;
        for _ in 0..n {
            let index = r.i64("a tile's index")?;
            if index >= limit || tiles.last_key_value().is_some_and(|(&k, _)| k >= index) {
                return Err(format!("tile {index} out of order or past the sealing"));
            }
            let in_tile = |e: &Event| e.at.event.div_euclid(spec.hop) == index;
            let tile = match r.u8("a tile's form")? {
                0 => {
                    let events = r.len("a tile's events", 17)?;
                    if events == 0 || events > RAW_TILE {
                        return Err(format!("a raw tile of {events} events"));
                    }
                    let mut raw = Vec::with_capacity(events);
                    for _ in 0..events {
                        let e = Event::decode(spec, r)?;
                        if !in_tile(&e) {
                            return Err(format!("an event outside its tile {index}"));
                        }
                        raw.push(e);
                    }
                    Tile::Raw(raw)
                }
                1 => Tile::Folded(
                    spec.aggregates
                        .iter()
                        .map(|(a, _)| a.decode_state(r))
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(format!("a tile of unknown form {other}")),
            };
            tiles.insert(index, tile);
        }
        let n = r.len("the raw events", 17)?;
        let mut recent = Vec::with_capacity(n);
        for _ in 0..n {
            let e = Event::decode(spec, r)?;
            if sealed_until.is_some_and(|s| e.at.event < s) {
                return Err("a raw event before the sealed time".into());
            }
            recent.push(e);
        }
        r.finish()?;
        Ok(Timeline {
            sealed_until,
            tiles,
            recent,
            cache: Vec::new(),
        })
    }
}

/// The backfill's caller: every aggregate at each time in `rows`, from `events` (in any
/// order), for an event source allowing `lateness` (late events are dropped, as push
/// refuses them). Row `r` of the result answers `rows[r]`.
pub fn sweep(
    spec: &Spec,
    events: Vec<Event>,
    rows: &[i64],
    lateness: Option<i64>,
) -> Result<Vec<Vec<Option<Scalar>>>, Error> {
    let mut arrivals: Vec<Event> = events
        .into_iter()
        .filter(|e| lateness.is_none_or(|l| !window::is_late(e.at.event, e.at.created, l)))
        .collect();
    arrivals.sort_by_key(|e| e.at.created);
    let mut arrivals = arrivals.into_iter().peekable();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&r| rows[r]);
    let mut timeline = Timeline::default();
    let mut out = vec![Vec::new(); rows.len()];
    for r in order {
        let t = rows[r];
        while let Some(event) = arrivals.next_if(|e| e.at.created < t) {
            timeline.insert(spec, event);
        }
        // Every inserted event arrived before t, so tiles before t's own are whole.
        timeline.seal(spec, t);
        timeline.expire(spec, t);
        out[r] = match timeline.read(spec, t, 0) {
            Ok(values) => values,
            Err(ReadError::Finalize(e)) => return Err(e),
            Err(ReadError::TooOld { .. }) => {
                unreachable!("rows are read in time order and sealing stops at each row's time")
            }
        };
    }
    Ok(out)
}
