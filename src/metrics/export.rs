//! `GET /metrics` in the Prometheus text format (0.0.4), encoded by the
//! official `prometheus-client` crate from one collector that reads the
//! service at scrape time: the request and store atomics, and a copy of
//! the pools' use taken under the allocator lock (one pass, no lease
//! copied) and encoded after the lock is let go.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::IpNet;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use warp::Filter;

use super::{ENDPOINTS, OUTCOMES};
use crate::service::Service;

/// The content type of the text format the reply is in.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Reads the service on each scrape.
struct ServiceCollector(Arc<Service>);

impl std::fmt::Debug for ServiceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceCollector")
    }
}

/// The main pool (of either family) that holds `net`, if any.
fn main_of<'a>(mains: &'a [IpNet], net: &IpNet) -> Option<&'a IpNet> {
    mains.iter().find(|m| m.contains(net))
}

impl Collector for ServiceCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let svc = &self.0;
        let m = svc.metrics();

        let mut e = enc.encode_descriptor(
            "gipam_requests",
            "Plugin requests by endpoint and outcome (ok, refused, invalid, store_error).",
            None,
            MetricType::Counter,
        )?;
        for (i, endpoint) in ENDPOINTS.iter().enumerate() {
            for (o, outcome) in OUTCOMES.iter().enumerate() {
                let labels = [("endpoint", *endpoint), ("outcome", *outcome)];
                ConstCounter::new(m.count(i, o)).encode(e.encode_family(&labels)?)?;
            }
        }

        let mut e = enc.encode_descriptor(
            "gipam_request_duration",
            "Time from a request's arrival to its reply (durable changes include the fsync).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (i, endpoint) in ENDPOINTS.iter().enumerate() {
            let labels = [("endpoint", *endpoint)];
            m.latency(i).encode(e.encode_family(&labels)?)?;
        }

        // A copy under the lock; everything below runs without it.
        let usage = svc.usage();
        let mut e = enc.encode_descriptor(
            "gipam_pool_addresses",
            "Addresses of a held pool that can be leased (its subnet without the reserved ones).",
            None,
            MetricType::Gauge,
        )?;
        let ids: Vec<String> = usage.pools.iter().map(|p| p.id.to_string()).collect();
        for (p, id) in usage.pools.iter().zip(&ids) {
            let labels = [("pool", id.as_str())];
            ConstGauge::new(p.size as f64).encode(e.encode_family(&labels)?)?;
        }
        let mut e = enc.encode_descriptor(
            "gipam_pool_used_addresses",
            "Leased addresses of a held pool, gateway included.",
            None,
            MetricType::Gauge,
        )?;
        for (p, id) in usage.pools.iter().zip(&ids) {
            let labels = [("pool", id.as_str())];
            ConstGauge::new(p.leases as i64).encode(e.encode_family(&labels)?)?;
        }
        let mains: Vec<IpNet> = usage.v4.iter().chain(&usage.v6).copied().collect();
        let mut e = enc.encode_descriptor(
            "gipam_main_pool_blocks",
            "Held pools (network blocks) inside each main pool (V4, V6).",
            None,
            MetricType::Gauge,
        )?;
        for main in &mains {
            let n = usage
                .pools
                .iter()
                .filter(|p| main_of(&mains, &p.id.subnet) == Some(main))
                .count();
            let name = main.to_string();
            let labels = [("main_pool", name.as_str())];
            ConstGauge::new(n as i64).encode(e.encode_family(&labels)?)?;
        }

        let stats = svc.store_stats();
        if let Some(h) = svc.fsync_latency() {
            let e = enc.encode_descriptor(
                "gipam_store_fsync_duration",
                "Time each fdatasync of the journal took.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            h.encode(e)?;
        }
        let e = enc.encode_descriptor(
            "gipam_store_journal",
            "Bytes of change records in the current journal (folded into a snapshot past COMPACT_BYTES).",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        ConstGauge::new(stats.journal_bytes as i64).encode(e)?;
        let e = enc.encode_descriptor(
            "gipam_store_snapshots",
            "Snapshots written since gipam started.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.snapshots).encode(e)?;
        let e = enc.encode_descriptor(
            "gipam_store_errors",
            "Failed journal writes and snapshots since gipam started.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.errors).encode(e)?;
        Ok(())
    }
}

/// The whole exposition, as a scrape gets it.
pub fn render(svc: &Arc<Service>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServiceCollector(svc.clone())));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves. Anything
/// else is 404; nothing here changes state.
pub async fn serve(
    listener: tokio::net::TcpListener,
    svc: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .map(move || match render(&svc) {
            Ok(body) => warp::http::Response::builder()
                .header("content-type", CONTENT_TYPE)
                .body(body)
                .unwrap_or_default(),
            Err(_) => warp::http::Response::builder()
                .status(500)
                .body("metrics could not be encoded\n".to_string())
                .unwrap_or_default(),
        });
    warp::serve(metrics)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Binds METRICS_ADDRESS; the error names the setting and what to do.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("METRICS_ADDRESS={addr}: cannot listen there: {e}; choose a free port or leave METRICS_ADDRESS empty")
    })
}
