//! The fleet endpoints (F9, F11): `/Gipam.Fleet` reads this host's view of
//! the fleet (nothing is asked of etcd: the view is kept current by the
//! watch); `/Gipam.FleetForget` releases a departed host's holdings
//! through [`Fleet::forget`], which refuses while the host is alive. The
//! `Fleet` object of `/Gipam.Status` is built here too. Outside fleet
//! mode both endpoints answer with [`not_in_fleet`].

use std::sync::atomic::Ordering;

use super::wire::{
    FleetForgetRequest, FleetForgetResponse, FleetHost, FleetResponse, FleetShared, FleetStatus,
    MainsStatus,
};
use crate::error::Error;
use crate::fleet::{Fleet, FleetError, FleetSnapshot, Forgotten};
use crate::service::Service;

/// The error of a fleet endpoint on a gipam that is not in fleet mode.
pub fn not_in_fleet() -> Error {
    Error::Fleet(FleetError::Refused(
        "this gipam is not in fleet mode (ETCD_ENDPOINTS is empty); start it with ETCD_ENDPOINTS (--etcd-endpoints) naming the fleet's etcd, and HOST_ID, to share one address plan across hosts".into(),
    ))
}

fn fleet_of(svc: &Service) -> Result<&Fleet, Error> {
    svc.fleet().map(|f| &**f).ok_or_else(not_in_fleet)
}

fn names(v: &[ipnet::IpNet]) -> Vec<String> {
    v.iter().map(|n| n.to_string()).collect()
}

/// A snapshot as the wire shows it.
pub fn response(s: FleetSnapshot, endpoints: &[String]) -> FleetResponse {
    FleetResponse {
        host: s.host,
        revision: s.revision,
        etcd_ok: s.etcd_ok,
        etcd_error: s.etcd_error,
        endpoints: endpoints.to_vec(),
        hosts: s
            .hosts
            .into_iter()
            .map(|h| FleetHost {
                host: h.host,
                alive: h.alive,
                last_seen: h.seen,
                blocks: names(&h.blocks),
                shared: h.shared,
                shared_addresses: h.shared_addresses,
            })
            .collect(),
        shared: s
            .shared
            .into_iter()
            .map(|(name, net)| FleetShared {
                name,
                subnet: net.subnet.to_string(),
                gateway: net.gateway.map(|g| g.to_string()),
                holders: net.holders,
            })
            .collect(),
        mains: s.mains.map(|m| MainsStatus {
            v4: names(&m.v4),
            v6: names(&m.v6),
        }),
    }
}

/// `/Gipam.Fleet`.
pub fn fleet(svc: &Service) -> Result<FleetResponse, Error> {
    let fleet = fleet_of(svc)?;
    Ok(response(fleet.snapshot(), &fleet.config().endpoints))
}

/// The `Fleet` object of `/Gipam.Status`; `None` outside fleet mode.
pub fn status(svc: &Service) -> Option<FleetStatus> {
    let fleet = svc.fleet()?;
    let s = fleet.snapshot();
    let stats = &fleet.stats;
    Some(FleetStatus {
        host: s.host,
        etcd_ok: s.etcd_ok,
        etcd_error: s.etcd_error,
        endpoints: fleet.config().endpoints.clone(),
        revision: s.revision,
        hosts: s.hosts.len(),
        round_trips: stats.round_trip.count(),
        last_round_trip_seconds: stats.round_trip.last().map(|d| d.as_secs_f64()),
        conflicts: stats.conflicts.load(Ordering::Relaxed),
        retries: stats.retries.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
    })
}

/// What a forget released, as the wire shows it.
pub fn forgotten(f: Forgotten) -> FleetForgetResponse {
    FleetForgetResponse {
        host: f.host,
        blocks: names(&f.blocks),
        shared_left: f.shared_left,
        shared_addresses: f.shared_addresses,
    }
}

/// `/Gipam.FleetForget` with `{"Host": NAME}`.
pub async fn forget(svc: &Service, body: &[u8]) -> Result<FleetForgetResponse, Error> {
    let req: FleetForgetRequest = super::handlers::decode("FleetForget", body)?;
    if req.host.is_empty() {
        return Err(Error::BadRequest(
            "FleetForget needs Host: the name of a departed host, as gipam fleet lists it".into(),
        ));
    }
    let fleet = fleet_of(svc)?;
    let out = fleet.forget(&req.host).await?;
    let wire = forgotten(out);
    log::info!(
        "fleet: host {} forgotten: blocks released [{}], shared networks left [{}], shared addresses released: {}",
        wire.host,
        wire.blocks.join(", "),
        wire.shared_left.join(", "),
        wire.shared_addresses
    );
    Ok(wire)
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
