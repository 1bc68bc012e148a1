//! How a pool picks an address (F3, F5): a wanted one checked, the
//! gateway, and a dynamic one — lowest free by default, rotating with
//! `serial`, then cooling addresses (`reuse=delayed`), then the address held
//! back for a container that left that was used least recently (F6); never
//! one reserved for another container (F7). Nothing here changes the pool.

use std::net::IpAddr;

use super::net::{reserves_first, reserves_last};
use super::{AddrSet, Error, Family, Pool, first_usable, net_bounds};

/// The lowest address in `lo..=hi` in neither set.
fn free_of(a: &AddrSet, b: &AddrSet, lo: u128, hi: u128) -> Option<u128> {
    let mut x = lo;
    loop {
        let p = a.first_free(x, hi)?;
        let q = b.first_free(p, hi)?;
        if p == q {
            return Some(p);
        }
        x = q;
    }
}

impl Pool {
    /// Chooses the address for a request, without changing anything.
    /// `want` is a preferred address (`--ip`, `--gateway`, aux, replay).
    /// `serial` asks for rotation even if the pool was not created so.
    /// `reserved` holds addresses pinned to other containers (F7): no
    /// address gipam picks is one of them (a wanted one is checked by the
    /// caller, which knows who they are for).
    pub fn choose(
        &self,
        want: Option<IpAddr>,
        gateway: bool,
        serial: bool,
        reserved: &AddrSet,
    ) -> Result<u128, Error> {
        self.choose_from(want, gateway, serial, reserved, None)
    }

    /// [`Pool::choose`], a dynamic address searched from `from` (wrapping
    /// around) unless the pool rotates: a shared pool's hosts start apart.
    pub fn choose_from(
        &self,
        want: Option<IpAddr>,
        gateway: bool,
        serial: bool,
        reserved: &AddrSet,
        from: Option<u128>,
    ) -> Result<u128, Error> {
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
            // The daemon asks for the reserved gateway itself when the user
            // gave it as --gateway (it always requests a --gateway).
            if gateway && self.data_gateway == Some(x) {
                return Ok(x);
            }
            if self.leases.contains(x) {
                return Err(Error::AddressInUse {
                    addr,
                    pool: self.id.clone(),
                });
            }
            return Ok(x);
        }
        if gateway {
            if let Some(g) = self.data_gateway {
                return Ok(g);
            }
            let (lo, hi) = (first_usable(&self.id.subnet), net_bounds(&self.id.subnet).1);
            return free_of(&self.used, reserved, lo, hi)
                .or_else(|| self.cooled(lo, hi, reserved))
                .or_else(|| {
                    self.memory
                        .least_recent(true)
                        .filter(|x| !reserved.contains(*x))
                })
                .ok_or_else(|| Error::PoolFull(self.id.clone()));
        }
        let (lo, hi) = self.dynamic_bounds();
        let start = match (self.serial || serial, self.cursor, from) {
            (true, Some(c), _) if c >= lo && c < hi => c + 1,
            (false, _, Some(f)) if hi > lo => lo + (hi - lo).checked_add(1).map_or(f, |n| f % n),
            _ => lo,
        };
        // Free first (held-back addresses are in `used`), then cooling,
        // then the held-back address used least recently (F6); never one
        // reserved for another container (F7).
        free_of(&self.used, reserved, start, hi)
            .or_else(|| free_of(&self.used, reserved, lo, start.saturating_sub(1)))
            .or_else(|| self.cooled(lo, hi, reserved))
            .or_else(|| {
                self.memory
                    .least_recent(false)
                    .filter(|x| !reserved.contains(*x))
            })
            .ok_or_else(|| Error::PoolFull(self.id.clone()))
    }

    /// The oldest cooling address in `lo..=hi` neither held back for
    /// another container nor reserved (the cooling list is bounded by
    /// [`super::COOLING_MAX`]).
    fn cooled(&self, lo: u128, hi: u128, reserved: &AddrSet) -> Option<u128> {
        self.cooling
            .iter()
            .copied()
            .find(|a| *a >= lo && *a <= hi && !self.memory.is_held(*a) && !reserved.contains(*a))
    }

    /// Where dynamic addresses come from: the range without its first
    /// address (Docker users expect it to stay free, docker/for-linux#170),
    /// or the whole subnet. A range of one or two addresses (/32, /31,
    /// /128, /127) is used whole: it has no network address to keep free
    /// (RFC 3021, RFC 6164), and skipping its first would leave a /32 range
    /// nothing to hand out.
    pub(super) fn dynamic_bounds(&self) -> (u128, u128) {
        match &self.id.range {
            Some(r) => {
                let (lo, hi) = net_bounds(r);
                let lo = if hi - lo >= 2 { lo + 1 } else { lo };
                (lo.max(first_usable(&self.id.subnet)), hi)
            }
            None => (first_usable(&self.id.subnet), net_bounds(&self.id.subnet).1),
        }
    }
}
