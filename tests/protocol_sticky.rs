//! F6, addresses that follow their container, against the real gipam
//! binary on a temporary socket, with the exact requests each engine sends
//! (ipam-protocol.md §7): Engine 29 sends the endpoint name and a fresh
//! random MAC on the IPv4 and the IPv6 request; 20.10 and 28.5 send only
//! the MAC, random unless the user pinned it (`--mac-address`, compose
//! `mac_address:`). gipam is restarted between release and request where
//! the scenario has a restart in it, so what it remembers must be durable.

mod common;

use common::{Client, Daemon, Rng};
use serde_json::{Value, json};

const V4: &str = "10.40.0.0/16";
const V6: &str = "2001:db8:7700::/48";

fn daemon() -> Daemon {
    Daemon::start(&["--v4", V4, "--v6", V6])
}

fn ok(c: &mut Client, method: &str, body: Value) -> Value {
    let (status, v) = c.call(method, &body).expect("call");
    assert_eq!(status, 200, "{method} {body} -> {v}");
    v
}

/// RequestPool as the engines send it for `docker network create
/// [--ipv6] [--ipam-opt k=v]` (Engine 29 sends `"Options":{}` when none).
fn pool(c: &mut Client, v6: bool, options: Value) -> String {
    let body =
        json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":options,"V6":v6});
    let v = ok(c, "IpamDriver.RequestPool", body);
    v["PoolID"].as_str().expect("PoolID").to_string()
}

fn release_pool(c: &mut Client, id: &str) {
    assert_eq!(
        ok(c, "IpamDriver.ReleasePool", json!({"PoolID":id})),
        json!({})
    );
}

/// A random MAC, as the daemon makes one for every endpoint it creates.
fn random_mac(rng: &mut Rng) -> String {
    let b = rng.next().to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        (b[0] & 0xfe) | 0x02,
        b[1],
        b[2],
        b[3],
        b[4],
        b[5]
    )
}

/// A container's RequestAddress: Engine 29's (MAC and name) when `name`
/// is given, else 20.10's and 28.5's (the MAC alone).
fn endpoint(c: &mut Client, id: &str, mac: &str, name: Option<&str>) -> String {
    let opts = match name {
        Some(n) => {
            json!({"com.docker.network.endpoint.macaddress":mac,"com.docker.network.endpoint.name":n})
        }
        None => json!({"com.docker.network.endpoint.macaddress":mac}),
    };
    let body = json!({"PoolID":id,"Address":"","Options":opts});
    let v = ok(c, "IpamDriver.RequestAddress", body);
    v["Address"].as_str().expect("Address").to_string()
}

/// ReleaseAddress of `addr` (a reply's CIDR; the daemon sends the bare
/// address).
fn release(c: &mut Client, id: &str, addr: &str) {
    let a = addr.split('/').next().unwrap_or(addr);
    let body = json!({"PoolID":id,"Address":a});
    assert_eq!(ok(c, "IpamDriver.ReleaseAddress", body), json!({}));
}

/// `docker run --name NAME` on a dual-stack network: v4 then v6, one MAC.
fn run29(c: &mut Client, pools: &[String; 2], name: &str, rng: &mut Rng) -> [String; 2] {
    let mac = random_mac(rng);
    [
        endpoint(c, &pools[0], &mac, Some(name)),
        endpoint(c, &pools[1], &mac, Some(name)),
    ]
}

/// `docker rm -f`: v4 then v6.
fn rm(c: &mut Client, pools: &[String; 2], addrs: &[String; 2]) {
    release(c, &pools[0], &addrs[0]);
    release(c, &pools[1], &addrs[1]);
}

/// Stops gipam (SIGTERM, or kill -9 when `crash`) and starts it again.
fn restart(d: &mut Daemon, crash: bool) -> Client {
    if crash {
        d.kill9();
    } else {
        assert!(d.stop(), "clean exit on SIGTERM");
    }
    d.spawn().expect("gipam starts again");
    d.client()
}

#[test]
fn engine29_recreated_by_name_gets_its_addresses_back_on_both_families() {
    // `docker rm -f web && docker run --name web`, other containers started
    // in between, gipam restarted (cleanly, then by a crash) in between.
    for crash in [false, true] {
        let mut d = daemon();
        let mut c = d.client();
        let mut rng = Rng(0x5eed | 1);
        let pools = [
            pool(&mut c, false, json!({})),
            pool(&mut c, true, json!({})),
        ];
        let web = run29(&mut c, &pools, "web", &mut rng);
        assert_eq!(web, ["10.40.0.2/24", "2001:db8:7700::2/64"]);
        let db = run29(&mut c, &pools, "db", &mut rng);
        rm(&mut c, &pools, &web);
        let mut c = restart(&mut d, crash);
        // Others come while web is gone: web's addresses are held back.
        let cache = run29(&mut c, &pools, "cache", &mut rng);
        let worker = run29(&mut c, &pools, "worker", &mut rng);
        assert_eq!(cache, ["10.40.0.4/24", "2001:db8:7700::4/64"]);
        assert_eq!(worker, ["10.40.0.5/24", "2001:db8:7700::5/64"]);
        rm(&mut c, &pools, &db);
        let mut c = restart(&mut d, crash);
        assert_eq!(run29(&mut c, &pools, "web", &mut rng), web, "crash={crash}");
        assert_eq!(run29(&mut c, &pools, "db", &mut rng), db, "crash={crash}");
    }
}

#[test]
fn engine29_daemon_restart_gives_restart_always_containers_their_own_addresses() {
    // At stop dockerd releases every endpoint; at start it asks again with
    // new MACs, in its own order.
    let d = daemon();
    let mut c = d.client();
    let mut rng = Rng(0xd0c | 1);
    let pools = [
        pool(&mut c, false, json!({})),
        pool(&mut c, true, json!({})),
    ];
    let names = ["alpha", "bravo", "charlie", "delta"];
    let before: Vec<[String; 2]> = names
        .iter()
        .map(|n| run29(&mut c, &pools, n, &mut rng))
        .collect();
    for a in &before {
        rm(&mut c, &pools, a);
    }
    for i in [2, 0, 3, 1] {
        let got = run29(&mut c, &pools, names[i], &mut rng);
        assert_eq!(got, before[i], "{}", names[i]);
    }
}

#[test]
fn engine29_compose_down_and_up_gives_the_same_addresses() {
    // `docker compose down` removes the containers and the network (the
    // gateway named in Data, then the pool); `up` creates both again.
    let mut d = daemon();
    let mut c = d.client();
    let mut rng = Rng(0xc0 | 1);
    let pools = [
        pool(&mut c, false, json!({})),
        pool(&mut c, true, json!({})),
    ];
    let names = ["proj-web-1", "proj-db-1", "proj-cache-1"];
    let before: Vec<[String; 2]> = names
        .iter()
        .map(|n| run29(&mut c, &pools, n, &mut rng))
        .collect();
    for a in &before {
        rm(&mut c, &pools, a);
    }
    release(&mut c, &pools[0], "10.40.0.1");
    release(&mut c, &pools[1], "2001:db8:7700::1");
    release_pool(&mut c, &pools[0]);
    release_pool(&mut c, &pools[1]);
    let mut c = restart(&mut d, true);
    let again = [
        pool(&mut c, false, json!({})),
        pool(&mut c, true, json!({})),
    ];
    assert_eq!(again, pools, "the same blocks come back");
    for i in [1, 2, 0] {
        let got = run29(&mut c, &pools, names[i], &mut rng);
        assert_eq!(got, before[i], "{}", names[i]);
    }
}

#[test]
fn a_pinned_mac_gets_its_address_back_while_it_is_free() {
    // 20.10/28.5: `docker run --mac-address M` recreated, or compose
    // `mac_address:` down and up (the network stays: an external one).
    let mut d = daemon();
    let mut c = d.client();
    let mut rng = Rng(0x20 | 1);
    let id = pool(&mut c, false, Value::Null);
    let pinned = "02:42:0a:28:00:99";
    let first = endpoint(&mut c, &id, &random_mac(&mut rng), None);
    let mine = endpoint(&mut c, &id, pinned, None);
    assert_eq!(
        (first.as_str(), mine.as_str()),
        ("10.40.0.2/24", "10.40.0.3/24")
    );
    release(&mut c, &id, &first);
    release(&mut c, &id, &mine);
    let mut c = restart(&mut d, true);
    // A random MAC is nobody to come back for: lowest free, .2.
    assert_eq!(
        endpoint(&mut c, &id, &random_mac(&mut rng), None),
        "10.40.0.2/24"
    );
    assert_eq!(endpoint(&mut c, &id, pinned, None), mine);
    // Not held back by default: taken by someone else while M was away,
    // M gets the lowest free one, and keeps that one from then on.
    release(&mut c, &id, &mine);
    assert_eq!(endpoint(&mut c, &id, &random_mac(&mut rng), None), mine);
    let moved = endpoint(&mut c, &id, pinned, None);
    assert_eq!(moved, "10.40.0.4/24");
    release(&mut c, &id, &moved);
    let mut c = restart(&mut d, false);
    assert_eq!(endpoint(&mut c, &id, pinned, None), moved);
}

#[test]
fn sticky_mac_holds_a_pinned_macs_address_back_from_others() {
    // `docker network create --ipam-opt sticky=mac`: every container pins
    // its MAC, so a MAC is an identity worth holding an address for.
    let mut d = daemon();
    let mut c = d.client();
    let mut rng = Rng(0x28 | 1);
    let id = pool(&mut c, false, json!({"sticky":"mac"}));
    let pinned = ["02:42:0a:28:00:01", "02:42:0a:28:00:02"];
    let got: Vec<String> = pinned
        .iter()
        .map(|m| endpoint(&mut c, &id, m, None))
        .collect();
    for a in &got {
        release(&mut c, &id, a);
    }
    let mut c = restart(&mut d, true);
    // The option is durable with the pool; others skip both addresses.
    let other = endpoint(&mut c, &id, &random_mac(&mut rng), None);
    assert_eq!(other, "10.40.0.4/24");
    assert_eq!(endpoint(&mut c, &id, pinned[1], None), got[1]);
    assert_eq!(endpoint(&mut c, &id, pinned[0], None), got[0]);
}

#[test]
fn engines_before_29_hand_the_same_set_back_after_a_daemon_restart() {
    // 28.5 with restart=always containers and random MACs: nothing to
    // follow, but the lowest-free rule hands the same set back (shuffled,
    // as Docker's own IPAM does).
    let d = daemon();
    let mut c = d.client();
    let mut rng = Rng(0x285 | 1);
    let id = pool(&mut c, false, Value::Null);
    let mut before: Vec<String> = (0..3)
        .map(|_| endpoint(&mut c, &id, &random_mac(&mut rng), None))
        .collect();
    for a in &before {
        release(&mut c, &id, a);
    }
    let mut after: Vec<String> = (0..3)
        .map(|_| endpoint(&mut c, &id, &random_mac(&mut rng), None))
        .collect();
    before.sort();
    after.sort();
    assert_eq!(after, before);
}

#[test]
fn a_sticky_value_gipam_does_not_take_is_refused_naming_the_ones_it_takes() {
    let d = daemon();
    let mut c = d.client();
    let body = json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{"sticky":"always"},"V6":false});
    let (status, v) = c.call("IpamDriver.RequestPool", &body).expect("call");
    assert_eq!(status, 500, "{v}");
    assert_eq!(
        v["Err"],
        r#"ipam option sticky="always" is invalid: want name, mac or off"#
    );
    // sticky=off: Docker's own rule alone, a name is not followed.
    let id = pool(&mut c, false, json!({"sticky":"off"}));
    let mut rng = Rng(0x0ff | 1);
    let a = endpoint(&mut c, &id, &random_mac(&mut rng), Some("web"));
    release(&mut c, &id, &a);
    let b = endpoint(&mut c, &id, &random_mac(&mut rng), Some("other"));
    assert_eq!(b, a, "nothing held back");
}
