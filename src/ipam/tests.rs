//! Table tests of the allocator core, written as a specification of F2–F5
//! (product.md) and of the built-in IPAM behaviour gipam copies
//! (ipam-protocol.md §2.3, §2.5, §3). Every request goes through the public
//! plan → apply path, as the service drives it.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| net(s)).collect()
}

fn settings(v4: &[&str], v4ab: u8, v6: &[&str], v6ab: u8) -> Settings {
    Settings {
        v4: nets(v4),
        v6: nets(v6),
        v4ab,
        v6ab,
    }
}

/// The product's example setup: V4=10.40.0.0/16 V6=2001:db8:7700::/48.
fn ipam() -> Ipam {
    Ipam::new(
        settings(&["10.40.0.0/16"], 24, &["2001:db8:7700::/48"], 64),
        State::new(),
    )
    .expect("settings accepted")
}

/// No main pools: only explicit subnets can be requested.
fn bare() -> Ipam {
    Ipam::new(settings(&[], 24, &[], 64), State::new()).expect("settings accepted")
}

fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// RequestPool in `space`: plans and applies.
fn request_pool(
    ipam: &mut Ipam,
    space: &str,
    pool: &str,
    range: &str,
    v6: bool,
    opts: &[(&str, &str)],
) -> Result<PoolId, Error> {
    let req = PoolRequest::parse(space, pool, range, v6, &map(opts))?;
    let change = ipam.plan_pool(&req)?;
    ipam.apply(&change).expect("a planned change applies");
    Ok(change.pool().expect("AddPool names its pool").clone())
}

/// RequestPool in LocalDefault.
fn pool(
    ipam: &mut Ipam,
    pool: &str,
    range: &str,
    v6: bool,
    opts: &[(&str, &str)],
) -> Result<PoolId, Error> {
    request_pool(ipam, LOCAL_SPACE, pool, range, v6, opts)
}

fn request(id: &PoolId, want: Option<&str>, gateway: bool) -> AddressRequest {
    AddressRequest {
        pool: id.clone(),
        address: want.map(ip),
        gateway,
        serial: false,
        mac: None,
        name: None,
    }
}

/// RequestAddress with a full request: plans and applies.
fn addr_req(ipam: &mut Ipam, req: &AddressRequest) -> Result<IpAddr, Error> {
    let (change, address) = ipam.plan_address(req)?;
    ipam.apply(&change).expect("a planned change applies");
    Ok(address)
}

/// RequestAddress: plans and applies.
fn addr(ipam: &mut Ipam, id: &PoolId, want: Option<&str>, gateway: bool) -> Result<IpAddr, Error> {
    addr_req(ipam, &request(id, want, gateway))
}

/// ReleaseAddress of an address that must be leased.
fn release(ipam: &mut Ipam, id: &PoolId, a: &str) {
    let change = ipam
        .plan_release_address(id, ip(a))
        .expect("address inside the pool")
        .expect("address leased");
    ipam.apply(&change).expect("release applies");
}

fn release_pool(ipam: &mut Ipam, id: &PoolId) {
    let change = ipam.plan_release_pool(id).expect("pool held");
    ipam.apply(&change).expect("release applies");
}

/// The variant name of an error, for tables.
fn kind(e: &Error) -> String {
    let dbg = format!("{e:?}");
    dbg.split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// An address, or the kind of error, for tables.
fn outcome(r: Result<IpAddr, Error>) -> String {
    match r {
        Ok(a) => a.to_string(),
        Err(e) => kind(&e),
    }
}

fn subnet_of(r: Result<PoolId, Error>) -> String {
    match r {
        Ok(id) => id.subnet.to_string(),
        Err(e) => kind(&e),
    }
}

/// `n` dynamic requests in a row.
fn dynamics(ipam: &mut Ipam, id: &PoolId, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| outcome(addr(ipam, id, None, false)))
        .collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- F2 blocks

#[test]
fn auto_blocks_are_the_lowest_free_blocks_of_the_main_pool() {
    let mut ipam = ipam();
    let first = pool(&mut ipam, "", "", false, &[]).expect("first network");
    let second = pool(&mut ipam, "", "", false, &[]).expect("second network");
    assert_eq!(first.to_string(), "LocalDefault/10.40.0.0/24");
    assert_eq!(second.to_string(), "LocalDefault/10.40.1.0/24");
    assert!(ipam.state().pool(&first).expect("held").auto);
}

#[test]
fn a_held_block_is_never_returned_again_and_is_reusable_after_release() {
    // The daemon's overlap loop keeps each answer leased and asks again with
    // identical arguments (moby/libnetwork#1386): every answer must be new.
    let mut ipam = ipam();
    let held: Vec<PoolId> = (0..64)
        .map(|_| pool(&mut ipam, "", "", false, &[]).expect("free block"))
        .collect();
    let distinct: HashSet<&PoolId> = held.iter().collect();
    assert_eq!(distinct.len(), held.len(), "a held block came back");
    assert_eq!(held[63].subnet, net("10.40.63.0/24"));

    release_pool(&mut ipam, &held[3]);
    let again = pool(&mut ipam, "", "", false, &[]).expect("released block");
    assert_eq!(again.subnet, net("10.40.3.0/24"));
}

#[test]
fn block_size_comes_from_settings_options_or_a_size_only_subnet() {
    // (pool, v6, options, block a fresh allocator hands out)
    let cases: &[(&str, bool, &[(&str, &str)], &str)] = &[
        ("", false, &[], "10.40.0.0/24"),
        ("", false, &[("v4ab", "28")], "10.40.0.0/28"),
        ("", false, &[("v6ab", "80")], "10.40.0.0/24"),
        ("0.0.0.0/26", false, &[], "10.40.0.0/26"),
        ("0.0.0.0/26", false, &[("v4ab", "28")], "10.40.0.0/26"),
        ("", true, &[], "2001:db8:7700::/64"),
        ("", true, &[("v6ab", "/56")], "2001:db8:7700::/56"),
        ("", true, &[("v4ab", "28")], "2001:db8:7700::/64"),
        ("::/80", true, &[], "2001:db8:7700::/80"),
    ];
    for (spec, v6, opts, want) in cases {
        let mut ipam = ipam();
        let got = subnet_of(pool(&mut ipam, spec, "", *v6, opts));
        assert_eq!(got, *want, "pool {spec:?} v6={v6} opts={opts:?}");
    }
}

#[test]
fn blocks_of_different_sizes_pack_without_overlapping() {
    let mut ipam = ipam();
    let order: &[(&[(&str, &str)], &str)] = &[
        (&[("v4ab", "28")], "10.40.0.0/28"),
        (&[], "10.40.1.0/24"),
        (&[("v4ab", "28")], "10.40.0.16/28"),
        (&[("v4ab", "23")], "10.40.2.0/23"),
        (&[("v4ab", "25")], "10.40.0.128/25"),
    ];
    for (opts, want) in order {
        assert_eq!(
            subnet_of(pool(&mut ipam, "", "", false, opts)),
            *want,
            "{opts:?}"
        );
    }
}

#[test]
fn explicit_subnets_inside_the_main_pool_are_skipped_in_every_space() {
    let mut ipam = ipam();
    pool(&mut ipam, "10.40.0.0/24", "", false, &[]).expect("explicit");
    pool(&mut ipam, "10.40.2.0/23", "", false, &[]).expect("explicit");
    request_pool(&mut ipam, GLOBAL_SPACE, "10.40.5.0/24", "", false, &[]).expect("swarm");
    let got: Vec<String> = (0..3)
        .map(|_| subnet_of(pool(&mut ipam, "", "", false, &[])))
        .collect();
    assert_eq!(
        got,
        strings(&["10.40.1.0/24", "10.40.4.0/24", "10.40.6.0/24"])
    );
}

#[test]
fn main_pools_are_used_in_order_until_exhausted() {
    // (V4, V4AB, blocks handed out before NoFreeBlock)
    let cases: &[(&[&str], u8, &[&str])] = &[
        (&["10.0.0.0/30"], 31, &["10.0.0.0/31", "10.0.0.2/31"]),
        (&["10.0.0.0/25"], 24, &[]),
        (&[], 24, &[]),
        (
            &["10.0.0.0/24", "10.9.0.0/23"],
            24,
            &["10.0.0.0/24", "10.9.0.0/24", "10.9.1.0/24"],
        ),
        (
            &["10.9.0.0/24", "10.0.0.0/24"],
            24,
            &["10.9.0.0/24", "10.0.0.0/24"],
        ),
        (&["10.0.0.0/25", "10.1.0.0/24"], 24, &["10.1.0.0/24"]),
        (
            &["255.255.255.0/24"],
            25,
            &["255.255.255.0/25", "255.255.255.128/25"],
        ),
    ];
    for (v4, v4ab, want) in cases {
        let mut ipam = Ipam::new(settings(v4, *v4ab, &[], 64), State::new()).expect("settings");
        let got: Vec<String> = (0..=want.len())
            .map(|_| subnet_of(pool(&mut ipam, "", "", false, &[])))
            .collect();
        let mut expected = strings(want);
        expected.push("NoFreeBlock".to_string());
        assert_eq!(got, expected, "V4={v4:?} V4AB={v4ab}");
    }
    let ipam = Ipam::new(settings(&["10.0.0.0/30"], 24, &[], 64), State::new()).expect("settings");
    let err = ipam
        .find_block(Family::V4, 24)
        .expect_err("block larger than the pool");
    assert!(
        err.to_string().contains("/24") && err.to_string().contains("10.0.0.0/30"),
        "{err}"
    );
}

#[test]
fn ipv6_blocks_come_from_v6_in_v6ab_steps() {
    let mut ipam = ipam();
    let got: Vec<String> = (0..3)
        .map(|_| subnet_of(pool(&mut ipam, "", "", true, &[])))
        .collect();
    let want = [
        "2001:db8:7700::/64",
        "2001:db8:7700:1::/64",
        "2001:db8:7700:2::/64",
    ];
    assert_eq!(got, strings(&want));
    // The IPv4 pass of the same network is independent.
    assert_eq!(
        subnet_of(pool(&mut ipam, "", "", false, &[])),
        "10.40.0.0/24"
    );
}

#[test]
fn without_v6_settings_blocks_come_from_the_generated_ula() {
    let mut ipam =
        Ipam::new(settings(&["10.40.0.0/16"], 24, &[], 64), State::new()).expect("settings");
    let err = pool(&mut ipam, "", "", true, &[]).expect_err("no ULA yet");
    assert!(err.to_string().contains("none configured"), "{err}");

    let prefix = "fd12:3456:789a::/48".parse().expect("ULA");
    ipam.apply(&Change::SetUla { prefix })
        .expect("SetUla applies");
    let got: Vec<String> = (0..2)
        .map(|_| subnet_of(pool(&mut ipam, "", "", true, &[])))
        .collect();
    assert_eq!(
        got,
        strings(&["fd12:3456:789a::/64", "fd12:3456:789a:1::/64"])
    );
}

#[test]
fn an_ipv6_slash_8_main_pool_is_never_enumerated() {
    let mut ipam = Ipam::new(settings(&[], 24, &["2c00::/8"], 64), State::new()).expect("settings");
    // Held subnets at the bottom are skipped in one step each, not 2^48
    // or 2^8 of them, whatever their address space.
    pool(&mut ipam, "2c00::/16", "", true, &[]).expect("explicit");
    request_pool(&mut ipam, GLOBAL_SPACE, "2c01::/56", "", true, &[]).expect("explicit");
    let started = Instant::now();
    let blocks: Vec<String> = (0..1000)
        .map(|_| subnet_of(pool(&mut ipam, "", "", true, &[])))
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(blocks[0], "2c01:0:0:100::/64");
    assert_eq!(blocks[999], "2c01:0:0:4e7::/64");
    assert_eq!(blocks.iter().collect::<HashSet<_>>().len(), 1000);

    // The very top of the address space does not overflow.
    let mut top = Ipam::new(
        settings(&[], 24, &["ffff:ffff:ffff:ffff::/64"], 64),
        State::new(),
    )
    .expect("settings");
    let got: Vec<String> = (0..2)
        .map(|_| subnet_of(pool(&mut top, "", "", true, &[])))
        .collect();
    assert_eq!(got, strings(&["ffff:ffff:ffff:ffff::/64", "NoFreeBlock"]));
}

// ---------------------------------------------------------- F3 explicit pools

#[test]
fn overlapping_explicit_subnets_are_refused_naming_both_pools() {
    // (space held, subnet held, space asked, subnet asked, range asked)
    let cases = [
        (LOCAL_SPACE, "10.10.0.0/16", LOCAL_SPACE, "10.10.0.0/16", ""),
        (LOCAL_SPACE, "10.10.0.0/16", LOCAL_SPACE, "10.10.5.0/24", ""),
        (LOCAL_SPACE, "10.10.5.0/24", LOCAL_SPACE, "10.10.0.0/16", ""),
        (
            LOCAL_SPACE,
            "10.10.0.0/16",
            LOCAL_SPACE,
            "10.10.0.0/16",
            "10.10.9.0/24",
        ),
        (
            LOCAL_SPACE,
            "10.10.0.0/16",
            GLOBAL_SPACE,
            "10.10.5.0/24",
            "",
        ),
        (
            GLOBAL_SPACE,
            "10.10.0.0/16",
            LOCAL_SPACE,
            "10.10.5.0/24",
            "",
        ),
        (
            LOCAL_SPACE,
            "2001:db8::/48",
            LOCAL_SPACE,
            "2001:db8:0:7::/64",
            "",
        ),
    ];
    for (held_space, held, space, asked, range) in cases {
        let mut ipam = bare();
        let v6 = held.contains(':');
        let held_id = request_pool(&mut ipam, held_space, held, "", v6, &[]).expect(held);
        let err = request_pool(&mut ipam, space, asked, range, v6, &[]).expect_err(asked);
        let text = err.to_string();
        assert_eq!(kind(&err), "Overlap", "{text}");
        assert!(
            text.contains(asked) && text.contains(&held_id.to_string()),
            "{text}"
        );
        assert_eq!(ipam.state().pools().count(), 1, "{asked}: state changed");
    }
    // An explicit subnet may not take a block an automatic pool holds.
    let mut ipam = ipam();
    pool(&mut ipam, "", "", false, &[]).expect("auto");
    let err = pool(&mut ipam, "10.40.0.128/25", "", false, &[]).expect_err("held by auto");
    assert!(
        err.to_string().contains("LocalDefault/10.40.0.0/24"),
        "{err}"
    );
    // Adjacent subnets do not overlap.
    assert!(pool(&mut ipam, "10.40.1.0/24", "", false, &[]).is_ok());
}

#[test]
fn bad_pool_requests_are_refused_with_a_reason() {
    // (space, pool, ip range, v6, options, error kind, the message names)
    let cases: &[(&str, &str, &str, bool, &[(&str, &str)], &str, &str)] = &[
        (
            "LocalDefault",
            "10.1.0.1/24",
            "",
            false,
            &[],
            "HostBits",
            "10.1.0.0/24",
        ),
        (
            "LocalDefault",
            "2001:db8::1/64",
            "",
            true,
            &[],
            "HostBits",
            "2001:db8::/64",
        ),
        (
            "LocalDefault",
            "10.1.0.0",
            "",
            false,
            &[],
            "BadCidr",
            "10.1.0.0",
        ),
        (
            "LocalDefault",
            "10.1.0.0/24",
            "",
            true,
            &[],
            "WrongFamily",
            "10.1.0.0/24",
        ),
        (
            "LocalDefault",
            "2001:db8::/64",
            "",
            false,
            &[],
            "WrongFamily",
            "2001:db8::/64",
        ),
        (
            "LocalDefault",
            "0.0.0.0/26",
            "",
            true,
            &[],
            "WrongFamily",
            "0.0.0.0/26",
        ),
        (
            "LocalDefault",
            "::/80",
            "",
            false,
            &[],
            "WrongFamily",
            "::/80",
        ),
        (
            "LocalDefault",
            "10.1.0.0/24",
            "2001:db8::/64",
            false,
            &[],
            "WrongFamily",
            "2001:db8::/64",
        ),
        (
            "LocalDefault",
            "10.1.0.0/24",
            "10.2.0.0/25",
            false,
            &[],
            "SubPoolOutside",
            "10.2.0.0/25",
        ),
        (
            "LocalDefault",
            "10.1.0.0/24",
            "10.1.0.0/23",
            false,
            &[],
            "SubPoolOutside",
            "10.1.0.0/23",
        ),
        (
            "LocalDefault",
            "10.1.0.0/24",
            "10.1.0.1/25",
            false,
            &[],
            "HostBits",
            "10.1.0.0/25",
        ),
        (
            "LocalDefault",
            "",
            "10.1.0.0/25",
            false,
            &[],
            "SubPoolWithoutPool",
            "10.1.0.0/25",
        ),
        (
            "LocalDefault",
            "0.0.0.0/26",
            "0.0.0.0/28",
            false,
            &[],
            "SizeOnlyWithRange",
            "0.0.0.0/26",
        ),
        (
            "LocalDefault",
            "0.0.0.0/0",
            "",
            false,
            &[],
            "SizeZero",
            "0.0.0.0/0",
        ),
        (
            "Elsewhere",
            "",
            "",
            false,
            &[],
            "UnknownAddressSpace",
            "Elsewhere",
        ),
        (
            "LocalDefault",
            "",
            "",
            false,
            &[("v4bits", "28")],
            "UnknownOption",
            "v4ab, v6ab, serial",
        ),
        (
            "LocalDefault",
            "",
            "",
            false,
            &[("v4ab", "33")],
            "BadOption",
            "v4ab",
        ),
        (
            "LocalDefault",
            "",
            "",
            false,
            &[("serial", "maybe")],
            "BadOption",
            "serial",
        ),
    ];
    let mut ipam = ipam();
    for (space, p, range, v6, opts, want, names) in cases {
        let err = request_pool(&mut ipam, space, p, range, *v6, opts).expect_err(p);
        assert_eq!(
            kind(&err),
            *want,
            "{space} {p:?} {range:?} v6={v6} {opts:?}: {err}"
        );
        assert!(err.to_string().contains(names), "{err}");
    }
    let err = pool(&mut ipam, "", "", false, &[("v4bits", "28")]).expect_err("typo");
    assert!(err.to_string().contains("v4bits"), "{err}");
    assert_eq!(
        ipam.state().pools().count(),
        0,
        "a refused request changed the state"
    );
}

#[test]
fn docker_options_and_the_empty_space_are_accepted() {
    let mut ipam = ipam();
    let opts = [
        ("com.docker.network.ipam.serial", "true"),
        ("com.docker.network.driver.mtu", "1400"),
    ];
    let id = pool(&mut ipam, "", "", false, &opts).expect("docker keys pass");
    assert!(ipam.state().pool(&id).expect("held").serial);
    let id = request_pool(&mut ipam, "", "10.9.0.0/24", "", false, &[]).expect("empty space");
    assert_eq!(id.space, LOCAL_SPACE);
}

// ----------------------------------------------------------- F4/F5 addresses

#[test]
fn addresses_by_prefix_length_until_the_pool_is_full() {
    // (subnet, gateway requested first?, every address handed out in order;
    // after them the pool is full)
    let cases: &[(&str, bool, &[&str])] = &[
        ("10.1.0.0/30", true, &["10.1.0.1", "10.1.0.2"]),
        (
            "10.1.0.0/29",
            true,
            &[
                "10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6",
            ],
        ),
        // RFC 3021: a /31 has no network or broadcast address.
        ("10.1.0.0/31", true, &["10.1.0.0", "10.1.0.1"]),
        ("10.1.0.0/31", false, &["10.1.0.0", "10.1.0.1"]),
        ("10.1.0.0/32", true, &["10.1.0.0"]),
        ("10.1.0.0/32", false, &["10.1.0.0"]),
        // RFC 4291 §2.6.1: the subnet-router anycast address is not handed out.
        (
            "2001:db8::/126",
            true,
            &["2001:db8::1", "2001:db8::2", "2001:db8::3"],
        ),
        // RFC 6164: a /127 uses both addresses.
        ("2001:db8::/127", true, &["2001:db8::", "2001:db8::1"]),
        ("2001:db8::/127", false, &["2001:db8::", "2001:db8::1"]),
        ("2001:db8::/128", true, &["2001:db8::"]),
    ];
    for (subnet, gateway, want) in cases {
        let mut ipam = bare();
        let id = pool(&mut ipam, subnet, "", subnet.contains(':'), &[]).expect(subnet);
        let mut got = Vec::new();
        if *gateway {
            got.push(outcome(addr(&mut ipam, &id, None, true)));
        }
        got.extend(dynamics(
            &mut ipam,
            &id,
            want.len() + 1 - usize::from(*gateway),
        ));
        let mut expected = strings(want);
        expected.push("PoolFull".to_string());
        assert_eq!(got, expected, "{subnet} gateway={gateway}");
    }
}

#[test]
fn a_slash_24_hands_out_1_as_gateway_then_2_to_254() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &[]).expect("pool");
    assert_eq!(outcome(addr(&mut ipam, &id, None, true)), "10.1.0.1");
    let got = dynamics(&mut ipam, &id, 254);
    let want: Vec<String> = (2..=254).map(|i| format!("10.1.0.{i}")).collect();
    assert_eq!(got[..253], want[..]);
    assert_eq!(got[253], "PoolFull");
}

#[test]
fn a_slash_64_gateway_is_1_and_anycast_is_never_handed_out() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "2001:db8:1::/64", "", true, &[]).expect("pool");
    assert_eq!(outcome(addr(&mut ipam, &id, None, true)), "2001:db8:1::1");
    assert_eq!(
        dynamics(&mut ipam, &id, 2),
        strings(&["2001:db8:1::2", "2001:db8:1::3"])
    );
    let top = "2001:db8:1:0:ffff:ffff:ffff:ffff";
    assert_eq!(
        outcome(addr(&mut ipam, &id, Some(top), false)),
        top,
        "no broadcast in IPv6"
    );
    let any = addr(&mut ipam, &id, Some("2001:db8:1::"), false).expect_err("anycast");
    assert_eq!(kind(&any), "AddressReserved");
}

#[test]
fn a_slash_64_serves_100_000_addresses_without_enumerating() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "2001:db8:1::/64", "", true, &[]).expect("pool");
    let started = Instant::now();
    let mut last = None;
    for _ in 0..100_000 {
        last = Some(addr(&mut ipam, &id, None, false).expect("a /64 never fills"));
    }
    assert_eq!(last, Some(ip("2001:db8:1::1:86a0")));
    // A release in the middle cools; the next one continues at the top.
    release(&mut ipam, &id, "2001:db8:1::5");
    assert_eq!(
        outcome(addr(&mut ipam, &id, None, false)),
        "2001:db8:1::1:86a1"
    );
    assert_eq!(ipam.state().lease_count(), 100_000);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn dynamic_addresses_stay_in_the_ip_range_and_skip_its_first_address() {
    // (subnet, --ip-range, every dynamic address in order; then full)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "10.10.0.0/16",
            "10.10.5.0/29",
            &[
                "10.10.5.1",
                "10.10.5.2",
                "10.10.5.3",
                "10.10.5.4",
                "10.10.5.5",
                "10.10.5.6",
                "10.10.5.7",
            ],
        ),
        (
            "10.0.0.0/24",
            "10.0.0.0/30",
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        ),
        (
            "10.0.0.0/24",
            "10.0.0.252/30",
            &["10.0.0.253", "10.0.0.254"],
        ),
        ("10.0.0.0/24", "10.0.0.8/31", &["10.0.0.8", "10.0.0.9"]),
        ("10.0.0.0/24", "10.0.0.8/32", &["10.0.0.8"]),
        (
            "2001:db8::/64",
            "2001:db8::100/126",
            &["2001:db8::101", "2001:db8::102", "2001:db8::103"],
        ),
    ];
    for (subnet, range, want) in cases {
        let mut ipam = bare();
        let id = pool(&mut ipam, subnet, range, subnet.contains(':'), &[]).expect(subnet);
        assert_eq!(id.to_string(), format!("LocalDefault/{subnet}/{range}"));
        let mut expected = strings(want);
        expected.push("PoolFull".to_string());
        assert_eq!(
            dynamics(&mut ipam, &id, want.len() + 1),
            expected,
            "{subnet} {range}"
        );
    }
}

#[test]
fn explicit_addresses_are_honoured_or_refused() {
    // The worked example of ipam-protocol.md §2.7, then refusals.
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.10.0.0/16", "10.10.5.0/24", false, &[]).expect("pool");
    let cases: &[(Option<&str>, bool, &str)] = &[
        (Some("10.10.5.254"), true, "10.10.5.254"), // --gateway inside the range
        (Some("10.10.1.5"), false, "10.10.1.5"),    // --aux-address outside the range
        (None, false, "10.10.5.1"),
        (Some("10.10.5.0"), false, "10.10.5.0"), // --ip may take the range's first
        (Some("10.10.200.9"), false, "10.10.200.9"),
        (Some("10.10.0.0"), false, "AddressReserved"),
        (Some("10.10.255.255"), false, "AddressReserved"),
        (Some("10.10.1.5"), false, "AddressInUse"),
        (Some("10.10.5.254"), true, "AddressInUse"),
        (Some("10.11.0.1"), false, "AddressOutside"),
        (Some("2001:db8::1"), false, "AddressOutside"),
        (None, false, "10.10.5.2"),
    ];
    for (want, gateway, expect) in cases {
        let got = outcome(addr(&mut ipam, &id, *want, *gateway));
        assert_eq!(got, *expect, "{want:?} gateway={gateway}");
    }
    let err = addr(&mut ipam, &id, Some("10.10.1.5"), false).expect_err("in use");
    assert!(
        err.to_string().contains("10.10.1.5") && err.to_string().contains(&id.to_string()),
        "{err}"
    );
    let unknown: PoolId = "LocalDefault/10.99.0.0/24".parse().expect("id");
    assert_eq!(
        outcome(addr(&mut ipam, &unknown, None, false)),
        "UnknownPool"
    );
    assert_eq!(
        ipam.state().lease_count(),
        6,
        "a refused request changed the state"
    );
}

#[test]
fn recently_released_addresses_are_handed_out_last() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/29", "", false, &[]).expect("pool");
    addr(&mut ipam, &id, None, true).expect("gateway .1");
    assert_eq!(
        dynamics(&mut ipam, &id, 4),
        strings(&["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5"])
    );
    release(&mut ipam, &id, "10.1.0.5");
    // .5 is free but cooling: .6 goes first, then the cooled .5 comes back.
    assert_eq!(
        dynamics(&mut ipam, &id, 3),
        strings(&["10.1.0.6", "10.1.0.5", "PoolFull"])
    );
    // Cooled addresses come back oldest first, not lowest first.
    release(&mut ipam, &id, "10.1.0.4");
    release(&mut ipam, &id, "10.1.0.2");
    assert_eq!(
        dynamics(&mut ipam, &id, 3),
        strings(&["10.1.0.4", "10.1.0.2", "PoolFull"])
    );
    // Cooling only affects the allocator's own choice: --ip gets it at once.
    release(&mut ipam, &id, "10.1.0.3");
    assert_eq!(
        outcome(addr(&mut ipam, &id, Some("10.1.0.3"), false)),
        "10.1.0.3"
    );
    assert_eq!(dynamics(&mut ipam, &id, 1), strings(&["PoolFull"]));
}

#[test]
fn serial_pools_rotate_and_wrap() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &[("serial", "true")]).expect("pool");
    assert_eq!(outcome(addr(&mut ipam, &id, None, true)), "10.1.0.1");
    assert_eq!(
        dynamics(&mut ipam, &id, 2),
        strings(&["10.1.0.2", "10.1.0.3"])
    );
    release(&mut ipam, &id, "10.1.0.2");
    assert_eq!(dynamics(&mut ipam, &id, 1), strings(&["10.1.0.4"]));
    // A static address does not move the cursor (moby address_space.go).
    addr(&mut ipam, &id, Some("10.1.0.100"), false).expect("static");
    assert_eq!(dynamics(&mut ipam, &id, 1), strings(&["10.1.0.5"]));

    // Wrap: the cursor at .5 (a replayed dynamic lease) in a /29 with the
    // gateway at .1 gives .6, then starts again from the bottom.
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/29", "", false, &[("serial", "true")]).expect("pool");
    addr(&mut ipam, &id, None, true).expect("gateway .1");
    let replayed = Change::AddAddress {
        pool: id.clone(),
        address: ip("10.1.0.5"),
        gateway: false,
        dynamic: true,
        mac: None,
        name: None,
    };
    ipam.apply(&replayed).expect("replay");
    let want = ["10.1.0.6", "10.1.0.2", "10.1.0.3", "10.1.0.4", "PoolFull"];
    assert_eq!(dynamics(&mut ipam, &id, 5), strings(&want));
}

#[test]
fn serial_per_request_rotates_a_pool_created_without_it() {
    // Docker's swarm allocator sends com.docker.network.ipam.serial per
    // request; the cursor is the last dynamic lease (here a replayed one).
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &[]).expect("pool");
    let replayed = Change::AddAddress {
        pool: id.clone(),
        address: ip("10.1.0.50"),
        gateway: false,
        dynamic: true,
        mac: None,
        name: None,
    };
    ipam.apply(&replayed).expect("replay");
    let mut serial = request(&id, None, false);
    serial.serial = true;
    assert_eq!(outcome(addr_req(&mut ipam, &serial)), "10.1.0.51");
    assert_eq!(
        outcome(addr(&mut ipam, &id, None, false)),
        "10.1.0.1",
        "lowest free"
    );
    assert_eq!(
        outcome(addr_req(&mut ipam, &serial)),
        "10.1.0.2",
        "cursor moved to .1"
    );
}

// ------------------------------------------------------------------ releases

#[test]
fn releases_are_idempotent_but_reject_foreign_addresses() {
    let mut ipam = bare();
    let unknown: PoolId = "LocalDefault/10.99.0.0/24".parse().expect("id");
    assert_eq!(ipam.plan_release_pool(&unknown), None);
    assert_eq!(
        ipam.plan_release_address(&unknown, ip("10.99.0.2")),
        Ok(None)
    );

    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &[]).expect("pool");
    addr(&mut ipam, &id, Some("10.1.0.7"), false).expect("lease");
    // (address, outcome of planning its release)
    let cases = [
        ("10.1.0.8", "nothing"),
        ("10.1.0.7", "release"),
        ("10.1.0.0", "nothing"),
        ("10.2.0.1", "AddressOutside"),
        ("2001:db8::1", "AddressOutside"),
    ];
    for (a, want) in cases {
        let got = match ipam.plan_release_address(&id, ip(a)) {
            Ok(None) => "nothing".to_string(),
            Ok(Some(_)) => "release".to_string(),
            Err(e) => kind(&e),
        };
        assert_eq!(got, want, "{a}");
    }
    release(&mut ipam, &id, "10.1.0.7");
    assert_eq!(
        ipam.plan_release_address(&id, ip("10.1.0.7")),
        Ok(None),
        "second release"
    );

    // Releasing the pool frees every address; a second release is a no-op.
    addr(&mut ipam, &id, Some("10.1.0.2"), false).expect("lease");
    release_pool(&mut ipam, &id);
    assert_eq!(ipam.plan_release_pool(&id), None);
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &[]).expect("same subnet again");
    assert_eq!(
        outcome(addr(&mut ipam, &id, Some("10.1.0.2"), false)),
        "10.1.0.2"
    );
}

// ----------------------------------------------------------------- snapshots

const MAC: Mac = Mac([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);

/// Several pools in both spaces and families, leases with MAC and name,
/// cooling addresses, a serial cursor and a released block.
fn populated() -> (Ipam, Vec<PoolId>) {
    let mut ipam = ipam();
    let serial = [("v4ab", "29"), ("serial", "true")];
    let a = pool(&mut ipam, "", "", false, &serial).expect("10.40.0.0/29");
    let gone = pool(&mut ipam, "", "", false, &[]).expect("10.40.1.0/24");
    let b = pool(&mut ipam, "", "", true, &[]).expect("2001:db8:7700::/64");
    let c = request_pool(
        &mut ipam,
        GLOBAL_SPACE,
        "10.99.0.0/24",
        "10.99.0.8/29",
        false,
        &[],
    )
    .expect("explicit");

    addr(&mut ipam, &a, None, true).expect("gateway");
    dynamics(&mut ipam, &a, 3); // .2 .3 .4, cursor .4
    release(&mut ipam, &a, "10.40.0.2");

    let mut req = request(&b, None, false);
    req.mac = Some(MAC);
    req.name = Some("web-1".to_string());
    addr_req(&mut ipam, &req).expect("::1");
    req.mac = None;
    req.name = Some("web-2".to_string());
    addr_req(&mut ipam, &req).expect("::2");
    release(&mut ipam, &b, "2001:db8:7700::2");

    dynamics(&mut ipam, &c, 4); // .9 .10 .11 .12
    release(&mut ipam, &c, "10.99.0.11");
    release(&mut ipam, &c, "10.99.0.9");
    release_pool(&mut ipam, &gone);
    (ipam, vec![a, b, c])
}

/// The same requests against any allocator; equal answers mean equal behaviour.
fn script(ipam: &mut Ipam, ids: &[PoolId]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.extend(dynamics(ipam, id, 6));
    }
    out.push(subnet_of(pool(ipam, "", "", false, &[])));
    out.push(subnet_of(pool(ipam, "", "", true, &[])));
    out
}

fn reopen(state: State) -> Ipam {
    Ipam::new(
        settings(&["10.40.0.0/16"], 24, &["2001:db8:7700::/48"], 64),
        state,
    )
    .expect("same settings")
}

#[test]
fn a_state_rebuilt_from_its_snapshot_answers_the_same() {
    let (mut original, ids) = populated();
    let snapshot = original.state().snapshot();
    let json = serde_json::to_string_pretty(&snapshot).expect("serialise");
    let parsed: Snapshot = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(
        serde_json::to_value(&parsed).expect("value"),
        serde_json::to_value(&snapshot).expect("value"),
        "JSON round trip"
    );
    let mut restored = reopen(State::from_snapshot(parsed).expect("snapshot loads"));

    let lease = restored
        .state()
        .pool(&ids[1])
        .expect("v6 pool")
        .leases()
        .find(|(a, _)| *a == ip("2001:db8:7700::1"))
        .map(|(_, l)| l.clone())
        .expect("named lease");
    assert_eq!(
        (lease.mac, lease.name.as_deref()),
        (Some(MAC), Some("web-1"))
    );

    let want = strings(&[
        // serial pool: after the cursor, then the wrap finds only cooling .2
        "10.40.0.5",
        "10.40.0.6",
        "10.40.0.2",
        "PoolFull",
        "PoolFull",
        "PoolFull",
        "2001:db8:7700::3",
        "2001:db8:7700::4",
        "2001:db8:7700::5",
        "2001:db8:7700::6",
        "2001:db8:7700::7",
        "2001:db8:7700::8",
        // range pool: fresh addresses, then the cooled ones oldest first
        "10.99.0.13",
        "10.99.0.14",
        "10.99.0.15",
        "10.99.0.11",
        "10.99.0.9",
        "PoolFull",
        "10.40.1.0/24",
        "2001:db8:7700:1::/64",
    ]);
    assert_eq!(script(&mut original, &ids), want, "original");
    assert_eq!(script(&mut restored, &ids), want, "restored");
    assert_eq!(
        serde_json::to_value(original.state().snapshot()).expect("value"),
        serde_json::to_value(restored.state().snapshot()).expect("value"),
    );
}

#[test]
fn settings_may_not_orphan_a_held_auto_block() {
    let mut first = ipam();
    pool(&mut first, "", "", false, &[]).expect("auto 10.40.0.0/24");
    pool(&mut first, "", "", true, &[]).expect("auto 2001:db8:7700::/64");
    pool(&mut first, "192.168.50.0/24", "", false, &[]).expect("explicit");
    let state = first.state().clone();
    // (V4, V6, Ok, or what the error names)
    let cases: &[(&[&str], &[&str], Result<(), &[&str]>)] = &[
        (&["10.40.0.0/16"], &["2001:db8:7700::/48"], Ok(())),
        (&["10.40.0.0/15"], &["2001:db8:7700::/40"], Ok(())),
        (
            &["10.50.0.0/16", "10.40.0.0/16"],
            &["2001:db8:7700::/48"],
            Ok(()),
        ),
        (
            &["10.50.0.0/16"],
            &["2001:db8:7700::/48"],
            Err(&["V4=10.50.0.0/16", "LocalDefault/10.40.0.0/24"]),
        ),
        (
            &["10.40.0.0/16"],
            &["2001:db8:9900::/48"],
            Err(&["V6=2001:db8:9900::/48", "LocalDefault/2001:db8:7700::/64"]),
        ),
        (
            &["10.40.0.128/25"],
            &["2001:db8:7700::/48"],
            Err(&["V4=", "10.40.0.0/24"]),
        ),
    ];
    for (v4, v6, want) in cases {
        let got = Ipam::new(settings(v4, 24, v6, 64), state.clone());
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(names)) => {
                assert!(
                    names.iter().all(|n| e.contains(n)),
                    "V4={v4:?} V6={v6:?}: {e}"
                );
                assert!(!e.contains("192.168.50"), "explicit pool blamed: {e}");
            }
            (got, _) => panic!("V4={v4:?} V6={v6:?}: got {:?}", got.map(|_| ())),
        }
    }
}
