//! The SQLite [`Store`](paid_core::Store) of Paid: the embedded default.
//!
//! One file holds projects, runs, their step journal and logs, usage and
//! outcomes. The file is in WAL mode, so readers never wait on the writer;
//! its schema is migrated when it opens. Every call runs off the async
//! runtime, and every write is one transaction.
//!
//! ```
//! use paid_core::store::prelude::*;
//! use paid_core::{ClaimRequest, Ids, NewRun, Project, ProjectId, RandomIds, RepoRef, RunContext, RunId, RunKind};
//! use paid_store_sqlite::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("paid.db"))?;
//!
//! let now = chrono::Utc::now();
//! let project = Project::new(
//!     ProjectId(RandomIds.uuid()),
//!     RepoRef::new("acme", "widgets"),
//!     "https://github.com/acme/widgets.git",
//!     now,
//! );
//! store.put_project(&project).await?;
//!
//! let run = store
//!     .create_run(&NewRun {
//!         id: RunId(RandomIds.uuid()),
//!         project_id: project.id,
//!         issue_number: 7,
//!         kind: RunKind::Build,
//!         priority: 0,
//!         created_at: now,
//!         context: RunContext::new(),
//!     })
//!     .await?;
//!
//! // A worker leases the run; nobody else can claim it until the lease expires.
//! let lease = chrono::Duration::seconds(30);
//! let claimed = store.claim(&ClaimRequest { owner: "worker-1".into(), lease, now }).await?;
//! assert_eq!(claimed.map(|r| r.id), Some(run.id));
//! assert_eq!(store.claim(&ClaimRequest { owner: "worker-2".into(), lease, now }).await?, None);
//! # Ok(())
//! # }
//! ```
//!
//! The store passes `paid_core::testing::store`, the conformance suite
//! every [`Store`](paid_core::Store) runs; its module documentation spells
//! out the contract.
//!
//! The same database also holds the learning loop's data: [`SqliteStore`]
//! implements the opt-in
//! [`LearningStore`](paid_core::ports::learning::LearningStore) and passes
//! `paid_core::testing::learning`.

mod deliveries;
mod error;
mod journal;
mod learning;
mod leases;
mod logs;
mod migrations;
mod projects;
mod records;
mod rows;
mod runs;
mod secrets;
mod spend;
mod store;

pub use error::Error;
pub use migrations::SCHEMA_VERSION;
pub use store::SqliteStore;
