//! `gipam fleet forget HOST`: releases everything a host that is gone for
//! good holds in etcd. Never done by a timer; refused while the host is
//! seen alive (its lease-bound alive key exists) and for this host itself.

use serde::Serialize;

use super::keys::SharedNet;
use super::{Claim, Fleet, FleetError};

/// What a forget released.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Forgotten {
    pub host: String,
    pub blocks: Vec<ipnet::IpNet>,
    pub shared_left: Vec<String>,
    pub shared_addresses: usize,
}

fn alive_refusal(host: &str) -> FleetError {
    FleetError::Refused(format!(
        "host {host} is alive (its gipam keeps a heartbeat in etcd); stop gipam there first, or release its networks on it"
    ))
}

impl Fleet {
    /// Releases `host`'s blocks, shared addresses and holds, then its
    /// record. Each delete compares the revision it saw.
    pub async fn forget(&self, host: &str) -> Result<Forgotten, FleetError> {
        if host == self.cfg.host_id {
            return Err(FleetError::Refused(format!(
                "host {host} is this host; run gipam fleet forget on another host of the fleet"
            )));
        }
        if !crate::config::valid_host_id(host) {
            return Err(FleetError::Refused(format!(
                "{:?} is not a host name; gipam fleet lists the hosts",
                crate::ipam::quote(host).to_string()
            )));
        }
        let (alive, known, blocks, addrs, shared) = {
            let v = self.view();
            let blocks: Vec<(ipnet::IpNet, i64)> = v
                .blocks
                .iter()
                .filter(|(_, (c, _))| c.host == host && c.shared.is_none())
                .map(|(n, (_, r))| (*n, *r))
                .collect();
            let addrs: Vec<(String, std::net::IpAddr, i64)> = v
                .addrs
                .iter()
                .filter(|(_, (c, _))| c.host == host)
                .map(|((n, a), (_, r))| (n.clone(), *a, *r))
                .collect();
            let shared: Vec<(String, SharedNet, i64)> = v
                .shared
                .iter()
                .filter(|(_, (s, _))| s.holders.iter().any(|h| h == host))
                .map(|(n, (s, r))| (n.clone(), s.clone(), *r))
                .collect();
            let known = v.hosts.contains_key(host) || !blocks.is_empty() || !shared.is_empty();
            (v.alive.contains(host), known, blocks, addrs, shared)
        };
        if alive {
            return Err(alive_refusal(host));
        }
        if !known {
            return Err(FleetError::Refused(format!(
                "the fleet has no host {host}; gipam fleet lists the hosts"
            )));
        }
        // Then asked of etcd itself, not the view (which can lag behind a start).
        let key = self.keys.alive(host);
        let alive = self
            .conn
            .call_again(&self.stats, |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?
            .count()
            > 0;
        if alive {
            return Err(alive_refusal(host));
        }
        let mut out = Forgotten {
            host: host.to_string(),
            ..Forgotten::default()
        };
        for (net, rev) in blocks {
            if let Claim::Won = self.delete_if(self.keys.block(&net), rev).await? {
                out.blocks.push(net);
            }
        }
        for (name, a, rev) in addrs {
            if let Claim::Won = self.delete_if(self.keys.addr(&name, a), rev).await? {
                out.shared_addresses += 1;
            }
        }
        for (name, mut rec, rev) in shared {
            rec.holders.retain(|h| h != host);
            // With no holder left, the network, its block and addresses go.
            let won = if rec.holders.is_empty() {
                self.leave_shared(&name, rec, rev).await?
            } else {
                self.put_shared(&name, &rec, rev).await?
            };
            if let Claim::Won = won {
                out.shared_left.push(name);
            }
        }
        let key = self.keys.host(host);
        self.conn
            .call(
                &self.stats,
                |mut c| async move { c.delete(key, None).await },
            )
            .await?;
        Ok(out)
    }
}
