//! `GET /metrics` in the Prometheus text format (0.0.4), encoded by the
//! official `prometheus-client` crate from one collector that reads the
//! service at scrape time: the request and store atomics, and a copy of
//! the pools' use taken under the allocator lock (one pass, no lease
//! copied) and encoded after the lock is let go; in fleet mode, etcd's
//! round trips and health and the fleet's hosts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ipnet::IpNet;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use warp::Filter;

use super::{ENDPOINTS, OUTCOMES};
use crate::fleet::Fleet;
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
        if let Some(fleet) = svc.fleet() {
            encode_fleet(fleet, &mut enc)?;
        }
        Ok(())
    }
}

/// Fleet mode only (F9): etcd round trips, their outcomes, etcd's health
/// and the hosts of the fleet. A local gipam shows none of these.
fn encode_fleet(fleet: &Fleet, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let stats = &fleet.stats;
    let e = enc.encode_descriptor(
        "gipam_etcd_round_trip",
        "Time each etcd call took (transactions, reads, watches opened), failed ones included.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    stats.round_trip.encode(e)?;
    for (name, help, value) in [
        (
            "gipam_etcd_conflicts",
            "Fleet claims another host won first (the transaction's compare failed).",
            &stats.conflicts,
        ),
        (
            "gipam_etcd_retries",
            "Fleet requests planned again after a conflict.",
            &stats.retries,
        ),
        (
            "gipam_etcd_errors",
            "etcd calls that failed or did not answer within ETCD_TIMEOUT.",
            &stats.errors,
        ),
    ] {
        let e = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value.load(Ordering::Relaxed)).encode(e)?;
    }
    // One copy of the view; encoded after its lock is let go.
    let snapshot = fleet.snapshot();
    let e = enc.encode_descriptor(
        "gipam_etcd_up",
        "1 when the last etcd call succeeded, else 0.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::from(snapshot.etcd_ok)).encode(e)?;
    let e = enc.encode_descriptor(
        "gipam_fleet_hosts",
        "Hosts the fleet knows, alive or not (gipam fleet lists them).",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(snapshot.hosts.len() as i64).encode(e)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ipam::{Ipam, Settings};
    use crate::store::{LocalStore, Store};

    /// A service on a fresh state in `dir`; in fleet mode (its etcd never
    /// contacted) with `fleet`.
    fn service(dir: &std::path::Path, fleet: bool) -> Arc<Service> {
        let (store, state) = LocalStore::open(dir).expect("open");
        let store: Arc<dyn Store> = Arc::new(store);
        let settings = Settings {
            v4: vec!["10.78.0.0/16".parse().expect("net")],
            v6: vec![],
            v4ab: 24,
            v6ab: 64,
        };
        let svc = Service::new(Ipam::new(settings, state).expect("ipam"), store);
        if !fleet {
            return Arc::new(svc);
        }
        let fleet = Fleet::new(crate::config::FleetConfig {
            endpoints: vec!["http://127.0.0.1:9".into()],
            prefix: "/gipam".into(),
            ca: None,
            identity: None,
            user: None,
            timeout: Duration::from_secs(1),
            host_id: "a".into(),
        });
        fleet.stats.round_trip.observe(Duration::from_millis(2));
        fleet.stats.conflicts.store(3, Ordering::Relaxed);
        fleet.stats.retries.store(2, Ordering::Relaxed);
        fleet.stats.errors.store(1, Ordering::Relaxed);
        Arc::new(svc.in_fleet(Arc::new(fleet)))
    }

    #[test]
    fn fleet_metrics_appear_in_fleet_mode_only() {
        let dir = tempfile::tempdir().expect("dir");
        let local = render(&service(&dir.path().join("local"), false)).expect("render");
        assert!(
            !local.contains("gipam_etcd") && !local.contains("gipam_fleet"),
            "{local}"
        );

        let out = render(&service(&dir.path().join("fleet"), true)).expect("render");
        for line in [
            "# TYPE gipam_etcd_round_trip_seconds histogram",
            "gipam_etcd_round_trip_seconds_count 1",
            "gipam_etcd_round_trip_seconds_bucket{le=\"0.0025\"} 1",
            "# TYPE gipam_etcd_conflicts_total counter",
            "gipam_etcd_conflicts_total 3",
            "gipam_etcd_retries_total 2",
            "gipam_etcd_errors_total 1",
            "# TYPE gipam_etcd_up gauge",
            "gipam_etcd_up 0",
            "# TYPE gipam_fleet_hosts gauge",
            "gipam_fleet_hosts 0",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
    }
}
