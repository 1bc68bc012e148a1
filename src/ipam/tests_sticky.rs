//! Table tests of F6, addresses that follow their container (product.md),
//! through the public plan → apply path as the service drives it.
//!
//! A script is a list of steps separated by spaces, run against one pool:
//! `web` asks for a dynamic address as a container named web (with a fresh
//! random-looking MAC, as Engine 29 sends), `m1` as a container known only
//! by the MAC 02:42:00:00:00:01 (what 20.10 and 28.5 send), `web/m1` by
//! both, `-` with no identity, `web=.9` asks for `.9` (`--ip`), `rm.9`
//! releases `.9`. A request prints the last part of its address (`.3`) or
//! the error kind; a release prints nothing.

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;

fn settings() -> Settings {
    Settings {
        v4: vec!["10.40.0.0/16".parse().expect("net")],
        v6: vec!["2001:db8:7700::/48".parse().expect("net")],
        v4ab: 24,
        v6ab: 64,
    }
}

fn ipam() -> Ipam {
    Ipam::new(settings(), State::new()).expect("settings")
}

fn options(opts: &str) -> HashMap<String, String> {
    opts.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').expect("option k=v"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// RequestPool of `subnet` (and `range`) with options `k=v,k=v`.
fn add_pool(ipam: &mut Ipam, subnet: &str, range: &str, opts: &str) -> PoolId {
    let v6 = subnet.contains(':');
    let req = PoolRequest::parse(LOCAL_SPACE, subnet, range, v6, &options(opts)).expect("parse");
    let change = ipam.plan_pool(&req).expect("plan pool");
    ipam.apply(&change).expect("apply");
    change.pool().expect("a pool").clone()
}

fn mac(n: u8) -> Mac {
    Mac([0x02, 0x42, 0, 0, 0, n])
}

/// Every request gets another MAC, as Docker makes one on every start.
static FRESH: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0x80);

fn fresh_mac() -> Mac {
    let n = FRESH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Mac([0x0a, 0xf5, 0xfb, 0xb3, 0x37, n])
}

/// The identity of a step: `web` a name, `m1` a MAC, `web/m1` both.
fn who(step: &str) -> (Option<String>, Option<Mac>) {
    let parse_mac = |m: &str| m.strip_prefix('m').and_then(|n| n.parse().ok()).map(mac);
    match step.split_once('/') {
        Some((n, m)) => (Some(n.to_string()), parse_mac(m)),
        None if step == "-" => (None, None),
        None => match parse_mac(step) {
            Some(m) => (None, Some(m)),
            None => (Some(step.to_string()), Some(fresh_mac())),
        },
    }
}

/// `.9` → the address with that last part in `pool`.
fn at(pool: &PoolId, tail: &str) -> IpAddr {
    let s = pool.subnet.addr().to_string();
    let cut = match pool.subnet.addr() {
        IpAddr::V4(_) => s.rfind('.').expect("a dot"),
        IpAddr::V6(_) => s.rfind(':').expect("a colon"),
    };
    let sep = &s[cut..=cut];
    let tail = tail.trim_start_matches(['.', ':']);
    format!("{}{sep}{tail}", &s[..cut])
        .parse()
        .expect("address")
}

/// The last part of an address, after a `.` whatever the family.
fn tail(a: IpAddr) -> String {
    let s = a.to_string();
    let cut = s.rfind(['.', ':']).expect("separator");
    format!(".{}", &s[cut + 1..])
}

fn kind(e: &Error) -> String {
    format!("{e:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("")
        .to_string()
}

/// Runs a script (module doc) against `pool`.
fn run(ipam: &mut Ipam, pool: &PoolId, script: &str) -> String {
    let mut out = Vec::new();
    for step in script.split_whitespace() {
        if let Some(a) = step.strip_prefix("rm") {
            let c = ipam
                .plan_release_address(pool, at(pool, a))
                .expect("inside");
            ipam.apply(&c.expect("leased")).expect("release applies");
            continue;
        }
        let (ident, want) = match step.split_once('=') {
            Some((i, a)) => (i, Some(at(pool, a))),
            None => (step, None),
        };
        let (name, mac) = who(ident);
        let req = AddressRequest {
            pool: pool.clone(),
            address: want,
            gateway: false,
            serial: false,
            mac,
            name,
        };
        out.push(match ipam.plan_address(&req) {
            Ok((change, a)) => {
                ipam.apply(&change).expect("a planned change applies");
                tail(a)
            }
            Err(e) => kind(&e),
        });
    }
    out.join(" ")
}

#[test]
fn held_back_for_a_name_free_for_a_mac_unless_sticky_mac() {
    // A /29: .0 network, .1 the gateway reserved with the pool, .7
    // broadcast; dynamic requests draw from .2 to .6.
    let cases = [
        // options | script | what the requests got
        // A name gets its address back; others skip it meanwhile.
        "-          | a b rm.2 - a        | .2 .3 .4 .2",
        // ... also after others came and went.
        "-          | a b rm.2 - - rm.4 a | .2 .3 .4 .5 .2",
        // A MAC gets its address back while it is free ...
        "-          | m1 m2 rm.2 m1       | .2 .3 .2",
        // ... but it is not held back: the lowest free goes to anyone.
        "-          | m1 m2 rm.2 - m1     | .2 .3 .2 .4",
        "sticky=mac | m1 m2 rm.2 - m1     | .2 .3 .4 .2",
        "sticky=off | a b rm.2 - a        | .2 .3 .2 .4",
        "sticky=off | m1 rm.2 m2 rm.2 m1  | .2 .2 .2",
        // Engine 29 after 28.5: the name finds what its pinned MAC had.
        "-          | m1 m2 rm.2 web/m1   | .2 .3 .2",
        // The name wins over a MAC remembered elsewhere.
        "-          | m1 a rm.2 rm.3 a/m1 | .2 .3 .3",
        // --ip takes a held address; its old owner gets the lowest free.
        "-          | a rm.2 b=.2 a       | .2 .2 .3",
        // Moving on: a container that got another address forgets the old
        // one (one address per identity), which is free again.
        "-          | a rm.2 a=.5 -       | .2 .5 .2",
        // One identity per address: the last to leave is remembered.
        "-          | a rm.2 b=.2 rm.2 - a | .2 .2 .3 .4",
        // reuse=delayed: held and cooling addresses are skipped alike, and
        // the name still gets its own back.
        "reuse=delayed | a b rm.2 rm.3 - a | .2 .3 .4 .2",
        // Serial rotation skips held addresses; the name comes back.
        "serial=true   | a b rm.2 - a - -  | .2 .3 .4 .2 .5 .6",
    ];
    for case in cases {
        let cols: Vec<&str> = case.split('|').map(str::trim).collect();
        let (opts, script, want) = (cols[0].trim_matches('-'), cols[1], cols[2]);
        let mut ipam = ipam();
        let id = add_pool(&mut ipam, "10.50.0.0/29", "", opts);
        assert_eq!(run(&mut ipam, &id, script), want, "{case}");
    }
}

#[test]
fn when_the_pool_is_full_the_least_recently_used_is_reclaimed() {
    let cases = [
        // options | script | got
        // .2–.6 leased to a–e; c, a, e leave in that order; newcomers take
        // c's first, then a's, then e's; then the pool is full.
        "-             | a b c d e rm.4 rm.2 rm.6 x y z w | .2 .3 .4 .5 .6 .4 .2 .6 PoolFull",
        // Who was reclaimed gets what is free, or nothing.
        "-             | a b c d e rm.4 rm.2 x c a        | .2 .3 .4 .5 .6 .4 .2 PoolFull",
        // A free (not held) address goes before any held one, a MAC's too.
        "-             | a b c d m1 rm.2 rm.6 x y         | .2 .3 .4 .5 .6 .6 .2",
        "sticky=mac    | a b c d m1 rm.6 rm.2 x y         | .2 .3 .4 .5 .6 .6 .2",
        // Cooling but not held goes before held.
        "reuse=delayed | a b c d - rm.2 rm.6 x y          | .2 .3 .4 .5 .6 .6 .2",
        // The age is the release, not the first lease: a came back and
        // left again, so b's is older.
        "-             | a b c d e rm.2 rm.3 a rm.2 x     | .2 .3 .4 .5 .6 .2 .3",
    ];
    for case in cases {
        let cols: Vec<&str> = case.split('|').map(str::trim).collect();
        let (opts, script, want) = (cols[0].trim_matches('-'), cols[1], cols[2]);
        let mut ipam = ipam();
        let id = add_pool(&mut ipam, "10.50.0.0/29", "", opts);
        assert_eq!(run(&mut ipam, &id, script), want, "{case}");
    }
}

#[test]
fn an_ip_range_pool_reclaims_only_inside_its_range() {
    // Range .8/29 in a /24: dynamic addresses .9–.15. web's .100 (an --ip
    // outside the range) is held back but never reclaimed for the range.
    let mut ipam = ipam();
    let id = add_pool(&mut ipam, "10.50.0.0/24", "10.50.0.8/29", "");
    let got = run(&mut ipam, &id, "web=.100 rm.100 a b c d e f g rm.9 x y web");
    assert_eq!(got, ".100 .9 .10 .11 .12 .13 .14 .15 .9 PoolFull .100");
}

#[test]
fn both_families_follow_the_same_identity() {
    // Engine 29 sends the same name and MAC on the v4 and the v6 request.
    let mut ipam = ipam();
    let v4 = add_pool(&mut ipam, "", "", "");
    let v6 = add_pool(&mut ipam, "2001:db8:7700::/64", "", "");
    for id in [&v4, &v6] {
        assert_eq!(run(&mut ipam, id, "web db rm.2 - -"), ".2 .3 .4 .5", "{id}");
    }
    for id in [&v4, &v6] {
        assert_eq!(run(&mut ipam, id, "web"), ".2", "{id}");
    }
    // A /64 is never enumerated: held addresses cost one record each.
    let v6p = ipam.state().pool(&v6).expect("v6 pool");
    assert_eq!(v6p.remembered_count(), 0, "web took its address back");
}

#[test]
fn a_network_removed_and_created_again_gives_its_containers_back_their_addresses() {
    // `docker compose down` releases the containers and the network's pool;
    // `up` asks for the same pool (the same automatic block comes back).
    let mut ipam = ipam();
    let id = add_pool(&mut ipam, "", "", "");
    assert_eq!(run(&mut ipam, &id, "a b c rm.2 rm.3 rm.4"), ".2 .3 .4");
    let c = ipam.plan_release_pool(&id).expect("held");
    ipam.apply(&c).expect("release pool");
    assert_eq!(ipam.state().retired_count(), 3);
    assert_eq!(add_pool(&mut ipam, "", "", ""), id, "the same block");
    assert_eq!(run(&mut ipam, &id, "- c b a"), ".5 .4 .3 .2");
    assert_eq!(ipam.state().retired_count(), 0);

    // Another pool over those addresses drops the memory: they are the
    // new network's now.
    assert_eq!(run(&mut ipam, &id, "rm.2 rm.3 rm.4 rm.5"), "");
    let c = ipam.plan_release_pool(&id).expect("held");
    ipam.apply(&c).expect("release pool");
    let other = add_pool(&mut ipam, "10.40.0.0/23", "", "");
    assert_eq!(ipam.state().retired_count(), 0);
    assert_eq!(run(&mut ipam, &other, "a b"), ".2 .3");

    // A pool created again with another sticky= starts afresh.
    let mut ipam2 = self::ipam();
    let id = add_pool(&mut ipam2, "", "", "");
    assert_eq!(run(&mut ipam2, &id, "a rm.2"), ".2");
    let c = ipam2.plan_release_pool(&id).expect("held");
    ipam2.apply(&c).expect("release pool");
    assert_eq!(add_pool(&mut ipam2, "", "", "sticky=off"), id);
    assert_eq!(run(&mut ipam2, &id, "- a"), ".2 .3");
}

#[test]
fn memory_is_bounded_by_the_pool_and_the_identities() {
    // A /28 (13 dynamic addresses): 1000 identities come and go; at most
    // one record per address, one address per identity.
    let mut ipam = ipam();
    let id = add_pool(&mut ipam, "10.50.0.0/28", "", "sticky=mac");
    for i in 0..1000 {
        let got = run(&mut ipam, &id, &format!("c{i}"));
        assert_eq!(run(&mut ipam, &id, &format!("rm{got}")), "");
        let p = ipam.state().pool(&id).expect("pool");
        assert_eq!(p.remembered_count(), (i + 1).min(13), "after c{i}");
    }
    // The same MAC again and again: one record.
    let mut ipam = self::ipam();
    let id = add_pool(&mut ipam, "10.50.0.0/28", "", "");
    for _ in 0..20 {
        assert_eq!(run(&mut ipam, &id, "m1 - rm.2"), ".2 .3");
        assert_eq!(run(&mut ipam, &id, "rm.3"), "");
    }
    let p = ipam.state().pool(&id).expect("pool");
    assert_eq!(p.remembered_count(), 1);
}

#[test]
fn the_journal_replays_to_the_same_memory_and_the_same_choices() {
    // Changes as the journal has them (JSON lines), replayed into a fresh
    // state: the same snapshot (records, clock) and the same next answers.
    let mut ipam = ipam();
    let id = add_pool(&mut ipam, "10.50.0.0/29", "", "reuse=delayed");
    let got = run(&mut ipam, &id, "a b c d e rm.4 rm.2 rm.6");
    assert_eq!(got, ".2 .3 .4 .5 .6");
    // The same changes as the journal holds them.
    let snapshot = serde_json::to_string(&ipam.state().snapshot()).expect("json");
    let journal = [
        r#"{"op":"add_pool","id":"LocalDefault/10.50.0.0/29","reuse":"delayed","data_gateway":"10.50.0.1"}"#,
        r#"{"op":"add_address","pool":"LocalDefault/10.50.0.0/29","address":"10.50.0.2","dynamic":true,"name":"a"}"#,
        r#"{"op":"add_address","pool":"LocalDefault/10.50.0.0/29","address":"10.50.0.3","dynamic":true,"name":"b"}"#,
        r#"{"op":"add_address","pool":"LocalDefault/10.50.0.0/29","address":"10.50.0.4","dynamic":true,"name":"c"}"#,
        r#"{"op":"add_address","pool":"LocalDefault/10.50.0.0/29","address":"10.50.0.5","dynamic":true,"name":"d"}"#,
        r#"{"op":"add_address","pool":"LocalDefault/10.50.0.0/29","address":"10.50.0.6","dynamic":true,"name":"e"}"#,
        r#"{"op":"release_address","pool":"LocalDefault/10.50.0.0/29","address":"10.50.0.4"}"#,
        r#"{"op":"release_address","pool":"LocalDefault/10.50.0.0/29","address":"10.50.0.2"}"#,
        r#"{"op":"release_address","pool":"LocalDefault/10.50.0.0/29","address":"10.50.0.6"}"#,
    ];
    let mut state = State::new();
    for line in &journal {
        let change: Change = serde_json::from_str(line).expect("a journal line");
        state.apply(&change).expect("replays");
    }
    // The live leases carry random MACs the journal lines above leave out.
    let strip = |s: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).expect("json");
        for l in v["pools"][0]["leases"]
            .as_array_mut()
            .expect("leases")
            .iter_mut()
        {
            l.as_object_mut().expect("lease").remove("mac");
        }
        v
    };
    let replayed = serde_json::to_string(&state.snapshot()).expect("json");
    assert_eq!(strip(&replayed), strip(&snapshot));
    let want = r#""releases":3,"remembered":[{"address":"10.50.0.2","name":"a","released":1},{"address":"10.50.0.4","name":"c","released":0},{"address":"10.50.0.6","name":"e","released":2}]"#;
    assert!(replayed.contains(want), "{replayed}");
    let mut replayed = Ipam::new(settings(), state).expect("ipam");
    for i in [&mut ipam, &mut replayed] {
        // Oldest release first: c's .4, a's .2; a gets e's .6, the last.
        assert_eq!(run(i, &id, "x y a z"), ".4 .2 .6 PoolFull");
    }
}

#[test]
fn a_damaged_memory_in_a_snapshot_is_refused_naming_the_address() {
    let pool = r#""id":"LocalDefault/10.0.0.0/29","leases":[{"address":"10.0.0.2","name":"a"}]"#;
    let cases = [
        (
            r#"[{"address":"10.0.0.2","name":"b","released":0}]"#,
            "10.0.0.2",
            "is leased",
        ),
        (
            r#"[{"address":"10.0.0.0","name":"b","released":0}]"#,
            "10.0.0.0",
            "is reserved",
        ),
        (
            r#"[{"address":"10.0.0.3","name":"b","released":0},{"address":"10.0.0.4","name":"b","released":1}]"#,
            "10.0.0.4",
            "identity",
        ),
        (
            r#"[{"address":"10.0.0.3","name":"b","released":5}]"#,
            "10.0.0.3",
            "clock",
        ),
        (
            r#"[{"address":"10.0.0.3","released":0}]"#,
            "10.0.0.3",
            "exactly one",
        ),
        (
            r#"[{"address":"10.9.0.3","name":"b","released":0}]"#,
            "10.9.0.3",
            "outside",
        ),
    ];
    for (remembered, addr, why) in cases {
        let text = format!(r#"{{"pools":[{{{pool},"releases":2,"remembered":{remembered}}}]}}"#);
        let snapshot: Snapshot = serde_json::from_str(&text).expect("JSON");
        let err = State::from_snapshot(snapshot)
            .expect_err(remembered)
            .to_string();
        assert!(
            err.contains(addr) && err.contains(why),
            "{remembered}: {err}"
        );
    }
}
