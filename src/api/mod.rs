//! The Docker plugin protocol edge: every call is `POST /<Method>` with a
//! JSON body (protocol doc §1). Routing, body limits and the one place an
//! [`Error`] becomes an HTTP reply live here; the server and its shutdown in
//! [`server`].
//!
//! The routes serve in one of two [`Mode`]s. Serving, every endpoint goes
//! to the [`Service`]. Refusing — gipam could not start with its settings
//! or its state — the handshake still answers (Activate, GetCapabilities,
//! GetDefaultAddressSpaces: Docker registers the driver only when they
//! do, and remembers empty capabilities when GetCapabilities fails,
//! protocol doc §1.4), and every call that would read or change the state
//! (RequestPool, RequestAddress, ReleasePool, ReleaseAddress, and gipam's
//! own status reads) answers HTTP 500 with the reason, so that
//! `docker network create` and `docker run` show it. Nothing is parsed,
//! allocated or written in that mode.

mod fleet;
mod handlers;
mod pools;
pub mod server;
mod stall;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use warp::http::{Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::error::Error;
use crate::service::Service;

/// Largest request body accepted. Docker's requests are a few hundred bytes.
pub const MAX_BODY: usize = 64 << 10;

/// What the routes answer with (module doc).
#[derive(Clone)]
pub enum Mode {
    /// Every endpoint through the service.
    Serving(Arc<Service>),
    /// The handshake only; everything else is refused with this reason.
    Refusing(Arc<str>),
}

impl From<Arc<Service>> for Mode {
    fn from(svc: Arc<Service>) -> Mode {
        Mode::Serving(svc)
    }
}

/// The filter serving every endpoint, with the default body timeout.
pub fn routes(
    mode: impl Into<Mode>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    routes_with(mode.into(), server::Limits::default().client_timeout)
}

/// The filter serving every endpoint; a body that has not fully arrived
/// within `body_timeout` is answered 408 and the connection closed.
pub fn routes_with(
    mode: Mode,
    body_timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    warp::method()
        .and(warp::path::full())
        .and(warp::body::stream())
        .then(move |method: Method, path: FullPath, body| {
            let mode = mode.clone();
            async move {
                let start = std::time::Instant::now();
                let result = match tokio::time::timeout(body_timeout, read_body(body)).await {
                    Ok(Ok(bytes)) => dispatch(&mode, &method, path.as_str(), &bytes).await,
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::Timeout(body_timeout)),
                };
                // Atomics only (crate::metrics): nothing measurable per
                // request. A refusing gipam has no service and no metrics.
                if let Mode::Serving(svc) = &mode {
                    svc.metrics().observe(
                        crate::metrics::endpoint_index(path.as_str()),
                        crate::metrics::outcome_index(&result),
                        start.elapsed(),
                    );
                }
                reply(path.as_str(), result)
            }
        })
        .recover(|r: warp::Rejection| async move {
            // The filters above accept every request; this is a safety net
            // so that even a surprise rejection answers in the wire format.
            let e = Error::BadRequest(format!(
                "request could not be handled: {}",
                crate::ipam::quote(&format!("{r:?}"))
            ));
            Ok::<_, std::convert::Infallible>(reply("", Err(e)))
        })
        .unify()
}

/// Reads the body, refusing more than [`MAX_BODY`] bytes.
async fn read_body<S, B>(body: S) -> Result<Vec<u8>, Error>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut out = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| Error::BadRequest(format!("request body could not be read: {e}")))?;
        if out.len() + chunk.remaining() > MAX_BODY {
            return Err(Error::TooLarge(MAX_BODY));
        }
        out.put(&mut chunk);
    }
    Ok(out)
}

fn json<T: Serialize>(v: T) -> Result<Response, Error> {
    Ok(warp::reply::json(&v).into_response())
}

async fn dispatch(
    mode: &Mode,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Response, Error> {
    let known = matches!(
        path,
        "/Plugin.Activate"
            | "/IpamDriver.GetCapabilities"
            | "/IpamDriver.GetDefaultAddressSpaces"
            | "/IpamDriver.RequestPool"
            | "/IpamDriver.ReleasePool"
            | "/IpamDriver.RequestAddress"
            | "/IpamDriver.ReleaseAddress"
            | "/Gipam.Status"
            | "/Gipam.Leases"
            | "/Gipam.Remembered"
            | "/Gipam.Pools"
            | "/Gipam.ApplyPools"
            | "/Gipam.Fleet"
            | "/Gipam.FleetForget"
    );
    if !known {
        return Err(Error::NotFound(path.to_string()));
    }
    if method != Method::POST {
        return Err(Error::Method(method.to_string()));
    }
    let svc = match (path, mode) {
        ("/Plugin.Activate", _) => return json(handlers::activate()),
        ("/IpamDriver.GetCapabilities", _) => {
            // A refusing gipam answers the default: it makes no endpoint.
            let mac = match mode {
                Mode::Serving(svc) => svc.requires_mac(),
                Mode::Refusing(_) => true,
            };
            return json(handlers::capabilities(mac));
        }
        ("/IpamDriver.GetDefaultAddressSpaces", _) => return json(handlers::address_spaces()),
        (_, Mode::Refusing(reason)) => return Err(Error::Refused(reason.clone())),
        (_, Mode::Serving(svc)) => svc,
    };
    match path {
        "/IpamDriver.RequestPool" => json(handlers::request_pool(svc, body).await?),
        "/IpamDriver.ReleasePool" => json(handlers::release_pool(svc, body).await?),
        "/IpamDriver.RequestAddress" => json(handlers::request_address(svc, body).await?),
        "/Gipam.Status" => json(handlers::status(svc)),
        "/Gipam.Leases" => json(handlers::leases(svc)),
        "/Gipam.Remembered" => json(handlers::remembered(svc)),
        "/Gipam.Pools" => json(pools::pools(svc)),
        "/Gipam.ApplyPools" => json(pools::apply_pools(svc, body).await?),
        "/Gipam.Fleet" => json(fleet::fleet(svc)?),
        "/Gipam.FleetForget" => json(fleet::forget(svc, body).await?),
        _ => json(handlers::release_address(svc, body).await?),
    }
}

/// The one place an error becomes a reply: a non-200 status with
/// `{"Err": "..."}`, which dockerd shows as `IpamDriver.<Method>: <Err>`.
fn reply(path: &str, result: Result<Response, Error>) -> Response {
    let err = match result {
        Ok(r) => return r,
        Err(e) => e,
    };
    let status = match &err {
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
        Error::Ipam(_) | Error::Store(_) | Error::Refused(_) | Error::Fleet(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    // The path is the client's text too: shown as is only when it is short
    // and plain.
    let plain = path.len() <= crate::ipam::QUOTE_MAX && path.bytes().all(|b| b.is_ascii_graphic());
    if matches!(err, Error::Refused(_)) {
        // The reason was logged once at start; every refused request
        // repeating it would bury it.
        log::debug!(
            "{}: refused (settings or state refused at start)",
            crate::ipam::quote(path)
        );
    } else if plain {
        log::warn!("{path}: {err}");
    } else {
        log::warn!("{}: {err}", crate::ipam::quote(path));
    }
    let body = warp::reply::json(&wire::ErrorResponse {
        err: err.to_string(),
    });
    let mut response = warp::reply::with_status(body, status).into_response();
    if matches!(err, Error::TooLarge(_) | Error::Timeout(_)) {
        // The rest of the body was not read: the connection cannot carry
        // another request.
        response.headers_mut().insert(
            warp::http::header::CONNECTION,
            warp::http::HeaderValue::from_static("close"),
        );
    }
    response
}
