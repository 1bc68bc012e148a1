//! The pool tree (F7): named pools, each with a CIDR, the size of the
//! blocks networks get from it, tags (passed down to children when it
//! propagates them), excluded ranges and reservations (an address pinned to
//! a container name or MAC).
//!
//! [`TreeSpec`] is the tree as written: gipam's pool file, the `tree` of the
//! snapshot and the `set_tree` journal line are all this one JSON form, so
//! what the operator wrote is what the state shows. [`Tree::new`] checks it
//! whole (every refusal names the pool and what to do) and builds the
//! lookups the allocator needs: pools in file order (depth first), tags,
//! and reservations by address and by identity. Nothing here looks at the
//! held pools; what a new tree would do to live networks is checked when a
//! tree change is planned (`tree_plan.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::net::{reserves_first, reserves_last};
use super::{AddrSet, Error, Family, Mac, parse_addr, parse_net, to_u128};

/// The tree as written (pool file, snapshot, journal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSpec {
    #[serde(default)]
    pub pools: Vec<TreePoolSpec>,
}

/// One pool as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreePoolSpec {
    /// Unique over the tree; `--ipam-opt pool=NAME` picks it.
    pub name: String,
    /// The prefix, e.g. `10.50.0.0/16`.
    pub cidr: String,
    /// Prefix length of the blocks networks get from it (default: 24 for
    /// IPv4, 64 for IPv6, or the pool's own length when it is smaller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Children carry this pool's tags too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub propagate: bool,
    /// No blocks of its own: networks come only from its children.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lock_down: bool,
    /// Ranges no block may overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<ReservationSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TreePoolSpec>,
}

/// An address pinned to one container, by name or by MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationSpec {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Who a reservation is for: a container name (Engine 29 sends it) or a MAC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Name(String),
    Mac(Mac),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Name(n) => write!(f, "container {}", super::quote(n)),
            Identity::Mac(m) => write!(f, "MAC {m}"),
        }
    }
}

/// One checked pool of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreePool {
    pub name: String,
    pub cidr: IpNet,
    pub block: u8,
    /// Its own tags.
    pub own_tags: Vec<String>,
    /// Its own tags and those propagated from its ancestors.
    pub tags: BTreeSet<String>,
    pub propagate: bool,
    pub lock_down: bool,
    pub exclude: Vec<IpNet>,
    /// The CIDRs of its children (blocks of its own never overlap them).
    pub children: Vec<IpNet>,
    /// Index of the parent in [`Tree::pools`].
    pub parent: Option<usize>,
    pub depth: usize,
}

/// A reservation of the checked tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub address: IpAddr,
    pub identity: Identity,
    /// Index of its pool in [`Tree::pools`].
    pub pool: usize,
}

/// The checked tree and its lookups.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    spec: TreeSpec,
    pools: Vec<TreePool>,
    by_name: HashMap<String, usize>,
    by_address: BTreeMap<(Family, u128), Reservation>,
    by_identity: HashMap<(Identity, Family), IpAddr>,
    reserved_v4: AddrSet,
    reserved_v6: AddrSet,
}

/// Longest pool name, tag or reservation name accepted.
const NAME_MAX: usize = 128;

fn bad(msg: String) -> Error {
    Error::TreeInvalid(msg)
}

fn check_word(what: &str, text: &str, pool: &str) -> Result<(), Error> {
    let ok = !text.is_empty()
        && text.len() <= NAME_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/@+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "pool {}: {what} {} is not 1 to {NAME_MAX} letters, digits or ._-:/@+",
            super::quote(pool),
            super::quote(text)
        )))
    }
}

fn cidr(pool: &str, what: &str, text: &str) -> Result<IpNet, Error> {
    let net = parse_net(text.trim()).map_err(|why| {
        bad(format!(
            "pool {}: {what} {} is not a CIDR such as 10.50.0.0/16: {why}",
            super::quote(pool),
            super::quote(text)
        ))
    })?;
    if net.trunc() != net {
        return Err(bad(format!(
            "pool {}: {what} {net} has host bits set; use {}",
            super::quote(pool),
            net.trunc()
        )));
    }
    Ok(net)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

impl Tree {
    /// Checks a tree as written and builds its lookups.
    pub fn new(spec: TreeSpec) -> Result<Tree, Error> {
        let mut tree = Tree::default();
        let roots = spec.pools.clone();
        tree.add_level(&roots, None)?;
        tree.spec = spec;
        Ok(tree)
    }

    fn add_level(&mut self, level: &[TreePoolSpec], parent: Option<usize>) -> Result<(), Error> {
        let mut siblings: Vec<(IpNet, String)> = Vec::new();
        for p in level {
            check_word("name", &p.name, &p.name)?;
            if self.by_name.contains_key(&p.name) {
                return Err(bad(format!(
                    "pool name {} is used twice; give every pool its own name",
                    super::quote(&p.name)
                )));
            }
            let net = cidr(&p.name, "cidr", &p.cidr)?;
            let family = Family::of_net(&net);
            if let Some(i) = parent {
                let up = &self.pools[i];
                if Family::of_net(&up.cidr) != family
                    || !up.cidr.contains(&net)
                    || net.prefix_len() <= up.cidr.prefix_len()
                {
                    return Err(bad(format!(
                        "pool {}: {net} is not inside its parent {} ({}); a child is a smaller prefix of its parent",
                        p.name, up.name, up.cidr
                    )));
                }
            }
            if let Some((o, name)) = siblings.iter().find(|(o, _)| overlaps(o, &net)) {
                return Err(bad(format!(
                    "pool {} ({net}) overlaps pool {name} ({o}); pools side by side must not overlap (nest one under the other instead)",
                    p.name
                )));
            }
            siblings.push((net, p.name.clone()));
            let max = family.bits();
            let default = match family {
                Family::V4 => 24,
                Family::V6 => 64,
            };
            let block = p.block.unwrap_or(default.max(net.prefix_len()));
            if block < net.prefix_len() || block > max {
                return Err(bad(format!(
                    "pool {}: block /{block} does not fit {net}; use a prefix length from {} to {max}",
                    p.name,
                    net.prefix_len()
                )));
            }
            let mut tags: BTreeSet<String> = BTreeSet::new();
            for t in &p.tags {
                check_word("tag", t, &p.name)?;
                tags.insert(t.clone());
            }
            if let Some(i) = parent
                && self.pools[i].propagate
            {
                tags.extend(self.pools[i].tags.iter().cloned());
            }
            let mut exclude = Vec::new();
            for e in &p.exclude {
                let x = cidr(&p.name, "excluded range", e)?;
                if Family::of_net(&x) != family || !net.contains(&x) {
                    return Err(bad(format!(
                        "pool {}: excluded range {x} is not inside {net}",
                        p.name
                    )));
                }
                exclude.push(x);
            }
            let index = self.pools.len();
            self.pools.push(TreePool {
                name: p.name.clone(),
                cidr: net,
                block,
                own_tags: p.tags.clone(),
                tags,
                propagate: p.propagate,
                lock_down: p.lock_down,
                exclude,
                children: p
                    .children
                    .iter()
                    .filter_map(|c| parse_net(&c.cidr).ok())
                    .collect(),
                parent,
                depth: parent.map_or(0, |i| self.pools[i].depth + 1),
            });
            self.by_name.insert(p.name.clone(), index);
            for r in &p.reservations {
                self.add_reservation(index, r)?;
            }
            self.add_level(&p.children, Some(index))?;
        }
        Ok(())
    }

    fn add_reservation(&mut self, index: usize, r: &ReservationSpec) -> Result<(), Error> {
        let pool = &self.pools[index];
        let name = pool.name.clone();
        let at = || format!("pool {name}: reservation {}", super::quote(&r.address));
        let address = parse_addr(r.address.trim())
            .map_err(|why| bad(format!("{}: not an IP address: {why}", at())))?;
        if !pool.cidr.contains(&address) || Family::of(address) != Family::of_net(&pool.cidr) {
            return Err(bad(format!("{} is outside {}", at(), pool.cidr)));
        }
        if let Some(x) = pool.exclude.iter().find(|x| x.contains(&address)) {
            return Err(bad(format!("{} lies in its excluded range {x}", at())));
        }
        if let Some(c) = pool.children.iter().find(|c| c.contains(&address)) {
            return Err(bad(format!(
                "{} lies in the child pool {c}; put it under that pool",
                at()
            )));
        }
        if let Ok(block) = IpNet::new(address, pool.block).map(|b| b.trunc()) {
            let x = to_u128(address);
            let (lo, hi) = super::net_bounds(&block);
            if (x == lo && reserves_first(&block)) || (x == hi && reserves_last(&block)) {
                return Err(bad(format!(
                    "{} is the network or broadcast address of its /{} block {block}; no container can have it",
                    at(),
                    pool.block
                )));
            }
        }
        let identity = match (&r.name, &r.mac) {
            (Some(n), None) => {
                check_word("reservation name", n, &name)?;
                Identity::Name(n.clone())
            }
            (None, Some(m)) => Identity::Mac(
                m.parse::<Mac>()
                    .map_err(|why| bad(format!("{}: {why}", at())))?,
            ),
            _ => {
                return Err(bad(format!(
                    "{} needs exactly one of name (a container name) or mac",
                    at()
                )));
            }
        };
        let family = Family::of(address);
        let key = (family, to_u128(address));
        if let Some(other) = self.by_address.get(&key) {
            return Err(bad(format!(
                "{} is reserved twice (also for {}); reserve each address once",
                at(),
                other.identity
            )));
        }
        if let Some(other) = self.by_identity.get(&(identity.clone(), family)) {
            return Err(bad(format!(
                "{}: {identity} already has {family} address {other} reserved; one address per family each",
                at()
            )));
        }
        self.by_identity.insert((identity.clone(), family), address);
        match family {
            Family::V4 => self.reserved_v4.insert(key.1),
            Family::V6 => self.reserved_v6.insert(key.1),
        };
        self.by_address.insert(
            key,
            Reservation {
                address,
                identity,
                pool: index,
            },
        );
        Ok(())
    }

    /// The tree as written.
    pub fn spec(&self) -> &TreeSpec {
        &self.spec
    }

    /// Whether there is no tree (no pools).
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// Every pool, depth first in file order.
    pub fn pools(&self) -> &[TreePool] {
        &self.pools
    }

    /// The pool of this name.
    pub fn by_name(&self, name: &str) -> Option<(usize, &TreePool)> {
        self.by_name.get(name).map(|i| (*i, &self.pools[*i]))
    }

    /// Every pool name, in tree order.
    pub fn names(&self) -> Vec<String> {
        self.pools.iter().map(|p| p.name.clone()).collect()
    }

    /// Every tag any pool carries, sorted.
    pub fn all_tags(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self.pools.iter().flat_map(|p| p.tags.iter()).collect();
        all.into_iter().cloned().collect()
    }

    /// The reservation of an address, if any.
    pub fn reservation_at(&self, address: IpAddr) -> Option<&Reservation> {
        self.by_address
            .get(&(Family::of(address), to_u128(address)))
    }

    /// Every reservation, by address.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.by_address.values()
    }

    /// The address reserved for `identity` in `family`, if any.
    pub fn reserved_for(&self, identity: &Identity, family: Family) -> Option<IpAddr> {
        self.by_identity.get(&(identity.clone(), family)).copied()
    }

    /// Every reserved address of a family (skipped by everyone else).
    pub fn reserved(&self, family: Family) -> &AddrSet {
        match family {
            Family::V4 => &self.reserved_v4,
            Family::V6 => &self.reserved_v6,
        }
    }

    /// The top-level pools of a family (blocks from the main pools skip them).
    pub fn roots(&self, family: Family) -> Vec<IpNet> {
        self.pools
            .iter()
            .filter(|p| p.parent.is_none() && Family::of_net(&p.cidr) == family)
            .map(|p| p.cidr)
            .collect()
    }
}
