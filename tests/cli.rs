//! The client subcommands against a real gipam on a temporary socket:
//! `gipam status` and `gipam leases` (table and `--json`), their errors,
//! and `gipam reconcile` when Docker cannot be reached. Docker is kept out
//! with DOCKER_HOST pointing at a socket that does not exist, so these
//! runs do not depend on the machine (reconcile against a real dockerd is
//! tests/e2e_reconcile.rs).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Daemon;
use serde_json::{Value, json};

const NO_DOCKER: &str = "unix:///nonexistent/docker.sock";

fn gipam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gipam"))
        .args(args)
        .env("DOCKER_HOST", NO_DOCKER)
        .env_remove("SOCKET")
        .output()
        .expect("run gipam")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "gipam failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sock(d: &Daemon) -> &str {
    d.socket.to_str().expect("utf-8 path")
}

/// Three pools (one explicit, one IPv6), an endpoint with a MAC and a name.
fn populated() -> Daemon {
    let d = Daemon::start(&["--v4", "10.213.0.0/16", "--v6", "fd00:213::/48"]);
    let mut c = d.client();
    for (pool, v6) in [("", false), ("10.99.0.0/28", false), ("", true)] {
        let (s, v) = c
            .call(
                "IpamDriver.RequestPool",
                &json!({"AddressSpace":"LocalDefault","Pool":pool,"SubPool":"","Options":{},"V6":v6}),
            )
            .expect("RequestPool");
        assert_eq!(s, 200, "{v}");
    }
    let opts = json!({"com.docker.network.endpoint.macaddress":"02:42:0a:d5:00:02","com.docker.network.endpoint.name":"web-1"});
    let (s, v) = c
        .call(
            "IpamDriver.RequestAddress",
            &json!({"PoolID":"LocalDefault/10.213.0.0/24","Address":"","Options":opts}),
        )
        .expect("RequestAddress");
    assert_eq!(s, 200, "{v}");
    d
}

#[test]
fn status_prints_a_table_with_totals_and_the_store() {
    let d = populated();
    let out = stdout(&gipam(&["status", "--socket", sock(&d)]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("POOL")
            && lines[0].contains("FAMILY")
            && lines[0].contains("KIND")
            && lines[0].ends_with("LABELS"),
        "{out}"
    );
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // POOL NETWORK FAMILY SIZE USED FREE [bar] PERCENT KIND LABELS
    assert_eq!(
        row("LocalDefault/10.213.0.0/24"),
        [
            "LocalDefault/10.213.0.0/24",
            "-",
            "IPv4",
            "254",
            "2",
            "252",
            "[#.........]",
            "0%",
            "auto",
            "-"
        ]
    );
    assert_eq!(
        row("LocalDefault/10.99.0.0/28"),
        [
            "LocalDefault/10.99.0.0/28",
            "-",
            "IPv4",
            "14",
            "1",
            "13",
            "[#.........]",
            "7%",
            "explicit",
            "-"
        ]
    );
    assert_eq!(
        row("LocalDefault/fd00:213::/64")[2..6],
        ["IPv6", "1.8e19", "1", "1.8e19"]
    );
    assert!(out.contains("total: 3 pools, 4 leases"), "{out}");
    assert!(
        out.contains("main pools: V4=10.213.0.0/16 V6=fd00:213::/48"),
        "{out}"
    );
    assert!(
        out.contains("store: journal ") && out.contains("last fsync "),
        "{out}"
    );
    assert!(
        out.contains("network names unknown: cannot read Docker's"),
        "{out}"
    );
}

#[test]
fn status_json_has_the_documented_shape() {
    let d = populated();
    let v: Value =
        serde_json::from_str(&stdout(&gipam(&["status", "--json", "--socket", sock(&d)])))
            .expect("JSON");
    assert_eq!(v["Leases"], json!(4));
    let pools = v["Pools"].as_array().expect("Pools");
    assert_eq!(pools.len(), 3);
    let p = pools
        .iter()
        .find(|p| p["PoolID"] == "LocalDefault/10.213.0.0/24")
        .expect("pool");
    for (k, want) in [
        ("Pool", json!("10.213.0.0/24")),
        ("Family", json!("IPv4")),
        ("Size", json!(254)),
        ("Leases", json!(2)),
        ("Free", json!(252)),
        ("Auto", json!(true)),
        ("Network", Value::Null),
        ("Shared", Value::Null),
        ("Owner", Value::Null),
        ("TreePool", Value::Null),
    ] {
        assert_eq!(p[k], want, "{k} in {p}");
    }
    assert_eq!(
        v["Totals"]["IPv4"],
        json!({"Pools": 2, "Size": 268, "Leases": 3})
    );
    assert_eq!(
        v["Mains"],
        json!({"V4": ["10.213.0.0/16"], "V6": ["fd00:213::/48"]})
    );
    for k in [
        "JournalBytes",
        "SnapshotBytes",
        "Snapshots",
        "LastSnapshot",
        "LastFsyncSeconds",
        "Errors",
    ] {
        assert!(v["Store"].get(k).is_some(), "Store.{k} missing: {v}");
    }
    // Not in fleet mode: the key is there, null.
    assert_eq!(v.get("Fleet"), Some(&Value::Null), "{v}");
    assert!(
        v["Docker"].as_str().is_some_and(|e| e.contains(NO_DOCKER)),
        "{v}"
    );
}

#[test]
fn leases_lists_every_lease_or_one_pools() {
    let d = populated();
    let out = stdout(&gipam(&["leases", "--socket", sock(&d)]));
    assert!(out.starts_with("POOL"), "{out}");
    let endpoint: Vec<&str> = out
        .lines()
        .find(|l| l.contains("10.213.0.2"))
        .expect("the endpoint's lease")
        .split_whitespace()
        .collect();
    assert_eq!(
        endpoint,
        [
            "LocalDefault/10.213.0.0/24",
            "-",
            "10.213.0.2",
            "endpoint",
            "02:42:0a:d5:00:02",
            "web-1"
        ]
    );
    assert!(
        out.contains("10.213.0.1") && out.ends_with("4 leases\n"),
        "{out}"
    );

    let by_subnet: Value = serde_json::from_str(&stdout(&gipam(&[
        "leases",
        "10.213.0.0/24",
        "--json",
        "--socket",
        sock(&d),
    ])))
    .expect("JSON");
    let list = by_subnet["Leases"].as_array().expect("Leases");
    assert_eq!(list.len(), 2, "{by_subnet}");
    assert_eq!(
        list[1],
        json!({"PoolID":"LocalDefault/10.213.0.0/24","Address":"10.213.0.2","Gateway":false,"MacAddress":"02:42:0a:d5:00:02","Name":"web-1","Network":null})
    );
    let by_id = stdout(&gipam(&[
        "leases",
        "LocalDefault/10.99.0.0/28",
        "--socket",
        sock(&d),
    ]));
    // An explicit pool gets its gateway from RequestPool's Data too.
    assert_eq!(by_id.lines().count(), 3, "{by_id}");
    assert!(by_id.contains("10.99.0.1  gateway"), "{by_id}");
}

#[test]
fn remembered_lists_what_held_and_released_pools_remember() {
    let d = populated();
    let mut c = d.client();
    let mut call = |method: &str, body: Value| {
        let (s, v) = c.call(method, &body).expect(method);
        assert_eq!(s, 200, "{method}: {v}");
        v
    };
    assert_eq!(
        call("Gipam.Remembered", Value::Null),
        json!({"Remembered": []})
    );
    // web-1 leaves: remembered by its name. A MAC-only endpoint leaves the
    // explicit pool, then its network goes: the memory is kept, retired.
    call(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID":"LocalDefault/10.213.0.0/24","Address":"10.213.0.2"}),
    );
    let mac = json!({"com.docker.network.endpoint.macaddress":"02:42:0a:63:00:05"});
    call(
        "IpamDriver.RequestAddress",
        json!({"PoolID":"LocalDefault/10.99.0.0/28","Address":"10.99.0.5","Options":mac}),
    );
    call(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID":"LocalDefault/10.99.0.0/28","Address":"10.99.0.5"}),
    );
    call(
        "IpamDriver.ReleasePool",
        json!({"PoolID":"LocalDefault/10.99.0.0/28"}),
    );
    assert_eq!(
        call("Gipam.Remembered", Value::Null),
        json!({"Remembered": [
            {"PoolID":"LocalDefault/10.213.0.0/24","PoolHeld":true,"Address":"10.213.0.2",
             "Name":"web-1","MacAddress":null,"Released":0,"PoolReleases":1},
            {"PoolID":"LocalDefault/10.99.0.0/28","PoolHeld":false,"Address":"10.99.0.5",
             "Name":null,"MacAddress":"02:42:0a:63:00:05","Released":0,"PoolReleases":1},
        ]})
    );
}

#[test]
fn errors_name_what_failed_and_what_to_do() {
    let d = populated();
    let o = gipam(&["leases", "10.1.2.0/24", "--socket", sock(&d)]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no held pool is \"10.1.2.0/24\"")
            && e.contains("`gipam status` lists the pools"),
        "{e}"
    );

    let missing = Path::new("/nonexistent/gipam.sock");
    let o = gipam(&["status", "--socket", missing.to_str().expect("path")]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.starts_with("gipam status: cannot reach gipam on /nonexistent/gipam.sock")
            && e.contains("--socket or SOCKET"),
        "{e}"
    );

    let o = gipam(&["status", "--bogus"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown flag --bogus"));

    // reconcile cannot judge a leak without Docker's view: it refuses.
    let o = gipam(&["reconcile", "--settle", "0", "--socket", sock(&d)]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("reconcile compares with Docker and cannot read Docker's")
            && e.contains("is dockerd running"),
        "{e}"
    );
}

#[test]
fn a_plain_start_is_still_the_daemon() {
    // Not a subcommand: the daemon's own settings parse it.
    let o = gipam(&["--help"]);
    let out = stdout(&o);
    assert!(out.contains("METRICS_ADDRESS"), "{out}");
}
