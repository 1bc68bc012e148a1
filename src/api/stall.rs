//! A connection's IO with a bound on stalled writes: a client that stops
//! reading its replies (so the kernel buffer fills and every write waits)
//! gets its connection closed once a write has made no progress for the
//! client timeout. Reads are bounded elsewhere: hyper's header timeout
//! covers request heads and idle keep-alive, the body timeout in
//! [`super::routes_with`] covers bodies. A read that waits while a handler
//! runs must not be cut, which is why reads pass through untouched here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `io` whose writes fail with `TimedOut` after `limit` without progress.
pub struct Stall<S> {
    io: S,
    limit: Duration,
    /// Armed at the first write that had to wait, dropped on progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Stall<S> {
    pub fn new(io: S, limit: Duration) -> Stall<S> {
        Stall {
            io,
            limit,
            deadline: None,
        }
    }

    /// Maps a write-side poll: progress disarms the deadline, waiting arms
    /// it, and a deadline that passed turns the wait into an error.
    fn bound<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.deadline = None;
            return poll;
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("client read nothing of its reply for {limit:?}"),
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.bound(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.bound(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.bound(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.bound(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_limit() {
        // A 64-byte pipe that is never read: the second write waits forever.
        let (a, _b) = tokio::io::duplex(64);
        let mut s = Stall::new(a, Duration::from_millis(50));
        s.write_all(&[0; 64]).await.expect("fits the buffer");
        let e = s.write_all(&[0; 64]).await.expect_err("stalled");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn writes_that_progress_never_time_out() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Stall::new(a, Duration::from_millis(50));
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut sink)
                .await
                .map(|_| sink.len())
        });
        for _ in 0..100 {
            s.write_all(&[1; 64]).await.expect("the reader keeps up");
        }
        s.shutdown().await.expect("shutdown");
        drop(s);
        assert_eq!(reader.await.expect("join").expect("read"), 6400);
    }
}
