//! The local store's event sources: each online aggregated view's timelines (one per
//! entity key), and the events logged but not yet flushed to the offline log.

use std::time::Instant;

use skewless_aggregate::{ReadError, Timeline};
use skewless_core::assemble::Value;
use skewless_core::key::KeyBuf;
use skewless_core::now_micros;

use super::*;
use crate::events::{EventSchema, EventView, History};
use crate::offline_log::{self, LogSchema};

/// One entity's timeline, and the pushes of its events that are logged (or being logged)
/// but not yet folded in.
#[derive(Debug, Default)]
pub(crate) struct KeyState {
    timeline: Timeline,
    /// Appends holding events of this key that are not in the timeline yet.
    in_flight: u32,
    /// The earliest arrival among them (kept until none is left: a read may wait a little
    /// longer than needed, never less).
    oldest_in_flight: i64,
}

/// How long a read waits for an in-flight push of its entity before giving up.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One online aggregated view: its timelines, by encoded entity key.
#[derive(Debug)]
pub(crate) struct AggView {
    pub(crate) view: Arc<EventView>,
    pub(crate) fingerprint: u64,
    pub(crate) log: LogSchema,
    pub(crate) timelines: DashMap<Box<[u8]>, KeyState>,
}

impl AggView {
    fn new(view: Arc<EventView>, log: LogSchema) -> Self {
        Self {
            fingerprint: view.fingerprint(),
            view,
            log,
            timelines: DashMap::new(),
        }
    }

    /// The state of `key`, created if new (a known key costs no allocation).
    fn state(&self, key: &[u8]) -> dashmap::mapref::one::RefMut<'_, Box<[u8]>, KeyState> {
        match self.timelines.get_mut(key) {
            Some(state) => state,
            None => self.timelines.entry(Box::from(key)).or_default(),
        }
    }

    /// Marks events of `rows` as in flight, or unmarks them.
    fn mark(
        &self,
        dtypes: &[DType],
        rows: &[Box<[u8]>],
        in_flight: bool,
    ) -> std::result::Result<(), String> {
        let mut key = KeyBuf::new();
        for row in rows {
            if !self.view.row_key(dtypes, row, &mut key)? {
                continue;
            }
            let mut state = self.state(key.as_bytes());
            if in_flight {
                let created = row::created_ts(row);
                if state.in_flight == 0 || created < state.oldest_in_flight {
                    state.oldest_in_flight = created;
                }
                state.in_flight += 1;
            } else {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Folds logged events into their keys' timelines; `marked`: they were marked in
    /// flight here, and are no longer.
    fn insert(
        &self,
        dtypes: &[DType],
        rows: &[Box<[u8]>],
        now: i64,
        marked: bool,
    ) -> std::result::Result<(), String> {
        let spec = &self.view.aggregates.spec;
        let mut key = KeyBuf::new();
        let mut first_error = None;
        for row in rows {
            match self.view.row_key(dtypes, row, &mut key) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(why) => {
                    first_error.get_or_insert(why);
                    continue;
                }
            }
            let event = self.view.row_event(dtypes, row);
            let mut state = self.state(key.as_bytes());
            if marked {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
            match event {
                Ok(event) => state.timeline.insert(spec, event),
                Err(why) => {
                    first_error.get_or_insert(why);
                    continue;
                }
            }
            self.view.settle(&mut state.timeline, now);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Every aggregate of `keys` as of `at` into `out` (a key with no events has empty
    /// windows: counts 0, sums 0, the rest null; present, as the backfill answers it). A
    /// key with a push in flight whose events arrived before `at` is read once they are
    /// in: the push stamped them, so the backfill at `at` counts them.
    pub(crate) fn read(&self, keys: &[&[u8]], at: i64, out: &mut ViewColumnsBuilder) -> Result<()> {
        let spec = &self.view.aggregates.spec;
        let now = now_micros();
        let failed = |e: ReadError| self.view.read_failed(at, e);
        for key in keys {
            let started = Instant::now();
            let values = loop {
                match self.timelines.get_mut(*key) {
                    Some(state) if state.in_flight > 0 && state.oldest_in_flight < at => {
                        drop(state);
                        if started.elapsed() > IN_FLIGHT_WAIT {
                            return Err(Error::Unavailable(format!(
                                "feature view `{}`: a push of this entity's events has not finished in {IN_FLIGHT_WAIT:?}; retry",
                                self.view.name()
                            )));
                        }
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                    Some(mut state) => {
                        self.view.settle(&mut state.timeline, now.min(at));
                        break state.timeline.read(spec, at, self.view.lateness);
                    }
                    None => break Timeline::default().read(spec, at, self.view.lateness),
                }
            }
            .map_err(failed)?;
            out.push_row(at, at, |i| {
                values[i].as_ref().map_or(Value::Null, |v| v.value())
            });
        }
        Ok(())
    }

    /// Keys, tiles and raw (unsealed) events held.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        let (mut tiles, mut raw) = (0, 0);
        for t in self.timelines.iter() {
            tiles += t.timeline.tiles() as u64;
            raw += t.timeline.raw_events() as u64;
        }
        (self.timelines.len() as u64, tiles, raw)
    }
}

/// An event source as the store holds it.
#[derive(Debug)]
pub(crate) struct SourceData {
    pub(crate) log: LogSchema,
    pub(crate) dtypes: Vec<DType>,
    pub(crate) views: Vec<Arc<AggView>>,
    /// The source's allowed lateness, µs ([`EventSchema::lateness`]).
    pub(crate) lateness: Option<i64>,
}

impl SourceData {
    /// Marks events about to be logged as in flight in every view (reads of their keys
    /// wait for them), or unmarks them.
    pub(crate) fn mark(&self, rows: &[Box<[u8]>], in_flight: bool) {
        for view in &self.views {
            if let Err(why) = view.mark(&self.dtypes, rows, in_flight) {
                tracing::error!(view = view.view.name(), error = %why, "an event being logged does not decode");
            }
        }
    }

    /// Folds logged events into every view's timelines; `marked`: they were marked in
    /// flight in this source's views.
    pub(crate) fn apply(&self, rows: &[Box<[u8]>], now: i64, marked: bool) {
        for view in &self.views {
            if let Err(why) = view.insert(&self.dtypes, rows, now, marked) {
                // Rows were encoded from checked columns moments ago: a bug.
                tracing::error!(view = view.view.name(), error = %why, "an event that was just logged does not decode; it is in the log but not in the tiles");
            }
        }
    }
}

/// The event sources and aggregated views, shared by the store and its writer.
#[derive(Debug, Default)]
pub(crate) struct EventState {
    pub(crate) sources: RwLock<HashMap<String, Arc<SourceData>>>,
    pub(crate) views: RwLock<HashMap<String, Arc<AggView>>>,
}

/// Events logged but not yet in the offline log, per log, in LSN order.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    logs: Vec<(LogSchema, Vec<Box<[u8]>>)>,
    events: usize,
    since: Option<Instant>,
}

impl Pending {
    pub(crate) fn push(&mut self, log: &LogSchema, rows: impl IntoIterator<Item = Box<[u8]>>) {
        let index = match self.logs.iter().position(|(l, _)| l == log) {
            Some(i) => i,
            None => {
                self.logs.push((log.clone(), Vec::new()));
                self.logs.len() - 1
            }
        };
        let before = self.logs[index].1.len();
        self.logs[index].1.extend(rows);
        self.events += self.logs[index].1.len() - before;
        self.since.get_or_insert_with(Instant::now);
    }

    pub(crate) fn events(&self) -> usize {
        self.events
    }

    /// Everything pending, leaving this empty.
    pub(crate) fn take(&mut self) -> Pending {
        std::mem::take(self)
    }

    /// Adds `other`'s events after these, log by log.
    pub(crate) fn absorb(&mut self, other: Pending) {
        for (log, rows) in other.logs {
            self.push(&log, rows);
        }
    }

    /// How long the oldest unflushed event has waited.
    pub(crate) fn age(&self) -> Option<std::time::Duration> {
        self.since.map(|s| s.elapsed())
    }

    /// Writes every pending event to its offline log, one file per log; what is written
    /// is forgotten, what fails stays for the next try.
    pub(crate) fn flush(&mut self) -> Result<usize> {
        let mut written = 0;
        while let Some((log, rows)) = self.logs.first() {
            if !rows.is_empty() {
                offline_log::write(log, rows)?;
                written += rows.len();
            }
            let (_, rows) = self.logs.remove(0);
            self.events -= rows.len();
        }
        self.since = None;
        Ok(written)
    }
}

/// Event sources and aggregated views, by name.
pub(crate) type Built = (
    HashMap<String, Arc<SourceData>>,
    HashMap<String, Arc<AggView>>,
);

/// Builds the state for `schemas`: views whose fingerprint and log are unchanged keep
/// their timelines (unless named in `force`); new or changed ones are built from
/// `history` as of `now`.
pub(crate) fn rebuild(
    current: &EventState,
    schemas: &[EventSchema],
    history: &History,
    force: &[String],
    now: i64,
) -> Result<Built> {
    let old = current.views.read().unwrap_or_else(|e| e.into_inner());
    let mut sources = HashMap::new();
    let mut views = HashMap::new();
    for schema in schemas {
        let log = LogSchema::of(schema);
        let mut fed = Vec::new();
        for view in &schema.views {
            let kept = old
                .get(view.name())
                .filter(|v| v.fingerprint == view.fingerprint() && v.log == log)
                .filter(|_| !force.iter().any(|f| f == view.name()))
                .cloned();
            let data = match kept {
                Some(data) => data,
                None => {
                    let started = Instant::now();
                    let data = AggView::new(view.clone(), log.clone());
                    // The earliest read the tiles can answer is up to a hop before
                    // `now`; its window reaches a window and a hop further back.
                    let since = now
                        .saturating_sub(view.aggregates.reach())
                        .saturating_sub(view.aggregates.spec.hop);
                    let events = history(schema, view, since).map_err(|reason| Error::History {
                        view: view.name().to_owned(),
                        reason,
                    })?;
                    let count = events.len();
                    for (key, timeline) in view.timelines(events, now) {
                        data.timelines.insert(
                            key,
                            KeyState {
                                timeline,
                                ..KeyState::default()
                            },
                        );
                    }
                    tracing::info!(
                        view = view.name(),
                        events = count,
                        keys = data.timelines.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "aggregate tiles built from the offline log"
                    );
                    Arc::new(data)
                }
            };
            views.insert(view.name().to_owned(), data.clone());
            fed.push(data);
        }
        sources.insert(
            schema.source.clone(),
            Arc::new(SourceData {
                lateness: schema.lateness,
                dtypes: log.dtypes(),
                log,
                views: fed,
            }),
        );
    }
    Ok((sources, views))
}
