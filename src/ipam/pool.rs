//! One held pool: its subnet, optional range, leases, and the rules that
//! pick an address in it (F3, F5).
//!
//! The default choice is Docker's own (moby `ipams/defaultipam`): the lowest
//! free address, so a container restarted on its own gets its address back
//! and a daemon restart hands the same set of addresses back. `serial`
//! rotates from the last dynamic choice instead; `reuse=delayed` keeps
//! released addresses "cooling" and hands them out again only when nothing
//! else is free, oldest first, so a container that just left does not lend
//! its address (and its stale ARP/ND entries) to the next one.
//!
//! `used` holds every address a dynamic request must not get: leases, the
//! reserved addresses of the subnet, with `reuse=delayed` the cooling ones,
//! and the addresses held back for a container that left (F6, `sticky.rs`:
//! the remembering and its share of adding and releasing live there).
//!
//! The pool's gateway may be reserved when the pool is added (the one gipam
//! names in RequestPool's `Data`, see `Ipam::plan_pool`): it is leased at
//! once, so no container gets it, and it stays "provisional" until the
//! daemon asks for a gateway. A gateway request for that address claims it;
//! a gateway request for another address (`--gateway`) replaces it.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::leases::Leases;
use super::net::{reserves_first, reserves_last};
use super::sticky::{Memory, Sticky};
use super::sticky_pool::{Forgot, Recorded};
use super::{AddrSet, Error, Family, Mac, PoolId, Reuse, net_bounds, to_addr, to_u128};

/// How many released addresses a `reuse=delayed` pool remembers as cooling.
pub const COOLING_MAX: usize = 1024;

/// What is known about one leased address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lease {
    /// Requested as the network gateway.
    pub gateway: bool,
    /// The endpoint's MAC address, when Docker sent one.
    pub mac: Option<Mac>,
    /// The endpoint's name, when Docker sent one (Engine 29).
    pub name: Option<Box<str>>,
}

/// What it takes to take back one [`Pool::add`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddUndo {
    cursor: Option<u128>,
    data_gateway: Option<u128>,
    /// The add only claimed the reserved gateway.
    claimed: bool,
    /// The reserved gateway the add replaced, with its lease.
    replaced: Option<(u128, Lease)>,
    /// The address was not in `used` before (it was free, not cooling).
    inserted: bool,
    /// Where in the cooling list the address stood.
    cooling_at: Option<usize>,
    /// What the lease made the pool forget (F6).
    forgot: Forgot,
}

/// What it takes to take back one [`Pool::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseUndo {
    lease: Lease,
    /// The oldest cooling address the release pushed out.
    evicted: Option<u128>,
    data_gateway: Option<u128>,
    /// What the release made the pool remember (F6).
    recorded: Option<Recorded>,
}

/// A held pool.
#[derive(Debug, Clone)]
pub struct Pool {
    pub id: PoolId,
    /// Chosen by gipam from a main pool.
    pub auto: bool,
    /// Rotate through the pool (`serial=true`).
    pub serial: bool,
    /// When released addresses come back (`reuse=`).
    pub reuse: Reuse,
    /// The tree pool it was drawn from (F7), if any.
    pub tree_pool: Option<Box<str>>,
    /// The owner given with `--ipam-opt id=`, if any.
    pub owner: Option<Box<str>>,
    /// The fleet-wide network this pool belongs to (`shared=`, F9).
    pub shared: Option<Box<str>>,
    pub(super) leases: Leases,
    pub(super) used: AddrSet,
    /// F6: the addresses remembered for containers that left.
    pub(super) memory: Memory,
    pub(super) cooling: VecDeque<u128>,
    pub(super) cursor: Option<u128>,
    /// The gateway reserved with the pool, until a gateway request claims
    /// or replaces it.
    pub(super) data_gateway: Option<u128>,
}

impl Pool {
    /// A new pool holding nothing but its reserved addresses.
    pub fn new(id: PoolId, auto: bool, serial: bool, reuse: Reuse, sticky: Sticky) -> Pool {
        let mut used = AddrSet::new();
        let (lo, hi) = net_bounds(&id.subnet);
        if reserves_first(&id.subnet) {
            used.insert(lo);
        }
        if reserves_last(&id.subnet) {
            used.insert(hi);
        }
        let mut pool = Pool {
            id,
            auto,
            serial,
            reuse,
            tree_pool: None,
            owner: None,
            shared: None,
            leases: Leases::new(),
            used,
            memory: Memory::new(sticky, 0, 0),
            cooling: VecDeque::new(),
            cursor: None,
            data_gateway: None,
        };
        let (dyn_lo, dyn_hi) = pool.dynamic_bounds();
        pool.memory = Memory::new(sticky, dyn_lo, dyn_hi);
        pool
    }

    /// Which remembered addresses the pool holds back (`sticky=`).
    pub fn sticky(&self) -> Sticky {
        self.memory.mode()
    }

    pub(super) fn family(&self) -> Family {
        Family::of_net(&self.id.subnet)
    }

    /// The leases, lowest address first.
    pub fn leases(&self) -> impl Iterator<Item = (IpAddr, &Lease)> + '_ {
        let f = self.family();
        self.leases.iter().map(move |(a, l)| (to_addr(f, a), l))
    }

    /// The leases as a cheap-to-copy map (for snapshots).
    pub fn lease_map(&self) -> &Leases {
        &self.leases
    }

    /// Number of leased addresses.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// Cooling addresses, oldest first.
    pub fn cooling(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let f = self.family();
        self.cooling.iter().map(move |a| to_addr(f, *a))
    }

    /// The gateway reserved when the pool was added, while no gateway
    /// request has claimed or replaced it.
    pub fn data_gateway(&self) -> Option<IpAddr> {
        self.data_gateway.map(|g| to_addr(self.family(), g))
    }

    /// The serial cursor: the last dynamically chosen address.
    pub fn cursor(&self) -> Option<IpAddr> {
        self.cursor.map(|c| to_addr(self.family(), c))
    }

    /// Whether `addr` is leased.
    pub fn is_leased(&self, addr: IpAddr) -> bool {
        self.leases.contains(to_u128(addr))
    }

    /// Checks that `addr` belongs to this pool's subnet and family.
    pub fn check_inside(&self, addr: IpAddr) -> Result<u128, Error> {
        if Family::of(addr) != self.family() || !self.id.subnet.contains(&addr) {
            return Err(Error::AddressOutside {
                addr,
                pool: self.id.clone(),
            });
        }
        Ok(to_u128(addr))
    }

    /// Records a lease chosen by [`Pool::choose`]; returns what it takes to
    /// take it back ([`Pool::unadd`]). A gateway lease claims or replaces
    /// the gateway reserved with the pool.
    pub fn add(&mut self, x: u128, lease: Lease, dynamic: bool) -> Result<AddUndo, Error> {
        let mut undo = AddUndo {
            cursor: self.cursor,
            data_gateway: self.data_gateway,
            ..AddUndo::default()
        };
        if lease.gateway
            && let Some(g) = self.data_gateway
        {
            if g == x {
                self.data_gateway = None;
                undo.claimed = true;
                return Ok(undo);
            }
            if !self.leases.contains(x) {
                // Replaced by the user's --gateway: free at once, never
                // cooling (no container ever had it).
                self.data_gateway = None;
                undo.replaced = self.leases.remove(g).map(|l| (g, l));
                self.used.remove(g);
            }
        }
        if self.leases.contains(x) {
            return Err(Error::Inconsistent(format!(
                "address {} leased twice in pool {}",
                to_addr(self.family(), x),
                self.id
            )));
        }
        undo.forgot = self.forget_for_lease(x, &lease);
        undo.inserted = self.used.insert(x);
        if !undo.inserted
            && let Some(i) = self.cooling.iter().position(|a| *a == x)
        {
            self.cooling.remove(i);
            undo.cooling_at = Some(i);
        }
        self.leases.insert(x, lease);
        if dynamic {
            self.cursor = Some(x);
        }
        Ok(undo)
    }

    /// Takes back the [`Pool::add`] of `x` that returned `undo` (the last
    /// change to this pool), leaving the pool exactly as it was before.
    pub fn unadd(&mut self, x: u128, undo: AddUndo) {
        self.data_gateway = undo.data_gateway;
        if undo.claimed {
            return;
        }
        self.leases.remove(x);
        match undo.cooling_at {
            Some(i) => self.cooling.insert(i.min(self.cooling.len()), x),
            None if undo.inserted => {
                self.used.remove(x);
            }
            None => {}
        }
        if let Some((g, lease)) = undo.replaced {
            self.used.insert(g);
            self.leases.insert(g, lease);
        }
        self.cursor = undo.cursor;
        self.unforget(x, undo.forgot);
    }

    /// Reserves `x` as the pool's gateway (named in RequestPool's `Data`).
    pub fn reserve_gateway(&mut self, x: u128) -> Result<(), Error> {
        let lease = Lease {
            gateway: true,
            ..Lease::default()
        };
        self.add(x, lease, false)?;
        self.data_gateway = Some(x);
        Ok(())
    }

    /// Releases a lease; `None` when the address was not leased, else what
    /// it takes to take the release back ([`Pool::unrelease`]).
    pub fn release(&mut self, x: u128) -> Option<ReleaseUndo> {
        let lease = self.leases.remove(x)?;
        let (held, recorded) = self.remember_release(x, &lease);
        let mut undo = ReleaseUndo {
            lease,
            evicted: None,
            data_gateway: self.data_gateway,
            recorded,
        };
        if self.data_gateway == Some(x) {
            self.data_gateway = None;
        }
        match self.reuse {
            // A held-back address stays in `used` (F6).
            Reuse::Immediate if held => {}
            Reuse::Immediate => {
                self.used.remove(x);
            }
            Reuse::Delayed => {
                self.cooling.push_back(x);
                if self.cooling.len() > COOLING_MAX
                    && let Some(old) = self.cooling.pop_front()
                {
                    if !self.memory.is_held(old) {
                        self.used.remove(old);
                    }
                    undo.evicted = Some(old);
                }
            }
        }
        Some(undo)
    }

    /// Takes back the [`Pool::release`] of `x` that returned `undo` (the
    /// last change to this pool).
    pub fn unrelease(&mut self, x: u128, undo: ReleaseUndo) {
        if self.reuse == Reuse::Delayed && self.cooling.back() == Some(&x) {
            self.cooling.pop_back();
        }
        if let Some(old) = undo.evicted {
            self.used.insert(old);
            self.cooling.push_front(old);
        }
        self.used.insert(x);
        self.leases.insert(x, undo.lease);
        self.data_gateway = undo.data_gateway;
        self.unremember(x, undo.recorded);
    }

    /// Restores the cooling list, cursor and reserved gateway from a
    /// snapshot. A pool that does not delay reuse drops its cooling list
    /// (a state written before `reuse=` existed).
    pub fn restore(
        &mut self,
        cooling: &[IpAddr],
        cursor: Option<IpAddr>,
        data_gateway: Option<IpAddr>,
    ) -> Result<(), Error> {
        for a in cooling {
            let x = self.check_inside(*a)?;
            // Skip duplicates, leased and reserved addresses: all are
            // already in `used`, and cooling must only hold free ones.
            if self.reuse == Reuse::Delayed
                && self.cooling.len() < COOLING_MAX
                && self.used.insert(x)
            {
                self.cooling.push_back(x);
            }
        }
        if let Some(c) = cursor {
            self.cursor = Some(self.check_inside(c)?);
        }
        if let Some(g) = data_gateway {
            let x = self.check_inside(g)?;
            if !self.leases.get(x).is_some_and(|l| l.gateway) {
                return Err(Error::Inconsistent(format!(
                    "pool {} names {g} as its gateway but holds no gateway lease for it",
                    self.id
                )));
            }
            self.data_gateway = Some(x);
        }
        Ok(())
    }
}
