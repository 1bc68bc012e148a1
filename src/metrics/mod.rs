//! Prometheus metrics (F11): what gipam counts while it serves, and the
//! `/metrics` endpoint that shows it on its own TCP listener
//! (METRICS_ADDRESS), never on the plugin socket.
//!
//! Counting stays off the hot path's locks: a request adds to fixed arrays
//! of atomics indexed by endpoint and outcome ([`RequestMetrics`]); the
//! store keeps its own atomics (fsync latency, journal size, snapshots,
//! errors). Everything that needs the state — pool sizes and use, blocks per
//! main pool — is computed at scrape time from a copy taken under the
//! allocator lock and encoded after the lock is let go ([`export`]).

pub mod export;
mod histogram;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use histogram::Histogram;

use crate::error::Error;

/// The endpoints counted, by their path; anything else is `other`.
pub const ENDPOINTS: [&str; 10] = [
    "Plugin.Activate",
    "IpamDriver.GetCapabilities",
    "IpamDriver.GetDefaultAddressSpaces",
    "IpamDriver.RequestPool",
    "IpamDriver.ReleasePool",
    "IpamDriver.RequestAddress",
    "IpamDriver.ReleaseAddress",
    "Gipam.Status",
    "Gipam.Leases",
    "other",
];

/// How a request ended: answered; refused by the allocator (a conflict,
/// an exhausted pool, an unknown pool); not understood (bad JSON, unknown
/// endpoint, too large, too slow); or failed to become durable.
pub const OUTCOMES: [&str; 4] = ["ok", "refused", "invalid", "store_error"];

/// Requests by endpoint and outcome, and their latency by endpoint.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    counts: [[AtomicU64; OUTCOMES.len()]; ENDPOINTS.len()],
    latency: [Histogram; ENDPOINTS.len()],
}

/// The index of an endpoint in [`ENDPOINTS`], from a request path.
pub fn endpoint_index(path: &str) -> usize {
    let name = path.strip_prefix('/').unwrap_or(path);
    ENDPOINTS[..ENDPOINTS.len() - 1]
        .iter()
        .position(|e| *e == name)
        .unwrap_or(ENDPOINTS.len() - 1)
}

/// The index of an outcome in [`OUTCOMES`].
pub fn outcome_index<T>(result: &Result<T, Error>) -> usize {
    match result {
        Ok(_) => 0,
        Err(Error::Ipam(_)) => 1,
        Err(Error::Store(_)) | Err(Error::Fleet(_)) => 3,
        Err(_) => 2,
    }
}

impl RequestMetrics {
    /// Counts one request.
    pub fn observe(&self, endpoint: usize, outcome: usize, took: Duration) {
        self.counts[endpoint][outcome].fetch_add(1, Ordering::Relaxed);
        self.latency[endpoint].observe(took);
    }

    /// Requests counted for an endpoint and outcome.
    pub fn count(&self, endpoint: usize, outcome: usize) -> u64 {
        self.counts[endpoint][outcome].load(Ordering::Relaxed)
    }

    /// The latency histogram of an endpoint.
    pub fn latency(&self, endpoint: usize) -> &Histogram {
        &self.latency[endpoint]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(
            ENDPOINTS[endpoint_index("/IpamDriver.RequestPool")],
            "IpamDriver.RequestPool"
        );
        assert_eq!(ENDPOINTS[endpoint_index("/Gipam.Status")], "Gipam.Status");
        assert_eq!(ENDPOINTS[endpoint_index("/nope")], "other");
        assert_eq!(ENDPOINTS[endpoint_index("")], "other");
    }
}
