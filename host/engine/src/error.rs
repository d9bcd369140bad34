use std::path::PathBuf;
use std::time::Duration;

pub use skewless_core::Fault;

/// An engine error. Every variant names the transform it concerns (its label, such as
/// `fraud_risk@1.0.0` or a file name) and, where known, the column.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not WebAssembly at all.
    #[error("{transform}: not a WebAssembly file (no `\\0asm` header)")]
    NotWasm {
        /// The transform label.
        transform: String,
    },
    /// A core WebAssembly module where a component is required.
    #[error(
        "{transform}: a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    NotAComponent {
        /// The transform label.
        transform: String,
    },
    /// Malformed or invalid component bytes.
    #[error("{transform}: invalid component: {reason}")]
    InvalidComponent {
        /// The transform label.
        transform: String,
        /// What wasmtime's validator or compiler said.
        reason: String,
    },
    /// The component imports something the sandbox does not provide.
    #[error(
        "{transform}: imports {imports:?}, which the sandbox does not provide (only WASI 0.2 interfaces are linked)"
    )]
    UnsupportedImport {
        /// The transform label.
        transform: String,
        /// Every import that is not allowed.
        imports: Vec<String>,
    },
    /// The component does not export the `skewless:transform/transformer@0.1.0` interface
    /// with the expected types.
    #[error(
        "{transform}: does not implement the skewless:transform@0.1.0 world (export `skewless:transform/transformer@0.1.0`): {reason}"
    )]
    WrongWorld {
        /// The transform label.
        transform: String,
        /// Which export is missing or mistyped.
        reason: String,
    },
    /// The declared signature breaks a rule.
    #[error("{transform}: {source}")]
    InvalidSignature {
        /// The transform label.
        transform: String,
        /// The rule that was broken.
        #[source]
        source: skewless_core::Error,
    },
    /// The input batch does not match the declared inputs.
    #[error("{transform}: invalid input{}: {reason}", column_suffix(.column))]
    InvalidInput {
        /// The transform label.
        transform: String,
        /// The offending input column, when one is to blame.
        column: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The transform returned a `transform-error`.
    #[error("{transform}: the transform failed: {kind}: {message}")]
    Guest {
        /// The transform label.
        transform: String,
        /// `invalid-input`, `computation` or `other`.
        kind: &'static str,
        /// The transform's own message.
        message: String,
    },
    /// The transform trapped (a panic, an out-of-bounds access, `unreachable`).
    #[error("{transform}: the transform trapped: {message}{}", stderr_suffix(.stderr))]
    Trap {
        /// The transform label.
        transform: String,
        /// The trap and its wasm backtrace.
        message: String,
        /// The first bytes the guest wrote to stderr (a panic message, say).
        stderr: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("{transform}: the transform ran past its deadline of {deadline:?} and was stopped")]
    Timeout {
        /// The transform label.
        transform: String,
        /// The deadline it exceeded.
        deadline: Duration,
    },
    /// The guest tried to grow its memory past the cap.
    #[error(
        "{transform}: the transform tried to use more than its memory limit of {limit} bytes (asked for {requested} bytes)"
    )]
    MemoryLimit {
        /// The transform label.
        transform: String,
        /// The cap, in bytes.
        limit: usize,
        /// The memory size the guest asked for, in bytes.
        requested: usize,
    },
    /// The output is larger than the output-size cap.
    #[error("{transform}: the output is at least {bytes} bytes, over the limit of {limit} bytes")]
    OutputTooLarge {
        /// The transform label.
        transform: String,
        /// The output size in bytes; for an output so large that copying it out was
        /// stopped, how much the copy was allowed (it is larger still).
        bytes: usize,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The output breaks the transform's own signature or the contract.
    #[error("{transform}: invalid output{}: {reason}", column_suffix(.column))]
    InvalidOutput {
        /// The transform label.
        transform: String,
        /// The offending output column, when one is to blame.
        column: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// No instance slot was free: more concurrent calls than the pool holds.
    #[error("{transform}: no free instance slot ({reason}); retry or raise the pool size")]
    Capacity {
        /// The transform label.
        transform: String,
        /// What wasmtime reported.
        reason: String,
    },
    /// Reading or writing the compile cache failed.
    #[error("compile cache {path}: {source}")]
    Cache {
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A bug or an unexpected condition in Skewless or wasmtime.
    #[error("internal engine error: {0}")]
    Internal(String),
}

fn column_suffix(column: &Option<String>) -> String {
    column
        .as_ref()
        .map(|c| format!(" column `{c}`"))
        .unwrap_or_default()
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; guest stderr: {stderr}")
    }
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::NotWasm { .. }
            | Error::NotAComponent { .. }
            | Error::InvalidComponent { .. }
            | Error::UnsupportedImport { .. }
            | Error::WrongWorld { .. }
            | Error::InvalidSignature { .. }
            | Error::InvalidInput { .. } => Fault::Caller,
            Error::Guest { .. }
            | Error::Trap { .. }
            | Error::Timeout { .. }
            | Error::MemoryLimit { .. }
            | Error::OutputTooLarge { .. }
            | Error::InvalidOutput { .. } => Fault::Guest,
            // Every slot busy is a moment's overload: retrying may succeed.
            Error::Capacity { .. } => Fault::Unavailable,
            Error::Cache { .. } | Error::Internal(_) => Fault::Internal,
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
