//! One held pool: its subnet, optional range, leases, and the rules that
//! pick an address in it (F3, F5).
//!
//! `used` holds every address a dynamic request must not get: leases, the
//! reserved addresses of the subnet, and the "cooling" addresses released
//! recently. Cooling addresses are handed out again only when nothing else
//! is free (oldest first), so a container that just left does not lend its
//! address — and its stale ARP entries — to the next one.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::leases::Leases;
use super::net::{reserves_first, reserves_last};
use super::{AddrSet, Error, Family, Mac, PoolId, first_usable, net_bounds, to_addr, to_u128};

/// How many released addresses a pool remembers as cooling.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddUndo {
    cursor: Option<u128>,
    /// The address was not in `used` before (it was free, not cooling).
    inserted: bool,
    /// Where in the cooling list the address stood.
    cooling_at: Option<usize>,
}

/// What it takes to take back one [`Pool::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseUndo {
    lease: Lease,
    /// The oldest cooling address the release pushed out.
    evicted: Option<u128>,
}

/// A held pool.
#[derive(Debug, Clone)]
pub struct Pool {
    pub id: PoolId,
    /// Chosen by gipam from a main pool.
    pub auto: bool,
    /// Rotate through the pool (`serial=true`).
    pub serial: bool,
    leases: Leases,
    used: AddrSet,
    cooling: VecDeque<u128>,
    cursor: Option<u128>,
}

impl Pool {
    /// A new, empty pool.
    pub fn new(id: PoolId, auto: bool, serial: bool) -> Pool {
        let mut used = AddrSet::new();
        let (lo, hi) = net_bounds(&id.subnet);
        if reserves_first(&id.subnet) {
            used.insert(lo);
        }
        if reserves_last(&id.subnet) {
            used.insert(hi);
        }
        Pool {
            id,
            auto,
            serial,
            leases: Leases::new(),
            used,
            cooling: VecDeque::new(),
            cursor: None,
        }
    }

    fn family(&self) -> Family {
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

    /// Chooses the address for a request, without changing anything.
    /// `want` is a preferred address (`--ip`, `--gateway`, aux, replay).
    /// `serial` asks for rotation even if the pool was not created so.
    pub fn choose(&self, want: Option<IpAddr>, gateway: bool, serial: bool) -> Result<u128, Error> {
        if let Some(addr) = want {
            let x = self.check_inside(addr)?;
            let (lo, hi) = net_bounds(&self.id.subnet);
            let reserved = if x == lo && reserves_first(&self.id.subnet) {
                Some(match self.family() {
                    Family::V4 => "network address",
                    Family::V6 => "subnet-router anycast address (RFC 4291)",
                })
            } else if x == hi && reserves_last(&self.id.subnet) {
                Some("broadcast address")
            } else {
                None
            };
            if let Some(why) = reserved {
                return Err(Error::AddressReserved {
                    addr,
                    pool: self.id.clone(),
                    why,
                });
            }
            if self.leases.contains(x) {
                return Err(Error::AddressInUse {
                    addr,
                    pool: self.id.clone(),
                });
            }
            return Ok(x);
        }
        let (lo, hi) = if gateway {
            (first_usable(&self.id.subnet), net_bounds(&self.id.subnet).1)
        } else {
            self.dynamic_bounds()
        };
        let start = match ((self.serial || serial) && !gateway, self.cursor) {
            (true, Some(c)) if c >= lo && c < hi => c + 1,
            _ => lo,
        };
        self.used
            .first_free(start, hi)
            .or_else(|| self.used.first_free(lo, start.saturating_sub(1)))
            .or_else(|| self.cooling.iter().copied().find(|a| *a >= lo && *a <= hi))
            .ok_or_else(|| Error::PoolFull(self.id.clone()))
    }

    /// Where dynamic addresses come from: the range (without its first
    /// address, which Docker users expect to stay free; docker/for-linux#170)
    /// or the whole subnet.
    fn dynamic_bounds(&self) -> (u128, u128) {
        match &self.id.range {
            Some(r) => {
                let (lo, hi) = net_bounds(r);
                let lo = if hi - lo >= 2 { lo + 1 } else { lo };
                (lo.max(first_usable(&self.id.subnet)), hi)
            }
            None => (first_usable(&self.id.subnet), net_bounds(&self.id.subnet).1),
        }
    }

    /// Records a lease chosen by [`Pool::choose`]; returns what it takes
    /// to take it back ([`Pool::unadd`]).
    pub fn add(&mut self, x: u128, lease: Lease, dynamic: bool) -> Result<AddUndo, Error> {
        if self.leases.contains(x) {
            return Err(Error::Inconsistent(format!(
                "address {} leased twice in pool {}",
                to_addr(self.family(), x),
                self.id
            )));
        }
        let undo = AddUndo {
            cursor: self.cursor,
            inserted: self.used.insert(x),
            cooling_at: None,
        };
        let undo = match self.cooling.iter().position(|a| *a == x) {
            Some(i) if !undo.inserted => {
                self.cooling.remove(i);
                AddUndo {
                    cooling_at: Some(i),
                    ..undo
                }
            }
            _ => undo,
        };
        self.leases.insert(x, lease);
        if dynamic {
            self.cursor = Some(x);
        }
        Ok(undo)
    }

    /// Takes back the [`Pool::add`] of `x` that returned `undo` (the last
    /// change to this pool), leaving the pool exactly as it was before.
    pub fn unadd(&mut self, x: u128, undo: AddUndo) {
        self.leases.remove(x);
        match undo.cooling_at {
            Some(i) => self.cooling.insert(i.min(self.cooling.len()), x),
            None if undo.inserted => {
                self.used.remove(x);
            }
            None => {}
        }
        self.cursor = undo.cursor;
    }

    /// Releases a lease; `None` when the address was not leased, else what
    /// it takes to take the release back ([`Pool::unrelease`]).
    pub fn release(&mut self, x: u128) -> Option<ReleaseUndo> {
        let lease = self.leases.remove(x)?;
        self.cooling.push_back(x);
        let mut evicted = None;
        if self.cooling.len() > COOLING_MAX
            && let Some(old) = self.cooling.pop_front()
        {
            self.used.remove(old);
            evicted = Some(old);
        }
        Some(ReleaseUndo { lease, evicted })
    }

    /// Takes back the [`Pool::release`] of `x` that returned `undo` (the
    /// last change to this pool).
    pub fn unrelease(&mut self, x: u128, undo: ReleaseUndo) {
        if self.cooling.back() == Some(&x) {
            self.cooling.pop_back();
        }
        if let Some(old) = undo.evicted {
            self.used.insert(old);
            self.cooling.push_front(old);
        }
        self.used.insert(x);
        self.leases.insert(x, undo.lease);
    }

    /// Restores the cooling list and cursor from a snapshot.
    pub fn restore(&mut self, cooling: &[IpAddr], cursor: Option<IpAddr>) -> Result<(), Error> {
        for a in cooling {
            let x = self.check_inside(*a)?;
            // Skip duplicates, leased and reserved addresses: all are
            // already in `used`, and cooling must only hold free ones.
            if self.cooling.len() < COOLING_MAX && self.used.insert(x) {
                self.cooling.push_back(x);
            }
        }
        if let Some(c) = cursor {
            self.cursor = Some(self.check_inside(c)?);
        }
        Ok(())
    }
}
