//! The one error type of the core. Each message is a lowercase phrase that
//! names the object it is about and, where there is one, the way out. Text a
//! client sent is quoted through [`quote`], which keeps a short prefix: a
//! 64 KiB field must not come back 64 KiB long in the reply and the log.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Family, PoolId};

/// Most characters of a client's text an error quotes.
pub const QUOTE_MAX: usize = 64;

/// A client's text as an error quotes it: Rust string syntax (so control
/// characters are visible), cut after [`QUOTE_MAX`] characters with the
/// full length said.
pub struct Quoted<'a>(&'a str);

/// Quotes `text` for an error message (see [`Quoted`]).
pub fn quote(text: &str) -> Quoted<'_> {
    Quoted(text)
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(QUOTE_MAX) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// Why a request could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    UnknownAddressSpace(String),
    BadPoolId(String),
    BadCidr {
        what: &'static str,
        text: String,
        why: &'static str,
    },
    HostBits {
        what: &'static str,
        given: IpNet,
    },
    WrongFamily {
        what: String,
        want: Family,
    },
    SubPoolWithoutPool(String),
    SubPoolOutside {
        range: IpNet,
        subnet: IpNet,
    },
    SizeOnlyWithRange(IpNet),
    SizeZero(IpNet),
    Overlap {
        requested: IpNet,
        held: PoolId,
    },
    /// The block overlaps one another host of the fleet holds (F9), or one
    /// this host is claiming in etcd right now (`holder` None).
    FleetOverlap {
        requested: IpNet,
        held: IpNet,
        holder: Option<String>,
    },
    /// `shared=NAME` with an explicit subnet other than NAME's (F9).
    SharedConflict {
        name: String,
        requested: IpNet,
        existing: IpNet,
    },
    NoFreeBlock {
        prefix: u8,
        family: Family,
        mains: Vec<IpNet>,
        /// How many host routes of the family were avoided.
        routes: usize,
    },
    UnknownOption {
        key: String,
        known: &'static [&'static str],
    },
    BadOption {
        key: String,
        value: String,
        want: String,
    },
    UnknownPool(PoolId),
    BadAddress {
        what: &'static str,
        text: String,
        why: &'static str,
    },
    AddressOutside {
        addr: IpAddr,
        pool: PoolId,
    },
    AddressReserved {
        addr: IpAddr,
        pool: PoolId,
        why: &'static str,
    },
    AddressInUse {
        addr: IpAddr,
        pool: PoolId,
    },
    PoolFull(PoolId),
    /// A pool tree that cannot be taken as it is (F7).
    TreeInvalid(String),
    /// A tree change refused because of what is live (each item names it).
    TreeRefused(Vec<String>),
    /// `pool=` or `tags=` without a tree.
    NoTree {
        option: String,
    },
    UnknownTreePool {
        name: String,
        known: Vec<String>,
    },
    UnknownTag {
        tag: String,
        known: Vec<String>,
    },
    /// No pool of the tree can serve the request (the message says why).
    NoTreePool(String),
    /// `--ip` or `--gateway` for an address reserved for someone else.
    AddressReservedFor {
        addr: IpAddr,
        pool: Box<PoolId>,
        holder: String,
        tree_pool: String,
    },
    /// A journal or snapshot entry that cannot apply to the state: only
    /// seen when loading a damaged state.
    Inconsistent(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownAddressSpace(s) => write!(
                f,
                "address space {} is unknown; use LocalDefault or GlobalDefault",
                quote(s)
            ),
            Error::BadPoolId(s) => write!(
                f,
                "pool id {} is malformed; expected AddressSpace/subnet[/range] as returned by RequestPool",
                quote(s)
            ),
            Error::BadCidr { what, text, why } => {
                write!(
                    f,
                    "{what} {} is not a CIDR such as 10.1.0.0/24: {why}",
                    quote(text)
                )
            }
            Error::HostBits { what, given } => {
                write!(f, "{what} {given} has host bits set; use {}", given.trunc())
            }
            Error::WrongFamily { what, want } => {
                write!(f, "{what} is not {want}")
            }
            Error::SubPoolWithoutPool(r) => write!(
                f,
                "ip range {r} needs a subnet; give --subnet together with --ip-range"
            ),
            Error::SubPoolOutside { range, subnet } => {
                write!(f, "ip range {range} is not inside subnet {subnet}")
            }
            Error::SizeOnlyWithRange(p) => write!(
                f,
                "size-only pool {p} cannot have an ip range; give a real subnet"
            ),
            Error::SizeZero(p) => write!(
                f,
                "pool {p} covers every address; give a subnet or a size such as 0.0.0.0/24"
            ),
            Error::Overlap { requested, held } => write!(
                f,
                "pool {requested} overlaps pool {held}, which is in use; choose another subnet or remove the network using it"
            ),
            Error::FleetOverlap {
                requested,
                held,
                holder: Some(holder),
            } => write!(
                f,
                "pool {requested} overlaps {held}, which {holder} holds in the fleet; choose another subnet, or release it there (`gipam fleet` lists who holds what)"
            ),
            Error::FleetOverlap {
                requested,
                held,
                holder: None,
            } => write!(
                f,
                "pool {requested} overlaps {held}, which this host is claiming in etcd for another request right now; try again in a moment"
            ),
            Error::SharedConflict {
                name,
                requested,
                existing,
            } => write!(
                f,
                "shared network {name:?} already has subnet {existing}, not {requested}; create it with --subnet {existing} or without --subnet"
            ),
            Error::NoFreeBlock {
                prefix,
                family,
                mains,
                routes,
            } => {
                let list: Vec<String> = mains.iter().map(|m| m.to_string()).collect();
                let avoided = match routes {
                    0 => String::new(),
                    n => format!(" that collides with none of the host's {n} {family} routes"),
                };
                write!(
                    f,
                    "no free /{prefix} block{avoided} left in the main {family} pools ({}); add or grow a pool (V4/V6) or remove unused networks",
                    if list.is_empty() {
                        "none configured".to_string()
                    } else {
                        list.join(", ")
                    }
                )
            }
            Error::UnknownOption { key, known } => write!(
                f,
                "ipam option {} is unknown; known options: {}",
                quote(key),
                known.join(", ")
            ),
            Error::BadOption { key, value, want } => {
                write!(
                    f,
                    "ipam option {key}={} is invalid: want {want}",
                    quote(value)
                )
            }
            Error::UnknownPool(id) => write!(
                f,
                "pool {id} not found; it was released or never requested from this gipam"
            ),
            Error::BadAddress { what, text, why } => {
                write!(f, "{what} {} is not an IP address: {why}", quote(text))
            }
            Error::AddressOutside { addr, pool } => {
                write!(f, "address {addr} is outside pool {pool}")
            }
            Error::AddressReserved { addr, pool, why } => {
                write!(f, "address {addr} is the {why} of pool {pool}")
            }
            Error::AddressInUse { addr, pool } => {
                write!(f, "address {addr} already in use in pool {pool}")
            }
            Error::PoolFull(id) => write!(
                f,
                "no free address left in pool {id}; remove containers or use a larger subnet"
            ),
            Error::TreeInvalid(s) => write!(f, "pool tree refused: {s}"),
            Error::TreeRefused(items) => write!(
                f,
                "pool tree refused, nothing changed: {}",
                items.join("; ")
            ),
            Error::NoTree { option } => write!(
                f,
                "ipam option {} needs a pool tree, and none is loaded; load one with POOLS=FILE or `gipam pools apply FILE`",
                quote(option)
            ),
            Error::UnknownTreePool { name, known } => write!(
                f,
                "pool {} is not in the pool tree; its pools are: {}",
                quote(name),
                list(known)
            ),
            Error::UnknownTag { tag, known } => write!(
                f,
                "tag {} is carried by no pool of the tree; its tags are: {}",
                quote(tag),
                list(known)
            ),
            Error::NoTreePool(s) => f.write_str(s),
            Error::AddressReservedFor {
                addr,
                pool,
                holder,
                tree_pool,
            } => write!(
                f,
                "address {addr} in pool {pool} is reserved for {holder} (pool tree pool {tree_pool}); ask without --ip or choose another address"
            ),
            Error::Inconsistent(s) => write!(f, "state is inconsistent: {s}"),
        }
    }
}

impl std::error::Error for Error {}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_keep_a_short_prefix_and_say_the_length() {
        assert_eq!(quote("abc").to_string(), "\"abc\"");
        assert_eq!(quote("a\nb").to_string(), "\"a\\nb\"");
        let long = "x".repeat(65536);
        let q = quote(&long).to_string();
        assert!(q.len() < 100, "{q}");
        assert!(q.ends_with("… (65536 bytes)"), "{q}");
        // Cut on a character boundary, whatever the text.
        let crabs = "🦀".repeat(100);
        assert!(quote(&crabs).to_string().contains("(400 bytes)"));
        let e = Error::BadPoolId(long);
        assert!(e.to_string().len() < 200, "{e}");
    }
}
