//! Small helpers over `ipnet`: families, addresses as integers, and the
//! addresses a subnet reserves.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The family of a network.
    pub fn of_net(net: &IpNet) -> Family {
        Family::of(net.addr())
    }

    /// Bits in an address of this family.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// An address as an integer (IPv4 as its 32-bit value).
pub fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of `family` whose integer value is `x` (truncated for IPv4,
/// which callers never exceed: they stay inside an IPv4 subnet).
pub fn to_addr(family: Family, x: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(x as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(x)),
    }
}

/// First and last address of a network, as integers.
pub fn net_bounds(net: &IpNet) -> (u128, u128) {
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// The first address of `net` that a host may use: the network address of
/// IPv4 subnets up to /30 and the subnet-router anycast address of IPv6
/// subnets up to /126 are reserved; /31 and /127 use both addresses
/// (RFC 3021, RFC 6164) and /32, /128 their only one.
pub fn first_usable(net: &IpNet) -> u128 {
    let (lo, _) = net_bounds(net);
    if reserves_first(net) { lo + 1 } else { lo }
}

/// Whether the subnet's first address is reserved (network address or
/// IPv6 subnet-router anycast, RFC 4291 §2.6.1).
pub fn reserves_first(net: &IpNet) -> bool {
    net.prefix_len() + 1 < net.max_prefix_len()
}

/// Whether the subnet's last address is reserved (IPv4 broadcast; IPv6 has
/// no broadcast).
pub fn reserves_last(net: &IpNet) -> bool {
    matches!(net, IpNet::V4(_)) && reserves_first(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test net")
    }

    #[test]
    fn reserved_addresses_follow_the_rfcs() {
        // (subnet, first reserved, last reserved)
        let cases = [
            ("10.0.0.0/24", true, true),
            ("10.0.0.0/30", true, true),
            ("10.0.0.0/31", false, false),
            ("10.0.0.0/32", false, false),
            ("2001:db8::/64", true, false),
            ("2001:db8::/126", true, false),
            ("2001:db8::/127", false, false),
            ("2001:db8::/128", false, false),
        ];
        for (n, first, last) in cases {
            assert_eq!(reserves_first(&net(n)), first, "{n}");
            assert_eq!(reserves_last(&net(n)), last, "{n}");
        }
    }

    #[test]
    fn addresses_round_trip_through_integers() {
        for a in [
            "10.1.2.3",
            "0.0.0.0",
            "255.255.255.255",
            "::",
            "2001:db8::1",
        ] {
            let ip: IpAddr = a.parse().expect("test addr");
            assert_eq!(to_addr(Family::of(ip), to_u128(ip)), ip);
        }
    }
}
