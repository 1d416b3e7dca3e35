//! The `paid` daemon and CLI: the reference deployment on a real
//! repository, built only on the library's public API.
//!
//! | module | holds |
//! | --- | --- |
//! | [`config`] | `paid.toml`, environment overrides, validation |
//! | [`serve`] | wiring the parts; poller, workers, shutdown |
//! | [`api`] | the HTTP API, `/metrics`, health endpoints |
//! | [`cli`], [`client`] | the command line and its API client |
//! | [`compare`] | comparison runs as config, API and CLI spell them |
//! | [`crypto`], [`vault`] | AES-256-GCM secrets at rest, key rotation |
//! | [`github`] | token checks (scopes, repository access) |
//! | [`forge_token`] | the forge token, replaced without a restart |
//! | [`projects`] | declared projects, the per-project model selector |
//! | [`proxy`] | the metering proxy of `paid-llm` and per-run credentials |
//! | [`reaper`], [`disk`] | orphan cleanup and the disk guard |
//! | [`webhooks`] | GitHub webhooks nudging the poller |
//! | [`health`], [`logging`], [`doctor`] | readiness, JSON logs, `paid doctor` |
//! | [`images`] | `paid images build`: the sandbox image, with progress |
//! | [`mirror`] | `paid project add --clone`: the mirror clone, with progress |

pub mod api;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod crypto;
pub mod disk;
pub mod doctor;
pub mod forge_token;
pub mod github;
pub mod health;
pub mod images;
pub mod logging;
pub mod mirror;
pub mod projects;
pub mod proxy;
pub mod reaper;
pub mod serve;
pub mod vault;
pub mod webhooks;
