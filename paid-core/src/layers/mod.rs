//! Layers: wrappers that add one cross-cutting concern to a port and are
//! ports themselves, in the style of tower's middleware and `object_store`'s
//! `LimitStore`.
//!
//! A layer implements every method of the port it wraps, provided methods
//! included (`#[deny(clippy::missing_trait_methods)]` on its impl), so a new
//! port method cannot fall through to a default that bypasses it. Every
//! layer passes its port's conformance suite (`paid_core::testing`).
//!
//! # Store layers: one impl per sub-trait, each denying missing methods
//!
//! [`crate::Store`] is the sum of six sub-traits ([`crate::Catalog`],
//! [`crate::Runs`], [`crate::Journal`], [`crate::RunLog`], [`crate::Ledger`],
//! [`crate::Audit`]). A store layer ([`RetryStore`], and the test wrappers
//! `testing::faults::FlakyStore`, which `testing::counting::CountingStore` also is)
//! writes one impl per sub-trait by hand, each carrying
//! `#[deny(clippy::missing_trait_methods)]`; it is a `Store` through the
//! blanket impl. We chose the lint over a delegation macro: each method
//! stays a plain, greppable function with its own policy (retry checks
//! whether a lost write committed), and the guarantee is the same:
//!
//! - a new *required* method breaks the build of every layer (a missing
//!   impl item);
//! - a new *provided* method (such as
//!   [`crate::Journal::resume_or_begin_step`]) fails `cargo clippy -- -D
//!   warnings` until each layer forwards it;
//! - a new *sub-trait* breaks the build: without its impl, the layer is no
//!   longer a `Store`, and `Arc::new(layer) as Arc<dyn Store>` fails.
//!
//! [`crate::StoreExt`] needs no layer impl: its calls go through the
//! port's methods, hence through the layer.
//!
//! # Where Paid retries
//!
//! Each boundary retries once, and a layer that gave up says so with an
//! error that is no longer retryable ([`crate::Error::RetriesExhausted`]),
//! so a caller above it does not retry the same failure again:
//!
//! - **Store calls**: [`RetryStore`], around the whole [`crate::Store`]
//!   (rides out a database restart; recognizes writes that committed before
//!   their answer was lost).
//! - **A step's side effect** (sandbox, git, forge calls): the engine's
//!   journal, per step, for idempotent steps only.
//! - **HTTP and LLM calls**: the adapters' own layers (`paid-github`,
//!   `paid-llm`).
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//!
//! use paid_core::{Store, layers::RetryStore};
//!
//! fn with_retries(store: Arc<dyn Store>) -> Arc<dyn Store> {
//!     Arc::new(RetryStore::new(store, Duration::from_secs(60)))
//! }
//! ```

mod retry;

pub use retry::RetryStore;
