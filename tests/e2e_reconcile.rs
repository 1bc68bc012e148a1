//! `gipam reconcile` against the real dockerd: gipam runs as a legacy
//! plugin (`/run/docker/plugins/gipam-rec-<pid>.sock`), an address leaks
//! for real and reconcile reports exactly it, `--apply` frees it, and a
//! container started while reconcile runs keeps its addresses.
//!
//! A leaked pool is made directly on gipam's socket (a RequestPool no
//! network came of), and must be reported and freed too.
//!
//! Remembered identities (F6): a removed container's address is listed as
//! remembered for a container that no longer exists; a stopped container's
//! (its MAC pinned, so Docker keeps it) is not, and `--apply` leaves both.
//!
//! The leak: a dual-stack network, and a container asking for `--ip6` of
//! an address already held (the network's IPv6 gateway). Docker gets the
//! container's IPv4 address, the IPv6 request fails, and Docker never
//! releases the IPv4 one (checked on 28.5.2): gipam holds an address no
//! endpoint has.
//!
//! Needs a running dockerd (docs/testing.md); `GIPAM_SKIP_E2E=1` skips.
//! Names start with `gipam-rec-<pid>-`; everything is removed on Drop,
//! also when the test fails, while gipam still answers. The subnets are
//! 10.251.0.0/24, 10.251.9.0/24, fd00:251::/64 and 10.251.2.0/24.

mod common;
mod docker_env;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::Client;
use docker_env::*;
use serde_json::Value;

const SUITE: &str = "e2e_reconcile";
const PREFIX: &str = "gipam-rec-";

fn remove_leftovers(suite: &str) {
    // A leftover network's driver is gone with its process: Docker's
    // release retries for ~15 s, then the network goes anyway.
    docker_env::remove_leftovers(suite, PREFIX, |_| ());
}

/// gipam as legacy plugin `gipam-rec-<pid>`, and the test's containers and
/// networks; removed on Drop.
struct World {
    res: Resources,
    socket: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl World {
    /// `tag` tells apart the worlds of tests running at once.
    fn start(tag: &str) -> Option<World> {
        if !setup(SUITE, remove_leftovers) {
            return None;
        }
        let name = format!("{PREFIX}{}{tag}", std::process::id());
        let socket = PathBuf::from(format!("/run/docker/plugins/{name}.sock"));
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new(env!("CARGO_BIN_EXE_gipam"))
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start gipam");
        poll(Duration::from_secs(30), || {
            Client::connect(&socket)
                .ok()?
                .call("IpamDriver.GetCapabilities", &Value::Null)
                .ok()
        })
        .expect("gipam answers on its socket");
        Some(World {
            res: Resources::new(name.clone(), name),
            socket,
            child,
            _dir: dir,
        })
    }

    fn gipam(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gipam"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run gipam")
    }

    fn json(&self, args: &[&str]) -> Value {
        let o = self.gipam(args);
        assert!(o.status.success(), "gipam {args:?}: {}", text(&o.stderr));
        parse_json(&text(&o.stdout), "gipam --json output")
    }

    /// gipam's leases as (address, MAC).
    fn leases(&self) -> Vec<(IpAddr, Option<String>)> {
        self.json(&["leases", "--json"])["Leases"]
            .as_array()
            .expect("Leases")
            .iter()
            .map(|l| {
                (
                    ip(field(l, "Address")),
                    l["MacAddress"].as_str().map(String::from),
                )
            })
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.res.cleanup();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn reconcile_reports_and_frees_exactly_the_leak_and_spares_a_concurrent_start() {
    let Some(mut w) = World::start("") else {
        return;
    };
    let net = w.res.network(
        "net",
        &[
            "--ipv6",
            "--subnet",
            "10.251.0.0/24",
            "--subnet",
            "fd00:251::/64",
        ],
    );
    let ok = w.res.run("ok", &net, &[]);
    // The IPv6 request fails after the IPv4 one succeeded.
    let err = w
        .res
        .try_run("leaky", &net, &["--ip6", "fd00:251::1"])
        .expect_err("--ip6 of the gateway is refused");
    assert_mentions(&err, &["fd00:251::1", "already in use"]);
    let (ok_v4, ok_v6) = endpoint_addrs(&ok, &net);
    let held = w.leases();
    let leaked: Vec<IpAddr> = held
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| ![ok_v4, ip("10.251.0.1"), ip("fd00:251::1")].contains(a) && Some(*a) != ok_v6)
        .collect();
    assert_eq!(leaked.len(), 1, "one IPv4 address leaked: {held:?}");
    let leak = leaked[0];
    assert!(leak.is_ipv4());
    // A pool no network has: what a network removed while gipam was down
    // leaves behind.
    let (s, v) = Client::connect(&w.socket)
        .expect("connect")
        .call(
            "IpamDriver.RequestPool",
            &serde_json::json!({"AddressSpace":"LocalDefault","Pool":"10.251.9.0/24","SubPool":"","Options":{},"V6":false}),
        )
        .expect("RequestPool");
    assert_eq!(s, 200, "{v}");
    let held = w.leases();

    // The dry run reports exactly it, and changes nothing.
    let dry = w.json(&["reconcile", "--json", "--settle", "0.5"]);
    let reported: Vec<&str> = dry["Leases"]
        .as_array()
        .expect("Leases")
        .iter()
        .map(|l| field(l, "Address"))
        .collect();
    assert_eq!(reported, [leak.to_string()], "{dry}");
    let pools: Vec<&str> = dry["Pools"]
        .as_array()
        .expect("Pools")
        .iter()
        .map(|p| field(p, "PoolID"))
        .collect();
    assert_eq!(pools, ["LocalDefault/10.251.9.0/24"], "{dry}");
    assert_eq!(w.leases(), held);

    // --apply while a container starts: reconcile's first read is before
    // the start, Docker's read and the second read during or after it.
    let apply = Command::new(env!("CARGO_BIN_EXE_gipam"))
        .args([
            "reconcile",
            "--apply",
            "--json",
            "--settle",
            "2",
            "--socket",
        ])
        .arg(&w.socket)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start reconcile --apply");
    std::thread::sleep(Duration::from_millis(200));
    let late = w.res.run("late", &net, &[]);
    let out = apply.wait_with_output().expect("reconcile --apply ends");
    assert!(out.status.success(), "reconcile --apply failed");
    let applied = parse_json(&text(&out.stdout), "reconcile --apply --json");
    assert_eq!(
        applied["Freed"],
        serde_json::json!([
            format!("LocalDefault/10.251.0.0/24 {leak}"),
            "LocalDefault/10.251.9.0/24"
        ]),
        "{applied}"
    );

    let (late_v4, late_v6) = endpoint_addrs(&late, &net);
    let after: Vec<IpAddr> = w.leases().into_iter().map(|(a, _)| a).collect();
    for a in [Some(ok_v4), ok_v6, Some(late_v4), late_v6]
        .into_iter()
        .flatten()
    {
        assert!(
            after.contains(&a),
            "{a} was freed under a running container: {after:?}"
        );
    }
    // The late container started while the leak was still held.
    assert_ne!(late_v4, leak);
    assert!(
        !after.contains(&leak),
        "the leak {leak} is still held: {after:?}"
    );
    // Nothing is left to free.
    let again = w.json(&["reconcile", "--json", "--settle", "0.2"]);
    assert_eq!(again["Leases"], Value::Array(vec![]), "{again}");
    assert_eq!(again["Pools"], Value::Array(vec![]), "{again}");

    // status names the network (Docker answers).
    let status = w.json(&["status", "--json"]);
    assert!(
        status["Pools"]
            .as_array()
            .expect("Pools")
            .iter()
            .all(|p| p["Network"] == Value::String(net.clone())),
        "{status}"
    );
    w.res.rm_all();
}

#[test]
fn reconcile_lists_what_is_remembered_for_a_removed_container_only() {
    let Some(mut w) = World::start("-mem") else {
        return;
    };
    let net = w.res.network("net", &["--subnet", "10.251.2.0/24"]);
    let gone = w.res.run("gone", &net, &[]);
    let pinned = w.res.run_with_mac("pinned", &net, "02:42:0a:fb:02:42");
    let (gone_v4, _) = endpoint_addrs(&gone, &net);
    let gone_mac = field(&endpoint(&gone, &net), "MacAddress").to_string();
    let (pinned_v4, _) = endpoint_addrs(&pinned, &net);
    // Both leave the network: gipam remembers both addresses (by name on
    // Engine 29, by MAC before). Only "gone" is gone from Docker.
    w.res.rm_containers(&[&gone]);
    docker_ok(&["stop", "-t", "0", &pinned]);

    let dry = w.json(&["reconcile", "--json", "--settle", "0.2"]);
    assert_eq!(dry["Leases"], Value::Array(vec![]), "{dry}");
    assert_eq!(dry["Pools"], Value::Array(vec![]), "{dry}");
    assert_eq!(dry["RememberedError"], Value::Null, "{dry}");
    let listed = dry["Remembered"].as_array().expect("Remembered");
    assert_eq!(listed.len(), 1, "only the removed container's: {dry}");
    let r = &listed[0];
    assert_eq!(field(r, "Address"), gone_v4.to_string(), "{dry}");
    assert_eq!(r["PoolHeld"], Value::Bool(true), "{dry}");
    assert!(
        r["Name"] == Value::String(gone.clone())
            || r["MacAddress"] == Value::String(gone_mac.clone()),
        "remembered for {gone} or {gone_mac}: {dry}"
    );
    // gipam remembers the stopped one too; reconcile just does not list it.
    let all = Client::connect(&w.socket)
        .expect("connect")
        .call("Gipam.Remembered", &Value::Null)
        .expect("Gipam.Remembered")
        .1;
    assert!(
        all["Remembered"]
            .as_array()
            .expect("Remembered")
            .iter()
            .any(|r| field(r, "Address") == pinned_v4.to_string()),
        "{all}"
    );

    // The table says it; --apply frees nothing and keeps the memory.
    let o = w.gipam(&["reconcile", "--apply", "--settle", "0.2"]);
    assert!(o.status.success(), "reconcile --apply: {}", text(&o.stderr));
    let out = text(&o.stdout);
    let row = out
        .lines()
        .find(|l| l.contains(&gone_v4.to_string()))
        .unwrap_or_else(|| panic!("no row for {gone_v4}:\n{out}"));
    assert!(row.contains("LocalDefault/10.251.2.0/24"), "{out}");
    assert!(
        out.contains("1 address remembered for containers that no longer exist"),
        "{out}"
    );
    let again = w.json(&["reconcile", "--json", "--settle", "0"]);
    assert_eq!(again["Remembered"], dry["Remembered"], "{again}");
    w.res.rm_all();
}
