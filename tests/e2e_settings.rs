//! Settings the managed plugin refuses, with the real dockerd (issue 11):
//! `docker plugin enable` succeeds with a bad setting, `docker network
//! create` and `docker run` show gipam's reason and its fix, the dockerd
//! log has the reason once per start, and fixing the setting
//! (disable/set/enable) recovers — over several cycles, none of them
//! flaky. Main pools that would strand a network are refused with the
//! `docker plugin set` line that keeps them, which is run as printed.
//!
//! Needs a running dockerd and `make plugin` (see docs/testing.md); the
//! docker CLI talks to whatever DOCKER_HOST names (set
//! GIPAM_DOCKERD_PIDFILE too for a second engine, so the log is found).
//! Without a dockerd every scenario panics, unless `GIPAM_SKIP_E2E=1`.
//! Addresses: 10.251.0.0/16 to 10.253.0.0/16 and 2001:db8:e252::/48,
//! apart from the other e2e suites' plans. No traffic goes anywhere.

mod common;
mod docker_env;
mod plugin_fixture;

use std::time::{Duration, Instant};

use docker_env::*;
use ipnet::IpNet;
use plugin_fixture::*;
use serde_json::{Value, json};

const SUITE: &str = "e2e_settings";
/// How many disable/set/enable cycles each scenario goes through.
const CYCLES: usize = 3;

/// `docker plugin enable`, which must succeed; prints how long it took.
fn enable(p: &Plugin, what: &str) {
    let started = Instant::now();
    docker_ok(&["plugin", "enable", &p.name]);
    eprintln!(
        "{SUITE}: enable ({what}) took {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// Lines the plugin itself wrote (tagged `plugin=<id>`; dockerd's own
/// errors quote the reason too) that contain `needle`, once there are
/// `want` of them (or what there are after 15 s).
fn log_count(p: &Plugin, needle: &str, want: usize) -> usize {
    let tag = format!("plugin={}", p.id);
    let count = || {
        let lines = p.log_lines();
        lines
            .iter()
            .filter(|l| l.contains(&tag) && l.contains(needle))
            .count()
    };
    poll(Duration::from_secs(15), || (count() >= want).then_some(()));
    count()
}

/// 1. A bad value: enable succeeds, network create and docker run show
///    the reason with the plugin's own fix, the log has it once per start,
///    and the fixed value works; CYCLES times in a row.
#[test]
fn b1_a_bad_setting_is_shown_where_the_user_looks_and_fixing_it_recovers() {
    let Some(mut p) = Plugin::start(SUITE, "b1", &["V4=10.251.0.0/16", "V6="]) else {
        return;
    };
    let short = p.id[..12].to_string();
    let n = p.network("n", &[]);
    assert_eq!(subnet_of(&n, false), net("10.251.0.0/24"));
    let needle = "V4AB=40 is not a prefix length from 1 to 32";
    let logged_before = log_count(&p, needle, 0);
    let fix = format!(
        "fix it with: docker plugin disable -f {short}; docker plugin set {short} V4AB=<value>; docker plugin enable {short}"
    );
    for cycle in 1..=CYCLES {
        docker_ok(&["plugin", "disable", "-f", &p.name]);
        docker_ok(&["plugin", "set", &p.name, "V4AB=40"]);
        enable(&p, "V4AB=40");
        assert!(p.enabled(), "a refusing gipam is enabled");

        let err = p.network_fails(&format!("bad{cycle}"), &[]);
        eprintln!("{SUITE}: network create with V4AB=40: {err}");
        assert_mentions(
            &err,
            &[
                &format!("IpamDriver.RequestPool: gipam refused its settings at start: {needle}"),
                &fix,
            ],
        );
        let what = format!("c{cycle}");
        let err = p
            .try_run(&what, &n, &[])
            .expect_err("no address while refusing");
        eprintln!("{SUITE}: docker run with V4AB=40: {err}");
        assert_mentions(&err, &["IpamDriver.RequestAddress: gipam refused", needle]);
        p.rm_failed(&what);
        let (status, v) = p
            .try_call("Gipam.Status", &Value::Null)
            .expect("the socket answers");
        assert_eq!(status, 500, "{v}");

        // Once per start: Docker restarted nothing.
        match dockerd_log() {
            Some(_) => assert_eq!(
                log_count(&p, needle, logged_before + cycle),
                logged_before + cycle,
                "the reason is in the dockerd log once per start"
            ),
            None => eprintln!("{SUITE}: dockerd log not found; not counted"),
        }

        docker_ok(&["plugin", "disable", "-f", &p.name]);
        docker_ok(&["plugin", "set", &p.name, "V4AB=24"]);
        enable(&p, "V4AB=24");
        p.wait_ready(Duration::from_secs(30))
            .expect("the fixed plugin answers");
        let m = p.network(&format!("ok{cycle}"), &[]);
        assert_eq!(
            subnet_of(&m, false),
            net(&format!("10.251.{cycle}.0/24")),
            "the fixed setting serves"
        );
    }
    let c = p.run("c", &n, &[]);
    assert_eq!(endpoint_addrs(&c, &n).0, ip("10.251.0.2"), "nothing leaked");
    p.rm_all();
    p.assert_empty();
}

/// 2. Main pools that strand a network: refused, with the `docker plugin
///    set` line that keeps the old pools — the generated ULA spelled out —
///    which, run as printed, serves new networks from the new pools and
///    keeps the old network and its container.
#[test]
fn b2_stranding_main_pools_are_refused_with_the_set_line_that_keeps_them() {
    let Some(mut p) = Plugin::start(SUITE, "b2", &["V4=10.252.0.0/16", "V6="]) else {
        return;
    };
    let short = p.id[..12].to_string();
    let old = p.network("old", &["--ipv6"]);
    let c = p.run("c", &old, &[]);
    let addrs = endpoint_addrs(&c, &old);
    let ula_block = subnet_of(&old, true);
    let ula = IpNet::new(ula_block.network(), 48).expect("/48").trunc();
    assert!(ula.to_string().starts_with("fd"), "a generated ULA: {ula}");
    let leases = p.leases();

    let mut printed = String::new();
    for cycle in 1..=CYCLES {
        docker_ok(&["plugin", "disable", "-f", &p.name]);
        docker_ok(&[
            "plugin",
            "set",
            &p.name,
            "V4=10.253.0.0/16",
            "V6=2001:db8:e252::/48",
        ]);
        enable(&p, "stranding V4/V6");
        let err = p.network_fails(&format!("new{cycle}"), &["--ipv6"]);
        eprintln!("{SUITE}: network create with stranding pools: {err}");
        assert_mentions(
            &err,
            &[
                "IpamDriver.RequestPool: gipam refused its main pools at start",
                "V4=10.253.0.0/16 (was 10.252.0.0/16) no longer contains LocalDefault/10.252.0.0/24",
                &format!("V6=2001:db8:e252::/48 (was empty: the generated ULA {ula})"),
                &format!(
                    "docker plugin set {short} V4=10.253.0.0/16,10.252.0.0/16 V6=2001:db8:e252::/48,{ula};"
                ),
                &format!(
                    "Or remove those networks: put the old pools back (docker plugin disable -f {short}; docker plugin set {short} V4=10.252.0.0/16 V6=; docker plugin enable {short}), docker network rm them"
                ),
            ],
        );
        printed = err;
        if cycle < CYCLES {
            // Back to the old pools: everything as before.
            docker_ok(&["plugin", "disable", "-f", &p.name]);
            docker_ok(&["plugin", "set", &p.name, "V4=10.252.0.0/16", "V6="]);
            enable(&p, "old pools");
            p.wait_ready(Duration::from_secs(30)).expect("answers");
            assert_eq!(p.leases(), leases, "nothing changed while refusing");
        }
    }

    // Run the fix as printed.
    let set = printed
        .split(&format!("docker plugin set {short} "))
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("the set line");
    let mut args = vec!["plugin", "set", p.name.as_str()];
    args.extend(set.split_whitespace());
    docker_ok(&["plugin", "disable", "-f", &p.name]);
    docker_ok(&args);
    enable(&p, "the printed fix");
    p.wait_ready(Duration::from_secs(30)).expect("answers");
    assert_eq!(p.leases(), leases, "every lease kept");
    let new = p.network("new", &["--ipv6"]);
    assert_eq!(
        subnet_of(&new, false),
        net("10.253.0.0/24"),
        "new pool first"
    );
    assert_eq!(subnet_of(&new, true), net("2001:db8:e252::/64"));
    assert_eq!(
        endpoint_addrs(&c, &old),
        addrs,
        "the old container untouched"
    );
    let c2 = p.run("c2", &old, &[]);
    assert_eq!(
        endpoint_addrs(&c2, &old).0,
        ip("10.252.0.3"),
        "the old network still serves"
    );
    let status = p.status();
    assert_eq!(status["Leases"], json!(leases.len() + 2 + 2), "{status}");
    p.rm_all();
    p.assert_empty();
}
