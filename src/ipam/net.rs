//! Small helpers over `ipnet`: families, addresses as integers, the
//! addresses a subnet reserves, and the strict parsers every address or CIDR
//! a client sends goes through.
//!
//! Strict means what dockerd writes (Go's `net.IP.String`, `net.IPNet.String`)
//! and nothing looser: `ipnet`'s parser takes IPv4 octets with leading zeros
//! (`010.083.000.000/24`, which `inet_aton` reads as octal: 8.67.0.0) and
//! IPv6 prefix lengths such as `/064`; the std address parser is already
//! strict (no leading zeros, no zone, no sign), so addresses go through it
//! and the prefix length through [`parse_prefix_len`].

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

/// How many addresses of the subnet can be leased: all of them but the
/// reserved first and last (saturating at `u128::MAX` for `::/0`).
pub fn usable_count(net: &IpNet) -> u128 {
    let (lo, hi) = net_bounds(net);
    let reserved = u128::from(reserves_first(net)) + u128::from(reserves_last(net));
    (hi - lo).saturating_add(1).saturating_sub(reserved)
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

/// Parses an IP address the way Go prints one; the error says why not.
pub fn parse_addr(text: &str) -> Result<IpAddr, &'static str> {
    text.parse().map_err(|_| {
        let octets: Vec<&str> = text.rsplit(':').next().unwrap_or(text).split('.').collect();
        let dotted = octets.len() == 4
            && octets
                .iter()
                .all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()));
        if dotted && octets.iter().any(|o| o.len() > 1 && o.starts_with('0')) {
            "an IPv4 octet has a leading zero; write 10.8.0.1, not 010.008.000.001"
        } else {
            "expected an address such as 10.1.0.5 or 2001:db8::5"
        }
    })
}

/// Parses the prefix length after `/`: decimal digits only, no sign, no
/// leading zero, at most the family's bits.
pub fn parse_prefix_len(text: &str, family: Family) -> Result<u8, &'static str> {
    let digits = !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
    let bad = || match family {
        Family::V4 => "the text after '/' must be a prefix length from 0 to 32",
        Family::V6 => "the text after '/' must be a prefix length from 0 to 128",
    };
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(bad());
    }
    text.parse::<u8>()
        .ok()
        .filter(|n| *n <= family.bits())
        .ok_or_else(bad)
}

/// Parses `address/prefix-length` strictly (see the module doc).
pub fn parse_net(text: &str) -> Result<IpNet, &'static str> {
    let (addr, len) = text
        .split_once('/')
        .ok_or("it has no '/' and prefix length")?;
    let addr = parse_addr(addr)?;
    let len = parse_prefix_len(len, Family::of(addr))?;
    IpNet::new(addr, len).map_err(|_| "the prefix length is too long for the address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_take_what_go_prints_and_nothing_looser() {
        let good = [
            ("10.1.0.0/24", "10.1.0.0/24"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("255.255.255.255/32", "255.255.255.255/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("2001:db8::/64", "2001:db8::/64"),
            ("2001:DB8::/64", "2001:db8::/64"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.1/128", "::ffff:10.0.0.1/128"),
        ];
        for (text, want) in good {
            assert_eq!(
                parse_net(text).map(|n| n.to_string()),
                Ok(want.into()),
                "{text}"
            );
        }
        let bad = [
            ("010.083.000.000/24", "leading zero"),
            ("10.0.0.01/32", "leading zero"),
            ("::ffff:010.0.0.1/128", "leading zero"),
            ("10.123.0.50/garbage", "prefix length from 0 to 32"),
            ("10.0.0.0/024", "prefix length"),
            ("10.0.0.0/+24", "prefix length"),
            ("10.0.0.0/ 24", "prefix length"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/33", "prefix length"),
            ("10.0.0.0/24/1", "prefix length"),
            ("2001:db8::/064", "from 0 to 128"),
            ("2001:db8::/129", "from 0 to 128"),
            ("fe80::1%eth0/64", "expected an address"),
            ("0x0a.0.0.0/8", "expected an address"),
            ("10.0.0/24", "expected an address"),
            ("10.0.0.0", "no '/'"),
            ("", "no '/'"),
        ];
        for (text, why) in bad {
            let e = parse_net(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
        assert!(parse_addr("010.1.1.1").is_err());
        assert!(parse_addr("10.1.1.1").is_ok());
    }

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
