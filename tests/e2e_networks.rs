//! End-to-end scenarios of the managed plugin on the network kinds and
//! operations where Docker engines differ: IPv6-only networks, macvlan and
//! ipvlan networks on a veth parent (with and without `--gateway`, with
//! `--internal`, dual stack), `docker network connect` / `disconnect` of a
//! running container, and `docker restart` keeping an address. Each runs on every engine (scripts/test-engines.sh) and
//! asserts that engine's own behaviour where they differ (see
//! `docker_env::engine`), never skips.
//!
//! macvlan/ipvlan parents are veth pairs made for the test
//! ([`Resources::veth`], deleted after the networks). Traffic is never
//! sent; routes and addresses are read inside the containers.
//!
//! Address plan (see `e2e_plugin.rs` for the others): scenario k uses
//! V4=10.25k.0.0/16 and V6=2001:db8:e25k::/48 as main pools, and
//! 10.(204+k).0.0/16 and 2001:db8:e26k::/48 for explicit subnets.

mod common;
mod docker_env;
mod plugin_fixture;

use std::collections::BTreeSet;
use std::net::IpAddr;

use docker_env::*;
use ipnet::IpNet;
use plugin_fixture::*;

const SUITE: &str = "e2e_networks";

fn set(addrs: &[IpAddr]) -> BTreeSet<IpAddr> {
    addrs.iter().copied().collect()
}

/// `docker network create` flags from one string.
fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// The global addresses inside `container`, whatever the interface.
fn inside(container: &str) -> BTreeSet<IpNet> {
    addrs_by_dev(container)
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

/// 1. IPv6-only networks (`--ipv6 --ipv4=false`), automatic and with an
///    explicit subnet, gateway and `--ip6`. Engine 28: no IPv4 pool is
///    asked for, containers have only IPv6 (and an IPv6 default route).
///    Engine 20.10 has no IPv6-only networks: it ignores `--ipv4=false` and
///    the network gets an IPv4 block from gipam too.
#[test]
fn n1_ipv6_only_networks() {
    let Some(mut p) = Plugin::start(SUITE, "n1", &["V4=10.251.0.0/16", "V6=2001:db8:e251::/48"])
    else {
        return;
    };
    let v6only = engine().has_ipv6_only();
    let auto = p.network("auto", &["--ipv6", "--ipv4=false"]);
    let fixed = p.network(
        "fixed",
        &[
            "--ipv6",
            "--ipv4=false",
            "--subnet",
            "2001:db8:e261::/64",
            "--gateway",
            "2001:db8:e261::fe",
        ],
    );
    let (ca, cf) = (ipam_config(&auto), ipam_config(&fixed));
    eprintln!("n1: engine {}: {ca:?} / {cf:?}", engine().version);
    let c6 = config_of(&ca, true);
    assert_eq!(
        net(field(c6, "Subnet")),
        net("2001:db8:e251::/64"),
        "{ca:?}"
    );
    assert_eq!(addr_field(c6, "Gateway"), ip("2001:db8:e251::1"), "{ca:?}");
    let f6 = config_of(&cf, true);
    assert_eq!(
        net(field(f6, "Subnet")),
        net("2001:db8:e261::/64"),
        "{cf:?}"
    );
    assert_eq!(addr_field(f6, "Gateway"), ip("2001:db8:e261::fe"), "{cf:?}");

    let a = p.run("a", &auto, &[]);
    let f = p.run("f", &fixed, &["--ip6", "2001:db8:e261::10"]);
    let (gw_a, gw_f) = (ip("2001:db8:e251::1"), ip("2001:db8:e261::fe"));
    let mut want_leased = set(&[gw_a, gw_f, ip("2001:db8:e251::2"), ip("2001:db8:e261::10")]);
    if v6only {
        assert!(configs_of(&ca, false).is_empty(), "no IPv4 pool: {ca:?}");
        assert!(configs_of(&cf, false).is_empty(), "no IPv4 pool: {cf:?}");
        assert_eq!(network_inspect(&auto, "{{.EnableIPv4}}"), "false");
        for (c, n, a6, gw) in [
            (&a, &auto, "2001:db8:e251::2", gw_a),
            (&f, &fixed, "2001:db8:e261::10", gw_f),
        ] {
            let ep = endpoint(c, n);
            assert_eq!(ep["IPAddress"], "", "no IPv4 address: {ep}");
            assert_eq!(ep["GlobalIPv6Address"], a6, "{ep}");
            assert_eq!(ep["GlobalIPv6PrefixLen"], 64, "{ep}");
            assert_eq!(inside(c), [net(&format!("{a6}/64"))].into(), "{c}");
            assert_gateways(c, n, None, Some(gw));
        }
        let pools = p.pools();
        assert!(pools.iter().all(|b| matches!(b, IpNet::V6(_))), "{pools:?}");
    } else {
        // 20.10: an IPv4 block each, the lowest free ones, and both families
        // inside.
        assert_eq!(subnet_of(&auto, false), net("10.251.0.0/24"), "{ca:?}");
        assert_eq!(subnet_of(&fixed, false), net("10.251.1.0/24"), "{cf:?}");
        assert_endpoint(
            &a,
            &auto,
            (ip("10.251.0.2"), 24),
            Some((ip("2001:db8:e251::2"), 64)),
        );
        assert_endpoint(
            &f,
            &fixed,
            (ip("10.251.1.2"), 24),
            Some((ip("2001:db8:e261::10"), 64)),
        );
        assert_gateways(&a, &auto, Some(ip("10.251.0.1")), Some(gw_a));
        assert_gateways(&f, &fixed, Some(ip("10.251.1.1")), Some(gw_f));
        want_leased.extend(["10.251.0.1", "10.251.0.2", "10.251.1.1", "10.251.1.2"].map(ip));
    }
    assert_eq!(p.leased(), want_leased, "gateways and containers");

    p.rm_all();
    p.assert_empty();
}

/// 2. macvlan networks on a veth parent, dual stack, with `--gateway` for
///    both families: containers get the lowest free addresses, the
///    gateways as `Gateway`/`IPv6Gateway` and as default routes inside;
///    `--ip`/`--ip6` are honoured. With `--internal` (on the other end of
///    the pair): the gateway is still held by gipam (no container gets it),
///    but the endpoints have none, on 20.10 and 28 alike.
#[test]
fn n2_macvlan_with_gateway_dual_stack_and_internal() {
    let Some(mut p) = Plugin::start(SUITE, "n2", &["V4=10.252.0.0/16", "V6=2001:db8:e252::/48"])
    else {
        return;
    };
    let [pa, pb] = p.veth("mv");
    let (gw4, gw6) = (ip("10.206.1.1"), ip("2001:db8:e262:1::1"));
    let mv = p.network(
        "mv",
        &words(&format!(
            "-d macvlan -o parent={pa} --subnet 10.206.1.0/24 --gateway \
            10.206.1.1 --ipv6 --subnet 2001:db8:e262:1::/64 --gateway \
            2001:db8:e262:1::1"
        )),
    );
    assert_eq!(network_inspect(&mv, "{{.Driver}}"), "macvlan");
    assert_eq!(network_inspect(&mv, "{{.Options.parent}}"), pa);
    let cfg = ipam_config(&mv);
    assert_eq!(
        addr_field(config_of(&cfg, false), "Gateway"),
        gw4,
        "{cfg:?}"
    );
    assert_eq!(addr_field(config_of(&cfg, true), "Gateway"), gw6, "{cfg:?}");
    let d = p.run("d", &mv, &[]);
    assert_endpoint(
        &d,
        &mv,
        (ip("10.206.1.2"), 24),
        Some((ip("2001:db8:e262:1::2"), 64)),
    );
    assert_gateways(&d, &mv, Some(gw4), Some(gw6));
    let s = p.run(
        "s",
        &mv,
        &["--ip", "10.206.1.50", "--ip6", "2001:db8:e262:1::50"],
    );
    assert_endpoint(
        &s,
        &mv,
        (ip("10.206.1.50"), 24),
        Some((ip("2001:db8:e262:1::50"), 64)),
    );
    assert_gateways(&s, &mv, Some(gw4), Some(gw6));

    let mi = p.network(
        "mi",
        &words(&format!(
            "-d macvlan -o parent={pb} --internal --subnet 10.206.2.0/24 --gateway 10.206.2.1"
        )),
    );
    assert_eq!(network_inspect(&mi, "{{.Internal}}"), "true");
    assert_eq!(
        addr_field(config_of(&ipam_config(&mi), false), "Gateway"),
        ip("10.206.2.1")
    );
    let i = p.run("i", &mi, &[]);
    assert_endpoint(&i, &mi, (ip("10.206.2.2"), 24), None);
    assert_gateways(&i, &mi, None, None);

    let want = set(&[
        gw4,
        gw6,
        ip("10.206.1.2"),
        ip("2001:db8:e262:1::2"),
        ip("10.206.1.50"),
        ip("2001:db8:e262:1::50"),
        ip("10.206.2.1"),
        ip("10.206.2.2"),
    ]);
    assert_eq!(p.leased(), want);
    assert_eq!(
        p.gateways(),
        set(&[gw4, gw6, ip("10.206.2.1")]),
        "the internal network's gateway is held too"
    );

    p.rm_all();
    p.assert_empty();
}

/// 3. ipvlan networks on a veth parent, with `--gateway` (dual stack) and
///    with `--internal`: created as asked, gipam holds the gateways, and
///    removing them gives everything back. (Containers on them: see
///    `n3_ipvlan_containers_get_addresses`.)
#[test]
fn n3_ipvlan_networks_with_gateway_and_internal() {
    let Some(mut p) = Plugin::start(SUITE, "n3", &["V4=10.253.0.0/16", "V6=2001:db8:e253::/48"])
    else {
        return;
    };
    let [pa, pb] = p.veth("iv");
    let (gw4, gw6, gwi) = (
        ip("10.207.1.254"),
        ip("2001:db8:e263:1::fe"),
        ip("10.207.2.1"),
    );
    let iv = p.network(
        "iv",
        &words(&format!(
            "-d ipvlan -o parent={pa} --subnet 10.207.1.0/24 --gateway \
            10.207.1.254 --ipv6 --subnet 2001:db8:e263:1::/64 --gateway \
            2001:db8:e263:1::fe"
        )),
    );
    let ii = p.network(
        "ii",
        &words(&format!(
            "-d ipvlan -o parent={pb} --internal --subnet 10.207.2.0/24 --gateway 10.207.2.1"
        )),
    );
    for (n, internal) in [(&iv, "false"), (&ii, "true")] {
        assert_eq!(network_inspect(n, "{{.Driver}}"), "ipvlan");
        assert_eq!(network_inspect(n, "{{.Internal}}"), internal);
    }
    let cfg = ipam_config(&iv);
    assert_eq!(
        addr_field(config_of(&cfg, false), "Gateway"),
        gw4,
        "{cfg:?}"
    );
    assert_eq!(addr_field(config_of(&cfg, true), "Gateway"), gw6, "{cfg:?}");
    let cfg = ipam_config(&ii);
    assert_eq!(
        addr_field(config_of(&cfg, false), "Gateway"),
        gwi,
        "{cfg:?}"
    );
    assert_eq!(p.gateways(), set(&[gw4, gw6, gwi]));
    assert_eq!(p.leased(), set(&[gw4, gw6, gwi]));
    let pools: BTreeSet<IpNet> = ["10.207.1.0/24", "2001:db8:e263:1::/64", "10.207.2.0/24"]
        .into_iter()
        .map(net)
        .collect();
    assert_eq!(p.pools(), pools);

    p.rm_all();
    p.assert_empty();
}

/// 3b. Containers on an ipvlan network: with RequiresMACAddress (gipam's
///     default) dockerd gives every endpoint a MAC and the ipvlan driver
///     refuses it ("ipvlan interfaces do not support custom mac address
///     assignment"), on 20.10 and 28 alike; with `REQUIRE_MAC=false` that
///     refusal is gone. (This machine's kernel then cannot make the ipvlan
///     link itself — "operation not supported" — so no container runs on
///     ipvlan here; what is asserted is gipam's part.)
#[test]
fn n3_ipvlan_endpoints_are_refused_a_mac_unless_require_mac_is_false() {
    let mac_refusal = "do not support custom mac address assignment";
    for (scenario, require_mac, refused) in [("n3b", "true", true), ("n3m", "false", false)] {
        let Some(mut p) = Plugin::start(
            SUITE,
            scenario,
            &[
                "V4=10.253.0.0/16",
                "V6=2001:db8:e253::/48",
                &format!("REQUIRE_MAC={require_mac}"),
            ],
        ) else {
            return;
        };
        let [pa, _] = p.veth("ic");
        let iv = p.network(
            "iv",
            &words(&format!(
                "-d ipvlan -o parent={pa} --subnet 10.207.3.0/24 --gateway 10.207.3.1"
            )),
        );
        let name = p.name("c");
        let out = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &iv,
            IMAGE,
            "sleep",
            "600",
        ]);
        let _ = docker(&["rm", "-f", &name]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        eprintln!(
            "{scenario}: engine {}: REQUIRE_MAC={require_mac}: run exit {:?}: {err}",
            engine().version,
            out.status.code()
        );
        assert_eq!(err.contains(mac_refusal), refused, "{err}");
        p.rm_all();
        p.assert_empty();
    }
}

/// 3c. macvlan networks without `--gateway`, dual stack: Docker sends no
///     gateway request for them (Engine 29 never does for macvlan and
///     ipvlan), so gipam names the gateway in RequestPool's `Data`: on
///     every engine the containers' gateway is the first usable address,
///     gipam holds it, and no container gets it.
#[test]
fn n3_macvlan_without_gateway_gets_the_one_gipam_names() {
    let Some(mut p) = Plugin::start(SUITE, "n3c", &["V4=10.249.0.0/16", "V6=2001:db8:e249::/48"])
    else {
        return;
    };
    let [pa, _] = p.veth("mg");
    let mv = p.network(
        "mv",
        &words(&format!(
            "-d macvlan -o parent={pa} --subnet 10.209.1.0/24 --ipv6 --subnet 2001:db8:e269:1::/64"
        )),
    );
    // `docker network inspect` shows only what the user gave (no Gateway);
    // the endpoints and the routes inside show the one gipam named.
    let (gw4, gw6) = (ip("10.209.1.1"), ip("2001:db8:e269:1::1"));
    let a = p.run("a", &mv, &[]);
    assert_endpoint(
        &a,
        &mv,
        (ip("10.209.1.2"), 24),
        Some((ip("2001:db8:e269:1::2"), 64)),
    );
    assert_gateways(&a, &mv, Some(gw4), Some(gw6));
    assert_eq!(p.gateways(), set(&[gw4, gw6]));
    p.rm_all();
    p.assert_empty();
}

/// 4. `docker network connect` / `disconnect` of a running container: a
///    connect gets an address on the new network (`--ip` honoured, or a
///    dynamic one), visible inside on a new interface; a disconnect gives
///    it back to gipam and takes it away inside, leaving the other
///    networks' addresses alone; connecting again gets an address again.
#[test]
fn n4_connect_and_disconnect_a_running_container() {
    let Some(mut p) = Plugin::start(SUITE, "n4", &["V4=10.254.0.0/16", "V6=2001:db8:e254::/48"])
    else {
        return;
    };
    let a = p.network("a", &["--ipv6"]);
    let b = p.network("b", &["--subnet", "10.208.0.0/24"]);
    let c = p.network("c", &[]);
    assert_eq!(subnet_of(&c, false), net("10.254.1.0/24"));
    let x = p.run("x", &a, &[]);
    let home = endpoint_addrs(&x, &a);
    assert_eq!(home, (ip("10.254.0.2"), Some(ip("2001:db8:e254::2"))));
    let home_inside = inside(&x);

    docker_ok(&["network", "connect", "--ip", "10.208.0.40", &b, &x]);
    let eb = endpoint(&x, &b);
    assert_eq!(eb["IPAddress"], "10.208.0.40", "{eb}");
    docker_ok(&["network", "connect", &c, &x]);
    let ec = endpoint(&x, &c);
    let xc = addr_field(&ec, "IPAddress");
    assert_eq!(xc, ip("10.254.1.2"), "the lowest free address of c: {ec}");
    let devs = addrs_by_dev(&x);
    eprintln!(
        "n4: engine {}: inside after connect: {devs:?}",
        engine().version
    );
    let mut want = home_inside.clone();
    want.extend([net("10.208.0.40/24"), net("10.254.1.2/24")]);
    assert_eq!(inside(&x), want, "each network's address inside");
    let dev_names: BTreeSet<&str> = devs.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(dev_names.len(), 3, "one interface per network: {devs:?}");
    let gateways = ["10.254.0.1", "2001:db8:e254::1", "10.208.0.1", "10.254.1.1"].map(ip);
    let mut leased = set(&gateways);
    leased.extend([home.0, home.1.expect("IPv6"), ip("10.208.0.40"), xc]);
    assert_eq!(p.leased(), leased);

    docker_ok(&["network", "disconnect", &b, &x]);
    leased.remove(&ip("10.208.0.40"));
    assert_eq!(p.leased(), leased, "disconnect gives the address back");
    let mut want = home_inside.clone();
    want.insert(net("10.254.1.2/24"));
    assert_eq!(
        inside(&x),
        want,
        "b's address is gone inside, the others stay"
    );
    docker_ok(&["network", "disconnect", &c, &x]);
    leased.remove(&xc);
    assert_eq!(p.leased(), leased);
    assert_eq!(inside(&x), home_inside, "only a's addresses are left");
    assert_eq!(endpoint_addrs(&x, &a), home, "a's endpoint is untouched");

    // Connected again: an address of c again, not one in use.
    docker_ok(&["network", "connect", &c, &x]);
    let again = addr_field(&endpoint(&x, &c), "IPAddress");
    let block = net("10.254.1.0/24");
    assert!(
        block.contains(&again) && again != ip("10.254.1.1"),
        "{again}"
    );
    assert!(!leased.contains(&again), "{again} is in use");
    leased.insert(again);
    assert_eq!(p.leased(), leased);
    let mut want = home_inside;
    want.insert(IpNet::new(again, 24).expect("/24"));
    assert_eq!(inside(&x), want);

    p.rm_all();
    p.assert_empty();
}

/// 5. `docker restart` of one container keeps its address (F5: the lowest
///    free address, as Docker's own IPAM does), with other containers
///    started and removed in between, on both families.
#[test]
fn n5_docker_restart_keeps_the_address() {
    let Some(mut p) = Plugin::start(SUITE, "n5", &["V4=10.248.0.0/16", "V6=2001:db8:e248::/48"])
    else {
        return;
    };
    let n = p.network("r", &["--ipv6"]);
    let a = p.run("a", &n, &[]);
    let b = p.run("b", &n, &[]);
    let (a0, b0) = (endpoint_addrs(&a, &n), endpoint_addrs(&b, &n));
    assert_eq!(a0, (ip("10.248.0.2"), Some(ip("2001:db8:e248::2"))));
    for round in 0..3 {
        docker_ok(&["restart", "-t", "0", &a]);
        assert_eq!(endpoint_addrs(&a, &n), a0, "round {round}: a after restart");
        docker_ok(&["restart", "-t", "0", &b]);
        assert_eq!(endpoint_addrs(&b, &n), b0, "round {round}: b after restart");
    }
    p.rm_all();
    p.assert_empty();
}
