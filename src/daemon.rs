//! Starting and stopping the daemon: open the store, build the allocator,
//! bind the listener, serve, and on shutdown make the last change durable
//! and remove the socket (or spec file).

use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ipnet::Ipv6Net;

use crate::api::server::{self, Listener};
use crate::config::{Config, Listen};
use crate::ipam::{Change, Ipam};
use crate::service::Service;
use crate::store::{LocalStore, Store};

/// Resolves on SIGTERM (what Docker sends a plugin) or SIGINT.
pub async fn signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot install signal handlers; stop gipam with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: shutting down"),
        _ = int.recv() => log::info!("SIGINT: shutting down"),
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

/// Binds the unix socket, replacing a stale one but never a live one.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create socket directory {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "socket {} is in use by another process; stop it or set SOCKET",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}; set SOCKET", path.display()))
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
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

    let (listener, cleanup, serving) = match &config.listen {
        Listen::Unix(path) => (
            Listener::Unix(bind_unix(path)?),
            path.clone(),
            path.display().to_string(),
        ),
        Listen::Tcp { addr, spec_file } => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}; set ADDRESS"))?;
            let local = l.local_addr().map_err(|e| e.to_string())?;
            if let Some(dir) = spec_file.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}; set SPEC_FILE", dir.display()))?;
            }
            std::fs::write(spec_file, format!("tcp://{local}\n"))
                .map_err(|e| format!("cannot write {}: {e}; set SPEC_FILE", spec_file.display()))?;
            (
                Listener::Tcp(l),
                spec_file.clone(),
                format!("tcp://{local} (spec file {})", spec_file.display()),
            )
        }
    };
    log::info!(
        "gipam {} serving on {} (state {}: {pools} pools, {leases} leases; V4={} V6={})",
        env!("CARGO_PKG_VERSION"),
        serving,
        config.state_dir.display(),
        v4.join(","),
        v6.join(",")
    );
    server::run(listener, svc, shutdown).await;
    let _ = std::fs::remove_file(&cleanup);
    let closed = tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| e.to_string())?;
    closed.map_err(|e| e.to_string())?;
    log::info!("gipam stopped; state is durable");
    Ok(())
}
