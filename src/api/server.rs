//! Serving the routes on a unix socket or TCP, with a bounded graceful
//! shutdown: stop accepting, let in-flight requests finish (their changes
//! are durable before they answer), give up on stragglers after a grace
//! period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::oneshot;

use super::routes;
use crate::service::Service;

/// How long in-flight requests get once shutdown starts.
pub const GRACE: Duration = Duration::from_secs(5);

/// An already-bound listener (tests bind their own).
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Serves until `shutdown` resolves and in-flight requests are done (or the
/// grace period ran out).
pub async fn run(
    listener: Listener,
    svc: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = started_tx.send(());
    };
    let routes = routes(svc);
    let server = async move {
        match listener {
            Listener::Unix(l) => warp::serve(routes).incoming(l).graceful(signal).run().await,
            Listener::Tcp(l) => warp::serve(routes).incoming(l).graceful(signal).run().await,
        }
    };
    let deadline = async move {
        if started_rx.await.is_ok() {
            tokio::time::sleep(GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = server => {}
        _ = deadline => log::warn!("requests still running after {GRACE:?}; stopping anyway"),
    }
}
