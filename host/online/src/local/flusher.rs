//! The thread that writes logged events to their offline logs, so that a flush of a
//! million events never holds up the log's commits (and the reads waiting on them).
//! Jobs run in order; a failed write keeps its events, and every later one, for the next
//! try, so a log's files never skip LSNs.

use std::sync::mpsc::Sender;

use super::*;

enum Job {
    /// Events to write.
    Write(Pending),
    /// Answers once everything sent before it is written, or with why not.
    Barrier(SyncSender<Result<()>>),
}

/// The flusher thread and its queue.
pub(super) struct Flusher {
    jobs: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    pub(super) fn spawn(counters: Arc<Counters>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("skewless-flush".into())
            .spawn(move || {
                let mut queue = Pending::default();
                let mut last_error: Option<String> = None;
                for job in rx {
                    let barrier = match job {
                        Job::Write(events) => {
                            queue.absorb(events);
                            None
                        }
                        Job::Barrier(ack) => Some(ack),
                    };
                    if queue.events() > 0 {
                        let started = Instant::now();
                        let before = queue.events();
                        let result = queue.flush();
                        let written = before - queue.events();
                        counters
                            .events_unflushed
                            .fetch_sub(written as u64, Ordering::Relaxed);
                        match result {
                            Ok(_) => {
                                last_error = None;
                                tracing::info!(
                                    events = written,
                                    elapsed_ms = started.elapsed().as_millis() as u64,
                                    "events flushed to the offline log"
                                );
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "could not flush logged events to their offline log; they stay in the write-ahead log and are tried again");
                                last_error = Some(e.to_string());
                            }
                        }
                    }
                    if let Some(ack) = barrier {
                        let _ = ack.send(match (&last_error, queue.events()) {
                            (_, 0) => Ok(()),
                            (Some(e), _) => Err(Error::Failed(format!(
                                "events are not in their offline log yet: {e}"
                            ))),
                            (None, n) => Err(Error::Internal(format!(
                                "{n} events left unflushed without an error"
                            ))),
                        });
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(tx),
            handle: Some(handle),
        })
    }

    /// Queues `events` for writing.
    pub(super) fn send(&self, events: Pending) {
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Write(events)).is_err()
        {
            tracing::error!("the flusher thread stopped; events stay in the write-ahead log");
        }
    }

    /// Waits until everything queued is written.
    pub(super) fn barrier(&self) -> Result<()> {
        let (ack, done) = sync_channel(1);
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Job::Barrier(ack)).is_ok());
        if !sent {
            return Err(Error::Failed("the flusher thread stopped".into()));
        }
        done.recv()
            .unwrap_or_else(|_| Err(Error::Failed("the flusher thread stopped".into())))
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
