//! F6: the addresses a pool remembers for the containers that left it, so
//! that whoever comes back with the same identity gets its address again.
//!
//! An identity is the endpoint name Engine 29 sends, else the MAC address
//! (product.md F6). When a lease with an identity is released the pool
//! remembers `address <- identity`; a later dynamic request from that
//! identity gets the address back while nobody holds it. One identity per
//! address and one address per identity: remembering again replaces the
//! older record, and leasing a remembered address to anyone forgets it.
//!
//! Addresses remembered for a name (and, with `sticky=mac`, for a MAC) are
//! *held back*: dynamic requests from others skip them until the pool has
//! nothing else free; then the least recently used is reclaimed. "Used" is
//! a logical clock, the pool's count of remembered releases, so replaying
//! the journal gives every record the same age. Docker's MACs are random on
//! every start unless pinned, so by default an address remembered only for
//! a MAC is handed back to that MAC but not held back.
//!
//! Costs: every lookup is a hash lookup (by name, by MAC, by address) and
//! the reclaim order is a `BTreeMap` keyed by age, so no request looks at
//! more than one record. The records by address live in shared chunks like
//! the leases, so a snapshot copy costs one reference count per chunk.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Mac;
use super::leases::ChunkMap;

/// Which remembered addresses a pool holds back (`--ipam-opt sticky=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sticky {
    /// Addresses remembered for a name are held back; those remembered
    /// only for a MAC are given back to it while still free.
    #[default]
    Name,
    /// Addresses remembered for a MAC are held back too (for networks
    /// whose containers all pin their MAC).
    Mac,
    /// Nothing is remembered: Docker's own lowest-free rule alone.
    Off,
}

impl Sticky {
    /// The values `sticky=` accepts.
    pub const VALUES: &'static str = "name, mac or off";

    /// Whether this is the default (left out of the journal and snapshot).
    pub fn is_default(&self) -> bool {
        *self == Sticky::Name
    }

    /// Parses the value of `sticky=`.
    pub fn parse(value: &str) -> Option<Sticky> {
        match value.trim().to_ascii_lowercase().as_str() {
            "name" => Some(Sticky::Name),
            "mac" => Some(Sticky::Mac),
            "off" => Some(Sticky::Off),
            _ => None,
        }
    }

    /// Whether an address remembered for `ident` is held back.
    fn holds(self, ident: &Ident) -> bool {
        match (self, ident) {
            (Sticky::Off, _) => false,
            (Sticky::Mac, _) | (Sticky::Name, Ident::Name(_)) => true,
            (Sticky::Name, Ident::Mac(_)) => false,
        }
    }
}

impl fmt::Display for Sticky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sticky::Name => "name",
            Sticky::Mac => "mac",
            Sticky::Off => "off",
        })
    }
}

/// Who a lease belonged to: the endpoint name, else the MAC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ident {
    Name(Arc<str>),
    Mac(Mac),
}

impl Ident {
    /// The identity of a lease with this name and MAC, if it has one.
    pub fn of(name: Option<&str>, mac: Option<Mac>) -> Option<Ident> {
        match (name.filter(|n| !n.is_empty()), mac) {
            (Some(n), _) => Some(Ident::Name(Arc::from(n))),
            (None, Some(m)) => Some(Ident::Mac(m)),
            (None, None) => None,
        }
    }
}

/// One remembered address: whose it was, and when it was released (the
/// pool's clock then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub ident: Ident,
    pub released: u64,
}

/// The addresses one pool remembers.
#[derive(Debug, Clone)]
pub struct Memory {
    mode: Sticky,
    /// Dynamic requests draw from `dyn_lo..=dyn_hi`; held records outside
    /// it sort apart so a reclaim never steps over them.
    dyn_lo: u128,
    dyn_hi: u128,
    by_addr: ChunkMap<Remembered>,
    by_name: HashMap<Arc<str>, u128>,
    by_mac: HashMap<Mac, u128>,
    /// Held records by (outside the dynamic range, age).
    lru: BTreeMap<(bool, u64), u128>,
    /// Remembered releases so far.
    clock: u64,
}

impl Memory {
    /// Nothing remembered, for a pool drawing dynamic addresses from
    /// `dyn_lo..=dyn_hi`.
    pub fn new(mode: Sticky, dyn_lo: u128, dyn_hi: u128) -> Memory {
        Memory {
            mode,
            dyn_lo,
            dyn_hi,
            by_addr: ChunkMap::new(),
            by_name: HashMap::new(),
            by_mac: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Which remembered addresses are held back.
    pub fn mode(&self) -> Sticky {
        self.mode
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Number of remembered addresses.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Remembered releases so far (the logical clock).
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// The records by address (cheap to copy, for snapshots).
    pub fn records(&self) -> &ChunkMap<Remembered> {
        &self.by_addr
    }

    /// The address remembered for whoever asks: their name first, then
    /// their MAC (a container that pinned its MAC before Engine 29 sent
    /// names keeps its address across the upgrade).
    pub fn recall(&self, name: Option<&str>, mac: Option<Mac>) -> Option<u128> {
        name.and_then(|n| self.by_name.get(n))
            .or_else(|| mac.and_then(|m| self.by_mac.get(&m)))
            .copied()
    }

    /// Whether `x` is remembered and held back.
    pub fn is_held(&self, x: u128) -> bool {
        self.by_addr
            .get(x)
            .is_some_and(|r| self.mode.holds(&r.ident))
    }

    /// The held address used least recently: inside the dynamic range only,
    /// or (`anywhere`) also outside it.
    pub fn least_recent(&self, anywhere: bool) -> Option<u128> {
        let inside = self.lru.range((false, 0)..=(false, u64::MAX)).next();
        let outside = anywhere
            .then(|| self.lru.range((true, 0)..=(true, u64::MAX)).next())
            .flatten();
        match (inside, outside) {
            (Some(((_, a), x)), Some(((_, b), y))) => Some(if a <= b { *x } else { *y }),
            (Some((_, x)), None) | (None, Some((_, x))) => Some(*x),
            (None, None) => None,
        }
    }

    /// Remembers `x` for `ident`, released now; forgets what `ident` had
    /// before and returns it. `x` must not be remembered already. Returns
    /// (whether `x` is held, the older record of `ident`, whether that one
    /// was held).
    pub fn remember(&mut self, x: u128, ident: Ident) -> (bool, Option<(u128, Remembered)>, bool) {
        let older = self.forget_ident(&ident);
        let older_held = older
            .as_ref()
            .is_some_and(|(_, r)| self.mode.holds(&r.ident));
        let record = Remembered {
            ident,
            released: self.clock,
        };
        self.clock += 1;
        let held = self.put(x, record);
        (held, older, older_held)
    }

    /// Puts back a record taken by [`Memory::forget`] or
    /// [`Memory::remember`] (undo, snapshots); returns whether it is held.
    pub fn put(&mut self, x: u128, record: Remembered) -> bool {
        match &record.ident {
            Ident::Name(n) => self.by_name.insert(n.clone(), x),
            Ident::Mac(m) => self.by_mac.insert(*m, x),
        };
        let held = self.mode.holds(&record.ident);
        if held {
            self.lru.insert((self.outside(x), record.released), x);
        }
        self.by_addr.insert(x, record);
        held
    }

    /// Forgets what is remembered at `x`; returns it (and whether it was
    /// held).
    pub fn forget(&mut self, x: u128) -> Option<(Remembered, bool)> {
        let record = self.by_addr.remove(x)?;
        match &record.ident {
            Ident::Name(n) => self.by_name.remove(n),
            Ident::Mac(m) => self.by_mac.remove(m),
        };
        let held = self.mode.holds(&record.ident);
        if held {
            self.lru.remove(&(self.outside(x), record.released));
        }
        Some((record, held))
    }

    /// Forgets the address remembered for `ident`.
    fn forget_ident(&mut self, ident: &Ident) -> Option<(u128, Remembered)> {
        let x = self.address_of(ident)?;
        self.forget(x).map(|(r, _)| (x, r))
    }

    /// Sets the clock back (undo of a [`Memory::remember`]) or forward
    /// (snapshots).
    pub fn set_clock(&mut self, clock: u64) {
        self.clock = clock;
    }

    /// The address remembered for `ident`.
    pub fn address_of(&self, ident: &Ident) -> Option<u128> {
        match ident {
            Ident::Name(n) => self.by_name.get(n.as_ref()),
            Ident::Mac(m) => self.by_mac.get(m),
        }
        .copied()
    }

    /// Whether something is remembered at `x`.
    pub fn contains(&self, x: u128) -> bool {
        self.by_addr.contains(x)
    }

    /// Every held-back address, least recently used first per side of the
    /// dynamic range.
    pub fn held(&self) -> impl Iterator<Item = u128> + '_ {
        self.lru.values().copied()
    }

    fn outside(&self, x: u128) -> bool {
        x < self.dyn_lo || x > self.dyn_hi
    }

    /// The derived indexes in a canonical form (tests compare a state
    /// rebuilt from its snapshot with the live one).
    #[cfg(test)]
    pub fn derived(&self) -> String {
        let mut names: Vec<_> = self.by_name.iter().collect();
        names.sort();
        let mut macs: Vec<_> = self
            .by_mac
            .iter()
            .map(|(m, x)| (m.to_string(), x))
            .collect();
        macs.sort();
        format!(
            "{:?} names {names:?} macs {macs:?} lru {:?} clock {}",
            self.mode, self.lru, self.clock
        )
    }
}
