//! Policies: pure decisions over data, with no I/O.

mod forbidden;
pub mod naming;
mod trust;

pub use forbidden::{DEFAULT_FORBIDDEN, ForbiddenPaths};
pub use naming::{branch_name, pr_title};
pub use trust::{is_trusted, require_trusted};
