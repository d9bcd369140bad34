//! Skewless domain types: the column data types a transform may read or produce, the
//! declared signature of a transform, and the rules that make a signature valid.
//!
//! This crate owns *what* a column, a signature, an entity key and a project's definitions
//! are, how they map onto Arrow, and the one TTL rule both serving and training apply. It
//! knows nothing of WebAssembly (that is `skewless-engine`), of storage, or of HTTP.

#![deny(missing_docs)]

pub mod aggregation;
pub mod assemble;
pub mod definitions;
mod dtype;
mod fault;
pub mod fs;
pub mod key;
mod signature;
mod ttl;
mod yaml_lines;

pub use definitions::{DefinitionErrors, Definitions, Project};
pub use dtype::{
    CANONICAL_NAN_F32, CANONICAL_NAN_F64, DType, UTC, canonical_f32, canonical_f64,
    format_timestamp, has_other_nan_f32, has_other_nan_f64, now_micros,
};
pub use fault::{Fault, panic_message};
pub use signature::{ColumnSpec, Signature, is_identifier};
pub use ttl::{Interval, Ttl};

/// A Skewless domain error: the caller's fault (an invalid definition or signature), but
/// for [`Error::Serialize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A dtype name that Skewless does not know.
    #[error("unknown dtype `{0}` (expected one of: {known})", known = DType::NAMES.join(", "))]
    UnknownDType(String),
    /// A signature that breaks a rule; the message names the column.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// Valid definitions that could not be written as YAML (a bug).
    #[error("the definitions could not be written as YAML: {0}")]
    Serialize(String),
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::UnknownDType(_) | Error::InvalidSignature(_) => Fault::Caller,
            Error::Serialize(_) => Fault::Internal,
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
