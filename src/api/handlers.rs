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
fn decode<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadRequest(format!(
            "{method} request body is empty; send a JSON object"
        )));
    }
    let invalid = |e: serde_json::Error| {
        Error::BadRequest(format!("{method} request is not valid JSON: {e}"))
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    if !value.is_object() {
        return Err(Error::BadRequest(format!(
            "{method} request is not valid JSON: expected an object, got {value}"
        )));
    }
    serde_json::from_value(value).map_err(invalid)
}

fn pool_id(text: &str) -> Result<PoolId, Error> {
    Ok(PoolId::from_str(text.trim())?)
}

/// Parses an address, tolerating a `/len` suffix.
fn address(text: &str) -> Result<Option<IpAddr>, Error> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let ip = t.split_once('/').map_or(t, |(a, _)| a);
    ip.parse()
        .map(Some)
        .map_err(|_| Error::Ipam(ipam::Error::BadAddress(text.to_string())))
}

pub fn activate() -> ActivateResponse {
    ActivateResponse {
        implements: ["IpamDriver"],
    }
}

pub fn capabilities() -> CapabilitiesResponse {
    CapabilitiesResponse {
        requires_mac_address: true,
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

pub async fn request_pool(svc: &Service, body: &[u8]) -> Result<RequestPoolResponse, Error> {
    let r: RequestPoolRequest = decode("RequestPool", body)?;
    let req = PoolRequest::parse(&r.address_space, &r.pool, &r.sub_pool, r.v6, &r.options)?;
    let id = svc.request_pool(&req).await?;
    log::info!("pool {id} allocated");
    Ok(RequestPoolResponse {
        pool_id: id.to_string(),
        pool: id.subnet.to_string(),
        data: Default::default(),
    })
}

pub async fn release_pool(svc: &Service, body: &[u8]) -> Result<Empty, Error> {
    let r: ReleasePoolRequest = decode("ReleasePool", body)?;
    let id = pool_id(&r.pool_id)?;
    if svc.release_pool(&id).await? {
        log::info!("pool {id} released");
    } else {
        log::debug!("pool {id} released again (not held)");
    }
    Ok(Empty {})
}

pub async fn request_address(svc: &Service, body: &[u8]) -> Result<RequestAddressResponse, Error> {
    let r: RequestAddressRequest = decode("RequestAddress", body)?;
    let pool = pool_id(&r.pool_id)?;
    let opt = |k: &str| r.options.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mac = opt(MAC_ADDRESS)
        .map(|m| m.parse::<Mac>().map_err(Error::BadRequest))
        .transpose()?;
    let serial = [DOCKER_SERIAL, "serial"]
        .iter()
        .any(|k| opt(k).is_some_and(|v| v.eq_ignore_ascii_case("true")));
    let req = AddressRequest {
        pool,
        address: address(&r.address)?,
        gateway: opt(REQUEST_ADDRESS_TYPE) == Some(GATEWAY),
        serial,
        mac,
        name: opt(ENDPOINT_NAME).map(String::from),
    };
    let net = svc.request_address(&req).await?;
    log::debug!("address {net} leased in pool {}", req.pool);
    Ok(RequestAddressResponse {
        address: net.to_string(),
        data: Default::default(),
    })
}

pub async fn release_address(svc: &Service, body: &[u8]) -> Result<Empty, Error> {
    let r: ReleaseAddressRequest = decode("ReleaseAddress", body)?;
    let id = pool_id(&r.pool_id)?;
    let Some(addr) = address(&r.address)? else {
        return Err(Error::BadRequest(format!(
            "ReleaseAddress for pool {id} names no address"
        )));
    };
    svc.release_address(&id, addr).await?;
    log::debug!("address {addr} released in pool {id}");
    Ok(Empty {})
}

/// `/Gipam.Status`: held pools with their lease counts (F11, read-only).
pub fn status(svc: &Service) -> serde_json::Value {
    let ipam = svc.ipam();
    let pools: Vec<serde_json::Value> = ipam
        .state()
        .pools()
        .map(|p| {
            serde_json::json!({
                "PoolID": p.id.to_string(),
                "Pool": p.id.subnet.to_string(),
                "Auto": p.auto,
                "Leases": p.lease_count(),
            })
        })
        .collect();
    serde_json::json!({ "Pools": pools, "Leases": ipam.state().lease_count() })
}

/// `/Gipam.Leases`: every lease (F11, read-only).
pub fn leases(svc: &Service) -> serde_json::Value {
    let ipam = svc.ipam();
    let leases: Vec<serde_json::Value> = ipam
        .state()
        .pools()
        .flat_map(|p| {
            p.leases().map(|(a, l)| {
                serde_json::json!({
                    "PoolID": p.id.to_string(),
                    "Address": a.to_string(),
                    "Gateway": l.gateway,
                    "MacAddress": l.mac.map(|m| m.to_string()),
                    "Name": l.name.as_deref(),
                })
            })
        })
        .collect();
    serde_json::json!({ "Leases": leases })
}
