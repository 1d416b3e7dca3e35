//! The `paid` daemon and CLI: the reference deployment on a real
//! repository, built only on the library's public API.
//!
//! | module | holds |
//! | --- | --- |
//! | [`config`] | `paid.toml`, environment overrides, validation |
//! | [`serve`] | wiring the parts; poller, workers, shutdown |
//! | [`api`] | the HTTP API, `/metrics`, health endpoints |
//! | [`cli`], [`client`] | the command line and its API client |
//! | [`crypto`], [`vault`] | AES-256-GCM secrets at rest, key rotation |
//! | [`github`] | token checks (scopes, repository access) |
//! | [`projects`] | declared projects, the per-project model selector |
//! | [`proxy`] | the metering proxy of `paid-llm` and per-run credentials |
//! | [`reaper`], [`disk`] | orphan cleanup and the disk guard |
//! | [`health`], [`logging`], [`doctor`] | readiness, JSON logs, `paid doctor` |

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod disk;
pub mod doctor;
pub mod github;
pub mod health;
pub mod logging;
pub mod projects;
pub mod proxy;
pub mod reaper;
pub mod serve;
pub mod vault;
