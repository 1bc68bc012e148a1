//! Pool identifiers: `<AddressSpace>/<subnet>[/<range>]`.
//!
//! Docker persists the PoolID we return in its network and endpoint records
//! and sends it back verbatim, across restarts of either side, so it must be
//! a pure function of what the pool is. The format is the one the built-in
//! IPAM uses (moby `ipams/defaultipam/structures.go`, `PoolID.String`), e.g.
//! `LocalDefault/10.40.3.0/24` or `LocalDefault/10.10.0.0/16/10.10.5.0/24`.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;

use super::{Error, Family, parse_addr, parse_prefix_len};

/// The address space of local-scope networks.
pub const LOCAL_SPACE: &str = "LocalDefault";
/// The address space of global-scope (swarm) networks.
pub const GLOBAL_SPACE: &str = "GlobalDefault";

/// Identifies one held pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId {
    /// `LocalDefault` or `GlobalDefault` (one of two constants, so a
    /// PoolId costs no allocation to parse or clone on the request path).
    pub space: &'static str,
    /// The master subnet (canonical network address).
    pub subnet: IpNet,
    /// The `--ip-range` dynamic addresses come from, if one was given.
    pub range: Option<IpNet>,
}

impl PoolId {
    /// Checks an address space name, mapping `""` (never sent by dockerd,
    /// but cheap to tolerate) to the local space.
    pub fn space(name: &str) -> Result<&'static str, Error> {
        match name {
            "" | LOCAL_SPACE => Ok(LOCAL_SPACE),
            GLOBAL_SPACE => Ok(GLOBAL_SPACE),
            other => Err(Error::UnknownAddressSpace(other.to_string())),
        }
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.space, self.subnet)?;
        if let Some(r) = &self.range {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl FromStr for PoolId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadPoolId(s.to_string());
        let (space, rest) = s.split_once('/').ok_or_else(bad)?;
        if space.is_empty() {
            return Err(bad());
        }
        let space = PoolId::space(space).map_err(|_| bad())?;
        let mut parts = rest.split('/');
        let parts = [
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ];
        let canonical = |a: &str, len: &str| -> Result<IpNet, Error> {
            let addr = parse_addr(a).map_err(|_| bad())?;
            let len = parse_prefix_len(len, Family::of(addr)).map_err(|_| bad())?;
            let net = IpNet::new(addr, len).map_err(|_| bad())?;
            if net.trunc() != net {
                return Err(bad());
            }
            Ok(net)
        };
        let (subnet, range) = match parts {
            [Some(a), Some(l), None, None, None] => (canonical(a, l)?, None),
            [Some(a), Some(l), Some(ra), Some(rl), None] => {
                (canonical(a, l)?, Some(canonical(ra, rl)?))
            }
            _ => return Err(bad()),
        };
        Ok(PoolId {
            space,
            subnet,
            range,
        })
    }
}

super::serde_as_string!(PoolId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "LocalDefault/10.40.3.0/24",
            "GlobalDefault/10.0.0.0/8",
            "LocalDefault/10.10.0.0/16/10.10.5.0/24",
            "LocalDefault/2001:db8:7700::/64",
            "LocalDefault/2001:db8::/48/2001:db8:0:1::/64",
        ] {
            let id: PoolId = s.parse().expect(s);
            assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for s in [
            "",
            "LocalDefault",
            "LocalDefault/",
            "Other/10.0.0.0/24",
            "LocalDefault/10.0.0.1/24",
            "LocalDefault/10.0.0.0/33",
            "LocalDefault/10.0.0.0/24/10.0.0.0",
            "LocalDefault/10.0.0.0/24/x/y/z",
            "/10.0.0.0/24",
            // Strict like everything a client sends (net.rs).
            "LocalDefault/010.0.0.0/24",
            "LocalDefault/10.0.0.0/024",
            "LocalDefault/10.0.0.0/+24",
            "LocalDefault/2001:db8::/064",
        ] {
            assert!(s.parse::<PoolId>().is_err(), "{s:?} parsed");
        }
    }
}
