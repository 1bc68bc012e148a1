//! The allocator: turns pool and address requests into [`Change`]s against
//! a [`State`], following the built-in IPAM where Docker users expect it
//! (moby `ipams/defaultipam/`) and product.md where gipam does more.
//!
//! # The gateway in RequestPool's `Data`
//!
//! Every pool of more than one address gets a gateway when it is added: the
//! first usable address of the subnet, leased at once (durably, with the
//! pool) and named in the reply as `com.docker.network.gateway` with the
//! pool's prefix length. /32 and /128 pools get none: a gateway would take
//! their only address, and a gateway request still finds it when one comes.
//! Why every pool, from what the daemons do with it (moby
//! `libnetwork/network.go` `ipamAllocateVersion`, 20.10, 28.5 and 29):
//!
//! - Without `--gateway`, every engine takes `Data`'s gateway as the
//!   network's and sends no gateway RequestAddress. That address is the one
//!   a bridge network got before (its gateway request found the first usable
//!   address), so bridges on 20.10 and 28.5 keep their gateway; macvlan and
//!   ipvlan networks on Engine 29, which asks for no gateway at all any more
//!   (their `GetSkipGwAlloc` says skip), get one again, and no container is
//!   handed the router's `.1`.
//! - With `--gateway G`, every engine ignores `Data` and requests G as the
//!   gateway. RequestPool cannot know G, so that request *replaces* the
//!   reserved gateway: the reserved address is freed (no container ever had
//!   it) and G is leased instead; G equal to the reserved one just claims it.
//! - Releases: the daemon releases the gateway it took from `Data` like any
//!   other at network removal, and ReleasePool frees everything.
//!
//! # The pool tree
//!
//! A request with `tags=`/`scope_filter_tags=` or `pool=` draws its block
//! from the tree (`tree_plan.rs`): the first pool in tree order that
//! carries every tag and has a free block of its size, skipping its
//! excluded ranges and its children (which are pools of their own). Other
//! requests draw from the main pools as before, skipping the tree's
//! top-level pools, which the operator set apart. Reserved addresses are
//! skipped by every choice gipam makes, and `--ip` for one is refused
//! unless the requester is the one it is reserved for.
//!
//! # Host routes
//!
//! The blocks gipam chooses (automatic and size-only requests) skip those
//! that collide with the host's routes given in [`PoolRequest::host_routes`]
//! (the rule is in `hostroute.rs`). For size-only requests no one else
//! checks; for automatic ones the daemon would find the collision itself
//! and ask again while holding the bad block, so skipping it here only
//! saves that loop. Explicit subnets are the user's choice and never
//! checked.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::stranded::{Stranded, Strands};
use super::{
    Change, Error, Family, Foreign, HostRoute, Mac, PoolId, PoolOptions, State, Undo, first_usable,
    net_bounds, parse_net, to_addr,
};

/// The operator's settings the allocator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Main IPv4 pools, in the order blocks are taken from them.
    pub v4: Vec<IpNet>,
    /// Main IPv6 pools; empty means the generated ULA /48 of the state.
    pub v6: Vec<IpNet>,
    /// Default IPv4 block size.
    pub v4ab: u8,
    /// Default IPv6 block size.
    pub v6ab: u8,
}

/// What subnet a RequestPool asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolSpec {
    /// Any free block of the default (or `--ipam-opt`) size.
    Auto,
    /// Any free block of this prefix length (`0.0.0.0/26`, `::/80`).
    Size(u8),
    /// Exactly this subnet (`--subnet`).
    Subnet(IpNet),
}

/// A parsed RequestPool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRequest {
    pub space: &'static str,
    pub spec: PoolSpec,
    pub range: Option<IpNet>,
    pub family: Family,
    pub options: PoolOptions,
    /// The host's routes, which a block gipam chooses must not collide
    /// with. Empty from `parse`; the caller reads them.
    pub host_routes: Vec<HostRoute>,
}

impl PoolRequest {
    /// Parses the fields of a RequestPool as dockerd sends them.
    pub fn parse(
        space: &str,
        pool: &str,
        sub_pool: &str,
        v6: bool,
        options: &HashMap<String, String>,
    ) -> Result<PoolRequest, Error> {
        let space = PoolId::space(space)?;
        let family = if v6 { Family::V6 } else { Family::V4 };
        let options = PoolOptions::parse(options)?;
        let range = cidr("ip range", sub_pool)?;
        let pool = cidr("pool", pool)?;
        for (what, net) in [("pool", pool), ("ip range", range)] {
            if let Some(n) = net.filter(|n| Family::of_net(n) != family) {
                return Err(Error::WrongFamily {
                    what: format!("{what} {n} (request for the {family} pass)"),
                    want: family,
                });
            }
        }
        let spec = match pool {
            None => PoolSpec::Auto,
            Some(net) if net.addr().is_unspecified() => {
                if net.prefix_len() == 0 {
                    return Err(Error::SizeZero(net));
                }
                if range.is_some() {
                    return Err(Error::SizeOnlyWithRange(net));
                }
                PoolSpec::Size(net.prefix_len())
            }
            Some(net) => PoolSpec::Subnet(net),
        };
        match (&spec, range) {
            (PoolSpec::Auto, Some(r)) => return Err(Error::SubPoolWithoutPool(r.to_string())),
            (PoolSpec::Subnet(s), Some(r)) if !s.contains(&r) => {
                return Err(Error::SubPoolOutside {
                    range: r,
                    subnet: *s,
                });
            }
            _ => {}
        }
        Ok(PoolRequest {
            space,
            spec,
            range,
            family,
            options,
            host_routes: Vec::new(),
        })
    }

    /// Whether gipam chooses the block (so host routes matter).
    pub fn chooses_block(&self) -> bool {
        !matches!(self.spec, PoolSpec::Subnet(_))
    }
}

/// Parses an optional CIDR that must be a canonical network address
/// (strictly: see [`parse_net`]).
fn cidr(what: &'static str, text: &str) -> Result<Option<IpNet>, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let net = parse_net(text).map_err(|why| Error::BadCidr {
        what,
        text: text.to_string(),
        why,
    })?;
    if net.trunc() != net {
        return Err(Error::HostBits { what, given: net });
    }
    Ok(Some(net))
}

/// A parsed RequestAddress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRequest {
    pub pool: PoolId,
    /// The preferred address, if any.
    pub address: Option<IpAddr>,
    /// Asked for as the network gateway.
    pub gateway: bool,
    /// Rotate for this request (`com.docker.network.ipam.serial`).
    pub serial: bool,
    pub mac: Option<Mac>,
    pub name: Option<String>,
}

/// The allocator: settings plus the state they act on.
#[derive(Debug)]
pub struct Ipam {
    settings: Settings,
    state: State,
    /// What the rest of the fleet holds (F9; empty in local mode).
    foreign: Foreign,
}

impl Ipam {
    /// An allocator over `state`. Refuses settings that leave a held
    /// automatic block outside every main pool of its family.
    pub fn new(settings: Settings, state: State) -> Result<Ipam, Strands> {
        let ipam = Ipam {
            settings,
            state,
            foreign: Foreign::default(),
        };
        let mut strands = Vec::new();
        for family in [Family::V4, Family::V6] {
            let mains = ipam.mains(family);
            let held: Vec<PoolId> = ipam
                .state
                .pools()
                // Blocks drawn from the tree belong to the tree, not to V4/V6.
                .filter(|p| p.auto && p.tree_pool.is_none())
                .filter(|p| Family::of_net(&p.id.subnet) == family)
                .filter(|p| !mains.iter().any(|m| m.contains(&p.id.subnet)))
                .map(|p| p.id.clone())
                .collect();
            if held.is_empty() {
                continue;
            }
            let was = ipam.state.mains().map(|(v4, v6)| match family {
                Family::V4 => v4.clone(),
                Family::V6 => v6.clone(),
            });
            let now = match family {
                Family::V4 => ipam.settings.v4.clone(),
                Family::V6 => ipam.settings.v6.clone(),
            };
            strands.push(Stranded {
                family,
                now,
                was,
                ula: ipam.state.ula(),
                held,
            });
        }
        if strands.is_empty() {
            Ok(ipam)
        } else {
            Err(Strands(strands))
        }
    }

    /// The state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// What the rest of the fleet holds, as far as this host knows.
    pub fn foreign(&self) -> &Foreign {
        &self.foreign
    }

    /// Kept current by the fleet module from etcd.
    pub fn foreign_mut(&mut self) -> &mut Foreign {
        &mut self.foreign
    }

    /// The end of whatever holds part of `net`: a pool of this host, or a
    /// block claimed in the fleet.
    pub(super) fn taken_end(&self, net: &IpNet) -> Option<u128> {
        let local = self.state.overlapping(net).map(|(_, end)| end);
        let fleet = self.foreign.overlapping(net).map(|(_, _, end)| end);
        local.max(fleet)
    }

    /// Refuses a subnet that overlaps a held pool or a fleet block.
    fn check_free(&self, net: &IpNet) -> Result<(), Error> {
        if let Some((held, _)) = self.state.overlapping(net) {
            return Err(Error::Overlap {
                requested: *net,
                held: held.clone(),
            });
        }
        if let Some((held, holder, _)) = self.foreign.overlapping(net) {
            return Err(Error::FleetOverlap {
                requested: *net,
                held,
                holder: holder.map(String::from),
            });
        }
        Ok(())
    }

    /// Applies a planned change; returns its undo.
    pub fn apply(&mut self, change: &Change) -> Result<Undo, Error> {
        self.state.apply(change)
    }

    /// Takes back an applied change (its commit failed).
    pub fn undo(&mut self, undo: Undo) {
        self.state.undo(undo)
    }

    /// The main pools of a family.
    pub fn mains(&self, family: Family) -> Vec<IpNet> {
        match family {
            Family::V4 => self.settings.v4.clone(),
            Family::V6 if self.settings.v6.is_empty() => {
                self.state.ula().map(IpNet::V6).into_iter().collect()
            }
            Family::V6 => self.settings.v6.clone(),
        }
    }

    /// Plans a RequestPool.
    pub fn plan_pool(&self, req: &PoolRequest) -> Result<Change, Error> {
        let draw = self.draw(req)?;
        let (subnet, auto, tree_pool) = match (&req.spec, &draw) {
            (PoolSpec::Subnet(net), _) => {
                self.check_free(net)?;
                let from = match &draw {
                    Some(cands) => Some(self.tree_subnet(net, cands)?),
                    None => None,
                };
                (*net, false, from)
            }
            (PoolSpec::Size(prefix), Some(cands)) => {
                let (net, name) = self.tree_block(req, Some(*prefix), cands)?;
                (net, true, Some(name))
            }
            (PoolSpec::Auto, Some(cands)) => {
                let (net, name) = self.tree_block(req, None, cands)?;
                (net, true, Some(name))
            }
            (PoolSpec::Size(prefix), None) => {
                let block = self.find_block(req.family, *prefix, &req.host_routes)?;
                (block, true, None)
            }
            (PoolSpec::Auto, None) => {
                let prefix = req.options.block(req.family).unwrap_or(match req.family {
                    Family::V4 => self.settings.v4ab,
                    Family::V6 => self.settings.v6ab,
                });
                let block = self.find_block(req.family, prefix, &req.host_routes)?;
                (block, true, None)
            }
        };
        // Every pool but a single address gets its gateway now (module
        // doc): the first usable address no container has reserved.
        let data_gateway = (subnet.prefix_len() < subnet.max_prefix_len())
            .then(|| {
                let reserved = self.state.tree().reserved(req.family);
                let hi = net_bounds(&subnet).1 - u128::from(super::net::reserves_last(&subnet));
                reserved.first_free(first_usable(&subnet), hi)
            })
            .flatten()
            .map(|x| to_addr(req.family, x));
        let id = PoolId {
            space: req.space,
            subnet,
            range: req.range,
        };
        let (serial, reuse, sticky) = (req.options.serial, req.options.reuse, req.options.sticky);
        let owner = req.options.owner.clone();
        let shared = req.options.shared.clone();
        if tree_pool.is_none() && owner.is_none() && shared.is_none() {
            return Ok(Change::AddPool {
                id,
                auto,
                serial,
                reuse,
                sticky,
                data_gateway,
            });
        }
        Ok(Change::AddPoolFrom {
            id,
            auto,
            serial,
            reuse,
            sticky,
            data_gateway,
            tree_pool,
            owner,
            shared,
        })
    }

    /// Plans a RequestPool for `shared=NAME` (F9). `existing` is NAME's
    /// subnet and gateway when the fleet already has it: this host then
    /// takes the same subnet (a block the fleet already holds for NAME,
    /// so only this host's own pools are checked). Otherwise the block is
    /// chosen as for any pool.
    pub fn plan_shared_pool(
        &self,
        req: &PoolRequest,
        name: &str,
        existing: Option<(IpNet, Option<IpAddr>)>,
    ) -> Result<Change, Error> {
        let Some((subnet, gateway)) = existing else {
            return self.plan_pool(req);
        };
        if let PoolSpec::Subnet(net) = &req.spec
            && *net != subnet
        {
            return Err(Error::SharedConflict {
                name: name.to_string(),
                requested: *net,
                existing: subnet,
            });
        }
        if Family::of_net(&subnet) != req.family {
            return Err(Error::WrongFamily {
                what: format!("shared network {name:?} ({subnet})"),
                want: req.family,
            });
        }
        if let Some((held, _)) = self.state.overlapping(&subnet) {
            return Err(Error::Overlap {
                requested: subnet,
                held: held.clone(),
            });
        }
        Ok(Change::AddPoolFrom {
            id: PoolId {
                space: req.space,
                subnet,
                range: req.range,
            },
            auto: false,
            serial: req.options.serial,
            reuse: req.options.reuse,
            sticky: req.options.sticky,
            data_gateway: gateway,
            tree_pool: None,
            owner: req.options.owner.clone(),
            shared: Some(name.to_string()),
        })
    }

    /// Plans a ReleasePool; `None` when there is nothing to release.
    pub fn plan_release_pool(&self, id: &PoolId) -> Option<Change> {
        self.state
            .pool(id)
            .map(|_| Change::ReleasePool { id: id.clone() })
    }

    /// Plans a RequestAddress; returns the change and the address chosen.
    pub fn plan_address(&self, req: &AddressRequest) -> Result<(Change, IpAddr), Error> {
        let pool = self
            .state
            .pool(&req.pool)
            .ok_or_else(|| Error::UnknownPool(req.pool.clone()))?;
        let family = Family::of_net(&req.pool.subnet);
        let tree_reserved = self.state.tree().reserved(family);
        // In a shared pool (F9) the addresses other hosts lease are as
        // good as reserved.
        let merged;
        // A gateway request may name a fleet-held address: the network's
        // gateway, claimed once for every holder (the claim decides).
        let fleet = pool
            .shared
            .as_ref()
            .filter(|_| !req.gateway)
            .and_then(|_| self.foreign.taken_addrs(&req.pool.subnet));
        let reserved = match fleet {
            Some(mut m) => {
                for x in tree_reserved.iter() {
                    m.insert(x);
                }
                merged = m;
                &merged
            }
            None => tree_reserved,
        };
        // F7's reservations first; then the address the pool remembers for
        // whoever asks (F6), unless it is reserved for someone else; then
        // the pool's own rule.
        let (x, dynamic) = match req.address {
            Some(want) => {
                self.check_wanted(pool, req, want)?;
                (
                    pool.choose(Some(want), req.gateway, req.serial, reserved)?,
                    false,
                )
            }
            None if req.gateway => (pool.choose(None, true, req.serial, reserved)?, false),
            None => match self.identity_address(pool, req) {
                Some(x) => (x, false),
                None => match pool.recall(req).filter(|x| !reserved.contains(*x)) {
                    Some(x) => (x, true),
                    None => {
                        // A shared pool's hosts start apart (F9).
                        let from = pool
                            .shared
                            .as_ref()
                            .map(|_| u128::from(self.foreign.affinity()));
                        (
                            pool.choose_from(None, false, req.serial, reserved, from)?,
                            true,
                        )
                    }
                },
            },
        };
        let address = to_addr(family, x);
        let change = Change::AddAddress {
            pool: req.pool.clone(),
            address,
            gateway: req.gateway,
            dynamic,
            mac: req.mac,
            name: req.name.clone(),
        };
        Ok((change, address))
    }

    /// Plans a ReleaseAddress; `None` when there is nothing to release
    /// (unknown pool or an address not leased: releases are idempotent).
    pub fn plan_release_address(
        &self,
        id: &PoolId,
        address: IpAddr,
    ) -> Result<Option<Change>, Error> {
        let Some(pool) = self.state.pool(id) else {
            return Ok(None);
        };
        let x = pool.check_inside(address)?;
        Ok(pool
            .is_leased(to_addr(Family::of_net(&id.subnet), x))
            .then(|| Change::ReleaseAddress {
                pool: id.clone(),
                address,
            }))
    }
}
