//! Skewless offline: reading Parquet sources, the point-in-time as-of join, and backfills.
//!
//! A backfill joins each entity row with each feature view *as of* the row's event time
//! (the latest feature row with `t - ttl <= ts <= t`, ties to the larger created time,
//! then to the later row in the source), fills the same `ViewColumnsBuilder` the online
//! store fills, and runs the service's transforms through the same
//! [`ServicePlan::run`](skewless_plan::ServicePlan::run) the server calls.
//!
//! The join is a sort-merge over entity-key partitions: it never builds the
//! inequality-join intermediate. This crate never touches wasmtime; it reaches transforms
//! only through `skewless-plan`.

#![deny(missing_docs)]

mod aggregate;
mod asof;
mod backfill;
mod materialize;
mod parquet_io;
mod source;
mod spill;
#[cfg(test)]
mod worker_panics;
mod workers;

use std::path::PathBuf;

use skewless_core::Fault;

pub use aggregate::view_history;
pub use asof::{FeatureRows, asof_join};
pub use backfill::EVENT_TIMESTAMP;
pub use backfill::{BackfillOptions, BackfillStats, ColumnNames, backfill, default_memory_limit};
pub use materialize::{MaterializeStats, ViewMaterialized, Window, materialize, plan_windows};
pub use parquet_io::{
    AtomicParquet, Scanned, Table, TimeFilter, decoded_size, read_table, scan, schema_of,
    write_parquet_atomic,
};
pub use skewless_core::key::KeyColumn;
pub use source::{SourceStats, view_rows};

/// Progress of a long operation, reported from any thread.
pub trait Progress: Sync {
    /// Sets the total number of steps (rows, mostly) of the current phase.
    fn start(&self, total: u64);
    /// Adds `steps` done.
    fn advance(&self, steps: u64);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total: u64) {}
    fn advance(&self, _steps: u64) {}
}

/// An offline error; each names the file and column it concerns where it knows them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A Parquet file could not be decoded or encoded.
    #[error("{path}: {reason}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the Parquet reader or writer said.
        reason: String,
    },
    /// A directory without Parquet files.
    #[error("{0}: no .parquet files")]
    NoFiles(PathBuf),
    /// A column the definitions need is missing.
    #[error("{path}: no column `{column}` ({why})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// Why it is needed.
        why: String,
    },
    /// A column whose type does not convert losslessly to the declared dtype.
    #[error(
        "{path}: column `{column}` is {found}, which does not convert losslessly to {expected}"
    )]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// Its Arrow type.
        found: String,
        /// The declared dtype.
        expected: String,
    },
    /// Definitions that a backfill cannot run (a source without a path, say).
    #[error("{0}")]
    Definitions(String),
    /// The online store refused a write.
    #[error("online store, feature view `{view}`: {source}")]
    Store {
        /// The view.
        view: String,
        /// What the store said.
        #[source]
        source: skewless_online::Error,
    },
    /// Arrow refused to assemble, filter or concatenate batches Skewless built itself, or a
    /// spill file Skewless wrote does not read back (a bug or a damaged disk).
    #[error("{context}: {source}")]
    Arrow {
        /// What was being built or read.
        context: String,
        /// What Arrow said.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A transform failed on a chunk; a training set is never written with silent gaps.
    #[error("transform `{transform}` failed on entity rows {first}..{end}: {source}")]
    Transform {
        /// The transform.
        transform: String,
        /// The first row of the chunk.
        first: usize,
        /// One past the last row.
        end: usize,
        /// The engine's error, with its fault.
        #[source]
        source: std::sync::Arc<skewless_plan::TransformError>,
    },
    /// A broken invariant or a worker thread's panic (a bug): the job fails, nothing is
    /// written in its place.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            // A path the caller named that is not there or not readable is theirs to fix.
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    Fault::Caller
                }
                _ => Fault::Internal,
            },
            Error::Arrow { .. } | Error::Internal(_) => Fault::Internal,
            Error::Store { source, .. } => source.fault(),
            Error::Transform { source, .. } => source.fault(),
            Error::Parquet { .. }
            | Error::NoFiles(_)
            | Error::MissingColumn { .. }
            | Error::WrongType { .. }
            | Error::Definitions(_) => Fault::Caller,
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
