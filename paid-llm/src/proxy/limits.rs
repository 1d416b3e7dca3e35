//! In-flight limits: requests per run at once, and requests through the
//! proxy at once. A request holds its permits until its response ends (a
//! stream's, when the stream does), so one sandbox cannot hold the proxy's
//! memory with many large bodies, nor crowd out the other runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use paid_core::RunId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// The run has `limit` requests in flight already.
    Run { limit: usize },
    /// The proxy has `limit` requests in flight already.
    Proxy { limit: usize },
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Run { limit } => write!(f, "this run already has {limit} requests in flight; retry when one ends"),
            Busy::Proxy { limit } => write!(f, "the proxy already has {limit} requests in flight; retry shortly"),
        }
    }
}

/// The permits of one request in flight.
#[derive(Debug)]
pub(crate) struct Admitted {
    _run: OwnedSemaphorePermit,
    _proxy: OwnedSemaphorePermit,
}

/// The proxy's in-flight limits.
#[derive(Debug)]
pub(crate) struct InFlight {
    per_run: usize,
    proxy: Arc<Semaphore>,
    proxy_limit: usize,
    runs: Mutex<HashMap<RunId, Arc<Semaphore>>>,
}

impl InFlight {
    /// At most `per_run` requests of one run and `proxy` requests in all at
    /// once (each at least 1).
    pub(crate) fn new(per_run: usize, proxy: usize) -> Self {
        let (per_run, proxy) = (per_run.max(1), proxy.max(1));
        Self { per_run, proxy: Arc::new(Semaphore::new(proxy)), proxy_limit: proxy, runs: Mutex::default() }
    }

    /// Lets a request of `run` in, or says why not. Never waits.
    pub(crate) fn admit(&self, run: RunId) -> Result<Admitted, Busy> {
        let semaphore = {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.entry(run).or_insert_with(|| Arc::new(Semaphore::new(self.per_run))).clone()
        };
        let run_permit = semaphore.try_acquire_owned().map_err(|_| Busy::Run { limit: self.per_run })?;
        let proxy_permit =
            self.proxy.clone().try_acquire_owned().map_err(|_| Busy::Proxy { limit: self.proxy_limit })?;
        Ok(Admitted { _run: run_permit, _proxy: proxy_permit })
    }

    /// Forgets `run` (it ended); requests still in flight keep their permits.
    pub(crate) fn forget(&self, run: RunId) {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).remove(&run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_and_the_proxy_each_have_a_ceiling_and_permits_come_back() {
        let limits = InFlight::new(2, 3);
        let (a, b) = (RunId(uuid::Uuid::now_v7()), RunId(uuid::Uuid::now_v7()));
        let a1 = limits.admit(a).ok();
        let a2 = limits.admit(a).ok();
        assert!(a1.is_some() && a2.is_some());
        assert_eq!(limits.admit(a).err(), Some(Busy::Run { limit: 2 }));
        let b1 = limits.admit(b).ok();
        assert!(b1.is_some());
        assert_eq!(limits.admit(b).err(), Some(Busy::Proxy { limit: 3 }), "three in flight in all");
        drop(a1);
        assert!(limits.admit(b).is_ok(), "a finished request frees both permits");
        assert!(limits.admit(a).is_ok());
    }
}
