//! Waking idle workers: `LISTEN/NOTIFY`, with polling as the fallback.
//!
//! The store sends `NOTIFY "paid_work:<schema>"` when a run is queued, an
//! active run's lease is given up, a run ends or parks (freeing a slot of
//! its project), or a parked run is moved on (picked, or cancelled into
//! cleanup). It sends it as a statement of its own after the write commits,
//! not from inside the write: PostgreSQL serializes the commits of notifying
//! transactions on one database-wide lock, held through the commit's WAL
//! flush, which would cap every such write at one flush at a time. A
//! transaction that only notifies writes no WAL and commits at once.
//!
//! One background task per store
//! listens on its own connection and bumps a counter; every
//! [`WorkListener`] watches the counter. A lost connection also bumps it
//! (notifications may have been missed while it was down), and the task
//! reconnects with backoff. A waiter always wakes by its timeout at the
//! latest, so a worker polls at that interval even with no notification.

use std::time::Duration;

use std::sync::{Mutex, PoisonError};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

use crate::Error;

/// Why [`WorkListener::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A notification arrived (or the listener reconnected and may have
    /// missed one): claim now.
    Notified,
    /// The timeout passed without one: poll anyway.
    TimedOut,
}

/// Waits for work to appear. Made by [`crate::PgStore::work_listener`].
///
/// It remembers what it has seen: a notification that arrives between two
/// waits (say, while the worker was claiming) makes the next wait return at
/// once, so none is lost between "nothing to claim" and "wait".
#[derive(Debug, Clone)]
pub struct WorkListener {
    rx: watch::Receiver<u64>,
}

impl WorkListener {
    /// Waits until work may have appeared, or `timeout` passes.
    pub async fn wait(&mut self, timeout: Duration) -> Wake {
        match tokio::time::timeout(timeout, self.rx.changed()).await {
            Ok(Ok(())) => {
                self.rx.borrow_and_update();
                Wake::Notified
            }
            // The listener task is gone (the store was dropped): poll.
            Ok(Err(_)) => {
                tokio::time::sleep(timeout).await;
                Wake::TimedOut
            }
            Err(_) => Wake::TimedOut,
        }
    }
}

/// Announces work on `channel`. Best effort: the write it follows has
/// committed, and idle workers poll anyway.
pub(crate) async fn announce(pool: &PgPool, channel: &str) {
    if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(pool).await {
        tracing::debug!(%channel, error = %e, "could not NOTIFY; idle workers will find the work by polling");
    }
}

/// The lazily started listener task of one store and its clones.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    rx: OnceCell<watch::Receiver<u64>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    /// A listener, starting the task (and its first `LISTEN`) on first use.
    /// `pool` should be the store's own one-connection pool for listening.
    pub(crate) async fn listener(&self, pool: &PgPool, channel: &str) -> Result<WorkListener, Error> {
        let rx = self
            .rx
            .get_or_try_init(|| async {
                let first = subscribe(pool, channel).await?;
                let (tx, rx) = watch::channel(0u64);
                let task = tokio::spawn(listen(pool.clone(), first, tx, channel.to_string()));
                *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
                Ok::<_, Error>(rx)
            })
            .await?;
        let mut rx = rx.clone();
        // Only what happens from now on wakes this listener.
        rx.borrow_and_update();
        Ok(WorkListener { rx })
    }

    /// Stops the listener task, giving its connection back. Waiters then
    /// fall back to their timeouts.
    pub(crate) async fn stop(&self) {
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            task.abort();
            // A cancelled task is the expected outcome.
            let _ = task.await;
        }
    }
}

async fn subscribe(pool: &PgPool, channel: &str) -> Result<PgListener, Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(channel).await?;
    Ok(listener)
}

async fn listen(pool: PgPool, first: PgListener, tx: watch::Sender<u64>, channel: String) {
    const MIN_BACKOFF: Duration = Duration::from_millis(100);
    let bump = |tx: &watch::Sender<u64>| tx.send_modify(|n| *n = n.wrapping_add(1));
    let mut listener = Some(first);
    let mut backoff = MIN_BACKOFF;
    loop {
        let result = match listener.as_mut() {
            Some(l) => tokio::select! {
                // Every receiver is gone: nobody waits any more.
                () = tx.closed() => return,
                next = l.try_recv() => next.map(|n| n.is_some()).map_err(Error::from),
            },
            None => {
                let subscribed = tokio::select! {
                    () = tx.closed() => return,
                    s = subscribe(&pool, &channel) => s,
                };
                subscribed.map(|l| {
                    tracing::info!(%channel, "LISTEN connection re-established");
                    listener = Some(l);
                    // Whatever was sent while it was down is lost: wake waiters.
                    true
                })
            }
        };
        match result {
            Ok(true) => {
                backoff = MIN_BACKOFF;
                // Drain what is already buffered: one wake-up is enough.
                if let Some(l) = listener.as_mut() {
                    while l.next_buffered().is_some() {}
                }
                bump(&tx);
            }
            Ok(false) => {
                tracing::warn!(%channel, "lost the LISTEN connection; reconnected");
                bump(&tx);
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, ?backoff, "LISTEN connection failed; retrying");
                listener = None;
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
