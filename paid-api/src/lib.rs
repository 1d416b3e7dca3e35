//! The Paid HTTP API as types, shared by the server (`paid-server`), the
//! `paid` CLI and the tests, so none of them parses untyped JSON:
//!
//! - [`Envelope`] (`{"data", "meta"}`) around every success, the one error
//!   shape [`ErrorEnvelope`], and pagination ([`Meta::next_cursor`],
//!   [`Page`]);
//! - one module of request and response types per resource;
//! - with the `client` feature, [`ApiClient`]: one typed method per route.
//!
//! ```
//! use paid_api::{Envelope, RunsQuery};
//! let page: Envelope<Vec<paid_api::RunSummary>> =
//!     serde_json::from_str(r#"{"data": [], "meta": {"request_id": "r1", "next_cursor": null}}"#).unwrap();
//! assert!(page.data.is_empty());
//! assert_eq!(serde_json::to_string(&RunsQuery::new().active(true)).unwrap(), r#"{"active":true}"#);
//! ```

#[cfg(feature = "client")]
pub mod client;
pub mod costs;
pub mod envelope;
pub mod learning;
pub mod projects;
pub mod runs;
pub mod secrets;
pub mod status;

#[cfg(feature = "client")]
pub use client::{ApiClient, ClientError};
pub use costs::{BudgetState, CostRow, CostView, Costs, CostsQuery};
pub use envelope::{Envelope, ErrorBody, ErrorEnvelope, Meta, Page};
pub use learning::{ExperimentDetail, ExperimentsQuery, PromptDetail};
pub use projects::{NewProject, ProjectSettings, ProjectSource, ProjectView, RemovedProject};
pub use runs::{
    Cancelled, Candidates, CompareRequest, IssueView, Logs, LogsQuery, Pick, RunDetail, RunSummary, RunsQuery,
    TriggerRun,
};
pub use secrets::{PutSecret, RotateKey, RotateReport, Rotated, SecretStored, Secrets, TokenValidation};
pub use status::{DiskLevel, DiskReport, FsUsage, Status, SweepReport};
