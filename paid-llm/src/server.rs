//! Serving an axum router on a TCP listener, with a handle to stop it.

use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;

/// A server running in the background. Dropping the handle stops it.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Binds `addr` (port 0 picks a free port) and serves `router` there.
    pub async fn bind(addr: SocketAddr, router: Router) -> Result<Self, Error> {
        let listener =
            TcpListener::bind(addr).await.map_err(|source| Error::Io { what: format!("binding {addr}"), source })?;
        Self::serve(listener, router)
    }

    /// Serves `router` on `listener`.
    pub fn serve(listener: TcpListener, router: Router) -> Result<Self, Error> {
        let addr =
            listener.local_addr().map_err(|source| Error::Io { what: "reading the bound address".into(), source })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = listener.tap_io(|tcp| {
            // Streams are latency-sensitive: no Nagle delay on small chunks.
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "server stopped");
            }
        });
        Ok(Self { addr, stop: Some(stop), task: Some(task) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
