//! The local store's event sources: each online aggregated view's timelines (one per
//! entity key), and the events logged but not yet flushed to the offline log.

use std::path::Path;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use skewless_aggregate::{EventTime, ReadError, Timeline};
use skewless_core::assemble::{ColumnBuilder, Value};
use skewless_core::key::KeyBuf;
use skewless_core::now_micros;

use super::*;
use crate::events::{EventSchema, EventView, History};

/// What identifies an offline log and its layout: carried by every event record, so that
/// recovery can flush a record whatever the definitions say by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogSchema {
    pub(crate) source: String,
    pub(crate) dir: PathBuf,
    pub(crate) timestamp_field: String,
    pub(crate) created_field: String,
    pub(crate) columns: Vec<(String, DType)>,
}

impl LogSchema {
    pub(crate) fn of(schema: &EventSchema) -> Self {
        Self {
            source: schema.source.clone(),
            dir: schema.log_dir.clone(),
            timestamp_field: schema.timestamp_field.clone(),
            created_field: schema.created_field.clone(),
            columns: schema.columns.clone(),
        }
    }

    pub(crate) fn dtypes(&self) -> Vec<DType> {
        self.columns.iter().map(|(_, d)| *d).collect()
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        wal::put_str(out, &self.source);
        wal::put_str(out, &self.dir.to_string_lossy());
        wal::put_str(out, &self.timestamp_field);
        wal::put_str(out, &self.created_field);
        out.extend_from_slice(&(self.columns.len() as u16).to_le_bytes());
        for (name, dtype) in &self.columns {
            wal::put_str(out, name);
            wal::put_str(out, dtype.name());
        }
    }

    pub(crate) fn decode(c: &mut wal::Cursor<'_>) -> Option<Self> {
        let source = c.str()?;
        let dir = PathBuf::from(c.str()?);
        let timestamp_field = c.str()?;
        let created_field = c.str()?;
        let n = c.u16()?;
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            let name = c.str()?;
            let dtype: DType = c.str()?.parse().ok()?;
            columns.push((name, dtype));
        }
        Some(Self {
            source,
            dir,
            timestamp_field,
            created_field,
            columns,
        })
    }
}

/// The file name of the offline log file holding events `first..=last` (LSNs).
pub(crate) fn log_file_name(first: u64, last: u64) -> String {
    format!("events-{first:020}-{last:020}.parquet")
}

/// The last LSN in an offline log directory's files (0 if none): every event of a record
/// with a larger LSN is not flushed yet.
pub(crate) fn flushed_through(dir: &Path) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut last = 0;
    for entry in entries {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("events-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(_, last)| last.parse::<u64>().ok())
        {
            last = last.max(n);
        }
    }
    Ok(last)
}

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

    /// Seals what the lateness allows as of `now`, and drops what no read can reach.
    fn settle(&self, timeline: &mut Timeline, now: i64) {
        let spec = &self.view.aggregates.spec;
        timeline.seal(spec, now.saturating_sub(self.view.lateness));
        timeline.expire(spec, timeline.earliest(self.view.lateness));
    }

    /// The entity key of a logged event (a row of the source's columns); none for a null
    /// key, which matches nothing, as offline.
    fn key(
        &self,
        dtypes: &[DType],
        row: &[u8],
        key: &mut KeyBuf,
    ) -> std::result::Result<bool, String> {
        key.clear();
        for &(c, key_type) in &self.view.keys {
            match row::value(row, dtypes, c)? {
                Value::Int64(v) => key.push_int(v),
                Value::String(v) => key.push_str(v),
                Value::Null => return Ok(false),
                other => {
                    return Err(format!(
                        "join key column {c} holds {other:?}, not a {}",
                        key_type.name()
                    ));
                }
            }
        }
        Ok(true)
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
            if !self.key(dtypes, row, &mut key)? {
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
            match self.key(dtypes, row, &mut key) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(why) => {
                    first_error.get_or_insert(why);
                    continue;
                }
            }
            let at = EventTime {
                event: row::event_ts(row),
                created: row::created_ts(row),
            };
            let mut broken = None;
            let event = self.view.aggregates.event(at, |i| {
                row::value(row, dtypes, self.view.inputs[i]).unwrap_or_else(|why| {
                    broken.get_or_insert(why);
                    Value::Null
                })
            });
            let mut state = self.state(key.as_bytes());
            if marked {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
            if let Some(why) = broken {
                first_error.get_or_insert(why);
                continue;
            }
            state.timeline.insert(spec, event);
            self.settle(&mut state.timeline, now);
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
        let failed = |e: ReadError| match e {
            ReadError::TooOld { earliest } => Error::TooOld {
                view: self.view.name().to_owned(),
                reason: format!(
                    "asked as of {}, but its tiles answer from {} on; use a backfill for earlier times",
                    skewless_core::format_timestamp(at),
                    skewless_core::format_timestamp(earliest)
                ),
            },
            ReadError::Finalize(e) => Error::Aggregate {
                view: self.view.name().to_owned(),
                reason: e.to_string(),
            },
        };
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
                        self.settle(&mut state.timeline, now.min(at));
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
                write_log_file(log, rows)?;
                written += rows.len();
            }
            let (_, rows) = self.logs.remove(0);
            self.events -= rows.len();
        }
        self.since = None;
        Ok(written)
    }
}

/// Writes `rows` (events of `log`, in LSN order) to one offline log file, atomically.
fn write_log_file(log: &LogSchema, rows: &[Box<[u8]>]) -> Result<()> {
    let lsn = |row: &[u8]| row::order_key(row).2;
    let (first, last) = (lsn(&rows[0]), lsn(&rows[rows.len() - 1]));
    let path = log.dir.join(log_file_name(first, last));
    let dtypes = log.dtypes();
    let corrupt = |reason: String| Error::Corrupt {
        path: path.clone(),
        reason: format!("an event to flush does not decode: {reason}"),
    };
    let mut builders: Vec<ColumnBuilder> = dtypes
        .iter()
        .map(|d| ColumnBuilder::new(*d, rows.len()))
        .collect();
    let mut times = ColumnBuilder::new(DType::Timestamp, rows.len());
    let mut created = ColumnBuilder::new(DType::Timestamp, rows.len());
    for row in rows {
        if !row::fits(row, dtypes.len()) {
            return Err(corrupt("shorter than its layout".into()));
        }
        for (i, b) in builders.iter_mut().enumerate() {
            b.push(row::value(row, &dtypes, i).map_err(corrupt)?);
        }
        times.push(Value::Timestamp(row::event_ts(row)));
        created.push(Value::Timestamp(row::created_ts(row)));
    }
    let mut fields: Vec<Field> = log
        .columns
        .iter()
        .map(|(name, d)| Field::new(name, d.arrow_type(), true))
        .collect();
    fields.push(Field::new(
        &log.timestamp_field,
        DType::Timestamp.arrow_type(),
        false,
    ));
    fields.push(Field::new(
        &log.created_field,
        DType::Timestamp.arrow_type(),
        false,
    ));
    let mut columns: Vec<arrow_array::ArrayRef> =
        builders.iter_mut().map(ColumnBuilder::finish).collect();
    columns.push(times.finish());
    columns.push(created.finish());
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| corrupt(format!("assembling the batch: {e}")))?;
    std::fs::create_dir_all(&log.dir).map_err(io(&log.dir))?;
    let file = AtomicFile::create(&path).map_err(io(&path))?;
    let parquet = |e: parquet::errors::ParquetError| Error::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(parquet)?;
    writer.write(&batch).map_err(parquet)?;
    let file = writer.into_inner().map_err(parquet)?;
    file.commit().map_err(io(&path))?;
    Ok(())
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
                    let spec = &view.aggregates.spec;
                    for (key, event) in events {
                        let late = skewless_aggregate::window::is_late(
                            event.at.event,
                            event.at.created,
                            view.lateness,
                        );
                        if !late {
                            data.timelines
                                .entry(key)
                                .or_default()
                                .timeline
                                .insert(spec, event);
                        }
                    }
                    for mut t in data.timelines.iter_mut() {
                        data.settle(&mut t.timeline, now);
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
                dtypes: log.dtypes(),
                log,
                views: fed,
            }),
        );
    }
    Ok((sources, views))
}
