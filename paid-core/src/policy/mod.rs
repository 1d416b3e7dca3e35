//! Policies: pure decisions over data, with no I/O.

mod forbidden;
pub mod naming;
pub mod text;
mod trust;

pub use forbidden::{DEFAULT_FORBIDDEN, ForbiddenPaths};
pub use naming::{branch_name, pr_title};
pub use text::neutralize;
pub use trust::{is_listed, is_trusted, require_trusted};
