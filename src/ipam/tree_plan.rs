//! The allocator's side of the pool tree (F7): which tree pools a
//! RequestPool may draw from (`tags=`, `scope_filter_tags=`, `pool=`), who
//! an address is reserved for, whether a new tree may replace the current
//! one given what is live, and the read-only view `gipam pools show` prints.
//!
//! A tree change is refused whole, listing every reason, when it would
//! strand a live network (a held pool drawn from a tree pool that is gone,
//! no longer contains it, or now excludes or nests a child over it), drop a
//! reservation a running container holds, or reserve an address someone
//! else holds. Pools that overlap each other are refused by [`Tree::new`].

use std::net::IpAddr;

use ipnet::IpNet;

use super::{
    AddrSet, AddressRequest, Change, Error, Family, Identity, Ipam, Lease, Mac, Pool, PoolId,
    PoolRequest, Reservation, Tree, TreeSpec, to_u128,
};

/// One tree pool as `gipam pools show` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreePoolView {
    pub name: String,
    pub cidr: IpNet,
    pub block: u8,
    pub parent: Option<String>,
    pub depth: usize,
    /// Its own tags.
    pub tags: Vec<String>,
    /// Tags it carries from its ancestors.
    pub inherited: Vec<String>,
    pub propagate: bool,
    pub lock_down: bool,
    pub exclude: Vec<IpNet>,
    pub reservations: Vec<ReservationView>,
    pub networks: Vec<NetworkView>,
}

/// One reservation in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationView {
    pub address: IpAddr,
    pub name: Option<String>,
    pub mac: Option<Mac>,
    /// Whether its container holds it now.
    pub leased: bool,
}

/// One held network drawn from a tree pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkView {
    pub pool_id: PoolId,
    pub owner: Option<String>,
    pub leases: usize,
}

/// Whether a lease belongs to `identity`.
fn lease_is(lease: &Lease, identity: &Identity) -> bool {
    match identity {
        Identity::Name(n) => lease.name.as_deref() == Some(n.as_str()),
        Identity::Mac(m) => lease.mac == Some(*m),
    }
}

fn holder(lease: &Lease) -> String {
    match (&lease.name, &lease.mac) {
        (Some(n), _) => format!("container {}", super::quote(n)),
        (None, Some(m)) => format!("the container with MAC {m}"),
        (None, None) if lease.gateway => "the network's gateway".to_string(),
        (None, None) => "a container".to_string(),
    }
}

impl Ipam {
    /// The tree pools a RequestPool draws from, in tree order; `None` when
    /// it names neither tags nor a pool (the main pools serve it).
    pub(super) fn draw(&self, req: &PoolRequest) -> Result<Option<Vec<usize>>, Error> {
        let o = &req.options;
        if o.pool.is_none() && o.tags.is_empty() {
            return Ok(None);
        }
        let tree = self.state().tree();
        if tree.is_empty() {
            let option = match &o.pool {
                Some(p) => format!("pool={p}"),
                None => format!("tags={}", o.tags.join(",")),
            };
            return Err(Error::NoTree { option });
        }
        let known = tree.all_tags();
        if let Some(t) = o.tags.iter().find(|t| !known.contains(t)) {
            return Err(Error::UnknownTag {
                tag: t.clone(),
                known,
            });
        }
        let family = req.family;
        let carries = |p: &super::TreePool| o.tags.iter().all(|t| p.tags.contains(t));
        let cands = match &o.pool {
            Some(name) => {
                let Some((i, p)) = tree.by_name(name) else {
                    return Err(Error::UnknownTreePool {
                        name: name.clone(),
                        known: tree.names(),
                    });
                };
                let pf = Family::of_net(&p.cidr);
                if pf != family {
                    return Err(Error::NoTreePool(format!(
                        "pool {name} ({}) is {pf}, but this is the {family} pass of the network; a dual-stack network draws from pools of both families: choose them with tags both carry",
                        p.cidr
                    )));
                }
                if p.lock_down {
                    return Err(Error::NoTreePool(format!(
                        "pool {name} is locked down: networks get blocks only from its children; name one of them: {}",
                        self.children_of(tree, i).join(", ")
                    )));
                }
                if !carries(p) {
                    return Err(Error::NoTreePool(format!(
                        "pool {name} does not carry all the tags {}; it carries {}",
                        o.tags.join(","),
                        p.tags.iter().cloned().collect::<Vec<_>>().join(",")
                    )));
                }
                vec![i]
            }
            None => tree
                .pools()
                .iter()
                .enumerate()
                .filter(|(_, p)| Family::of_net(&p.cidr) == family && !p.lock_down && carries(p))
                .map(|(i, _)| i)
                .collect(),
        };
        if cands.is_empty() {
            return Err(Error::NoTreePool(format!(
                "no {family} pool of the tree that hands out blocks carries all the tags {}; add the tags to a pool of the tree or ask for others",
                o.tags.join(",")
            )));
        }
        Ok(Some(cands))
    }

    fn children_of(&self, tree: &Tree, i: usize) -> Vec<String> {
        tree.pools()
            .iter()
            .filter(|p| p.parent == Some(i))
            .map(|p| p.name.clone())
            .collect()
    }

    /// A free block for a request that draws from the tree pools `cands`:
    /// the first of them, in tree order, with one. Returns the block and
    /// the tree pool's name.
    pub(super) fn tree_block(
        &self,
        req: &PoolRequest,
        size: Option<u8>,
        cands: &[usize],
    ) -> Result<(IpNet, String), Error> {
        let tree = self.state().tree();
        let mut tried = Vec::new();
        for &i in cands {
            let p = &tree.pools()[i];
            let prefix = size.or(req.options.block(req.family)).unwrap_or(p.block);
            tried.push(format!("{} ({}, /{prefix})", p.name, p.cidr));
            if prefix < p.cidr.prefix_len() {
                continue;
            }
            let avoid: Vec<IpNet> = p.exclude.iter().chain(&p.children).copied().collect();
            if let Some(net) =
                self.find_block_in(req.family, &[p.cidr], prefix, &req.host_routes, &avoid)
            {
                return Ok((net, p.name.clone()));
            }
        }
        Err(Error::NoTreePool(format!(
            "no free block left in the tree pools {}; remove unused networks or add room to the tree",
            tried.join(", ")
        )))
    }

    /// The tree pool an explicit `--subnet` with `tags=`/`pool=` lies in.
    pub(super) fn tree_subnet(&self, net: &IpNet, cands: &[usize]) -> Result<String, Error> {
        let tree = self.state().tree();
        for &i in cands {
            let p = &tree.pools()[i];
            let clear = |x: &IpNet| !(x.contains(net) || net.contains(x));
            if p.cidr.contains(net) && p.exclude.iter().all(clear) {
                return Ok(p.name.clone());
            }
        }
        let names: Vec<String> = cands
            .iter()
            .map(|i| format!("{} ({})", tree.pools()[*i].name, tree.pools()[*i].cidr))
            .collect();
        Err(Error::NoTreePool(format!(
            "subnet {net} is not inside the tree pools asked for ({}) or lies in an excluded range; give a subnet inside one or leave --subnet out",
            names.join(", ")
        )))
    }

    /// Whether the request comes from the identity a reservation is for.
    fn asks_as(req: &AddressRequest, r: &Reservation) -> bool {
        match &r.identity {
            Identity::Name(n) => req.name.as_deref() == Some(n.as_str()),
            Identity::Mac(m) => req.mac == Some(*m),
        }
    }

    /// Refuses `--ip`/`--gateway` for an address reserved for someone else.
    pub(super) fn check_wanted(
        &self,
        pool: &Pool,
        req: &AddressRequest,
        want: IpAddr,
    ) -> Result<(), Error> {
        let tree = self.state().tree();
        let Some(r) = tree.reservation_at(want) else {
            return Ok(());
        };
        let claim = req.gateway && pool.data_gateway() == Some(want);
        if Self::asks_as(req, r) || claim {
            return Ok(());
        }
        Err(Error::AddressReservedFor {
            addr: want,
            pool: Box::new(pool.id.clone()),
            holder: r.identity.to_string(),
            tree_pool: tree.pools()[r.pool].name.clone(),
        })
    }

    /// The address this requester is known to have in `pool`, if it is
    /// free: its reservation first. F6's remembered identities go after it
    /// (a reservation always wins over a memory).
    pub(super) fn identity_address(&self, pool: &Pool, req: &AddressRequest) -> Option<u128> {
        let tree = self.state().tree();
        let family = Family::of_net(&pool.id.subnet);
        let ids = [
            req.name.clone().map(Identity::Name),
            req.mac.map(Identity::Mac),
        ];
        for id in ids.into_iter().flatten() {
            if let Some(a) = tree.reserved_for(&id, family)
                && pool.id.subnet.contains(&a)
                && let Ok(x) = pool.choose(Some(a), false, false, &AddrSet::new())
            {
                return Some(x);
            }
        }
        None
    }

    /// The lease of `addr` in whichever held pool contains it.
    fn lease_at(&self, addr: IpAddr) -> Option<(&PoolId, &Lease)> {
        let (id, _) = self.state().overlapping(&IpNet::from(addr))?;
        let pool = self.state().pool(id)?;
        pool.lease_map().get(to_u128(addr)).map(|l| (id, l))
    }

    /// Plans replacing the tree whole; `None` when it is the same tree.
    pub fn plan_tree(&self, spec: &TreeSpec) -> Result<Option<Change>, Error> {
        let new = Tree::new(spec.clone())?;
        let old = self.state().tree();
        if old.spec() == new.spec() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        for p in self.state().pools() {
            let Some(name) = p.tree_pool.as_deref() else {
                continue;
            };
            let net = p.id.subnet;
            let over = |x: &&IpNet| x.contains(&net) || net.contains(*x);
            match new.by_name(name) {
                None => problems.push(format!(
                    "network pool {} was drawn from tree pool {name}, which the new tree lacks; keep {name} or remove that network first",
                    p.id
                )),
                Some((_, t)) if !t.cidr.contains(&net) => problems.push(format!(
                    "network pool {} (from tree pool {name}) would lie outside {name}'s new cidr {}; keep it inside or remove that network first",
                    p.id, t.cidr
                )),
                Some((_, t)) => {
                    if let Some(x) = t.exclude.iter().find(over) {
                        problems.push(format!(
                            "network pool {} (from tree pool {name}) overlaps the new excluded range {x}; remove that network first",
                            p.id
                        ));
                    } else if let Some(c) = t.children.iter().find(over) {
                        problems.push(format!(
                            "network pool {} (from tree pool {name}) overlaps the new child pool {c}; remove that network first",
                            p.id
                        ));
                    }
                }
            }
        }
        for r in old.reservations() {
            let kept = new
                .reservation_at(r.address)
                .is_some_and(|n| n.identity == r.identity);
            if kept {
                continue;
            }
            if let Some((id, lease)) = self.lease_at(r.address)
                && lease_is(lease, &r.identity)
            {
                problems.push(format!(
                    "reservation {} for {} (tree pool {}) is in use in network pool {id}; keep it in the tree or stop that container first",
                    r.address,
                    r.identity,
                    old.pools()[r.pool].name
                ));
            }
        }
        for r in new.reservations() {
            if let Some((id, lease)) = self.lease_at(r.address)
                && !lease_is(lease, &r.identity)
            {
                problems.push(format!(
                    "address {} reserved for {} in tree pool {} is leased to {} in network pool {id}; reserve another address or stop that container first",
                    r.address,
                    r.identity,
                    new.pools()[r.pool].name,
                    holder(lease)
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::TreeRefused(problems));
        }
        Ok(Some(Change::SetTree { tree: spec.clone() }))
    }

    /// The tree as `gipam pools show` prints it.
    pub fn tree_view(&self) -> Vec<TreePoolView> {
        let tree = self.state().tree();
        let mut out: Vec<TreePoolView> = tree
            .pools()
            .iter()
            .map(|p| TreePoolView {
                name: p.name.clone(),
                cidr: p.cidr,
                block: p.block,
                parent: p.parent.map(|i| tree.pools()[i].name.clone()),
                depth: p.depth,
                tags: p.own_tags.clone(),
                inherited: p
                    .tags
                    .iter()
                    .filter(|t| !p.own_tags.contains(t))
                    .cloned()
                    .collect(),
                propagate: p.propagate,
                lock_down: p.lock_down,
                exclude: p.exclude.clone(),
                reservations: Vec::new(),
                networks: Vec::new(),
            })
            .collect();
        for r in tree.reservations() {
            let leased = self
                .lease_at(r.address)
                .is_some_and(|(_, l)| lease_is(l, &r.identity));
            let (name, mac) = match &r.identity {
                Identity::Name(n) => (Some(n.clone()), None),
                Identity::Mac(m) => (None, Some(*m)),
            };
            out[r.pool].reservations.push(ReservationView {
                address: r.address,
                name,
                mac,
                leased,
            });
        }
        for p in self.state().pools() {
            if let Some((i, _)) = p.tree_pool.as_deref().and_then(|n| tree.by_name(n)) {
                out[i].networks.push(NetworkView {
                    pool_id: p.id.clone(),
                    owner: p.owner.as_deref().map(String::from),
                    leases: p.lease_count(),
                });
            }
        }
        out
    }
}
