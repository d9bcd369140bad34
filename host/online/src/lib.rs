//! The Skewless online store: the latest row per (feature view, entity key), read at
//! request time.
//!
//! [`OnlineStore`] is the trait the server and materialization write and read through;
//! [`LocalStore`] is the in-process implementation: one sharded map ([`dashmap`]) per
//! view, compact rows (one allocation per row, see `row.rs`), a write-ahead log with group
//! commit, and periodic snapshots. A write is acknowledged only after its log record is
//! fsynced, so after `kill -9` and a restart no acknowledged write is lost.
//! [`RedisStore`] keeps the same rows in a Redis server, for several servers to share.
//!
//! Ordering: a row replaces the stored one only if `(event_ts, created_ts, write order)`
//! is larger, so an older write never overwrites a newer value, and replaying the log over
//! a snapshot is idempotent.
//!
//! [`serve`] is the online half of the one path: a request's rows (Arrow) read from a
//! store and run through the service's plan, beside the offline half (the backfill). The
//! stores themselves know nothing of transforms or plans, and nothing here speaks HTTP.
//! TTL is applied by the shared [`ViewColumnsBuilder`] the stores fill.

#![deny(missing_docs)]

mod events;
mod local;
mod offline_log;
mod redis_store;
mod row;
mod serve;
mod wal;

use std::path::{Path, PathBuf};

use arrow_array::ArrayRef;
use skewless_core::assemble::ViewColumnsBuilder;
use skewless_core::{DType, Fault};

pub use events::{
    EventBatch, EventSchema, EventView, History, KeyedEvent, cannot_log, event_schema,
    event_schemas, online_aggregated,
};
pub use local::{LocalStore, StoreOptions};
pub use redis_store::{RedisOptions, RedisStore};
pub use serve::{OnlineRows, fingerprints, serve, view_schemas};
pub use skewless_aggregate::ViewAggregates;

/// An online-store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The view is not declared (or not online).
    #[error("feature view `{0}` is not in the online store")]
    UnknownView(String),
    /// The view's features changed since the caller planned (a concurrent apply).
    #[error("feature view `{0}` changed while the request ran; retry")]
    SchemaChanged(String),
    /// The event source was changed by an apply while the push ran.
    #[error("source `{0}` changed while the push ran; retry")]
    SourceChanged(String),
    /// A write batch that does not match the view (the caller's fault).
    #[error("feature view `{view}`: {reason}")]
    InvalidBatch {
        /// The view.
        view: String,
        /// What is wrong.
        reason: String,
    },
    /// The log or a snapshot could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A damaged file in the data directory.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An earlier log write failed; the store refuses writes until it is reopened, since
    /// what reached the disk is unknown.
    #[error("the online store stopped accepting writes after a write-ahead log failure: {0}")]
    Failed(String),
    /// Another process holds the data directory.
    #[error("{0} is in use by another Skewless process")]
    Locked(PathBuf),
    /// The store's server (Redis) could not be reached or failed a call.
    #[error("{0}")]
    Unavailable(String),
    /// The log could not take a write now (a full disk, say); it was rolled back, nothing
    /// of it is stored, and later writes are tried again.
    #[error(
        "the online store cannot take writes now: {0}; nothing of this write was stored, retry when the cause is fixed"
    )]
    WriteRefused(String),
    /// The store's server would not keep an acknowledged write through a crash.
    #[error("{0}")]
    NotDurable(String),
    /// A stored row that does not decode: a damaged store, or a key written by something
    /// else. Reported, never served as a value.
    #[error("feature view `{view}`: {reason}")]
    CorruptRow {
        /// The view.
        view: String,
        /// What is wrong with the row.
        reason: String,
    },
    /// A request's rows not laid out as the plan needs them.
    #[error("serving {plan}: {reason}")]
    InvalidRequest {
        /// The service or feature list.
        plan: String,
        /// What is wrong.
        reason: String,
    },
    /// A view kept offline only, asked for online.
    #[error("feature view `{0}` is offline only (online: false); it cannot be served")]
    OfflineView(String),
    /// The source is not an event source of the store (or feeds no online aggregated
    /// view).
    #[error("source `{0}` feeds no online aggregated view")]
    UnknownSource(String),
    /// Aggregates asked for a time their tiles can no longer answer exactly.
    #[error("feature view `{view}`: {reason}")]
    TooOld {
        /// The view.
        view: String,
        /// What was asked and what can be answered.
        reason: String,
    },
    /// An aggregate that cannot be finalized (an int64 sum out of range).
    #[error("feature view `{view}`: {reason}")]
    Aggregate {
        /// The view.
        view: String,
        /// What failed.
        reason: String,
    },
    /// A view's history could not be read from its offline log to build its tiles.
    #[error("building the tiles of `{view}` from its offline log: {reason}")]
    History {
        /// The view.
        view: String,
        /// What failed.
        reason: String,
    },
    /// The store does not keep what it was asked to.
    #[error("{0}")]
    Unsupported(String),
    /// A broken invariant (a bug).
    #[error("internal online-store error: {0}")]
    Internal(String),
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::UnknownView(_)
            | Error::InvalidBatch { .. }
            | Error::InvalidRequest { .. }
            | Error::OfflineView(_)
            | Error::UnknownSource(_)
            | Error::TooOld { .. }
            | Error::Aggregate { .. }
            | Error::Unsupported(_) => Fault::Caller,
            // A concurrent apply: the request may be retried at once.
            Error::SchemaChanged(_)
            | Error::SourceChanged(_)
            | Error::Unavailable(_)
            | Error::WriteRefused(_) => Fault::Unavailable,
            Error::Io { .. }
            | Error::Corrupt { .. }
            | Error::Failed(_)
            | Error::Locked(_)
            | Error::NotDurable(_)
            | Error::CorruptRow { .. }
            | Error::History { .. }
            | Error::Internal(_) => Fault::Internal,
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the store needs to know of a view: its name and feature dtypes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSchema {
    /// The view name.
    pub name: String,
    /// The features: names and dtypes, in the view's order.
    pub features: Vec<(String, DType)>,
}

impl ViewSchema {
    /// A stable hash of the features' names and dtypes: rows written under another
    /// fingerprint are not read back under this one.
    pub fn fingerprint(&self) -> u64 {
        let mut text = String::new();
        for (name, dtype) in &self.features {
            text.push_str(name);
            text.push(':');
            text.push_str(dtype.name());
            text.push(';');
        }
        skewless_core::key::fnv1a(text.as_bytes())
    }

    /// The feature dtypes, in order.
    pub fn dtypes(&self) -> Vec<DType> {
        self.features.iter().map(|(_, d)| *d).collect()
    }
}

/// Rows to write to one view.
#[derive(Debug, Clone)]
pub struct WriteBatch {
    /// Each row's encoded entity key ([`skewless_core::key::KeyBuf`]).
    pub keys: Vec<Box<[u8]>>,
    /// Each row's event time, microseconds since the Unix epoch.
    pub event_ts: Vec<i64>,
    /// Each row's created time, if the source has one.
    pub created_ts: Option<Vec<i64>>,
    /// One array per view feature, in the view's order, of the canonical Arrow types.
    pub features: Vec<ArrayRef>,
}

/// Counts for metrics.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Rows held per view, sorted by view.
    pub rows: Vec<(String, u64)>,
    /// Bytes of keys and rows held per view, in the order of `rows`: the heap the rows
    /// take, without the map's own overhead.
    pub bytes: Vec<(String, u64)>,
    /// Log bytes written since the last snapshot began: what a restart replays.
    pub wal_bytes_since_snapshot: u64,
    /// Writes waiting for the log.
    pub wal_pending_writes: u64,
    /// Snapshots completed since start.
    pub snapshots: u64,
    /// Writes refused since start because the log could not take them.
    pub failed_writes: u64,
    /// Per online aggregated view, sorted: entity keys, tiles and raw (not yet sealed)
    /// events held.
    pub aggregates: Vec<(String, AggregateCounts)>,
    /// Events logged but not yet in their source's offline log.
    pub events_unflushed: u64,
}

/// What an aggregated view holds online.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateCounts {
    /// Entity keys with a timeline.
    pub keys: u64,
    /// Hop tiles.
    pub tiles: u64,
    /// Events kept raw because their tile is not sealed yet.
    pub raw_events: u64,
}

/// An online store. Methods are batch-first: one call per request or per chunk.
pub trait OnlineStore: Send + Sync + std::fmt::Debug {
    /// Declares the current views. A view that is new starts empty; one whose features
    /// changed, or that is gone, loses its rows.
    fn set_views(&self, views: &[ViewSchema]) -> Result<()>;

    /// Writes rows; returns once they are durable. A row older than the stored one for
    /// its key is ignored.
    fn write(&self, view: &str, batch: WriteBatch) -> Result<()>;

    /// Reads the rows of `keys` into `out`, one row per key, as of time `at`;
    /// `fingerprint` is the caller's idea of the view's schema.
    fn read(
        &self,
        view: &str,
        fingerprint: u64,
        keys: &[&[u8]],
        at: i64,
        out: &mut ViewColumnsBuilder,
    ) -> Result<()>;

    /// Counts for metrics.
    fn stats(&self) -> StoreStats;

    /// Declares the event sources and their online aggregated views. A view that is new,
    /// or whose aggregates or log changed, or that `rebuild` names, gets its tiles built
    /// from `history` (the offline log, made current first); the others keep theirs. A
    /// store that keeps no tiles takes sources without online views only.
    fn set_event_sources(
        &self,
        sources: &[EventSchema],
        history: History,
        rebuild: &[String],
    ) -> Result<()> {
        let _ = (history, rebuild);
        match sources.iter().find(|s| !s.views.is_empty()) {
            None => Ok(()),
            Some(s) => Err(Error::Unsupported(format!(
                "this online store does not keep aggregate tiles, which the online aggregated view `{}` needs; use the local store (no --redis), or declare the view `online: false`",
                s.views[0].name()
            ))),
        }
    }

    /// Whether the store keeps aggregate tiles (and so can serve aggregated views).
    fn keeps_aggregates(&self) -> bool {
        false
    }

    /// Appends events to a source: durable in the log, in the tiles of every aggregated
    /// view it feeds, and in its offline log at the next flush. Returns once durable,
    /// with the number of events refused as late by the arrival the store stamped
    /// ([`EventBatch::created_ts`]); the others are stored.
    fn append_events(&self, source: &str, batch: EventBatch) -> Result<usize> {
        let _ = batch;
        Err(Error::UnknownSource(source.to_owned()))
    }

    /// Writes every logged event to its source's offline log now (a backfill started
    /// next reads them).
    fn flush_events(&self) -> Result<()> {
        Ok(())
    }

    /// Whether the store takes writes now: false while its log cannot (a full disk);
    /// `None` when it cannot tell without a round trip (a remote store). Cheap: health
    /// checks ask it.
    fn writable(&self) -> Option<bool> {
        None
    }

    /// Whether calls wait on the network (a remote store), so that an async caller should
    /// run them where blocking is allowed. The in-process store answers from memory.
    fn blocks(&self) -> bool {
        false
    }
}
