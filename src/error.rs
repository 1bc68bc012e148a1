//! The error every request path returns. It becomes an HTTP reply in
//! exactly one place (`api::reply`). Client text in a message is always
//! cut to a short prefix ([`ipam::quote`]).

use std::fmt;

use crate::ipam;
use crate::store::StoreError;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request could not be decoded (HTTP 400).
    BadRequest(String),
    /// The body was larger than we accept (HTTP 413).
    TooLarge(usize),
    /// The body did not arrive in time (HTTP 408).
    Timeout(std::time::Duration),
    /// No such endpoint (HTTP 404).
    NotFound(String),
    /// Not a POST (HTTP 405).
    Method(String),
    /// The allocator refused (HTTP 500).
    Ipam(ipam::Error),
    /// The change could not be made durable (HTTP 500).
    Store(StoreError),
    /// gipam refused its settings or state at start and answers every
    /// IPAM request with this reason (HTTP 500).
    Refused(std::sync::Arc<str>),
    /// Fleet mode could not reach etcd, or lost every retry (HTTP 500).
    Fleet(crate::fleet::FleetError),
}

impl From<crate::fleet::FleetError> for Error {
    fn from(e: crate::fleet::FleetError) -> Self {
        Error::Fleet(e)
    }
}

impl From<ipam::Error> for Error {
    fn from(e: ipam::Error) -> Self {
        Error::Ipam(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m) => f.write_str(m),
            Error::TooLarge(limit) => write!(
                f,
                "request body is larger than {limit} bytes; IPAM requests are small JSON objects"
            ),
            Error::Timeout(t) => write!(
                f,
                "request body did not arrive within {t:?} (CLIENT_TIMEOUT); send the whole request at once"
            ),
            Error::NotFound(p) => write!(
                f,
                "endpoint {} does not exist; gipam implements /Plugin.Activate and /IpamDriver.* (GetCapabilities, GetDefaultAddressSpaces, RequestPool, ReleasePool, RequestAddress, ReleaseAddress) and /Gipam.Status, /Gipam.Leases, /Gipam.Remembered, /Gipam.Pools, /Gipam.ApplyPools",
                ipam::quote(p)
            ),
            Error::Method(m) => write!(
                f,
                "method {} is not allowed; plugin calls are POST",
                ipam::quote(m)
            ),
            Error::Ipam(e) => e.fmt(f),
            Error::Store(e) => e.fmt(f),
            Error::Refused(reason) => f.write_str(reason),
            Error::Fleet(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}
