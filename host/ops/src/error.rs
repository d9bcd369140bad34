//! The error of verification and drift: who is at fault survives, and so does the cause.

use skewless_core::Fault;

/// Why a verification or a drift report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Rows, an answer or a training set the caller gave that cannot be used: a value of
    /// the wrong type, a missing column, a server serving other definitions.
    #[error("{0}")]
    Invalid(String),
    /// The offline path (a backfill, a Parquet read) failed.
    #[error("{context}: {source}")]
    Offline {
        /// What was being done.
        context: String,
        /// What failed.
        #[source]
        source: skewless_offline::Error,
    },
    /// The online half of the one path failed.
    #[error(transparent)]
    Online(#[from] skewless_online::Error),
    /// A broken invariant or a failed scratch file (a bug, or the machine).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Invalid(_) => Fault::Caller,
            Error::Offline { source, .. } => source.fault(),
            Error::Online(e) => e.fault(),
            Error::Internal(_) => Fault::Internal,
        }
    }

    pub(crate) fn offline(context: &str) -> impl FnOnce(skewless_offline::Error) -> Error + '_ {
        move |source| Error::Offline {
            context: context.to_owned(),
            source,
        }
    }
}
