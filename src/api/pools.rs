//! The pool-tree endpoints (F7, F11): `/Gipam.Pools` reads the tree through
//! the service's read API; `/Gipam.ApplyPools` takes a pool file as its
//! body (either format, `ipam::parse_tree_file`) and replaces the tree
//! through the service's change path, so the reply comes only once the new
//! tree is durable, and a refused or failed change leaves the old one.

use super::wire::{PoolsResponse, ReservationStatus, TreeNetworkStatus, TreePoolStatus};
use crate::error::Error;
use crate::ipam::{self, TreePoolView};
use crate::service::Service;

fn status(views: Vec<TreePoolView>, changed: Option<bool>) -> PoolsResponse {
    let pools = views
        .into_iter()
        .map(|p| TreePoolStatus {
            name: p.name,
            cidr: p.cidr.to_string(),
            block: p.block,
            parent: p.parent,
            depth: p.depth,
            tags: p.tags,
            inherited_tags: p.inherited,
            propagate: p.propagate,
            lock_down: p.lock_down,
            exclude: p.exclude.iter().map(|x| x.to_string()).collect(),
            reservations: p
                .reservations
                .into_iter()
                .map(|r| ReservationStatus {
                    address: r.address.to_string(),
                    name: r.name,
                    mac_address: r.mac.map(|m| m.to_string()),
                    leased: r.leased,
                })
                .collect(),
            networks: p
                .networks
                .into_iter()
                .map(|n| TreeNetworkStatus {
                    pool_id: n.pool_id.to_string(),
                    id: n.owner,
                    leases: n.leases,
                })
                .collect(),
        })
        .collect();
    PoolsResponse { changed, pools }
}

/// `/Gipam.Pools`: the tree (empty without one).
pub fn pools(svc: &Service) -> PoolsResponse {
    status(svc.pools(), None)
}

/// `/Gipam.ApplyPools`: the body is a pool file.
pub async fn apply_pools(svc: &Service, body: &[u8]) -> Result<PoolsResponse, Error> {
    let spec = ipam::parse_tree_file(body).map_err(Error::BadRequest)?;
    let changed = svc.apply_tree(&spec).await?;
    if changed {
        log::info!("pool tree replaced ({} top-level pools)", spec.pools.len());
    }
    Ok(status(svc.pools(), Some(changed)))
}
