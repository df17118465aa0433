//! Response bodies from stacks, with an idle timeout: once the head has arrived (bounded by
//! `proxy.upstream_timeout_ms`), each further frame must arrive within `proxy.upstream_body_idle_ms`, or the body
//! ends with an error and hyper aborts the answer to the client (the connection is closed, or the HTTP/2 stream
//! reset). A stack that stalls mid-body therefore cannot hold a client connection open forever. A slow body that
//! keeps sending is not cut: the timeout is between frames, not over the whole body.
//!
//! The timer is made only when the stack's body is not ready at once, so small bodies that arrive with their
//! head (the common case) cost no timer at all.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::upstream::bytes_body::BoxError;

/// A stack's body went quiet for longer than the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stack's response body was idle for longer than the timeout")]
pub struct BodyIdle;

/// A body that fails with [`BodyIdle`] when no frame arrives within `idle`.
#[derive(Debug)]
pub struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, idle: Duration) -> IdleTimeout<B> {
        IdleTimeout {
            inner,
            idle,
            timer: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // Progress: the next frame gets the whole idle time again.
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timer = None;
                        Poll::Ready(Some(Err(Box::new(BodyIdle))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use http_body_util::StreamBody;

    type Chunks = feed::Chunks;

    /// A body fed through a channel, so the test decides when frames arrive.
    mod feed {
        use super::*;
        use tokio::sync::mpsc;

        pub type Chunks = StreamBody<Receiver>;

        pub struct Receiver(pub mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

        impl futures::Stream for Receiver {
            type Item = Result<Frame<Bytes>, std::io::Error>;

            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                self.0.poll_recv(cx)
            }
        }
    }

    fn channel() -> (
        tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
        Chunks,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, StreamBody::new(feed::Receiver(rx)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_sending_is_never_cut() {
        let (tx, body) = channel();
        let mut body = IdleTimeout::new(body, Duration::from_secs(5));
        tokio::spawn(async move {
            for _ in 0..4 {
                // 4 s apart: 16 s in all, longer than the idle timeout, never idle for 5 s.
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.unwrap();
            }
        });
        let mut got = 0;
        while let Some(frame) = body.frame().await {
            assert!(frame.unwrap().is_data());
            got += 1;
        }
        assert_eq!(got, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_with_an_error_after_the_idle_time() {
        let (tx, body) = channel();
        let mut body = IdleTimeout::new(body, Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from_static(b"head"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<BodyIdle>().is_some(), "{err}");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "paused clock: exactly the idle time"
        );
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_ready_at_once_needs_no_timer() {
        let body = http_body_util::Full::new(Bytes::from_static(b"small"));
        let mut body = IdleTimeout::new(body, Duration::from_secs(5));
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "small");
        assert!(body.timer.is_none());
        assert!(body.frame().await.is_none());
    }
}
