//! Progress for long commands: a bar with rows/s on a terminal, plain log lines otherwise
//! (every `SKEWLESS_PROGRESS_SECS` seconds, default 5).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports steps (rows, mostly) done out of a total; usable from several threads.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
    last_log: Mutex<Instant>,
    /// How often a plain log line is written when stderr is not a terminal.
    every: Duration,
}

impl Progress {
    /// Starts reporting `total` rows of `what`.
    pub fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {human_pos}/{human_len} rows ({per_sec}, eta {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(what);
            bar
        });
        let now = Instant::now();
        let every = std::env::var("SKEWLESS_PROGRESS_SECS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(Duration::from_secs(5), Duration::from_secs_f64);
        Self {
            every,
            bar,
            what,
            total: AtomicU64::new(total),
            done: AtomicU64::new(0),
            started: now,
            last_log: Mutex::new(now),
        }
    }

    /// Restarts the count at 0 of `total`.
    pub fn reset(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(0);
            bar.reset_eta();
        }
    }

    /// Adds `rows` done.
    pub fn advance(&self, rows: u64) {
        let done = self.done.fetch_add(rows, Ordering::Relaxed) + rows;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= self.every {
                    *last = Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                    tracing::info!(
                        what = self.what,
                        rows = done,
                        total = self.total.load(Ordering::Relaxed),
                        rows_per_sec = (done as f64 / secs) as u64,
                        "progress"
                    );
                }
            }
        }
    }

    /// Ends the report.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

impl skewless_offline::Progress for Progress {
    fn start(&self, total: u64) {
        self.reset(total);
    }

    fn advance(&self, steps: u64) {
        Progress::advance(self, steps);
    }
}
