//! Table tests of the allocator core, written as a specification of F2–F5
//! (product.md) and of the built-in IPAM behaviour gipam copies
//! (ipam-protocol.md §2.3, §2.5, §3). Every request goes through the public
//! plan → apply path, as the service drives it.
//!
//! Table rows are strings: columns separated by `|`, `-` for an empty
//! column, lists separated by spaces, options by commas (`v4ab=28,serial=true`).
//! Outcomes are an address or subnet, or the name of the error variant.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

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
    let (v4, v6) = (nets(v4), nets(v6));
    Settings { v4, v6, v4ab, v6ab }
}

fn ipam_with(v4: &str, v4ab: u8, v6: &str, v6ab: u8) -> Ipam {
    Ipam::new(settings(v4, v4ab, v6, v6ab), State::new()).expect("settings accepted")
}

/// The product's example: V4=10.40.0.0/16 V6=2001:db8:7700::/48.
fn ipam() -> Ipam {
    ipam_with("10.40.0.0/16", 24, "2001:db8:7700::/48", 64)
}

/// No main pools: only explicit subnets can be requested.
fn bare() -> Ipam {
    ipam_with("", 24, "", 64)
}

/// The columns of a table row.
fn row<const N: usize>(row: &str) -> [&str; N] {
    let cols: Vec<&str> = row.split('|').map(str::trim).collect();
    let cols = cols.iter().map(|c| if *c == "-" { "" } else { c });
    let cols: Vec<&str> = cols.collect();
    cols.try_into()
        .unwrap_or_else(|_| panic!("row {row:?} needs {N} columns"))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// RequestPool: plans and applies. `opts` is `k=v,k=v`.
fn request_pool(
    ipam: &mut Ipam,
    space: &str,
    pool: &str,
    range: &str,
    v6: bool,
    opts: &str,
) -> Result<PoolId, Error> {
    let kvs = opts.split(',').filter(|kv| !kv.is_empty());
    let kvs = kvs.map(|kv| kv.split_once('=').expect("option k=v"));
    let opts: HashMap<String, String> = kvs.map(|(k, v)| (k.into(), v.into())).collect();
    let req = PoolRequest::parse(space, pool, range, v6, &opts)?;
    let change = ipam.plan_pool(&req)?;
    ipam.apply(&change).expect("a planned change applies");
    Ok(change.pool().expect("AddPool names its pool").clone())
}

/// RequestPool in LocalDefault.
fn pool(ipam: &mut Ipam, pool: &str, range: &str, v6: bool, opts: &str) -> Result<PoolId, Error> {
    request_pool(ipam, LOCAL_SPACE, pool, range, v6, opts)
}

/// RequestPool for exactly the pool a PoolId names (space, subnet, range).
fn explicit(ipam: &mut Ipam, id: &str) -> PoolId {
    let id = pool_id(id);
    let (subnet, range) = (id.subnet.to_string(), id.range.map(|r| r.to_string()));
    let v6 = matches!(id.subnet, IpNet::V6(_));
    let range = range.unwrap_or_default();
    request_pool(ipam, id.space, &subnet, &range, v6, "").expect("explicit pool")
}

/// `n` automatic pools in a row: their subnets, or the error.
fn autos(ipam: &mut Ipam, n: usize, v6: bool, opts: &str) -> Vec<String> {
    let one = |ipam: &mut Ipam| pool(ipam, "", "", v6, opts);
    (0..n)
        .map(|_| one(ipam).map_or_else(|e| kind(&e), |id| id.subnet.to_string()))
        .collect()
}

fn request(id: &PoolId, want: Option<&str>, gateway: bool) -> AddressRequest {
    let (pool, address) = (id.clone(), want.map(ip));
    AddressRequest {
        pool,
        address,
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

/// RequestAddress: `""` dynamic, `"gw"` the gateway, `"gw ADDR"` a given
/// gateway, else a given address. Returns the address or the error kind.
fn get(ipam: &mut Ipam, id: &PoolId, what: &str) -> String {
    let (gateway, want) = match what.strip_prefix("gw") {
        Some(rest) => (true, rest.trim()),
        None => (false, what),
    };
    let want = Some(want).filter(|w| !w.is_empty());
    addr_req(ipam, &request(id, want, gateway)).map_or_else(|e| kind(&e), |a| a.to_string())
}

/// `n` dynamic requests in a row.
fn dynamics(ipam: &mut Ipam, id: &PoolId, n: usize) -> Vec<String> {
    (0..n).map(|_| get(ipam, id, "")).collect()
}

/// Asserts what the next dynamic requests get.
fn expect_next(ipam: &mut Ipam, id: &PoolId, want: &str) {
    let want = words(want);
    assert_eq!(dynamics(ipam, id, want.len()), want, "in pool {id}");
}

/// ReleaseAddress of an address that must be leased.
fn release(ipam: &mut Ipam, id: &PoolId, a: &str) {
    let planned = ipam.plan_release_address(id, ip(a)).expect("inside");
    ipam.apply(&planned.expect("leased"))
        .expect("release applies");
}

fn release_pool(ipam: &mut Ipam, id: &PoolId) {
    let change = ipam.plan_release_pool(id).expect("pool held");
    ipam.apply(&change).expect("release applies");
}

/// The variant name of an error.
fn kind(e: &Error) -> String {
    let dbg = format!("{e:?}");
    let end = dbg.find([' ', '(', '{']).unwrap_or(dbg.len());
    dbg[..end].to_string()
}

// ---------------------------------------------------------------- F2 blocks

#[test]
fn auto_blocks_are_the_lowest_free_ones_and_never_a_held_one() {
    // The daemon's overlap loop keeps each answer leased and asks again with
    // identical arguments (moby/libnetwork#1386): every answer must be new.
    let mut ipam = ipam();
    let mut next = || pool(&mut ipam, "", "", false, "").expect("a free block");
    let held: Vec<PoolId> = (0..64).map(|_| next()).collect();
    assert_eq!(held[0].to_string(), "LocalDefault/10.40.0.0/24");
    assert_eq!(held[1].to_string(), "LocalDefault/10.40.1.0/24");
    assert_eq!(held[63].to_string(), "LocalDefault/10.40.63.0/24");
    let distinct = held.iter().collect::<HashSet<_>>().len();
    assert_eq!(distinct, 64, "a held block came back");
    assert!(ipam.state().pool(&held[0]).expect("held").auto);

    // A released block is the lowest free one again.
    release_pool(&mut ipam, &held[3]);
    let want = words("10.40.3.0/24 10.40.64.0/24");
    assert_eq!(autos(&mut ipam, 2, false, ""), want);
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
    for case in cases {
        let [spec, pass, opts, want] = row(case);
        let got = pool(&mut ipam(), spec, "", pass == "v6", opts).map(|id| id.subnet);
        assert_eq!(got.map(|s| s.to_string()), Ok(want.to_string()), "{case}");
    }
}

#[test]
fn blocks_of_different_sizes_pack_without_overlapping() {
    let mut ipam = ipam();
    let order = [
        // --ipam-opt of each network, in order | block it gets
        "v4ab=28 | 10.40.0.0/28",
        "-       | 10.40.1.0/24",
        "v4ab=28 | 10.40.0.16/28",
        "v4ab=23 | 10.40.2.0/23",
        "v4ab=25 | 10.40.0.128/25",
    ];
    for case in order {
        let [opts, want] = row(case);
        assert_eq!(autos(&mut ipam, 1, false, opts), [want], "{case}");
    }
}

#[test]
fn explicit_subnets_inside_the_main_pool_are_skipped_in_every_space() {
    let mut ipam = ipam();
    pool(&mut ipam, "10.40.0.0/24", "", false, "").expect("explicit");
    pool(&mut ipam, "10.40.2.0/23", "", false, "").expect("explicit");
    request_pool(&mut ipam, GLOBAL_SPACE, "10.40.5.0/24", "", false, "").expect("swarm");
    let want = words("10.40.1.0/24 10.40.4.0/24 10.40.6.0/24");
    assert_eq!(autos(&mut ipam, 3, false, ""), want);
}

#[test]
fn main_pools_are_used_in_order_until_exhausted() {
    let cases = [
        // V4 | V4AB | every block handed out
        "10.0.0.0/30             | 31 | 10.0.0.0/31 10.0.0.2/31 NoFreeBlock",
        "10.0.0.0/25             | 24 | NoFreeBlock",
        "-                       | 24 | NoFreeBlock",
        "10.0.0.0/24,10.9.0.0/23 | 24 | 10.0.0.0/24 10.9.0.0/24 10.9.1.0/24 NoFreeBlock",
        "10.9.0.0/24,10.0.0.0/24 | 24 | 10.9.0.0/24 10.0.0.0/24 NoFreeBlock",
        "10.0.0.0/25,10.1.0.0/24 | 24 | 10.1.0.0/24 NoFreeBlock",
        "255.255.255.0/24        | 25 | 255.255.255.0/25 255.255.255.128/25 NoFreeBlock",
    ];
    for case in cases {
        let [v4, v4ab, blocks] = row(case);
        let mut ipam = ipam_with(v4, v4ab.parse().expect("prefix"), "", 64);
        let want = words(blocks);
        assert_eq!(autos(&mut ipam, want.len(), false, ""), want, "{case}");
    }
    let ipam = ipam_with("10.0.0.0/30", 24, "", 64);
    let err = ipam
        .find_block(Family::V4, 24, &[])
        .expect_err("block larger than the pool");
    let text = "no free /24 block left in the main IPv4 pools (10.0.0.0/30)";
    assert!(err.to_string().contains(text), "{err}");
}

#[test]
fn without_v6_settings_blocks_come_from_the_generated_ula() {
    let mut ipam = ipam_with("10.40.0.0/16", 24, "", 64);
    let err = pool(&mut ipam, "", "", true, "").expect_err("no ULA yet");
    assert!(err.to_string().contains("none configured"), "{err}");

    let prefix = "fd12:3456:789a::/48".parse().expect("ULA");
    ipam.apply(&Change::SetUla { prefix }).expect("applies");
    let want = words("fd12:3456:789a::/64 fd12:3456:789a:1::/64");
    assert_eq!(autos(&mut ipam, 2, true, ""), want);
}

#[test]
fn an_ipv6_slash_8_main_pool_is_never_enumerated() {
    let mut ipam = ipam_with("", 24, "2c00::/8", 64);
    // Held subnets at the bottom are skipped in one step each (not 2^48 and
    // 2^8 steps), whatever their address space.
    pool(&mut ipam, "2c00::/16", "", true, "").expect("explicit");
    request_pool(&mut ipam, GLOBAL_SPACE, "2c01::/56", "", true, "").expect("explicit");
    let blocks = autos(&mut ipam, 1000, true, "");
    assert_eq!(blocks[0], "2c01:0:0:100::/64");
    assert_eq!(blocks[999], "2c01:0:0:4e7::/64");
    assert_eq!(blocks.iter().collect::<HashSet<_>>().len(), 1000);

    // The very top of the address space does not overflow.
    let mut top = ipam_with("", 24, "ffff:ffff:ffff:ffff::/64", 64);
    let want = words("ffff:ffff:ffff:ffff::/64 NoFreeBlock");
    assert_eq!(autos(&mut top, 2, true, ""), want);
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
    for case in cases {
        let [held_space, held, space, asked, range] = row(case);
        let mut ipam = bare();
        let v6 = held.contains(':');
        let held = request_pool(&mut ipam, held_space, held, "", v6, "").expect(case);
        let err = request_pool(&mut ipam, space, asked, range, v6, "").expect_err(case);
        let text = err.to_string();
        assert_eq!(kind(&err), "Overlap", "{case}: {text}");
        let names_both = text.contains(asked) && text.contains(&held.to_string());
        assert!(names_both, "{case}: {text}");
        assert_eq!(ipam.state().pools().count(), 1, "{case}: state changed");
    }
    // An explicit subnet may not take a block an automatic pool holds.
    let mut ipam = ipam();
    pool(&mut ipam, "", "", false, "").expect("auto");
    let err = pool(&mut ipam, "10.40.0.128/25", "", false, "").expect_err("held by auto");
    let err = err.to_string();
    assert!(err.contains("LocalDefault/10.40.0.0/24"), "{err}");
    // Adjacent subnets do not overlap.
    assert!(pool(&mut ipam, "10.40.1.0/24", "", false, "").is_ok());
}

#[test]
fn pool_requests_are_accepted_or_refused_with_a_reason() {
    let cases = [
        // space | pool | ip range | pass | --ipam-opt | subnet or error | the message names
        "Local | 10.1.0.1/24    | -             | v4 | -         | HostBits       | 10.1.0.0/24",
        "Local | 2001:db8::1/64 | -             | v6 | -         | HostBits       | 2001:db8::/64",
        "Local | 10.1.0.0/24    | 10.1.0.1/25   | v4 | -         | HostBits       | 10.1.0.0/25",
        "Local | 10.1.0.0       | -             | v4 | -         | BadCidr        | 10.1.0.0",
        "Local | 10.1.0.0/24    | -             | v6 | -         | WrongFamily    | 10.1.0.0/24",
        "Local | 2001:db8::/64  | -             | v4 | -         | WrongFamily    | 2001:db8::/64",
        "Local | 0.0.0.0/26     | -             | v6 | -         | WrongFamily    | 0.0.0.0/26",
        "Local | ::/80          | -             | v4 | -         | WrongFamily    | ::/80",
        "Local | 10.1.0.0/24    | 2001:db8::/64 | v4 | -         | WrongFamily    | 2001:db8::/64",
        "Local | 10.1.0.0/24    | 10.2.0.0/25   | v4 | -         | SubPoolOutside | 10.2.0.0/25",
        "Local | 10.1.0.0/24    | 10.1.0.0/23   | v4 | -         | SubPoolOutside | 10.1.0.0/23",
        "Local | -              | 10.1.0.0/25   | v4 | -         | SubPoolWithoutPool | 10.1.0.0/25",
        "Local | 0.0.0.0/26     | 0.0.0.0/28    | v4 | -         | SizeOnlyWithRange | 0.0.0.0/26",
        "Local | 0.0.0.0/0      | -             | v4 | -         | SizeZero       | 0.0.0.0/0",
        "Elsewhere | -          | -             | v4 | -         | UnknownAddressSpace | Elsewhere",
        "Local | -              | -             | v4 | v4bits=28 | UnknownOption  | v4ab, v6ab, serial",
        "Local | -              | -             | v4 | v4bits=28 | UnknownOption  | \"v4bits\"",
        "Local | -              | -             | v4 | v4ab=33   | BadOption      | v4ab=\"33\"",
        "Local | -              | -             | v4 | serial=no!| BadOption      | serial=\"no!\"",
        // Keys Docker itself adds pass; the empty space is LocalDefault.
        "Local | -              | -             | v4 | com.docker.network.driver.mtu=1400 | 10.40.0.0/24 | -",
        "-     | 10.9.0.0/24    | 10.9.0.0/25   | v4 | -         | 10.9.0.0/24    | -",
        "Global| 10.9.0.0/24    | -             | v4 | -         | 10.9.0.0/24    | -",
    ];
    for case in cases {
        let [space, subnet, range, pass, opts, want, names] = row(case);
        let space = match space {
            "Local" => LOCAL_SPACE,
            "Global" => GLOBAL_SPACE,
            other => other,
        };
        let mut ipam = ipam();
        match request_pool(&mut ipam, space, subnet, range, pass == "v6", opts) {
            Ok(id) => assert_eq!(id.subnet.to_string(), want, "{case}"),
            Err(err) => {
                assert_eq!(kind(&err), want, "{case}: {err}");
                assert!(err.to_string().contains(names), "{case}: {err}");
                assert_eq!(ipam.state().pools().count(), 0, "{case}: left a pool");
            }
        }
    }
    let mut ipam = ipam();
    let docker_serial = "com.docker.network.ipam.serial=true";
    let id = pool(&mut ipam, "", "", false, docker_serial).expect("Docker's key");
    assert!(ipam.state().pool(&id).expect("held").serial);
}

// ----------------------------------------------------------- F4/F5 addresses

#[test]
fn addresses_by_prefix_length_until_the_pool_is_full() {
    let cases = [
        // subnet | gateway first? | every address handed out, in order
        "10.1.0.0/24    | gw | 10.1.0.1 10.1.0.2 10.1.0.3",
        "10.1.0.0/30    | gw | 10.1.0.1 10.1.0.2 PoolFull",
        "10.1.0.0/29    | gw | 10.1.0.1 10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5 10.1.0.6 PoolFull",
        // Without a gateway request (Engine 29's macvlan) the gateway named
        // in the pool's Data holds the first usable address all the same.
        "10.1.0.0/24    | -  | 10.1.0.2 10.1.0.3",
        // RFC 3021: a /31 has no network or broadcast address.
        "10.1.0.0/31    | gw | 10.1.0.0 10.1.0.1 PoolFull",
        "10.1.0.0/31    | -  | 10.1.0.1 PoolFull",
        // A single address gets no gateway in Data: a container may have it.
        "10.1.0.0/32    | gw | 10.1.0.0 PoolFull",
        "10.1.0.0/32    | -  | 10.1.0.0 PoolFull",
        // RFC 4291 §2.6.1: the subnet-router anycast address is not handed out.
        "2001:db8::/64  | gw | 2001:db8::1 2001:db8::2 2001:db8::3",
        "2001:db8::/126 | gw | 2001:db8::1 2001:db8::2 2001:db8::3 PoolFull",
        // RFC 6164: a /127 uses both addresses.
        "2001:db8::/127 | gw | 2001:db8:: 2001:db8::1 PoolFull",
        "2001:db8::/127 | -  | 2001:db8::1 PoolFull",
        "2001:db8::/128 | gw | 2001:db8:: PoolFull",
        "2001:db8::/128 | -  | 2001:db8:: PoolFull",
    ];
    for case in cases {
        let [subnet, gw, list] = row(case);
        let mut ipam = bare();
        let id = pool(&mut ipam, subnet, "", subnet.contains(':'), "").expect(case);
        let want = words(list);
        let mut got = Vec::new();
        if gw == "gw" {
            got.push(get(&mut ipam, &id, "gw"));
        }
        got.extend(dynamics(&mut ipam, &id, want.len() - got.len()));
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn a_slash_24_hands_out_1_as_gateway_then_2_to_254() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, "").expect("pool");
    assert_eq!(get(&mut ipam, &id, "gw"), "10.1.0.1");
    let mut want: Vec<String> = (2..=254).map(|i| format!("10.1.0.{i}")).collect();
    want.push("PoolFull".to_string());
    assert_eq!(dynamics(&mut ipam, &id, 254), want);
}

#[test]
fn a_slash_64_serves_100_000_addresses_without_enumerating() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "2001:db8:1::/64", "", true, "").expect("pool");
    // ::1 is the gateway named in Data; containers start at ::2.
    let got = dynamics(&mut ipam, &id, 100_000);
    assert_eq!(got.last().map(String::as_str), Some("2001:db8:1::1:86a1"));
    // A release in the middle is the lowest free address again at once.
    release(&mut ipam, &id, "2001:db8:1::5");
    expect_next(&mut ipam, &id, "2001:db8:1::5 2001:db8:1::1:86a2");
    assert_eq!(ipam.state().lease_count(), 100_002);
}

#[test]
fn dynamic_addresses_stay_in_the_ip_range_and_skip_its_first_address() {
    let cases = [
        // subnet | --ip-range | every dynamic address, in order
        "10.10.0.0/16  | 10.10.5.0/30      | 10.10.5.1 10.10.5.2 10.10.5.3 PoolFull",
        // The range holds the pool's gateway (.1, named in Data).
        "10.0.0.0/24   | 10.0.0.0/30       | 10.0.0.2 10.0.0.3 PoolFull",
        "10.0.0.0/24   | 10.0.0.252/30     | 10.0.0.253 10.0.0.254 PoolFull",
        "10.0.0.0/24   | 10.0.0.8/31       | 10.0.0.8 10.0.0.9 PoolFull",
        "10.0.0.0/24   | 10.0.0.8/32       | 10.0.0.8 PoolFull",
        "2001:db8::/64 | 2001:db8::100/126 | 2001:db8::101 2001:db8::102 2001:db8::103 PoolFull",
    ];
    for case in cases {
        let [subnet, range, want] = row(case);
        let mut ipam = bare();
        let id = pool(&mut ipam, subnet, range, subnet.contains(':'), "").expect(case);
        assert_eq!(id.to_string(), format!("LocalDefault/{subnet}/{range}"));
        expect_next(&mut ipam, &id, want);
    }
}

#[test]
fn given_addresses_are_honoured_or_refused() {
    // The worked example of ipam-protocol.md §2.7, then refusals.
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.10.0.0/16", "10.10.5.0/24", false, "").expect("pool");
    let cases = [
        // request (see `get`) | outcome
        "gw 10.10.5.254  | 10.10.5.254", // --gateway
        "10.10.1.5       | 10.10.1.5",   // --aux-address outside the range
        "-               | 10.10.5.1",   // dynamic: not the range's first
        "10.10.5.0       | 10.10.5.0",   // --ip may take the range's first
        "10.10.200.9     | 10.10.200.9",
        "10.10.0.0       | AddressReserved",
        "10.10.255.255   | AddressReserved",
        "10.10.1.5       | AddressInUse",
        "gw 10.10.5.254  | AddressInUse",
        "10.11.0.1       | AddressOutside",
        "2001:db8::1     | AddressOutside",
        "-               | 10.10.5.2",
    ];
    for case in cases {
        let [what, want] = row(case);
        assert_eq!(get(&mut ipam, &id, what), want, "{case}");
    }
    let err = addr_req(&mut ipam, &request(&id, Some("10.10.1.5"), false)).expect_err("used");
    let text = "address 10.10.1.5 already in use in pool LocalDefault/10.10.0.0/16/10.10.5.0/24";
    assert!(err.to_string().contains(text), "{err}");
    let unknown = pool_id("LocalDefault/10.99.0.0/24");
    assert_eq!(get(&mut ipam, &unknown, ""), "UnknownPool");
    let leases = ipam.state().lease_count();
    assert_eq!(leases, 6, "a refused request left a lease");

    // IPv6: the subnet-router anycast address is reserved, the top is not.
    let id = pool(&mut ipam, "2001:db8:1::/64", "", true, "").expect("pool");
    assert_eq!(get(&mut ipam, &id, "2001:db8:1::"), "AddressReserved");
    let top = "2001:db8:1:0:ffff:ffff:ffff:ffff";
    assert_eq!(get(&mut ipam, &id, top), top, "IPv6 has no broadcast");
    assert_eq!(get(&mut ipam, &id, "10.10.1.6"), "AddressOutside");
}

#[test]
fn with_reuse_delayed_released_addresses_are_handed_out_last() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/29", "", false, "reuse=delayed").expect("pool");
    assert_eq!(get(&mut ipam, &id, "gw"), "10.1.0.1");
    expect_next(&mut ipam, &id, "10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5");
    release(&mut ipam, &id, "10.1.0.5");
    // .5 is free but cooling: .6 goes first, then the cooled .5 comes back.
    expect_next(&mut ipam, &id, "10.1.0.6 10.1.0.5 PoolFull");
    // Cooled addresses come back oldest first, not lowest first.
    release(&mut ipam, &id, "10.1.0.4");
    release(&mut ipam, &id, "10.1.0.2");
    expect_next(&mut ipam, &id, "10.1.0.4 10.1.0.2 PoolFull");
    // Cooling only affects the allocator's own choice: --ip gets it at once.
    release(&mut ipam, &id, "10.1.0.3");
    assert_eq!(get(&mut ipam, &id, "10.1.0.3"), "10.1.0.3");
    expect_next(&mut ipam, &id, "PoolFull");
}

#[test]
fn cooling_remembers_at_most_cooling_max_addresses() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.0.0.0/20", "", false, "reuse=delayed").expect("pool");
    let nth = |i: usize| to_addr(Family::V4, to_u128(ip("10.0.0.0")) + i as u128).to_string();
    // .1 is the gateway named in Data.
    assert_eq!(dynamics(&mut ipam, &id, 1100).last(), Some(&nth(1101)));
    for i in 2..=COOLING_MAX + 1 {
        release(&mut ipam, &id, &nth(i));
    }
    let cooling = ipam.state().pool(&id).expect("held").cooling().count();
    assert_eq!(cooling, COOLING_MAX);
    expect_next(&mut ipam, &id, &nth(1102));
    // One more release pushes the oldest out of cooling: it is free again.
    release(&mut ipam, &id, &nth(COOLING_MAX + 2));
    expect_next(&mut ipam, &id, &nth(2));
}

/// A lease as a replayed journal records a dynamic choice: it moves the
/// serial cursor.
fn replay_dynamic(ipam: &mut Ipam, id: &PoolId, a: &str) {
    let (mut change, _) = ipam
        .plan_address(&request(id, Some(a), false))
        .expect("free");
    if let Change::AddAddress { dynamic, .. } = &mut change {
        *dynamic = true;
    }
    ipam.apply(&change).expect("replay");
}

#[test]
fn serial_rotates_after_the_last_dynamic_address_and_wraps() {
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, "serial=true").expect("pool");
    assert_eq!(get(&mut ipam, &id, "gw"), "10.1.0.1");
    expect_next(&mut ipam, &id, "10.1.0.2 10.1.0.3");
    release(&mut ipam, &id, "10.1.0.2");
    expect_next(&mut ipam, &id, "10.1.0.4");
    // A given address does not move the cursor (moby address_space.go).
    assert_eq!(get(&mut ipam, &id, "10.1.0.100"), "10.1.0.100");
    expect_next(&mut ipam, &id, "10.1.0.5");

    // Wrap: with the cursor at .5 of a /29 (gateway .1), .6 comes next even
    // though .2-.4 are free, then the search starts again at the bottom.
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/29", "", false, "serial=true").expect("pool");
    assert_eq!(get(&mut ipam, &id, "gw"), "10.1.0.1");
    replay_dynamic(&mut ipam, &id, "10.1.0.5");
    let want = "10.1.0.6 10.1.0.2 10.1.0.3 10.1.0.4 PoolFull";
    expect_next(&mut ipam, &id, want);

    // Per request (the swarm allocator's com.docker.network.ipam.serial)
    // in a pool created without it.
    let mut ipam = bare();
    let id = pool(&mut ipam, "10.1.0.0/24", "", false, "").expect("pool");
    replay_dynamic(&mut ipam, &id, "10.1.0.50");
    let mut serial = request(&id, None, false);
    serial.serial = true;
    let mut got = vec![addr_req(&mut ipam, &serial)];
    got.push(addr_req(&mut ipam, &request(&id, None, false))); // lowest free
    got.push(addr_req(&mut ipam, &serial)); // after the cursor, now .2
    // .1 is the gateway named in Data.
    let want = ["10.1.0.51", "10.1.0.2", "10.1.0.3"].map(|a| Ok(ip(a)));
    assert_eq!(got, want);
}

// ------------------------------------------------------------------ releases

#[test]
fn releases_are_idempotent_but_reject_foreign_addresses() {
    let mut ipam = bare();
    let unknown = pool_id("LocalDefault/10.99.0.0/24");
    assert_eq!(ipam.plan_release_pool(&unknown), None);
    let id = explicit(&mut ipam, "LocalDefault/10.1.0.0/24");
    assert_eq!(get(&mut ipam, &id, "10.1.0.7"), "10.1.0.7");
    let cases = [
        // pool | address | what planning its release gives
        "LocalDefault/10.99.0.0/24 | 10.99.0.2   | nothing",
        "LocalDefault/10.1.0.0/24  | 10.1.0.8    | nothing",
        "LocalDefault/10.1.0.0/24  | 10.1.0.0    | nothing",
        "LocalDefault/10.1.0.0/24  | 10.2.0.1    | AddressOutside",
        "LocalDefault/10.1.0.0/24  | 2001:db8::1 | AddressOutside",
        "LocalDefault/10.1.0.0/24  | 10.1.0.7    | release",
    ];
    for case in cases {
        let [pool, a, want] = row(case);
        let got = match ipam.plan_release_address(&pool_id(pool), ip(a)) {
            Ok(None) => "nothing".to_string(),
            Ok(Some(_)) => "release".to_string(),
            Err(e) => kind(&e),
        };
        assert_eq!(got, want, "{case}");
    }
    release(&mut ipam, &id, "10.1.0.7");
    let again = ipam.plan_release_address(&id, ip("10.1.0.7"));
    assert_eq!(again, Ok(None), "second release");

    // Releasing the pool frees every address; a second release is a no-op.
    assert_eq!(get(&mut ipam, &id, "10.1.0.2"), "10.1.0.2");
    release_pool(&mut ipam, &id);
    assert_eq!(ipam.plan_release_pool(&id), None);
    let id = explicit(&mut ipam, "LocalDefault/10.1.0.0/24");
    assert_eq!(get(&mut ipam, &id, "10.1.0.2"), "10.1.0.2");
}

// ----------------------------------------------------------------- snapshots

const MAC: Mac = Mac([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);

/// Pools in both spaces and families, leases with MAC and name, cooling
/// addresses, a serial cursor, reserved gateways not yet claimed and a
/// released block.
fn populated() -> (Ipam, Vec<PoolId>) {
    let mut ipam = ipam();
    let opts = "v4ab=29,serial=true,reuse=delayed";
    let a = pool(&mut ipam, "", "", false, opts).expect("auto /29");
    let gone = pool(&mut ipam, "", "", false, "").expect("10.40.1.0/24");
    let b = pool(&mut ipam, "", "", true, "").expect("2001:db8:7700::/64");
    let c = explicit(&mut ipam, "GlobalDefault/10.99.0.0/24/10.99.0.8/29");

    assert_eq!(get(&mut ipam, &a, "gw"), "10.40.0.1");
    expect_next(&mut ipam, &a, "10.40.0.2 10.40.0.3 10.40.0.4");
    release(&mut ipam, &a, "10.40.0.2");

    let mut web = request(&b, None, false);
    (web.mac, web.name) = (Some(MAC), Some("web-1".to_string()));
    assert_eq!(addr_req(&mut ipam, &web), Ok(ip("2001:db8:7700::2")));
    (web.mac, web.name) = (None, Some("web-2".to_string()));
    assert_eq!(addr_req(&mut ipam, &web), Ok(ip("2001:db8:7700::3")));
    release(&mut ipam, &b, "2001:db8:7700::3");

    expect_next(&mut ipam, &c, "10.99.0.9 10.99.0.10 10.99.0.11 10.99.0.12");
    release(&mut ipam, &c, "10.99.0.11");
    release(&mut ipam, &c, "10.99.0.9");
    release_pool(&mut ipam, &gone);
    (ipam, vec![a, b, c])
}

/// The same requests against any allocator; equal answers, equal behaviour.
fn script(ipam: &mut Ipam, ids: &[PoolId]) -> Vec<String> {
    let mut out: Vec<String> = ids.iter().flat_map(|id| dynamics(ipam, id, 6)).collect();
    out.extend(autos(ipam, 1, false, ""));
    out.extend(autos(ipam, 1, true, ""));
    out
}

fn json(ipam: &Ipam) -> serde_json::Value {
    serde_json::to_value(ipam.state().snapshot()).expect("snapshot serialises")
}

/// The product's settings over an existing state.
fn reopen(state: State) -> Ipam {
    let s = settings("10.40.0.0/16", 24, "2001:db8:7700::/48", 64);
    Ipam::new(s, state).expect("same settings")
}

#[test]
fn a_state_rebuilt_from_its_snapshot_answers_the_same() {
    let (mut original, ids) = populated();
    let text = serde_json::to_string_pretty(&original.state().snapshot()).expect("serialise");
    let parsed: Snapshot = serde_json::from_str(&text).expect("deserialise");
    let mut restored = reopen(State::from_snapshot(parsed).expect("snapshot loads"));
    assert_eq!(json(&restored), json(&original), "round trip");

    let v6pool = restored.state().pool(&ids[1]).expect("v6 pool");
    let (_, lease) = v6pool.leases().nth(1).expect("named lease");
    let got = (lease.mac, lease.name.as_deref());
    assert_eq!(got, (Some(MAC), Some("web-1")));

    let want = [
        // serial pool: after the cursor .4, then the wrap finds only cooling .2
        "10.40.0.5 10.40.0.6 10.40.0.2 PoolFull PoolFull PoolFull",
        // ::3 was released by web-2: held back for it (F6; ::1 is the
        // gateway, ::2 web-1's)
        "2001:db8:7700::4 2001:db8:7700::5 2001:db8:7700::6",
        "2001:db8:7700::7 2001:db8:7700::8 2001:db8:7700::9",
        // range pool: the released .9 and .11 first, lowest first
        "10.99.0.9 10.99.0.11 10.99.0.13 10.99.0.14 10.99.0.15 PoolFull",
        // the released block is reused
        "10.40.1.0/24 2001:db8:7700:1::/64",
    ];
    let want = words(&want.join(" "));
    assert_eq!(script(&mut original, &ids), want, "original");
    assert_eq!(script(&mut restored, &ids), want, "restored");
    assert_eq!(json(&restored), json(&original), "after the same requests");
}

#[test]
fn settings_may_not_orphan_a_held_auto_block() {
    let mut first = ipam();
    pool(&mut first, "", "", false, "").expect("auto 10.40.0.0/24");
    pool(&mut first, "", "", true, "").expect("auto 2001:db8:7700::/64");
    pool(&mut first, "192.168.50.0/24", "", false, "").expect("explicit, outside V4");
    let cases = [
        // V4 | V6 | ok, or what the error names
        "10.40.0.0/16              | 2001:db8:7700::/48 | ok",
        "10.40.0.0/15              | 2001:db8:7700::/40 | ok",
        "10.50.0.0/16,10.40.0.0/16 | 2001:db8:7700::/48 | ok",
        "10.50.0.0/16   | 2001:db8:7700::/48 | V4=10.50.0.0/16 LocalDefault/10.40.0.0/24",
        "10.40.0.128/25 | 2001:db8:7700::/48 | V4=10.40.0.128/25 LocalDefault/10.40.0.0/24",
        "10.40.0.0/16   | 2001:db8:9900::/48 | V6=2001:db8:9900::/48 2001:db8:7700::/64",
    ];
    for case in cases {
        let [v4, v6, want] = row(case);
        let got = Ipam::new(settings(v4, 24, v6, 64), first.state().clone()).map(|_| ());
        let Err(e) = got else {
            assert_eq!(want, "ok", "{case}");
            continue;
        };
        let e = e.to_string();
        let named = want != "ok" && words(want).iter().all(|n| e.contains(n));
        assert!(named, "{case}: {e}");
        assert!(!e.contains("192.168.50"), "explicit pool blamed: {e}");
    }
}

#[test]
fn a_damaged_cooling_list_never_hands_out_a_leased_or_reserved_address() {
    // Duplicated or reserved entries in the cooling list of a damaged or
    // hand-edited snapshot are refused or dropped, never handed out.
    let id = pool_id("LocalDefault/10.0.0.0/29");
    let leases: Vec<String> = (1..=5)
        .map(|i| format!(r#"{{"address":"10.0.0.{i}"}}"#))
        .collect();
    let leases = leases.join(",");
    for cooling in [r#"["10.0.0.6","10.0.0.6"]"#, r#"["10.0.0.7","10.0.0.0"]"#] {
        let pool =
            format!(r#"{{"id":"{id}","reuse":"delayed","leases":[{leases}],"cooling":{cooling}}}"#);
        let snapshot = serde_json::from_str(&format!(r#"{{"pools":[{pool}]}}"#)).expect("JSON");
        let Ok(state) = State::from_snapshot(snapshot) else {
            continue; // refused as damaged: fine
        };
        let mut ipam = reopen(state);
        let got = dynamics(&mut ipam, &id, 2);
        assert_eq!(got, ["10.0.0.6", "PoolFull"], "{cooling}");
    }
}

#[test]
fn a_refused_v6_change_names_the_generated_ula_it_replaces() {
    let ula: ipnet::Ipv6Net = "fd12:3456:789a::/48".parse().expect("ula");
    let mut state = State::new();
    state.apply(&Change::SetUla { prefix: ula }).expect("ula");
    state
        .apply(&Change::SetMains {
            v4: vec!["10.40.0.0/16".parse().expect("v4")],
            v6: vec![],
        })
        .expect("mains");
    state
        .apply(&Change::AddPool {
            id: "LocalDefault/fd12:3456:789a::/64".parse().expect("id"),
            auto: true,
            serial: false,
            reuse: Reuse::Immediate,
            sticky: Default::default(),
            data_gateway: None,
        })
        .expect("pool");
    let settings = Settings {
        v4: vec!["10.40.0.0/16".parse().expect("v4")],
        v6: vec!["2001:db8::/48".parse().expect("v6")],
        v4ab: 24,
        v6ab: 64,
    };
    let err = Ipam::new(settings, state)
        .expect_err("strands a block")
        .to_string();
    assert!(
        err.contains("V6=2001:db8::/48 (was empty: the generated ULA fd12:3456:789a::/48)"),
        "{err}"
    );
    assert!(
        err.contains("keep them with V6=2001:db8::/48,fd12:3456:789a::/48"),
        "the ULA spelled out: {err}"
    );
}
