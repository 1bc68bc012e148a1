//! What Docker knows, read through the Docker Engine API with `bollard`
//! (DOCKER_HOST when set, else /var/run/docker.sock): every network's IPAM
//! config (subnets, gateways, aux addresses), every endpoint's addresses
//! (`docker network inspect`), and every container's endpoint settings
//! (IPAddress, GlobalIPv6Address, IPAMConfig), name and endpoint MACs,
//! stopped containers included (a stopped one's pinned MAC from its
//! inspect, read raw: see `configured_mac`). Only the CLI process reads it, never a
//! request handler of the daemon (protocol doc, pitfall 13).

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerSummaryStateEnum, EndpointSettings};
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
use ipnet::IpNet;

/// One Docker network, as far as IPAM goes.
#[derive(Debug, Clone, Default)]
pub struct DockerNetwork {
    pub name: String,
    /// The IPAM driver it was created with (`default`, `org/gipam:latest`, …).
    pub ipam_driver: String,
    pub subnets: Vec<IpNet>,
    /// Gateways and aux addresses: held for the network, not an endpoint.
    pub reserved: Vec<IpAddr>,
}

/// Docker's networks and every address its endpoints hold.
#[derive(Debug, Clone, Default)]
pub struct DockerView {
    pub networks: Vec<DockerNetwork>,
    /// Addresses of endpoints and containers, in any network.
    pub addresses: HashSet<IpAddr>,
    /// Every container's name, running or not, without Docker's leading `/`.
    pub containers: HashSet<String>,
    /// The MAC of every endpoint, lowercase: a running container's, and a
    /// stopped one's when Docker keeps it (pinned with `--mac-address`; a
    /// random one is gone with the stop, Docker makes a new one per start).
    pub macs: HashSet<String>,
}

impl DockerView {
    /// The network whose IPAM config has this subnet.
    pub fn network_of(&self, subnet: &IpNet) -> Option<&DockerNetwork> {
        self.networks.iter().find(|n| n.subnets.contains(subnet))
    }

    /// Whether Docker holds `addr` for a network or an endpoint.
    pub fn knows(&self, addr: IpAddr) -> bool {
        self.addresses.contains(&addr) || self.networks.iter().any(|n| n.reserved.contains(&addr))
    }

    /// Whether a container has this name, or an endpoint this MAC (F6's
    /// identities: a name, else a MAC).
    pub fn has_container(&self, name: Option<&str>, mac: Option<&str>) -> bool {
        name.is_some_and(|n| self.containers.contains(n))
            || mac.is_some_and(|m| self.macs.contains(&m.to_ascii_lowercase()))
    }

    fn add_mac(&mut self, mac: Option<&String>) {
        if let Some(m) = mac.map(|m| m.trim()).filter(|m| !m.is_empty()) {
            self.macs.insert(m.to_ascii_lowercase());
        }
    }

    fn add_endpoint(&mut self, ep: &EndpointSettings) {
        for a in [&ep.ip_address, &ep.global_ipv6_address]
            .into_iter()
            .flatten()
        {
            self.addresses.extend(addr(a));
        }
        if let Some(cfg) = &ep.ipam_config {
            for a in [&cfg.ipv4_address, &cfg.ipv6_address].into_iter().flatten() {
                self.addresses.extend(addr(a));
            }
        }
        self.add_mac(ep.mac_address.as_ref());
    }
}

/// Where Docker is looked for, for messages.
pub fn endpoint_name() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// An address as Docker prints it: bare or with a prefix length.
fn addr(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let bare = t.split_once('/').map_or(t, |(a, _)| a);
    bare.parse().ok()
}

/// Reads Docker's view, waiting at most `timeout` for each call.
pub async fn read(timeout: Duration) -> Result<DockerView, String> {
    let fail = |what: &str, e: bollard::errors::Error| {
        format!(
            "cannot read Docker's {what} through {}: {e}; is dockerd running and DOCKER_HOST right?",
            endpoint_name()
        )
    };
    let docker = Docker::connect_with_defaults()
        .map_err(|e| fail("API", e))?
        .with_timeout(timeout);
    // bollard speaks the newest API; an older daemon (20.10: 1.41) needs
    // the version it offers.
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| fail("API version", e))?;
    let mut view = DockerView::default();
    let list = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map_err(|e| fail("networks", e))?;
    for n in list {
        let Some(id) = n.id.clone() else { continue };
        // The list leaves endpoints out; inspect has them.
        let Ok(full) = docker.inspect_network(&id, None).await else {
            continue; // removed between the list and the inspect
        };
        let mut net = DockerNetwork {
            name: full.name.clone().unwrap_or(id),
            ..Default::default()
        };
        if let Some(ipam) = &full.ipam {
            net.ipam_driver = ipam.driver.clone().unwrap_or_default();
            for c in ipam.config.iter().flatten() {
                if let Some(s) = c.subnet.as_deref().and_then(|s| s.parse::<IpNet>().ok()) {
                    net.subnets.push(s.trunc());
                }
                net.reserved.extend(c.gateway.as_deref().and_then(addr));
                for a in c.auxiliary_addresses.iter().flat_map(|m| m.values()) {
                    net.reserved.extend(addr(a));
                }
            }
        }
        for ep in full.containers.iter().flat_map(|m| m.values()) {
            for a in [&ep.ipv4_address, &ep.ipv6_address].into_iter().flatten() {
                view.addresses.extend(addr(a));
            }
            view.add_mac(ep.mac_address.as_ref());
        }
        view.networks.push(net);
    }
    let options = ListContainersOptions {
        all: true,
        ..Default::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| fail("containers", e))?;
    for c in containers {
        for n in c.names.iter().flatten() {
            view.containers
                .insert(n.strip_prefix('/').unwrap_or(n).to_string());
        }
        let nets = c
            .network_settings
            .and_then(|s| s.networks)
            .unwrap_or_default();
        for ep in nets.values() {
            view.add_endpoint(ep);
        }
        // The list leaves a stopped container's MAC out even when it is
        // pinned; inspect has it.
        if c.state == Some(ContainerSummaryStateEnum::RUNNING) {
            continue;
        }
        let Some(id) = c.id else { continue };
        let Ok(full) = docker.inspect_container(&id, None).await else {
            continue; // removed between the list and the inspect
        };
        let nets = full.network_settings.and_then(|s| s.networks);
        for ep in nets.iter().flat_map(|m| m.values()) {
            view.add_endpoint(ep);
        }
        let mac = configured_mac(&id, timeout).await;
        view.add_mac(mac.as_ref());
    }
    Ok(view)
}

/// The MAC a container was created with, from `Config.MacAddress` of its
/// inspect: where Engines before 29 keep a pinned MAC once the container
/// stopped (its endpoints' MacAddress is empty then). bollard's types no
/// longer carry that deprecated field, so it is read raw, over the unix
/// socket only; `None` when unknown (Engine 29 keeps a stopped
/// container's name, which is its identity there).
async fn configured_mac(id: &str, timeout: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let host = std::env::var("DOCKER_HOST").ok();
    let path = match host.as_deref() {
        None => "/var/run/docker.sock",
        Some(h) => h.strip_prefix("unix://")?,
    };
    let ask = async {
        let mut s = tokio::net::UnixStream::connect(path).await.ok()?;
        // HTTP/1.0: the reply is the body up to the end, never chunked.
        let head = format!("GET /containers/{id}/json HTTP/1.0\r\nHost: docker\r\n\r\n");
        s.write_all(head.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.ok()?;
        Some(reply)
    };
    let reply = tokio::time::timeout(timeout, ask).await.ok()??;
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let body: serde_json::Value = serde_json::from_slice(reply.get(split + 4..)?).ok()?;
    body.get("Config")?
        .get("MacAddress")?
        .as_str()
        .map(String::from)
}

/// Reads Docker's view on a runtime of its own (the subcommands are
/// synchronous).
pub fn read_blocking(timeout: Duration) -> Result<DockerView, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to talk to Docker: {e}"))?
        .block_on(read(timeout))
}
