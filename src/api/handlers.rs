//! One function per endpoint: decode the wire struct, parse it into core
//! types, call the service, encode the answer.

use std::net::IpAddr;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use super::wire::*;
use crate::error::Error;
use crate::ipam::{
    self, AddressRequest, DOCKER_SERIAL, GLOBAL_SPACE, LOCAL_SPACE, Mac, PoolId, PoolRequest,
};
use crate::service::Service;

/// `RequestAddress` option naming the kind of address (moby `ipamapi`).
const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
/// Its value for a network gateway (moby `netlabel.Gateway`).
const GATEWAY: &str = "com.docker.network.gateway";
/// The endpoint MAC Docker sends when RequiresMACAddress is set.
const MAC_ADDRESS: &str = "com.docker.network.endpoint.macaddress";
/// The endpoint name Engine 29 sends.
const ENDPOINT_NAME: &str = "com.docker.network.endpoint.name";

/// Decodes a request body; an empty body is refused for calls that change
/// state (a retried call may replay a drained body, protocol doc §1.3).
pub(super) fn decode<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadRequest(format!(
            "{method} request body is empty; send a JSON object"
        )));
    }
    // serde would also fill a struct from a JSON array; dockerd only ever
    // sends objects, so anything else is refused before decoding.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::BadRequest(format!(
            "{method} request is not valid JSON: expected an object"
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        Error::BadRequest(format!(
            "{method} request is not valid JSON: {}",
            json_error(&e)
        ))
    })
}

/// serde's message, which can quote a whole string value of the request,
/// cut to a short prefix; the position stays.
fn json_error(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&position).unwrap_or(&full);
    match msg.char_indices().nth(ipam::QUOTE_MAX + 40) {
        Some((cut, _)) => format!("{}…{position}", &msg[..cut]),
        None => format!("{msg}{position}"),
    }
}

/// Parses a PoolID; one that is not gipam's may be the original gipam's,
/// imported with its pool (`gipam import`), which Docker keeps sending.
fn pool_id(svc: &Service, text: &str) -> Result<PoolId, Error> {
    let t = text.trim();
    match PoolId::from_str(t) {
        Ok(id) => Ok(id),
        Err(e) => svc.resolve_alias(t).ok_or(Error::Ipam(e)),
    }
}

/// Parses an address strictly (`ipam::parse_addr`), tolerating a `/len`
/// suffix only when it is a prefix length of the address's family.
fn address(what: &'static str, text: &str) -> Result<Option<IpAddr>, Error> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = |why| {
        Error::Ipam(ipam::Error::BadAddress {
            what,
            text: text.to_string(),
            why,
        })
    };
    let (ip, len) = match t.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (t, None),
    };
    let ip = ipam::parse_addr(ip).map_err(bad)?;
    if let Some(len) = len {
        ipam::parse_prefix_len(len, ipam::Family::of(ip)).map_err(bad)?;
    }
    Ok(Some(ip))
}

pub fn activate() -> ActivateResponse {
    ActivateResponse {
        implements: ["IpamDriver"],
    }
}

/// `requires_mac`: REQUIRE_MAC (the MAC lets an address follow a pinned
/// MAC on engines before 29, F6; the ipvlan driver refuses endpoints that
/// have one, so hosts with ipvlan networks turn it off).
pub fn capabilities(requires_mac: bool) -> CapabilitiesResponse {
    CapabilitiesResponse {
        requires_mac_address: requires_mac,
        // We persist every allocation, so replay would only turn genuine
        // conflicts into silent successes (protocol doc §4.2).
        requires_request_replay: false,
    }
}

pub fn address_spaces() -> AddressSpacesResponse {
    AddressSpacesResponse {
        local: LOCAL_SPACE,
        global: GLOBAL_SPACE,
    }
}

/// Reads the host's routes for a block gipam chooses (see `crate::routes`).
async fn host_routes() -> Vec<ipam::HostRoute> {
    match tokio::task::spawn_blocking(crate::routes::host_routes).await {
        Ok((routes, problems)) => {
            for p in problems {
                log::warn!("{p}; blocks are not checked against those host routes");
            }
            routes
        }
        Err(e) => {
            log::warn!("reading the host routes failed: {e}; blocks are not checked against them");
            Vec::new()
        }
    }
}

pub async fn request_pool(svc: &Service, body: &[u8]) -> Result<RequestPoolResponse, Error> {
    let r: RequestPoolRequest = decode("RequestPool", body)?;
    let mut req = PoolRequest::parse(&r.address_space, &r.pool, &r.sub_pool, r.v6, &r.options)?;
    if req.chooses_block() {
        req.host_routes = host_routes().await;
    }
    let (id, gateway) = svc.request_pool(&req).await?;
    log::info!("pool {id} allocated");
    let mut data = std::collections::HashMap::new();
    if let Some(gw) = gateway {
        // CIDR form with the pool's length: the daemon parses it with
        // types.ParseCIDR and refuses a bare address.
        data.insert(
            GATEWAY.to_string(),
            format!("{gw}/{}", id.subnet.prefix_len()),
        );
    }
    Ok(RequestPoolResponse {
        pool_id: id.to_string(),
        pool: id.subnet.to_string(),
        data,
    })
}

pub async fn release_pool(svc: &Service, body: &[u8]) -> Result<Empty, Error> {
    let r: ReleasePoolRequest = decode("ReleasePool", body)?;
    let id = pool_id(svc, &r.pool_id)?;
    if svc.release_pool(&id).await? {
        log::info!("pool {id} released");
    } else {
        log::debug!("pool {id} released again (not held)");
    }
    Ok(Empty {})
}

pub async fn request_address(svc: &Service, body: &[u8]) -> Result<RequestAddressResponse, Error> {
    let r: RequestAddressRequest = decode("RequestAddress", body)?;
    let pool = pool_id(svc, &r.pool_id)?;
    let opt = |k: &str| r.options.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mac = opt(MAC_ADDRESS)
        .map(|m| m.parse::<Mac>().map_err(Error::BadRequest))
        .transpose()?;
    let serial = [DOCKER_SERIAL, "serial"]
        .iter()
        .any(|k| opt(k).is_some_and(|v| v.eq_ignore_ascii_case("true")));
    let gateway = opt(REQUEST_ADDRESS_TYPE) == Some(GATEWAY);
    let what = if gateway {
        "gateway address"
    } else {
        "address"
    };
    let req = AddressRequest {
        pool,
        address: address(what, &r.address)?,
        gateway,
        serial,
        mac,
        name: opt(ENDPOINT_NAME).map(String::from),
    };
    let net = svc.request_address(&req).await?;
    log::debug!("address {net} leased in pool {}", req.pool);
    Ok(RequestAddressResponse {
        address: ipam::text::net_string(&net),
        data: Default::default(),
    })
}

pub async fn release_address(svc: &Service, body: &[u8]) -> Result<Empty, Error> {
    let r: ReleaseAddressRequest = decode("ReleaseAddress", body)?;
    let id = pool_id(svc, &r.pool_id)?;
    let Some(addr) = address("address", &r.address)? else {
        return Err(Error::BadRequest(format!(
            "ReleaseAddress for pool {id} names no address"
        )));
    };
    svc.release_address(&id, addr).await?;
    log::debug!("address {addr} released in pool {id}");
    Ok(Empty {})
}

/// `/Gipam.Status`: held pools with their size, use and labels, the main
/// pools, the store and the fleet (F11, read-only). The pools are copied
/// under the lock in one pass (what `Service::usage` copies, plus the
/// labels) and formatted after it is let go; the store's figures are
/// atomics.
pub fn status(svc: &Service) -> StatusResponse {
    type Row = (PoolId, bool, usize, [Option<Box<str>>; 3]);
    let (rows, v4, v6): (Vec<Row>, _, _) = {
        let ipam = svc.ipam();
        let rows = ipam
            .state()
            .pools()
            .map(|p| {
                let labels = [p.shared.clone(), p.owner.clone(), p.tree_pool.clone()];
                (p.id.clone(), p.auto, p.lease_count(), labels)
            })
            .collect();
        (
            rows,
            ipam.mains(ipam::Family::V4),
            ipam.mains(ipam::Family::V6),
        )
    };
    // Tags by tree pool (a copy of the tree, taken after the pools).
    let tags: std::collections::HashMap<String, Vec<String>> = svc
        .pools()
        .into_iter()
        .map(|t| {
            let mut all = t.tags;
            all.extend(
                t.inherited
                    .into_iter()
                    .filter(|x| !all.contains(x))
                    .collect::<Vec<_>>(),
            );
            (t.name, all)
        })
        .collect();
    let pools: Vec<PoolStatus> = rows
        .into_iter()
        .map(
            |(id, auto, leases, [shared, owner, tree_pool])| PoolStatus {
                pool_id: id.to_string(),
                pool: id.subnet.to_string(),
                auto,
                leases,
                family: match ipam::Family::of_net(&id.subnet) {
                    ipam::Family::V4 => "IPv4",
                    ipam::Family::V6 => "IPv6",
                },
                size: ipam::usable_count(&id.subnet),
                shared: shared.map(String::from),
                owner: owner.map(String::from),
                tags: tree_pool
                    .as_deref()
                    .and_then(|n| tags.get(n).cloned())
                    .unwrap_or_default(),
                tree_pool: tree_pool.map(String::from),
            },
        )
        .collect();
    let st = svc.store_stats();
    let names = |v: &[ipnet::IpNet]| v.iter().map(|n| n.to_string()).collect();
    StatusResponse {
        leases: pools.iter().map(|p| p.leases).sum(),
        pools,
        mains: MainsStatus {
            v4: names(&v4),
            v6: names(&v6),
        },
        store: StoreStatus {
            journal_bytes: st.journal_bytes,
            snapshot_bytes: st.snapshot_bytes,
            snapshots: st.snapshots,
            last_snapshot: st.last_snapshot.and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
            last_fsync_seconds: st.last_fsync.map(|d| d.as_secs_f64()),
            errors: st.errors,
        },
        fleet: super::fleet::status(svc),
    }
}

/// `/Gipam.Leases`: every lease (F11, read-only). The copy is taken under
/// the allocator lock (cheap: lease chunks are shared) and listed outside
/// it, so a large listing never holds up allocations.
pub fn leases(svc: &Service) -> LeasesResponse {
    let frozen = svc.ipam().state().freeze();
    let leases = frozen
        .snapshot()
        .pools
        .into_iter()
        .flat_map(|p| {
            let id = p.id.to_string();
            p.leases.into_iter().map(move |l| LeaseStatus {
                pool_id: id.clone(),
                address: l.address.to_string(),
                gateway: l.gateway,
                mac_address: l.mac.map(|m| m.to_string()),
                name: l.name,
            })
        })
        .collect();
    LeasesResponse { leases }
}

/// `/Gipam.Remembered`: every address remembered for a container that left
/// (F6), held pools' and released pools' alike (read-only). Copied under
/// the allocator lock like `/Gipam.Leases` (records shared by chunk) and
/// listed outside it.
pub fn remembered(svc: &Service) -> RememberedResponse {
    let frozen = svc.ipam().state().freeze();
    let remembered = frozen
        .remembered()
        .into_iter()
        .flat_map(|m| {
            let id = m.pool.to_string();
            m.records.into_iter().map(move |r| RememberedStatus {
                pool_id: id.clone(),
                pool_held: m.held,
                address: r.address.to_string(),
                name: r.name,
                mac_address: r.mac.map(|m| m.to_string()),
                released: r.released,
                pool_releases: m.releases,
            })
        })
        .collect();
    RememberedResponse { remembered }
}
