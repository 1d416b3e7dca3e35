//! The ports: object-safe async traits that backends implement.
//!
//! Each is used as `Arc<dyn Port>`. Requests that may grow take a struct, so
//! new options do not break implementors.

pub mod agent;
pub mod credentials;
pub mod forge;
pub mod learning;
pub mod limits;
pub mod llm;
pub mod sandbox;
pub mod secrets;
pub mod selector;
pub mod store;
pub mod workspaces;
