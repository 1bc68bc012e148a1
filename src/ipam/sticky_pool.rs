//! F6, the pool's side: what leasing and releasing an address do to what
//! the pool remembers (`sticky.rs`), and keeping `used` in step with it.
//! A held-back address stays in `used` (so the free-address search skips
//! it in one lookup, however many are held) until it is forgotten or
//! reclaimed; each step returns what it takes to take it back exactly.

use std::net::IpAddr;

use super::net::{reserves_first, reserves_last};
use super::sticky::{Ident, Memory, Remembered, Sticky};
use super::{AddressRequest, Error, Lease, Pool, net_bounds, to_addr};

/// What leasing an address made its pool forget ([`Pool::unforget`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forgot {
    /// The record of the leased address itself.
    at: Option<Remembered>,
    /// The lessee's record of another address.
    older: Option<(u128, Remembered)>,
}

/// What releasing an address made its pool remember ([`Pool::unremember`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    clock: u64,
    /// The releaser's record of another address, which the new one replaced.
    older: Option<(u128, Remembered)>,
}

/// The identity a lease is remembered by: none for gateways (the daemon
/// sends no MAC or name for them, and no container follows them).
fn ident_of(lease: &Lease) -> Option<Ident> {
    if lease.gateway {
        return None;
    }
    Ident::of(lease.name.as_deref(), lease.mac)
}

impl Pool {
    /// F6: the address remembered for whoever sends `req`, while nobody
    /// holds it. Only dynamic requests follow their identity: a preferred
    /// address (`--ip`, aux, replay) or a gateway is taken as asked.
    /// (F7's reservations are checked before this.)
    pub fn recall(&self, req: &AddressRequest) -> Option<u128> {
        if req.address.is_some() || req.gateway || self.memory.mode() == Sticky::Off {
            return None;
        }
        let x = self.memory.recall(req.name.as_deref(), req.mac)?;
        (!self.leases.contains(x)).then_some(x)
    }

    /// Number of remembered addresses.
    pub fn remembered_count(&self) -> usize {
        self.memory.len()
    }

    /// A held-back address that is neither leased nor cooling leaves
    /// `used` when it is forgotten.
    fn unhold(&mut self, x: u128) {
        if !self.leases.contains(x) && !self.cooling.contains(&x) {
            self.used.remove(x);
        }
    }

    /// `x` is being leased with `lease`: forget what was remembered at `x`
    /// (it is someone's now) and the lessee's record of another address.
    pub(super) fn forget_for_lease(&mut self, x: u128, lease: &Lease) -> Forgot {
        let at = self.memory.forget(x).map(|(r, _)| r);
        // The lessee's identity as `ident_of` gives it, looked up without
        // making one (this runs on every lease).
        let name = lease.name.as_deref().filter(|n| !n.is_empty());
        let lessee = match (lease.gateway, name) {
            (true, _) => None,
            (false, Some(n)) => self.memory.recall(Some(n), None),
            (false, None) => self.memory.recall(None, lease.mac),
        };
        let older = lessee.and_then(|y| {
            let (r, held) = self.memory.forget(y)?;
            if held {
                self.unhold(y);
            }
            Some((y, r))
        });
        Forgot { at, older }
    }

    /// Takes back [`Pool::forget_for_lease`] (after the lease is gone).
    pub(super) fn unforget(&mut self, x: u128, f: Forgot) {
        if let Some((y, r)) = f.older
            && self.memory.put(y, r)
        {
            self.used.insert(y);
        }
        if let Some(r) = f.at
            && self.memory.put(x, r)
        {
            self.used.insert(x);
        }
    }

    /// `x` was released from `lease`: remember it for the lease's identity.
    /// Returns whether `x` is now held back, and the undo.
    pub(super) fn remember_release(&mut self, x: u128, lease: &Lease) -> (bool, Option<Recorded>) {
        let Some(ident) = ident_of(lease).filter(|_| self.memory.mode() != Sticky::Off) else {
            return (false, None);
        };
        let clock = self.memory.clock();
        let (held, older, older_held) = self.memory.remember(x, ident);
        if let Some((y, _)) = &older
            && older_held
        {
            self.unhold(*y);
        }
        (held, Some(Recorded { clock, older }))
    }

    /// Takes back [`Pool::remember_release`] (with `x` leased again).
    pub(super) fn unremember(&mut self, x: u128, r: Option<Recorded>) {
        let Some(r) = r else { return };
        self.memory.forget(x);
        if let Some((y, rec)) = r.older
            && self.memory.put(y, rec)
        {
            self.used.insert(y);
        }
        self.memory.set_clock(r.clock);
    }

    /// Moves the memory out (the pool is being released; `used` is left as
    /// it is, so [`Pool::return_memory`] restores the pool exactly).
    pub(super) fn take_memory(&mut self) -> Memory {
        let (lo, hi) = self.dynamic_bounds();
        let mode = self.memory.mode();
        std::mem::replace(&mut self.memory, Memory::new(mode, lo, hi))
    }

    /// Puts back what [`Pool::take_memory`] took.
    pub(super) fn return_memory(&mut self, m: Memory) {
        self.memory = m;
    }

    /// A new pool takes over what the pool of the same id remembered when
    /// it was released (a network removed and created again: `docker
    /// compose down` and `up`). A record of the address reserved as the
    /// gateway is dropped and returned (for undo).
    pub(super) fn adopt(&mut self, mut m: Memory) -> Option<(u128, Remembered)> {
        let lost = self
            .data_gateway
            .and_then(|g| m.forget(g).map(|(r, _)| (g, r)));
        for x in m.held() {
            self.used.insert(x);
        }
        self.memory = m;
        lost
    }

    /// Restores the remembered addresses of a snapshot (after the leases
    /// and the cooling list), checking what replay guarantees.
    pub(super) fn restore_memory(
        &mut self,
        clock: u64,
        records: impl IntoIterator<Item = (IpAddr, Ident, u64)>,
    ) -> Result<(), Error> {
        self.memory.set_clock(clock);
        let (lo, hi) = net_bounds(&self.id.subnet);
        for (addr, ident, released) in records {
            let x = self.check_inside(addr)?;
            let why = if self.leases.contains(x) {
                Some("is leased")
            } else if (x == lo && reserves_first(&self.id.subnet))
                || (x == hi && reserves_last(&self.id.subnet))
            {
                Some("is reserved")
            } else if self.memory.contains(x) {
                Some("is remembered twice")
            } else if self.memory.address_of(&ident).is_some() {
                Some("shares its identity with another remembered address")
            } else if released >= clock {
                Some("was released after the pool's clock")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::Inconsistent(format!(
                    "remembered address {} of pool {} {why}",
                    to_addr(self.family(), x),
                    self.id
                )));
            }
            if self.memory.put(x, Remembered { ident, released }) {
                self.used.insert(x);
            }
        }
        Ok(())
    }
}
