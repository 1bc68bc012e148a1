//! `gipam reconcile [--apply] [--json] [--settle SECONDS]`: what gipam
//! holds that Docker does not know — a lease no endpoint has (never a
//! network's gateway or aux address), a pool no network has — and, with
//! `--apply`, frees it through the plugin socket (ReleaseAddress,
//! ReleasePool), so each release is durable like any change. A dry run by
//! default. It runs in the CLI process, never inside a request handler.
//! It also lists, for information only, the addresses remembered for
//! containers that no longer exist (`remembered.rs`); `--apply` leaves
//! those.
//!
//! The race with containers and networks being created meanwhile is
//! closed by the order of the reads: gipam's leases first, then (after
//! `--settle`, 2 s by default, the time a request's endpoint takes to
//! appear in Docker) Docker's networks and endpoints, then gipam's leases
//! again. Only what the first read had, Docker's read lacks, and the second
//! read still has with the same identity (pool, address, gateway flag, MAC,
//! name) is a leak. A lease taken after the first read is in no first
//! read; one taken before it had `--settle` to reach Docker's records; one
//! released and taken again in between differs in the second read (or is
//! in Docker's).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::docker::{self, DockerView};
use super::remembered::{self, HeldMemory};
use super::{client, table};

/// One lease as gipam reports it; equal only when nothing about it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    pub pool_id: String,
    pub address: IpAddr,
    pub gateway: bool,
    pub mac: Option<String>,
    pub name: Option<String>,
}

/// One held pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPool {
    pub pool_id: String,
    pub subnet: IpNet,
    pub leases: u64,
}

/// What gipam holds at one read.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub pools: Vec<HeldPool>,
    pub leases: Vec<HeldLease>,
    /// What it remembers (F6), or why it could not be read.
    pub remembered: Option<Result<Vec<HeldMemory>, String>>,
}

/// What leaked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaks {
    pub pools: Vec<HeldPool>,
    pub leases: Vec<HeldLease>,
}

fn opt(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(String::from)
}

/// Reads what gipam holds (`/Gipam.Status`, `/Gipam.Leases`) and
/// remembers (`/Gipam.Remembered`).
pub fn read_held(socket: &Path) -> Result<Held, String> {
    let status = client::call(socket, "Gipam.Status", &Value::Null)?;
    let leases = client::call(socket, "Gipam.Leases", &Value::Null)?;
    let mut held = Held {
        remembered: Some(remembered::read(socket)),
        ..Held::default()
    };
    for p in status
        .get("Pools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(subnet)) = (opt(p, "PoolID"), opt(p, "Pool")) else {
            continue;
        };
        let Ok(subnet) = subnet.parse() else { continue };
        held.pools.push(HeldPool {
            pool_id: id,
            subnet,
            leases: p.get("Leases").and_then(Value::as_u64).unwrap_or(0),
        });
    }
    for l in leases
        .get("Leases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(Ok(address))) =
            (opt(l, "PoolID"), opt(l, "Address").map(|a| a.parse()))
        else {
            continue;
        };
        held.leases.push(HeldLease {
            pool_id: id,
            address,
            gateway: l.get("Gateway").and_then(Value::as_bool).unwrap_or(false),
            mac: opt(l, "MacAddress"),
            name: opt(l, "Name"),
        });
    }
    Ok(held)
}

/// The leaks: in `first`, unknown to `docker`, unchanged in `second`.
pub fn find(first: &Held, docker: &DockerView, second: &Held) -> Leaks {
    let pools: Vec<HeldPool> = first
        .pools
        .iter()
        .filter(|p| docker.network_of(&p.subnet).is_none())
        .filter(|p| second.pools.iter().any(|q| q.pool_id == p.pool_id))
        .cloned()
        .collect();
    let leases = first
        .leases
        .iter()
        // Releasing the pool frees its leases too.
        .filter(|l| !pools.iter().any(|p| p.pool_id == l.pool_id))
        .filter(|l| !l.gateway && !docker.knows(l.address))
        .filter(|l| second.leases.contains(l))
        .cloned()
        .collect();
    Leaks { pools, leases }
}

fn lease_json(l: &HeldLease) -> Value {
    json!({"PoolID": l.pool_id, "Address": l.address.to_string(), "MacAddress": l.mac, "Name": l.name})
}

/// `gipam reconcile`: prints the leaks; with `apply`, frees them.
pub fn run(socket: &Path, apply: bool, json: bool, settle: Duration) -> Result<(), String> {
    let first = read_held(socket)?;
    std::thread::sleep(settle);
    let view = docker::read_blocking(Duration::from_secs(30))
        .map_err(|e| format!("reconcile compares with Docker and {e}"))?;
    let second = read_held(socket)?;
    let leaks = find(&first, &view, &second);
    let gone = match (&first.remembered, &second.remembered) {
        (Some(Ok(a)), Some(Ok(b))) => Ok(remembered::gone(a, &view, b)),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e.clone()),
        _ => Err("gipam was not asked".into()),
    };
    let mut freed = Vec::new();
    let mut failed = Vec::new();
    if apply {
        for l in &leaks.leases {
            let body = json!({"PoolID": l.pool_id, "Address": l.address.to_string()});
            match client::call(socket, "IpamDriver.ReleaseAddress", &body) {
                Ok(_) => freed.push(format!("{} {}", l.pool_id, l.address)),
                Err(e) => failed.push(format!("{} {}: {e}", l.pool_id, l.address)),
            }
        }
        for p in &leaks.pools {
            match client::call(
                socket,
                "IpamDriver.ReleasePool",
                &json!({"PoolID": p.pool_id}),
            ) {
                Ok(_) => freed.push(p.pool_id.clone()),
                Err(e) => failed.push(format!("{}: {e}", p.pool_id)),
            }
        }
    }
    if json {
        let out = json!({
            "Leases": leaks.leases.iter().map(lease_json).collect::<Vec<_>>(),
            "Pools": leaks.pools.iter().map(|p| json!({"PoolID": p.pool_id, "Pool": p.subnet.to_string(), "Leases": p.leases})).collect::<Vec<_>>(),
            "Remembered": gone.as_ref().ok().map(|g| g.iter().map(HeldMemory::json).collect::<Vec<_>>()),
            "RememberedError": gone.as_ref().err(),
            "Applied": apply,
            "Freed": freed,
            "Failed": failed,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(&leaks, apply, &failed));
        print!("{}", remembered::render(&gone));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of the leaks could not be freed (see above); run `gipam reconcile --apply` again once gipam accepts changes",
            failed.len()
        ))
    }
}

fn render(leaks: &Leaks, apply: bool, failed: &[String]) -> String {
    let n = leaks.leases.len() + leaks.pools.len();
    if n == 0 {
        return "nothing leaked: every lease and pool gipam holds is known to Docker\n".into();
    }
    let mut rows = Vec::new();
    for l in &leaks.leases {
        let who = match (&l.name, &l.mac) {
            (Some(name), _) => format!("endpoint {name}"),
            (None, Some(mac)) => format!("endpoint {mac}"),
            (None, None) => "address".into(),
        };
        rows.push(vec![
            "lease".into(),
            l.pool_id.clone(),
            l.address.to_string(),
            format!("{who}: no Docker endpoint has it"),
        ]);
    }
    for p in &leaks.pools {
        rows.push(vec![
            "pool".into(),
            p.pool_id.clone(),
            "-".into(),
            format!(
                "no Docker network has {} ({})",
                p.subnet,
                table::plural(p.leases, "lease")
            ),
        ]);
    }
    let mut out = table::render(&["LEAK", "POOL", "ADDRESS", "WHY"], &rows);
    if apply {
        out.push_str(&format!(
            "freed {} of {}\n",
            n - failed.len(),
            table::plural(n as u128, "leak")
        ));
        for f in failed {
            out.push_str(&format!("not freed: {f}\n"));
        }
    } else {
        out.push_str(&format!(
            "{}; `gipam reconcile --apply` frees {}\n",
            table::plural(n as u128, "leak"),
            if n == 1 { "it" } else { "them" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::docker::DockerNetwork;

    fn lease(addr: &str, mac: &str) -> HeldLease {
        HeldLease {
            pool_id: "LocalDefault/10.9.0.0/24".into(),
            address: addr.parse().unwrap(),
            gateway: false,
            mac: Some(mac.into()),
            name: None,
        }
    }

    #[test]
    fn only_leases_unknown_to_docker_and_unchanged_leak() {
        let pool = HeldPool {
            pool_id: "LocalDefault/10.9.0.0/24".into(),
            subnet: "10.9.0.0/24".parse().unwrap(),
            leases: 5,
        };
        let orphan = HeldPool {
            pool_id: "LocalDefault/10.9.1.0/24".into(),
            subnet: "10.9.1.0/24".parse().unwrap(),
            leases: 1,
        };
        let mut gw = lease("10.9.0.1", "-");
        gw.gateway = true;
        let first = Held {
            pools: vec![pool.clone(), orphan.clone()],
            leases: vec![
                gw.clone(),
                lease("10.9.0.2", "aa"), // Docker has it
                lease("10.9.0.3", "bb"), // leaked
                lease("10.9.0.4", "cc"), // released and taken again
                lease("10.9.0.6", "dd"), // aux address
            ],
            ..Held::default()
        };
        let mut view = DockerView::default();
        view.networks.push(DockerNetwork {
            name: "web".into(),
            ipam_driver: "gipam".into(),
            subnets: vec![pool.subnet],
            reserved: vec!["10.9.0.6".parse().unwrap()],
        });
        view.addresses.insert("10.9.0.2".parse().unwrap());
        let mut second = first.clone();
        second.leases[3] = lease("10.9.0.4", "ee");
        second.leases.push(lease("10.9.0.5", "ff")); // new: never freed
        let leaks = find(&first, &view, &second);
        assert_eq!(leaks.leases, vec![lease("10.9.0.3", "bb")]);
        assert_eq!(leaks.pools, vec![orphan]);
    }
}
