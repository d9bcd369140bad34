//! Write a Skewless feature transform in Rust.
//!
//! A transform is a plain function over typed column views that returns typed columns;
//! its signature is declared once, with a builder. The SDK hides the WebAssembly contract
//! (`wit/`), checks the input against the declared signature, and turns errors into the
//! contract's `transform-error`. Build with `cargo build --target wasm32-wasip2 --release`.
//!
//! ```ignore
//! use skewless_sdk::{export, DType, Input, Output, Result, Signature, Transform};
//!
//! struct AmountLog;
//!
//! impl Transform for AmountLog {
//!     fn signature() -> Signature {
//!         Signature::new()
//!             .input("amount", DType::Float64)
//!             .output("amount_log1p", DType::Float64)
//!     }
//!
//!     fn transform(input: &Input) -> Result<Output> {
//!         let amount = input.float64("amount")?;
//!         Ok(Output::new(input.rows()).float64("amount_log1p", amount.map(f64::ln_1p)))
//!     }
//! }
//!
//! export!(AmountLog);
//! ```
//!
//! A transform sees a whole batch, never one row: write loops over `values()` slices (or
//! use [`Values::map`] / [`Values::zip_map`]) and they vectorize. Values at null slots are
//! unspecified; the validity travels beside them.

#![deny(missing_docs)]

mod columns;
mod contract;
mod signature;

pub use columns::{
    Float32ListColumn, Float32Lists, Input, InputBuilder, Output, StringColumn, Strings, Validity,
    Values, ValuesColumn,
};
pub use signature::{DType, Signature};

/// Why a transform refused or failed a batch. Reaches the host as the contract's
/// `transform-error`, with its message, and fails that call only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The batch does not meet the transform's expectations; name the column.
    InvalidInput(String),
    /// The computation failed; name the row and the cause.
    Computation(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::Computation(m) => write!(f, "computation: {m}"),
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A feature transform: a declared signature and a function from one batch to another of
/// the same row count. Export it with [`export!`].
pub trait Transform {
    /// The declared input and output columns. Must be the same on every call.
    fn signature() -> Signature;

    /// Computes the outputs for one batch. `input` holds the declared inputs; the returned
    /// [`Output`] must hold every declared output, in any order, with `input.rows()` rows.
    fn transform(input: &Input) -> Result<Output>;
}

/// Exports a [`Transform`] implementation as the component's transform. Use once per crate.
#[macro_export]
macro_rules! export {
    ($transform:ty) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __SkewlessExport;

        impl $crate::__private::Guest for __SkewlessExport {
            fn describe() -> $crate::__private::WitSignature {
                $crate::__private::describe::<$transform>()
            }

            fn transform(
                input: $crate::__private::WitBatch,
            ) -> ::core::result::Result<$crate::__private::WitBatch, $crate::__private::WitError>
            {
                $crate::__private::run::<$transform>(input)
            }
        }

        // Exported symbols only exist in the component; a native build (unit tests) has
        // none, and its linker would refuse the contract's export names.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::export_bindings!(__SkewlessExport with_types_in $crate::__private::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::contract::bindings;
    pub use crate::contract::bindings::export_bindings;
    pub use crate::contract::bindings::exports::skewless::transform::transformer::{
        Batch as WitBatch, Guest, Signature as WitSignature, TransformError as WitError,
    };
    pub use crate::contract::{describe, run};
}
