//! Reference binaries (`paid`, `paid-worker`) and embedding examples for
//! Paid. The deployment itself is the `paid-server` library; this crate holds
//! only command-line front ends and, behind the `demo` feature, `paid demo`.

pub mod cli;
#[cfg(feature = "demo")]
pub mod demo;
pub mod worker_cli;
