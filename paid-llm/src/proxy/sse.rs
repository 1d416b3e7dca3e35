//! Streaming SSE responses through unchanged while metering them on the side.
//!
//! [`tap`] wraps the upstream body stream: each chunk is handed to the client
//! the moment it arrives, and a cheap copy (a reference-counted [`Bytes`])
//! goes down a channel to a separate task that parses events with
//! `eventsource-stream` and feeds them to a [`Meter`]. The client never
//! waits on parsing, and nothing is buffered beyond the chunk in hand.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::providers::ProviderKind;
use crate::usage::{Meter, Metered};

/// How a tapped stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The upstream finished it.
    Complete,
    /// The upstream connection broke.
    UpstreamError,
    /// The client went away first.
    ClientClosed,
}

impl StreamEnd {
    /// The status recorded for a `200` stream that ended this way.
    pub fn status(self) -> &'static str {
        match self {
            StreamEnd::Complete => "200",
            StreamEnd::UpstreamError => "200_upstream_broke",
            StreamEnd::ClientClosed => "200_client_closed",
        }
    }
}

const OPEN: u8 = 0;
const COMPLETE: u8 = 1;
const BROKEN: u8 = 2;

/// The client-facing side of a tapped stream.
pub struct Tap {
    inner: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    copies: Option<mpsc::UnboundedSender<Bytes>>,
    end: Arc<AtomicU8>,
}

impl Stream for Tap {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(tx) = &this.copies {
                    let _ = tx.send(chunk.clone());
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end.store(BROKEN, Ordering::Release);
                this.copies = None;
                Poll::Ready(Some(Err(std::io::Error::other(e.without_url()))))
            }
            Poll::Ready(None) => {
                this.end.store(COMPLETE, Ordering::Release);
                this.copies = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Passes `upstream` through, and calls `done` with what the events said
/// once the stream is over (finished, broken, or dropped by the client).
pub fn tap<F>(kind: ProviderKind, upstream: BoxStream<'static, Result<Bytes, reqwest::Error>>, done: F) -> Tap
where
    F: FnOnce(Metered, StreamEnd) + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let end = Arc::new(AtomicU8::new(OPEN));
    let seen_end = end.clone();
    tokio::spawn(async move {
        let mut meter = Meter::new(kind);
        let mut events = UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>).eventsource();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => meter.observe_event(&ev.data),
                Err(e) => {
                    tracing::debug!(error = %e, "unparsable event in a proxied stream");
                }
            }
        }
        let how = match seen_end.load(Ordering::Acquire) {
            COMPLETE => StreamEnd::Complete,
            BROKEN => StreamEnd::UpstreamError,
            _ => StreamEnd::ClientClosed,
        };
        done(meter.finish(), how);
    });
    Tap { inner: upstream, copies: Some(tx), end }
}
