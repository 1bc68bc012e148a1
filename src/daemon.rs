//! Starting and stopping the daemon: open the store, build the allocator,
//! bind the listener, serve, and on shutdown make the last change durable
//! and remove the socket (or spec file).

use std::future::Future;
use std::io::Read;
use std::sync::Arc;

use ipnet::Ipv6Net;

use crate::api::server;
use crate::config::{Config, Listen};
use crate::ipam::{Change, Ipam};
use crate::service::Service;
use crate::store::{LocalStore, Store};

/// Installs handlers for SIGTERM (what Docker sends a plugin), SIGINT,
/// SIGHUP and SIGQUIT, and resolves when one arrives: each stops gipam
/// cleanly (socket removed, state durable) rather than killing it with a
/// stale socket left behind. Call it inside the runtime, before start-up
/// work: a signal that arrives while the store opens is kept, and the
/// server stops as soon as it starts.
pub fn signals() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
    ];
    let installed: std::io::Result<Vec<_>> = kinds
        .into_iter()
        .map(|(kind, name)| signal(kind).map(|s| (s, name)))
        .collect();
    async move {
        let Ok(mut streams) = installed else {
            log::error!("cannot install signal handlers; stop gipam with SIGKILL");
            return std::future::pending().await;
        };
        let arrivals = streams.iter_mut().map(|(s, name)| {
            Box::pin(async move {
                s.recv().await;
                *name
            })
        });
        let (name, _, _) = futures_util::future::select_all(arrivals).await;
        log::info!("{name}: shutting down");
    }
}

/// A random ULA /48 (RFC 4193 §3.2: fd00::/8 plus a 40-bit global ID).
fn generate_ula() -> Result<Ipv6Net, String> {
    let mut id = [0u8; 5];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(|e| format!("cannot read /dev/urandom for the default IPv6 pool: {e}; set V6"))?;
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..6].copy_from_slice(&id);
    Ipv6Net::new(octets.into(), 48).map_err(|e| e.to_string())
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // A SOCKET or SPEC_FILE gipam may not replace stops the start before
    // the state is touched.
    crate::listen::preflight(&config.listen)?;
    let dir = config.state_dir.clone();
    let compact = config.compact_bytes;
    let (store, state) = tokio::task::spawn_blocking(move || LocalStore::open_with(&dir, compact))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let store: Arc<dyn Store> = Arc::new(store);
    let mut ipam = Ipam::new(config.settings.clone(), state)?;
    let mut changes = Vec::new();
    if config.settings.v6.is_empty() && ipam.state().ula().is_none() {
        changes.push(Change::SetUla {
            prefix: generate_ula()?,
        });
    }
    let mains = (config.settings.v4.clone(), config.settings.v6.clone());
    if ipam.state().mains() != Some(&mains) {
        changes.push(Change::SetMains {
            v4: mains.0,
            v6: mains.1,
        });
    }
    for change in changes {
        ipam.apply(&change).map_err(|e| e.to_string())?;
        store.commit(change).1.await.map_err(|e| e.to_string())?;
    }
    let pools = ipam.state().pools().count();
    let leases = ipam.state().lease_count();
    let v6: Vec<String> = ipam
        .mains(crate::ipam::Family::V6)
        .iter()
        .map(|n| n.to_string())
        .collect();
    let v4: Vec<String> = config.settings.v4.iter().map(|n| n.to_string()).collect();
    let svc = Arc::new(Service::new(ipam, store.clone()));

    // Bound before the plugin socket: a port in use stops the start
    // before anything Docker could see.
    let metrics_listener = match config.metrics {
        Some(addr) => Some(crate::metrics::export::bind(addr).await?),
        None => None,
    };
    let bound = crate::listen::bind(&config.listen).await?;
    if let Listen::Tcp { addr, .. } = &config.listen
        && !addr.ip().is_loopback()
    {
        log::warn!(
            "ALLOW_REMOTE is set: serving {} on a non-loopback address; every host that reaches it can allocate, release and list addresses, with no authentication and no encryption; limit access with a firewall",
            bound.serving
        );
    }
    log::info!(
        "gipam {} serving on {} (state {}: {pools} pools, {leases} leases; V4={} V6={})",
        env!("CARGO_PKG_VERSION"),
        bound.serving,
        config.state_dir.display(),
        v4.join(","),
        v6.join(",")
    );
    let metrics = match (config.metrics, metrics_listener) {
        (Some(addr), Some(listener)) => {
            if !addr.ip().is_loopback() {
                log::warn!(
                    "METRICS_ADDRESS={addr} is not loopback: every host that reaches it can read pool names and their use"
                );
            }
            log::info!("Prometheus metrics on http://{addr}/metrics");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(crate::metrics::export::serve(
                listener,
                svc.clone(),
                async move {
                    let _ = stopped.await;
                },
            ));
            Some((stop, serving))
        }
        _ => None,
    };
    server::run(bound.listener, svc, config.limits, shutdown).await;
    if let Some((stop, serving)) = metrics {
        let _ = stop.send(());
        let _ = serving.await;
    }
    bound.owned.remove();
    let closed = tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| e.to_string())?;
    closed.map_err(|e| e.to_string())?;
    log::info!("gipam stopped; state is durable");
    Ok(())
}
