//! Engine 29's exact requests (ipam-protocol.md §7) against the real gipam
//! binary on a temporary socket: the endpoint name on IPv4 and IPv6
//! requests, size-only pools, the macvlan/ipvlan sequence (RequestPool and
//! no gateway request), the gateway gipam names in RequestPool's `Data`,
//! which no container ever gets and which survives a restart of gipam, and
//! size-only blocks that skip the host's routes.

mod common;

use common::{Client, Daemon};
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

fn err(c: &mut Client, method: &str, body: Value) -> String {
    let (status, v) = c.call(method, &body).expect("call");
    assert_ne!(status, 200, "{method} {body} should fail, got {v}");
    v["Err"].as_str().expect("Err is a string").to_string()
}

/// RequestPool exactly as Engine 29 sends it.
fn pool(c: &mut Client, pool: &str, v6: bool) -> Value {
    let body = json!({"AddressSpace":"LocalDefault","Pool":pool,"SubPool":"","Options":{},"V6":v6});
    ok(c, "IpamDriver.RequestPool", body)
}

/// A container's RequestAddress as Engine 29 sends it (MAC and name).
fn endpoint(c: &mut Client, id: &str, mac: &str, name: &str) -> String {
    let opts = json!({"com.docker.network.endpoint.macaddress":mac,"com.docker.network.endpoint.name":name});
    let body = json!({"PoolID":id,"Address":"","Options":opts});
    let v = ok(c, "IpamDriver.RequestAddress", body);
    v["Address"].as_str().expect("Address").to_string()
}

fn gateway(c: &mut Client, id: &str, want: &str) -> Result<String, String> {
    let body = json!({"PoolID":id,"Address":want,"Options":{"RequestAddressType":"com.docker.network.gateway"}});
    let (status, v) = c.call("IpamDriver.RequestAddress", &body).expect("call");
    match status {
        200 => Ok(v["Address"].as_str().expect("Address").to_string()),
        _ => Err(v["Err"].as_str().expect("Err").to_string()),
    }
}

fn release(c: &mut Client, id: &str, a: &str) {
    let body = json!({"PoolID":id,"Address":a});
    assert_eq!(ok(c, "IpamDriver.ReleaseAddress", body), json!({}));
}

fn pool_id(v: &Value) -> String {
    v["PoolID"].as_str().expect("PoolID").to_string()
}

#[test]
fn the_endpoint_name_is_recorded_on_ipv4_and_ipv6_requests() {
    let d = daemon();
    let mut c = d.client();
    let v4 = pool_id(&pool(&mut c, "", false));
    assert_eq!(
        pool_id(&pool(&mut c, "", true)),
        "LocalDefault/2001:db8:7700::/64"
    );
    // §7, byte for byte: name and MAC on both families.
    let body = br#"{"PoolID":"LocalDefault/2001:db8:7700::/64","Address":"","Options":{"com.docker.network.endpoint.macaddress":"0a:f5:fb:b3:37:2e","com.docker.network.endpoint.name":"c-alpha"}}
"#;
    let (status, reply) = c
        .raw("POST", "/IpamDriver.RequestAddress", body)
        .expect("call");
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_slice(&reply).expect("JSON");
    assert_eq!(reply["Address"], "2001:db8:7700::2/64");
    assert_eq!(
        endpoint(&mut c, &v4, "0a:f5:fb:b3:37:2e", "c-alpha"),
        "10.40.0.2/24"
    );
    // 28.5 sends only the MAC: the name is never required.
    let opts = json!({"com.docker.network.endpoint.macaddress":"5a:b2:5b:6a:a2:29"});
    let v = ok(
        &mut c,
        "IpamDriver.RequestAddress",
        json!({"PoolID":v4,"Address":"","Options":opts}),
    );
    assert_eq!(v["Address"], "10.40.0.3/24");
    let leases = ok(&mut c, "Gipam.Leases", Value::Null)["Leases"].clone();
    let named: Vec<(String, Value)> = leases
        .as_array()
        .expect("list")
        .iter()
        .map(|l| {
            (
                l["Address"].as_str().unwrap_or("").to_string(),
                l["Name"].clone(),
            )
        })
        .collect();
    let want = [
        ("10.40.0.1", Value::Null), // the gateway named in Data
        ("10.40.0.2", json!("c-alpha")),
        ("10.40.0.3", Value::Null),
        ("2001:db8:7700::1", Value::Null),
        ("2001:db8:7700::2", json!("c-alpha")),
    ];
    let want: Vec<(String, Value)> = want
        .iter()
        .map(|(a, n)| (a.to_string(), n.clone()))
        .collect();
    assert_eq!(named, want);
}

#[test]
fn size_only_pools_get_a_block_of_that_size_and_its_gateway_in_data() {
    let d = daemon();
    let mut c = d.client();
    // §7, byte for byte.
    let body = br#"{"AddressSpace":"LocalDefault","Pool":"0.0.0.0/26","SubPool":"","Options":{},"V6":false}
"#;
    let (status, reply) = c
        .raw("POST", "/IpamDriver.RequestPool", body)
        .expect("call");
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_slice(&reply).expect("JSON");
    assert_eq!(
        reply,
        json!({"PoolID":"LocalDefault/10.40.0.0/26","Pool":"10.40.0.0/26","Data":{"com.docker.network.gateway":"10.40.0.1/26"}})
    );
    assert_eq!(
        pool(&mut c, "::/80", true),
        json!({"PoolID":"LocalDefault/2001:db8:7700::/80","Pool":"2001:db8:7700::/80","Data":{"com.docker.network.gateway":"2001:db8:7700::1/80"}})
    );
    // A second one of each is another block.
    assert_eq!(pool(&mut c, "0.0.0.0/26", false)["Pool"], "10.40.0.64/26");
    assert_eq!(
        pool(&mut c, "::/80", true)["Pool"],
        "2001:db8:7700:0:1::/80"
    );
    // Explicit subnets get Data too; a single address gets none.
    let v = pool(&mut c, "192.168.77.0/24", false);
    assert_eq!(
        v["Data"],
        json!({"com.docker.network.gateway":"192.168.77.1/24"})
    );
    assert_eq!(pool(&mut c, "192.168.78.9/32", false)["Data"], json!({}));
}

/// `docker network create -d macvlan|ipvlan -o parent=X --ipam-driver gipam N`
/// on Engine 29: the driver options never reach the IPAM, so the pool
/// request is the one a bridge network sends, and no gateway request
/// follows. Containers come next.
#[test]
fn macvlan_and_ipvlan_networks_have_a_gateway_no_container_gets() {
    let d = daemon();
    let mut c = d.client();
    for (subnet, v6, gw, first) in [
        ("", false, "10.40.0.1/24", "10.40.0.2/24"),
        (
            "192.168.160.0/24",
            false,
            "192.168.160.1/24",
            "192.168.160.2/24",
        ),
        ("", true, "2001:db8:7700::1/64", "2001:db8:7700::2/64"),
        ("fd00:160::/64", true, "fd00:160::1/64", "fd00:160::2/64"),
    ] {
        let v = pool(&mut c, subnet, v6);
        assert_eq!(v["Data"]["com.docker.network.gateway"], gw, "{v}");
        let id = pool_id(&v);
        assert_eq!(endpoint(&mut c, &id, "0a:f5:fb:b3:37:2e", "c-alpha"), first);
        // The gateway is held: --ip of it (or an aux address) is refused.
        let ip = gw.split('/').next().expect("ip");
        let e = err(
            &mut c,
            "IpamDriver.RequestAddress",
            json!({"PoolID":id,"Address":ip,"Options":null}),
        );
        assert!(e.contains(&format!("address {ip} already in use")), "{e}");
    }
    // A small network fills up without ever handing out its gateway.
    let id = pool_id(&pool(&mut c, "192.168.161.0/29", false));
    let got: Vec<String> = (0..5)
        .map(|i| endpoint(&mut c, &id, "0a:f5:fb:b3:37:2e", &format!("c-{i}")))
        .collect();
    let want: Vec<String> = (2..=6).map(|i| format!("192.168.161.{i}/29")).collect();
    assert_eq!(got, want);
    let e = err(
        &mut c,
        "IpamDriver.RequestAddress",
        json!({"PoolID":id,"Address":"","Options":null}),
    );
    assert!(e.contains("no free address left"), "{e}");
    // Network removal: the daemon releases the gateway it took from Data,
    // then the pool; the next network of that subnet starts afresh.
    release(&mut c, &id, "192.168.161.1");
    let rp = ok(&mut c, "IpamDriver.ReleasePool", json!({"PoolID":id}));
    assert_eq!(rp, json!({}));
    let v = pool(&mut c, "192.168.161.0/29", false);
    assert_eq!(v["Data"]["com.docker.network.gateway"], "192.168.161.1/29");
}

/// With `--gateway G` every engine ignores `Data` and requests G.
#[test]
fn a_user_gateway_replaces_the_one_named_in_data() {
    let d = daemon();
    let mut c = d.client();
    let id = pool_id(&pool(&mut c, "192.168.160.0/24", false));
    assert_eq!(
        gateway(&mut c, &id, "192.168.160.254"),
        Ok("192.168.160.254/24".into())
    );
    // The .1 named in Data is free again; the user's gateway is held.
    assert_eq!(
        endpoint(&mut c, &id, "0a:f5:fb:b3:37:2e", "a"),
        "192.168.160.1/24"
    );
    let e = gateway(&mut c, &id, "192.168.160.254").expect_err("held");
    assert!(e.contains("already in use"), "{e}");
    // --gateway equal to the one in Data: it is claimed, not "in use".
    let id = pool_id(&pool(&mut c, "192.168.162.0/24", false));
    assert_eq!(
        gateway(&mut c, &id, "192.168.162.1"),
        Ok("192.168.162.1/24".into())
    );
    assert_eq!(
        endpoint(&mut c, &id, "0a:f5:fb:b3:37:2e", "a"),
        "192.168.162.2/24"
    );
}

#[test]
fn the_gateway_in_data_survives_a_restart_between_pool_and_addresses() {
    let mut d = daemon();
    let mut c = d.client();
    let a = pool_id(&pool(&mut c, "0.0.0.0/26", false));
    let b = pool_id(&pool(&mut c, "192.168.160.0/24", false));
    let six = pool_id(&pool(&mut c, "::/80", true));
    d.kill9();
    d.spawn().expect("restart");
    let mut c = d.client();
    assert_eq!(
        endpoint(&mut c, &a, "0a:f5:fb:b3:37:2e", "x"),
        "10.40.0.2/26"
    );
    let e = err(
        &mut c,
        "IpamDriver.RequestAddress",
        json!({"PoolID":a,"Address":"10.40.0.1","Options":null}),
    );
    assert!(e.contains("already in use"), "{e}");
    assert_eq!(
        endpoint(&mut c, &six, "0a:f5:fb:b3:37:2e", "x"),
        "2001:db8:7700::2/80"
    );
    // Still provisional after the restart: --gateway replaces it.
    assert_eq!(
        gateway(&mut c, &b, "192.168.160.254"),
        Ok("192.168.160.254/24".into())
    );
    assert_eq!(
        endpoint(&mut c, &b, "0a:f5:fb:b3:37:2e", "y"),
        "192.168.160.1/24"
    );
}

/// Size-only blocks never collide with the host's routes. Uses this
/// machine's own connected routes: the main pool is made of a connected
/// route and its sibling, so the only free block is the sibling. Only
/// routes of ordinary interfaces are used: bridges and veths come and go
/// while other tests run dockerd on this host.
#[test]
fn size_only_blocks_skip_the_hosts_connected_routes() {
    let stable = |path: &str, iface_col: usize, header: usize| -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = text.lines().enumerate().filter(|(i, l)| {
            let iface = l.split_whitespace().nth(iface_col).unwrap_or("");
            let moving = ["br-", "docker", "veth", "vx-"];
            *i < header || !moving.iter().any(|p| iface.starts_with(p))
        });
        lines.map(|(_, l)| format!("{l}\n")).collect()
    };
    let mut routes = gipam::routes::parse_v4(&stable(gipam::routes::PROC_V4, 0, 1));
    routes.extend(gipam::routes::parse_v6(&stable(
        gipam::routes::PROC_V6,
        9,
        0,
    )));
    let usable = |n: &ipnet::IpNet, v6: bool| match n {
        ipnet::IpNet::V4(_) => !v6 && (8..=30).contains(&n.prefix_len()),
        ipnet::IpNet::V6(n6) => {
            let first = n6.addr().segments()[0];
            v6 && (16..=120).contains(&n.prefix_len())
                && first & 0xffc0 != 0xfe80 // link-local
                && first & 0xff00 != 0xff00 // multicast
        }
    };
    let pick = |v6: bool| {
        let r = routes.iter().find(|r| r.connected && usable(&r.net, v6));
        r.map(|r| r.net)
    };
    let collides = |free: &ipnet::IpNet| {
        let hit = |r: &&gipam::ipam::HostRoute| {
            r.connected && (r.net.contains(free) || free.contains(&r.net))
        };
        routes.iter().any(|r| hit(&r))
    };
    let (Some(v4), v6) = (pick(false), pick(true)) else {
        eprintln!("no connected IPv4 route on this host: nothing to check");
        return;
    };
    let parent = |n: ipnet::IpNet| n.supernet().expect("has a supernet");
    let sibling = |n: ipnet::IpNet| {
        let p = parent(n);
        p.subnets(n.prefix_len())
            .expect("halves")
            .find(|h| *h != n)
            .expect("sibling")
    };
    let v6_main = v6.map_or(V6.to_string(), |n| parent(n).to_string());
    let v6ab = v6.map_or(64, |n| n.prefix_len()).to_string();
    let (v4_main, v4ab) = (parent(v4).to_string(), v4.prefix_len().to_string());
    let args = [
        "--v4", &v4_main, "--v4ab", &v4ab, "--v6", &v6_main, "--v6ab", &v6ab,
    ];
    let d = Daemon::start(&args);
    let mut c = d.client();
    let free = sibling(v4);
    let size = format!("0.0.0.0/{}", v4.prefix_len());
    if !collides(&free) {
        assert_eq!(pool(&mut c, &size, false)["Pool"], free.to_string(), "{v4}");
        let e = err(
            &mut c,
            "IpamDriver.RequestPool",
            json!({"AddressSpace":"LocalDefault","Pool":size,"SubPool":"","Options":{},"V6":false}),
        );
        assert!(e.contains("collides with none of the host's"), "{e}");
    }
    if let Some(v6) = v6.filter(|n| !collides(&sibling(*n))) {
        let free = sibling(v6);
        let size = format!("::/{}", v6.prefix_len());
        assert_eq!(pool(&mut c, &size, true)["Pool"], free.to_string(), "{v6}");
    }
}
