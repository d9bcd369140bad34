//! [`LocalStore`]: sharded maps in memory (here), a write-ahead log written by one thread
//! with group commit (`writer`, `crate::wal`), periodic snapshots (`snapshot`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use skewless_core::DType;
use skewless_core::assemble::ViewColumnsBuilder;
use skewless_core::fs::{AtomicFile, remove_leftovers};

use crate::events::{EventBatch, EventSchema, History};
use crate::row;
use crate::wal::{self, KeyedRow, Record, Segment};
use crate::{AggregateCounts, Error, OnlineStore, Result, StoreStats, ViewSchema, WriteBatch, io};

mod events;
mod flusher;
mod snapshot;
mod writer;

use events::{EventState, Pending, SourceData};

use snapshot::{SNAPSHOT, load_snapshot};
use writer::Writer;

/// Rows per log record: keeps records far below the record cap.
const ROWS_PER_RECORD: usize = 65_536;

/// When to snapshot.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Snapshot once this many log bytes were written since the last one.
    pub snapshot_after_bytes: u64,
    /// Snapshot at least this often while there are writes.
    pub snapshot_interval: Duration,
    /// At open, keep every intact log record and skip damaged ones (their rows are lost,
    /// and logged) instead of refusing to start. Off: damage is an error naming the
    /// segment and byte, and nothing is changed.
    pub recover_skip_corrupt: bool,
    /// Flush logged events to their offline log once the oldest has waited this long.
    pub event_flush_interval: Duration,
}

/// Flush logged events to their offline log once this many wait.
const FLUSH_EVENTS: usize = 1 << 20;

impl StoreOptions {
    /// Snapshots after `snapshot_after_bytes` of log or `snapshot_interval`, whichever
    /// comes first.
    pub fn new(snapshot_after_bytes: u64, snapshot_interval: Duration) -> Self {
        Self {
            snapshot_after_bytes,
            snapshot_interval,
            recover_skip_corrupt: false,
            event_flush_interval: Duration::from_secs(60),
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            snapshot_after_bytes: 256 << 20,
            snapshot_interval: Duration::from_secs(300),
            recover_skip_corrupt: false,
            event_flush_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
struct ViewData {
    schema: ViewSchema,
    dtypes: Vec<DType>,
    fingerprint: u64,
    rows: DashMap<Box<[u8]>, Box<[u8]>>,
    /// Key and row bytes held.
    bytes: AtomicU64,
}

impl ViewData {
    fn new(schema: ViewSchema) -> Self {
        Self {
            dtypes: schema.dtypes(),
            fingerprint: schema.fingerprint(),
            schema,
            rows: DashMap::new(),
            bytes: AtomicU64::new(0),
        }
    }

    /// Keeps the row with the larger `(event_ts, created_ts, lsn)`.
    fn apply(&self, key: Box<[u8]>, row: Box<[u8]>) {
        match self.rows.entry(key) {
            Entry::Occupied(mut stored) => {
                if row::order_key(&row) > row::order_key(stored.get()) {
                    let (new, old) = (row.len() as u64, stored.get().len() as u64);
                    stored.insert(row);
                    self.bytes.fetch_add(new, Ordering::Relaxed);
                    self.bytes.fetch_sub(old, Ordering::Relaxed);
                }
            }
            Entry::Vacant(slot) => {
                let new = (slot.key().len() + row.len()) as u64;
                slot.insert(row);
                self.bytes.fetch_add(new, Ordering::Relaxed);
            }
        }
    }
}

type Views = RwLock<HashMap<String, Arc<ViewData>>>;

enum Command {
    Rows {
        view: Arc<ViewData>,
        rows: Vec<KeyedRow>,
        ack: SyncSender<Result<()>>,
    },
    SetView {
        name: String,
        schema: Option<ViewSchema>,
        ack: SyncSender<Result<()>>,
    },
    /// Events to log. The appender marked them in flight in `marked`'s views and folds
    /// them once the answer names the source they were logged under (`source`, the
    /// current one at commit: another when an apply rebuilt it meanwhile). A refusal
    /// unmarks them.
    Events {
        source: Arc<SourceData>,
        marked: Arc<SourceData>,
        rows: Vec<Box<[u8]>>,
        ack: SyncSender<Result<Arc<SourceData>>>,
    },
    /// Flushes pending events, then builds the state for new event sources.
    SetEvents {
        sources: Vec<EventSchema>,
        history: History,
        /// Views built again even if unchanged.
        rebuild: Vec<String>,
        ack: SyncSender<Result<()>>,
    },
    /// Flushes pending events to their offline logs.
    Flush { ack: SyncSender<Result<()>> },
}

#[derive(Debug, Default)]
struct Counters {
    wal_bytes_since_snapshot: AtomicU64,
    pending: AtomicU64,
    snapshots: AtomicU64,
    snapshotting: AtomicBool,
    /// Whether the last log append failed (writes are being refused).
    refusing: AtomicBool,
    /// Writes refused because the log could not take them.
    failed_writes: AtomicU64,
    /// Events logged but not yet in their offline log.
    events_unflushed: AtomicU64,
}

/// The in-process online store of one data directory.
#[derive(Debug)]
pub struct LocalStore {
    views: Arc<Views>,
    events: Arc<EventState>,
    commands: Mutex<Option<Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    _lock: File,
}

impl LocalStore {
    /// Opens the store under `dir`: loads the snapshot, replays the log after it (dropping
    /// a torn tail left by a crash), and starts the log writer. Rows of views not in
    /// `views`, or written under other features, are not loaded.
    pub fn open(dir: &Path, views: &[ViewSchema], options: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(Error::Locked(dir.to_owned()));
        }
        // A snapshot a crash interrupted is a temporary file nothing will commit.
        let leftovers = remove_leftovers(dir).map_err(io(dir))?;
        if leftovers > 0 {
            tracing::info!(files = leftovers, "removed unfinished snapshot files");
        }
        let started = Instant::now();
        let map: HashMap<String, Arc<ViewData>> = views
            .iter()
            .map(|s| (s.name.clone(), Arc::new(ViewData::new(s.clone()))))
            .collect();
        let views = Arc::new(RwLock::new(map));
        let mut max_lsn = 0u64;
        let start_segment = load_snapshot(&dir.join(SNAPSHOT), &views, &mut max_lsn)?;
        let segments = wal::segments(dir)?;
        // A store's first segment is 0, and only a snapshot's clean-up deletes segments:
        // a log that starts later without a snapshot has lost the rows the snapshot held.
        if let Some(&first) = segments.first()
            && start_segment == 0
            && first > 0
        {
            return Err(Error::Corrupt {
                path: dir.join(SNAPSHOT),
                reason: format!(
                    "missing, but the log starts at segment {first}: the rows written before it were only in the snapshot. Restore {SNAPSHOT} from a backup; or, to start with an empty store, move {} aside and materialize again",
                    dir.display()
                ),
            });
        }
        let mut replayed = 0usize;
        let mut skipped_bytes = 0u64;
        let mut pending = Pending::default();
        let mut flushed: HashMap<PathBuf, u64> = HashMap::new();
        for (i, &number) in segments.iter().enumerate() {
            let path = wal::segment_path(dir, number);
            if number < start_segment {
                // Covered by the snapshot; left over from an interrupted clean-up.
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let read = wal::read_segment(&path, options.recover_skip_corrupt)?;
            if let wal::Tail::Torn { at } = read.tail {
                if i + 1 != segments.len() {
                    if !options.recover_skip_corrupt {
                        return Err(wal::corrupt_middle(&path, at));
                    }
                    tracing::error!(path = %path.display(), at, "skipping the damaged end of a closed log segment (--recover-skip-corrupt); its rows are lost");
                } else {
                    tracing::warn!(path = %path.display(), at, "dropping the torn tail of the log (a write that was never acknowledged)");
                    wal::truncate(&path, at)?;
                }
            }
            replayed += read.records.len();
            skipped_bytes += read.skipped.iter().map(|d| d.resumes - d.at).sum::<u64>();
            replay(
                &views,
                read.records,
                &mut max_lsn,
                &mut pending,
                &mut flushed,
            )?;
        }
        // Events a crash left out of their offline log go there before anything else.
        if pending.events() > 0 {
            let events = pending.flush()?;
            tracing::info!(events, "flushed logged events to their offline logs");
        }
        for last in flushed.values() {
            max_lsn = max_lsn.max(*last);
        }
        let next_segment = segments
            .last()
            .map_or(start_segment, |n| n + 1)
            .max(start_segment);
        let segment = Segment::create(dir, next_segment)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let counters = Arc::new(Counters::default());
        let events = Arc::new(EventState::default());
        let flusher = flusher::Flusher::spawn(counters.clone()).map_err(io(dir))?;
        let writer = Writer {
            dir: dir.to_owned(),
            views: views.clone(),
            events: events.clone(),
            pending,
            flusher,
            segment,
            next_lsn: max_lsn + 1,
            counters: counters.clone(),
            options,
            last_snapshot: Instant::now(),
            failed: None,
            snapshot_thread: None,
        };
        let handle = std::thread::Builder::new()
            .name("skewless-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(io(dir))?;
        let store = LocalStore {
            views,
            events,
            commands: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            counters,
            _lock: lock,
        };
        tracing::info!(
            dir = %dir.display(),
            records = replayed,
            damaged_bytes_skipped = skipped_bytes,
            rows = store.stats().rows.iter().map(|(_, n)| n).sum::<u64>(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "online store recovered"
        );
        Ok(store)
    }

    fn send(&self, make: impl FnOnce(SyncSender<Result<()>>) -> Command) -> Result<()> {
        let (ack, done) = sync_channel(1);
        self.enqueue(make(ack))
            .map_err(|_| Error::Failed("the store is closed".into()))?;
        self.wait(&done)
    }

    /// Hands `command` to the log writer; gives it back if the store is closed.
    fn enqueue(&self, command: Command) -> std::result::Result<(), Command> {
        let commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        match commands.as_ref() {
            Some(tx) => tx.send(command).map_err(|e| e.0),
            None => Err(command),
        }
    }

    /// Waits for the writer's answer to an enqueued command.
    fn wait<T>(&self, done: &Receiver<Result<T>>) -> Result<T> {
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        let result = done
            .recv()
            .unwrap_or_else(|_| Err(Error::Failed("the log writer stopped".into())));
        self.counters.pending.fetch_sub(1, Ordering::Relaxed);
        result
    }

    fn view(&self, name: &str) -> Result<Arc<ViewData>> {
        self.views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownView(name.to_owned()))
    }

    /// Stops the log writer after the writes already queued; later writes fail.
    pub fn close(&self) {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl OnlineStore for LocalStore {
    fn set_views(&self, views: &[ViewSchema]) -> Result<()> {
        let current: HashMap<String, u64> = self
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, v)| (name.clone(), v.fingerprint))
            .collect();
        for schema in views {
            if current.get(&schema.name) != Some(&schema.fingerprint()) {
                let (name, schema) = (schema.name.clone(), Some(schema.clone()));
                self.send(|ack| Command::SetView { name, schema, ack })?;
            }
        }
        for name in current.keys() {
            if !views.iter().any(|v| &v.name == name) {
                let name = name.clone();
                self.send(|ack| Command::SetView {
                    name,
                    schema: None,
                    ack,
                })?;
            }
        }
        Ok(())
    }

    fn write(&self, view_name: &str, batch: WriteBatch) -> Result<()> {
        let view = self.view(view_name)?;
        let mut rows = row::encode_batch(view_name, &view.dtypes, batch)?.into_iter();
        while rows.len() > 0 {
            let chunk: Vec<KeyedRow> = rows.by_ref().take(ROWS_PER_RECORD).collect();
            let view = view.clone();
            self.send(|ack| Command::Rows {
                view,
                rows: chunk,
                ack,
            })?;
        }
        Ok(())
    }

    fn read(
        &self,
        view_name: &str,
        fingerprint: u64,
        keys: &[&[u8]],
        at: i64,
        out: &mut ViewColumnsBuilder,
    ) -> Result<()> {
        let aggregated = self
            .events
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(view_name)
            .cloned();
        if let Some(view) = aggregated {
            if view.fingerprint != fingerprint {
                return Err(Error::SchemaChanged(view_name.to_owned()));
            }
            return view.read(keys, at, out);
        }
        let view = self.view(view_name)?;
        if view.fingerprint != fingerprint {
            return Err(Error::SchemaChanged(view_name.to_owned()));
        }
        for key in keys {
            let stored = view.rows.get(*key);
            row::push(out, stored.as_deref().map(|r| &**r), &view.dtypes, at).map_err(
                |reason| Error::CorruptRow {
                    view: view_name.to_owned(),
                    reason,
                },
            )?;
        }
        Ok(())
    }

    fn set_event_sources(
        &self,
        sources: &[EventSchema],
        history: History,
        rebuild: &[String],
    ) -> Result<()> {
        let (sources, rebuild) = (sources.to_vec(), rebuild.to_vec());
        self.send(|ack| Command::SetEvents {
            sources,
            history,
            rebuild,
            ack,
        })
    }

    fn append_events(&self, source_name: &str, batch: EventBatch) -> Result<usize> {
        let source = self
            .events
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(source_name)
            .cloned()
            .ok_or_else(|| Error::UnknownSource(source_name.to_owned()))?;
        let encoder = batch.encoder(source_name, &source.dtypes)?;
        let (rows, stamping) = (batch.event_ts.len(), batch.created_ts.is_none());
        let mut start = 0;
        let mut late = 0;
        while start < rows {
            let end = (start + ROWS_PER_RECORD).min(rows);
            // Unstamped events are marked as arrived at the earliest time until stamped.
            let mut chunk = batch.rows(&encoder, start..end);
            start = end;
            // Reads of these keys wait until the events are in the tiles: the backfill
            // counts an event from its arrival on, and it arrives (is stamped) only now.
            source.mark(&chunk, true);
            if stamping {
                let refused = crate::events::stamp(&mut chunk, source.lateness);
                source.mark(&refused, false);
                late += refused.len();
                if chunk.is_empty() {
                    continue;
                }
            }
            let folded = chunk.clone();
            let (ack, done) = sync_channel(1);
            let command = Command::Events {
                source: source.clone(),
                marked: source.clone(),
                rows: chunk,
                ack,
            };
            let logged = match self.enqueue(command) {
                Ok(()) => self.wait(&done)?,
                Err(Command::Events { rows, .. }) => {
                    source.mark(&rows, false);
                    return Err(Error::Failed("the store is closed".into()));
                }
                Err(_) => unreachable!("enqueue gives back the command it was given"),
            };
            // Folded on this thread once logged: appenders fold in parallel, and the
            // tiles do not care in which order.
            let now = skewless_core::now_micros();
            if Arc::ptr_eq(&logged, &source) {
                source.apply(&folded, now, true);
            } else {
                // Rebuilt by an apply before these were logged: the new tiles did not read
                // them from history.
                source.mark(&folded, false);
                logged.apply(&folded, now, false);
            }
        }
        Ok(late)
    }

    fn keeps_aggregates(&self) -> bool {
        true
    }

    fn flush_events(&self) -> Result<()> {
        self.send(|ack| Command::Flush { ack })
    }

    fn writable(&self) -> Option<bool> {
        Some(!self.counters.refusing.load(Ordering::Relaxed))
    }

    fn stats(&self) -> StoreStats {
        let mut views: Vec<(String, u64, u64)> = self
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, v)| {
                let bytes = v.bytes.load(Ordering::Relaxed);
                (name.clone(), v.rows.len() as u64, bytes)
            })
            .collect();
        views.sort();
        StoreStats {
            rows: views
                .iter()
                .map(|(v, rows, _)| (v.clone(), *rows))
                .collect(),
            bytes: views.into_iter().map(|(v, _, bytes)| (v, bytes)).collect(),
            wal_bytes_since_snapshot: self
                .counters
                .wal_bytes_since_snapshot
                .load(Ordering::Relaxed),
            wal_pending_writes: self.counters.pending.load(Ordering::Relaxed),
            snapshots: self.counters.snapshots.load(Ordering::Relaxed),
            failed_writes: self.counters.failed_writes.load(Ordering::Relaxed),
            aggregates: {
                let views = self.events.views.read().unwrap_or_else(|e| e.into_inner());
                let mut counts: Vec<(String, AggregateCounts)> = views
                    .iter()
                    .map(|(name, v)| {
                        let (keys, tiles, raw_events) = v.counts();
                        let counts = AggregateCounts {
                            keys,
                            tiles,
                            raw_events,
                        };
                        (name.clone(), counts)
                    })
                    .collect();
                counts.sort_by(|a, b| a.0.cmp(&b.0));
                counts
            },
            events_unflushed: self.counters.events_unflushed.load(Ordering::Relaxed),
        }
    }
}

/// Replays records over the views; events not yet in their offline log (by the LSNs its
/// files hold, `flushed`, read once per log) go to `pending`.
fn replay(
    views: &Views,
    records: Vec<Record>,
    max_lsn: &mut u64,
    pending: &mut Pending,
    flushed: &mut HashMap<PathBuf, u64>,
) -> Result<()> {
    let mut map = views.write().unwrap_or_else(|e| e.into_inner());
    for record in records {
        match record {
            Record::Rows {
                lsn,
                view,
                fingerprint,
                rows,
            } => {
                *max_lsn = (*max_lsn).max(lsn + rows.len() as u64);
                if let Some(data) = map.get(&view).filter(|v| v.fingerprint == fingerprint) {
                    for (key, row) in rows {
                        data.apply(key, row);
                    }
                }
            }
            Record::Reset { view } => {
                if let Some(data) = map.get_mut(&view) {
                    *data = Arc::new(ViewData::new(data.schema.clone()));
                }
            }
            Record::Events { lsn, log, rows } => {
                *max_lsn = (*max_lsn).max(lsn + rows.len() as u64);
                let through = match flushed.get(&log.dir) {
                    Some(n) => *n,
                    None => {
                        let n = crate::offline_log::flushed_through(&log.dir)?;
                        flushed.insert(log.dir.clone(), n);
                        n
                    }
                };
                pending.push(
                    &log,
                    rows.into_iter().filter(|r| row::order_key(r).2 > through),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod tests;
