//! Serving the routes on a unix socket or TCP. gipam owns the accept loop so
//! that no client can hold what the others need:
//!
//! - at most [`Limits::max_connections`] connections are open; the next one
//!   is accepted and closed at once (so it costs no fd and no memory while
//!   it waits in the backlog), and each burst of such refusals is logged
//!   once, not once per connection;
//! - a request's head must arrive within the client timeout, and so must
//!   the next one on a keep-alive connection (hyper's header read timeout
//!   starts when the connection waits for a request: it reaps idle
//!   connections too); the body within the same time (`routes_with`); a
//!   reply that the client does not read fails the connection after the
//!   same time (`api::stall`);
//! - hyper's read buffer is capped at [`MAX_BUF`], so a header flood
//!   cannot grow it: with the body cap ([`super::MAX_BODY`]) a connection
//!   costs a bounded amount of memory, and all of them together at most
//!   `max_connections` times that.
//!
//! Only HTTP/1.1: dockerd and gipam's own CLI speak nothing else.
//!
//! Shutdown is bounded and graceful: stop accepting, close idle
//! connections, let in-flight requests finish (their changes are durable
//! before they answer), give up on stragglers after [`GRACE`].

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::stall::Stall;
use super::{Mode, routes_with};

/// How long in-flight requests get once shutdown starts.
pub const GRACE: Duration = Duration::from_secs(5);

/// Largest read buffer of one connection (hyper's minimum is 8 KiB; a
/// request head from dockerd is a few hundred bytes).
pub const MAX_BUF: usize = 16 << 10;

/// What the clients together may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request head or body, or to
    /// read a reply; also how long an idle keep-alive connection stays.
    pub client_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            client_timeout: Duration::from_secs(5),
        }
    }
}

/// An already-bound listener (tests bind their own).
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Serves until `shutdown` resolves and in-flight requests are done (or the
/// grace period ran out).
pub async fn run(
    listener: Listener,
    mode: impl Into<Mode>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mode = mode.into();
    match listener {
        Listener::Unix(l) => serve(l, mode, limits, shutdown).await,
        Listener::Tcp(l) => serve(l, mode, limits, shutdown).await,
    }
}

/// A listener the accept loop can take connections from.
trait Accept {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn next(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Accept for UnixListener {
    type Io = UnixStream;
    async fn next(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Accept for TcpListener {
    type Io = TcpStream;
    async fn next(&self) -> io::Result<TcpStream> {
        let (s, _) = self.accept().await?;
        // Replies are one small write each: do not wait for more.
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

async fn serve<L: Accept>(
    listener: L,
    mode: Mode,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let routes = routes_with(mode, limits.client_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut bursts = Bursts::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.next() => a,
        };
        let io = match accepted {
            Ok(io) => io,
            Err(e) => {
                // A client that gave up before we accepted it is not our
                // problem; anything else (EMFILE, ENOBUFS) is logged once
                // per burst and retried after a short pause, during which
                // open connections can finish and free what was short.
                if !gone_before_accept(&e) {
                    bursts.accept_failed(&e);
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            bursts.refused(limits.max_connections);
            drop(io);
            continue;
        };
        bursts.accepted();
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.client_timeout)
            .max_buf_size(MAX_BUF)
            .serve_connection(
                TokioIo::new(Stall::new(io, limits.client_timeout)),
                TowerToHyperService::new(warp::service(routes.clone())),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Timeouts, resets and garbage end here: the client's doing.
                log::debug!("connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(GRACE) => {
            log::warn!("requests still running after {GRACE:?}; stopping anyway");
        }
    }
}

/// Accept errors that only mean the client went away first.
fn gone_before_accept(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Logs refusals and accept failures once per burst: a burst starts with
/// the first one and ends when a connection is accepted again.
#[derive(Default)]
struct Bursts {
    refused: u64,
    failed: u64,
}

impl Bursts {
    fn refused(&mut self, limit: usize) {
        if self.refused == 0 {
            log::warn!(
                "{limit} client connections are open (MAX_CONNECTIONS={limit}): closing new ones at once until some close"
            );
        }
        self.refused += 1;
    }

    fn accept_failed(&mut self, e: &io::Error) {
        if self.failed == 0 {
            log::error!(
                "cannot accept connections: {e}; retrying (raise the open-file limit if this persists)"
            );
        }
        self.failed += 1;
    }

    fn accepted(&mut self) {
        if self.refused + self.failed > 0 {
            log::debug!(
                "accepting connections again after {} refused at the limit and {} failed accepts",
                self.refused,
                self.failed
            );
            *self = Bursts::default();
        }
    }
}
