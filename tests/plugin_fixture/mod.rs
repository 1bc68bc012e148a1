//! Shared fixture of the managed-plugin end-to-end tests (`e2e_plugin.rs`,
//! `e2e_daemon_restart.rs`): gipam installed in the real dockerd as a v2
//! plugin from the bundle `make plugin` builds (`plugin/`), plus the docker
//! CLI helpers the scenarios assert with.
//!
//! Every scenario gets its own plugin, `gipam-e2e/p<pid>-<scenario>:latest`,
//! created from a private copy of the bundle: dockerd 20.10 refuses
//! `docker plugin create` of a rootfs whose layer another plugin already
//! holds (`content sha256:…: already exists`), so each copy carries a
//! unique marker file. Containers, networks and compose projects are named
//! `gpe2e-<pid>-<scenario>-…` (not `gipam-e2e-…`, which the legacy e2e suite
//! treats as its own leftovers). Everything a scenario made is removed by
//! [`Plugin`]'s Drop, also when the scenario panics.
//!
//! The docker e2e test processes of this repository (this fixture and
//! `e2e_docker.rs`) are serialised with one lock file, so two runs never
//! share a dockerd at the same time (and the dockerd restart scenario never
//! pulls the daemon away from another run); what a killed earlier run left
//! behind is removed first.
//!
//! Without a Docker engine every scenario panics with what to do, unless
//! `GIPAM_SKIP_E2E=1`, in which case it prints a skip line and passes.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;

use crate::common::Client;

/// The test image: busybox from /bin/busybox, built once.
pub const IMAGE: &str = "gipam-test/busybox:latest";
/// Containers, networks and compose projects start with this.
pub const PREFIX: &str = "gpe2e-";
/// Plugin names start with this (then the pid).
pub const PLUGIN_PREFIX: &str = "gipam-e2e/p";
/// Shared with `e2e_docker.rs`: one docker e2e test process at a time.
const LOCK_FILE: &str = "/tmp/gipam-e2e.lock";
/// Registry processes of this run, to stop them if the run is killed.
const REGISTRY_PIDS: &str = "/tmp/gipam-e2e-plugin-registries";

// ---------------------------------------------------------------------------
// The docker CLI

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI runs")
}

/// Runs docker and returns its stdout; panics with stderr on failure.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs docker with `input` on stdin (answers to the CLI's prompts).
pub fn docker_input(args: &[&str], input: &str) -> Output {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the docker CLI runs");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("wait for the docker CLI")
}

/// `docker run -d --name NAME --network NET EXTRA... IMAGE sleep 600`.
pub fn docker_run(name: &str, net: &str, extra: &[&str]) -> Result<(), String> {
    let mut args = vec!["run", "-d", "--name", name, "--network", net];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "sleep", "600"]);
    let out = docker(&args);
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out.stderr))
    }
}

pub fn parse_json(s: &str, what: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {s}"))
}

/// `docker network inspect -f '{{json .IPAM.Config}}'`.
pub fn ipam_config(net: &str) -> Vec<Value> {
    let out = docker_ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", net]);
    match parse_json(&out, "IPAM.Config") {
        Value::Array(v) => v,
        other => panic!("IPAM.Config of {net} is not a list: {other}"),
    }
}

/// The IPAM.Config entries of one family.
pub fn configs_of(cfg: &[Value], v6: bool) -> Vec<&Value> {
    cfg.iter()
        .filter(|c| {
            c["Subnet"]
                .as_str()
                .and_then(|s| s.parse::<IpNet>().ok())
                .is_some_and(|n| matches!(n, IpNet::V6(_)) == v6)
        })
        .collect()
}

/// The IPAM.Config entry of one family (exactly one must exist).
pub fn config_of(cfg: &[Value], v6: bool) -> &Value {
    let list = configs_of(cfg, v6);
    assert_eq!(
        list.len(),
        1,
        "want one IPv{} entry in {cfg:?}",
        if v6 { 6 } else { 4 }
    );
    list[0]
}

/// `docker inspect` of a container's endpoint on one network.
pub fn endpoint(container: &str, net: &str) -> Value {
    let out = docker_ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        container,
    ]);
    let v = parse_json(&out, "NetworkSettings.Networks");
    let ep = v[net].clone();
    assert!(ep.is_object(), "{container} has no endpoint on {net}: {v}");
    ep
}

/// The global addresses of eth0, as `ip addr` inside the container shows them.
pub fn addrs_inside(container: &str) -> Vec<IpNet> {
    let out = docker_ok(&["exec", container, "ip", "addr", "show", "dev", "eth0"]);
    out.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("inet ") || l.starts_with("inet6 "))
        .filter(|l| l.contains("scope global"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|a| {
            a.parse::<IpNet>()
                .unwrap_or_else(|e| panic!("bad address {a} in ip addr ({e}): {out}"))
        })
        .collect()
}

pub fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a CIDR: {e}"))
}

pub fn ip(s: &str) -> IpAddr {
    let a = s.split_once('/').map_or(s, |(a, _)| a);
    a.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not an address: {e}"))
}

pub fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// An address as Docker reports it; 20.10 reports some with a `/len`.
pub fn addr_field(v: &Value, key: &str) -> IpAddr {
    ip(field(v, key))
}

/// Checks `container`'s endpoint on `network`: the addresses Docker
/// reports (with their prefix lengths) and exactly those on eth0 inside.
pub fn assert_endpoint(container: &str, network: &str, v4: (IpAddr, u8), v6: Option<(IpAddr, u8)>) {
    let ep = endpoint(container, network);
    assert_eq!(addr_field(&ep, "IPAddress"), v4.0, "{container}: {ep}");
    assert_eq!(ep["IPPrefixLen"], v4.1, "{container}: {ep}");
    match v6 {
        Some((a, len)) => {
            assert_eq!(addr_field(&ep, "GlobalIPv6Address"), a, "{container}: {ep}");
            assert_eq!(ep["GlobalIPv6PrefixLen"], len, "{container}: {ep}");
        }
        None => assert_eq!(ep["GlobalIPv6Address"], "", "{container}: {ep}"),
    }
    let mut want = vec![IpNet::new(v4.0, v4.1).expect("prefix length")];
    if let Some((a, len)) = v6 {
        want.push(IpNet::new(a, len).expect("prefix length"));
    }
    let inside: HashSet<IpNet> = addrs_inside(container).into_iter().collect();
    assert_eq!(
        inside,
        want.into_iter().collect::<HashSet<_>>(),
        "global addresses of eth0 in {container}"
    );
}

/// The (v4, v6) addresses Docker gave `container` on `network`, after
/// checking that eth0 inside has exactly them.
pub fn endpoint_addrs(container: &str, network: &str) -> (IpAddr, Option<IpAddr>) {
    let ep = endpoint(container, network);
    let a4 = addr_field(&ep, "IPAddress");
    let len4 = ep["IPPrefixLen"].as_u64().expect("IPPrefixLen") as u8;
    let v6 = match field(&ep, "GlobalIPv6Address") {
        "" => None,
        s => Some((
            ip(s),
            ep["GlobalIPv6PrefixLen"]
                .as_u64()
                .expect("GlobalIPv6PrefixLen") as u8,
        )),
    };
    assert_endpoint(container, network, (a4, len4), v6);
    (a4, v6.map(|(a, _)| a))
}

/// Runs `f` over `items` on `threads` threads; results in input order.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                let f = &f;
                s.spawn(move || c.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}

/// Polls `f` every 100 ms until it returns Some or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// Once per test process: dockerd is there, the image exists, no other
// docker e2e run is active, nothing is left from an earlier one.

static SETUP: OnceLock<Option<File>> = OnceLock::new();

/// `false`: skip (no dockerd and GIPAM_SKIP_E2E=1).
pub fn setup(suite: &str) -> bool {
    SETUP
        .get_or_init(|| {
            if let Err(why) = docker_info() {
                if std::env::var("GIPAM_SKIP_E2E").as_deref() == Ok("1") {
                    eprintln!("SKIP {suite}: no Docker engine ({why}); GIPAM_SKIP_E2E=1");
                    return None;
                }
                panic!(
                    "{suite} needs a running Docker engine, but `docker info` failed: {why}\n\
                     Run `make test` (it installs and starts dockerd), or start one as root: \
                     `nohup dockerd >/var/log/gipam-test-dockerd.log 2>&1 &` and wait until \
                     `docker info` answers (docs/testing.md); or set GIPAM_SKIP_E2E=1 to skip."
                );
            }
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(LOCK_FILE)
                .expect("open the e2e lock file");
            if lock.try_lock().is_err() {
                eprintln!("{suite}: waiting for another docker e2e run ({LOCK_FILE})");
                lock.lock().expect("take the e2e lock");
            }
            ensure_image();
            remove_leftovers(suite);
            Some(lock)
        })
        .is_some()
}

/// `docker info` answers with a server version.
pub fn docker_info() -> Result<String, String> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    let version = text(&out.stdout);
    if out.status.success() && !version.is_empty() {
        Ok(version)
    } else {
        Err(text(&out.stderr))
    }
}

/// The daemon's API version as (major, minor), e.g. (1, 41) for 20.10.
pub fn server_api_version() -> (u32, u32) {
    let v = docker_ok(&["version", "-f", "{{.Server.APIVersion}}"]);
    let (a, b) = v
        .split_once('.')
        .unwrap_or_else(|| panic!("API version {v:?}"));
    (
        a.parse().expect("API major version"),
        b.parse().expect("API minor version"),
    )
}

/// Builds the busybox image from /bin/busybox unless it exists.
fn ensure_image() {
    if docker(&["image", "inspect", IMAGE]).status.success() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir for the image root");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("create bin/");
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("copy /bin/busybox (apt-get install busybox-static)");
    for applet in ["sh", "ip", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet symlink");
    }
    let out = Command::new("sh")
        .args(["-c", "tar -C \"$1\" -c . | docker import - \"$2\"", "sh"])
        .arg(dir.path())
        .arg(IMAGE)
        .output()
        .expect("run tar | docker import");
    assert!(
        out.status.success(),
        "docker import of {IMAGE} failed: {}",
        text(&out.stderr)
    );
}

fn my_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

fn my_plugin_prefix() -> String {
    format!("{PLUGIN_PREFIX}{}-", std::process::id())
}

/// Removes what killed earlier runs left (we hold the lock: no other run
/// is active): containers, then networks (their plugin still answers),
/// then plugins, and registry processes they started.
fn remove_leftovers(suite: &str) {
    let (mine, my_plugins) = (my_prefix(), my_plugin_prefix());
    let filter = format!("name={PREFIX}");
    let stale = |out: String| -> Vec<String> {
        out.lines()
            .filter(|n| n.starts_with(PREFIX) && !n.starts_with(&mine))
            .map(String::from)
            .collect()
    };
    let containers = stale(docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}}",
    ]));
    if !containers.is_empty() {
        eprintln!("{suite}: removing leftover containers {containers:?}");
        let mut args = vec!["rm", "-f"];
        args.extend(containers.iter().map(String::as_str));
        let _ = docker(&args);
    }
    let plugins: Vec<String> = docker_ok(&["plugin", "ls", "--format", "{{.Name}}"])
        .lines()
        .filter(|n| n.contains(PLUGIN_PREFIX) && !n.contains(&my_plugins))
        .map(String::from)
        .collect();
    // A release to a disabled plugin makes dockerd retry for ~15 s.
    for p in &plugins {
        let _ = docker(&["plugin", "enable", p]);
    }
    for n in stale(docker_ok(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ])) {
        eprintln!("{suite}: removing leftover network {n}");
        let _ = docker(&["network", "rm", &n]);
    }
    for p in &plugins {
        eprintln!("{suite}: removing leftover plugin {p}");
        let _ = docker(&["plugin", "rm", "-f", p]);
    }
    if let Ok(list) = std::fs::read_to_string(REGISTRY_PIDS) {
        for pid in list.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if text(&cmdline).starts_with("docker-registry\0serve") {
                eprintln!("{suite}: stopping leftover registry {pid}");
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
        let _ = std::fs::remove_file(REGISTRY_PIDS);
    }
}

/// The bundle `make plugin` builds.
pub fn bundle_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin");
    for f in ["config.json", "rootfs/gipam", "rootfs/run/docker/plugins"] {
        assert!(
            dir.join(f).exists(),
            "{} is missing: run `make plugin` first",
            dir.join(f).display()
        );
    }
    dir
}

/// The file dockerd writes its log (and its plugins' output) to.
pub fn dockerd_log() -> Option<PathBuf> {
    let pid = std::fs::read_to_string("/var/run/docker.pid").ok()?;
    std::fs::read_link(format!("/proc/{}/fd/2", pid.trim())).ok()
}

// ---------------------------------------------------------------------------
// One scenario's plugin and everything made with it

pub struct Plugin {
    /// `gipam-e2e/p<pid>-<scenario>:latest`.
    pub name: String,
    /// The 64-hex plugin id (stays the same across upgrades).
    pub id: String,
    /// The plugin's socket on the host.
    pub socket: PathBuf,
    /// `gpe2e-<pid>-<scenario>`: prefix of every container and network.
    pub tag: String,
    /// Bundle copies, registry storage, compose files.
    pub dir: tempfile::TempDir,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    /// Other plugin references to `rm -f` (e.g. a pushed bundle).
    pub plugins: Vec<String>,
    /// (project, file) of compose projects to take down.
    pub compose: Vec<(String, PathBuf)>,
    registry: Option<Child>,
}

impl Plugin {
    /// Creates, configures (`KEY=VALUE` settings) and enables the plugin of
    /// `scenario`; `None` when the suite is skipped.
    pub fn start(suite: &str, scenario: &str, settings: &[&str]) -> Option<Plugin> {
        if !setup(suite) {
            return None;
        }
        let pid = std::process::id();
        let mut p = Plugin {
            name: format!("{PLUGIN_PREFIX}{pid}-{scenario}:latest"),
            id: String::new(),
            socket: PathBuf::new(),
            tag: format!("{PREFIX}{pid}-{scenario}"),
            dir: tempfile::tempdir().expect("temp dir"),
            containers: Vec::new(),
            networks: Vec::new(),
            plugins: Vec::new(),
            compose: Vec::new(),
            registry: None,
        };
        let bundle = p.copy_bundle("bundle", |_| {});
        let name = p.name.clone();
        p.plugins.push(name.clone());
        let bundle = bundle.to_string_lossy().into_owned();
        docker_ok(&["plugin", "create", &name, &bundle]);
        if !settings.is_empty() {
            let mut args = vec!["plugin", "set", name.as_str()];
            args.extend_from_slice(settings);
            docker_ok(&args);
        }
        docker_ok(&["plugin", "enable", &name]);
        p.id = docker_ok(&["plugin", "inspect", "-f", "{{.Id}}", &name]);
        p.socket = Path::new("/run/docker/plugins")
            .join(&p.id)
            .join("gipam.sock");
        p.wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = p.status();
        assert_eq!(status["Leases"], 0, "a new plugin holds nothing: {status}");
        Some(p)
    }

    /// Copies the bundle to `dir/<label>` with a marker file that makes
    /// its rootfs unique, then lets `edit` change the config.
    pub fn copy_bundle(&self, label: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let src = bundle_dir();
        let dst = self.dir.path().join(label);
        let out = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&dst)
            .output()
            .expect("run cp");
        assert!(out.status.success(), "cp -a: {}", text(&out.stderr));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::fs::write(
            dst.join("rootfs/.gipam-e2e-id"),
            format!("{} {label} {nanos}\n", self.name),
        )
        .expect("write the bundle marker");
        let path = dst.join("config.json");
        let mut config = parse_json(
            &std::fs::read_to_string(&path).expect("read config.json"),
            "config.json",
        );
        edit(&mut config);
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&config).expect("encode config.json"),
        )
        .expect("write config.json");
        dst
    }

    /// Waits until the plugin answers /Gipam.Status on its socket.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let mut last = String::new();
        poll(timeout, || {
            match self.try_call("Gipam.Status", &Value::Null) {
                Ok((200, _)) => Some(()),
                Ok((status, body)) => {
                    panic!(
                        "{}: /Gipam.Status answered {status} {body}: plugin/rootfs/gipam is older \
                     than the source; rebuild it with `make plugin`",
                        self.name
                    )
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        })
        .ok_or_else(|| {
            format!(
                "no answer on {} within {timeout:?}: {last}",
                self.socket.display()
            )
        })
    }

    pub fn try_call(&self, method: &str, body: &Value) -> Result<(u16, Value), String> {
        let mut c = Client::connect(&self.socket).map_err(|e| format!("connect: {e}"))?;
        c.call(method, body).map_err(|e| format!("{method}: {e}"))
    }

    /// `/Gipam.Status`: {"Pools":[{"PoolID","Pool","Auto","Leases"}],"Leases":N}.
    pub fn status(&self) -> Value {
        match self.try_call("Gipam.Status", &Value::Null) {
            Ok((200, v)) => v,
            other => panic!("{}: /Gipam.Status: {other:?}", self.name),
        }
    }

    /// The held pools (their `Pool` CIDRs).
    pub fn pools(&self) -> BTreeSet<IpNet> {
        let status = self.status();
        status["Pools"]
            .as_array()
            .unwrap_or_else(|| panic!("Pools is not a list: {status}"))
            .iter()
            .map(|p| net(field(p, "Pool")))
            .collect()
    }

    /// Every lease as (PoolID, address, gateway flag).
    pub fn leases(&self) -> BTreeSet<(String, IpAddr, bool)> {
        let v = match self.try_call("Gipam.Leases", &Value::Null) {
            Ok((200, v)) => v,
            other => panic!("{}: /Gipam.Leases: {other:?}", self.name),
        };
        v["Leases"]
            .as_array()
            .unwrap_or_else(|| panic!("Leases is not a list: {v}"))
            .iter()
            .map(|l| {
                (
                    field(l, "PoolID").to_string(),
                    ip(field(l, "Address")),
                    l["Gateway"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    /// The leased addresses.
    pub fn leased(&self) -> BTreeSet<IpAddr> {
        self.leases().into_iter().map(|(_, a, _)| a).collect()
    }

    /// gipam holds nothing.
    pub fn assert_empty(&self) {
        let status = self.status();
        assert_eq!(status["Pools"], serde_json::json!([]), "no pools: {status}");
        assert_eq!(status["Leases"], 0, "no leases: {status}");
    }

    /// The pid of the plugin process: the `/gipam` child of the
    /// containerd shim that runs this plugin id.
    pub fn pid(&self) -> Option<u32> {
        let procs = std::fs::read_dir("/proc").ok()?;
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.split(|b| *b == 0).next() != Some(b"/gipam".as_slice()) {
                continue;
            }
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let Some(ppid) = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .map(str::trim)
            else {
                continue;
            };
            let parent = std::fs::read(format!("/proc/{ppid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = parent.split(|b| *b == 0).collect();
            let shim = args
                .first()
                .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
            let ours = args
                .windows(2)
                .any(|w| w[0] == b"-id".as_slice() && w[1] == self.id.as_bytes());
            if shim && ours {
                return Some(pid);
            }
        }
        None
    }

    pub fn enabled(&self) -> bool {
        docker_ok(&["plugin", "inspect", "-f", "{{.Enabled}}", &self.name]) == "true"
    }

    /// `docker plugin inspect -f '{{json .Settings.Env}}'` as KEY=VALUE.
    pub fn settings_env(&self) -> Vec<String> {
        let out = docker_ok(&[
            "plugin",
            "inspect",
            "-f",
            "{{json .Settings.Env}}",
            &self.name,
        ]);
        serde_json::from_value(parse_json(&out, "Settings.Env")).expect("Settings.Env is a list")
    }

    /// `gpe2e-<pid>-<scenario>-<what>`.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }

    /// `docker network create --ipam-driver PLUGIN EXTRA... NAME`.
    pub fn try_network(&mut self, what: &str, extra: &[&str]) -> Result<String, String> {
        let name = self.name(what);
        self.networks.push(name.clone());
        let mut args = vec!["network", "create", "--ipam-driver", self.name.as_str()];
        args.extend_from_slice(extra);
        args.push(&name);
        let out = docker(&args);
        if out.status.success() {
            Ok(name)
        } else {
            Err(text(&out.stderr))
        }
    }

    pub fn network(&mut self, what: &str, extra: &[&str]) -> String {
        self.try_network(what, extra)
            .unwrap_or_else(|e| panic!("docker network create {what} {extra:?}: {e}"))
    }

    /// A network create that must fail: returns the CLI's error after
    /// checking that Docker has no such network.
    pub fn network_fails(&mut self, what: &str, extra: &[&str]) -> String {
        match self.try_network(what, extra) {
            Ok(n) => panic!("docker network create {extra:?} succeeded ({n}) but should fail"),
            Err(e) => {
                let name = self.name(what);
                assert!(
                    !docker(&["network", "inspect", &name]).status.success(),
                    "failed network {name} exists in Docker"
                );
                e
            }
        }
    }

    pub fn try_run(&mut self, what: &str, net: &str, extra: &[&str]) -> Result<String, String> {
        let name = self.name(what);
        self.containers.push(name.clone());
        docker_run(&name, net, extra).map(|_| name)
    }

    pub fn run(&mut self, what: &str, net: &str, extra: &[&str]) -> String {
        self.try_run(what, net, extra)
            .unwrap_or_else(|e| panic!("docker run {what} on {net} {extra:?}: {e}"))
    }

    pub fn rm_containers(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(String::as_str));
        docker_ok(&args);
        self.containers.retain(|c| !names.contains(c));
    }

    pub fn rm_network(&mut self, name: &str) {
        docker_ok(&["network", "rm", name]);
        self.networks.retain(|n| n != name);
    }

    /// Starts `docker-registry serve` on a free loopback port with storage
    /// in the temp dir; returns `127.0.0.1:<port>`.
    pub fn start_registry(&mut self) -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let root = self.dir.path().join("registry");
        std::fs::create_dir_all(root.join("data")).expect("registry dir");
        let config = root.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                root.join("data").display()
            ),
        )
        .expect("write the registry config");
        let log = File::create(root.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("registry log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("run docker-registry (apt-get install docker-registry)");
        if let Ok(mut f) = File::options()
            .create(true)
            .append(true)
            .open(REGISTRY_PIDS)
        {
            let _ = writeln!(f, "{}", child.id());
        }
        self.registry = Some(child);
        let addr = format!("127.0.0.1:{port}");
        poll(Duration::from_secs(20), || {
            let mut s = TcpStream::connect(&addr).ok()?;
            s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .ok()?;
            let mut resp = String::new();
            s.read_to_string(&mut resp).ok()?;
            resp.starts_with("HTTP/1.0 200")
                .then_some(())
                .or_else(|| resp.starts_with("HTTP/1.1 200").then_some(()))
        })
        .unwrap_or_else(|| panic!("docker-registry did not answer on {addr}"));
        addr
    }

    fn stop_registry(&mut self) {
        if let Some(mut c) = self.registry.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Lines of the dockerd log about this plugin (its stderr included).
    pub fn log_lines(&self) -> Vec<String> {
        let short = self.id.get(..12).unwrap_or(&self.id).to_string();
        dockerd_log()
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

impl Drop for Plugin {
    fn drop(&mut self) {
        for (project, file) in &self.compose {
            let _ = Command::new("docker-compose")
                .arg("-p")
                .arg(project)
                .arg("-f")
                .arg(file)
                .args(["down", "-t", "1"])
                .stdin(Stdio::null())
                .output();
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.containers.iter().map(String::as_str));
            let _ = docker(&args);
        }
        // Releases to a disabled plugin make dockerd retry for ~15 s each.
        if !self.networks.is_empty() && !self.id.is_empty() && !self.enabled_quiet() {
            let _ = docker(&["plugin", "enable", &self.name]);
        }
        for n in self.networks.iter().rev() {
            let _ = docker(&["network", "rm", n]);
        }
        if std::thread::panicking() {
            let lines = self.log_lines();
            let from = lines.len().saturating_sub(60);
            eprintln!(
                "--- dockerd log lines of plugin {} ({}):\n{}\n--- end",
                self.name,
                self.id,
                lines[from..].join("\n")
            );
        }
        for p in &self.plugins {
            let _ = docker(&["plugin", "rm", "-f", p]);
        }
        self.stop_registry();
    }
}

impl Plugin {
    fn enabled_quiet(&self) -> bool {
        let out = docker(&["plugin", "inspect", "-f", "{{.Enabled}}", &self.name]);
        text(&out.stdout) == "true"
    }
}
