//! One change to the state: what the journal records and what a store
//! commits atomically (one fsync'd line locally, one compare-and-swap
//! transaction on etcd).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::{PoolId, Reuse, Sticky, TreeSpec};

/// A change, planned by `Ipam::plan_*` and applied by `State::apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", try_from = "RawChange")]
pub enum Change {
    /// The default IPv6 pool was generated (once per state, RFC 4193).
    SetUla { prefix: Ipv6Net },
    /// gipam started with these main pools (V4, V6), so that a later start
    /// can name the old value when a change would strand live blocks.
    SetMains { v4: Vec<IpNet>, v6: Vec<IpNet> },
    /// A pool is now held.
    AddPool {
        id: PoolId,
        /// Chosen by gipam from the main pools (not an explicit `--subnet`).
        #[serde(default, skip_serializing_if = "is_false")]
        auto: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        serial: bool,
        /// `reuse=`: when released addresses come back.
        #[serde(default, skip_serializing_if = "Reuse::is_default")]
        reuse: Reuse,
        /// `sticky=`: which remembered addresses are held back (F6).
        #[serde(default, skip_serializing_if = "Sticky::is_default")]
        sticky: Sticky,
        /// The gateway named in RequestPool's `Data`, leased with the pool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_gateway: Option<IpAddr>,
    },
    /// A pool is now held, drawn from a pool of the tree and/or with an
    /// owner (`id=`): [`Change::AddPool`] plus where it came from. A
    /// separate op so that the lines of plain pools stay as they were.
    AddPoolFrom {
        id: PoolId,
        #[serde(default, skip_serializing_if = "is_false")]
        auto: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        serial: bool,
        #[serde(default, skip_serializing_if = "Reuse::is_default")]
        reuse: Reuse,
        #[serde(default, skip_serializing_if = "Sticky::is_default")]
        sticky: Sticky,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_gateway: Option<IpAddr>,
        /// The tree pool the block was drawn from (not part of the PoolId:
        /// that stays a pure function of the pool, see `poolid.rs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tree_pool: Option<String>,
        /// The owner given with `--ipam-opt id=`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        /// The fleet-wide network this pool is this host's hold on (F9):
        /// its addresses are claimed in etcd before they are leased.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shared: Option<String>,
    },
    /// The pool tree was replaced whole (F7).
    SetTree { tree: TreeSpec },
    /// A pool and all its addresses were released.
    ReleasePool { id: PoolId },
    /// An address is now leased.
    AddAddress {
        pool: PoolId,
        address: IpAddr,
        #[serde(default, skip_serializing_if = "is_false")]
        gateway: bool,
        /// Chosen by gipam (moves the serial cursor).
        #[serde(default, skip_serializing_if = "is_false")]
        dynamic: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<Mac>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A leased address was released. Its pool remembers the address for
    /// the lease's name or MAC (F6): `State::apply` derives that from the
    /// lease, live and on replay alike, so the line carries nothing more.
    ReleaseAddress { pool: PoolId, address: IpAddr },
    /// The PoolID another IPAM driver gave Docker for this pool (the
    /// original gipam's random 16-character ids, `gipam import`): Docker
    /// keeps sending it, so it names the pool for good.
    AliasPool { alias: String, id: PoolId },
}

impl Change {
    /// The pool a change is about, if any.
    pub fn pool(&self) -> Option<&PoolId> {
        match self {
            Change::SetUla { .. } | Change::SetMains { .. } | Change::SetTree { .. } => None,
            Change::AddPool { id, .. }
            | Change::AddPoolFrom { id, .. }
            | Change::ReleasePool { id }
            | Change::AliasPool { id, .. } => Some(id),
            Change::AddAddress { pool, .. } | Change::ReleaseAddress { pool, .. } => Some(pool),
        }
    }

    /// The subnet a new pool would hold, if this change adds one.
    pub fn new_subnet(&self) -> Option<IpNet> {
        match self {
            Change::AddPool { id, .. } | Change::AddPoolFrom { id, .. } => Some(id.subnet),
            _ => None,
        }
    }
}

/// The flat form a journal line is decoded through: serde's internally
/// tagged enums buffer every field first, which made replay twice as slow.
#[derive(Deserialize)]
struct RawChange {
    op: String,
    prefix: Option<Ipv6Net>,
    v4: Option<Vec<IpNet>>,
    v6: Option<Vec<IpNet>>,
    id: Option<PoolId>,
    pool: Option<PoolId>,
    address: Option<IpAddr>,
    #[serde(default)]
    auto: bool,
    #[serde(default)]
    serial: bool,
    #[serde(default)]
    reuse: Reuse,
    #[serde(default)]
    sticky: Sticky,
    data_gateway: Option<IpAddr>,
    #[serde(default)]
    gateway: bool,
    #[serde(default)]
    dynamic: bool,
    mac: Option<Mac>,
    name: Option<String>,
    tree: Option<TreeSpec>,
    tree_pool: Option<String>,
    owner: Option<String>,
    shared: Option<String>,
    alias: Option<String>,
}

impl TryFrom<RawChange> for Change {
    type Error = String;

    fn try_from(r: RawChange) -> Result<Change, String> {
        let need = |what: &str| format!("{} change lacks {what}", r.op);
        Ok(match r.op.as_str() {
            "set_ula" => Change::SetUla {
                prefix: r.prefix.ok_or_else(|| need("prefix"))?,
            },
            "set_mains" => Change::SetMains {
                v4: r.v4.unwrap_or_default(),
                v6: r.v6.unwrap_or_default(),
            },
            "add_pool" => Change::AddPool {
                id: r.id.ok_or_else(|| need("id"))?,
                auto: r.auto,
                serial: r.serial,
                reuse: r.reuse,
                sticky: r.sticky,
                data_gateway: r.data_gateway,
            },
            "add_pool_from" => Change::AddPoolFrom {
                id: r.id.ok_or_else(|| need("id"))?,
                auto: r.auto,
                serial: r.serial,
                reuse: r.reuse,
                sticky: r.sticky,
                data_gateway: r.data_gateway,
                tree_pool: r.tree_pool,
                owner: r.owner,
                shared: r.shared,
            },
            "set_tree" => Change::SetTree {
                tree: r.tree.ok_or_else(|| need("tree"))?,
            },
            "release_pool" => Change::ReleasePool {
                id: r.id.ok_or_else(|| need("id"))?,
            },
            "add_address" => Change::AddAddress {
                pool: r.pool.ok_or_else(|| need("pool"))?,
                address: r.address.ok_or_else(|| need("address"))?,
                gateway: r.gateway,
                dynamic: r.dynamic,
                mac: r.mac,
                name: r.name,
            },
            "release_address" => Change::ReleaseAddress {
                pool: r.pool.ok_or_else(|| need("pool"))?,
                address: r.address.ok_or_else(|| need("address"))?,
            },
            "alias_pool" => Change::AliasPool {
                alias: r.alias.ok_or_else(|| need("alias"))?,
                id: r.id.ok_or_else(|| need("id"))?,
            },
            other => return Err(format!("unknown change {other:?}")),
        })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An Ethernet address, as Docker sends it (`02:42:ac:11:00:02`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "mac address {} is not of the form 02:42:ac:11:00:02",
                super::quote(s)
            )
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

super::serde_as_string!(Mac);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips() {
        let m: Mac = "02:42:AC:11:00:02".parse().expect("mac");
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        for bad in [
            "",
            "02:42",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "2:42:ac:11:00:02",
            "+2:42:ac:11:00:02",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn changes_round_trip_as_json() {
        let c = Change::AddAddress {
            pool: "LocalDefault/10.0.0.0/24".parse().expect("id"),
            address: "10.0.0.2".parse().expect("ip"),
            gateway: false,
            dynamic: true,
            mac: Some(Mac([2, 0x42, 0xac, 0x11, 0, 2])),
            name: None,
        };
        let json = serde_json::to_string(&c).expect("ser");
        assert_eq!(
            json,
            r#"{"op":"add_address","pool":"LocalDefault/10.0.0.0/24","address":"10.0.0.2","dynamic":true,"mac":"02:42:ac:11:00:02"}"#
        );
        assert_eq!(serde_json::from_str::<Change>(&json).expect("de"), c);
        let c = Change::AddPool {
            id: "LocalDefault/10.0.0.0/24".parse().expect("id"),
            auto: false,
            serial: false,
            reuse: Reuse::Delayed,
            sticky: Default::default(),
            data_gateway: Some("10.0.0.1".parse().expect("ip")),
        };
        let json = serde_json::to_string(&c).expect("ser");
        assert_eq!(
            json,
            r#"{"op":"add_pool","id":"LocalDefault/10.0.0.0/24","reuse":"delayed","data_gateway":"10.0.0.1"}"#
        );
        assert_eq!(serde_json::from_str::<Change>(&json).expect("de"), c);
        // A journal line written before reuse= and data_gateway existed.
        let old = r#"{"op":"add_pool","id":"LocalDefault/10.0.0.0/24","serial":true}"#;
        let Change::AddPool {
            reuse,
            data_gateway,
            ..
        } = serde_json::from_str::<Change>(old).expect("old line")
        else {
            panic!("not an add_pool");
        };
        assert_eq!((reuse, data_gateway), (Reuse::Immediate, None));
    }
}
