//! Table tests of the pool tree (F7), through the public plan → apply path:
//! tag and name selection, reservations against dynamic requests and `--ip`,
//! every refusal of a tree and of a tree change, and python-docker-ipam's
//! `schema.json` giving the blocks its README shows.

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;

/// python-docker-ipam's schema.json, byte for byte as in its repository.
pub(crate) const SEED_SCHEMA: &str = include_str!("../../tests/data/seed-schema.json");

/// gipam's own format: the README's full example.
pub(crate) const NATIVE: &str = include_str!("../../tests/data/pools.json");

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn ipam() -> Ipam {
    let settings = Settings {
        v4: vec!["10.40.0.0/16".parse().expect("net")],
        v6: vec!["2001:db8:7700::/48".parse().expect("net")],
        v4ab: 24,
        v6ab: 64,
    };
    Ipam::new(settings, State::new()).expect("ipam")
}

fn apply(ipam: &mut Ipam, c: &Change) {
    ipam.apply(c).expect("planned changes apply");
}

fn tree(ipam: &mut Ipam, file: &str) -> Result<(), Error> {
    let spec = parse_tree_file(file.as_bytes()).map_err(Error::TreeInvalid)?;
    if let Some(c) = ipam.plan_tree(&spec)? {
        apply(ipam, &c);
    }
    Ok(())
}

fn opts(kv: &str) -> HashMap<String, String> {
    kv.split(';')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pool(ipam: &mut Ipam, subnet: &str, v6: bool, o: &str) -> Result<PoolId, Error> {
    let req = PoolRequest::parse("LocalDefault", subnet, "", v6, &opts(o))?;
    let c = ipam.plan_pool(&req)?;
    let id = c.pool().cloned().expect("a pool change");
    apply(ipam, &c);
    Ok(id)
}

fn addr(
    ipam: &mut Ipam,
    id: &PoolId,
    want: Option<&str>,
    name: Option<&str>,
    mac: Option<&str>,
) -> Result<IpAddr, Error> {
    let req = AddressRequest {
        pool: id.clone(),
        address: want.map(ip),
        gateway: false,
        serial: false,
        mac: mac.map(|m| m.parse().expect("mac")),
        name: name.map(String::from),
    };
    let (c, a) = ipam.plan_address(&req)?;
    apply(ipam, &c);
    Ok(a)
}

fn json_tree(pools: &str) -> String {
    format!(r#"{{"pools": [{pools}]}}"#)
}

#[test]
fn the_seed_schema_loads_and_its_readme_examples_get_its_blocks() {
    let mut ipam = ipam();
    tree(&mut ipam, SEED_SCHEMA).expect("schema.json loads unchanged");
    let t = ipam.state().tree();
    assert_eq!(t.pools().len(), 14);
    let (_, child) = t.by_name("100.64.0.0/20").expect("child named by its CIDR");
    assert_eq!(
        (child.block, child.cidr.to_string()),
        (30, "100.64.0.0/20".into())
    );
    // propagate_tags: the child carries its root's tag too.
    assert!(child.tags.contains("netwerk") && child.tags.contains("null_routed"));
    // README: `docker network create ... scope_filter_tags=null_routed id=testnet`.
    let o = "scope_filter_tags=null_routed;id=testnet";
    let test = pool(&mut ipam, "", false, o).expect("IPv4 test");
    assert_eq!(test.subnet.to_string(), "100.64.0.0/30");
    // README: the same with --ipv6 (`test6`): the next /30 and a /64.
    let test6 = pool(&mut ipam, "", false, o).expect("IPv4 of test6");
    assert_eq!(test6.subnet.to_string(), "100.64.0.4/30");
    let test6v6 = pool(&mut ipam, "", true, o).expect("IPv6 of test6");
    assert_eq!(test6v6.subnet.to_string(), "fc00:f00f::/64");
    // Their gateways, as the README shows them.
    let gw = |id: &PoolId| ipam.state().pool(id).and_then(|p| p.data_gateway());
    assert_eq!(gw(&test), Some(ip("100.64.0.1")));
    assert_eq!(gw(&test6), Some(ip("100.64.0.5")));
    assert_eq!(gw(&test6v6), Some(ip("fc00:f00f::1")));
    // `id` is recorded with the network, the tree pool too.
    let held = ipam.state().pool(&test).expect("held");
    assert_eq!(held.owner.as_deref(), Some("testnet"));
    assert_eq!(held.tree_pool.as_deref(), Some("100.64.0.0/20"));
    // The README's compose file: host_to_container.
    let fl = pool(&mut ipam, "", false, "scope_filter_tags=host_to_container").expect("compose");
    assert_eq!(fl.subnet.to_string(), "100.64.80.0/30");
    // lock_down: the root hands out nothing itself, its children do.
    let e = pool(&mut ipam, "", false, "pool=100.64.0.0/15").expect_err("locked");
    assert!(e.to_string().contains("locked down"), "{e}");
    let n = pool(&mut ipam, "", false, "tags=netwerk").expect("netwerk via a child");
    assert_eq!(n.subnet.to_string(), "100.64.0.8/30");
}

#[test]
fn tags_pick_the_first_pool_carrying_all_of_them_with_a_free_block() {
    let mut ipam = ipam();
    tree(&mut ipam, NATIVE).expect("native file");
    let cases = [
        // options | v6 | subnet or error text
        ("tags=web", false, "10.50.0.0/28"),
        ("tags=web", false, "10.50.0.16/28"),
        ("tags=dc1,web", false, "10.50.0.32/28"),
        ("tags=web, dc1", false, "10.50.0.48/28"),
        ("tags=db", false, "10.50.16.0/26"),
        ("scope_filter_tags=\"db\"", false, "10.50.16.64/26"),
        // dc1's own blocks skip its children (10.50.0.0/20, 10.50.16.0/24).
        ("tags=dc1", false, "10.50.17.0/24"),
        ("tags=dc1;v4ab=26", false, "10.50.18.0/26"),
        ("pool=dc1-db", false, "10.50.16.128/26"),
        ("pool=dc1-web;tags=web", false, "10.50.0.64/28"),
        ("tags=web", true, "2001:db8:9900::/64"),
        (
            "tags=nope",
            false,
            "tag \"nope\" is carried by no pool of the tree; its tags are: db, dc1, web",
        ),
        (
            "pool=nope",
            false,
            "pool \"nope\" is not in the pool tree; its pools are: dc1, dc1-web, dc1-db, v6-web",
        ),
        (
            "pool=dc1-web;tags=db",
            false,
            "does not carry all the tags db",
        ),
        ("pool=v6-web", false, "is IPv6, but this is the IPv4 pass"),
        (
            "tags=db",
            true,
            "no IPv6 pool of the tree that hands out blocks carries all the tags db",
        ),
    ];
    for (o, v6, want) in cases {
        match pool(&mut ipam, "", v6, o) {
            Ok(id) => assert_eq!(id.subnet.to_string(), want, "{o}"),
            Err(e) => assert!(e.to_string().contains(want), "{o}: {e}"),
        }
    }
    // The excluded range of dc1 and its children are never handed out as
    // dc1's own blocks; a full pool says which pools it tried.
    let mut seen = Vec::new();
    loop {
        match pool(&mut ipam, "", false, "pool=dc1-db") {
            Ok(id) => seen.push(id.subnet),
            Err(e) => {
                assert!(e.to_string().contains("dc1-db (10.50.16.0/24, /26)"), "{e}");
                break;
            }
        }
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    // Without tags or pool: the main pools, as without a tree.
    let plain = pool(&mut ipam, "", false, "").expect("main pool");
    assert_eq!(plain.subnet.to_string(), "10.40.0.0/24");
    // An explicit subnet with tags must lie in a matching pool.
    let e = pool(&mut ipam, "10.40.9.0/24", false, "tags=web").expect_err("outside");
    assert!(
        e.to_string()
            .contains("not inside the tree pools asked for"),
        "{e}"
    );
    let inside = pool(&mut ipam, "10.50.8.0/28", false, "tags=web").expect("inside");
    let held = ipam.state().pool(&inside).expect("held");
    assert_eq!(held.tree_pool.as_deref(), Some("dc1-web"));
    // No tree: tags and pool= say how to load one.
    let e = pool(&mut super::tests_tree::ipam(), "", false, "tags=web").expect_err("no tree");
    assert!(e.to_string().contains("POOLS=FILE"), "{e}");
}

#[test]
fn main_pool_blocks_skip_the_tree_and_tree_blocks_skip_excludes() {
    let mut ipam = ipam();
    let t = json_tree(
        r#"{"name":"inner","cidr":"10.40.0.0/23","block":24,"tags":["t"],"exclude":["10.40.0.0/24"]}"#,
    );
    tree(&mut ipam, &t).expect("tree");
    assert_eq!(
        pool(&mut ipam, "", false, "")
            .expect("main")
            .subnet
            .to_string(),
        "10.40.2.0/24"
    );
    assert_eq!(
        pool(&mut ipam, "", false, "tags=t")
            .expect("tree")
            .subnet
            .to_string(),
        "10.40.1.0/24"
    );
    assert!(pool(&mut ipam, "", false, "tags=t").is_err());
}

#[test]
fn reservations_go_to_their_identity_and_to_nobody_else() {
    let mut ipam = ipam();
    tree(&mut ipam, NATIVE).expect("native file");
    let id = pool(&mut ipam, "", false, "pool=dc1-web").expect("pool");
    assert_eq!(id.subnet.to_string(), "10.50.0.0/28");
    // dc1-web reserves .2 for the name "web" and .3 for a MAC: dynamic
    // requests from others skip both (the gateway .1 is taken already).
    let mac = "02:42:0a:32:00:03";
    let cases = [
        // want | name | mac | outcome
        (None, Some("other"), None, "10.50.0.4"),
        (None, None, None, "10.50.0.5"),
        (
            Some("10.50.0.2"),
            Some("db"),
            None,
            "reserved for container \"web\"",
        ),
        (
            Some("10.50.0.3"),
            None,
            Some("02:42:0a:32:00:99"),
            "reserved for MAC 02:42:0a:32:00:03",
        ),
        (
            Some("10.50.0.2"),
            None,
            None,
            "ask without --ip or choose another address",
        ),
        (None, Some("web"), None, "10.50.0.2"),
        (None, Some("x"), Some(mac), "10.50.0.3"),
        (Some("10.50.0.6"), Some("web2"), None, "10.50.0.6"),
    ];
    for (want, name, m, outcome) in cases {
        match addr(&mut ipam, &id, want, name, m) {
            Ok(a) => assert_eq!(a.to_string(), outcome, "{want:?} {name:?} {m:?}"),
            Err(e) => assert!(e.to_string().contains(outcome), "{want:?} {name:?}: {e}"),
        }
    }
    // --ip from the identity itself is fine: release web, ask for it by --ip.
    let c = ipam
        .plan_release_address(&id, ip("10.50.0.2"))
        .expect("plan")
        .expect("held");
    apply(&mut ipam, &c);
    assert_eq!(
        addr(&mut ipam, &id, Some("10.50.0.2"), Some("web"), None)
            .expect("own")
            .to_string(),
        "10.50.0.2"
    );
    // Its reservation taken already (leased to web): web asks again from
    // another endpoint and gets a free address, not an error.
    assert_eq!(
        addr(&mut ipam, &id, None, Some("web"), None)
            .expect("dyn")
            .to_string(),
        "10.50.0.7"
    );
}

#[test]
fn a_reserved_first_address_is_not_the_gateway() {
    let mut ipam = ipam();
    let t = json_tree(
        r#"{"name":"p","cidr":"10.60.0.0/24","block":28,"reservations":[{"address":"10.60.0.1","name":"router"}]}"#,
    );
    tree(&mut ipam, &t).expect("tree");
    let id = pool(&mut ipam, "", false, "pool=p").expect("pool");
    let p = ipam.state().pool(&id).expect("held");
    assert_eq!(p.data_gateway(), Some(ip("10.60.0.2")));
    assert_eq!(
        addr(&mut ipam, &id, None, Some("router"), None)
            .expect("own")
            .to_string(),
        "10.60.0.1"
    );
}

#[test]
fn trees_are_refused_whole_naming_the_pool() {
    let p = |body: &str| json_tree(body);
    let cases = [
        (p(r#"{"name":"a","cidr":"10.0.0.1/16"}"#), "has host bits set; use 10.0.0.0/16"),
        (p(r#"{"name":"a","cidr":"nope"}"#), "pool \"a\": cidr \"nope\" is not a CIDR"),
        (p(r#"{"name":"","cidr":"10.0.0.0/16"}"#), "name \"\" is not 1 to 128"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16"},{"name":"a","cidr":"10.1.0.0/16"}"#), "pool name \"a\" is used twice"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16"},{"name":"b","cidr":"10.0.128.0/17"}"#), "pool b (10.0.128.0/17) overlaps pool a (10.0.0.0/16)"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","children":[{"name":"b","cidr":"10.1.0.0/24"}]}"#), "pool b: 10.1.0.0/24 is not inside its parent a"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","children":[{"name":"b","cidr":"fd00::/64"}]}"#), "is not inside its parent a"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","children":[{"name":"b","cidr":"10.0.0.0/24"},{"name":"c","cidr":"10.0.0.0/25"}]}"#), "pool c (10.0.0.0/25) overlaps pool b"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","block":8}"#), "block /8 does not fit 10.0.0.0/16"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","block":33}"#), "block /33 does not fit"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","tags":["a b"]}"#), "tag \"a b\" is not"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","exclude":["10.1.0.0/24"]}"#), "excluded range 10.1.0.0/24 is not inside 10.0.0.0/16"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","reservations":[{"address":"10.1.0.5","name":"w"}]}"#), "reservation \"10.1.0.5\" is outside"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","exclude":["10.0.0.0/24"],"reservations":[{"address":"10.0.0.5","name":"w"}]}"#), "lies in its excluded range"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","reservations":[{"address":"10.0.0.5"}]}"#), "needs exactly one of name"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","reservations":[{"address":"10.0.0.5","name":"w","mac":"02:00:00:00:00:01"}]}"#), "needs exactly one of name"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","reservations":[{"address":"10.0.0.5","mac":"zz"}]}"#), "is not of the form"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","reservations":[{"address":"10.0.0.5","name":"w"},{"address":"10.0.0.5","name":"v"}]}"#), "is reserved twice"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","reservations":[{"address":"10.0.0.5","name":"w"},{"address":"10.0.0.6","name":"w"}]}"#), "already has IPv4 address 10.0.0.5 reserved"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","reservations":[{"address":"10.0.1.0","name":"w"}]}"#), "network or broadcast address of its /24 block"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","children":[{"name":"b","cidr":"10.0.0.0/24"}],"reservations":[{"address":"10.0.0.5","name":"w"}]}"#), "lies in the child pool 10.0.0.0/24"),
        (p(r#"{"name":"a","cidr":"10.0.0.0/16","colour":"red"}"#), "unknown field `colour`"),
        (r#"{"schema_version": 2, "scopes": []}"#.to_string(), "gipam reads python-docker-ipam's version 1"),
        (r#"{"schema_version": 1, "scopes": [{"network":"10.0.0.0"}]}"#.to_string(), "has no prefix"),
        (r#"{"schema_version": 1, "scopes": [{"network":"10.0.0.0","prefix":8,"tcp_ip_version":6}]}"#.to_string(), "says tcp_ip_version 6 but is an IPv4 address"),
        (r#"{"scopes": []}"#.to_string(), "neither \"pools\""),
        ("[]".to_string(), "not a JSON object"),
    ];
    for (file, want) in cases {
        let mut ipam = ipam();
        let e = tree(&mut ipam, &file).expect_err(&file);
        assert!(e.to_string().contains(want), "{file}: {e}");
        assert!(ipam.state().tree().is_empty(), "{file}: nothing changed");
    }
}

#[test]
fn tree_changes_that_would_hurt_live_networks_are_refused_naming_them() {
    let mut ipam = ipam();
    tree(&mut ipam, NATIVE).expect("native file");
    let web = pool(&mut ipam, "", false, "pool=dc1-web").expect("web");
    addr(&mut ipam, &web, None, Some("web"), None).expect("web's reservation");
    let other = addr(&mut ipam, &web, None, Some("other"), None).expect("other");
    let db = pool(&mut ipam, "", false, "pool=dc1-db").expect("db");
    assert_eq!(db.subnet.to_string(), "10.50.16.0/26");
    let before = serde_json::to_string(&ipam.state().snapshot()).expect("json");
    let edit = |from: &str, to: &str| NATIVE.replacen(from, to, 1);
    let cases = [
        (
            edit("\"name\": \"dc1-web\"", "\"name\": \"dc1-www\""),
            "drawn from tree pool dc1-web, which the new tree lacks",
        ),
        (
            edit(
                "\"cidr\": \"10.50.16.0/24\"",
                "\"cidr\": \"10.50.16.128/25\"",
            ),
            "would lie outside dc1-db's new cidr 10.50.16.128/25",
        ),
        (
            edit(
                "\"tags\": [\"db\"]",
                "\"tags\": [\"db\"], \"exclude\": [\"10.50.16.0/27\"]",
            ),
            "overlaps the new excluded range 10.50.16.0/27",
        ),
        (
            edit(
                "\"block\": 26,",
                "\"block\": 26, \"children\": [{\"name\": \"db2\", \"cidr\": \"10.50.16.0/25\"}],",
            ),
            "overlaps the new child pool 10.50.16.0/25",
        ),
        (
            edit("{ \"address\": \"10.50.0.2\", \"name\": \"web\" },", ""),
            "reservation 10.50.0.2 for container \"web\" (tree pool dc1-web) is in use",
        ),
        (
            edit("\"10.50.0.3\"", &format!("\"{other}\"")),
            "is leased to container \"other\"",
        ),
        (
            edit("\"10.50.0.3\"", "\"10.50.0.1\""),
            "is leased to the network's gateway",
        ),
        (
            edit("\"cidr\": \"10.50.16.0/24\"", "\"cidr\": \"10.50.0.0/24\""),
            "overlaps pool dc1-web",
        ),
    ];
    for (file, want) in cases {
        let e = tree(&mut ipam, &file).expect_err(want);
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(e.to_string().contains("refused"), "{e}");
        assert_eq!(
            serde_json::to_string(&ipam.state().snapshot()).expect("json"),
            before
        );
    }
    // A change that leaves the live parts alone is fine, and the same
    // tree again is no change at all.
    tree(
        &mut ipam,
        &edit("\"tags\": [\"db\"]", "\"tags\": [\"db\", \"sql\"]"),
    )
    .expect("harmless");
    let spec = parse_tree_file(NATIVE.as_bytes()).expect("file");
    assert!(ipam.plan_tree(&spec).expect("plan").is_some());
    let same = ipam.state().tree().spec().clone();
    assert_eq!(ipam.plan_tree(&same).expect("plan"), None);
}

#[test]
fn the_tree_and_its_networks_survive_a_snapshot_round_trip() {
    let mut ipam = ipam();
    tree(&mut ipam, NATIVE).expect("native file");
    let id = pool(&mut ipam, "", false, "tags=web;id=frontend").expect("pool");
    let snap = ipam.state().snapshot();
    let text = serde_json::to_string_pretty(&snap).expect("json");
    assert!(
        text.contains("\"tree\": {") && text.contains("\"name\": \"dc1-web\""),
        "{text}"
    );
    let back = State::from_snapshot(serde_json::from_str(&text).expect("parse")).expect("load");
    assert_eq!(
        serde_json::to_string_pretty(&back.snapshot()).expect("json"),
        text
    );
    let p = back.pool(&id).expect("held");
    assert_eq!(
        (p.tree_pool.as_deref(), p.owner.as_deref()),
        (Some("dc1-web"), Some("frontend"))
    );
    // The journal line of a tree change is the same JSON and replays.
    let spec = back.tree().spec().clone();
    let line = serde_json::to_string(&Change::SetTree { tree: spec.clone() }).expect("line");
    assert_eq!(
        serde_json::from_str::<Change>(&line).expect("replay"),
        Change::SetTree { tree: spec }
    );
}
