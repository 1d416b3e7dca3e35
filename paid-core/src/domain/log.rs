use serde::{Deserialize, Serialize};

use crate::{RunId, Timestamp};

/// Appended once to a run's log when its byte cap is reached.
pub const TRUNCATION_MARKER: &str = "\n[paid: log truncated: per-run cap reached]\n";

/// Which stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
    /// Paid's own notes (step changes, truncation).
    System,
}

impl LogStream {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            "system" => Ok(LogStream::System),
            other => Err(crate::Error::InvalidInput { what: "log stream".into(), message: other.into() }),
        }
    }
}

/// A piece of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    /// The run.
    pub run_id: RunId,
    /// Position, from 1.
    pub seq: u64,
    /// Source stream.
    pub stream: LogStream,
    /// Text (invalid UTF-8 replaced).
    pub text: String,
    /// When stored.
    pub at: Timestamp,
}

/// What happened to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogAppend {
    /// Bytes of the chunk that were stored.
    pub stored: usize,
    /// Whether the cap cut this chunk (or an earlier one did).
    pub truncated: bool,
}
