//! Long work the server runs in the background — backfills and materializations — and
//! follows as jobs: `POST` starts one and answers 202 with its id, `GET /v1/jobs/{id}`
//! tells its state and progress. Jobs live in memory: a restart forgets them (their
//! outputs, a Parquet file or rows in the store, are what lasts).

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value as Json, json};

/// Finished jobs kept for `GET /v1/jobs`.
const KEEP_FINISHED: usize = 100;

/// Where a job is.
#[derive(Debug, Clone)]
pub(crate) enum JobState {
    Running,
    Succeeded(Json),
    /// Why, and who is at fault (the status document says both).
    Failed(String, skewless_core::Fault),
}

/// One job: its kind, state and progress.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: String,
    kind: &'static str,
    /// What it was asked, echoed in its status.
    request: Json,
    state: Mutex<JobState>,
    total: AtomicU64,
    done: AtomicU64,
    started: chrono::DateTime<chrono::Utc>,
}

impl Job {
    pub(crate) fn finish(&self, state: JobState) {
        match &state {
            JobState::Failed(reason, fault) => {
                if *fault == skewless_core::Fault::Internal {
                    tracing::error!(job = %self.id, kind = self.kind, %reason, "job failed: internal error")
                } else {
                    tracing::warn!(job = %self.id, kind = self.kind, %reason, %fault, "job failed")
                }
            }
            _ => tracing::info!(job = %self.id, kind = self.kind, "job succeeded"),
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            JobState::Running
        )
    }

    /// The job's status document.
    pub(crate) fn status(&self) -> Json {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut doc = json!({
            "id": self.id,
            "kind": self.kind,
            "request": self.request,
            "started_at": self.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "total": self.total.load(Ordering::Relaxed),
            "done": self.done.load(Ordering::Relaxed),
        });
        match state {
            JobState::Running => doc["state"] = json!("running"),
            JobState::Succeeded(result) => {
                doc["state"] = json!("succeeded");
                doc["result"] = result;
            }
            JobState::Failed(reason, fault) => {
                doc["state"] = json!("failed");
                doc["error"] = json!(reason);
                doc["fault"] = json!(fault.name());
            }
        }
        doc
    }
}

impl skewless_offline::Progress for Job {
    fn start(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    fn advance(&self, steps: u64) {
        self.done.fetch_add(steps, Ordering::Relaxed);
    }
}

/// Every job since start, newest last; finished ones beyond [`KEEP_FINISHED`] are dropped.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    jobs: Mutex<VecDeque<Arc<Job>>>,
}

impl Jobs {
    /// Registers a running job.
    pub(crate) fn start(&self, kind: &'static str, request: Json) -> Arc<Job> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Arc::new(Job {
            id: format!("{kind}-{n}"),
            kind,
            request,
            state: Mutex::new(JobState::Running),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: chrono::Utc::now(),
        });
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.push_back(job.clone());
        let finished = jobs.iter().filter(|j| !j.is_running()).count();
        if finished > KEEP_FINISHED
            && let Some(oldest) = jobs.iter().position(|j| !j.is_running())
        {
            jobs.remove(oldest);
        }
        tracing::info!(job = %job.id, "job started");
        job
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter().find(|j| j.id == id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter().cloned().collect()
    }
}

/// Resolves a path a job was given against the server's source root: relative, and never
/// above the root (`..`), so a caller reaches only the files the server was pointed at.
pub(crate) fn resolve(root: &Path, given: &str, what: &str) -> Result<PathBuf, String> {
    let path = Path::new(given);
    if given.is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{what}` must be a path relative to the server's source root, without `..`: `{given}`"
        ));
    }
    Ok(root.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_jobs_beyond_the_cap_go_oldest_first_and_running_ones_stay() {
        let jobs = Jobs::default();
        let long = jobs.start("backfill", Json::Null);
        for _ in 0..150 {
            let job = jobs.start("materialize", Json::Null);
            job.finish(JobState::Succeeded(Json::Null));
        }
        jobs.start("materialize", Json::Null);
        let all = jobs.all();
        let finished = all.iter().filter(|j| !j.is_running()).count();
        assert_eq!(finished, KEEP_FINISHED);
        assert!(
            jobs.get(&long.id).is_some(),
            "a running job is never dropped"
        );
        assert!(
            jobs.get("materialize-2").is_none(),
            "the oldest finished went first"
        );
        assert!(jobs.get("materialize-151").is_some());
        assert_eq!(all.len(), KEEP_FINISHED + 2);
    }
}
