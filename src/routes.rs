//! Reads the host's routing table for the block search (the core's
//! [`HostRoute`] input), from `/proc/net/route` and `/proc/net/ipv6_route`.
//!
//! Read on every RequestPool whose block gipam chooses, never cached: those
//! requests are rare (one per network created), reading and parsing both
//! files costs ~31 µs for the 11 routes of the 2-core development machine
//! (release build, mean of 10,000 reads; parsing 100,000 synthetic IPv4
//! lines took 28 ms), and the table changes exactly when it matters —
//! Docker adds a bridge route for each network, VPNs come and go. `/proc/net` shows the network namespace of
//! the reader: a managed plugin sees the host's routes only with host
//! networking (`network.type` `host` in config.json); in a private
//! namespace it sees none, and blocks are chosen as if the host had none.
//! /proc is parsed rather than netlink asked: no new dependency, and the
//! main table (`/proc/net/route`) plus every IPv6 table is what a collision
//! needs. (IPv4 addresses that only the local table knows, such as a /32 on
//! `lo` without a prefix route, are not seen.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::ipam::HostRoute;

/// Where the kernel lists the IPv4 main table.
pub const PROC_V4: &str = "/proc/net/route";
/// Where the kernel lists every IPv6 table.
pub const PROC_V6: &str = "/proc/net/ipv6_route";

// Route flags (linux/route.h, linux/ipv6_route.h).
const RTF_UP: u32 = 0x0001;
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;
const RTF_CACHE: u32 = 0x0100_0000;

/// The host's routes of both families, and what could not be read (a
/// missing file means the family is off in this kernel or namespace: no
/// routes, no complaint).
pub fn host_routes() -> (Vec<HostRoute>, Vec<String>) {
    let mut routes = Vec::new();
    let mut problems = Vec::new();
    for (path, parse) in [
        (PROC_V4, parse_v4 as fn(&str) -> Vec<HostRoute>),
        (PROC_V6, parse_v6),
    ] {
        match std::fs::read_to_string(path) {
            Ok(text) => routes.extend(parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("cannot read {path}: {e}")),
        }
    }
    (routes, problems)
}

fn route(net: IpNet, flags: u32) -> Option<HostRoute> {
    (flags & RTF_UP != 0 && flags & RTF_CACHE == 0).then_some(HostRoute {
        net: net.trunc(),
        connected: flags & (RTF_GATEWAY | RTF_REJECT) == 0,
    })
}

/// Parses `/proc/net/route`: a header, then `Iface Destination Gateway
/// Flags RefCnt Use Metric Mask …`, addresses as the hex of the
/// network-order bytes read as a native-endian `u32`. Lines that do not
/// parse are skipped.
pub fn parse_v4(text: &str) -> Vec<HostRoute> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dst, flags, mask) = (hex(f.get(1)?)?, hex(f.get(3)?)?, hex(f.get(7)?)?);
            let mask = Ipv4Addr::from(mask.to_ne_bytes());
            let len = ipnet::ipv4_mask_to_prefix(mask).ok()?;
            let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(dst.to_ne_bytes())), len).ok()?;
            route(net, flags)
        })
        .collect()
}

/// Parses `/proc/net/ipv6_route`: `dest dest_len src src_len next_hop
/// metric refcnt use flags iface`, all hex, addresses in network order.
/// Lines that do not parse are skipped.
pub fn parse_v6(text: &str) -> Vec<HostRoute> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dst = u128::from_str_radix(f.first()?, 16).ok()?;
            let len = u8::from_str_radix(f.get(1)?, 16).ok()?;
            let flags = u32::from_str_radix(f.get(8)?, 16).ok()?;
            let net = IpNet::new(IpAddr::V6(Ipv6Addr::from(dst)), len).ok()?;
            route(net, flags)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables of a (little-endian) test machine, as the kernel printed
    /// them, plus made-up lines for the cases it lacks.
    const V4: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wg0\t0700280A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
lo\t0000280A\t00000000\t0201\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t0000320A\t00000000\t0000\t0\t0\t0\t0000FFFF\t0\t0\t0
garbage line
";
    const V6: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0
20010db8770000000000000000000000 30 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00200201       lo
20010db8000000000000000000000007 80 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000000 00000001 00000000 01000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    fn show(routes: &[HostRoute]) -> Vec<String> {
        routes
            .iter()
            .map(|r| format!("{} {}", r.net, if r.connected { "dev" } else { "via" }))
            .collect()
    }

    #[test]
    fn parses_the_kernels_ipv4_table() {
        // The default route is via a gateway; down routes are dropped; a
        // host route (/32) keeps its length; a blackhole counts as "via".
        let want = [
            "0.0.0.0/0 via",
            "192.0.2.0/24 dev",
            "10.40.0.7/32 dev",
            "10.40.0.0/16 via",
        ];
        assert_eq!(show(&parse_v4(V4)), want);
    }

    #[test]
    fn parses_every_ipv6_table_without_cache_entries() {
        // The kernel's own unreachable ::/0 in lo is not up: dropped.
        let want = [
            "fd00::/64 dev",
            "::/0 via",
            "fd00::2/128 dev",
            "2001:db8:7700::/48 via",
        ];
        assert_eq!(show(&parse_v6(V6)), want);
    }

    #[test]
    fn the_running_host_table_parses() {
        // Whatever this machine has: reading never fails on Linux.
        let (routes, problems) = host_routes();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(routes.iter().all(|r| r.net == r.net.trunc()));
    }
}
