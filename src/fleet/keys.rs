//! The fleet's keys in etcd and what they hold. Everything lives under
//! ETCD_PREFIX (`P`):
//!
//! ```text
//! P/blocks/4/<first address, 32 hex digits>/<prefix length, 3 digits>
//!                              a block claimed by a host or a shared network
//! P/shared/<NAME>              a shared network: subnet, gateway, holders
//! P/addrs/<NAME>/<4 or 6><address, 32 hex digits>
//!                              an address of shared network NAME and its host
//! P/hosts/<HOST>               a host of the fleet and when it was last seen
//! P/alive/<HOST>               present while HOST runs (an etcd lease)
//! P/mains                      the main pools the fleet was started with
//! P/tree                       the pool tree (F7), the same on every host
//! ```
//!
//! Block keys sort by first address, so "every block starting inside C" is
//! one key range, and a block containing C is one of C's supernets, each a
//! key of its own: a claim's transaction compares exactly those.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ipam::{Family, net_bounds, to_addr, to_u128};

/// A block claim's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockClaim {
    /// The host that holds it (the creator, for a shared network's block).
    pub host: String,
    pub subnet: IpNet,
    /// The shared network the block is, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
}

impl BlockClaim {
    /// Who holds the block, as errors and `gipam fleet` say it.
    pub fn holder(&self) -> String {
        match &self.shared {
            Some(name) => format!("shared network {name}"),
            None => format!("host {}", self.host),
        }
    }
}

/// A shared network's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedNet {
    pub subnet: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Hosts holding the network; it goes when the last one releases it.
    pub holders: Vec<String>,
}

/// An address claim's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrClaim {
    pub host: String,
    pub address: IpAddr,
}

/// A host's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Unix seconds of the last heartbeat.
    pub seen: u64,
    #[serde(default)]
    pub version: String,
}

/// The main pools the fleet runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mains {
    pub v4: Vec<IpNet>,
    pub v6: Vec<IpNet>,
}

/// What a key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Block(IpNet),
    Shared(String),
    Addr(String, IpAddr),
    Host(String),
    Alive(String),
    Mains,
    Tree,
}

/// The key names of one fleet.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

fn fam(f: Family) -> char {
    match f {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Every key of the fleet starts with this.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn block(&self, net: &IpNet) -> String {
        let f = Family::of_net(net);
        let lo = net_bounds(net).0;
        format!(
            "{}/blocks/{}/{lo:032x}/{:03}",
            self.prefix,
            fam(f),
            net.prefix_len()
        )
    }

    /// The key range of every block whose first address lies in `net`.
    pub fn blocks_starting_in(&self, net: &IpNet) -> (String, String) {
        let f = fam(Family::of_net(net));
        let (lo, hi) = net_bounds(net);
        // '0' sorts right after '/', so this ends after every key of `hi`.
        (
            format!("{}/blocks/{f}/{lo:032x}/", self.prefix),
            format!("{}/blocks/{f}/{hi:032x}0", self.prefix),
        )
    }

    /// The key range of every block of a family starting at or before `x`.
    pub fn blocks_up_to(&self, family: Family, x: u128) -> (String, String) {
        let f = fam(family);
        (
            format!("{}/blocks/{f}/", self.prefix),
            format!("{}/blocks/{f}/{x:032x}0", self.prefix),
        )
    }

    /// The key range of every block.
    pub fn all_blocks(&self) -> (String, String) {
        (
            format!("{}/blocks/", self.prefix),
            format!("{}/blocks0", self.prefix),
        )
    }

    pub fn shared(&self, name: &str) -> String {
        format!("{}/shared/{name}", self.prefix)
    }

    pub fn addr(&self, name: &str, address: IpAddr) -> String {
        let f = fam(Family::of(address));
        format!("{}/addrs/{name}/{f}{:032x}", self.prefix, to_u128(address))
    }

    pub fn host(&self, id: &str) -> String {
        format!("{}/hosts/{id}", self.prefix)
    }

    pub fn alive(&self, id: &str) -> String {
        format!("{}/alive/{id}", self.prefix)
    }

    pub fn tree(&self) -> String {
        format!("{}/tree", self.prefix)
    }

    pub fn mains(&self) -> String {
        format!("{}/mains", self.prefix)
    }

    /// What a key of this fleet is; `None` for keys gipam does not know.
    pub fn parse(&self, key: &[u8]) -> Option<Key> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let kind = parts.next()?;
        let a = parts.next();
        let b = parts.next();
        let c = parts.next();
        let extra = parts.next();
        if extra.is_some() {
            return None;
        }
        match (kind, a, b, c) {
            ("blocks", Some(f), Some(start), Some(len)) => {
                let family = match f {
                    "4" => Family::V4,
                    "6" => Family::V6,
                    _ => return None,
                };
                let x = u128::from_str_radix(start, 16).ok()?;
                let len: u8 = len.parse().ok()?;
                let net = IpNet::new(to_addr(family, x), len).ok()?;
                (net.network() == to_addr(family, x)).then_some(Key::Block(net))
            }
            ("shared", Some(name), None, None) => Some(Key::Shared(name.to_string())),
            ("addrs", Some(name), Some(x), None) => {
                let family = match x.get(..1)? {
                    "4" => Family::V4,
                    "6" => Family::V6,
                    _ => return None,
                };
                let x = u128::from_str_radix(x.get(1..)?, 16).ok()?;
                if family == Family::V4 && x > u128::from(u32::MAX) {
                    return None;
                }
                Some(Key::Addr(name.to_string(), to_addr(family, x)))
            }
            ("hosts", Some(id), None, None) => Some(Key::Host(id.to_string())),
            ("alive", Some(id), None, None) => Some(Key::Alive(id.to_string())),
            ("mains", None, None, None) => Some(Key::Mains),
            ("tree", None, None, None) => Some(Key::Tree),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_keys_round_trip_and_sort_by_first_address() {
        let k = Keys::new("/gipam/");
        for net in ["10.1.2.0/24", "0.0.0.0/0", "fd00:1::/64", "10.0.0.7/32"] {
            let net: IpNet = net.parse().unwrap();
            assert_eq!(k.parse(k.block(&net).as_bytes()), Some(Key::Block(net)));
            let (lo, hi) = k.blocks_starting_in(&net);
            assert!(lo <= k.block(&net) && k.block(&net) < hi);
        }
        let a: IpNet = "10.1.0.0/16".parse().unwrap();
        let inside: IpNet = "10.1.255.0/24".parse().unwrap();
        let after: IpNet = "10.2.0.0/24".parse().unwrap();
        let (lo, hi) = k.blocks_starting_in(&a);
        assert!(lo <= k.block(&inside) && k.block(&inside) < hi);
        assert!(k.block(&after) >= hi);
        assert_eq!(k.parse(b"/gipam/blocks/4/zz/24"), None);
        assert_eq!(k.parse(b"/other/mains"), None);
        assert_eq!(k.parse(b"/gipam/mains"), Some(Key::Mains));
    }

    #[test]
    fn address_keys_round_trip() {
        let k = Keys::new("/p");
        for a in ["10.1.2.3", "fd00::5", "::5"] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(
                k.parse(k.addr("net1", a).as_bytes()),
                Some(Key::Addr("net1".into(), a))
            );
        }
    }
}
