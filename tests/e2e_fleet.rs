//! Fleet mode (F9) end to end: two real dockerds on this machine, each
//! with its own managed gipam plugin (from the bundle `make plugin`
//! builds), both pointed at one real three-member etcd cluster on
//! loopback (the plugin runs on the host's network, so it reaches
//! 127.0.0.1), with distinct `HOST_ID`s and the same main pools. The two
//! daemons are the two "hosts" of the fleet:
//!
//! - host a: the dockerd on the default socket (28.5 in `make test`);
//! - host b: Debian 12's dockerd 20.10 as a second daemon next to it, on
//!   `unix:///run/gipam-docker-20.10/docker.sock` with its own data root,
//!   exec root and pid file, `--bridge none --iptables=false`
//!   (scripts/engines.sh). User-defined bridge networks work there; when it
//!   does not answer, the suite starts it with `scripts/docker-up.sh 20.10`
//!   and stops it again when its last scenario ends, also on failure.
//!
//! The scenarios assert what Docker assigned (`docker network inspect`,
//! `docker inspect`, `ip addr` inside the containers), what each plugin
//! holds (`/Gipam.Status`, `/Gipam.Leases` on its socket) and what etcd
//! holds (`etcdctl get --prefix`). No traffic is sent to any container.
//!
//! The suite drives both daemons itself, so it runs once per `make test`:
//! on the pass whose `DOCKER_HOST` is the default socket. On any other
//! pass (scripts/test-engines.sh's 20.10 pass) it prints why and passes.
//! Without a dockerd it panics with what to do, unless `GIPAM_SKIP_E2E=1`
//! (like the other e2e suites); the same holds when the second daemon is
//! missing and cannot be started.
//!
//! Networks are bridge networks, except f2's shared network on both
//! daemons: dockerd 20.10 checks an automatic pool against the host's
//! routes and asks again when one overlaps, and on one machine host a's
//! bridge for the shared subnet is such a route; a macvlan network on each
//! end of a veth pair has none.
//!
//! Address plan: scenario fk uses V4=10.19(5+k).0.0/16 and
//! V6=2001:db8:e19(5+k)::/48 (the main pools must be the same on every host
//! of a fleet, so V6 is set too). The other e2e suites use 10.20x–10.25x.
//! Everything is named `gpfleet-<pid>-…`, the plugins
//! `gipam-e2e-fleet/p<pid>-<scenario>-<host>:latest`, the veth pair
//! `gvf<pid>a`/`b`, and removed by the fixtures' Drop, also when a scenario
//! panics; each scenario has its own etcd cluster.

mod common;
mod docker_env;
mod plugin_fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use common::Client;
use common::etcd::Cluster;
use docker_env::{assert_mentions, field, ip, net, parse_json, poll, text};
use ipnet::IpNet;
use serde_json::Value;

const SUITE: &str = "e2e_fleet";
/// Containers and networks start with this (then the pid).
const PREFIX: &str = "gpfleet-";
/// Plugin names start with this (then the pid).
const PLUGIN_PREFIX: &str = "gipam-e2e-fleet/p";
/// The default socket: host a.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The second daemon, host b: engine 20.10 of scripts/engines.sh.
const B_HOST: &str = "unix:///run/gipam-docker-20.10/docker.sock";
const B_PIDFILE: &str = "/run/gipam-docker-20.10/docker.pid";
const B_EXEC_ROOT: &str = "/run/gipam-docker-20.10/exec";
const B_DOCKERD: &str = "/opt/gipam-docker-20.10/usr/sbin/dockerd";
/// etcd keys of the fleet (the default ETCD_PREFIX).
const ETCD_PREFIX: &str = "/gipam/";
/// How long what gipam's tidy pass does (every release, every 2 s) may take
/// to show in etcd.
const TIDY: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The two daemons

/// One dockerd, addressed by its `DOCKER_HOST`.
#[derive(Clone, Debug)]
struct Dockerd {
    /// `a` or `b`.
    label: &'static str,
    host: String,
    pidfile: PathBuf,
    /// Its exec root, where its plugins' sockets may be.
    exec_root: PathBuf,
}

impl Dockerd {
    fn a() -> Dockerd {
        Dockerd {
            label: "a",
            host: std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_HOST.to_string()),
            pidfile: docker_env::dockerd_pidfile(),
            exec_root: PathBuf::from("/var/run/docker"),
        }
    }

    fn b() -> Dockerd {
        Dockerd {
            label: "b",
            host: B_HOST.to_string(),
            pidfile: PathBuf::from(B_PIDFILE),
            exec_root: PathBuf::from(B_EXEC_ROOT),
        }
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI runs")
    }

    /// stdout of a docker command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {} on {} failed: {}",
            args.join(" "),
            self.host,
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn answers(&self) -> Option<String> {
        let out = self.docker(&["version", "-f", "{{.Server.Version}}"]);
        let v = text(&out.stdout);
        (out.status.success() && !v.is_empty()).then_some(v)
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The file this dockerd (and its plugins) log to.
    fn log(&self) -> Option<PathBuf> {
        let path = std::fs::read_link(format!("/proc/{}/fd/2", self.pid()?)).ok()?;
        path.is_file().then_some(path)
    }

    /// `network`'s one IPAM.Config entry.
    fn ipam_config(&self, network: &str) -> Value {
        let out = self.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", network]);
        let cfg = parse_json(&out, "IPAM.Config");
        let list = cfg.as_array().expect("IPAM.Config is a list");
        assert_eq!(
            list.len(),
            1,
            "{network} on {}: one pool: {cfg}",
            self.label
        );
        list[0].clone()
    }

    /// The subnet of `network`.
    fn subnet(&self, network: &str) -> IpNet {
        net(field(&self.ipam_config(network), "Subnet"))
    }

    /// (subnet, gateway) of `network`, created without `--subnet` (20.10
    /// reports no gateway for a network created with one).
    fn subnet_gateway(&self, network: &str) -> (IpNet, IpAddr) {
        let cfg = self.ipam_config(network);
        (net(field(&cfg, "Subnet")), ip(field(&cfg, "Gateway")))
    }

    /// The address Docker gave `container` on `network` (with its prefix
    /// length), checked to be exactly what eth0 has inside.
    fn address(&self, container: &str, network: &str) -> IpNet {
        let out = self.ok(&[
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks}}",
            container,
        ]);
        let nets = parse_json(&out, "NetworkSettings.Networks");
        let ep = &nets[network];
        assert!(
            ep.is_object(),
            "{container} has no endpoint on {network}: {nets}"
        );
        let len = ep["IPPrefixLen"].as_u64().expect("IPPrefixLen") as u8;
        let addr = IpNet::new(ip(field(ep, "IPAddress")), len).expect("prefix length");
        let inside = self.ok(&["exec", container, "ip", "-4", "addr", "show", "dev", "eth0"]);
        let global: Vec<IpNet> = inside
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("inet ") && l.contains("scope global"))
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(net)
            .collect();
        assert_eq!(global, vec![addr], "{container}: eth0 inside: {inside}");
        addr
    }
}

/// The second dockerd, held by every running scenario: when the suite
/// started it, the last holder's Drop stops it (SIGTERM to its pid).
struct SecondDaemon {
    started: Option<u32>,
}

static SECOND: Mutex<Weak<SecondDaemon>> = Mutex::new(Weak::new());

fn second_daemon() -> Result<Arc<SecondDaemon>, String> {
    let mut held = SECOND.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(d) = held.upgrade() {
        return Ok(d);
    }
    let b = Dockerd::b();
    let d = if b.answers().is_some() {
        Arc::new(SecondDaemon { started: None })
    } else {
        if !Path::new(B_DOCKERD).exists() {
            return Err(format!(
                "{B_DOCKERD} is missing: run scripts/test-env.sh (it unpacks Debian 12's docker.io 20.10)"
            ));
        }
        eprintln!("{SUITE}: starting the second dockerd (scripts/docker-up.sh 20.10)");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-up.sh");
        let out = Command::new(&script)
            .arg("20.10")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} 20.10 failed: {}",
                script.display(),
                text(&out.stderr)
            ));
        }
        let pid = b
            .pid()
            .ok_or_else(|| format!("the second dockerd started but {B_PIDFILE} names no pid"))?;
        Arc::new(SecondDaemon { started: Some(pid) })
    };
    *held = Arc::downgrade(&d);
    Ok(d)
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        let Some(pid) = self.started else {
            return;
        };
        eprintln!("{SUITE}: stopping the second dockerd it started (pid {pid})");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let gone = poll(Duration::from_secs(60), || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (!text(&cmdline).contains("dockerd")).then_some(())
        });
        if gone.is_none() {
            eprintln!("{SUITE}: dockerd {pid} did not stop within 60 s");
        }
    }
}

/// Removes what killed earlier runs left on `d` (the e2e lock is held, so
/// no other run is active): their plugins are enabled first (a release to
/// a disabled plugin makes dockerd retry), then their containers and
/// networks go, then the plugins.
fn remove_leftovers_on(d: &Dockerd) {
    let pid = std::process::id();
    let mine = format!("{PREFIX}{pid}-");
    let my_plugins = format!("{PLUGIN_PREFIX}{pid}-");
    let plugins: Vec<String> = d
        .ok(&["plugin", "ls", "--format", "{{.Name}}"])
        .lines()
        .filter(|n| n.starts_with(PLUGIN_PREFIX) && !n.starts_with(&my_plugins))
        .map(String::from)
        .collect();
    for p in &plugins {
        let _ = d.docker(&["plugin", "enable", p]);
    }
    let filter = format!("name={PREFIX}");
    let stale = |args: &[&str]| -> Vec<String> {
        let mut args = args.to_vec();
        args.extend(["--filter", &filter]);
        d.ok(&args)
            .lines()
            .filter(|n| n.starts_with(PREFIX) && !n.starts_with(&mine))
            .map(String::from)
            .collect()
    };
    let containers = stale(&["ps", "-a", "--format", "{{.Names}}"]);
    if !containers.is_empty() {
        eprintln!(
            "{SUITE}: removing leftover containers on {}: {containers:?}",
            d.label
        );
        let mut args = vec!["rm", "-f"];
        args.extend(containers.iter().map(String::as_str));
        let _ = d.docker(&args);
    }
    for n in stale(&["network", "ls", "--format", "{{.Name}}"]) {
        eprintln!("{SUITE}: removing leftover network {n} on {}", d.label);
        let _ = d.docker(&["network", "rm", &n]);
    }
    for p in &plugins {
        eprintln!("{SUITE}: removing leftover plugin {p} on {}", d.label);
        let _ = d.docker(&["plugin", "rm", "-f", p]);
    }
}

fn remove_leftovers_a(_suite: &str) {
    remove_leftovers_on(&Dockerd::a());
}

/// Whether this is the pass the suite runs on: `DOCKER_HOST` unset or the
/// default socket.
fn on_default_pass() -> bool {
    match std::env::var("DOCKER_HOST") {
        Err(_) => true,
        Ok(h) => h == DEFAULT_HOST || h == "unix:///run/docker.sock",
    }
}

// ---------------------------------------------------------------------------
// One host of the fleet: a dockerd, its plugin, what a scenario made there

struct Host {
    d: Dockerd,
    /// The plugin's HOST_ID.
    host_id: String,
    /// `gipam-e2e-fleet/p<pid>-<scenario>-<label>:latest`.
    plugin: String,
    id: String,
    socket: PathBuf,
    /// Names start with `gpfleet-<pid>-<scenario>-<label>`.
    tag: String,
    containers: Vec<String>,
    networks: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Host {
    /// Creates, configures and enables this host's plugin, and waits until
    /// it is in sync with the fleet (its heartbeat key is in etcd).
    fn start(d: Dockerd, scenario: &str, cluster: &Cluster, v4: &str, v6: &str) -> Host {
        let pid = std::process::id();
        let label = d.label;
        let plugin = format!("{PLUGIN_PREFIX}{pid}-{scenario}-{label}:latest");
        let dir = tempfile::tempdir().expect("temp dir");
        let bundle = dir.path().join("bundle");
        docker_env::run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(plugin_fixture::bundle_dir())
                .arg(&bundle),
        );
        // A unique rootfs: dockerd 20.10 refuses a layer it already holds.
        std::fs::write(
            bundle.join("rootfs/.gipam-e2e-id"),
            format!("{plugin} {:?}\n", std::time::SystemTime::now()),
        )
        .expect("write the bundle marker");
        d.ok(&["plugin", "create", &plugin, &bundle.to_string_lossy()]);
        let mut h = Host {
            host_id: format!("{scenario}-host-{label}"),
            plugin,
            id: String::new(),
            socket: PathBuf::new(),
            tag: format!("{PREFIX}{pid}-{scenario}-{label}"),
            containers: Vec::new(),
            networks: Vec::new(),
            _dir: dir,
            d,
        };
        let settings = [
            format!("V4={v4}"),
            format!("V6={v6}"),
            format!("ETCD_ENDPOINTS={}", cluster.endpoints_csv()),
            format!("HOST_ID={}", h.host_id),
        ];
        let mut args = vec!["plugin", "set", h.plugin.as_str()];
        args.extend(settings.iter().map(String::as_str));
        h.d.ok(&args);
        h.d.ok(&["plugin", "enable", &h.plugin]);
        h.id = h.d.ok(&["plugin", "inspect", "-f", "{{.Id}}", &h.plugin]);
        // Where the daemon puts its plugins' sockets (20.10: always
        // /run/docker/plugins, whatever its exec root).
        let candidates = [
            Path::new("/run/docker/plugins")
                .join(&h.id)
                .join("gipam.sock"),
            h.d.exec_root.join("plugins").join(&h.id).join("gipam.sock"),
        ];
        let mut last = String::new();
        let socket = poll(Duration::from_secs(30), || {
            candidates.iter().find_map(|s| {
                let mut c = Client::connect(s).map_err(|e| last = e.to_string()).ok()?;
                match c.call("Gipam.Status", &Value::Null) {
                    Ok((200, _)) => Some(s.clone()),
                    other => {
                        last = format!("{other:?}");
                        None
                    }
                }
            })
        });
        h.socket = socket.unwrap_or_else(|| {
            panic!(
                "{}: no answer on {candidates:?} within 30 s: {last}",
                h.plugin
            )
        });
        let alive = format!("{ETCD_PREFIX}alive/{}", h.host_id);
        let synced = poll(Duration::from_secs(30), || {
            etcd_get(cluster, &alive).into_iter().next().map(|_| ())
        });
        assert!(
            synced.is_some(),
            "{}: host {} never appeared in etcd ({alive})",
            h.plugin,
            h.host_id
        );
        h
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }

    fn try_network(&mut self, what: &str, extra: &[&str]) -> Result<String, String> {
        let name = self.name(what);
        self.networks.push(name.clone());
        let mut args = vec!["network", "create"];
        if !extra.contains(&"-d") {
            args.extend(["-d", "bridge"]);
        }
        args.extend(["--ipam-driver", &self.plugin]);
        args.extend_from_slice(extra);
        args.push(&name);
        let out = self.d.docker(&args);
        if out.status.success() {
            Ok(name)
        } else {
            Err(text(&out.stderr))
        }
    }

    /// `docker network create -d bridge --ipam-driver PLUGIN EXTRA... NAME`
    /// (without `-d bridge` when EXTRA names a driver).
    fn network(&mut self, what: &str, extra: &[&str]) -> String {
        self.try_network(what, extra).unwrap_or_else(|e| {
            panic!(
                "docker network create {what} {extra:?} on {}: {e}",
                self.d.label
            )
        })
    }

    /// A network create that must succeed within `timeout` (retried every
    /// 500 ms while it fails: what another host did may take a moment to
    /// reach this host's view of the fleet).
    fn network_within(&mut self, timeout: Duration, what: &str, extra: &[&str]) -> String {
        let mut last = String::new();
        let made = docker_env::poll_every(Duration::from_millis(500), timeout, || {
            match self.try_network(what, extra) {
                Ok(n) => Some(n),
                Err(e) => {
                    let name = self.name(what);
                    self.networks.retain(|n| n != &name);
                    last = e;
                    None
                }
            }
        });
        made.unwrap_or_else(|| {
            panic!(
                "docker network create {what} {extra:?} on {} still fails after {timeout:?}: {last}",
                self.d.label
            )
        })
    }

    /// A network create that must fail: its error, after checking that
    /// Docker has no such network.
    fn network_fails(&mut self, what: &str, extra: &[&str]) -> String {
        match self.try_network(what, extra) {
            Ok(n) => panic!(
                "docker network create {extra:?} on {} succeeded ({n}) but should fail",
                self.d.label
            ),
            Err(e) => {
                let name = self.name(what);
                assert!(
                    !self
                        .d
                        .docker(&["network", "inspect", &name])
                        .status
                        .success(),
                    "failed network {name} exists on {}",
                    self.d.label
                );
                self.networks.retain(|n| n != &name);
                e
            }
        }
    }

    /// `docker run -d --name NAME --network NET busybox sleep 600`.
    fn run(&mut self, what: &str, network: &str) -> String {
        let name = self.name(what);
        self.containers.push(name.clone());
        self.d.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            network,
            docker_env::IMAGE,
            "sleep",
            "600",
        ]);
        name
    }

    fn rm_containers(&mut self, names: &[String]) {
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(String::as_str));
        self.d.ok(&args);
        self.containers.retain(|c| !names.contains(c));
    }

    fn rm_network(&mut self, name: &str) {
        self.d.ok(&["network", "rm", name]);
        self.networks.retain(|n| n != name);
    }

    /// Every container, then every network, each removal must succeed.
    fn rm_all(&mut self) {
        let containers = self.containers.clone();
        if !containers.is_empty() {
            self.rm_containers(&containers);
        }
        for n in self.networks.clone().iter().rev() {
            self.rm_network(n);
        }
    }

    fn call(&self, method: &str) -> Value {
        let mut c = Client::connect(&self.socket)
            .unwrap_or_else(|e| panic!("{}: connect {}: {e}", self.plugin, self.socket.display()));
        match c.call(method, &Value::Null) {
            Ok((200, v)) => v,
            other => panic!("{}: /{method}: {other:?}", self.plugin),
        }
    }

    /// The subnets this host's gipam holds (`/Gipam.Status`).
    fn pools(&self) -> BTreeSet<IpNet> {
        let status = self.call("Gipam.Status");
        status["Pools"]
            .as_array()
            .unwrap_or_else(|| panic!("Pools is not a list: {status}"))
            .iter()
            .map(|p| net(field(p, "Pool")))
            .collect()
    }

    /// The addresses this host's gipam leases (`/Gipam.Leases`).
    fn leased(&self) -> BTreeSet<IpAddr> {
        let v = self.call("Gipam.Leases");
        v["Leases"]
            .as_array()
            .unwrap_or_else(|| panic!("Leases is not a list: {v}"))
            .iter()
            .map(|l| ip(field(l, "Address")))
            .collect()
    }

    /// The dockerd log lines about this plugin (its output included).
    fn log_lines(&self) -> Vec<String> {
        let short = self.id.get(..12).unwrap_or(&self.id).to_string();
        self.d
            .log()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|log| {
                log.lines()
                    .filter(|l| !self.id.is_empty() && (l.contains(&self.id) || l.contains(&short)))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.log_lines();
            let from = lines.len().saturating_sub(60);
            eprintln!(
                "--- dockerd {} log lines of plugin {} ({}):\n{}\n--- end",
                self.d.label,
                self.plugin,
                self.id,
                lines[from..].join("\n")
            );
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.containers.iter().map(String::as_str));
            let _ = self.d.docker(&args);
        }
        for n in self.networks.iter().rev() {
            let _ = self.d.docker(&["network", "rm", n]);
        }
        let _ = self.d.docker(&["plugin", "rm", "-f", &self.plugin]);
    }
}

// ---------------------------------------------------------------------------
// One scenario's fleet: etcd and the two hosts

struct Fleet {
    /// Host a (index 0) and host b (index 1). Dropped first: their
    /// networks are removed while the plugins and etcd still answer.
    hosts: Vec<Host>,
    /// Parents of macvlan networks, deleted after the networks.
    links: Vec<docker_env::VethPair>,
    cluster: Cluster,
    _second: Arc<SecondDaemon>,
}

impl Fleet {
    /// etcd, then each daemon's plugin on it; `None` when the suite is
    /// skipped (with the reason printed).
    fn start(scenario: &str, v4: &str, v6: &str) -> Option<Fleet> {
        if !on_default_pass() {
            eprintln!(
                "SKIP {SUITE}/{scenario}: DOCKER_HOST={}: this suite drives two daemons itself \
                 (the default socket's and 20.10's on {B_HOST}), so it runs once, on the pass of \
                 the engine on the default socket",
                std::env::var("DOCKER_HOST").unwrap_or_default()
            );
            return None;
        }
        if !docker_env::setup(SUITE, remove_leftovers_a) {
            return None;
        }
        let second = match second_daemon() {
            Ok(s) => s,
            Err(why) if std::env::var("GIPAM_SKIP_E2E").as_deref() == Ok("1") => {
                eprintln!("SKIP {SUITE}/{scenario}: no second dockerd ({why}); GIPAM_SKIP_E2E=1");
                return None;
            }
            Err(why) => panic!(
                "{SUITE} needs a second dockerd on {B_HOST}: {why}\n\
                 Run `make test`, or scripts/test-env.sh then scripts/docker-up.sh 20.10 \
                 (docs/testing.md); or set GIPAM_SKIP_E2E=1 to skip."
            ),
        };
        let (a, b) = (Dockerd::a(), Dockerd::b());
        static B_READY: OnceLock<()> = OnceLock::new();
        B_READY.get_or_init(|| {
            docker_env::ensure_image_at(Some(B_HOST));
            remove_leftovers_on(&b);
            eprintln!(
                "{SUITE}: host a: dockerd {} on {}; host b: dockerd {} on {}",
                a.answers().unwrap_or_default(),
                a.host,
                b.answers().unwrap_or_default(),
                b.host
            );
        });
        let cluster = Cluster::start(3);
        let ha = Host::start(a, scenario, &cluster, v4, v6);
        let hb = Host::start(b, scenario, &cluster, v4, v6);
        Some(Fleet {
            hosts: vec![ha, hb],
            links: Vec::new(),
            cluster,
            _second: second,
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dump = etcd_get(&self.cluster, ETCD_PREFIX)
                .into_iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- etcd {ETCD_PREFIX}:\n{dump}\n--- end");
        }
    }
}

// ---------------------------------------------------------------------------
// What etcd holds

/// `etcdctl get --prefix PREFIX`: (key, value as JSON, or a JSON string
/// when it is not JSON).
fn etcd_get(cluster: &Cluster, prefix: &str) -> Vec<(String, Value)> {
    let out = cluster
        .etcdctl(&["get", "--prefix", prefix])
        .unwrap_or_else(|e| panic!("etcdctl get --prefix {prefix}: {e}"));
    // Key and value lines alternate (an empty value is an empty line).
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout)
        .expect("etcdctl prints UTF-8")
        .lines()
        .collect();
    lines
        .chunks(2)
        .map(|kv| {
            let v = kv.get(1).copied().unwrap_or("");
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
            (kv[0].to_string(), value)
        })
        .collect()
}

/// The blocks claimed in etcd: subnet -> (host, shared network).
fn etcd_blocks(cluster: &Cluster) -> BTreeMap<IpNet, (String, Option<String>)> {
    etcd_get(cluster, &format!("{ETCD_PREFIX}blocks/"))
        .into_iter()
        .map(|(k, v)| {
            (
                v["subnet"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("block {k} has no subnet: {v}")),
                (
                    field(&v, "host").to_string(),
                    v["shared"].as_str().map(String::from),
                ),
            )
        })
        .collect()
}

/// The record of shared network `name`, if any.
fn etcd_shared(cluster: &Cluster, name: &str) -> Option<Value> {
    let key = format!("{ETCD_PREFIX}shared/{name}");
    etcd_get(cluster, &key)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The holders a shared network's record lists, sorted.
fn holders(record: &Value) -> Vec<String> {
    let mut h: Vec<String> = record["holders"]
        .as_array()
        .unwrap_or_else(|| panic!("holders is not a list: {record}"))
        .iter()
        .map(|h| h.as_str().expect("a holder is a string").to_string())
        .collect();
    h.sort();
    h
}

/// The addresses of shared network `name` claimed in etcd: address -> host.
fn etcd_addrs(cluster: &Cluster, name: &str) -> BTreeMap<IpAddr, String> {
    etcd_get(cluster, &format!("{ETCD_PREFIX}addrs/{name}/"))
        .into_iter()
        .map(|(_, v)| (ip(field(&v, "address")), field(&v, "host").to_string()))
        .collect()
}

/// Polls until `f` gives `want` (within [`TIDY`]); panics with the last
/// value otherwise.
fn eventually<T: PartialEq + std::fmt::Debug>(what: &str, want: T, mut f: impl FnMut() -> T) {
    let mut last = None;
    let ok = poll(TIDY, || {
        let v = f();
        let done = v == want;
        last = Some(v);
        done.then_some(())
    });
    assert!(
        ok.is_some(),
        "{what}: want {want:?} within {TIDY:?}, last {last:?}"
    );
}

// ---------------------------------------------------------------------------
// The scenarios

/// f1. Networks created on both daemons without `--subnet`, interleaved,
///     get disjoint blocks of the one main pool, each claimed in etcd by
///     the host that holds it; an explicit `--subnet` the other host holds
///     is refused with gipam's error naming that host; removing the
///     networks frees every block in etcd.
#[test]
fn f1_automatic_blocks_are_disjoint_across_daemons_and_a_held_subnet_is_refused() {
    let Some(mut f) = Fleet::start("f1", "10.196.0.0/16", "2001:db8:e196::/48") else {
        return;
    };
    let main = net("10.196.0.0/16");
    // (host index, network, subnet, gateway), in creation order.
    let mut nets: Vec<(usize, String, IpNet, IpAddr)> = Vec::new();
    for i in 1..=3 {
        for h in 0..2 {
            let n = f.hosts[h].network(&format!("n{i}"), &[]);
            let (subnet, gw) = f.hosts[h].d.subnet_gateway(&n);
            nets.push((h, n, subnet, gw));
        }
    }
    for (h, n, subnet, gw) in &nets {
        assert!(
            main.contains(subnet) && subnet.prefix_len() == 24,
            "{n} on host {h}: a /24 of {main}: {subnet}"
        );
        assert!(subnet.contains(gw), "{n}: gateway {gw} outside {subnet}");
    }
    for (i, (_, na, a, _)) in nets.iter().enumerate() {
        for (_, nb, b, _) in &nets[i + 1..] {
            assert!(
                !a.contains(b) && !b.contains(a),
                "{na} ({a}) and {nb} ({b}) overlap"
            );
        }
    }
    let held_by = |h: usize| -> BTreeSet<IpNet> {
        nets.iter()
            .filter(|n| n.0 == h)
            .map(|n| n.2)
            .collect::<BTreeSet<_>>()
    };
    for h in 0..2 {
        assert_eq!(
            f.hosts[h].pools(),
            held_by(h),
            "host {h}'s gipam holds its networks' blocks"
        );
    }
    let want: BTreeMap<IpNet, (String, Option<String>)> = nets
        .iter()
        .map(|(h, _, subnet, _)| (*subnet, (f.hosts[*h].host_id.clone(), None)))
        .collect();
    assert_eq!(
        etcd_blocks(&f.cluster),
        want,
        "etcd: each block claimed by its host"
    );

    // A container on each host's first network gets an address of its block.
    for (h, n, subnet, gw) in nets[..2].iter().cloned() {
        let c = f.hosts[h].run("c", &n);
        let addr = f.hosts[h].d.address(&c, &n);
        assert_eq!(addr.trunc(), subnet, "{c}: {addr}");
        assert_ne!(addr.addr(), gw, "{c}");
    }

    // An explicit subnet the other host holds is refused, naming it.
    for (asker, holder) in [(0, 1), (1, 0)] {
        let (_, _, taken, _) = nets.iter().find(|n| n.0 == holder).cloned().unwrap();
        let taken = taken.to_string();
        let err = f.hosts[asker].network_fails("taken", &["--subnet", &taken]);
        let holder_id = format!("host {}", f.hosts[holder].host_id);
        assert_mentions(&err, &[&taken, &holder_id, "holds in the fleet"]);
    }
    // So is one inside a block the other host holds.
    let (_, _, b_block, _) = nets[1].clone();
    let inner = IpNet::new(b_block.addr(), 26).unwrap().trunc().to_string();
    let err = f.hosts[0].network_fails("inner", &["--subnet", &inner]);
    assert_mentions(&err, &[&inner, &f.hosts[1].host_id, "holds in the fleet"]);
    // An explicit subnet nobody holds: b takes it, then a is refused it.
    let free = "10.196.200.0/24";
    let nx = f.hosts[1].network("explicit", &["--subnet", free]);
    assert_eq!(f.hosts[1].d.subnet(&nx), net(free));
    assert_eq!(
        etcd_blocks(&f.cluster).get(&net(free)),
        Some(&(f.hosts[1].host_id.clone(), None)),
        "etcd: {free} is b's"
    );
    let err = f.hosts[0].network_fails("explicit", &["--subnet", free]);
    assert_mentions(&err, &[free, &f.hosts[1].host_id, "holds in the fleet"]);
    assert!(
        !f.hosts[0].pools().contains(&net(free)),
        "a refused pool is not held"
    );

    // Removing everything frees every block, on both hosts and in etcd.
    for h in 0..2 {
        f.hosts[h].rm_all();
        assert_eq!(
            f.hosts[h].pools(),
            BTreeSet::new(),
            "host {h} holds nothing"
        );
    }
    eventually(
        "etcd blocks after every network is gone",
        BTreeMap::new(),
        || etcd_blocks(&f.cluster),
    );
}

/// f2. A `shared=NAME` network on both daemons has the same subnet and
///     gateway on both; containers on both get unique addresses of it,
///     each claimed in etcd by its host. Removing it on one daemon keeps it
///     on the other (its containers keep their addresses, a new container
///     there works); removing it on the last frees its block, record and
///     addresses in etcd.
#[test]
fn f2_a_shared_network_spans_both_daemons() {
    let Some(mut f) = Fleet::start("f2", "10.197.0.0/16", "2001:db8:e197::/48") else {
        return;
    };
    let main = net("10.197.0.0/16");
    let name = "web";
    let opt = format!("shared={name}");
    // macvlan, not bridge: dockerd 20.10 checks an automatic pool against
    // the host's routes and asks again when one overlaps (releasing the
    // first), and on this one machine host a's bridge for the subnet would
    // be such a route. A veth pair is the segment: one end each.
    let pair = docker_env::VethPair::new(&format!("f{}", std::process::id()));
    let [pa, pb] = [
        format!("parent={}", pair.ends[0]),
        format!("parent={}", pair.ends[1]),
    ];
    f.links.push(pair);
    let na = f.hosts[0].network("shared", &["-d", "macvlan", "-o", &pa, "--ipam-opt", &opt]);
    let nb = f.hosts[1].network("shared", &["-d", "macvlan", "-o", &pb, "--ipam-opt", &opt]);
    let (subnet, gw) = f.hosts[0].d.subnet_gateway(&na);
    assert_eq!(
        f.hosts[1].d.subnet_gateway(&nb),
        (subnet, gw),
        "the same subnet and gateway on both daemons"
    );
    assert!(main.contains(&subnet), "{subnet} is a block of {main}");
    assert!(subnet.contains(&gw), "gateway {gw} in {subnet}");
    let (ida, idb) = (f.hosts[0].host_id.clone(), f.hosts[1].host_id.clone());
    // etcd: the network's one block (its creator's), its record.
    let blocks = etcd_blocks(&f.cluster);
    assert_eq!(
        blocks,
        [(subnet, (ida.clone(), Some(name.to_string())))].into(),
        "etcd: one block, the shared network's"
    );
    let record = etcd_shared(&f.cluster, name).expect("etcd has the shared record");
    assert_eq!(record["subnet"], subnet.to_string(), "{record}");
    assert_eq!(record["gateway"], gw.to_string(), "{record}");
    assert_eq!(holders(&record), vec![ida.clone(), idb.clone()], "{record}");

    // Three containers on each daemon, interleaved.
    let mut on: [Vec<(String, IpAddr)>; 2] = [Vec::new(), Vec::new()];
    for i in 1..=3 {
        for (h, n) in [(0, &na), (1, &nb)] {
            let c = f.hosts[h].run(&format!("c{i}"), n);
            let addr = f.hosts[h].d.address(&c, n);
            assert_eq!(addr.trunc(), subnet, "{c}: {addr} of the shared subnet");
            assert_ne!(addr.addr(), gw, "{c} is not given the gateway");
            on[h].push((c, addr.addr()));
        }
    }
    let addrs_of =
        |list: &[(String, IpAddr)]| -> BTreeSet<IpAddr> { list.iter().map(|(_, a)| *a).collect() };
    let all: BTreeSet<IpAddr> = addrs_of(&on[0]).union(&addrs_of(&on[1])).copied().collect();
    assert_eq!(all.len(), 6, "six containers, six addresses: {on:?}");
    let claims = |lists: &[(&[(String, IpAddr)], &str)]| -> BTreeMap<IpAddr, String> {
        lists
            .iter()
            .flat_map(|(l, host)| l.iter().map(|(_, a)| (*a, host.to_string())))
            .collect()
    };
    assert_eq!(
        etcd_addrs(&f.cluster, name),
        claims(&[(&on[0], &ida), (&on[1], &idb)]),
        "etcd: each container's address claimed by its host"
    );
    for (h, mine) in on.iter().enumerate() {
        let mut want = addrs_of(mine);
        want.insert(gw);
        assert_eq!(
            f.hosts[h].leased(),
            want,
            "host {h} leases the gateway and its own containers' addresses"
        );
        assert_eq!(
            f.hosts[h].pools(),
            [subnet].into(),
            "host {h} holds the subnet"
        );
    }

    // Gone on a: b keeps the network, its containers their addresses.
    let gone: Vec<String> = on[0].iter().map(|(c, _)| c.clone()).collect();
    f.hosts[0].rm_containers(&gone);
    f.hosts[0].rm_network(&na);
    assert_eq!(f.hosts[0].pools(), BTreeSet::new(), "a holds nothing");
    assert_eq!(
        f.hosts[1].d.subnet_gateway(&nb),
        (subnet, gw),
        "b still has the network"
    );
    for (c, a) in &on[1] {
        assert_eq!(
            f.hosts[1].d.address(c, &nb).addr(),
            *a,
            "{c} keeps its address"
        );
    }
    eventually(
        "etcd: the shared record's holders",
        vec![idb.clone()],
        || {
            etcd_shared(&f.cluster, name)
                .map(|r| holders(&r))
                .unwrap_or_default()
        },
    );
    eventually(
        "etcd: the addresses claimed after a's are released",
        claims(&[(&on[1], &idb)]),
        || etcd_addrs(&f.cluster, name),
    );
    assert_eq!(
        etcd_blocks(&f.cluster).keys().copied().collect::<Vec<_>>(),
        vec![subnet],
        "the block stays while b holds the network"
    );
    // A new container on b works, with an address of the subnet no one
    // else has.
    let late = f.hosts[1].run("late", &nb);
    let la = f.hosts[1].d.address(&late, &nb);
    assert_eq!(la.trunc(), subnet, "{late}: {la}");
    assert!(
        la.addr() != gw && !addrs_of(&on[1]).contains(&la.addr()),
        "{late}: {la} is unique"
    );
    assert_eq!(
        etcd_addrs(&f.cluster, name).get(&la.addr()),
        Some(&idb),
        "etcd: {la} is b's"
    );
    // The subnet is still the shared network's: a plain network on a
    // cannot have it.
    let err = f.hosts[0].network_fails("clash", &["--subnet", &subnet.to_string()]);
    assert_mentions(
        &err,
        &[
            &subnet.to_string(),
            &format!("shared network {name}"),
            "holds in the fleet",
        ],
    );

    // Gone on b, the last holder: etcd forgets the network.
    f.hosts[1].rm_all();
    assert_eq!(f.hosts[1].pools(), BTreeSet::new(), "b holds nothing");
    eventually("etcd: the shared record", None, || {
        etcd_shared(&f.cluster, name)
    });
    eventually("etcd: the shared addresses", BTreeMap::new(), || {
        etcd_addrs(&f.cluster, name)
    });
    eventually("etcd: the blocks", BTreeMap::new(), || {
        etcd_blocks(&f.cluster)
    });
    // Its subnet is free again for every host (once its view has caught
    // up with etcd): a plain network on each.
    for h in 0..2 {
        let n = f.hosts[h].network_within(TIDY, "reuse", &["--subnet", &subnet.to_string()]);
        assert_eq!(f.hosts[h].d.subnet(&n), subnet, "host {h} reuses {subnet}");
        f.hosts[h].rm_network(&n);
        eventually("etcd: the blocks", BTreeMap::new(), || {
            etcd_blocks(&f.cluster)
        });
    }
}

/// f3. A shared network that only host b held, removed there, frees its
///     subnet for host a too: a, which never joined it but saw it in the
///     fleet (and refused its subnet), can then create a network on it.
#[test]
fn f3_a_shared_network_removed_on_its_last_holder_frees_its_subnet_everywhere() {
    let Some(mut f) = Fleet::start("f3", "10.198.0.0/16", "2001:db8:e198::/48") else {
        return;
    };
    let name = "solo";
    let nb = f.hosts[1].network("shared", &["--ipam-opt", &format!("shared={name}")]);
    let (subnet, gw) = f.hosts[1].d.subnet_gateway(&nb);
    let record = etcd_shared(&f.cluster, name).expect("etcd has the shared record");
    assert_eq!(record["subnet"], subnet.to_string(), "{record}");
    assert_eq!(record["gateway"], gw.to_string(), "{record}");
    assert_eq!(
        holders(&record),
        vec![f.hosts[1].host_id.clone()],
        "{record}"
    );
    let c = f.hosts[1].run("c", &nb);
    assert_eq!(f.hosts[1].d.address(&c, &nb).trunc(), subnet);
    // a sees the network in the fleet: its subnet is refused there.
    let sub = subnet.to_string();
    let held = format!("shared network {name}");
    let mut last = String::new();
    let refused = poll(TIDY, || {
        last = f.hosts[0].network_fails("early", &["--subnet", &sub]);
        last.contains(&held).then_some(())
    });
    assert!(refused.is_some(), "a refuses {sub} naming {held}: {last}");

    f.hosts[1].rm_all();
    eventually("etcd: the shared record", None, || {
        etcd_shared(&f.cluster, name)
    });
    eventually("etcd: the blocks", BTreeMap::new(), || {
        etcd_blocks(&f.cluster)
    });
    let n = f.hosts[0].network_within(TIDY, "reuse", &["--subnet", &sub]);
    assert_eq!(f.hosts[0].d.subnet(&n), subnet, "a uses the freed {subnet}");
    assert_eq!(
        etcd_blocks(&f.cluster),
        [(subnet, (f.hosts[0].host_id.clone(), None))].into(),
        "etcd: the subnet is a's block now"
    );
    f.hosts[0].rm_all();
    eventually("etcd: the blocks", BTreeMap::new(), || {
        etcd_blocks(&f.cluster)
    });
}
