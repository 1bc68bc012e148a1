//! Fleet fixtures: several gipam hosts on one real etcd cluster, and the
//! requests the fleet tests send.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::Daemon;

/// Starts gipam host `id` on `endpoints` with extra args.
pub fn host(endpoints: &str, id: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "--etcd-endpoints",
        endpoints,
        "--host-id",
        id,
        "--v4",
        "10.60.0.0/16",
        "--etcd-timeout",
        "2",
    ];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

/// A RequestPool body: `pool` "" for an automatic block.
pub fn pool_req(pool: &str, options: Value) -> Value {
    json!({"AddressSpace": "LocalDefault", "Pool": pool, "SubPool": "", "Options": options, "V6": false})
}

/// The subnet a RequestPool reply names, if it succeeded.
pub fn granted(status: u16, reply: &Value) -> Option<IpNet> {
    (status == 200)
        .then(|| reply["Pool"].as_str()?.parse().ok())
        .flatten()
}

pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Every pair of overlapping subnets among `held` (host, subnet).
pub fn overlapping_pairs(held: &[(String, IpNet)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (ha, a)) in held.iter().enumerate() {
        for (hb, b) in &held[i + 1..] {
            if overlaps(a, b) {
                out.push(format!("{ha}:{a} overlaps {hb}:{b}"));
            }
        }
    }
    out
}

/// The subnets of a host's `/Gipam.Status`.
pub fn pools_of(d: &Daemon) -> Vec<IpNet> {
    let (_, v) = d
        .client()
        .call("Gipam.Status", &Value::Null)
        .expect("status");
    v["Pools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["Pool"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The addresses a host's `/Gipam.Leases` lists in `pool_id`.
pub fn leases_of(d: &Daemon, pool_id: &str) -> Vec<IpAddr> {
    let (_, v) = d
        .client()
        .call("Gipam.Leases", &Value::Null)
        .expect("leases");
    v["Leases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["PoolID"] == pool_id)
                .filter_map(|l| l["Address"].as_str()?.split('/').next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
