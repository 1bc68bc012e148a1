//! The snapshot forms of the state: [`Frozen`], the copy taken under the
//! allocator lock (lease chunks shared, so it is cheap), and [`Snapshot`],
//! its JSON form as people read it in `snapshot.json`. `State::freeze`,
//! `State::snapshot` and `State::from_snapshot` (in `state.rs`) go between
//! them and the live state.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::retired::FrozenMemory;

pub use super::retired::{SnapshotRemembered, SnapshotRetired};
use super::{Family, Leases, Mac, PoolId, Reuse, Sticky, TreeSpec, to_addr};

/// A copy of the state taken for a snapshot (see [`super::State::freeze`]).
#[derive(Debug, Clone)]
pub struct Frozen {
    pub(super) ula: Option<Ipv6Net>,
    pub(super) mains: Option<(Vec<IpNet>, Vec<IpNet>)>,
    pub(super) tree: TreeSpec,
    pub(super) aliases: BTreeMap<String, PoolId>,
    pub(super) pools: Vec<FrozenPool>,
    pub(super) retired: Vec<(PoolId, FrozenMemory)>,
}

#[derive(Debug, Clone)]
pub(super) struct FrozenPool {
    pub(super) id: PoolId,
    pub(super) auto: bool,
    pub(super) serial: bool,
    pub(super) reuse: Reuse,
    pub(super) tree_pool: Option<String>,
    pub(super) owner: Option<String>,
    pub(super) shared: Option<String>,
    pub(super) data_gateway: Option<IpAddr>,
    pub(super) cursor: Option<IpAddr>,
    pub(super) cooling: Vec<IpAddr>,
    pub(super) leases: Leases,
    pub(super) memory: FrozenMemory,
}

/// What one pool remembers (F6), as [`Frozen::remembered`] lists it.
#[derive(Debug, Clone)]
pub struct PoolMemory {
    pub pool: PoolId,
    /// False for a released pool's memory, kept until a pool with its id
    /// comes back.
    pub held: bool,
    /// The pool's clock: how many releases it has remembered.
    pub releases: u64,
    /// Lowest address first.
    pub records: Vec<SnapshotRemembered>,
}

impl Frozen {
    /// The remembered addresses of every pool, held ones first, then the
    /// released ones; unlike [`Frozen::snapshot`] it lists no leases.
    pub fn remembered(&self) -> Vec<PoolMemory> {
        let held = self.pools.iter().map(|p| (&p.id, true, &p.memory));
        let retired = self.retired.iter().map(|(id, m)| (id, false, m));
        held.chain(retired)
            .filter(|(_, _, m)| !m.is_empty())
            .map(|(id, held, m)| PoolMemory {
                pool: id.clone(),
                held,
                releases: m.releases,
                records: m.snapshot(Family::of_net(&id.subnet)),
            })
            .collect()
    }

    /// The JSON form of the copy.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ula: self.ula,
            mains: self.mains.clone().map(|(v4, v6)| SnapshotMains { v4, v6 }),
            tree: (!self.tree.pools.is_empty()).then(|| self.tree.clone()),
            aliases: self.aliases.clone(),
            pools: self
                .pools
                .iter()
                .map(|p| {
                    let f = Family::of_net(&p.id.subnet);
                    SnapshotPool {
                        id: p.id.clone(),
                        auto: p.auto,
                        serial: p.serial,
                        reuse: p.reuse,
                        tree_pool: p.tree_pool.clone(),
                        owner: p.owner.clone(),
                        shared: p.shared.clone(),
                        data_gateway: p.data_gateway,
                        cursor: p.cursor,
                        leases: p
                            .leases
                            .iter()
                            .map(|(x, l)| SnapshotLease {
                                address: to_addr(f, x),
                                gateway: l.gateway,
                                mac: l.mac,
                                name: l.name.as_deref().map(String::from),
                            })
                            .collect(),
                        cooling: p.cooling.clone(),
                        sticky: p.memory.sticky,
                        releases: p.memory.releases,
                        remembered: p.memory.snapshot(f),
                    }
                })
                .collect(),
            retired: self.retired.iter().map(|(id, m)| m.retired(id)).collect(),
        }
    }
}

/// The state as people read it in `snapshot.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ula: Option<Ipv6Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mains: Option<SnapshotMains>,
    /// The pool tree, in the pool file's own form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeSpec>,
    #[serde(default)]
    pub pools: Vec<SnapshotPool>,
    /// Foreign PoolIDs (`gipam import`) and the pools they name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, PoolId>,
    /// What released pools remembered (F6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<SnapshotRetired>,
}

/// The main pools gipam last started with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotMains {
    pub v4: Vec<IpNet>,
    pub v6: Vec<IpNet>,
}

/// One pool in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotPool {
    pub id: PoolId,
    #[serde(default)]
    pub auto: bool,
    #[serde(default)]
    pub serial: bool,
    /// `reuse=`; left out when it is the default.
    #[serde(default, skip_serializing_if = "Reuse::is_default")]
    pub reuse: Reuse,
    /// The tree pool its block was drawn from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_pool: Option<String>,
    /// The owner given with `--ipam-opt id=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The fleet-wide network the pool belongs to (F9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
    /// The gateway reserved with the pool and not yet claimed or replaced
    /// by a gateway request (it is also among the leases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<IpAddr>,
    #[serde(default)]
    pub leases: Vec<SnapshotLease>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cooling: Vec<IpAddr>,
    /// `sticky=`; left out when it is the default.
    #[serde(default, skip_serializing_if = "Sticky::is_default")]
    pub sticky: Sticky,
    /// The pool's logical clock: how many releases it has remembered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub releases: u64,
    /// The addresses remembered for containers that left (F6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remembered: Vec<SnapshotRemembered>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One lease in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotLease {
    pub address: IpAddr,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gateway: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
