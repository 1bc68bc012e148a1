//! Starting and stopping the daemon: open the store, build the allocator,
//! bind the listener, serve, and on shutdown make the last change durable
//! and remove the socket (or spec file). A start refused for its settings
//! or its state binds the listener all the same and serves the routes'
//! refusing mode, leaving the state directory untouched, so that Docker
//! enables the plugin (it only checks that the socket answers) and shows
//! the reason where the user looks; see `config` for where refusing ends
//! and exiting begins.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;

use ipnet::Ipv6Net;

use crate::api::{Mode, server};
use crate::config::{Config, Core, Listen};
use crate::ipam::{Change, Family, Ipam};
use crate::refusal::{self, Deployment};
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

/// What a start that is not refused serves with.
struct Started {
    svc: Arc<Service>,
    store: Arc<dyn Store>,
    /// The start-up line's description of the state.
    summary: String,
}

/// Runs the daemon until `shutdown` resolves. A start refused for its
/// settings or its state still listens, and answers every IPAM request
/// with the reason (`api::Mode::Refusing`); only a place it cannot listen
/// on returns an error.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let serve = config.serve;
    // A SOCKET or SPEC_FILE gipam may not replace stops the start before
    // the state is touched.
    crate::listen::preflight(&serve.listen)?;
    // Bound before the plugin socket: a port in use stops the start
    // before anything Docker could see.
    let metrics_listener = match serve.metrics {
        Some(addr) => Some((addr, crate::metrics::export::bind(addr).await?)),
        None => None,
    };
    let at = Deployment::detect(&serve.listen);
    let started = match config.core {
        Ok(core) => start(core, &at).await,
        Err(refused) => Err(refusal::settings(&refused, &at)),
    };
    let bound = crate::listen::bind(&serve.listen).await?;
    if let Listen::Tcp { addr, .. } = &serve.listen
        && !addr.ip().is_loopback()
    {
        log::warn!(
            "ALLOW_REMOTE is set: serving {} on a non-loopback address; every host that reaches it can allocate, release and list addresses, with no authentication and no encryption; limit access with a firewall",
            bound.serving
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    match started {
        Ok(s) => {
            log::info!(
                "gipam {version} serving on {} ({})",
                bound.serving,
                s.summary
            );
            let metrics = metrics_listener.map(|(addr, listener)| {
                if !addr.ip().is_loopback() {
                    log::warn!(
                        "METRICS_ADDRESS={addr} is not loopback: every host that reaches it can read pool names and their use"
                    );
                }
                log::info!("Prometheus metrics on http://{addr}/metrics");
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let serving = tokio::spawn(crate::metrics::export::serve(
                    listener,
                    s.svc.clone(),
                    async move {
                        let _ = stopped.await;
                    },
                ));
                (stop, serving)
            });
            let fleet = s.svc.fleet().cloned();
            server::run(bound.listener, s.svc, serve.limits, shutdown).await;
            if let Some(fleet) = fleet {
                fleet.leave().await;
            }
            if let Some((stop, serving)) = metrics {
                let _ = stop.send(());
                let _ = serving.await;
            }
            bound.owned.remove();
            let store = s.store;
            let closed = tokio::task::spawn_blocking(move || store.close())
                .await
                .map_err(|e| e.to_string())?;
            closed.map_err(|e| e.to_string())?;
            log::info!("gipam stopped; state is durable");
        }
        Err(reason) => {
            // Once, on stderr: the dockerd log tags a plugin's stderr as
            // an error. Refused requests log only at debug.
            eprintln!("{reason}");
            log::info!(
                "gipam {version} listening on {}, refusing every IPAM request with the reason above until it is restarted",
                bound.serving
            );
            server::run(
                bound.listener,
                Mode::Refusing(reason.into()),
                serve.limits,
                shutdown,
            )
            .await;
            bound.owned.remove();
            log::info!("gipam stopped; its state was not touched");
        }
    }
    Ok(())
}

/// Opens the state and checks the settings against it; the error is the
/// refusal's reason, and leaves the state directory as it was.
async fn start(core: Core, at: &Deployment) -> Result<Started, String> {
    let dir = core.state_dir.clone();
    let cannot_open = |e: String| format!("gipam cannot open its state: {e}");
    let (opened, state) = tokio::task::spawn_blocking(move || LocalStore::load(&dir))
        .await
        .map_err(|e| cannot_open(e.to_string()))?
        .map_err(|e| cannot_open(e.to_string()))?;
    let mut ipam = Ipam::new(core.settings.clone(), state)
        .map_err(|strands| refusal::stranded(&strands, &core.v4, &core.v6, at))?;
    // The pool file is read and parsed here, outside the core, and checked
    // against the state like `gipam pools apply`, before anything is
    // written: a file that would strand a live network is refused, naming
    // it, with the state untouched.
    let mut tree = None;
    if let Some(path) = &core.pools {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "POOLS={}: cannot read the pool file: {e}; fix the path or unset POOLS",
                path.display()
            )
        })?;
        let spec = crate::ipam::parse_tree_file(&bytes)
            .map_err(|e| format!("POOLS={}: {e}", path.display()))?;
        let planned = ipam
            .plan_tree(&spec)
            .map_err(|e| format!("POOLS={}: {e}", path.display()))?;
        tree = planned;
    }
    let compact = core.compact_bytes;
    let store = tokio::task::spawn_blocking(move || opened.start(compact))
        .await
        .map_err(|e| cannot_open(e.to_string()))?
        .map_err(|e| cannot_open(e.to_string()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let mut changes = Vec::new();
    if core.settings.v6.is_empty() && ipam.state().ula().is_none() {
        changes.push(Change::SetUla {
            prefix: generate_ula()?,
        });
    }
    let mains = (core.settings.v4.clone(), core.settings.v6.clone());
    if ipam.state().mains() != Some(&mains) {
        changes.push(Change::SetMains {
            v4: mains.0,
            v6: mains.1,
        });
    }
    changes.extend(tree);
    for change in changes {
        ipam.apply(&change).map_err(|e| e.to_string())?;
        store.commit(change).1.await.map_err(cannot_open_store)?;
    }
    let join = |nets: Vec<ipnet::IpNet>| -> String {
        let all: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        all.join(",")
    };
    let summary = format!(
        "state {}: {} pools, {} leases; V4={} V6={}",
        core.state_dir.display(),
        ipam.state().pools().count(),
        ipam.state().lease_count(),
        join(ipam.mains(Family::V4)),
        join(ipam.mains(Family::V6))
    );
    let mut svc = Service::new(ipam, store.clone()).requiring_mac(core.requires_mac);
    let mut summary = summary;
    let fleet = core
        .fleet
        .clone()
        .map(|cfg| Arc::new(crate::fleet::Fleet::new(cfg)));
    if let Some(fleet) = &fleet {
        svc = svc.in_fleet(fleet.clone());
        svc.with_foreign(|f| f.set_affinity(crate::fleet::affinity(fleet.host_id())));
    }
    let svc = Arc::new(svc);
    if let Some(fleet) = fleet {
        let mains = crate::fleet::keys::Mains {
            v4: core.settings.v4.clone(),
            v6: core.settings.v6.clone(),
        };
        join_fleet(&fleet, &svc, mains, core.pools.is_some()).await?;
        summary.push_str(&format!(
            "; fleet host {} on etcd {}",
            fleet.host_id(),
            fleet.config().endpoints.join(",")
        ));
    }
    Ok(Started {
        svc,
        store,
        summary,
    })
}

/// Fleet mode: syncs with etcd once at start (a conflict with another
/// host refuses the start, naming both), then follows the fleet and keeps
/// etcd tidy in the background. An etcd that does not answer at start
/// does not stop it: this host's own networks work, and the sync is
/// retried until etcd answers.
async fn join_fleet(
    fleet: &Arc<crate::fleet::Fleet>,
    svc: &Arc<Service>,
    mains: crate::fleet::keys::Mains,
    publish_tree: bool,
) -> Result<(), String> {
    // Alive from the start: `gipam fleet forget` is refused while it beats.
    tokio::spawn(crate::fleet::heartbeat_loop(fleet.clone()));
    let bound = fleet.config().timeout * 3;
    match tokio::time::timeout(
        bound,
        crate::fleet::start_sync(fleet, svc, mains.clone(), publish_tree),
    )
    .await
    {
        Ok(Ok(())) => log::info!("fleet: host {} in sync with etcd", fleet.host_id()),
        Ok(Err(why)) if why.starts_with("fleet mode:") => return Err(why),
        Ok(Err(why)) => {
            log::warn!("fleet: starting without etcd, retrying in the background: {why}")
        }
        Err(_) => log::warn!(
            "fleet: etcd did not answer within {} s; starting without it, retrying in the background",
            bound.as_secs_f64()
        ),
    }
    tokio::spawn(crate::fleet::follow(fleet.clone(), svc.clone()));
    tokio::spawn(crate::fleet::tidy_loop(
        fleet.clone(),
        svc.clone(),
        mains,
        publish_tree,
    ));
    Ok(())
}

fn cannot_open_store(e: crate::store::StoreError) -> String {
    format!("gipam cannot record its main pools in its state: {e}")
}
