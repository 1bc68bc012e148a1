//! The Docker plugin protocol edge: every call is `POST /<Method>` with a
//! JSON body (protocol doc §1). Routing, body limits and the one place an
//! [`Error`] becomes an HTTP reply live here; the server and its shutdown in
//! [`server`].

mod handlers;
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

/// The filter serving every endpoint, with the default body timeout.
pub fn routes(
    svc: Arc<Service>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    routes_with(svc, server::Limits::default().client_timeout)
}

/// The filter serving every endpoint; a body that has not fully arrived
/// within `body_timeout` is answered 408 and the connection closed.
pub fn routes_with(
    svc: Arc<Service>,
    body_timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    warp::method()
        .and(warp::path::full())
        .and(warp::body::stream())
        .then(move |method: Method, path: FullPath, body| {
            let svc = svc.clone();
            async move {
                let start = std::time::Instant::now();
                let result = match tokio::time::timeout(body_timeout, read_body(body)).await {
                    Ok(Ok(bytes)) => dispatch(&svc, &method, path.as_str(), &bytes).await,
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::Timeout(body_timeout)),
                };
                // Atomics only (crate::metrics): nothing measurable per request.
                svc.metrics().observe(
                    crate::metrics::endpoint_index(path.as_str()),
                    crate::metrics::outcome_index(&result),
                    start.elapsed(),
                );
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
    svc: &Service,
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
    );
    if !known {
        return Err(Error::NotFound(path.to_string()));
    }
    if method != Method::POST {
        return Err(Error::Method(method.to_string()));
    }
    match path {
        "/Plugin.Activate" => json(handlers::activate()),
        "/IpamDriver.GetCapabilities" => json(handlers::capabilities()),
        "/IpamDriver.GetDefaultAddressSpaces" => json(handlers::address_spaces()),
        "/IpamDriver.RequestPool" => json(handlers::request_pool(svc, body).await?),
        "/IpamDriver.ReleasePool" => json(handlers::release_pool(svc, body).await?),
        "/IpamDriver.RequestAddress" => json(handlers::request_address(svc, body).await?),
        "/Gipam.Status" => json(handlers::status(svc)),
        "/Gipam.Leases" => json(handlers::leases(svc)),
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
        Error::Ipam(_) | Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // The path is the client's text too: shown as is only when it is short
    // and plain.
    let plain = path.len() <= crate::ipam::QUOTE_MAX && path.bytes().all(|b| b.is_ascii_graphic());
    if plain {
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
