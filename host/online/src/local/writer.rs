//! The single thread that appends to the write-ahead log, committing groups of writes
//! with one fsync, and starts snapshots.

use super::*;
use snapshot::write_snapshot;

/// The single thread that appends to the log, in the order writes arrive.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) views: Arc<Views>,
    pub(super) segment: Segment,
    pub(super) next_lsn: u64,
    pub(super) counters: Arc<Counters>,
    pub(super) options: StoreOptions,
    pub(super) last_snapshot: Instant,
    pub(super) failed: Option<String>,
}

/// Most commands committed by one fsync.
const GROUP: usize = 1024;

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Command>) {
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
        match self.segment.append_durable(&framed) {
            Ok(wal::Appended::Durable) => {
                self.counters.refusing.store(false, Ordering::Relaxed);
            }
            Ok(wal::Appended::RolledBack(e)) => {
                // Nothing of the group is in the log, and the log is whole: refuse these
                // writes, and take the next ones again (space may be back by then).
                let reason = format!("{}: {e}", self.segment.path.display());
                tracing::error!(error = %reason, "write-ahead log append failed and was rolled back; writes are refused until one succeeds");
                self.counters.refusing.store(true, Ordering::Relaxed);
                self.counters
                    .failed_writes
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for command in group {
                    let _ = ack_of(&command).send(Err(Error::WriteRefused(reason.clone())));
                }
                return;
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "write-ahead log append failed; refusing further writes");
                self.failed = Some(reason.clone());
                self.counters.refusing.store(true, Ordering::Relaxed);
                self.counters
                    .failed_writes
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for command in group {
                    let _ = ack_of(&command).send(Err(Error::Failed(reason.clone())));
                }
                return;
            }
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
