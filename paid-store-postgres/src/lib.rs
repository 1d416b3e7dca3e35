//! The PostgreSQL [`Store`](paid_core::Store) of Paid: many stateless
//! workers on one database.
//!
//! - **Migrations** are compiled in and applied when a store connects, under
//!   an advisory lock, so workers may start together.
//! - **Claims** are one `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP
//!   LOCKED) RETURNING …`: concurrent workers take different runs without
//!   waiting on each other. Priorities come first, then age; each project's
//!   `max_concurrent_runs` caps its leased runs, exactly, under concurrency
//!   ([`PgStoreOptions::project_limits`], on by default). Parked runs
//!   (waiting for a human, [`paid_core::RunState::is_parked`]) are never
//!   claimed and hold no lease, so they take no slot.
//! - **Leases** expire unless heartbeated; an expired lease is claimable, and
//!   every lease-checked write checks owner, expiry and expected state in the
//!   same statement as the write, so a stale worker changes nothing.
//! - **Wake-ups**: the store sends `NOTIFY` when work appears, and
//!   [`PgStore::work_listener`] wakes an idle worker at once, with polling
//!   as the fallback.
//! - Each store lives in one **schema** ([`PgStoreOptions::schema`]), so tests
//!   and tenants can share a database.
//!
//! ```no_run
//! use paid_core::store::prelude::*;
//! use paid_core::{ClaimRequest, Ids, NewRun, Project, ProjectId, RandomIds, RepoRef, RunContext, RunId, RunKind};
//! use paid_store_postgres::{PgStore, PgStoreOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = PgStoreOptions::new("postgres://paid:paid@127.0.0.1:55432/paid_test").schema("paid");
//! let store = PgStore::connect_with(options).await?;
//!
//! let now = chrono::Utc::now();
//! let project = Project::new(
//!     ProjectId(RandomIds.uuid()),
//!     RepoRef::new("acme", "widgets"),
//!     "https://github.com/acme/widgets.git",
//!     now,
//! );
//! store.put_project(&project).await?;
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
//! The same schema also holds the opt-in capabilities: [`PgStore`]
//! implements [`LearningStore`](paid_core::ports::learning::LearningStore)
//! (prompts, experiments, scored runs) and
//! [`SecretStore`](paid_core::SecretStore) (opaque ciphertext, versioned,
//! with compare-and-set writes), and passes `paid_core::testing::learning`
//! and `paid_core::testing::secrets`.

mod deliveries;
mod error;
mod journal;
mod learning;
mod leases;
mod logs;
mod migrations;
mod notify;
mod options;
mod projects;
mod records;
mod rows;
mod runs;
mod secrets;
mod spend;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;
pub use migrations::SCHEMA_VERSION;
pub use notify::{Wake, WorkListener};
pub use options::PgStoreOptions;
pub use store::PgStore;
