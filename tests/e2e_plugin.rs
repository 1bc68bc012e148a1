//! End-to-end tests of gipam as a Docker managed (v2) plugin: every
//! scenario creates, configures and enables its own plugin from the bundle
//! `make plugin` builds (`plugin/`), drives the real dockerd with the
//! docker CLI, and asserts on what Docker assigned
//! (`docker network inspect`, `docker inspect`, `ip addr` inside the
//! container) and on what gipam holds (`/Gipam.Status`, `/Gipam.Leases` on
//! the plugin's socket). No traffic is sent to container addresses.
//!
//! Needs a running dockerd and `make plugin` (see docs/testing.md); without
//! a dockerd every scenario panics, unless `GIPAM_SKIP_E2E=1`.
//!
//! Address plan (the bridge driver refuses overlapping subnets host-wide,
//! and the scenarios run in parallel): scenario k uses V4=10.21k.0.0/16 and
//! V6=2001:db8:e21k::/48 as main pools, and 10.22k.0.0/16,
//! 2001:db8:e22k::/48 for explicit subnets outside them. The legacy-plugin
//! suite (`e2e_docker.rs`) uses 10.23x and 10.24x.
//!
//! The dockerd restart scenario (8) is in `e2e_daemon_restart.rs`, the
//! compose scenarios (9–11) in `e2e_compose.rs`, the network kinds and
//! operations where engines differ (IPv6-only, macvlan, ipvlan, connect)
//! in `e2e_networks.rs` (10.25x, 10.20x).

mod common;
mod docker_env;
mod plugin_fixture;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use docker_env::*;
use ipnet::IpNet;
use plugin_fixture::*;
use serde_json::{Value, json};

const SUITE: &str = "e2e_plugin";

fn set(addrs: &[IpAddr]) -> BTreeSet<IpAddr> {
    addrs.iter().copied().collect()
}

/// 1. Automatic IPv4 blocks: each network gets its own V4AB block (the
///    lowest free one), the gateway is the block's first usable address,
///    containers get distinct addresses of the block; removing everything
///    gives everything back.
#[test]
fn s1_automatic_ipv4_blocks() {
    let Some(mut p) = Plugin::start(SUITE, "s1", &["V4=10.211.0.0/16", "V6=2001:db8:e211::/48"])
    else {
        return;
    };
    let a = p.network("a", &[]);
    let b = p.network("b", &[]);
    let (ca, cb) = (ipam_config(&a), ipam_config(&b));
    assert_eq!(ca.len(), 1, "an IPv4-only network has one pool: {ca:?}");
    assert_eq!(cb.len(), 1, "{cb:?}");
    let (ba, bb) = (net(field(&ca[0], "Subnet")), net(field(&cb[0], "Subnet")));
    assert_ne!(ba, bb, "two networks, two blocks");
    assert_eq!(ba, net("10.211.0.0/24"), "lowest free /24 of V4: {ca:?}");
    assert_eq!(bb, net("10.211.1.0/24"), "next free /24: {cb:?}");
    assert_eq!(addr_field(&ca[0], "Gateway"), ip("10.211.0.1"), "{ca:?}");
    assert_eq!(addr_field(&cb[0], "Gateway"), ip("10.211.1.1"), "{cb:?}");

    let mut on_a = Vec::new();
    for i in 1..=3 {
        let c = p.run(&format!("a{i}"), &a, &[]);
        on_a.push((c.clone(), endpoint_addrs(&c, &a).0));
    }
    let b1 = p.run("b1", &b, &[]);
    let (ab1, _) = endpoint_addrs(&b1, &b);
    let addrs: Vec<IpAddr> = on_a.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        addrs,
        vec![ip("10.211.0.2"), ip("10.211.0.3"), ip("10.211.0.4")],
        "lowest free addresses, in order"
    );
    assert_eq!(ab1, ip("10.211.1.2"));
    for (c, _) in &on_a {
        assert_eq!(endpoint(c, &a)["Gateway"], "10.211.0.1");
    }

    let status = p.status();
    assert_eq!(status["Leases"], 6, "2 gateways + 4 containers: {status}");
    for pool in status["Pools"].as_array().expect("Pools") {
        assert_eq!(pool["Auto"], true, "{pool}");
    }
    assert_eq!(p.pools(), [ba, bb].into_iter().collect());
    let mut want = set(&addrs);
    want.extend([ip("10.211.0.1"), ip("10.211.1.1"), ab1]);
    assert_eq!(p.leased(), want);

    p.rm_all();
    p.assert_empty();
}

/// 2. Dual stack: `--ipv6` adds a V6AB block from V6, the gateways are
///    the blocks' first usable addresses, a container gets one address of
///    each. (IPv6-only networks: `e2e_networks.rs`, n1.)
#[test]
fn s2_dual_stack() {
    let Some(mut p) = Plugin::start(SUITE, "s2", &["V4=10.212.0.0/16", "V6=2001:db8:e212::/48"])
    else {
        return;
    };
    let d = p.network("dual", &["--ipv6"]);
    assert_eq!(network_inspect(&d, "{{.EnableIPv6}}"), "true");
    let cfg = ipam_config(&d);
    assert_eq!(cfg.len(), 2, "{cfg:?}");
    let (v4, v6) = (config_of(&cfg, false), config_of(&cfg, true));
    assert_eq!(field(v4, "Subnet"), "10.212.0.0/24", "{cfg:?}");
    assert_eq!(addr_field(v4, "Gateway"), ip("10.212.0.1"), "{cfg:?}");
    assert_eq!(field(v6, "Subnet"), "2001:db8:e212::/64", "first /64 of V6");
    assert_eq!(addr_field(v6, "Gateway"), ip("2001:db8:e212::1"), "{cfg:?}");
    let c = p.run("c", &d, &[]);
    let (a4, a6) = endpoint_addrs(&c, &d);
    assert_eq!(a4, ip("10.212.0.2"));
    assert_eq!(
        a6,
        Some(ip("2001:db8:e212::2")),
        "not ::0 (subnet-router anycast), not ::1 (gateway)"
    );
    assert_gateways(&c, &d, Some(ip("10.212.0.1")), Some(ip("2001:db8:e212::1")));

    let status = p.status();
    assert_eq!(
        status["Leases"], 4,
        "2 gateways + 2 container addresses: {status}"
    );

    p.rm_all();
    p.assert_empty();
}

/// One explicit layout for both families.
struct Layout {
    what: &'static str,
    internal: bool,
    /// (subnet, ip-range, gateway, aux, static outside the range, static inside)
    v4: [&'static str; 6],
    v6: [&'static str; 6],
}

/// 3. `--subnet`, `--ip-range`, `--gateway`, `--aux-address` for both
///    families honoured exactly; `--ip`/`--ip6` inside and outside the
///    range; a dynamic address is the lowest of the range but never its
///    first; an aux address cannot be taken; on an `--internal` network too
///    (whose endpoints have no gateway on Engine 28, but do on 20.10).
#[test]
fn s3_explicit_subnets_ranges_and_static_addresses() {
    let Some(mut p) = Plugin::start(SUITE, "s3", &["V4=10.213.0.0/16", "V6=2001:db8:e213::/48"])
    else {
        return;
    };
    #[rustfmt::skip]
    let layouts = [
        // Outside the main pools.
        Layout {
            what: "plain",
            internal: false,
            v4: ["10.223.0.0/16", "10.223.5.0/24", "10.223.5.254",
                 "10.223.1.5", "10.223.9.9", "10.223.5.77"],
            v6: ["2001:db8:e223::/64", "2001:db8:e223::5:0/112", "2001:db8:e223::5:fffe",
                 "2001:db8:e223::1:5", "2001:db8:e223::9:9", "2001:db8:e223::5:77"],
        },
        // Inside the main pools, internal; gateways outside the ranges.
        Layout {
            what: "internal",
            internal: true,
            v4: ["10.213.64.0/20", "10.213.66.0/24", "10.213.64.1",
                 "10.213.70.5", "10.213.79.9", "10.213.66.200"],
            v6: ["2001:db8:e213:ff::/64", "2001:db8:e213:ff::100/120", "2001:db8:e213:ff::1",
                 "2001:db8:e213:ff::5", "2001:db8:e213:ff::9:9", "2001:db8:e213:ff::1ff"],
        },
    ];
    for x in &layouts {
        let (v4, v6) = (x.v4, x.v6);
        let internal = if x.internal { "--internal" } else { "" };
        let args = format!(
            "--ipv6 --subnet {} --ip-range {} --gateway {} --aux-address h4={} \
             --subnet {} --ip-range {} --gateway {} --aux-address h6={} {internal}",
            v4[0], v4[1], v4[2], v4[3], v6[0], v6[1], v6[2], v6[3]
        );
        let args: Vec<&str> = args.split_whitespace().collect();
        let n = p.network(x.what, &args);
        assert_eq!(network_inspect(&n, "{{.Internal}}"), x.internal.to_string());
        let cfg = ipam_config(&n);
        assert_eq!(cfg.len(), 2, "{cfg:?}");
        for (v6, f, aux) in [(false, &x.v4, "h4"), (true, &x.v6, "h6")] {
            let c = config_of(&cfg, v6);
            assert_eq!(net(field(c, "Subnet")), net(f[0]), "{cfg:?}");
            assert_eq!(net(field(c, "IPRange")), net(f[1]), "{cfg:?}");
            assert_eq!(addr_field(c, "Gateway"), ip(f[2]), "{cfg:?}");
            assert_eq!(
                ip(c["AuxiliaryAddresses"][aux].as_str().expect("aux address")),
                ip(f[3]),
                "{cfg:?}"
            );
        }
        let (len4, len6) = (net(x.v4[0]).prefix_len(), net(x.v6[0]).prefix_len());
        let (range4, range6) = (net(x.v4[1]), net(x.v6[1]));

        // Dynamic: the lowest address of the range except its first.
        let d = p.run(&format!("{}-dyn", x.what), &n, &[]);
        let next = |r: IpNet| -> IpAddr {
            match r.network() {
                IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
                IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
            }
        };
        let (d4, d6) = (next(range4), next(range6));
        assert!(d4 != ip(x.v4[2]) && d6 != ip(x.v6[2]), "not the gateways");
        assert_endpoint(&d, &n, (d4, len4), Some((d6, len6)));
        // Engine 28 gives the endpoints of an --internal network no
        // gateway and no default route; 20.10 gives them the network's.
        let has_gateway = !x.internal || engine().internal_bridge_has_gateway();
        assert_gateways(
            &d,
            &n,
            has_gateway.then(|| ip(x.v4[2])),
            has_gateway.then(|| ip(x.v6[2])),
        );

        // Static, outside the ranges but inside the subnets, and inside.
        for (i, (s4, s6)) in [(x.v4[4], x.v6[4]), (x.v4[5], x.v6[5])].iter().enumerate() {
            assert!(net(x.v4[0]).contains(&ip(s4)) && net(x.v6[0]).contains(&ip(s6)));
            assert_eq!(range4.contains(&ip(s4)), i == 1, "{s4}");
            assert_eq!(range6.contains(&ip(s6)), i == 1, "{s6}");
            let s = p.run(
                &format!("{}-static{i}", x.what),
                &n,
                &["--ip", s4, "--ip6", s6],
            );
            assert_endpoint(&s, &n, (ip(s4), len4), Some((ip(s6), len6)));
        }

        // The aux addresses are held. Docker 20.10 (and later: libnetwork
        // createEndpoint returns before deferring the release) never gives
        // back the IPv4 address it got when the IPv6 request then fails,
        // so the --ip6 refusal may leave one IPv4 lease of the range behind.
        let held = p.leased();
        let mut leaked = BTreeSet::new();
        for (flag, aux) in [("--ip", x.v4[3]), ("--ip6", x.v6[3])] {
            let what = format!("{}-aux{}", x.what, &flag[4..]);
            let err = p
                .try_run(&what, &n, &[flag, aux])
                .expect_err("an aux address cannot be a container's");
            eprintln!("s3: docker run {flag} {aux} (aux address): {err}");
            assert_mentions(&err, &[&format!("address {aux} already in use")]);
            p.rm_failed(&what);
            let now = p.leased();
            assert!(now.is_superset(&held), "{now:?}");
            leaked = now.difference(&held).copied().collect();
            if flag == "--ip" {
                assert!(
                    leaked.is_empty(),
                    "the refused IPv4 request took {leaked:?}"
                );
            }
        }
        assert!(
            leaked.len() <= 1 && leaked.iter().all(|a| range4.contains(a)),
            "after the refused --ip6, at most Docker's one IPv4 leak: {leaked:?}"
        );
        if !leaked.is_empty() {
            eprintln!("s3: Docker did not release {leaked:?} after the IPv6 request failed");
        }

        // gipam holds exactly: gateways, aux, dynamic and static addresses.
        let mut want = leaked.clone();
        for f in [&x.v4, &x.v6] {
            want.extend([ip(f[2]), ip(f[3]), ip(f[4]), ip(f[5])]);
        }
        want.extend([d4, d6]);
        assert_eq!(p.leased(), want);
        let ids: BTreeSet<String> = p.leases().into_iter().map(|(id, _, _)| id).collect();
        let want_ids: BTreeSet<String> = [
            format!("LocalDefault/{}/{}", x.v4[0], x.v4[1]),
            format!("LocalDefault/{}/{}", net(x.v6[0]), net(x.v6[1])),
        ]
        .into_iter()
        .collect();
        assert_eq!(ids, want_ids, "PoolIDs name subnet and range");
        assert_eq!(p.gateways(), set(&[ip(x.v4[2]), ip(x.v6[2])]));

        p.rm_all();
        p.assert_empty();
    }
}

/// 4. `--ipam-opt v4ab=28` / `v6ab=80` size one network's blocks; an
///    unknown option and an overlapping subnet are refused with gipam's
///    message in the docker CLI error, and change nothing.
#[test]
fn s4_block_size_option_and_refusals() {
    let Some(mut p) = Plugin::start(SUITE, "s4", &["V4=10.214.0.0/16", "V6=2001:db8:e214::/48"])
    else {
        return;
    };
    let n1 = p.network("n1", &[]);
    assert_eq!(subnet_of(&n1, false), net("10.214.0.0/24"));
    let n2 = p.network("n2", &["--ipam-opt", "v4ab=28"]);
    assert_eq!(subnet_of(&n2, false), net("10.214.1.0/28"));
    assert_eq!(
        addr_field(config_of(&ipam_config(&n2), false), "Gateway"),
        ip("10.214.1.1")
    );
    let c = p.run("c", &n2, &[]);
    assert_endpoint(&c, &n2, (ip("10.214.1.2"), 28), None);
    let n3 = p.network(
        "n3",
        &["--ipv6", "--ipam-opt", "v4ab=28", "--ipam-opt", "v6ab=80"],
    );
    assert_eq!(subnet_of(&n3, false), net("10.214.1.16/28"));
    assert_eq!(subnet_of(&n3, true), net("2001:db8:e214::/80"));
    let c3 = p.run("c3", &n3, &[]);
    assert_endpoint(
        &c3,
        &n3,
        (ip("10.214.1.18"), 28),
        Some((ip("2001:db8:e214::2"), 80)),
    );
    let before = p.status();

    let known = gipam::ipam::KNOWN_OPTIONS.join(", ");
    let err = p.network_fails("bogus", &["--ipam-opt", "bogus=1"]);
    eprintln!("s4: --ipam-opt bogus=1: {err}");
    assert!(
        err.contains(&format!(
            "IpamDriver.RequestPool: ipam option \"bogus\" is unknown; known options: {known}"
        )),
        "{err}"
    );
    let err = p.network_fails("overlap", &["--subnet", "10.214.0.128/25"]);
    eprintln!("s4: --subnet 10.214.0.128/25: {err}");
    assert!(
        err.contains(
            "IpamDriver.RequestPool: pool 10.214.0.128/25 overlaps pool LocalDefault/10.214.0.0/24, which is in use"
        ),
        "{err}"
    );
    let err = p.network_fails("overlap6", &["--ipv6", "--subnet", "2001:db8:e214::/64"]);
    eprintln!("s4: --ipv6 --subnet 2001:db8:e214::/64: {err}");
    assert!(
        err.contains("pool 2001:db8:e214::/64 overlaps pool LocalDefault/2001:db8:e214::/80"),
        "{err}"
    );
    // The pools and leases; not the store's figures (Docker takes the IPv4
    // pool of `overlap6` and gives it back when the IPv6 one is refused,
    // which the journal records).
    let held = |mut v: serde_json::Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("Store");
        }
        v
    };
    assert_eq!(held(p.status()), held(before), "refusals change nothing");

    p.rm_all();
    p.assert_empty();
}

/// 5. Fifty containers on one network, started in parallel: fifty unique
///    addresses of the block; removing them and the network leaves nothing.
#[test]
fn s5_fifty_containers() {
    const N: usize = 50;
    let Some(mut p) = Plugin::start(SUITE, "s5", &["V4=10.215.0.0/16", "V6=2001:db8:e215::/48"])
    else {
        return;
    };
    let n = p.network("n", &[]);
    let block = net("10.215.0.0/24");
    assert_eq!(subnet_of(&n, false), block);
    let names: Vec<String> = (0..N).map(|i| p.name(&format!("c{i:02}"))).collect();
    p.containers.extend(names.iter().cloned());
    let started = parallel(&names, 6, |name| docker_run(name, &n, &[]));
    for (name, r) in names.iter().zip(&started) {
        if let Err(e) = r {
            panic!("docker run {name}: {e}");
        }
    }
    eprintln!("s5: {N} containers started after {:.1} s", p.elapsed());
    let inside = parallel(&names, 6, |name| addrs_inside(name));
    let mut args = vec!["inspect", "-f", "{{json .NetworkSettings.Networks}}"];
    args.extend(names.iter().map(String::as_str));
    let out = docker_ok(&args);
    let mut seen: BTreeSet<IpAddr> = BTreeSet::new();
    for ((name, line), inside) in names.iter().zip(out.lines()).zip(&inside) {
        let ep = &parse_json(line, "Networks")[&n];
        let a = addr_field(ep, "IPAddress");
        assert!(block.contains(&a), "{name}: {a} not in {block}");
        assert!(
            a != block.network() && a != block.broadcast() && a != ip("10.215.0.1"),
            "{name}: reserved address {a}"
        );
        assert_eq!(inside, &vec![IpNet::new(a, 24).expect("/24")], "{name}");
        assert!(seen.insert(a), "{name}: {a} is given twice");
    }
    assert_eq!(seen.len(), N);
    let status = p.status();
    assert_eq!(
        status["Leases"],
        N + 1,
        "{N} containers + gateway: {status}"
    );
    let mut want = seen.clone();
    want.insert(ip("10.215.0.1"));
    assert_eq!(p.leased(), want);

    p.rm_all();
    p.assert_empty();
}

/// 6. The plugin process killed with SIGKILL while containers run: Docker
///    restarts it, nothing is lost, new containers get free addresses.
#[test]
fn s6_plugin_killed_with_sigkill() {
    let Some(mut p) = Plugin::start(SUITE, "s6", &["V4=10.216.0.0/16", "V6=2001:db8:e216::/48"])
    else {
        return;
    };
    let n = p.network("n", &["--ipv6"]);
    let c1 = p.run("c1", &n, &[]);
    let c2 = p.run("c2", &n, &[]);
    let before = p.leases();
    assert_eq!(before.len(), 6, "2 gateways + 2×2 container addresses");
    let first = endpoint_addrs(&c1, &n);
    let second = endpoint_addrs(&c2, &n);

    let pid = p.pid().expect("the plugin's /gipam process");
    send_signal("KILL", pid);
    let killed = Instant::now();
    let new_pid = poll(Duration::from_secs(60), || {
        p.pid()
            .filter(|&q| q != pid)
            .filter(|_| p.try_call("Gipam.Status", &Value::Null).is_ok())
    })
    .expect("Docker restarts the killed plugin within 60 s");
    eprintln!(
        "s6: plugin pid {pid} killed; pid {new_pid} answers after {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    assert!(p.enabled(), "still enabled");
    assert_eq!(p.leases(), before, "every lease survived");
    assert_eq!(endpoint_addrs(&c1, &n), first, "c1 untouched");
    assert_eq!(endpoint_addrs(&c2, &n), second, "c2 untouched");

    let held = addresses(&before);
    let mut fresh = BTreeSet::new();
    for what in ["c3", "c4"] {
        let c = p.run(what, &n, &[]);
        let (a4, a6) = endpoint_addrs(&c, &n);
        for a in [Some(a4), a6].into_iter().flatten() {
            assert!(!held.contains(&a), "{c} got {a}, which is in use");
            assert!(fresh.insert(a), "{c} got {a} twice");
        }
    }
    let n2 = p.network("n2", &[]);
    assert_eq!(
        subnet_of(&n2, false),
        net("10.216.1.0/24"),
        "the held block is not given again"
    );
    assert_eq!(p.leases().len(), 6 + 4 + 1);

    p.rm_all();
    p.assert_empty();
}

/// 7. disable / set / enable, and `docker plugin upgrade` to a rebuilt
///    bundle pushed to a local registry: allocations survive; the env
///    settings made with `docker plugin set` are kept by upgrade (and the
///    new bundle's defaults do not replace the old values).
#[test]
fn s7_disable_set_enable_and_upgrade() {
    let Some(mut p) = Plugin::start(SUITE, "s7", &["V4=10.217.0.0/16", "V6=2001:db8:e217::/48"])
    else {
        return;
    };
    let n1 = p.network("n1", &["--ipv6"]);
    let c1 = p.run("c1", &n1, &[]);
    let c2 = p.run("c2", &n1, &[]);
    let a1 = endpoint_addrs(&c1, &n1);
    let a2 = endpoint_addrs(&c2, &n1);
    let before = p.leases();

    // While networks use it: no set, no plain disable.
    let err = docker_fails(&["plugin", "set", &p.name, "LOG=debug"]);
    eprintln!("s7: plugin set while enabled: {err}");
    assert!(err.contains("disable plugin before setting"), "{err}");
    let err = docker_fails(&["plugin", "disable", &p.name]);
    eprintln!("s7: plugin disable while in use: {err}");
    assert!(err.contains("is in use"), "{err}");

    docker_ok(&["plugin", "disable", "-f", &p.name]);
    assert!(!p.enabled());
    docker_ok(&["plugin", "set", &p.name, "LOG=debug", "V4AB=26"]);
    docker_ok(&["plugin", "enable", &p.name]);
    p.wait_ready(Duration::from_secs(30))
        .expect("plugin answers");
    assert_eq!(p.leases(), before, "disable/set/enable keeps every lease");
    let env = p.settings_env();
    assert!(
        env.contains(&"LOG=debug".into()) && env.contains(&"V4AB=26".into()),
        "{env:?}"
    );
    let n2 = p.network("n2", &[]);
    assert_eq!(
        subnet_of(&n2, false),
        net("10.217.1.0/26"),
        "V4AB=26 is in effect"
    );
    let c3 = p.run("c3", &n1, &[]);
    let a3 = endpoint_addrs(&c3, &n1);
    assert!(!addresses(&before).contains(&a3.0), "{a3:?}");
    assert_eq!(endpoint_addrs(&c1, &n1), a1);
    let want = format!("DEBUG gipam::api::handlers] address {}/24 leased", a3.0);
    match p.log_shows(&want, Duration::from_secs(5)) {
        Some(found) => {
            assert!(
                found,
                "LOG=debug reached the plugin: no {want:?} in the dockerd log"
            );
            eprintln!("s7: the dockerd log shows LOG=debug in effect");
        }
        None => eprintln!("s7: dockerd log not readable; LOG=debug not checked there"),
    }

    // Upgrade to a rebuilt bundle (another description, other defaults).
    // Only a local registry has it: upgrade pulls it from there.
    let remote = p.push_bundle("v2", |c| {
        c["description"] = json!("gipam v2 (e2e upgrade)");
        set_env_default(c, "V4AB", "27");
        set_env_default(c, "V6AB", "60");
        set_env_default(c, "LOG", "warn");
    });
    let leases = p.leases();
    let env_before = p.settings_env();
    docker_ok(&["plugin", "disable", "-f", &p.name]);
    let out = docker_input(
        &[
            "plugin",
            "upgrade",
            "--grant-all-permissions",
            &p.name,
            &remote,
        ],
        "y\n",
    );
    eprintln!(
        "s7: docker plugin upgrade: {} {}",
        text(&out.stdout).replace('\n', " | "),
        text(&out.stderr)
    );
    assert!(
        out.status.success(),
        "upgrade failed: {}",
        text(&out.stderr)
    );
    docker_ok(&["plugin", "enable", &p.name]);
    p.wait_ready(Duration::from_secs(30))
        .expect("upgraded plugin answers");
    assert_eq!(p.inspect("{{.Id}}"), p.id, "upgrade keeps the plugin id");
    assert_eq!(p.inspect("{{.PluginReference}}"), remote);
    assert_eq!(
        p.inspect("{{.Config.Description}}"),
        "gipam v2 (e2e upgrade)"
    );
    let marker = Path::new("/var/lib/docker/plugins")
        .join(&p.id)
        .join("rootfs/.gipam-e2e-id");
    if let Ok(m) = std::fs::read_to_string(&marker) {
        assert!(m.contains(" v2 "), "the rootfs is v2's: {m}");
    }
    let env_after = p.settings_env();
    eprintln!("s7: settings before upgrade {env_before:?}, after {env_after:?}");
    assert_eq!(
        env_after, env_before,
        "upgrade keeps Settings.Env as it was"
    );
    assert_eq!(p.leases(), leases, "upgrade keeps every lease");

    // Old network, new container; new networks use the kept settings.
    assert_eq!(endpoint_addrs(&c2, &n1), a2);
    let c4 = p.run("c4", &n1, &[]);
    let a4 = endpoint_addrs(&c4, &n1);
    let held = addresses(&leases);
    assert!(
        !held.contains(&a4.0) && !a4.1.is_some_and(|a| held.contains(&a)),
        "{a4:?}"
    );
    let n3 = p.network("n3", &["--ipv6"]);
    assert_eq!(
        subnet_of(&n3, false),
        net("10.217.1.64/26"),
        "V4AB=26 set before the upgrade still applies, not v2's default 27"
    );
    assert_eq!(
        subnet_of(&n3, true),
        net("2001:db8:e217:1::/64"),
        "V6AB stays 64 (v1's value), not v2's default 60"
    );

    p.rm_all();
    p.assert_empty();
}
