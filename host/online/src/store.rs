//! [`LocalStore`]: sharded maps in memory, a write-ahead log, periodic snapshots.

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

use crate::row;
use crate::wal::{self, KeyedRow, Record, Segment};
use crate::{Error, OnlineStore, Result, StoreStats, ViewSchema, WriteBatch, io};

const SNAPSHOT: &str = "snapshot.bin";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SKWSNAP1";
/// Rows per log record: keeps records far below the record cap.
const ROWS_PER_RECORD: usize = 65_536;

/// When to snapshot.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Snapshot once this many log bytes were written since the last one.
    pub snapshot_after_bytes: u64,
    /// Snapshot at least this often while there are writes.
    pub snapshot_interval: Duration,
}

impl StoreOptions {
    /// Snapshots after `snapshot_after_bytes` of log or `snapshot_interval`, whichever
    /// comes first.
    pub fn new(snapshot_after_bytes: u64, snapshot_interval: Duration) -> Self {
        Self {
            snapshot_after_bytes,
            snapshot_interval,
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            snapshot_after_bytes: 256 << 20,
            snapshot_interval: Duration::from_secs(300),
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
}

#[derive(Debug, Default)]
struct Counters {
    wal_bytes_since_snapshot: AtomicU64,
    pending: AtomicU64,
    snapshots: AtomicU64,
    snapshotting: AtomicBool,
}

/// The in-process online store of one data directory.
#[derive(Debug)]
pub struct LocalStore {
    views: Arc<Views>,
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
        let mut replayed = 0usize;
        for (i, &number) in segments.iter().enumerate() {
            let path = wal::segment_path(dir, number);
            if number < start_segment {
                // Covered by the snapshot; left over from an interrupted clean-up.
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let (records, valid, torn) = wal::read_segment(&path)?;
            if torn {
                if i + 1 != segments.len() {
                    return Err(wal::corrupt_middle(&path));
                }
                tracing::warn!(path = %path.display(), valid, "dropping the torn tail of the log (a write that was never acknowledged)");
                wal::truncate(&path, valid)?;
            }
            replayed += records.len();
            replay(&views, records, &mut max_lsn);
        }
        let next_segment = segments
            .last()
            .map_or(start_segment, |n| n + 1)
            .max(start_segment);
        let segment = Segment::create(dir, next_segment)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            dir: dir.to_owned(),
            views: views.clone(),
            segment,
            next_lsn: max_lsn + 1,
            counters: counters.clone(),
            options,
            last_snapshot: Instant::now(),
            failed: None,
        };
        let handle = std::thread::Builder::new()
            .name("skewless-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(io(dir))?;
        let store = LocalStore {
            views,
            commands: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            counters,
            _lock: lock,
        };
        tracing::info!(
            dir = %dir.display(),
            records = replayed,
            rows = store.stats().rows.iter().map(|(_, n)| n).sum::<u64>(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "online store recovered"
        );
        Ok(store)
    }

    fn send(&self, make: impl FnOnce(SyncSender<Result<()>>) -> Command) -> Result<()> {
        let (ack, done) = sync_channel(1);
        let sent = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|tx| tx.send(make(ack)).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(Error::Failed("the store is closed".into()));
        }
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
        }
    }
}

fn replay(views: &Views, records: Vec<Record>, max_lsn: &mut u64) {
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
        }
    }
}

/// The single thread that appends to the log, in the order writes arrive.
struct Writer {
    dir: PathBuf,
    views: Arc<Views>,
    segment: Segment,
    next_lsn: u64,
    counters: Arc<Counters>,
    options: StoreOptions,
    last_snapshot: Instant,
    failed: Option<String>,
}

/// Most commands committed by one fsync.
const GROUP: usize = 1024;

impl Writer {
    fn run(mut self, rx: Receiver<Command>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    self.maybe_snapshot();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut group = vec![first];
            while group.len() < GROUP {
                match rx.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            self.commit(group);
            self.maybe_snapshot();
        }
    }

    fn commit(&mut self, mut group: Vec<Command>) {
        if let Some(reason) = &self.failed {
            for command in group {
                let _ = ack_of(&command).send(Err(Error::Failed(reason.clone())));
            }
            return;
        }
        let mut framed = Vec::new();
        let mut payload = Vec::new();
        for command in &mut group {
            payload.clear();
            match command {
                Command::Rows { view, rows, .. } => {
                    payload.push(wal::KIND_ROWS);
                    payload.extend_from_slice(&self.next_lsn.to_le_bytes());
                    wal::put_str(&mut payload, &view.schema.name);
                    payload.extend_from_slice(&view.fingerprint.to_le_bytes());
                    payload.extend_from_slice(&(rows.len() as u32).to_le_bytes());
                    for (key, row) in rows.iter_mut() {
                        row::set_lsn(row, self.next_lsn);
                        self.next_lsn += 1;
                        wal::put_bytes(&mut payload, key);
                        wal::put_bytes(&mut payload, row);
                    }
                }
                Command::SetView { name, .. } => {
                    payload.push(wal::KIND_RESET);
                    wal::put_str(&mut payload, name);
                }
            }
            wal::frame(&payload, &mut framed);
        }
        if let Err(e) = self.segment.append_durable(&framed) {
            let reason = e.to_string();
            tracing::error!(error = %reason, "write-ahead log append failed; refusing further writes");
            self.failed = Some(reason.clone());
            for command in group {
                let _ = ack_of(&command).send(Err(Error::Failed(reason.clone())));
            }
            return;
        }
        self.counters
            .wal_bytes_since_snapshot
            .fetch_add(framed.len() as u64, Ordering::Relaxed);
        for command in group {
            match command {
                Command::Rows { view, rows, ack } => {
                    // A view replaced by an apply meanwhile keeps its own (dropped) map.
                    for (key, row) in rows {
                        view.apply(key, row);
                    }
                    let _ = ack.send(Ok(()));
                }
                Command::SetView { name, schema, ack } => {
                    let mut map = self.views.write().unwrap_or_else(|e| e.into_inner());
                    match schema {
                        Some(schema) => {
                            map.insert(name, Arc::new(ViewData::new(schema)));
                        }
                        None => {
                            map.remove(&name);
                        }
                    }
                    let _ = ack.send(Ok(()));
                }
            }
        }
    }

    fn maybe_snapshot(&mut self) {
        let written = self
            .counters
            .wal_bytes_since_snapshot
            .load(Ordering::Relaxed);
        let due = written >= self.options.snapshot_after_bytes
            || (written > 0 && self.last_snapshot.elapsed() >= self.options.snapshot_interval);
        if !due || self.failed.is_some() || self.counters.snapshotting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        // Every write applied so far is in segments before the new one; the snapshot
        // covers them, and the log from the new segment on covers the rest.
        let start = self.segment.number + 1;
        match Segment::create(&self.dir, start) {
            Ok(segment) => self.segment = segment,
            Err(e) => {
                tracing::error!(error = %e, "could not rotate the write-ahead log; snapshot skipped");
                self.counters.snapshotting.store(false, Ordering::Release);
                return;
            }
        }
        self.counters
            .wal_bytes_since_snapshot
            .store(0, Ordering::Relaxed);
        self.last_snapshot = Instant::now();
        let (dir, views, counters) = (self.dir.clone(), self.views.clone(), self.counters.clone());
        let spawned = std::thread::Builder::new()
            .name("skewless-snapshot".into())
            .spawn(move || {
                let started = Instant::now();
                match write_snapshot(&dir, &views, start) {
                    Ok(rows) => {
                        counters.snapshots.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            rows,
                            segment = start,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "snapshot written"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "snapshot failed; the log is kept"),
                }
                counters.snapshotting.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.counters.snapshotting.store(false, Ordering::Release);
        }
    }
}

fn ack_of(command: &Command) -> &SyncSender<Result<()>> {
    match command {
        Command::Rows { ack, .. } | Command::SetView { ack, .. } => ack,
    }
}

/// Writes every view's rows to a new snapshot whose log starts at segment `start`, then
/// deletes the segments it covers. Returns the rows written.
fn write_snapshot(dir: &Path, views: &Views, start: u64) -> Result<u64> {
    let views: Vec<Arc<ViewData>> = views
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    let path = dir.join(SNAPSHOT);
    let file = AtomicFile::create(&path).map_err(io(&path))?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
    };
    let mut rows = 0u64;
    let write = |out: &mut HashingWriter, bytes: &[u8]| out.write_all(bytes).map_err(io(&path));
    write(&mut out, SNAPSHOT_MAGIC)?;
    write(&mut out, &start.to_le_bytes())?;
    write(&mut out, &(views.len() as u32).to_le_bytes())?;
    for view in &views {
        let mut head = Vec::new();
        wal::put_str(&mut head, &view.schema.name);
        head.extend_from_slice(&view.fingerprint.to_le_bytes());
        write(&mut out, &head)?;
        // The count is not known until the shards are walked: rows are framed one by one
        // and a zero-length key ends the view.
        for entry in view.rows.iter() {
            let mut framed = Vec::with_capacity(8 + entry.key().len() + entry.value().len());
            wal::put_bytes(&mut framed, entry.key());
            wal::put_bytes(&mut framed, entry.value());
            write(&mut out, &framed)?;
            rows += 1;
        }
        write(&mut out, &0u32.to_le_bytes())?;
    }
    let crc = out.hasher.clone().finalize();
    let mut file = out.inner;
    file.write_all(&crc.to_le_bytes()).map_err(io(&path))?;
    let file = file.into_inner().map_err(|e| io(&path)(e.into_error()))?;
    file.commit().map_err(io(&path))?;
    for number in wal::segments(dir)? {
        if number < start {
            let old = wal::segment_path(dir, number);
            std::fs::remove_file(&old).map_err(io(&old))?;
        }
    }
    Ok(rows)
}

struct HashingWriter {
    inner: BufWriter<AtomicFile>,
    hasher: crc32fast::Hasher,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Loads a snapshot into `views`; returns the first log segment after it (0 if none).
fn load_snapshot(path: &Path, views: &Views, max_lsn: &mut u64) -> Result<u64> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(file) => BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io(path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(path)(e)),
    };
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < 24 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("not a Skewless snapshot"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(corrupt("checksum mismatch"));
    }
    let mut c = wal::Cursor(&body[8..]);
    let truncated = || corrupt("truncated");
    let start = c.u64().ok_or_else(truncated)?;
    let count = c.u32().ok_or_else(truncated)?;
    let map = views.read().unwrap_or_else(|e| e.into_inner());
    for _ in 0..count {
        let name = c.str().ok_or_else(truncated)?;
        let fingerprint = c.u64().ok_or_else(truncated)?;
        let target = map.get(&name).filter(|v| v.fingerprint == fingerprint);
        loop {
            let key = c.bytes().ok_or_else(truncated)?;
            if key.is_empty() {
                break;
            }
            let row = c.bytes().ok_or_else(truncated)?;
            if row.len() < row::HEADER {
                return Err(corrupt("a row shorter than its header"));
            }
            *max_lsn = (*max_lsn).max(row::order_key(&row).2);
            if let Some(view) = target {
                view.apply(key, row);
            }
        }
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use arrow_array::{ArrayRef, Float64Array};
    use skewless_core::Ttl;
    use skewless_core::key::KeyBuf;

    use super::*;

    fn schema() -> ViewSchema {
        ViewSchema {
            name: "stats".into(),
            features: vec![("avg".into(), DType::Float64)],
        }
    }

    fn key(id: i64) -> Box<[u8]> {
        let mut k = KeyBuf::new();
        k.push_int(id);
        k.as_bytes().into()
    }

    fn write(store: &LocalStore, rows: &[(i64, i64, f64)]) {
        let batch = WriteBatch {
            keys: rows.iter().map(|r| key(r.0)).collect(),
            event_ts: rows.iter().map(|r| r.1).collect(),
            created_ts: None,
            features: vec![
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))) as ArrayRef,
            ],
        };
        store.write("stats", batch).unwrap();
    }

    fn read(store: &LocalStore, ids: &[i64], at: i64) -> Vec<Option<f64>> {
        let keys: Vec<Box<[u8]>> = ids.iter().map(|&i| key(i)).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| &**k).collect();
        let mut out = ViewColumnsBuilder::new([DType::Float64], Ttl::UNLIMITED, ids.len());
        store
            .read("stats", schema().fingerprint(), &refs, at, &mut out)
            .unwrap();
        let cols = out.finish();
        cols.columns[0]
            .as_primitive::<Float64Type>()
            .iter()
            .collect()
    }

    #[test]
    fn older_writes_do_not_overwrite_and_ties_go_to_the_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
        write(&store, &[(1, 100, 1.0), (2, 100, 2.0)]);
        write(&store, &[(1, 50, 9.0), (2, 100, 3.0)]);
        assert_eq!(read(&store, &[1, 2, 3], 1000), [Some(1.0), Some(3.0), None]);
        // Within one batch, too: the later row of a key wins a tie.
        write(&store, &[(3, 7, 1.0), (3, 7, 2.0)]);
        assert_eq!(read(&store, &[3], 1000), [Some(2.0)]);
    }

    #[test]
    fn stats_count_rows_and_bytes_per_view() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
        write(&store, &[(1, 100, 1.0)]);
        let one = store.stats().bytes[0].1;
        assert!(one > key(1).len() as u64, "key and row bytes: {one}");
        write(&store, &[(2, 100, 2.0)]);
        // A newer row replaces the stored one, an older one is ignored: neither adds.
        write(&store, &[(1, 200, 3.0), (2, 50, 4.0)]);
        let stats = store.stats();
        assert_eq!(stats.rows, [("stats".to_owned(), 2)]);
        assert_eq!(stats.bytes, [("stats".to_owned(), 2 * one)]);
    }

    #[test]
    fn a_snapshot_is_taken_on_a_timer_without_further_writes() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::new(u64::MAX, Duration::from_millis(50));
        let store = LocalStore::open(dir.path(), &[schema()], options).unwrap();
        write(&store, &[(1, 100, 1.0)]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.stats().snapshots == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(store.stats().snapshots, 1, "one snapshot, by time alone");
        assert!(dir.path().join(SNAPSHOT).exists());
        assert_eq!(store.stats().wal_bytes_since_snapshot, 0);
    }

    #[test]
    fn a_snapshot_a_crash_interrupted_is_removed_at_open_and_the_last_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::new(u64::MAX, Duration::from_millis(50));
        {
            let store = LocalStore::open(dir.path(), &[schema()], options).unwrap();
            write(&store, &[(1, 100, 1.0)]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while store.stats().snapshots == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(store.stats().snapshots, 1);
        }
        let committed = std::fs::read(dir.path().join(SNAPSHOT)).unwrap();
        // A process killed while writing its next snapshot leaves its temporary file.
        let mut unfinished = AtomicFile::create(&dir.path().join(SNAPSHOT)).unwrap();
        unfinished.write_all(b"half a snapshot").unwrap();
        std::mem::forget(unfinished);
        let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
        assert_eq!(read(&store, &[1], 1000), [Some(1.0)]);
        assert_eq!(std::fs::read(dir.path().join(SNAPSHOT)).unwrap(), committed);
        let temporaries = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with(skewless_core::fs::TEMP_PREFIX)
            })
            .count();
        assert_eq!(temporaries, 0);
    }

    #[test]
    fn restart_replays_the_log_and_snapshots_cover_it() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::new(1, Duration::from_secs(3600));
        {
            let store = LocalStore::open(dir.path(), &[schema()], options.clone()).unwrap();
            for i in 0..50 {
                write(&store, &[(i, 10 + i, i as f64)]);
            }
            // Let a snapshot finish, then write more that only the log has.
            let deadline = Instant::now() + Duration::from_secs(10);
            while store.stats().snapshots == 0 && Instant::now() < deadline {
                write(&store, &[(0, 1, 0.5)]);
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(store.stats().snapshots > 0, "no snapshot was written");
            write(&store, &[(100, 5, 100.0)]);
        }
        assert!(dir.path().join(SNAPSHOT).exists());
        let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
        let ids: Vec<i64> = (0..50).chain([100]).collect();
        let expected: Vec<Option<f64>> = ids.iter().map(|&i| Some(i as f64)).collect();
        assert_eq!(read(&store, &ids, 1000), expected);
    }

    #[test]
    fn a_torn_tail_is_dropped_and_the_rest_recovers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
            write(&store, &[(1, 10, 1.5)]);
        }
        let last = *wal::segments(dir.path()).unwrap().last().unwrap();
        // A crash mid-append: half a record at the end.
        let path = wal::segment_path(dir.path(), last);
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.extend_from_within(..whole / 2);
        std::fs::write(&path, &bytes).unwrap();
        let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
        assert_eq!(read(&store, &[1], 100), [Some(1.5)]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            whole as u64,
            "tail truncated"
        );
    }

    #[test]
    fn a_changed_view_loses_its_rows_and_a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
        assert!(matches!(
            LocalStore::open(dir.path(), &[schema()], StoreOptions::default()),
            Err(Error::Locked(_))
        ));
        write(&store, &[(1, 10, 1.5)]);
        let mut changed = schema();
        changed.features.push(("count".into(), DType::Int64));
        store.set_views(&[changed.clone()]).unwrap();
        assert_eq!(store.stats().rows, [("stats".to_owned(), 0)]);
        let keys = [key(1)];
        let refs: Vec<&[u8]> = keys.iter().map(|k| &**k).collect();
        let mut out = ViewColumnsBuilder::new([DType::Float64], Ttl::UNLIMITED, 1);
        assert!(matches!(
            store.read("stats", schema().fingerprint(), &refs, 0, &mut out),
            Err(Error::SchemaChanged(_))
        ));
        drop(store);
        // The reset is in the log: the old row does not come back under the old schema.
        let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
        assert_eq!(read(&store, &[1], 100), [None]);
    }
}
