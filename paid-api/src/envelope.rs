//! The envelope every `/api/v1` answer comes in, the one error shape, and
//! pagination.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A success: `{"data": …, "meta": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The answer.
    pub data: T,
    /// About the answer.
    pub meta: Meta,
}

/// About an answer: its request id, when it was made, and for lists the
/// cursor of the next page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The request id (also in the `x-request-id` header).
    pub request_id: Option<String>,
    /// When the answer was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
    /// For a list: pass this as `cursor` to get the next page; absent on
    /// the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A failure: `{"error": {"code", "message", "details"}, "meta": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// What went wrong.
    pub error: ErrorBody,
    /// About the answer.
    pub meta: Meta,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine code (`not_found`, `invalid_input`, `conflict`, ...).
    pub code: String,
    /// What happened and what to do, for people.
    pub message: String,
    /// Structured details; an empty object when there are none.
    #[serde(default)]
    pub details: Value,
}

/// One page of a list, with the cursor of the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

impl<T> From<Envelope<Vec<T>>> for Page<T> {
    fn from(e: Envelope<Vec<T>>) -> Self {
        Page { items: e.data, next_cursor: e.meta.next_cursor }
    }
}
