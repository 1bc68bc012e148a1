//! End-to-end tests against a real dockerd (the one on `DOCKER_HOST`:
//! `make test` runs them on 28.5 and on 20.10) with gipam as a legacy (v1)
//! plugin: each test starts the real gipam binary on
//! `/run/docker/plugins/<unique>.sock`, so dockerd finds it by that name,
//! and asserts on what Docker assigned (`docker network inspect`, `docker
//! inspect`, `ip addr` inside the container). No traffic is ever sent to
//! container addresses.
//!
//! Needs a running dockerd (see docs/testing.md). Without one every test
//! panics, unless `GIPAM_SKIP_E2E=1` is set, in which case they print a skip
//! line and pass.
//!
//! Isolation: each test has its own plugin name (dockerd caches a legacy
//! plugin by name for its lifetime), its own network and container names
//! and its own address space (the bridge driver refuses overlapping subnets
//! across all networks of the host): test k uses 10.23k.0.0/16 as V4,
//! 10.24k.0.0/16 for explicit subnets and 2001:db8:e23k::/48,
//! 2001:db8:e24k::/48 for IPv6. Test processes are serialised with a lock
//! file, so two `cargo test` runs on one host don't trip over each other,
//! and what a killed earlier run left behind is removed first (see
//! `docker_env`).

mod common;
mod docker_env;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Client;
use docker_env::*;
use ipnet::IpNet;
use serde_json::{Value, json};

const SUITE: &str = "e2e_docker";
/// Every plugin, network and container name starts with this.
const PREFIX: &str = "gipam-e2e-";
const PLUGIN_DIR: &str = "/run/docker/plugins";

/// Removes containers, networks and sockets of earlier runs. A release to
/// a plugin that is gone makes dockerd retry for ~15 s, so unless a gipam
/// of that run still answers (its test process was killed and gipam was
/// orphaned), a throwaway gipam answers on that plugin's socket meanwhile.
fn remove_leftovers(suite: &str) {
    let mut helpers = docker_env::remove_leftovers(suite, PREFIX, |networks| {
        let mut helpers = Vec::new();
        let mut drivers = HashSet::new();
        for n in networks {
            let driver = network_inspect(n, "{{.IPAM.Driver}}");
            if !driver.starts_with(PREFIX) || !drivers.insert(driver.clone()) {
                continue;
            }
            let socket = Path::new(PLUGIN_DIR).join(format!("{driver}.sock"));
            if Client::connect(&socket).is_ok() {
                continue;
            }
            let dir = tempfile::tempdir().expect("temp dir");
            let _ = std::fs::remove_file(&socket);
            if let Ok(mut c) = spawn_gipam(&socket, dir.path(), &[], Stdio::null()) {
                let _ = wait_ready(&socket, &mut c);
                helpers.push((dir, c));
            }
        }
        helpers
    });
    for (_dir, c) in &mut helpers {
        stop_child(c);
    }
    let mine = format!("{PREFIX}{}-", std::process::id());
    for (dir, ext) in [(PLUGIN_DIR, ".sock"), ("/etc/docker/plugins", ".spec")] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(PREFIX) && !name.starts_with(&mine) && name.ends_with(ext) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// gipam processes

fn spawn_gipam(socket: &Path, dir: &Path, args: &[String], log: Stdio) -> std::io::Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_gipam"))
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .env("LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
}

/// Waits until gipam answers on its socket.
fn wait_ready(socket: &Path, child: &mut Child) -> Result<(), String> {
    poll_every(Duration::from_millis(20), Duration::from_secs(30), || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Err(format!("gipam exited at start: {status}")));
        }
        let mut c = Client::connect(socket).ok()?;
        c.call("IpamDriver.GetCapabilities", &Value::Null)
            .ok()
            .map(|_| Ok(()))
    })
    .unwrap_or_else(|| {
        Err(format!(
            "gipam did not answer on {} within 30 s",
            socket.display()
        ))
    })
}

/// SIGTERM, then SIGKILL if it has not exited after 10 s.
fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let exited = poll_every(Duration::from_millis(20), Duration::from_secs(10), || {
        child.try_wait().ok().flatten()
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One test's world: a gipam serving as legacy plugin `gipam-e2e-<pid>-<test>`,
/// and every container and network the test created (it derefs to those
/// [`Resources`], named after the plugin), all removed on Drop (even when
/// the test panics), before gipam is stopped and its socket removed.
struct E2e {
    socket: PathBuf,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
    made: Resources,
}

impl Deref for E2e {
    type Target = Resources;
    fn deref(&self) -> &Resources {
        &self.made
    }
}

impl DerefMut for E2e {
    fn deref_mut(&mut self) -> &mut Resources {
        &mut self.made
    }
}

impl E2e {
    /// Starts gipam as plugin `gipam-e2e-<pid>-<test>` with `--v4 V4 --v6
    /// V6`; `None` when the tests are skipped.
    fn start(test: &str, v4: &str, v6: &str) -> Option<E2e> {
        if !setup(SUITE, remove_leftovers) {
            return None;
        }
        let plugin = format!("{PREFIX}{}-{test}", std::process::id());
        let mut e = E2e {
            socket: Path::new(PLUGIN_DIR).join(format!("{plugin}.sock")),
            dir: tempfile::tempdir().expect("temp dir"),
            args: ["--v4", v4, "--v6", v6].map(String::from).to_vec(),
            child: None,
            made: Resources::new(plugin.clone(), plugin),
        };
        e.spawn().expect("gipam starts");
        Some(e)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("gipam.log")
    }

    /// Starts gipam (again) on the same socket and state directory.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| e.to_string())?;
        let mut child = spawn_gipam(&self.socket, self.dir.path(), &self.args, log.into())
            .map_err(|e| format!("cannot run gipam: {e}"))?;
        let ready = wait_ready(&self.socket, &mut child);
        self.child = Some(child);
        ready
    }

    /// SIGKILL, like a crash.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Calls gipam directly over its socket.
    fn call(&self, method: &str, body: &Value) -> (u16, Value) {
        Client::connect(&self.socket)
            .expect("connect to gipam")
            .call(method, body)
            .unwrap_or_else(|e| panic!("{method} to gipam: {e}"))
    }

    fn request_pool(&self, pool: &str) -> (u16, Value) {
        let v6 = matches!(net(pool), IpNet::V6(_));
        self.call(
            "IpamDriver.RequestPool",
            &json!({"AddressSpace": "LocalDefault", "Pool": pool, "SubPool": "",
                    "Options": {}, "V6": v6}),
        )
    }

    /// gipam holds nothing overlapping `pool`: an explicit RequestPool of
    /// exactly it succeeds (and is released again).
    fn assert_pool_free(&self, pool: &str) {
        let (status, body) = self.request_pool(pool);
        assert_eq!(status, 200, "{pool} should be free in gipam: {body}");
        assert_eq!(body["Pool"], pool, "{body}");
        let id = field(&body, "PoolID").to_string();
        let (status, body) = self.call("IpamDriver.ReleasePool", &json!({ "PoolID": id }));
        assert_eq!(status, 200, "ReleasePool {id}: {body}");
    }

    /// gipam holds a pool overlapping `pool`.
    fn assert_pool_held(&self, pool: &str) {
        let (status, body) = self.request_pool(pool);
        assert_ne!(status, 200, "{pool} should be held by gipam: {body}");
        assert!(field(&body, "Err").contains("overlaps"), "{body}");
    }

    /// `addr` is not leased in pool `id`: requesting it succeeds (and it is
    /// released again).
    fn assert_address_free(&self, id: &str, addr: &str) {
        let (status, body) = self.call(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": id, "Address": addr, "Options": null}),
        );
        assert_eq!(status, 200, "{addr} should be free in {id}: {body}");
        let (status, body) = self.call(
            "IpamDriver.ReleaseAddress",
            &json!({"PoolID": id, "Address": addr}),
        );
        assert_eq!(status, 200, "ReleaseAddress {addr}: {body}");
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        // Releases need a live gipam, or dockerd retries each for ~15 s.
        if self.child.is_none() && !self.networks.is_empty() {
            let _ = self.spawn();
        }
        self.made.cleanup();
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
        let _ = std::fs::remove_file(&self.socket);
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            eprintln!("--- gipam log of {}:\n{log}--- end of log", self.driver);
        }
    }
}

// ---------------------------------------------------------------------------
// Scenarios

/// Auto blocks from V4: one /24 per network, lowest free first, gateway .1,
/// containers from .2 up; `docker rm -f` and `docker network rm` give
/// everything back to gipam.
#[test]
fn automatic_ipv4_blocks_are_assigned_and_released() {
    let Some(mut e) = E2e::start("auto", "10.230.0.0/16", "2001:db8:e230::/48") else {
        return;
    };
    let a = e.network("a", &[]);
    let b = e.network("b", &[]);
    let ca = ipam_config(&a);
    let cb = ipam_config(&b);
    assert_eq!(ca.len(), 1, "an IPv4-only network has one pool: {ca:?}");
    assert_eq!(cb.len(), 1, "{cb:?}");
    assert_eq!(ca[0]["Subnet"], "10.230.0.0/24", "first /24 of V4: {ca:?}");
    assert_eq!(ca[0]["Gateway"], "10.230.0.1", "{ca:?}");
    assert_eq!(cb[0]["Subnet"], "10.230.1.0/24", "next free /24: {cb:?}");
    assert_eq!(cb[0]["Gateway"], "10.230.1.1", "{cb:?}");

    let c1 = e.run("c1", &a, &[]);
    let c2 = e.run("c2", &a, &[]);
    assert_endpoint(&c1, &a, (ip("10.230.0.2"), 24), None);
    assert_endpoint(&c2, &a, (ip("10.230.0.3"), 24), None);
    assert_eq!(endpoint(&c1, &a)["Gateway"], "10.230.0.1");

    // While the network exists gipam holds its block.
    e.assert_pool_held("10.230.0.0/24");
    e.rm_containers(&[c1, c2]);
    // The containers' addresses went back (the pool itself is still held).
    e.assert_address_free("LocalDefault/10.230.0.0/24", "10.230.0.2");
    e.assert_address_free("LocalDefault/10.230.0.0/24", "10.230.0.3");
    e.rm_network(&a);
    e.rm_network(&b);
    e.assert_pool_free("10.230.0.0/24");
    e.assert_pool_free("10.230.1.0/24");
}

/// `--ipv6` without subnets: dockerd 20.10 sends a second RequestPool with
/// V6=true and an empty Pool; gipam gives a /64 from V6.
#[test]
fn dual_stack_network_gets_a_v4_block_and_a_v6_64() {
    let Some(mut e) = E2e::start("dual", "10.231.0.0/16", "2001:db8:e231::/48") else {
        return;
    };
    let n = e.network("n", &["--ipv6"]);
    assert_eq!(network_inspect(&n, "{{.EnableIPv6}}"), "true");
    let cfg = ipam_config(&n);
    assert_eq!(cfg.len(), 2, "{cfg:?}");
    let v4 = config_of(&cfg, false);
    let v6 = config_of(&cfg, true);
    assert_eq!(v4["Subnet"], "10.231.0.0/24", "{cfg:?}");
    assert_eq!(v4["Gateway"], "10.231.0.1", "{cfg:?}");
    assert_eq!(
        v6["Subnet"], "2001:db8:e231::/64",
        "first /64 of V6: {cfg:?}"
    );
    // 20.10 reports the IPv6 gateway of an automatic pool with its prefix
    // length ("2001:db8:e231::1/64") but the IPv4 one without.
    assert_eq!(addr_field(v6, "Gateway"), ip("2001:db8:e231::1"), "{cfg:?}");

    let c = e.run("c", &n, &[]);
    let ep = endpoint(&c, &n);
    let a4 = addr_field(&ep, "IPAddress");
    let a6 = addr_field(&ep, "GlobalIPv6Address");
    assert!(net("10.231.0.0/24").contains(&a4), "{ep}");
    assert!(net("2001:db8:e231::/64").contains(&a6), "{ep}");
    assert_ne!(
        a6,
        ip("2001:db8:e231::"),
        "not the subnet-router anycast address"
    );
    assert_ne!(a6, ip("2001:db8:e231::1"), "not the gateway");
    assert_eq!(ep["IPv6Gateway"], "2001:db8:e231::1", "{ep}");
    assert_endpoint(&c, &n, (a4, 24), Some((a6, 64)));

    e.rm_containers(&[c]);
    e.rm_network(&n);
    e.assert_pool_free("10.231.0.0/24");
    e.assert_pool_free("2001:db8:e231::/64");
}

/// One explicit network layout, checked on a plain and an internal network.
struct Explicit {
    what: &'static str,
    /// Further `docker network create` flags.
    extra: &'static str,
    subnet: &'static str,
    range: &'static str,
    gateway: &'static str,
    aux: &'static str,
    subnet6: &'static str,
    ip: &'static str,
    ip6: &'static str,
}

/// `--subnet --ip-range --gateway --aux-address` (v4) and `--ipv6 --subnet`
/// honoured exactly; `--ip` outside the range and `--ip6` honoured; a
/// dynamic address comes from the range but never its first address; the
/// aux address is held; the same on an `--internal` network, whose
/// endpoints have no gateway on Engine 28.
#[test]
fn explicit_subnet_range_gateway_aux_and_static_ips() {
    let Some(mut e) = E2e::start("explicit", "10.232.0.0/16", "2001:db8:e232::/48") else {
        return;
    };
    #[rustfmt::skip]
    let cases = [
        // Outside the main pools.
        Explicit {
            what: "plain", extra: "",
            subnet: "10.242.0.0/16", range: "10.242.5.0/24", gateway: "10.242.5.254",
            aux: "10.242.1.5", ip: "10.242.9.9",
            subnet6: "2001:db8:e242::/64", ip6: "2001:db8:e242::99",
        },
        // Inside the main pools.
        Explicit {
            what: "internal", extra: "--internal",
            subnet: "10.232.64.0/20", range: "10.232.66.0/24", gateway: "10.232.64.1",
            aux: "10.232.70.5", ip: "10.232.79.9",
            subnet6: "2001:db8:e232:ff::/64", ip6: "2001:db8:e232:ff::99",
        },
    ];
    for x in &cases {
        let args = format!(
            "--subnet {} --ip-range {} --gateway {} --aux-address host1={} --ipv6 --subnet {} {}",
            x.subnet, x.range, x.gateway, x.aux, x.subnet6, x.extra
        );
        let args: Vec<&str> = args.split_whitespace().collect();
        let n = e.network(x.what, &args);
        assert_eq!(
            network_inspect(&n, "{{.Internal}}"),
            (!x.extra.is_empty()).to_string()
        );
        let cfg = ipam_config(&n);
        assert_eq!(cfg.len(), 2, "{cfg:?}");
        let v4 = config_of(&cfg, false);
        assert_eq!(v4["Subnet"], x.subnet, "{cfg:?}");
        assert_eq!(v4["IPRange"], x.range, "{cfg:?}");
        assert_eq!(v4["Gateway"], x.gateway, "{cfg:?}");
        assert_eq!(v4["AuxiliaryAddresses"], json!({"host1": x.aux}), "{cfg:?}");
        assert_eq!(config_of(&cfg, true)["Subnet"], x.subnet6, "{cfg:?}");

        let (subnet, range, subnet6) = (net(x.subnet), net(x.range), net(x.subnet6));
        let len = subnet.prefix_len();

        // Dynamic: inside the range, not its first address, not the gateway.
        let d = e.run(&format!("{}-dyn", x.what), &n, &[]);
        let ep = endpoint(&d, &n);
        let a4 = addr_field(&ep, "IPAddress");
        let a6 = addr_field(&ep, "GlobalIPv6Address");
        assert!(range.contains(&a4), "{a4} not in {range}: {ep}");
        assert_ne!(a4, range.network(), "dynamic address is the range's first");
        assert_ne!(a4, ip(x.gateway));
        assert!(subnet6.contains(&a6), "{a6} not in {subnet6}: {ep}");
        assert_ne!(a6, subnet6.network(), "subnet-router anycast address");
        assert_endpoint(&d, &n, (a4, len), Some((a6, 64)));
        // Gateways: --gateway for IPv4, the subnet's first usable address
        // (gipam's choice) for IPv6. Engine 28 gives the endpoints of an
        // --internal network neither (nor a default route); 20.10 gives
        // them both, as on any network.
        let has_gateway = x.extra != "--internal" || engine().internal_bridge_has_gateway();
        let gw6 = match subnet6.network() {
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
            other => panic!("{other} is not IPv6"),
        };
        assert_gateways(
            &d,
            &n,
            has_gateway.then(|| ip(x.gateway)),
            has_gateway.then_some(gw6),
        );

        // Static: --ip outside the range (inside the subnet), --ip6.
        assert!(subnet.contains(&ip(x.ip)) && !range.contains(&ip(x.ip)));
        let s = e.run(
            &format!("{}-static", x.what),
            &n,
            &["--ip", x.ip, "--ip6", x.ip6],
        );
        assert_endpoint(&s, &n, (ip(x.ip), len), Some((ip(x.ip6), 64)));

        // The aux address is held: a container cannot have it.
        let err = e
            .try_run(&format!("{}-aux", x.what), &n, &["--ip", x.aux])
            .expect_err("--ip of the aux address must fail");
        assert_mentions(&err, &[&format!("address {} already in use", x.aux)]);

        e.rm_containers(&[d, s]);
        e.rm_failed(&format!("{}-aux", x.what));
        e.rm_network(&n);
        e.assert_pool_free(x.subnet);
        e.assert_pool_free(x.subnet6);
    }
}

/// `--ipam-opt v4ab=28`, refused options and overlapping subnets reach the
/// CLI with gipam's message, and a refused create changes nothing.
#[test]
fn ipam_options_and_refusals() {
    let Some(mut e) = E2e::start("opts", "10.233.0.0/16", "2001:db8:e233::/48") else {
        return;
    };
    let block = |n: &str| field(config_of(&ipam_config(n), false), "Subnet").to_string();

    let n1 = e.network("n1", &["--ipv6"]);
    assert_eq!(block(&n1), "10.233.0.0/24");
    assert_eq!(
        config_of(&ipam_config(&n1), true)["Subnet"],
        "2001:db8:e233::/64"
    );

    let n2 = e.network("n2", &["--ipam-opt", "v4ab=28"]);
    let cfg = ipam_config(&n2);
    assert_eq!(cfg[0]["Subnet"], "10.233.1.0/28", "{cfg:?}");
    assert_eq!(cfg[0]["Gateway"], "10.233.1.1", "{cfg:?}");
    let c = e.run("c", &n2, &[]);
    assert_endpoint(&c, &n2, (ip("10.233.1.2"), 28), None);

    // Unknown option: gipam's message with the known keys.
    let err = e.network_fails("bogus", &["--ipam-opt", "bogus=1"]);
    let known = format!("known options: {}", gipam::ipam::KNOWN_OPTIONS.join(", "));
    assert_mentions(
        &err,
        &["IpamDriver.RequestPool: ", "\"bogus\" is unknown", &known],
    );
    // A bad value of a known option.
    let err = e.network_fails("badvalue", &["--ipam-opt", "v4ab=99"]);
    assert_mentions(&err, &["v4ab", "99"]);
    let n3 = e.network("n3", &[]);
    assert_eq!(
        block(&n3),
        "10.233.2.0/24",
        "state unchanged by the refusals"
    );

    // Overlap with n1's block: both pools named.
    let err = e.network_fails("overlap", &["--subnet", "10.233.0.128/25"]);
    assert_mentions(
        &err,
        &[
            "IpamDriver.RequestPool: ",
            "10.233.0.128/25",
            "10.233.0.0/24",
            "overlaps",
        ],
    );
    // The exact subnet of a held block.
    let err = e.network_fails("same", &["--subnet", "10.233.1.0/28"]);
    assert_mentions(&err, &["overlaps", "10.233.1.0/28"]);
    let n4 = e.network("n4", &["--ipam-opt", "v4ab=28"]);
    assert_eq!(
        block(&n4),
        "10.233.1.16/28",
        "state unchanged by the refusals"
    );

    // The IPv4 pass succeeds, the IPv6 pass overlaps n1's /64: dockerd
    // releases the IPv4 pool again.
    let err = e.network_fails(
        "rollback",
        &[
            "--ipv6",
            "--subnet",
            "10.243.0.0/24",
            "--subnet",
            "2001:db8:e233::/64",
        ],
    );
    assert_mentions(&err, &["2001:db8:e233::/64", "overlaps"]);
    e.assert_pool_free("10.243.0.0/24");
    let n5 = e.network("n5", &[]);
    assert_eq!(
        block(&n5),
        "10.233.3.0/24",
        "state unchanged by the refusal"
    );
}

/// Twenty containers started at once on one network: twenty distinct
/// addresses, all inside the block.
#[test]
fn twenty_containers_get_unique_addresses() {
    let Some(mut e) = E2e::start("twenty", "10.234.0.0/16", "2001:db8:e234::/48") else {
        return;
    };
    let n = e.network("n", &[]);
    let cfg = ipam_config(&n);
    assert_eq!(cfg[0]["Subnet"], "10.234.0.0/24", "{cfg:?}");
    let block = net("10.234.0.0/24");
    let gateway = ip("10.234.0.1");

    let names: Vec<String> = (0..20).map(|i| e.name(&format!("c{i}"))).collect();
    e.containers.extend(names.iter().cloned());
    // One thread per container.
    let results = parallel(&names, names.len(), |name| {
        docker_run(name, &n, &[]).map(|_| addrs_inside(name))
    });

    let mut seen: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (name, r) in names.iter().zip(results) {
        let inside = r.unwrap_or_else(|err| panic!("docker run {name}: {err}"));
        let a = addr_field(&endpoint(name, &n), "IPAddress");
        assert!(block.contains(&a), "{name}: {a} not in {block}");
        assert!(
            a != block.network() && a != block.broadcast() && a != gateway,
            "{name}: reserved address {a}"
        );
        assert_eq!(inside, vec![IpNet::new(a, 24).expect("/24")], "{name}");
        if let Some(other) = seen.insert(a, name.clone()) {
            panic!("{name} and {other} both have {a}");
        }
    }
    assert_eq!(seen.len(), 20);
}

/// gipam killed with SIGKILL while a container runs and restarted on the
/// same socket and state: it remembers the lease, and the network can be
/// removed afterwards.
#[test]
fn restart_after_sigkill_keeps_leases() {
    let Some(mut e) = E2e::start("restart", "10.235.0.0/16", "2001:db8:e235::/48") else {
        return;
    };
    let n = e.network("n", &[]);
    assert_eq!(ipam_config(&n)[0]["Subnet"], "10.235.0.0/24");
    let c1 = e.run("c1", &n, &[]);
    assert_endpoint(&c1, &n, (ip("10.235.0.2"), 24), None);

    e.kill9();
    assert!(e.socket.exists(), "SIGKILL leaves the socket file behind");
    e.spawn()
        .expect("gipam restarts on its stale socket and state");

    let c2 = e.run("c2", &n, &[]);
    let a2 = addr_field(&endpoint(&c2, &n), "IPAddress");
    assert_ne!(a2, ip("10.235.0.2"), "the running container's address");
    assert!(net("10.235.0.0/24").contains(&a2), "{a2}");
    assert_endpoint(&c2, &n, (a2, 24), None);
    assert_endpoint(&c1, &n, (ip("10.235.0.2"), 24), None);

    e.rm_containers(&[c1, c2]);
    e.rm_network(&n);
    e.assert_pool_free("10.235.0.0/24");
}

/// gipam on TCP (`--address`), found by dockerd through the spec file it
/// writes in /etc/docker/plugins, which it removes again on shutdown.
struct TcpGipam {
    spec: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
    made: Resources,
}

impl Drop for TcpGipam {
    fn drop(&mut self) {
        self.made.cleanup();
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
        let _ = std::fs::remove_file(&self.spec);
    }
}

#[test]
fn tcp_mode_is_found_through_the_spec_file() {
    if !setup(SUITE, remove_leftovers) {
        return;
    }
    let plugin = format!("{PREFIX}{}-tcp", std::process::id());
    let spec = Path::new("/etc/docker/plugins").join(format!("{plugin}.spec"));
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_gipam"))
        .args(["--address", "127.0.0.1:0", "--v4", "10.237.0.0/16"])
        .args(["--v6", "2001:db8:e237::/48", "--spec-file"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .spawn()
        .expect("run gipam");
    let mut g = TcpGipam {
        spec: spec.clone(),
        child: Some(child),
        _dir: dir,
        made: Resources::new(plugin.clone(), plugin),
    };
    let url = poll(Duration::from_secs(30), || {
        std::fs::read_to_string(&spec).ok()
    })
    .expect("gipam writes its spec file");
    assert!(url.trim().starts_with("tcp://127.0.0.1:"), "{url}");

    let n = g.made.network("n", &[]);
    assert_eq!(ipam_config(&n)[0]["Subnet"], "10.237.0.0/24");
    let c = g.made.run("c", &n, &[]);
    assert_endpoint(&c, &n, (ip("10.237.0.2"), 24), None);
    g.made.rm_containers(&[c]);
    g.made.rm_network(&n);

    if let Some(mut c) = g.child.take() {
        stop_child(&mut c);
    }
    assert!(!spec.exists(), "the spec file is removed on shutdown");
}

/// F6: a container that comes back with the same MAC address gets the
/// address it had. On 20.10 the CLI cannot give a MAC on a user network, so
/// the container is created through the Engine API.
#[test]
fn container_with_same_mac_keeps_its_address() {
    let Some(mut e) = E2e::start("sticky", "10.236.0.0/16", "2001:db8:e236::/48") else {
        return;
    };
    let n = e.network("n", &[]);
    let mac = "02:42:0a:ec:00:99";
    let create = |e: &mut E2e, what: &str| -> String {
        let name = e.name(what);
        e.containers.push(name.clone());
        let (status, body) = docker_api_post(
            &format!("/containers/create?name={name}"),
            &json!({"Image": IMAGE, "Cmd": ["sleep", "600"], "MacAddress": mac,
                    "HostConfig": {"NetworkMode": n}}),
        );
        assert_eq!(status, 201, "create {name}: {body}");
        docker_ok(&["start", &name]);
        name
    };
    let c = create(&mut e, "c1");
    let ep = endpoint(&c, &n);
    assert_eq!(ep["MacAddress"], mac, "{ep}");
    let first = addr_field(&ep, "IPAddress");

    docker_ok(&["restart", "-t", "0", &c]);
    let ep = endpoint(&c, &n);
    assert_eq!(ep["MacAddress"], mac, "{ep}");
    assert_eq!(
        addr_field(&ep, "IPAddress"),
        first,
        "after docker restart: {ep}"
    );

    e.rm_containers(&[c]);
    let c = create(&mut e, "c2");
    assert_eq!(
        addr_field(&endpoint(&c, &n), "IPAddress"),
        first,
        "a new container with the same MAC"
    );
}
