//! Table tests of the rules issue 7 added to the core, as a specification:
//! F5's address choice (lowest free by default, `reuse=delayed`, `serial`),
//! the gateway gipam names in RequestPool's `Data` (reserved with the pool,
//! claimed or replaced by a gateway request, kept by snapshot and journal),
//! blocks that skip the host's routes, and the endpoint name on leases.
//! Every request goes through plan → apply, as the service drives it.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn settings(v4: &str, v6: &str) -> Settings {
    let nets = |l: &str| -> Vec<IpNet> {
        let l = l.split(',').filter(|s| !s.is_empty());
        l.map(|s| s.parse().expect("test CIDR")).collect()
    };
    Settings {
        v4: nets(v4),
        v6: nets(v6),
        v4ab: 24,
        v6ab: 64,
    }
}

fn ipam(v4: &str, v6: &str) -> Ipam {
    Ipam::new(settings(v4, v6), State::new()).expect("settings")
}

/// The variant name of an error.
fn kind(e: &Error) -> String {
    let dbg = format!("{e:?}");
    let end = dbg.find([' ', '(', '{']).unwrap_or(dbg.len());
    dbg[..end].to_string()
}

/// Plans a RequestPool (options `k=v,k=v`, routes `CIDR dev|via,…`).
fn plan(ipam: &Ipam, pool: &str, opts: &str, routes: &str) -> Result<Change, Error> {
    let kvs = opts.split(',').filter(|kv| !kv.is_empty());
    let kvs = kvs.map(|kv| kv.split_once('=').expect("option k=v"));
    let opts: HashMap<String, String> = kvs.map(|(k, v)| (k.into(), v.into())).collect();
    let mut req = PoolRequest::parse(LOCAL_SPACE, pool, "", pool.contains(':'), &opts)?;
    for r in routes.split(',').filter(|r| !r.is_empty()) {
        let (net, kind) = r.trim().split_once(' ').unwrap_or((r.trim(), "dev"));
        let net = net.parse().expect("test route");
        let connected = kind == "dev";
        req.host_routes.push(HostRoute { net, connected });
    }
    ipam.plan_pool(&req)
}

/// RequestPool: plans and applies.
fn pool(ipam: &mut Ipam, pool: &str, opts: &str) -> PoolId {
    let change = plan(ipam, pool, opts, "").expect("pool");
    ipam.apply(&change).expect("applies");
    change.pool().expect("id").clone()
}

/// RequestAddress: `""` dynamic, `"gw"` a gateway, `"gw A"` gateway A,
/// else a given address. Returns the address or the error kind.
fn get(ipam: &mut Ipam, id: &PoolId, what: &str) -> String {
    let (gateway, want) = match what.strip_prefix("gw") {
        Some(rest) => (true, rest.trim()),
        None => (false, what),
    };
    let req = AddressRequest {
        pool: id.clone(),
        address: Some(want).filter(|w| !w.is_empty()).map(ip),
        gateway,
        serial: false,
        mac: None,
        name: None,
    };
    match ipam.plan_address(&req) {
        Ok((change, a)) => {
            ipam.apply(&change).expect("applies");
            a.to_string()
        }
        Err(e) => kind(&e),
    }
}

/// Runs a script of steps: `get WHAT`, `rel ADDR`; returns each outcome.
fn run(ipam: &mut Ipam, id: &PoolId, script: &str) -> Vec<String> {
    let mut out = Vec::new();
    for step in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        match step.split_once(' ').unwrap_or((step, "")) {
            ("rel", a) => {
                let c = ipam.plan_release_address(id, ip(a)).expect("inside");
                ipam.apply(&c.expect("leased")).expect("applies");
            }
            ("get", what) => out.push(get(ipam, id, what.trim_matches('"'))),
            (other, _) => panic!("unknown step {other}"),
        }
    }
    out
}

// ------------------------------------------------------------ F5 choice

#[test]
fn the_default_is_the_lowest_free_address_and_options_change_it() {
    let cases = [
        // options | steps | what the gets answer
        // docker restart of one container: it gets its address back.
        "-     | get gw; get; get; get; rel 10.1.0.3; get | 10.1.0.1 10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.3",
        // daemon restart: every address released, the same set comes back.
        "-     | get; get; get; rel 10.1.0.2; rel 10.1.0.3; rel 10.1.0.4; get; get; get | 10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.2 10.1.0.3 10.1.0.4",
        "reuse=immediate | get; get; rel 10.1.0.2; get | 10.1.0.2 10.1.0.3 10.1.0.2",
        // reuse=delayed: released addresses wait until nothing else is free.
        "reuse=delayed | get; get; rel 10.1.0.2; get; get | 10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5",
        "serial=true | get; get; rel 10.1.0.2; get | 10.1.0.2 10.1.0.3 10.1.0.4",
        "com.docker.network.ipam.serial=true | get; get; rel 10.1.0.2; get | 10.1.0.2 10.1.0.3 10.1.0.4",
        "serial=false | get; get; rel 10.1.0.2; get | 10.1.0.2 10.1.0.3 10.1.0.2",
    ];
    for case in cases {
        let cols: Vec<&str> = case.split('|').map(str::trim).collect();
        let opts = if cols[0] == "-" { "" } else { cols[0] };
        let mut ipam = ipam("", "");
        let id = pool(&mut ipam, "10.1.0.0/24", opts);
        assert_eq!(run(&mut ipam, &id, cols[1]).join(" "), cols[2], "{case}");
    }
}

#[test]
fn unknown_reuse_values_are_refused_naming_the_accepted_ones() {
    let ipam = ipam("", "");
    let err = plan(&ipam, "10.1.0.0/24", "reuse=never", "").expect_err("bad value");
    assert_eq!(
        err.to_string(),
        r#"ipam option reuse="never" is invalid: want immediate or delayed"#
    );
    let err = plan(&ipam, "10.1.0.0/24", "reuze=delayed", "").expect_err("typo");
    assert!(
        err.to_string().contains("v4ab, v6ab, serial, reuse"),
        "{err}"
    );
}

/// Replays `journal` as its JSON lines into a fresh allocator, and loads
/// the snapshot of `live`: both must choose as `live` does.
fn replayed_and_reloaded(live: &Ipam, journal: &[Change], v4: &str) -> [Ipam; 2] {
    let mut replayed = ipam(v4, "");
    for c in journal {
        let line = serde_json::to_string(c).expect("ser");
        let back: Change = serde_json::from_str(&line).expect("de");
        replayed.apply(&back).expect("replays");
    }
    let text = serde_json::to_string(&live.state().snapshot()).expect("ser");
    let state = State::from_snapshot(serde_json::from_str(&text).expect("de"));
    let reloaded = Ipam::new(settings(v4, ""), state.expect("loads")).expect("settings");
    [replayed, reloaded]
}

/// Plans and applies `req`, recording the change.
fn record(ipam: &mut Ipam, journal: &mut Vec<Change>, change: Change) {
    ipam.apply(&change).expect("applies");
    journal.push(change);
}

#[test]
fn reuse_and_serial_are_durable_with_the_pool() {
    for (opts, want) in [
        ("reuse=delayed", ["10.1.0.4", "10.1.0.5"]),
        ("serial=true", ["10.1.0.4", "10.1.0.5"]),
        ("", ["10.1.0.2", "10.1.0.4"]),
    ] {
        let mut live = ipam("", "");
        let mut journal = Vec::new();
        let add = plan(&live, "10.1.0.0/24", opts, "").expect("pool");
        let id = add.pool().expect("id").clone();
        record(&mut live, &mut journal, add);
        for _ in 0..2 {
            let req = AddressRequest {
                pool: id.clone(),
                address: None,
                gateway: false,
                serial: false,
                mac: None,
                name: None,
            };
            let (c, _) = live.plan_address(&req).expect("free");
            record(&mut live, &mut journal, c);
        }
        let rel = live.plan_release_address(&id, ip("10.1.0.2")).expect("in");
        record(&mut live, &mut journal, rel.expect("leased"));
        let [mut replayed, mut reloaded] = replayed_and_reloaded(&live, &journal, "");
        for ipam in [&mut live, &mut replayed, &mut reloaded] {
            assert_eq!(run(ipam, &id, "get; get"), want, "{opts}");
        }
    }
}

// ------------------------------------------------- the gateway in Data

/// The gateway an AddPool reserves, as text (`-` for none).
fn data_gateway(change: &Change) -> String {
    match change {
        Change::AddPool {
            data_gateway: Some(g),
            ..
        } => g.to_string(),
        _ => "-".to_string(),
    }
}

#[test]
fn every_pool_but_a_single_address_reserves_its_first_usable_as_gateway() {
    let cases = [
        // subnet (or size) | the gateway named in Data
        "10.1.0.0/24         | 10.1.0.1",
        "10.1.0.0/30         | 10.1.0.1",
        "10.1.0.0/31         | 10.1.0.0", // RFC 3021: both addresses usable
        "10.1.0.0/32         | -",
        "2001:db8::/64       | 2001:db8::1",
        "2001:db8::/127      | 2001:db8::", // RFC 6164
        "2001:db8::/128      | -",
        "0.0.0.0/26          | 10.40.0.1",
        "::/80               | 2001:db8:7700::1",
    ];
    let ipam = ipam("10.40.0.0/16", "2001:db8:7700::/48");
    for case in cases {
        let cols: Vec<&str> = case.split('|').map(str::trim).collect();
        let change = plan(&ipam, cols[0], "", "").expect(case);
        assert_eq!(data_gateway(&change), cols[1], "{case}");
    }
    // With an --ip-range, still the subnet's first usable address: the one
    // a gateway request got before (protocol doc §2.7).
    let req = PoolRequest::parse(
        LOCAL_SPACE,
        "10.10.0.0/16",
        "10.10.5.0/24",
        false,
        &HashMap::new(),
    );
    let change = ipam.plan_pool(&req.expect("parses")).expect("plans");
    assert_eq!(data_gateway(&change), "10.10.0.1");
}

#[test]
fn the_reserved_gateway_is_claimed_or_replaced_by_a_gateway_request() {
    let cases = [
        // steps | what the gets answer
        // Engine 29 macvlan/ipvlan, no --gateway: no gateway request at all.
        "get; get; get 10.1.0.1 | 10.1.0.2 10.1.0.3 AddressInUse",
        // 20.10-28 bridges never ask either (Data is used); an engine that
        // still asks without an address gets the reserved one.
        "get gw; get | 10.1.0.1 10.1.0.2",
        // --gateway equal to the reserved one: claimed, not "in use".
        "get gw 10.1.0.1; get; get gw 10.1.0.1 | 10.1.0.1 10.1.0.2 AddressInUse",
        // --gateway .254: the reserved .1 is freed and goes to a container.
        "get gw 10.1.0.254; get; get | 10.1.0.254 10.1.0.1 10.1.0.2",
        // Only a gateway request moves it: --ip and aux get "in use".
        "get 10.1.0.1; get gw 10.1.0.9; get 10.1.0.1 | AddressInUse 10.1.0.9 10.1.0.1",
        // A --gateway that is taken fails and leaves the reserved one.
        "get 10.1.0.7; get gw 10.1.0.7; get | 10.1.0.7 AddressInUse 10.1.0.2",
        // The daemon releases the Data gateway at network removal.
        "rel 10.1.0.1; get | 10.1.0.1",
        // Released once claimed, too.
        "get gw; rel 10.1.0.1; get | 10.1.0.1 10.1.0.1",
    ];
    for case in cases {
        let cols: Vec<&str> = case.split('|').map(str::trim).collect();
        let mut ipam = ipam("", "");
        let id = pool(&mut ipam, "10.1.0.0/24", "");
        assert_eq!(run(&mut ipam, &id, cols[0]).join(" "), cols[1], "{case}");
    }
    // IPv6 alike, and ReleasePool frees everything, gateway included.
    let mut ipam = ipam("", "");
    let id = pool(&mut ipam, "2001:db8::/64", "");
    let got = run(&mut ipam, &id, "get; get gw 2001:db8::ffff; get");
    assert_eq!(got, ["2001:db8::2", "2001:db8::ffff", "2001:db8::1"]);
    let change = ipam.plan_release_pool(&id).expect("held");
    ipam.apply(&change).expect("applies");
    assert!(ipam.state().pool(&id).is_none());
    let id = pool(&mut ipam, "2001:db8::/64", "");
    assert_eq!(run(&mut ipam, &id, "get"), ["2001:db8::2"]);
}

#[test]
fn the_reserved_gateway_survives_replay_and_snapshot_still_provisional() {
    // gipam restarts between RequestPool and the gateway request: the
    // reserved gateway is still held, and --gateway still replaces it.
    let mut live = ipam("10.40.0.0/16", "");
    let add = plan(&live, "", "", "").expect("auto pool");
    let id = add.pool().expect("id").clone();
    let mut journal = Vec::new();
    record(&mut live, &mut journal, add);
    let snapshot = serde_json::to_value(live.state().snapshot()).expect("ser");
    assert_eq!(snapshot["pools"][0]["data_gateway"], "10.40.0.1");
    assert_eq!(snapshot["pools"][0]["leases"][0]["gateway"], true);
    let [mut replayed, mut reloaded] = replayed_and_reloaded(&live, &journal, "10.40.0.0/16");
    for ipam in [&mut live, &mut replayed, &mut reloaded] {
        let got = run(ipam, &id, "get; get 10.40.0.1; get gw 10.40.0.254; get");
        assert_eq!(
            got,
            ["10.40.0.2", "AddressInUse", "10.40.0.254", "10.40.0.1"]
        );
        let pool = ipam.state().pool(&id).expect("held");
        assert_eq!(pool.data_gateway(), None, "replaced");
    }
    // A snapshot naming a gateway it holds no gateway lease for is damaged.
    let text =
        r#"{"pools":[{"id":"LocalDefault/10.1.0.0/24","data_gateway":"10.1.0.1","leases":[]}]}"#;
    let err = State::from_snapshot(serde_json::from_str(text).expect("JSON")).expect_err("bad");
    assert!(err.to_string().contains("no gateway lease"), "{err}");
}

// ------------------------------------------------------ endpoint name

#[test]
fn the_endpoint_name_is_recorded_on_v4_and_v6_leases_but_never_required() {
    let mut ipam = ipam("", "");
    let v4 = pool(&mut ipam, "10.1.0.0/24", "");
    let v6 = pool(&mut ipam, "2001:db8::/64", "");
    let mac: Mac = "0a:f5:fb:b3:37:2e".parse().expect("mac");
    for (id, name) in [(&v4, Some("c-alpha")), (&v6, Some("c-alpha")), (&v4, None)] {
        let req = AddressRequest {
            pool: id.clone(),
            address: None,
            gateway: false,
            serial: false,
            mac: Some(mac),
            name: name.map(String::from),
        };
        let (change, _) = ipam.plan_address(&req).expect("free");
        ipam.apply(&change).expect("applies");
    }
    let names = |id: &PoolId| -> Vec<Option<String>> {
        let pool = ipam.state().pool(id).expect("held");
        pool.leases()
            .map(|(_, l)| l.name.as_deref().map(String::from))
            .collect()
    };
    let alpha = Some("c-alpha".to_string());
    // The first lease of each pool is its gateway, which has no name.
    assert_eq!(names(&v4), [None, alpha.clone(), None]);
    assert_eq!(names(&v6), [None, alpha]);
}

// ---------------------------------------------------------- host routes

#[test]
fn chosen_blocks_skip_the_host_routes_they_would_collide_with() {
    let cases = [
        // request | host routes (CIDR dev|via) | the block chosen
        "0.0.0.0/26  | 10.40.0.0/24 dev                    | 10.40.1.0/26",
        "0.0.0.0/26  | 10.40.0.64/26 dev                   | 10.40.0.0/26",
        "0.0.0.0/26  | 10.40.0.0/26 dev, 10.40.0.64/26 dev | 10.40.0.128/26",
        "0.0.0.0/26  | 10.40.0.5/32 dev                    | 10.40.0.64/26",
        "0.0.0.0/31  | 10.40.0.0/31 dev                    | 10.40.0.2/31",
        "0.0.0.0/32  | 10.40.0.0/32 dev, 10.40.0.1/32 dev  | 10.40.0.2/32",
        // Covering routes via a gateway, reject aggregates, /0: no collision.
        "0.0.0.0/32  | 10.40.0.0/31 via                    | 10.40.0.0/32",
        "0.0.0.0/26  | 0.0.0.0/0 via, 10.0.0.0/8 via       | 10.40.0.0/26",
        "0.0.0.0/26  | 10.40.0.0/16 reject, 0.0.0.0/0 dev  | 10.40.0.0/26",
        // A gatewayed route inside the block collides.
        "0.0.0.0/26  | 10.40.0.32/27 via                   | 10.40.0.64/26",
        // Automatic requests skip them too (the daemon's loop is saved).
        "-           | 10.40.0.0/23 dev                    | 10.40.2.0/24",
        // Explicit subnets are the user's choice.
        "10.40.0.0/24 | 10.40.0.0/24 dev                   | 10.40.0.0/24",
        // IPv6: /64 blocks of a /48, /127 and /128 ones.
        "::/64       | 2001:db8:7700::/64 dev              | 2001:db8:7700:1::/64",
        "::/64       | 2001:db8:7700::/48 reject, ::/0 via | 2001:db8:7700::/64",
        "::/64       | 2001:db8:7700::1/128 dev            | 2001:db8:7700:1::/64",
        "::/127      | 2001:db8:7700::/127 dev             | 2001:db8:7700::2/127",
        "::/128      | 2001:db8:7700::/128 dev             | 2001:db8:7700::1/128",
        // A route over the first half of the /48: one jump, no enumeration
        // of the 2^15 /64s (or 2^79 /128s) it covers.
        "::/64       | 2001:db8:7700::/49 dev              | 2001:db8:7700:8000::/64",
        "::/128      | 2001:db8:7700::/49 dev              | 2001:db8:7700:8000::/128",
        // Routes of the other family never matter.
        "::/64       | 10.40.0.0/16 dev                    | 2001:db8:7700::/64",
    ];
    for case in cases {
        let cols: Vec<&str> = case.split('|').map(str::trim).collect();
        let spec = if cols[0] == "-" { "" } else { cols[0] };
        let ipam = ipam("10.40.0.0/16", "2001:db8:7700::/48");
        let change = plan(&ipam, spec, "", cols[1]).expect(case);
        let got = change.pool().expect("id").subnet.to_string();
        assert_eq!(got, cols[2], "{case}");
    }
}

#[test]
fn held_blocks_and_host_routes_are_skipped_together_until_none_is_left() {
    let mut ipam = ipam("10.40.0.0/24", "");
    let routes = "10.40.0.64/26 dev, 10.40.0.200/32 dev";
    let mut got = Vec::new();
    for _ in 0..3 {
        match plan(&ipam, "0.0.0.0/26", "", routes) {
            Ok(change) => {
                got.push(change.pool().expect("id").subnet.to_string());
                ipam.apply(&change).expect("applies");
            }
            Err(e) => got.push(e.to_string()),
        }
    }
    assert_eq!(got[..2], ["10.40.0.0/26", "10.40.0.128/26"]);
    assert_eq!(
        got[2],
        "no free /26 block that collides with none of the host's 2 IPv4 routes left in the main IPv4 pools (10.40.0.0/24); add or grow a pool (V4/V6) or remove unused networks"
    );
}

#[test]
fn a_route_at_the_top_of_the_address_space_ends_the_search_without_overflow() {
    let top = ipam("255.255.255.0/24", "");
    let change = plan(
        &top,
        "0.0.0.0/32",
        "",
        "255.255.255.0/25 dev, 255.255.255.128/25 dev",
    );
    assert_eq!(change.map_err(|e| kind(&e)), Err("NoFreeBlock".to_string()));
    let top = ipam("", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120");
    let change = plan(
        &top,
        "::/128",
        "",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120 dev",
    );
    assert_eq!(change.map_err(|e| kind(&e)), Err("NoFreeBlock".to_string()));
}
