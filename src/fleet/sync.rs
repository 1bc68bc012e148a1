//! Keeping etcd true to this host: the start-up sync claims what the local
//! state holds (a host that turns fleet mode on, or one that was away), and
//! the tidy pass deletes what this host holds in etcd and no longer holds
//! locally. Both compare revisions, so neither ever deletes a newer claim.
//! The tidy pass also keeps the host's heartbeat (`P/hosts/ID`, and
//! `P/alive/ID` on an etcd lease) that `gipam fleet` shows.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::PutOptions;
use ipnet::IpNet;

use super::keys::{HostRecord, Mains};
use super::{Claim, Fleet, FleetError};
use crate::service::Service;

/// What the local state holds, read under the service's lock.
#[derive(Default)]
struct Local {
    /// Pools of this host's own (not shared), by subnet.
    pools: HashSet<IpNet>,
    /// Shared pools: name -> (subnet, gateway, leased addresses).
    shared: HashMap<String, (IpNet, Option<IpAddr>, HashSet<IpAddr>)>,
    /// Claims in flight (never tidied).
    pending: HashSet<IpNet>,
    pending_addrs: HashSet<(IpNet, IpAddr)>,
    /// Shared networks whose release is not durable yet.
    busy_shared: HashSet<String>,
}

fn local(svc: &Service) -> Local {
    let ipam = svc.ipam();
    let mut out = Local::default();
    for p in ipam.state().pools() {
        let net = p.id.subnet;
        match p.shared.as_deref() {
            None => {
                out.pools.insert(net);
            }
            Some(name) => {
                let gw = p
                    .data_gateway()
                    .or_else(|| p.leases().find(|(_, l)| l.gateway).map(|(a, _)| a));
                let leased = p.leases().map(|(a, _)| a).collect();
                out.shared.insert(name.to_string(), (net, gw, leased));
            }
        }
    }
    // Never the view's lock here: its order is the view, then the service.
    let f = ipam.foreign();
    out.pending = f.pending().iter().copied().collect();
    out.pending_addrs = f
        .pending_addrs()
        .iter()
        .map(|(s, x)| (*s, crate::ipam::to_addr(crate::ipam::Family::of_net(s), *x)))
        .collect();
    drop(ipam);
    // Read after the state: a release applied before that read is still
    // listed here unless it is durable already.
    for r in svc.releasing() {
        match (r.shared, r.address) {
            (None, _) => {
                out.pools.insert(r.pool.subnet);
            }
            (Some(name), Some(a)) => {
                if let Some((_, _, leased)) = out.shared.get_mut(&name) {
                    leased.insert(a);
                }
            }
            (Some(name), None) => {
                out.busy_shared.insert(name);
            }
        }
    }
    out
}

/// Claims everything the local state holds that etcd does not have yet;
/// a conflict with another host is the refusal's reason.
async fn claim_local(fleet: &Fleet, svc: &Service) -> Result<bool, String> {
    let revision = fleet.reload(svc).await.map_err(|e| e.to_string())?;
    let me = fleet.host_id().to_string();
    let here = local(svc);
    let mut lost = false;
    for net in &here.pools {
        let clash = {
            let view = fleet.view();
            match view.blocks.get(net) {
                Some((c, _)) if c.host == me && c.shared.is_none() => continue,
                _ => view
                    .blocks
                    .iter()
                    .find(|(b, _)| b.contains(net) || net.contains(*b))
                    .map(|(b, (c, _))| (*b, c.holder())),
            }
        };
        if let Some((b, holder)) = clash {
            return Err(format!(
                "fleet mode: pool {net} of this host ({me}) overlaps {b}, which {holder} holds in the fleet; remove the network using one of them, or use another ETCD_PREFIX"
            ));
        }
        match fleet.claim_block(*net, revision).await {
            Ok(Claim::Won) => log::info!("fleet: claimed this host's pool {net}"),
            Ok(Claim::Lost(_)) => lost = true,
            Err(e) => return Err(e.to_string()),
        }
    }
    for (name, (net, gw, leased)) in &here.shared {
        let existing = fleet.shared(name);
        let won = match existing {
            Some((rec, _)) if rec.subnet != *net => {
                return Err(format!(
                    "fleet mode: shared network {name} is {} in the fleet but {net} on this host ({me}); remove the network here and create it again",
                    rec.subnet
                ));
            }
            Some((rec, rev)) => fleet.join_shared(name, rec, rev).await,
            None => fleet.create_shared(name, *net, *gw, revision).await,
        };
        match won {
            Ok(Claim::Won) => {}
            Ok(Claim::Lost(_)) => {
                lost = true;
                continue;
            }
            Err(e) => return Err(e.to_string()),
        }
        for a in leased {
            if Some(*a) == *gw {
                continue;
            }
            let owner = fleet
                .view()
                .addrs
                .get(&(name.clone(), *a))
                .map(|(c, _)| c.host.clone());
            match owner {
                Some(h) if h == me => continue,
                Some(h) => {
                    return Err(format!(
                        "fleet mode: address {a} of shared network {name} is leased on this host ({me}) and on host {h}; release it on one of them"
                    ));
                }
                None => match fleet.claim_addr(name, *a, &me).await {
                    Ok(Claim::Won) => {}
                    Ok(Claim::Lost(_)) => lost = true,
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }
    Ok(!lost)
}

/// Checks the fleet's main pools against this host's (recording them if
/// the fleet has none).
async fn check_mains(fleet: &Fleet, mains: &Mains) -> Result<(), String> {
    let have = fleet.view().mains.clone();
    match have {
        Some((m, _)) if m == *mains => Ok(()),
        Some((m, _)) => {
            let list = |v: &[IpNet]| {
                let s: Vec<String> = v.iter().map(|n| n.to_string()).collect();
                if s.is_empty() {
                    "(empty)".to_string()
                } else {
                    s.join(",")
                }
            };
            Err(format!(
                "fleet mode: this host's main pools V4={} V6={} differ from the fleet's V4={} V6={}; every host of a fleet uses the same (set V4 and V6 like the others)",
                list(&mains.v4),
                list(&mains.v6),
                list(&m.v4),
                list(&m.v6)
            ))
        }
        None => match fleet.put_mains(mains).await.map_err(|e| e.to_string())? {
            Claim::Won => Ok(()),
            // Another host recorded its main pools first: compare with those
            // (start_sync loads the fleet again and comes back here).
            Claim::Lost(_) => {
                Err("the fleet's main pools were recorded meanwhile; checking again".into())
            }
        },
    }
}

/// At start: the fleet's tree wins over the local one, unless this host
/// was started with a pool file (POOLS), which is published like `gipam
/// pools apply`; a fleet without a tree gets this host's.
async fn sync_tree(fleet: &Fleet, svc: &Service, publish: bool) -> Result<(), String> {
    let (theirs, revision) = fleet.tree();
    let ours = svc.ipam().state().tree().spec().clone();
    let empty = ours == crate::ipam::TreeSpec::default();
    match theirs {
        Some(t) if t == ours => Ok(()),
        Some(t) if !publish => svc.apply_local_tree(&t).await.map(|_| ()).map_err(|e| {
            format!("fleet mode: the fleet's pool tree cannot be applied on this host: {e}")
        }),
        None if empty => Ok(()),
        _ => fleet
            .put_tree(&ours, revision)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// The start-up sync: load the fleet, check the main pools, claim the
/// local pools, tidy. `Err` is a refusal (a conflict); an unreachable etcd
/// is retried until it answers.
pub async fn start_sync(
    fleet: &Arc<Fleet>,
    svc: &Arc<Service>,
    mains: Mains,
    publish_tree: bool,
) -> Result<(), String> {
    for _ in 0..super::CLAIM_RETRIES {
        fleet.reload(svc).await.map_err(|e| e.to_string())?;
        check_mains(fleet, &mains).await?;
        sync_tree(fleet, svc, publish_tree).await?;
        if claim_local(fleet, svc).await? {
            fleet.synced.store(true, Ordering::Release);
            return Ok(());
        }
    }
    Err(
        "fleet mode: claiming this host's pools kept conflicting with other hosts; try again"
            .into(),
    )
}

/// Refuses every new fleet change with `why` (a conflict found at start).
pub fn refuse(fleet: &Fleet, why: String) {
    *fleet.sync_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
}

/// Deletes what this host holds in etcd and no longer holds locally.
async fn tidy(fleet: &Fleet, svc: &Service) -> Result<(), FleetError> {
    let me = fleet.host_id().to_string();
    // The view first, then the local state: a claim won after the view
    // was read is not in it, and one won before is pending or applied.
    let (blocks, shared, addrs) = {
        let view = fleet.view();
        let blocks: Vec<(IpNet, i64)> = view
            .blocks
            .iter()
            .filter(|(_, (c, _))| c.host == me && c.shared.is_none())
            .map(|(n, (_, r))| (*n, *r))
            .collect();
        let shared: Vec<(String, super::keys::SharedNet, i64)> = view
            .shared
            .iter()
            .filter(|(_, (s, _))| s.holders.contains(&me))
            .map(|(n, (s, r))| (n.clone(), s.clone(), *r))
            .collect();
        let addrs: Vec<(String, IpAddr, i64, Option<IpNet>)> = view
            .addrs
            .iter()
            .filter(|(_, (c, _))| c.host == me)
            .map(|((n, a), (_, r))| (n.clone(), *a, *r, view.shared.get(n).map(|(s, _)| s.subnet)))
            .collect();
        (blocks, shared, addrs)
    };
    let here = local(svc);
    for (net, rev) in blocks {
        if !here.pools.contains(&net)
            && !here.pending.contains(&net)
            && let Claim::Won = fleet.delete_if(fleet.keys.block(&net), rev).await?
        {
            log::info!("fleet: freed block {net} in etcd (released here)");
        }
    }
    for (name, a, rev, subnet) in addrs {
        let held = here
            .shared
            .get(&name)
            .is_some_and(|(_, _, leased)| leased.contains(&a));
        let pending = subnet.is_some_and(|s| here.pending_addrs.contains(&(s, a)));
        if !held && !pending && !here.busy_shared.contains(&name) {
            fleet.delete_if(fleet.keys.addr(&name, a), rev).await?;
        }
    }
    for (name, rec, rev) in shared {
        if !here.shared.contains_key(&name)
            && !here.busy_shared.contains(&name)
            && !here.pending.contains(&rec.subnet)
            && let Claim::Won = fleet.leave_shared(&name, rec, rev).await?
        {
            log::info!("fleet: left shared network {name} (released here)");
        }
    }
    Ok(())
}

/// Makes this host's tree the fleet's (another host applied one).
async fn follow_tree(fleet: &Fleet, svc: &Service, warned: &mut Option<crate::ipam::TreeSpec>) {
    let (Some(tree), _) = fleet.tree() else {
        return;
    };
    if svc.ipam().state().tree().spec() == &tree || warned.as_ref() == Some(&tree) {
        return;
    }
    match svc.apply_local_tree(&tree).await {
        Ok(_) => log::info!("fleet: applied the fleet's pool tree"),
        Err(e) => {
            log::error!("fleet: the fleet's pool tree cannot be applied on this host: {e}");
            *warned = Some(tree);
        }
    }
}

/// Heartbeat: the host record, and the alive key on a short lease.
async fn heartbeat(fleet: &Fleet) -> Result<(), FleetError> {
    let lease = *fleet.lease.lock().unwrap_or_else(|p| p.into_inner());
    let me = fleet.host_id().to_string();
    let seen = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rec = HostRecord {
        seen,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let value = serde_json::to_vec(&rec).unwrap_or_default();
    let key = fleet.keys.host(&me);
    fleet
        .conn
        .call(&fleet.stats, |mut c| async move {
            c.put(key, value, None).await
        })
        .await?;
    if let Some(id) = lease {
        let alive = fleet
            .conn
            .call(&fleet.stats, |mut c| async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await?;
        if alive.is_some_and(|r| r.ttl() > 0) {
            return Ok(());
        }
    }
    let grant = fleet
        .conn
        .call(&fleet.stats, |mut c| async move {
            c.lease_grant(15, None).await
        })
        .await?;
    let id = grant.id();
    let key = fleet.keys.alive(&me);
    fleet
        .conn
        .call(&fleet.stats, |mut c| async move {
            c.put(key, b"1".to_vec(), Some(PutOptions::new().with_lease(id)))
                .await
        })
        .await?;
    *fleet.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    Ok(())
}

/// Keeps this host's heartbeat from start to stop, on a task of its own so
/// that slow tidy passes never let its lease lapse.
pub async fn heartbeat_loop(fleet: Arc<Fleet>) {
    while !fleet.leaving.load(Ordering::Acquire) {
        if let Err(e) = heartbeat(&fleet).await {
            log::debug!("fleet heartbeat: {e}");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Runs the start-up sync until it has run (etcd may be down at start),
/// then tidies after every release and every few seconds, and keeps the
/// heartbeat.
pub async fn tidy_loop(fleet: Arc<Fleet>, svc: Arc<Service>, mains: Mains, publish_tree: bool) {
    let mut warned = false;
    while !fleet.synced.load(Ordering::Acquire) {
        match start_sync(&fleet, &svc, mains.clone(), publish_tree).await {
            Ok(()) => break,
            Err(why) if why.starts_with("fleet mode:") => {
                log::error!("{why}");
                refuse(&fleet, why);
                return;
            }
            Err(why) => {
                if !warned {
                    log::warn!("fleet sync waits for etcd: {why}");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if fleet.synced.load(Ordering::Acquire) {
            log::info!("fleet: host {} in sync with etcd", fleet.host_id());
        }
    }
    let mut bad_tree = None;
    loop {
        if let Err(e) = tidy(&fleet, &svc).await {
            log::debug!("fleet tidy: {e}");
        }
        follow_tree(&fleet, &svc, &mut bad_tree).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), fleet.tidy.notified()).await;
    }
}
