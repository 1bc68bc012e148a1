//! The state every store keeps: held pools with their leases and the
//! addresses they remember (F6), what released pools remembered, the pool
//! tree (F7), and the generated default IPv6 prefix. `apply` is the only way it changes, both
//! live and when a journal is replayed; `Snapshot` is its JSON form.
//!
//! A released pool's memory is kept ("retired") under its PoolId, so a
//! network removed and created again with the same pool (`docker compose
//! down` and `up`) gives its containers their addresses back. A new pool
//! overlapping a retired memory under another id drops that memory: its
//! addresses are someone else's now. So retired memories never overlap
//! each other or a held pool, and what is remembered stays bounded by the
//! address space the pools cover (one identity per address).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::pool::{AddUndo, ReleaseUndo};
use super::retired::{FrozenMemory, Retired, records};
use super::snapshot::{Frozen, FrozenPool, Snapshot};
use super::sticky::{Memory, Remembered};
use super::{Change, Error, Family, Lease, Pool, PoolId, Tree, net_bounds, to_u128};
use ipnet::{IpNet, Ipv6Net};

/// Held pools and what they hold.
#[derive(Debug, Clone, Default)]
pub struct State {
    pools: BTreeMap<PoolId, Pool>,
    /// Held subnets by (family, first address) -> (last address, id), for
    /// overlap checks and block search across every address space.
    index: BTreeMap<(Family, u128), (u128, PoolId)>,
    /// What released pools remembered (module doc).
    retired: Retired,
    ula: Option<Ipv6Net>,
    mains: Option<(Vec<IpNet>, Vec<IpNet>)>,
    /// The pool tree; empty when none was loaded.
    tree: Tree,
    /// PoolIDs another driver gave Docker (see `Change::AliasPool`). Kept
    /// when the pool goes: they are random and never come back.
    aliases: BTreeMap<String, PoolId>,
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State::default()
    }

    /// The generated default IPv6 prefix, once there is one.
    pub fn ula(&self) -> Option<Ipv6Net> {
        self.ula
    }

    /// The main pools (V4, V6) gipam last started with, if recorded.
    pub fn mains(&self) -> Option<&(Vec<IpNet>, Vec<IpNet>)> {
        self.mains.as_ref()
    }

    /// The pool tree (empty when none was loaded).
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The pool another driver's PoolID names, if one was imported.
    pub fn alias(&self, name: &str) -> Option<&PoolId> {
        self.aliases.get(name)
    }

    /// A held pool.
    pub fn pool(&self, id: &PoolId) -> Option<&Pool> {
        self.pools.get(id)
    }

    /// Every held pool, in PoolId order.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    /// Total leases over all pools.
    pub fn lease_count(&self) -> usize {
        self.pools.values().map(Pool::lease_count).sum()
    }

    /// The held pool overlapping `net`, if any. Held pools never overlap
    /// each other, so the one starting last at or before `net`'s end is
    /// the only candidate.
    pub fn overlapping(&self, net: &IpNet) -> Option<(&PoolId, u128)> {
        let f = Family::of_net(net);
        let (lo, hi) = net_bounds(net);
        self.index
            .range((f, 0)..=(f, hi))
            .next_back()
            .filter(|(_, (end, _))| *end >= lo)
            .map(|(_, (end, id))| (id, *end))
    }

    /// Addresses remembered for released pools (F6).
    pub fn retired_count(&self) -> usize {
        self.retired.count()
    }

    /// Every derived index in a canonical form, which the snapshot does
    /// not show: tests compare the live state with itself after undo and
    /// with the state rebuilt from its snapshot.
    #[cfg(test)]
    pub fn derived(&self) -> String {
        let pools: Vec<String> = self
            .pools
            .values()
            .map(|p| format!("{}: {:?} {}", p.id, p.used, p.memory.derived()))
            .collect();
        format!("{pools:?} {:?} {}", self.index, self.retired.derived())
    }

    /// Applies one change; returns what it takes to take it back
    /// ([`State::undo`]). Live changes were planned against this state and
    /// always apply; an error means a damaged journal, and leaves the state
    /// as it was.
    pub fn apply(&mut self, change: &Change) -> Result<Undo, Error> {
        Ok(match change {
            Change::SetUla { prefix } => Undo::Ula(self.ula.replace(*prefix)),
            Change::SetMains { v4, v6 } => {
                Undo::Mains(self.mains.replace((v4.clone(), v6.clone())))
            }
            Change::AddPool {
                id,
                auto,
                serial,
                reuse,
                sticky,
                data_gateway,
            } => {
                let pool = Pool::new(id.clone(), *auto, *serial, *reuse, *sticky);
                self.add_pool(pool, *data_gateway)?
            }
            Change::AddPoolFrom {
                id,
                auto,
                serial,
                reuse,
                sticky,
                data_gateway,
                tree_pool,
                owner,
                shared,
            } => {
                let mut pool = Pool::new(id.clone(), *auto, *serial, *reuse, *sticky);
                pool.tree_pool = tree_pool.as_deref().map(Box::from);
                pool.owner = owner.as_deref().map(Box::from);
                pool.shared = shared.as_deref().map(Box::from);
                self.add_pool(pool, *data_gateway)?
            }
            Change::SetTree { tree } => {
                let tree = Tree::new(tree.clone())?;
                Undo::Tree(Box::new(std::mem::replace(&mut self.tree, tree)))
            }
            Change::ReleasePool { id } => match self.remove_pool(id) {
                Some(mut pool) => {
                    // An empty memory stays with the pool (for undo: it
                    // keeps its clock).
                    let retired = pool.remembered_count() > 0;
                    if retired {
                        let memory = pool.take_memory();
                        self.retired.insert(id.clone(), memory);
                    }
                    Undo::ReleasePool(Some((Box::new(pool), retired)))
                }
                None => Undo::ReleasePool(None),
            },
            Change::AddAddress {
                pool,
                address,
                gateway,
                dynamic,
                mac,
                name,
            } => {
                let p = self.pool_mut(pool)?;
                let x = p.check_inside(*address)?;
                let lease = Lease {
                    gateway: *gateway,
                    mac: *mac,
                    name: name.as_deref().map(Box::from),
                };
                let undo = p.add(x, lease, *dynamic)?;
                Undo::AddAddress(key(pool), x, undo)
            }
            Change::ReleaseAddress { pool, address } => {
                let p = self.pool_mut(pool)?;
                let x = to_u128(*address);
                Undo::ReleaseAddress(key(pool), x, p.release(x))
            }
            Change::AliasPool { alias, id } => {
                self.pool_mut(id)?;
                if alias.is_empty() || alias.parse::<PoolId>().is_ok() {
                    return Err(Error::Inconsistent(format!(
                        "{alias:?} cannot name pool {id}: it is not a foreign PoolID"
                    )));
                }
                let old = self.aliases.insert(alias.clone(), id.clone());
                Undo::Alias(alias.clone(), old)
            }
        })
    }

    /// Takes back an applied change. Undos must come in the reverse order
    /// of their changes (the service keeps them so): then each finds the
    /// state exactly as its change left it.
    pub fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Ula(old) => self.ula = old,
            Undo::Mains(old) => self.mains = old,
            Undo::Tree(old) => self.tree = *old,
            Undo::AddPool {
                id,
                adopted,
                displaced,
            } => {
                let pool = self.remove_pool(&id);
                if let (Some(mut pool), Some(lost)) = (pool, adopted) {
                    let mut m = pool.take_memory();
                    if let Some((g, r)) = lost {
                        m.put(g, r);
                    }
                    self.retired.insert(id, m);
                }
                for (other, m) in displaced {
                    self.retired.insert(other, m);
                }
            }
            Undo::ReleasePool(None) => {}
            Undo::ReleasePool(Some((mut pool, retired))) => {
                if retired && let Some(m) = self.retired.remove(&pool.id) {
                    pool.return_memory(m);
                }
                let f = Family::of_net(&pool.id.subnet);
                let (lo, hi) = net_bounds(&pool.id.subnet);
                self.index.insert((f, lo), (hi, pool.id.clone()));
                self.pools.insert(pool.id.clone(), *pool);
            }
            Undo::AddAddress(k, x, u) => {
                if let Some(p) = self.pool_at(k) {
                    p.unadd(x, u);
                }
            }
            Undo::Alias(alias, Some(old)) => {
                self.aliases.insert(alias, old);
            }
            Undo::Alias(alias, None) => {
                self.aliases.remove(&alias);
            }
            Undo::ReleaseAddress(_, _, None) => {}
            Undo::ReleaseAddress(k, x, Some(u)) => {
                if let Some(p) = self.pool_at(k) {
                    p.unrelease(x, u);
                }
            }
        }
    }

    /// The pool whose subnet starts at `k` (see [`key`]).
    fn pool_at(&mut self, k: (Family, u128)) -> Option<&mut Pool> {
        let (_, id) = self.index.get(&k)?;
        self.pools.get_mut(id)
    }

    /// Adds a planned pool: its reserved gateway, its own memory back
    /// (unless `sticky=` changed) and every other retired memory under it
    /// dropped (F6).
    fn add_pool(&mut self, mut pool: Pool, data_gateway: Option<IpAddr>) -> Result<Undo, Error> {
        let id = pool.id.clone();
        if let Some((held, _)) = self.overlapping(&id.subnet) {
            return Err(Error::Inconsistent(format!(
                "pool {id} added while {held} holds an overlapping subnet"
            )));
        }
        if let Some(g) = data_gateway {
            let x = pool.check_inside(g)?;
            pool.reserve_gateway(x)?;
        }
        let sticky = pool.sticky();
        let mut displaced = Vec::new();
        let mut adopted = None;
        for other in self.retired.overlapping(&id.subnet) {
            if let Some(m) = self.retired.remove(&other) {
                if other == id && m.mode() == sticky {
                    adopted = Some(pool.adopt(m));
                } else {
                    displaced.push((other, m));
                }
            }
        }
        let f = Family::of_net(&id.subnet);
        let (lo, hi) = net_bounds(&id.subnet);
        self.index.insert((f, lo), (hi, id.clone()));
        self.pools.insert(id.clone(), pool);
        Ok(Undo::AddPool {
            id,
            adopted,
            displaced,
        })
    }

    fn remove_pool(&mut self, id: &PoolId) -> Option<Pool> {
        let pool = self.pools.remove(id)?;
        let (lo, _) = net_bounds(&id.subnet);
        self.index.remove(&(Family::of_net(&id.subnet), lo));
        Some(pool)
    }

    fn pool_mut(&mut self, id: &PoolId) -> Result<&mut Pool, Error> {
        self.pools
            .get_mut(id)
            .ok_or_else(|| Error::Inconsistent(format!("pool {id} is used but was never added")))
    }

    /// A copy for a snapshot: lease chunks are shared, so it costs little
    /// to take under the allocator lock; turn it into JSON later.
    pub fn freeze(&self) -> Frozen {
        Frozen {
            ula: self.ula,
            mains: self.mains.clone(),
            tree: self.tree.spec().clone(),
            aliases: self.aliases.clone(),
            pools: self
                .pools
                .values()
                .map(|p| FrozenPool {
                    id: p.id.clone(),
                    auto: p.auto,
                    serial: p.serial,
                    reuse: p.reuse,
                    tree_pool: p.tree_pool.as_deref().map(String::from),
                    owner: p.owner.as_deref().map(String::from),
                    shared: p.shared.as_deref().map(String::from),
                    data_gateway: p.data_gateway(),
                    cursor: p.cursor(),
                    cooling: p.cooling().collect(),
                    leases: p.lease_map().clone(),
                    memory: FrozenMemory::of(&p.memory),
                })
                .collect(),
            retired: self.retired.freeze(),
        }
    }

    /// The JSON form of the state.
    pub fn snapshot(&self) -> Snapshot {
        self.freeze().snapshot()
    }

    /// Rebuilds a state from its JSON form.
    pub fn from_snapshot(s: Snapshot) -> Result<State, Error> {
        let mut st = State::new();
        st.ula = s.ula;
        st.mains = s.mains.map(|m| (m.v4, m.v6));
        st.tree = Tree::new(s.tree.unwrap_or_default())?;
        st.aliases = s.aliases;
        for p in s.pools {
            // The reserved gateway is among the leases; it is marked below.
            st.apply(&Change::AddPoolFrom {
                id: p.id.clone(),
                auto: p.auto,
                serial: p.serial,
                reuse: p.reuse,
                sticky: p.sticky,
                data_gateway: None,
                tree_pool: p.tree_pool,
                owner: p.owner,
                shared: p.shared,
            })?;
            let pool = st.pool_mut(&p.id)?;
            for l in p.leases {
                let x = pool.check_inside(l.address)?;
                let lease = Lease {
                    gateway: l.gateway,
                    mac: l.mac,
                    name: l.name.map(String::into_boxed_str),
                };
                pool.add(x, lease, false)?;
            }
            pool.restore(&p.cooling, p.cursor, p.data_gateway)?;
            pool.restore_memory(p.releases, records(p.remembered)?)?;
        }
        for r in s.retired {
            if let Some((held, _)) = st.overlapping(&r.id.subnet) {
                return Err(Error::Inconsistent(format!(
                    "released pool {} remembers addresses in {held}, which is held",
                    r.id
                )));
            }
            st.retired.restore(r)?;
        }
        Ok(st)
    }
}

/// Where a pool stands in the index: cheaper to keep in an undo record than
/// a clone of its id (held pools never overlap, so it names one pool).
fn key(id: &PoolId) -> (Family, u128) {
    (Family::of_net(&id.subnet), net_bounds(&id.subnet).0)
}

/// What it takes to take back one applied [`Change`] (a change whose
/// commit failed): the values it replaced.
#[derive(Debug)]
pub enum Undo {
    Ula(Option<Ipv6Net>),
    Mains(Option<(Vec<IpNet>, Vec<IpNet>)>),
    Tree(Box<Tree>),
    /// The pool added, the record of its gateway address it dropped when
    /// it took its old memory back (`Some` if it did), and the retired
    /// memories it displaced.
    AddPool {
        id: PoolId,
        adopted: Option<Option<(u128, Remembered)>>,
        displaced: Vec<(PoolId, Memory)>,
    },
    /// The pool released, and whether its memory was retired.
    ReleasePool(Option<(Box<Pool>, bool)>),
    AddAddress((Family, u128), u128, AddUndo),
    ReleaseAddress((Family, u128), u128, Option<ReleaseUndo>),
    Alias(String, Option<PoolId>),
}
