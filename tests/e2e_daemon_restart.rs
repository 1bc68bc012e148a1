//! End-to-end scenario 8 of the managed plugin: dockerd itself restarted
//! while containers with restart policy `always` run on gipam networks.
//! Every container must come back with an address, none twice, and gipam
//! must hold exactly the gateways and the containers' addresses afterwards.
//!
//! Restarting dockerd disturbs everything else on the host, so this is its
//! own test binary (cargo runs test binaries one at a time), it runs only
//! with `GIPAM_E2E_RESTART_DOCKERD=1` (the Makefile sets it), and it holds
//! the docker e2e lock (see `docker_env`) while it runs. dockerd is
//! stopped with SIGTERM and started again with the argv, working directory
//! and environment it had, detached, logging to the file it logged to
//! (else /var/log/gipam-test-dockerd.log). The dockerd is the one under
//! test (`DOCKER_HOST`), found through its pid file (`GIPAM_DOCKERD_PIDFILE`,
//! see `docker_env::engine`).
//!
//! Addresses: V4=10.218.0.0/16, V6=2001:db8:e218::/48, explicit subnet
//! 10.228.0.0/24 (see the address plan in `e2e_plugin.rs`).

mod common;
mod docker_env;
mod plugin_fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docker_env::*;
use plugin_fixture::*;

const SUITE: &str = "e2e_daemon_restart";
/// Where a restarted dockerd logs when its old log was no file.
const DOCKERD_LOG: &str = "/var/log/gipam-test-dockerd.log";

/// The running dockerd: pid and how it was started.
struct Dockerd {
    pid: u32,
    argv: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    log: PathBuf,
}

fn nul_split(bytes: Vec<u8>) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

impl Dockerd {
    fn current() -> Dockerd {
        let pidfile = dockerd_pidfile();
        let pid =
            dockerd_pid().unwrap_or_else(|| panic!("no dockerd pid in {}", pidfile.display()));
        let argv =
            nul_split(std::fs::read(format!("/proc/{pid}/cmdline")).expect("dockerd cmdline"));
        assert!(
            argv.first()
                .is_some_and(|a| a.to_string_lossy().ends_with("dockerd")),
            "pid {pid} of {} is not dockerd: {argv:?}",
            pidfile.display()
        );
        // The directory it was started from may be gone since (a removed
        // checkout): then "/", or starting it again fails with ENOENT.
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .ok()
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| "/".into());
        let env = nul_split(std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
            .into_iter()
            .filter_map(|kv| {
                let kv = kv.into_vec();
                let eq = kv.iter().position(|b| *b == b'=')?;
                Some((
                    OsString::from_vec(kv[..eq].to_vec()),
                    OsString::from_vec(kv[eq + 1..].to_vec()),
                ))
            })
            .collect();
        Dockerd {
            pid,
            argv,
            cwd,
            env,
            log: dockerd_log().unwrap_or_else(|| DOCKERD_LOG.into()),
        }
    }

    /// SIGTERM, wait for the exit, start it again the same way, wait until
    /// `docker info` answers. Returns (stop time, start time).
    fn restart(&self) -> (Duration, Duration) {
        eprintln!("restarting dockerd (pid {}): {:?}", self.pid, self.argv);
        let t0 = Instant::now();
        send_signal("TERM", self.pid);
        poll(Duration::from_secs(180), || {
            (!alive(self.pid)).then_some(())
        })
        .unwrap_or_else(|| panic!("dockerd {} still runs 180 s after SIGTERM", self.pid));
        let stopped = t0.elapsed();

        let t1 = Instant::now();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the dockerd log");
        let status = Command::new("setsid")
            .arg("-f")
            .arg("nohup")
            .args(&self.argv)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dockerd log")))
            .stderr(Stdio::from(log))
            .status()
            .expect("run setsid -f nohup dockerd");
        assert!(status.success(), "starting dockerd: {status}");
        poll(Duration::from_secs(120), || docker_info().ok()).unwrap_or_else(|| {
            panic!(
                "dockerd did not answer within 120 s after the restart; see {}",
                self.log.display()
            )
        });
        (stopped, t1.elapsed())
    }
}

/// The MAC address Docker reports for `container` on its network.
fn mac_of(container: &str, on: &[(String, String)]) -> String {
    let net = on
        .iter()
        .find(|(c, _)| c == container)
        .map(|(_, n)| n.as_str())
        .expect("a known container");
    field(&endpoint(container, net), "MacAddress").to_string()
}

/// Whether the container runs (and is not being restarted).
fn running(container: &str) -> bool {
    let out = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.Restarting}}",
        container,
    ]);
    text(&out.stdout) == "true false"
}

/// Every container comes back, with its `--ip`, unique addresses inside
/// its network's block or range, and gipam holds exactly the gateways and
/// the containers' addresses (the ones released at shutdown are free).
#[test]
fn s8_dockerd_restart_with_running_containers() {
    scenario("s8", false);
}

/// The stricter goal: the dynamically addressed containers come back with
/// the addresses they had. On dockerd 20.10 they are renumbered: Docker
/// releases every address at shutdown, and at start it asks again with a
/// new random MAC (gipam sets RequiresMACAddress) and no endpoint name, so
/// gipam cannot tell it is the same container, and its cooling rule (F5)
/// hands out addresses that were not released recently.
#[test]
#[ignore = "engines before 29 send a new random MAC and no name on every start, so nothing tells which container asks; addresses follow names (Engine 29) and pinned MACs (F6)"]
fn s8_dynamic_addresses_survive_dockerd_restart() {
    scenario("s8b", true);
}

fn scenario(name: &str, strict: bool) {
    if std::env::var("GIPAM_E2E_RESTART_DOCKERD").as_deref() != Ok("1") {
        eprintln!(
            "SKIP {SUITE}: restarting dockerd needs GIPAM_E2E_RESTART_DOCKERD=1 (make test sets it)"
        );
        return;
    }
    let Some(mut p) = Plugin::start(SUITE, name, &["V4=10.218.0.0/16", "V6=2001:db8:e218::/48"])
    else {
        return;
    };
    let auto = p.network("auto", &["--ipv6"]);
    let fixed = p.network(
        "fixed",
        &["--subnet", "10.228.0.0/24", "--ip-range", "10.228.0.128/25"],
    );
    let policy = ["--restart", "always", "--stop-timeout", "1"];
    let mut on: Vec<(String, String)> = Vec::new();
    for i in 1..=3 {
        on.push((p.run(&format!("a{i}"), &auto, &policy), auto.clone()));
    }
    let mut with_ip = policy.to_vec();
    with_ip.extend(["--ip", "10.228.0.10"]);
    on.push((p.run("f1", &fixed, &with_ip), fixed.clone()));
    on.push((p.run("f2", &fixed, &policy), fixed.clone()));

    let before: BTreeMap<String, (IpAddr, Option<IpAddr>)> = on
        .iter()
        .map(|(c, n)| (c.clone(), endpoint_addrs(c, n)))
        .collect();
    let macs_before: BTreeMap<String, String> = on
        .iter()
        .map(|(c, _)| (c.clone(), mac_of(c, &on)))
        .collect();
    let gw_before = p.gateways();
    assert_eq!(gw_before.len(), 3, "auto v4 + v6, fixed v4: {gw_before:?}");
    let leases_before = p.leases();
    assert_eq!(leases_before.len(), 3 + 3 * 2 + 2);

    let (stop, start) = Dockerd::current().restart();
    eprintln!(
        "{name}: dockerd stopped in {:.1} s, answered {:.1} s after the start",
        stop.as_secs_f64(),
        start.as_secs_f64()
    );
    p.wait_ready(Duration::from_secs(60))
        .expect("the plugin is enabled again after the restart");
    let back = poll(Duration::from_secs(120), || {
        on.iter().all(|(c, _)| running(c)).then_some(())
    });
    assert!(
        back.is_some(),
        "containers not running 120 s after the restart: {:?}",
        on.iter()
            .filter(|(c, _)| !running(c))
            .map(|(c, _)| c)
            .collect::<Vec<_>>()
    );
    eprintln!(
        "{name}: every container runs again {:.1} s after the test started",
        p.elapsed()
    );

    let after: BTreeMap<String, (IpAddr, Option<IpAddr>)> = on
        .iter()
        .map(|(c, n)| (c.clone(), endpoint_addrs(c, n)))
        .collect();
    for (c, was) in &before {
        eprintln!(
            "{name}: {c}: before {was:?} MAC {}, after {:?} MAC {}",
            macs_before[c],
            after[c],
            mac_of(c, &on)
        );
    }
    let mut seen = BTreeSet::new();
    for (c, (a4, a6)) in &after {
        for a in [Some(*a4), *a6].into_iter().flatten() {
            assert!(seen.insert(a), "{c}: {a} is given twice");
            assert!(!gw_before.contains(&a), "{c}: {a} is a gateway");
        }
    }
    let f1 = p.name("f1");
    assert_eq!(
        after[&f1].0,
        "10.228.0.10".parse::<IpAddr>().expect("ip"),
        "--ip is kept"
    );

    // No leaks: gipam holds the gateways and the containers' addresses.
    assert_eq!(p.gateways(), gw_before, "gateways are unchanged");
    let mut want = gw_before.clone();
    want.extend(seen.iter().copied());
    assert_eq!(
        p.leased(),
        want,
        "gipam holds exactly gateways + containers"
    );
    let status = p.status();
    assert_eq!(status["Leases"], want.len(), "{status}");

    for (c, n) in &on {
        let (a4, a6) = after[c];
        let (b4, b6) = before[c];
        let block4 = subnet_of(n, false);
        assert!(
            block4.contains(&a4) && block4.contains(&b4),
            "{c}: {a4} {block4}"
        );
        if let (Some(a6), Some(_)) = (a6, b6) {
            assert!(subnet_of(n, true).contains(&a6), "{c}: {a6}");
        }
        assert_eq!(a6.is_some(), b6.is_some(), "{c}: same families");
    }
    let moved: Vec<&String> = before.keys().filter(|c| after[*c] != before[*c]).collect();
    if !moved.is_empty() {
        eprintln!("{name}: renumbered by the restart: {moved:?}");
    }
    if strict {
        assert_eq!(after, before, "every container comes back with its address");
    }

    p.rm_all();
    p.assert_empty();
}
