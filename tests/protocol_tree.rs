//! The pool tree (F7) over the real socket: POOLS=FILE at start, the seed's
//! README examples, reservations against Engine 29's and 20.10's exact
//! requests, `/Gipam.ApplyPools` refusing a change naming what it would
//! hurt, a tree change a full disk refuses taken back, and the tree
//! surviving kill -9 and a restart.

mod common;

use common::{Client, Daemon, Mount};
use serde_json::{Value, json};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed-schema.json");
const NATIVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pools.json");

fn ok(c: &mut Client, method: &str, body: Value) -> Value {
    let (status, v) = c.call(method, &body).expect("call");
    assert_eq!(status, 200, "{method} {body} -> {v}");
    v
}

fn err(c: &mut Client, method: &str, body: Value) -> String {
    let (status, v) = c.call(method, &body).expect("call");
    assert_ne!(status, 200, "{method} {body} should fail, got {v}");
    v["Err"].as_str().expect("Err is a string").to_string()
}

fn pool(c: &mut Client, v6: bool, opts: Value) -> Value {
    ok(
        c,
        "IpamDriver.RequestPool",
        json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":opts,"V6":v6}),
    )
}

/// Sends a pool file as `gipam pools apply` does: the file is the body.
fn apply(c: &mut Client, file: &str) -> (u16, Value) {
    let body = std::fs::read(file).expect("pool file");
    let (status, reply) = c.raw("POST", "/Gipam.ApplyPools", &body).expect("apply");
    (status, serde_json::from_slice(&reply).expect("json reply"))
}

fn tree_pool<'a>(pools: &'a Value, name: &str) -> &'a Value {
    pools["Pools"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["Name"] == name))
        .unwrap_or_else(|| panic!("no tree pool {name} in {pools}"))
}

#[test]
fn the_seed_schema_as_pools_file_gives_the_blocks_of_its_readme() {
    let mut d = Daemon::start(&["--pools", SEED]);
    let mut c = d.client();
    // docker network create --ipam-opt scope_filter_tags=null_routed --ipam-opt id=testnet test
    let o = json!({"scope_filter_tags":"null_routed","id":"testnet"});
    let test = pool(&mut c, false, o.clone());
    assert_eq!(test["Pool"], "100.64.0.0/30");
    assert_eq!(test["Data"]["com.docker.network.gateway"], "100.64.0.1/30");
    // ... --ipv6 test6
    assert_eq!(pool(&mut c, false, o.clone())["Pool"], "100.64.0.4/30");
    let v6 = pool(&mut c, true, o);
    assert_eq!(v6["Pool"], "fc00:f00f::/64");
    assert_eq!(v6["Data"]["com.docker.network.gateway"], "fc00:f00f::1/64");
    let shown = ok(&mut c, "Gipam.Pools", Value::Null);
    let nets = &tree_pool(&shown, "100.64.0.0/20")["Networks"];
    assert_eq!(nets[0]["PoolID"], "LocalDefault/100.64.0.0/30");
    assert_eq!(nets[0]["Id"], "testnet");
    // An unknown tag is refused naming the ones there are.
    let e = err(
        &mut c,
        "IpamDriver.RequestPool",
        json!({"AddressSpace":"LocalDefault","Options":{"tags":"nope"}}),
    );
    assert!(
        e.contains("tag \"nope\" is carried by no pool") && e.contains("null_routed"),
        "{e}"
    );
    // A restart with the same POOLS changes nothing and keeps every block.
    d.kill9();
    d.spawn().expect("restart");
    let mut c = d.client();
    let next = pool(&mut c, false, json!({"scope_filter_tags":"null_routed"}));
    assert_eq!(next["Pool"], "100.64.0.8/30");
}

#[test]
fn reservations_follow_engine29_names_and_macs_and_refuse_others_ip() {
    let mut d = Daemon::start(&[]);
    let mut c = d.client();
    let (status, v) = apply(&mut c, NATIVE);
    assert_eq!((status, &v["Changed"]), (200, &json!(true)), "{v}");
    let id = pool(&mut c, false, json!({"pool":"dc1-web"}))["PoolID"].clone();
    let req = |addr: &str, opts: Value| json!({"PoolID":id,"Address":addr,"Options":opts});
    // Engine 29: name and MAC on every endpoint request.
    let mac29 = "com.docker.network.endpoint.macaddress";
    let name29 = "com.docker.network.endpoint.name";
    let other = ok(
        &mut c,
        "IpamDriver.RequestAddress",
        req("", json!({mac29:"02:42:0a:32:00:44",name29:"other"})),
    );
    assert_eq!(other["Address"], "10.50.0.4/28");
    let web = ok(
        &mut c,
        "IpamDriver.RequestAddress",
        req("", json!({mac29:"02:42:0a:32:00:45",name29:"web"})),
    );
    assert_eq!(web["Address"], "10.50.0.2/28");
    // 20.10 and 28.5: only a MAC (here the one pinned in the tree).
    let pinned = ok(
        &mut c,
        "IpamDriver.RequestAddress",
        req("", json!({mac29:"02:42:0a:32:00:03"})),
    );
    assert_eq!(pinned["Address"], "10.50.0.3/28");
    // --ip for web's address from another container.
    ok(
        &mut c,
        "IpamDriver.ReleaseAddress",
        json!({"PoolID":id,"Address":"10.50.0.2"}),
    );
    let e = err(
        &mut c,
        "IpamDriver.RequestAddress",
        req("10.50.0.2", json!({mac29:"02:42:0a:32:00:46",name29:"db"})),
    );
    assert!(
        e.contains("address 10.50.0.2") && e.contains("reserved for container \"web\""),
        "{e}"
    );
    // The same after kill -9: the tree is durable, and web gets it back.
    d.kill9();
    d.spawn().expect("restart");
    let mut c = d.client();
    let shown = ok(&mut c, "Gipam.Pools", Value::Null);
    assert_eq!(
        tree_pool(&shown, "dc1-web")["Reservations"][0]["Leased"],
        false
    );
    let web = ok(
        &mut c,
        "IpamDriver.RequestAddress",
        req("", json!({name29:"web"})),
    );
    assert_eq!(web["Address"], "10.50.0.2/28");
    // `gipam status` labels the block with its tree pool and its tags.
    let status = ok(&mut c, "Gipam.Status", Value::Null);
    let row = status["Pools"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["TreePool"] == "dc1-web"))
        .unwrap_or_else(|| panic!("a dc1-web block in {status}"));
    assert_eq!(row["Tags"], json!(["web", "dc1"]), "{row}");
    let shown = ok(&mut c, "Gipam.Pools", Value::Null);
    assert_eq!(
        tree_pool(&shown, "dc1-web")["Reservations"][0]["Leased"],
        true
    );
}

#[test]
fn a_tree_change_that_would_hurt_is_refused_and_nothing_changes() {
    let d = Daemon::start(&["--pools", SEED]);
    let mut c = d.client();
    pool(&mut c, false, json!({"scope_filter_tags":"null_routed"}));
    let before = ok(&mut c, "Gipam.Pools", Value::Null);
    let (status, v) = apply(&mut c, NATIVE);
    assert_eq!(status, 500, "{v}");
    let e = v["Err"].as_str().expect("Err");
    assert!(
        e.contains("network pool LocalDefault/100.64.0.0/30 was drawn from tree pool 100.64.0.0/20, which the new tree lacks"),
        "{e}"
    );
    assert_eq!(ok(&mut c, "Gipam.Pools", Value::Null), before);
    // Not a pool file at all.
    let (status, reply) = c
        .raw("POST", "/Gipam.ApplyPools", b"{\"pool\": []}")
        .expect("call");
    let v: Value = serde_json::from_slice(&reply).expect("json");
    assert_eq!(status, 400, "{v}");
    assert!(
        v["Err"]
            .as_str()
            .expect("Err")
            .contains("neither \"pools\""),
        "{v}"
    );
    // The same tree again is no change.
    let (status, v) = apply(&mut c, SEED);
    assert_eq!((status, &v["Changed"]), (200, &json!(false)), "{v}");
}

#[test]
fn a_pools_file_that_would_strand_a_network_is_refused_at_start() {
    let mut d = Daemon::start(&["--pools", SEED]);
    let mut c = d.client();
    pool(&mut c, false, json!({"scope_filter_tags":"null_routed"}));
    d.stop();
    // Refused, but answering (like every setting gipam refuses): each IPAM
    // request gets the reason, which names the pool file.
    d.args = vec!["--pools".into(), NATIVE.into()];
    d.spawn().expect("a refused start still answers");
    let body =
        json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":false});
    let (status, v) = d
        .client()
        .call("IpamDriver.RequestPool", &body)
        .expect("call");
    assert_eq!(status, 500, "{v}");
    assert!(v["Err"].as_str().unwrap_or("").contains("POOLS="), "{v}");
    d.stop();
    // Without POOLS the tree in the state stays and gipam starts.
    d.args.clear();
    d.spawn().expect("start without POOLS");
    let shown = ok(&mut d.client(), "Gipam.Pools", Value::Null);
    assert_eq!(shown["Pools"].as_array().map(Vec::len), Some(14));
}

#[test]
fn a_tree_change_the_disk_refuses_is_taken_back_and_works_once_there_is_room() {
    // Needs root (mount), as the fault suite does.
    let m = Mount::new(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"]);
    let prefill = m.path().join("filler0");
    std::fs::write(&prefill, vec![0u8; 1024 * 1024 - 48 * 1024]).expect("pre-fill");
    let mut d = Daemon::start_with_state(m.path().join("state"), &[]);
    let mut c = d.client();
    assert_eq!(apply(&mut c, SEED).0, 200);
    let filler = common::fill(m.path());
    let mut failed = None;
    for i in 0..200 {
        let file = if i % 2 == 0 { NATIVE } else { SEED };
        let before = ok(&mut c, "Gipam.Pools", Value::Null);
        let (status, v) = apply(&mut c, file);
        if status == 200 {
            continue;
        }
        assert_eq!(status, 500, "{v}");
        let e = v["Err"].as_str().unwrap_or("");
        assert!(e.contains("No space left on device"), "{e}");
        assert_eq!(ok(&mut c, "Gipam.Pools", Value::Null), before, "taken back");
        failed = Some(file);
        break;
    }
    let failed = failed.expect("a full disk fails a tree change");
    std::fs::remove_file(&filler).expect("free space");
    let (status, v) = apply(&mut c, failed);
    assert_eq!((status, &v["Changed"]), (200, &json!(true)), "{v}");
    let live = ok(&mut c, "Gipam.Pools", Value::Null);
    d.kill9();
    d.spawn().expect("restart");
    assert_eq!(ok(&mut d.client(), "Gipam.Pools", Value::Null), live);
}
