//! The single thread that appends to the write-ahead log, committing groups of writes
//! with one fsync, and starts snapshots.

use super::*;
use flusher::Flusher;
use snapshot::write_snapshot;

/// The single thread that appends to the log, in the order writes arrive.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) views: Arc<Views>,
    pub(super) events: Arc<EventState>,
    pub(super) pending: Pending,
    pub(super) flusher: Flusher,
    pub(super) segment: Segment,
    pub(super) next_lsn: u64,
    pub(super) counters: Arc<Counters>,
    pub(super) options: StoreOptions,
    pub(super) last_snapshot: Instant,
    pub(super) failed: Option<String>,
    /// The snapshot thread last started.
    pub(super) snapshot_thread: Option<JoinHandle<()>>,
}

/// Most commands committed by one fsync.
const GROUP: usize = 1024;

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Command>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    self.maybe_flush();
                    self.maybe_snapshot();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(e) = self.flush() {
                        tracing::error!(error = %e, "could not flush logged events to their offline logs at close; the next start flushes them");
                    }
                    self.finish_snapshot();
                    return;
                }
            };
            // Writes are committed in groups; a command that needs every earlier write
            // applied first (and none after) runs alone, in its place.
            let mut next = Some(first);
            while let Some(command) = next.take() {
                if matches!(command, Command::SetEvents { .. } | Command::Flush { .. }) {
                    self.run_alone(command);
                    break;
                }
                let mut group = vec![command];
                while group.len() < GROUP {
                    match rx.try_recv() {
                        Ok(c @ (Command::SetEvents { .. } | Command::Flush { .. })) => {
                            next = Some(c);
                            break;
                        }
                        Ok(c) => group.push(c),
                        Err(_) => break,
                    }
                }
                self.commit(group);
            }
            self.maybe_flush();
            self.maybe_snapshot();
        }
    }

    fn run_alone(&mut self, command: Command) {
        match command {
            Command::Flush { ack } => {
                let _ = ack.send(self.flush());
            }
            Command::SetEvents {
                sources,
                history,
                rebuild,
                ack,
            } => {
                let _ = ack.send(self.set_events(&sources, &history, &rebuild));
            }
            other => self.commit(vec![other]),
        }
    }

    /// Writes pending events to their offline logs and waits until they are there.
    fn flush(&mut self) -> Result<()> {
        if self.pending.events() > 0 {
            self.flusher.send(self.pending.take());
        }
        self.flusher.barrier()
    }

    /// Hands pending events to the flusher when the oldest has waited long enough or
    /// enough wait; does not wait for the write.
    fn maybe_flush(&mut self) {
        let due = self.pending.events() >= FLUSH_EVENTS
            || self
                .pending
                .age()
                .is_some_and(|a| a >= self.options.event_flush_interval);
        if due {
            self.flusher.send(self.pending.take());
        }
    }

    /// Flushes, then builds the state for `sources` (see [`OnlineStore::set_event_sources`]).
    fn set_events(
        &mut self,
        sources: &[EventSchema],
        history: &History,
        rebuild: &[String],
    ) -> Result<()> {
        self.flush()?;
        // LSNs stay above every flushed one, so a log file's name never claims events
        // that are not in it (a store directory wiped under a kept offline log).
        for schema in sources {
            let last = crate::offline_log::flushed_through(&schema.log_dir)?;
            self.next_lsn = self.next_lsn.max(last + 1);
        }
        let (by_source, by_view) = events::rebuild(
            &self.events,
            sources,
            history,
            rebuild,
            skewless_core::now_micros(),
        )?;
        *self
            .events
            .sources
            .write()
            .unwrap_or_else(|e| e.into_inner()) = by_source;
        *self.events.views.write().unwrap_or_else(|e| e.into_inner()) = by_view;
        Ok(())
    }

    fn commit(&mut self, group: Vec<Command>) {
        if let Some(reason) = &self.failed {
            for command in group {
                fail(command, Error::Failed(reason.clone()));
            }
            return;
        }
        // An apply since an append looked its source up may have rebuilt the source: its
        // events go to the current tiles (a rebuild read every event logged before it,
        // and these are logged after), if the log layout is unchanged; otherwise they are
        // refused, never logged.
        let mut kept = Vec::with_capacity(group.len());
        for mut command in group {
            if let Command::Events { source, .. } = &mut command {
                let current = self
                    .events
                    .sources
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&source.log.source)
                    .filter(|c| c.log == source.log)
                    .cloned();
                match current {
                    Some(current) => *source = current,
                    None => {
                        let name = source.log.source.clone();
                        fail(command, Error::SourceChanged(name));
                        continue;
                    }
                }
            }
            kept.push(command);
        }
        let mut group = kept;
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
                Command::Events { source, rows, .. } => {
                    payload.push(wal::KIND_EVENTS);
                    payload.extend_from_slice(&self.next_lsn.to_le_bytes());
                    source.log.encode(&mut payload);
                    payload.extend_from_slice(&(rows.len() as u32).to_le_bytes());
                    for row in rows.iter_mut() {
                        row::set_lsn(row, self.next_lsn);
                        self.next_lsn += 1;
                        wal::put_bytes(&mut payload, row);
                    }
                }
                Command::SetEvents { .. } | Command::Flush { .. } => {
                    unreachable!("run() runs these alone, never in a group")
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
                    fail(command, Error::WriteRefused(reason.clone()));
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
                    fail(command, Error::Failed(reason.clone()));
                }
                return;
            }
        }
        self.counters
            .wal_bytes_since_snapshot
            .fetch_add(framed.len() as u64, Ordering::Relaxed);
        for command in group {
            match command {
                Command::Events {
                    source,
                    marked,
                    rows,
                    ack,
                } => {
                    // The appender folds them (reads of their keys wait until it has):
                    // into `source`, the one they were logged under.
                    let _ = marked;
                    self.counters
                        .events_unflushed
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    self.pending.push(&source.log, rows);
                    let _ = ack.send(Ok(source));
                }
                Command::SetEvents { .. } | Command::Flush { .. } => {
                    unreachable!("run() runs these alone, never in a group")
                }
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
        // The segments the snapshot lets go of hold events: they must be in their offline
        // log first.
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "could not flush logged events to their offline log; snapshot skipped, the log is kept");
            self.counters.snapshotting.store(false, Ordering::Release);
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
        match spawned {
            Ok(handle) => {
                // The previous one has finished (`snapshotting` was clear): reap it.
                if let Some(done) = self.snapshot_thread.replace(handle) {
                    let _ = done.join();
                }
            }
            Err(_) => self.counters.snapshotting.store(false, Ordering::Release),
        }
    }

    /// Waits for a snapshot in progress: it deletes log segments, which a store opened
    /// on the directory after this one closes must not see vanish under it.
    fn finish_snapshot(&mut self) {
        if let Some(handle) = self.snapshot_thread.take() {
            let _ = handle.join();
        }
    }
}

/// Answers `command` with `error`.
fn fail(command: Command, error: Error) {
    match command {
        Command::Events {
            marked, rows, ack, ..
        } => {
            marked.mark(&rows, false);
            let _ = ack.send(Err(error));
        }
        Command::Rows { ack, .. }
        | Command::SetView { ack, .. }
        | Command::SetEvents { ack, .. }
        | Command::Flush { ack } => {
            let _ = ack.send(Err(error));
        }
    }
}
