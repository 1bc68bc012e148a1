//! Table tests of the allocator core, written as a specification of F2–F5
//! (product.md) and of the built-in IPAM behaviour gipam copies
//! (ipam-protocol.md §2.3, §2.5, §3). Every request goes through the public
//! plan → apply path, as the service drives it.
//!
//! Table rows are strings: columns separated by `|`, `-` for an empty
//! column, lists separated by spaces (options by commas: `v4ab=28,serial=true`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn pool_id(s: &str) -> PoolId {
    s.parse().expect("test pool id")
}

/// Settings from comma-separated main pools.
fn settings(v4: &str, v4ab: u8, v6: &str, v6ab: u8) -> Settings {
    let nets = |list: &str| -> Vec<IpNet> {
        let list = list.split(',').filter(|s| !s.is_empty() && *s != "-");
        list.map(|s| s.parse().expect("test CIDR")).collect()
    };
    Settings {
        v4: nets(v4),
        v6: nets(v6),
        v4ab,
        v6ab,
    }
}

/// The product's example: V4=10.40.0.0/16 V6=2001:db8:7700::/48.
fn ipam() -> Ipam {
    let s = settings("10.40.0.0/16", 24, "2001:db8:7700::/48", 64);
    Ipam::new(s, State::new()).expect("settings accepted")
}

/// No main pools: only explicit subnets can be requested.
fn bare() -> Ipam {
    Ipam::new(settings("", 24, "", 64), State::new()).expect("settings accepted")
}

/// Columns of a table row.
fn cols(row: &str) -> Vec<&str> {
    row.split('|')
        .map(str::trim)
        .map(|c| if c == "-" { "" } else { c })
        .collect()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// `k=v,k=v` as a list of options.
fn opts_of(s: &str) -> Vec<(&str, &str)> {
    let kvs = s.split(',').filter(|kv| !kv.is_empty());
    kvs.map(|kv| kv.split_once('=').expect("k=v")).collect()
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
    let opts: HashMap<String, String> = opts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let req = PoolRequest::parse(space, pool, range, v6, &opts)?;
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
fn addr(ipam: &mut Ipam, id: &PoolId, want: Option<&str>, gw: bool) -> Result<IpAddr, Error> {
    addr_req(ipam, &request(id, want, gw))
}

/// ReleaseAddress of an address that must be leased.
fn release(ipam: &mut Ipam, id: &PoolId, a: &str) {
    let planned = ipam
        .plan_release_address(id, ip(a))
        .expect("address inside the pool");
    ipam.apply(&planned.expect("address leased"))
        .expect("release applies");
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

/// An address, or the kind of error.
fn outcome(r: Result<IpAddr, Error>) -> String {
    r.map_or_else(|e| kind(&e), |a| a.to_string())
}

/// A pool's subnet, or the kind of error.
fn subnet_of(r: Result<PoolId, Error>) -> String {
    r.map_or_else(|e| kind(&e), |id| id.subnet.to_string())
}

/// `n` dynamic requests in a row.
fn dynamics(ipam: &mut Ipam, id: &PoolId, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| outcome(addr(ipam, id, None, false)))
        .collect()
}

/// `n` automatic pools in a row.
fn autos(ipam: &mut Ipam, n: usize, v6: bool, opts: &[(&str, &str)]) -> Vec<String> {
    (0..n)
        .map(|_| subnet_of(pool(ipam, "", "", v6, opts)))
        .collect()
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
    assert_eq!(
        held.iter().collect::<HashSet<_>>().len(),
        64,
        "a held block came back"
    );
    assert_eq!(held[63].subnet.to_string(), "10.40.63.0/24");

    release_pool(&mut ipam, &held[3]);
    assert_eq!(
        autos(&mut ipam, 2, false, &[]),
        words("10.40.3.0/24 10.40.64.0/24")
    );
}

#[test]
fn block_size_comes_from_settings_options_or_a_size_only_subnet() {
    let cases = [
        // pool spec | pass | --ipam-opt | block a fresh allocator hands out
        "-          | v4 | -        | 10.40.0.0/24",
        "-          | v4 | v4ab=28  | 10.40.0.0/28",
        "-          | v4 | v6ab=80  | 10.40.0.0/24",
        "0.0.0.0/26 | v4 | -        | 10.40.0.0/26",
        "0.0.0.0/26 | v4 | v4ab=28  | 10.40.0.0/26",
        "-          | v6 | -        | 2001:db8:7700::/64",
        "-          | v6 | v6ab=/56 | 2001:db8:7700::/56",
        "-          | v6 | v4ab=28  | 2001:db8:7700::/64",
        "::/80      | v6 | -        | 2001:db8:7700::/80",
    ];
    for row in cases {
        let [spec, pass, opts, want] = cols(row)[..] else {
            panic!("{row}")
        };
        let got = subnet_of(pool(&mut ipam(), spec, "", pass == "v6", &opts_of(opts)));
        assert_eq!(got, want, "{row}");
    }
}

#[test]
fn blocks_of_different_sizes_pack_without_overlapping() {
    let mut ipam = ipam();
    // --ipam-opt of each network, in order | block it gets
    let order = [
        "v4ab=28 | 10.40.0.0/28",
        "-       | 10.40.1.0/24",
        "v4ab=28 | 10.40.0.16/28",
        "v4ab=23 | 10.40.2.0/23",
        "v4ab=25 | 10.40.0.128/25",
    ];
    for row in order {
        let [opts, want] = cols(row)[..] else {
            panic!("{row}")
        };
        assert_eq!(autos(&mut ipam, 1, false, &opts_of(opts)), [want], "{row}");
    }
}

#[test]
fn explicit_subnets_inside_the_main_pool_are_skipped_in_every_space() {
    let mut ipam = ipam();
    pool(&mut ipam, "10.40.0.0/24", "", false, &[]).expect("explicit");
    pool(&mut ipam, "10.40.2.0/23", "", false, &[]).expect("explicit");
    request_pool(&mut ipam, GLOBAL_SPACE, "10.40.5.0/24", "", false, &[]).expect("swarm");
    let want = words("10.40.1.0/24 10.40.4.0/24 10.40.6.0/24");
    assert_eq!(autos(&mut ipam, 3, false, &[]), want);
}

#[test]
fn main_pools_are_used_in_order_until_exhausted() {
    let cases = [
        // V4 | V4AB | blocks handed out before NoFreeBlock
        "10.0.0.0/30             | 31 | 10.0.0.0/31 10.0.0.2/31",
        "10.0.0.0/25             | 24 | -",
        "-                       | 24 | -",
        "10.0.0.0/24,10.9.0.0/23 | 24 | 10.0.0.0/24 10.9.0.0/24 10.9.1.0/24",
        "10.9.0.0/24,10.0.0.0/24 | 24 | 10.9.0.0/24 10.0.0.0/24",
        "10.0.0.0/25,10.1.0.0/24 | 24 | 10.1.0.0/24",
        "255.255.255.0/24        | 25 | 255.255.255.0/25 255.255.255.128/25",
    ];
    for row in cases {
        let [v4, v4ab, blocks] = cols(row)[..] else {
            panic!("{row}")
        };
        let s = settings(v4, v4ab.parse().expect("prefix"), "", 64);
        let mut ipam = Ipam::new(s, State::new()).expect("settings");
        let mut want = words(blocks);
        want.push("NoFreeBlock".to_string());
        assert_eq!(autos(&mut ipam, want.len(), false, &[]), want, "{row}");
    }
    let ipam = Ipam::new(settings("10.0.0.0/30", 24, "", 64), State::new()).expect("settings");
    let err = ipam
        .find_block(Family::V4, 24)
        .expect_err("block larger than the pool");
    assert!(
        err.to_string()
            .contains("/24 block left in the main IPv4 pools (10.0.0.0/30)")
    );
}

#[test]
fn ipv6_blocks_come_from_v6_in_v6ab_steps() {
    let mut ipam = ipam();
    let want = words("2001:db8:7700::/64 2001:db8:7700:1::/64 2001:db8:7700:2::/64");
    assert_eq!(autos(&mut ipam, 3, true, &[]), want);
    // The IPv4 pass of the same network is independent.
    assert_eq!(autos(&mut ipam, 1, false, &[]), ["10.40.0.0/24"]);
}

#[test]
fn without_v6_settings_blocks_come_from_the_generated_ula() {
    let s = settings("10.40.0.0/16", 24, "", 64);
    let mut ipam = Ipam::new(s, State::new()).expect("settings");
    let err = pool(&mut ipam, "", "", true, &[]).expect_err("no ULA yet");
    assert!(err.to_string().contains("none configured"), "{err}");

    let prefix = "fd12:3456:789a::/48".parse().expect("ULA");
    ipam.apply(&Change::SetUla { prefix })
        .expect("SetUla applies");
    let want = words("fd12:3456:789a::/64 fd12:3456:789a:1::/64");
    assert_eq!(autos(&mut ipam, 2, true, &[]), want);
}

#[test]
fn an_ipv6_slash_8_main_pool_is_never_enumerated() {
    let s = settings("", 24, "2c00::/8", 64);
    let mut ipam = Ipam::new(s, State::new()).expect("settings");
    // Held subnets at the bottom are skipped in one step each (not 2^48 and
    // 2^8 steps), whatever their address space.
    pool(&mut ipam, "2c00::/16", "", true, &[]).expect("explicit");
    request_pool(&mut ipam, GLOBAL_SPACE, "2c01::/56", "", true, &[]).expect("explicit");
    let started = Instant::now();
    let blocks = autos(&mut ipam, 1000, true, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (&*blocks[0], &*blocks[999]),
        ("2c01:0:0:100::/64", "2c01:0:0:4e7::/64")
    );
    assert_eq!(blocks.iter().collect::<HashSet<_>>().len(), 1000);

    // The very top of the address space does not overflow.
    let s = settings("", 24, "ffff:ffff:ffff:ffff::/64", 64);
    let mut top = Ipam::new(s, State::new()).expect("settings");
    let want = words("ffff:ffff:ffff:ffff::/64 NoFreeBlock");
    assert_eq!(autos(&mut top, 2, true, &[]), want);
}

// ---------------------------------------------------------- F3 explicit pools

#[test]
fn overlapping_subnets_are_refused_naming_both_pools() {
    let cases = [
        // space held | subnet held | space asked | subnet asked | range asked
        "LocalDefault  | 10.10.0.0/16  | LocalDefault  | 10.10.0.0/16      | -",
        "LocalDefault  | 10.10.0.0/16  | LocalDefault  | 10.10.5.0/24      | -",
        "LocalDefault  | 10.10.5.0/24  | LocalDefault  | 10.10.0.0/16      | -",
        "LocalDefault  | 10.10.0.0/16  | LocalDefault  | 10.10.0.0/16      | 10.10.9.0/24",
        "LocalDefault  | 10.10.0.0/16  | GlobalDefault | 10.10.5.0/24      | -",
        "GlobalDefault | 10.10.0.0/16  | LocalDefault  | 10.10.5.0/24      | -",
        "LocalDefault  | 2001:db8::/48 | LocalDefault  | 2001:db8:0:7::/64 | -",
    ];
    for row in cases {
        let [held_space, held, space, asked, range] = cols(row)[..] else {
            panic!("{row}")
        };
        let mut ipam = bare();
        let v6 = held.contains(':');
        let held_id = request_pool(&mut ipam, held_space, held, "", v6, &[]).expect(row);
        let err = request_pool(&mut ipam, space, asked, range, v6, &[]).expect_err(row);
        let text = err.to_string();
        assert_eq!(kind(&err), "Overlap", "{row}: {text}");
        assert!(
            text.contains(asked) && text.contains(&held_id.to_string()),
            "{text}"
        );
        assert_eq!(ipam.state().pools().count(), 1, "{row}: state changed");
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
    let cases = [
        // space | pool | ip range | pass | --ipam-opt | error | what the message names
        "LocalDefault | 10.1.0.1/24    | -             | v4 | -          | HostBits    | 10.1.0.0/24",
        "LocalDefault | 2001:db8::1/64 | -             | v6 | -          | HostBits    | 2001:db8::/64",
        "LocalDefault | 10.1.0.0       | -             | v4 | -          | BadCidr     | 10.1.0.0",
        "LocalDefault | 10.1.0.0/24    | -             | v6 | -          | WrongFamily | 10.1.0.0/24",
        "LocalDefault | 2001:db8::/64  | -             | v4 | -          | WrongFamily | 2001:db8::/64",
        "LocalDefault | 0.0.0.0/26     | -             | v6 | -          | WrongFamily | 0.0.0.0/26",
        "LocalDefault | ::/80          | -             | v4 | -          | WrongFamily | ::/80",
        "LocalDefault | 10.1.0.0/24    | 2001:db8::/64 | v4 | -          | WrongFamily | 2001:db8::/64",
        "LocalDefault | 10.1.0.0/24    | 10.2.0.0/25   | v4 | -          | SubPoolOutside | 10.2.0.0/25",
        "LocalDefault | 10.1.0.0/24    | 10.1.0.0/23   | v4 | -          | SubPoolOutside | 10.1.0.0/23",
        "LocalDefault | 10.1.0.0/24    | 10.1.0.1/25   | v4 | -          | HostBits    | 10.1.0.0/25",
        "LocalDefault | -              | 10.1.0.0/25   | v4 | -          | SubPoolWithoutPool | 10.1.0.0/25",
        "LocalDefault | 0.0.0.0/26     | 0.0.0.0/28    | v4 | -          | SizeOnlyWithRange | 0.0.0.0/26",
        "LocalDefault | 0.0.0.0/0      | -             | v4 | -          | SizeZero    | 0.0.0.0/0",
        "Elsewhere    | -              | -             | v4 | -          | UnknownAddressSpace | Elsewhere",
        "LocalDefault | -              | -             | v4 | v4bits=28  | UnknownOption | v4ab, v6ab, serial",
        "LocalDefault | -              | -             | v4 | v4bits=28  | UnknownOption | v4bits",
        "LocalDefault | -              | -             | v4 | v4ab=33    | BadOption   | v4ab",
        "LocalDefault | -              | -             | v4 | serial=may | BadOption   | serial",
    ];
    let mut ipam = ipam();
    for row in cases {
        let [space, p, range, pass, opts, want, names] = cols(row)[..] else {
            panic!("{row}")
        };
        let got = request_pool(&mut ipam, space, p, range, pass == "v6", &opts_of(opts));
        let err = got.expect_err(row);
        assert_eq!(kind(&err), want, "{row}: {err}");
        assert!(err.to_string().contains(names), "{row}: {err}");
    }
    assert_eq!(
        ipam.state().pools().count(),
        0,
        "a refused request changed the state"
    );
}

#[test]
fn docker_options_and_the_empty_space_are_accepted() {
    let mut ipam = ipam();
    let opts = opts_of("com.docker.network.ipam.serial=true,com.docker.network.driver.mtu=1400");
    let id = pool(&mut ipam, "", "", false, &opts).expect("docker keys pass");
    assert!(ipam.state().pool(&id).expect("held").serial);
    let id = request_pool(&mut ipam, "", "10.9.0.0/24", "", false, &[]).expect("empty space");
    assert_eq!(id.space, LOCAL_SPACE);
}

// ----------------------------------------------------------- F4/F5 addresses

#[test]
fn addresses_by_prefix_length_until_the_pool_is_full() {
    let cases = [
        // subnet | gateway first? | every address handed out, in order
        "10.1.0.0/30    | gw | 10.1.0.1 10.1.0.2",
        "10.1.0.0/29    | gw | 10.1.0.1 10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5 10.1.0.6",
        // RFC 3021: a /31 has no network or broadcast address.
        "10.1.0.0/31    | gw | 10.1.0.0 10.1.0.1",
        "10.1.0.0/31    | -  | 10.1.0.0 10.1.0.1",
        "10.1.0.0/32    | gw | 10.1.0.0",
        "10.1.0.0/32    | -  | 10.1.0.0",
        // RFC 4291 §2.6.1: the subnet-router anycast address is not handed out.
        "2001:db8::/126 | gw | 2001:db8::1 2001:db8::2 2001:db8::3",
        // RFC 6164: a /127 uses both addresses.
        "2001:db8::/127 | gw | 2001:db8:: 2001:db8::1",
        "2001:db8::/127 | -  | 2001:db8:: 2001:db8::1",
        "2001:db8::/128 | gw | 2001:db8::",
    ];
    for row in cases {
        let [subnet, gw, list] = cols(row)[..] else {
            panic!("{row}")
        };
        let mut ipam = bare();
        let id = pool(&mut ipam, subnet, "", subnet.contains(':'), &[]).expect(row);
        let mut want = words(list);
        want.push("PoolFull".to_string());
        let mut got = Vec::new();
        if gw == "gw" {
            got.push(outcome(addr(&mut ipam, &id, None, true)));
        }
        got.extend(dynamics(&mut ipam, &id, want.len() - got.len()));
        assert_eq!(got, want, "{row}");
    }
}

#[test]
fn a_slash_24_hands_out_1_as_gateway_then_2_to_254() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &[]).expect("pool");
    assert_eq!(outcome(addr(&mut ipam, &id, None, true)), "10.1.0.1");
    let mut want: Vec<String> = (2..=254).map(|i| format!("10.1.0.{i}")).collect();
    want.push("PoolFull".to_string());
    assert_eq!(dynamics(&mut ipam, &id, 254), want);
}

#[test]
fn a_slash_64_gateway_is_1_and_anycast_is_never_handed_out() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "2001:db8:1::/64", "", true, &[]).expect("pool");
    assert_eq!(outcome(addr(&mut ipam, &id, None, true)), "2001:db8:1::1");
    assert_eq!(
        dynamics(&mut ipam, &id, 2),
        words("2001:db8:1::2 2001:db8:1::3")
    );
    let top = "2001:db8:1:0:ffff:ffff:ffff:ffff";
    assert_eq!(
        outcome(addr(&mut ipam, &id, Some(top), false)),
        top,
        "no broadcast in IPv6"
    );
    let anycast = outcome(addr(&mut ipam, &id, Some("2001:db8:1::"), false));
    assert_eq!(anycast, "AddressReserved");
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
    assert_eq!(dynamics(&mut ipam, &id, 1), ["2001:db8:1::1:86a1"]);
    assert_eq!(ipam.state().lease_count(), 100_000);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn dynamic_addresses_stay_in_the_ip_range_and_skip_its_first_address() {
    let cases = [
        // subnet | --ip-range | every dynamic address, in order
        "10.10.0.0/16  | 10.10.5.0/30      | 10.10.5.1 10.10.5.2 10.10.5.3",
        "10.0.0.0/24   | 10.0.0.0/30       | 10.0.0.1 10.0.0.2 10.0.0.3",
        "10.0.0.0/24   | 10.0.0.252/30     | 10.0.0.253 10.0.0.254",
        "10.0.0.0/24   | 10.0.0.8/31       | 10.0.0.8 10.0.0.9",
        "10.0.0.0/24   | 10.0.0.8/32       | 10.0.0.8",
        "2001:db8::/64 | 2001:db8::100/126 | 2001:db8::101 2001:db8::102 2001:db8::103",
    ];
    for row in cases {
        let [subnet, range, list] = cols(row)[..] else {
            panic!("{row}")
        };
        let mut ipam = bare();
        let id = pool(&mut ipam, subnet, range, subnet.contains(':'), &[]).expect(row);
        assert_eq!(id.to_string(), format!("LocalDefault/{subnet}/{range}"));
        let mut want = words(list);
        want.push("PoolFull".to_string());
        assert_eq!(dynamics(&mut ipam, &id, want.len()), want, "{row}");
    }
}

#[test]
fn explicit_addresses_are_honoured_or_refused() {
    // The worked example of ipam-protocol.md §2.7, then refusals.
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.10.0.0/16", "10.10.5.0/24", false, &[]).expect("pool");
    let cases = [
        // address asked | gateway? | outcome
        "10.10.5.254   | gw | 10.10.5.254", // --gateway
        "10.10.1.5     | -  | 10.10.1.5",   // --aux-address outside the range
        "-             | -  | 10.10.5.1",   // dynamic: not the range's first
        "10.10.5.0     | -  | 10.10.5.0",   // --ip may take the range's first
        "10.10.200.9   | -  | 10.10.200.9",
        "10.10.0.0     | -  | AddressReserved",
        "10.10.255.255 | -  | AddressReserved",
        "10.10.1.5     | -  | AddressInUse",
        "10.10.5.254   | gw | AddressInUse",
        "10.11.0.1     | -  | AddressOutside",
        "2001:db8::1   | -  | AddressOutside",
        "-             | -  | 10.10.5.2",
    ];
    for row in cases {
        let [want, gw, expect] = cols(row)[..] else {
            panic!("{row}")
        };
        let want = Some(want).filter(|w| !w.is_empty());
        assert_eq!(
            outcome(addr(&mut ipam, &id, want, gw == "gw")),
            expect,
            "{row}"
        );
    }
    let err = addr(&mut ipam, &id, Some("10.10.1.5"), false).expect_err("in use");
    let names = "address 10.10.1.5 already in use in pool LocalDefault/10.10.0.0/16/10.10.5.0/24";
    assert!(err.to_string().contains(names), "{err}");
    let unknown = pool_id("LocalDefault/10.99.0.0/24");
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
        words("10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5")
    );
    release(&mut ipam, &id, "10.1.0.5");
    // .5 is free but cooling: .6 goes first, then the cooled .5 comes back.
    assert_eq!(
        dynamics(&mut ipam, &id, 3),
        words("10.1.0.6 10.1.0.5 PoolFull")
    );
    // Cooled addresses come back oldest first, not lowest first.
    release(&mut ipam, &id, "10.1.0.4");
    release(&mut ipam, &id, "10.1.0.2");
    assert_eq!(
        dynamics(&mut ipam, &id, 3),
        words("10.1.0.4 10.1.0.2 PoolFull")
    );
    // Cooling only affects the allocator's own choice: --ip gets it at once.
    release(&mut ipam, &id, "10.1.0.3");
    assert_eq!(
        outcome(addr(&mut ipam, &id, Some("10.1.0.3"), false)),
        "10.1.0.3"
    );
    assert_eq!(dynamics(&mut ipam, &id, 1), ["PoolFull"]);
}

#[test]
fn cooling_remembers_at_most_cooling_max_addresses() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.0.0.0/20", "", false, &[]).expect("pool");
    let nth = |i: usize| to_addr(Family::V4, to_u128(ip("10.0.0.0")) + i as u128).to_string();
    assert_eq!(dynamics(&mut ipam, &id, 1100).last(), Some(&nth(1100)));
    for i in 1..=COOLING_MAX {
        release(&mut ipam, &id, &nth(i));
    }
    assert_eq!(
        ipam.state().pool(&id).expect("held").cooling().count(),
        COOLING_MAX
    );
    assert_eq!(dynamics(&mut ipam, &id, 1), [nth(1101)], "all cooling");
    // One more release pushes the oldest out of cooling: it is free again.
    release(&mut ipam, &id, &nth(COOLING_MAX + 1));
    assert_eq!(dynamics(&mut ipam, &id, 1), [nth(1)]);
}

/// A lease as a replayed journal would record a dynamic choice: it moves
/// the serial cursor.
fn replay_dynamic(ipam: &mut Ipam, id: &PoolId, a: &str) {
    let change = Change::AddAddress {
        pool: id.clone(),
        address: ip(a),
        gateway: false,
        dynamic: true,
        mac: None,
        name: None,
    };
    ipam.apply(&change).expect("replay");
}

#[test]
fn serial_pools_rotate_and_wrap() {
    let mut ipam = bare();
    let serial = opts_of("serial=true");
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &serial).expect("pool");
    assert_eq!(outcome(addr(&mut ipam, &id, None, true)), "10.1.0.1");
    assert_eq!(dynamics(&mut ipam, &id, 2), words("10.1.0.2 10.1.0.3"));
    release(&mut ipam, &id, "10.1.0.2");
    assert_eq!(dynamics(&mut ipam, &id, 1), ["10.1.0.4"]);
    // A static address does not move the cursor (moby address_space.go).
    addr(&mut ipam, &id, Some("10.1.0.100"), false).expect("static");
    assert_eq!(dynamics(&mut ipam, &id, 1), ["10.1.0.5"]);

    // Wrap: with the cursor at .5 of a /29 (gateway .1), .6 comes next even
    // though .2-.4 are free, then the search starts again at the bottom.
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/29", "", false, &serial).expect("pool");
    addr(&mut ipam, &id, None, true).expect("gateway .1");
    replay_dynamic(&mut ipam, &id, "10.1.0.5");
    let want = words("10.1.0.6 10.1.0.2 10.1.0.3 10.1.0.4 PoolFull");
    assert_eq!(dynamics(&mut ipam, &id, 5), want);
}

#[test]
fn serial_per_request_rotates_a_pool_created_without_it() {
    // The swarm allocator sends com.docker.network.ipam.serial per request.
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &[]).expect("pool");
    replay_dynamic(&mut ipam, &id, "10.1.0.50");
    let serial = AddressRequest {
        serial: true,
        ..request(&id, None, false)
    };
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
    let unknown = pool_id("LocalDefault/10.99.0.0/24");
    assert_eq!(ipam.plan_release_pool(&unknown), None);
    assert_eq!(
        ipam.plan_release_address(&unknown, ip("10.99.0.2")),
        Ok(None)
    );

    let id = pool(&mut ipam, "10.1.0.0/24", "", false, &[]).expect("pool");
    addr(&mut ipam, &id, Some("10.1.0.7"), false).expect("lease");
    // address | what planning its release gives
    let cases = [
        "10.1.0.8    | nothing",
        "10.1.0.0    | nothing",
        "10.1.0.7    | release",
        "10.2.0.1    | AddressOutside",
        "2001:db8::1 | AddressOutside",
    ];
    for row in cases {
        let [a, want] = cols(row)[..] else {
            panic!("{row}")
        };
        let got = match ipam.plan_release_address(&id, ip(a)) {
            Ok(None) => "nothing".to_string(),
            Ok(Some(_)) => "release".to_string(),
            Err(e) => kind(&e),
        };
        assert_eq!(got, want, "{row}");
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

/// Pools in both spaces and families, leases with MAC and name, cooling
/// addresses, a serial cursor and a released block.
fn populated() -> (Ipam, Vec<PoolId>) {
    let mut ipam = ipam();
    let a = pool(&mut ipam, "", "", false, &opts_of("v4ab=29,serial=true")).expect("auto");
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

    let name = |n: &str| Some(n.to_string());
    let web1 = AddressRequest {
        mac: Some(MAC),
        name: name("web-1"),
        ..request(&b, None, false)
    };
    addr_req(&mut ipam, &web1).expect("::1");
    addr_req(
        &mut ipam,
        &AddressRequest {
            name: name("web-2"),
            ..request(&b, None, false)
        },
    )
    .expect("::2");
    release(&mut ipam, &b, "2001:db8:7700::2");

    dynamics(&mut ipam, &c, 4); // .9 .10 .11 .12
    release(&mut ipam, &c, "10.99.0.11");
    release(&mut ipam, &c, "10.99.0.9");
    release_pool(&mut ipam, &gone);
    (ipam, vec![a, b, c])
}

/// The same requests against any allocator; equal answers, equal behaviour.
fn script(ipam: &mut Ipam, ids: &[PoolId]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.extend(dynamics(ipam, id, 6));
    }
    out.extend(autos(ipam, 1, false, &[]));
    out.extend(autos(ipam, 1, true, &[]));
    out
}

fn reopen(state: State) -> Ipam {
    let s = settings("10.40.0.0/16", 24, "2001:db8:7700::/48", 64);
    Ipam::new(s, state).expect("same settings")
}

fn json(state: &State) -> serde_json::Value {
    serde_json::to_value(state.snapshot()).expect("snapshot serialises")
}

#[test]
fn a_state_rebuilt_from_its_snapshot_answers_the_same() {
    let (mut original, ids) = populated();
    let text = serde_json::to_string_pretty(&original.state().snapshot()).expect("serialise");
    let parsed: Snapshot = serde_json::from_str(&text).expect("deserialise");
    let mut restored = reopen(State::from_snapshot(parsed).expect("snapshot loads"));
    assert_eq!(json(restored.state()), json(original.state()), "round trip");

    let v6pool = restored.state().pool(&ids[1]).expect("v6 pool");
    let (_, lease) = v6pool.leases().next().expect("named lease");
    assert_eq!(
        (lease.mac, lease.name.as_deref()),
        (Some(MAC), Some("web-1"))
    );

    let want = [
        // serial pool: after the cursor .4, then the wrap finds only cooling .2
        "10.40.0.5 10.40.0.6 10.40.0.2 PoolFull PoolFull PoolFull",
        // ::2 is cooling
        "2001:db8:7700::3 2001:db8:7700::4 2001:db8:7700::5",
        "2001:db8:7700::6 2001:db8:7700::7 2001:db8:7700::8",
        // range pool: fresh addresses, then the cooled ones oldest first
        "10.99.0.13 10.99.0.14 10.99.0.15 10.99.0.11 10.99.0.9 PoolFull",
        // the released block is reused
        "10.40.1.0/24 2001:db8:7700:1::/64",
    ];
    let want = words(&want.join(" "));
    assert_eq!(script(&mut original, &ids), want, "original");
    assert_eq!(script(&mut restored, &ids), want, "restored");
    assert_eq!(
        json(restored.state()),
        json(original.state()),
        "after the same requests"
    );
}

#[test]
fn settings_may_not_orphan_a_held_auto_block() {
    let mut first = ipam();
    pool(&mut first, "", "", false, &[]).expect("auto 10.40.0.0/24");
    pool(&mut first, "", "", true, &[]).expect("auto 2001:db8:7700::/64");
    pool(&mut first, "192.168.50.0/24", "", false, &[]).expect("explicit, outside V4");
    let cases = [
        // V4 | V6 | ok, or what the error names
        "10.40.0.0/16             | 2001:db8:7700::/48 | ok",
        "10.40.0.0/15             | 2001:db8:7700::/40 | ok",
        "10.50.0.0/16,10.40.0.0/16 | 2001:db8:7700::/48 | ok",
        "10.50.0.0/16   | 2001:db8:7700::/48 | V4=10.50.0.0/16 LocalDefault/10.40.0.0/24",
        "10.40.0.128/25 | 2001:db8:7700::/48 | V4=10.40.0.128/25 LocalDefault/10.40.0.0/24",
        "10.40.0.0/16   | 2001:db8:9900::/48 | V6=2001:db8:9900::/48 2001:db8:7700::/64",
    ];
    for row in cases {
        let [v4, v6, want] = cols(row)[..] else {
            panic!("{row}")
        };
        match Ipam::new(settings(v4, 24, v6, 64), first.state().clone()) {
            Ok(_) => assert_eq!(want, "ok", "{row}"),
            Err(e) => {
                assert!(
                    want != "ok" && words(want).iter().all(|n| e.contains(n)),
                    "{row}: {e}"
                );
                assert!(!e.contains("192.168.50"), "explicit pool blamed: {e}");
            }
        }
    }
}

#[test]
#[ignore = "bug: State::from_snapshot accepts cooling entries that are duplicated or reserved"]
fn a_damaged_cooling_list_is_refused_or_harmless() {
    // from_snapshot checks leases (inside, not twice) but not the cooling
    // list. A duplicated entry makes the pool plan an address it has just
    // leased, so every later apply fails with Inconsistent; a cooling
    // broadcast address is handed out once the pool is otherwise full.
    let cases = [
        // cooling list of 10.0.0.0/29 with .1-.5 leased | never handed out twice
        r#"["10.0.0.6","10.0.0.6"] | 10.0.0.6"#,
        r#"["10.0.0.7"]            | 10.0.0.7"#,
    ];
    let leases: Vec<String> = (1..=5)
        .map(|i| format!(r#"{{"address":"10.0.0.{i}"}}"#))
        .collect();
    for row in cases {
        let [cooling, never] = cols(row)[..] else {
            panic!("{row}")
        };
        let pools = format!(
            r#"[{{"id":"LocalDefault/10.0.0.0/29","leases":[{}],"cooling":{cooling}}}]"#,
            leases.join(",")
        );
        let snapshot: Snapshot =
            serde_json::from_str(&format!(r#"{{"pools":{pools}}}"#)).expect("valid JSON");
        let Ok(state) = State::from_snapshot(snapshot) else {
            continue; // refused as damaged: fine
        };
        let mut ipam = reopen(state);
        let id = pool_id("LocalDefault/10.0.0.0/29");
        let mut seen = Vec::new();
        for _ in 0..3 {
            let Ok((change, address)) = ipam.plan_address(&request(&id, None, false)) else {
                break;
            };
            ipam.apply(&change)
                .unwrap_or_else(|e| panic!("{row}: planned {address}: {e}"));
            seen.push(address.to_string());
        }
        let allowed = usize::from(never != "10.0.0.7");
        assert!(
            seen.iter().filter(|a| *a == never).count() <= allowed,
            "{row}: {seen:?}"
        );
    }
}
