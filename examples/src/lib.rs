//! Reference deployments and embedding examples for Paid.
//!
//! - [`demo`]: the whole pipeline on local parts (`paid demo`).
//! - [`daemon`]: the `paid` daemon and CLI for real repositories (`paid serve`, ...).

pub mod daemon;
pub mod demo;
pub mod worker;
