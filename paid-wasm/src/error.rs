//! The one error type of `paid-wasm`. Every variant about a module names it,
//! so a log line says which plugin to fix.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong loading or calling a strategy module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The module file could not be read.
    #[error("cannot read strategy module {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly module.
    #[error("strategy module {module} is not a valid WebAssembly module: {message}")]
    Malformed {
        /// The module's name.
        module: String,
        /// The validator's complaint.
        message: String,
    },
    /// The module does not have the exports (or has imports) the ABI rules
    /// out.
    #[error("strategy module {module} does not implement the Paid strategy ABI v{}: {message}", crate::ABI_VERSION)]
    WrongInterface {
        /// The module's name.
        module: String,
        /// What is missing or extra.
        message: String,
    },
    /// The module implements another version of the ABI.
    #[error("strategy module {module} implements ABI version {found}; this host speaks version {expected}")]
    AbiVersion {
        /// The module's name.
        module: String,
        /// The version it reports.
        found: i32,
        /// The version the host speaks.
        expected: i32,
    },
    /// The call used up its fuel: the module loops or does far too much work.
    #[error("strategy module {module} ran out of fuel ({fuel} units) in {call}; does it loop forever?")]
    OutOfFuel {
        /// The module's name.
        module: String,
        /// The call.
        call: String,
        /// The fuel it had.
        fuel: u64,
    },
    /// The call ran past its wall-clock deadline.
    #[error("strategy module {module} ran past its deadline of {after:?} in {call}")]
    Deadline {
        /// The module's name.
        module: String,
        /// The call.
        call: String,
        /// The deadline.
        after: Duration,
    },
    /// The module tried to grow its memory past the cap.
    #[error("strategy module {module} exceeded its memory cap of {limit_bytes} bytes in {call}")]
    MemoryExceeded {
        /// The module's name.
        module: String,
        /// The call (or `instantiate`).
        call: String,
        /// The cap.
        limit_bytes: usize,
    },
    /// The module trapped (unreachable, out-of-bounds access, stack
    /// overflow, a Rust panic...).
    #[error("strategy module {module} trapped in {call}: {message}")]
    Trap {
        /// The module's name.
        module: String,
        /// The call.
        call: String,
        /// The trap.
        message: String,
    },
    /// Every instance slot of the host's pool was in use.
    #[error("strategy module {module} could not run {call}: all {limit} instance slots are busy")]
    Busy {
        /// The module's name.
        module: String,
        /// The call.
        call: String,
        /// The host's `max_concurrent_calls`.
        limit: u32,
    },
    /// The module answered with something that is not a valid answer.
    #[error("strategy module {module} gave an invalid answer to {call}: {message}")]
    BadOutput {
        /// The module's name.
        module: String,
        /// The call.
        call: String,
        /// What was wrong.
        message: String,
    },
    /// The module answered with an error of its own.
    #[error("strategy module {module} refused {call}: {message}")]
    Guest {
        /// The module's name.
        module: String,
        /// The call.
        call: String,
        /// Its message.
        message: String,
    },
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

impl Error {
    /// The module the error is about, if any.
    pub fn module(&self) -> Option<&str> {
        match self {
            Error::Malformed { module, .. }
            | Error::WrongInterface { module, .. }
            | Error::AbiVersion { module, .. }
            | Error::OutOfFuel { module, .. }
            | Error::Deadline { module, .. }
            | Error::MemoryExceeded { module, .. }
            | Error::Trap { module, .. }
            | Error::Busy { module, .. }
            | Error::BadOutput { module, .. }
            | Error::Guest { module, .. } => Some(module),
            Error::Read { .. } | Error::Engine(_) => None,
        }
    }
}

impl From<Error> for paid_core::Error {
    fn from(e: Error) -> Self {
        paid_core::Error::Backend {
            backend: "wasm",
            message: e.to_string(),
            retryable: false,
            source: Some(Box::new(e)),
        }
    }
}
