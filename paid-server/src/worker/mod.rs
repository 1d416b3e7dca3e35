//! `paid-worker`: a stateless worker of a cluster sharing one PostgreSQL
//! database.
//!
//! With real backends (the default) a worker is a [`Server`](crate::Server)
//! without the HTTP API and the poller: the same `paid.toml`, the same
//! Docker runtime, GitHub forge and workspaces, metering proxy and agents;
//! see [`crate::server::serve_with`]. The `paid serve` nodes poll; workers
//! claim runs (`FOR UPDATE SKIP LOCKED` leases), drive them and heartbeat.
//!
//! With the `load-test` feature, [`instant`] runs a worker on the in-process
//! instant backends (for the cluster benchmark and failover tests).

pub mod health;
#[cfg(feature = "load-test")]
pub mod instant;

/// The lease owner name when none is configured: `<hostname>-<pid>`.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "worker".to_string() } else { host };
    format!("{host}-{}", std::process::id())
}
