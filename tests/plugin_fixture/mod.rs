//! Shared fixture of the managed-plugin end-to-end tests (`e2e_plugin.rs`,
//! `e2e_daemon_restart.rs`): gipam installed in the real dockerd as a v2
//! plugin from the bundle `make plugin` builds (`plugin/`). The docker CLI
//! helpers the scenarios assert with, the setup and the lock are in
//! `docker_env`, shared with `e2e_docker.rs`.
//!
//! Every scenario gets its own plugin, `gipam-e2e/p<pid>-<scenario>:latest`,
//! created from a private copy of the bundle: dockerd 20.10 refuses
//! `docker plugin create` of a rootfs whose layer another plugin already
//! holds (`content sha256:…: already exists`), so each copy carries a
//! unique marker file. Containers, networks and compose projects are named
//! `gpe2e-<pid>-<scenario>-…` (not `gipam-e2e-…`, which the legacy e2e suite
//! treats as its own leftovers). Everything a scenario made is removed by
//! [`Plugin`]'s Drop, also when the scenario panics.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::common::Client;
use crate::docker_env::*;

/// Containers, networks and compose projects start with this.
pub const PREFIX: &str = "gpe2e-";
/// Plugin names start with this (then the pid).
pub const PLUGIN_PREFIX: &str = "gipam-e2e/p";
/// Registry processes of this run, to stop them if the run is killed.
const REGISTRY_PIDS: &str = "/tmp/gipam-e2e-plugin-registries";

/// Removes what killed earlier runs left (we hold the lock: no other run
/// is active): their plugins are enabled first (a release to a disabled
/// plugin makes dockerd retry for ~15 s), then their containers and
/// networks go, then the plugins, and registry processes they started.
fn remove_leftovers(suite: &str) {
    let my_plugins = format!("{PLUGIN_PREFIX}{}-", std::process::id());
    let plugins = crate::docker_env::remove_leftovers(suite, PREFIX, |_| {
        let plugins: Vec<String> = docker_ok(&["plugin", "ls", "--format", "{{.Name}}"])
            .lines()
            .filter(|n| n.contains(PLUGIN_PREFIX) && !n.contains(&my_plugins))
            .map(String::from)
            .collect();
        for p in &plugins {
            let _ = docker(&["plugin", "enable", p]);
        }
        plugins
    });
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

/// Sets the default value of env entry `name` in a config.json.
pub fn set_env_default(config: &mut Value, name: &str, value: &str) {
    let env = config["env"]
        .as_array_mut()
        .expect("config.json has an env list");
    let e = env
        .iter_mut()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("config.json has no env {name}"));
    e["value"] = json!(value);
}

/// A lease as `/Gipam.Leases` lists it: (PoolID, address, gateway flag).
pub type Lease = (String, IpAddr, bool);

/// The addresses of a set of leases.
pub fn addresses(leases: &BTreeSet<Lease>) -> BTreeSet<IpAddr> {
    leases.iter().map(|l| l.1).collect()
}

// ---------------------------------------------------------------------------
// One scenario's plugin and everything made with it

/// A scenario's plugin. It derefs to the [`Resources`] made with it
/// (`p.network(…)`, `p.run(…)`), all named `gpe2e-<pid>-<scenario>-…`. On
/// Drop it prints how long the scenario took (unless it panicked), then
/// removes everything.
pub struct Plugin {
    /// `gipam-e2e/p<pid>-<scenario>:latest`.
    pub name: String,
    /// The 64-hex plugin id (stays the same across upgrades).
    pub id: String,
    /// The plugin's socket on the host.
    pub socket: PathBuf,
    /// Bundle copies, registry storage, compose files.
    pub dir: tempfile::TempDir,
    /// Other plugin references to `rm -f` (e.g. a pushed bundle).
    pub plugins: Vec<String>,
    /// (compose, project, file) of compose projects to take down.
    pub compose: Vec<(Compose, String, PathBuf)>,
    made: Resources,
    scenario: String,
    started: Instant,
    registry: Option<Child>,
}

impl Deref for Plugin {
    type Target = Resources;
    fn deref(&self) -> &Resources {
        &self.made
    }
}

impl DerefMut for Plugin {
    fn deref_mut(&mut self) -> &mut Resources {
        &mut self.made
    }
}

impl Plugin {
    /// Creates, configures (`KEY=VALUE` settings) and enables the plugin of
    /// `scenario`; `None` when the suite is skipped.
    pub fn start(suite: &str, scenario: &str, settings: &[&str]) -> Option<Plugin> {
        let started = Instant::now();
        if !setup(suite, remove_leftovers) {
            return None;
        }
        let pid = std::process::id();
        let name = format!("{PLUGIN_PREFIX}{pid}-{scenario}:latest");
        let mut p = Plugin {
            made: Resources::new(format!("{PREFIX}{pid}-{scenario}"), name.clone()),
            name: name.clone(),
            id: String::new(),
            socket: PathBuf::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            plugins: vec![name.clone()],
            compose: Vec::new(),
            scenario: scenario.to_string(),
            started,
            registry: None,
        };
        let bundle = p.copy_bundle("bundle", |_| {});
        docker_ok(&["plugin", "create", &name, &bundle.to_string_lossy()]);
        if !settings.is_empty() {
            let mut args = vec!["plugin", "set", name.as_str()];
            args.extend_from_slice(settings);
            docker_ok(&args);
        }
        docker_ok(&["plugin", "enable", &name]);
        p.id = p.inspect("{{.Id}}");
        p.socket = Path::new("/run/docker/plugins")
            .join(&p.id)
            .join("gipam.sock");
        p.wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = p.status();
        assert_eq!(status["Leases"], 0, "a new plugin holds nothing: {status}");
        Some(p)
    }

    /// Seconds since [`Plugin::start`] was called.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Copies the bundle to `dir/<label>` with a marker file that makes
    /// its rootfs unique, then lets `edit` change the config.
    pub fn copy_bundle(&self, label: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dst = self.dir.path().join(label);
        run_ok(Command::new("cp").arg("-a").arg(bundle_dir()).arg(&dst));
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

    /// Every lease.
    pub fn leases(&self) -> BTreeSet<Lease> {
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
        addresses(&self.leases())
    }

    /// The leased gateway addresses.
    pub fn gateways(&self) -> BTreeSet<IpAddr> {
        self.leases()
            .into_iter()
            .filter(|l| l.2)
            .map(|l| l.1)
            .collect()
    }

    /// gipam holds nothing.
    pub fn assert_empty(&self) {
        let status = self.status();
        assert_eq!(status["Pools"], json!([]), "no pools: {status}");
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

    /// `docker plugin inspect -f FORMAT` of this plugin.
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["plugin", "inspect", "-f", format, &self.name])
    }

    pub fn enabled(&self) -> bool {
        self.inspect("{{.Enabled}}") == "true"
    }

    /// `docker plugin inspect -f '{{json .Settings.Env}}'` as KEY=VALUE.
    pub fn settings_env(&self) -> Vec<String> {
        let out = self.inspect("{{json .Settings.Env}}");
        serde_json::from_value(parse_json(&out, "Settings.Env")).expect("Settings.Env is a list")
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

    /// Makes a copy of the bundle changed by `edit` and pushes it to a
    /// local registry (started here) as `<registry>/gipam-e2e/p<pid>-<scenario>:<tag>`,
    /// then removes it locally, so that only the registry has it. Returns
    /// that reference.
    pub fn push_bundle(&mut self, tag: &str, edit: impl FnOnce(&mut Value)) -> String {
        let registry = self.start_registry();
        let pid = std::process::id();
        let remote = format!("{registry}/{PLUGIN_PREFIX}{pid}-{}:{tag}", self.scenario);
        let bundle = self.copy_bundle(tag, edit);
        self.plugins.push(remote.clone());
        docker_ok(&["plugin", "create", &remote, &bundle.to_string_lossy()]);
        docker_ok(&["plugin", "push", &remote]);
        docker_ok(&["plugin", "rm", "-f", &remote]);
        remote
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

    /// Whether a dockerd log line about this plugin contains `needle`
    /// within `timeout`; `None` when there are no such lines to read.
    pub fn log_shows(&self, needle: &str, timeout: Duration) -> Option<bool> {
        if dockerd_log().is_none() || self.log_lines().is_empty() {
            return None;
        }
        let found = poll(timeout, || {
            let lines = self.log_lines();
            lines.iter().any(|l| l.contains(needle)).then_some(())
        });
        Some(found.is_some())
    }

    fn enabled_quiet(&self) -> bool {
        let out = docker(&["plugin", "inspect", "-f", "{{.Enabled}}", &self.name]);
        text(&out.stdout) == "true"
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            eprintln!("{}: {:.1} s", self.scenario, self.elapsed());
        }
        // Releases to a disabled plugin make dockerd retry for ~15 s each.
        let in_use = !self.networks.is_empty() || !self.compose.is_empty();
        if in_use && !self.id.is_empty() && !self.enabled_quiet() {
            let _ = docker(&["plugin", "enable", &self.name]);
        }
        for (compose, project, file) in &self.compose {
            let _ = compose
                .command(project, file, &["down", "-t", "1"])
                .output();
        }
        self.made.cleanup();
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
