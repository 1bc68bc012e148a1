//! F6 across a network's removal: what released pools remembered, kept by
//! PoolId until a pool with that id comes back (it takes its memory over)
//! or a pool overlapping it under another id is added (the memory is
//! dropped: those addresses are someone else's now). Also the JSON form of
//! a pool's memory, held or retired, in the snapshot.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::leases::ChunkMap;
use super::sticky::{Ident, Memory, Remembered};
use super::{Error, Family, Mac, Pool, PoolId, Reuse, Sticky, net_bounds, to_addr};

/// The memories of released pools. They never overlap each other (a new
/// pool drops every one it overlaps, so two can never be live together).
#[derive(Debug, Clone, Default)]
pub struct Retired {
    by_id: BTreeMap<PoolId, Memory>,
    /// Subnets by (family, first address) -> (last address, id).
    index: BTreeMap<(Family, u128), (u128, PoolId)>,
}

impl Retired {
    /// Addresses remembered for released pools.
    pub fn count(&self) -> usize {
        self.by_id.values().map(Memory::len).sum()
    }

    /// The retired memories overlapping `net`: walked down from its end,
    /// as they do not overlap each other.
    pub fn overlapping(&self, net: &IpNet) -> Vec<PoolId> {
        let f = Family::of_net(net);
        let (lo, hi) = net_bounds(net);
        self.index
            .range((f, 0)..=(f, hi))
            .rev()
            .take_while(|(_, (end, _))| *end >= lo)
            .map(|(_, (_, id))| id.clone())
            .collect()
    }

    /// Keeps the memory of the released pool `id`.
    pub fn insert(&mut self, id: PoolId, memory: Memory) {
        let (lo, hi) = net_bounds(&id.subnet);
        self.index
            .insert((Family::of_net(&id.subnet), lo), (hi, id.clone()));
        self.by_id.insert(id, memory);
    }

    /// Takes the memory kept for `id` (a pool of that id is added again,
    /// or one over it).
    pub fn remove(&mut self, id: &PoolId) -> Option<Memory> {
        let m = self.by_id.remove(id)?;
        let (lo, _) = net_bounds(&id.subnet);
        self.index.remove(&(Family::of_net(&id.subnet), lo));
        Some(m)
    }

    /// A copy for a snapshot (records shared by chunk).
    pub fn freeze(&self) -> Vec<(PoolId, FrozenMemory)> {
        self.by_id
            .iter()
            .map(|(id, m)| (id.clone(), FrozenMemory::of(m)))
            .collect()
    }

    /// Adds a retired memory read from a snapshot, checked like a held
    /// pool's (the caller checks it overlaps no held pool).
    pub fn restore(&mut self, r: SnapshotRetired) -> Result<(), Error> {
        if let Some(other) = self.overlapping(&r.id.subnet).first() {
            return Err(Error::Inconsistent(format!(
                "released pools {} and {other} remember overlapping addresses",
                r.id
            )));
        }
        // Rebuilt in a scratch pool, which checks every record.
        let mut pool = Pool::new(r.id.clone(), false, false, Reuse::Immediate, r.sticky);
        pool.restore_memory(r.releases, records(r.remembered)?)?;
        self.insert(r.id, pool.take_memory());
        Ok(())
    }

    /// Derived indexes in a canonical form (see `Memory::derived`).
    #[cfg(test)]
    pub fn derived(&self) -> String {
        let mems: Vec<String> = self
            .by_id
            .iter()
            .map(|(id, m)| format!("{id}: {}", m.derived()))
            .collect();
        format!("{mems:?} index {:?}", self.index)
    }
}

/// A copy of one pool's memory (records shared by chunk, like leases).
#[derive(Debug, Clone)]
pub struct FrozenMemory {
    pub sticky: Sticky,
    pub releases: u64,
    records: ChunkMap<Remembered>,
}

impl FrozenMemory {
    /// A copy of `m` (records shared by chunk).
    pub fn of(m: &Memory) -> FrozenMemory {
        FrozenMemory {
            sticky: m.mode(),
            releases: m.clock(),
            records: m.records().clone(),
        }
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records as the snapshot lists them, lowest address first.
    pub fn snapshot(&self, f: Family) -> Vec<SnapshotRemembered> {
        self.records
            .iter()
            .map(|(x, r)| {
                let (name, mac) = match &r.ident {
                    Ident::Name(n) => (Some(n.to_string()), None),
                    Ident::Mac(m) => (None, Some(*m)),
                };
                SnapshotRemembered {
                    address: to_addr(f, x),
                    name,
                    mac,
                    released: r.released,
                }
            })
            .collect()
    }

    /// The snapshot form of a released pool's memory.
    pub fn retired(&self, id: &PoolId) -> SnapshotRetired {
        SnapshotRetired {
            id: id.clone(),
            sticky: self.sticky,
            releases: self.releases,
            remembered: self.snapshot(Family::of_net(&id.subnet)),
        }
    }
}

/// The records of a snapshot as the core takes them.
pub fn records(list: Vec<SnapshotRemembered>) -> Result<Vec<(IpAddr, Ident, u64)>, Error> {
    list.into_iter()
        .map(|r| match Ident::of(r.name.as_deref(), r.mac) {
            Some(ident) if r.name.is_none() || r.mac.is_none() => {
                Ok((r.address, ident, r.released))
            }
            _ => Err(Error::Inconsistent(format!(
                "remembered address {} needs exactly one of name and mac",
                r.address
            ))),
        })
        .collect()
}

/// What a released pool remembered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRetired {
    pub id: PoolId,
    #[serde(default, skip_serializing_if = "Sticky::is_default")]
    pub sticky: Sticky,
    #[serde(default)]
    pub releases: u64,
    #[serde(default)]
    pub remembered: Vec<SnapshotRemembered>,
}

/// One remembered address: whose it was (a name or a MAC) and when it was
/// released, counted in the pool's remembered releases (`releases`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRemembered {
    pub address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    pub released: u64,
}
