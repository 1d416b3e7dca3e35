//! Policies: pure decisions over data, with no I/O.

mod forbidden;
mod trust;

pub use forbidden::{DEFAULT_FORBIDDEN, ForbiddenPaths};
pub use trust::{is_trusted, require_trusted};
