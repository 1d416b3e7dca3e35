//! [`CountingStore`]: a [`crate::Store`] layer that counts calls per method
//! (feature `testing`), to measure how many round trips the engine makes.
//! It is the [`FlakyStore`](super::faults::FlakyStore) layer told to fail
//! nothing: one wrapper to keep in step with the port, not two.
//!
//! ```
//! # async fn example(sqlite: std::sync::Arc<dyn paid_core::Store>, run: paid_core::RunId) -> paid_core::Result<()> {
//! use paid_core::store::prelude::*;
//! use paid_core::testing::counting::CountingStore;
//!
//! let counting = CountingStore::new(sqlite);
//! counting.steps(run).await?;
//! assert_eq!(counting.calls("steps"), 1);
//! assert_eq!(counting.total_except(&["append_log"]), 1);
//! # Ok(()) }
//! ```

/// Counts every call by its port method name (`"run"`,
/// `"finish_step_and_transition"`, ...), failed calls included.
pub use super::faults::FlakyStore as CountingStore;
