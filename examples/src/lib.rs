//! Reference deployments and embedding examples for Paid.
//!
//! - [`demo`]: the whole pipeline on local parts (`paid demo`).

pub mod demo;
