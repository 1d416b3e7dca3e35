//! Conformance suites for port implementations, and fixtures to build them
//! from (feature `testing`).
//!
//! Each suite is a set of `pub async fn`s that a backend calls from its own
//! tests, in the style of `object_store`'s integration module: a backend is
//! done when its port's suite passes against it.

pub mod counting;
pub mod faults;
pub mod fixtures;
pub mod forge;
pub mod instant;
pub mod learning;
pub mod null;
pub mod sandbox;
pub mod secrets;
pub mod store;
pub mod workspaces;
