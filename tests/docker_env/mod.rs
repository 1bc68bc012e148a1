//! What the docker end-to-end test binaries share: `e2e_docker.rs` (gipam
//! as a legacy plugin) and, through `plugin_fixture`, `e2e_plugin.rs` and
//! `e2e_daemon_restart.rs` (the managed plugin). That is the docker CLI and
//! Engine API, the JSON inspect helpers the scenarios assert with, the
//! once-per-process setup, and [`Resources`], the containers and networks
//! one test made.
//!
//! Setup: without a Docker engine every test panics with what to do,
//! unless `GIPAM_SKIP_E2E=1`, in which case it prints a skip line and
//! passes. The docker e2e test processes are serialised with one lock file,
//! so two runs never share a dockerd at the same time (and the dockerd
//! restart scenario never pulls the daemon away from another run); what a
//! killed earlier run left behind is removed first.
//!
//! Split by concern: [`engine`] (which engine and compose, what differs
//! between them, a veth parent for macvlan/ipvlan), [`inspect`] (what Docker
//! reports), [`resources`] (one test's containers and networks).
#![allow(dead_code)]

mod engine;
mod inspect;
mod resources;

pub use engine::*;
pub use inspect::*;
pub use resources::*;

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The test image: busybox from /bin/busybox, built once.
pub const IMAGE: &str = "gipam-test/busybox:latest";
/// One docker e2e test process at a time, whichever binary.
const LOCK_FILE: &str = "/tmp/gipam-e2e.lock";

// ---------------------------------------------------------------------------
// Commands: the docker CLI, the Engine API, anything else

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

/// Runs docker that must fail and returns its stderr.
pub fn docker_fails(args: &[&str]) -> String {
    let out = docker(args);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "docker {} succeeded but should fail: {}",
        args.join(" "),
        text(&out.stdout)
    );
    err
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

/// `docker rm -f NAMES...`, whatever comes of it (for cleanups).
pub fn remove_containers<S: AsRef<str>>(names: &[S]) {
    if !names.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(AsRef::as_ref));
        let _ = docker(&args);
    }
}

/// POSTs JSON to the Docker Engine API (API 1.41, what 20.10 speaks), for
/// what the 28.x CLI cannot ask a 1.41 daemon (a MAC address on a user
/// network). Returns (status, body).
pub fn docker_api_post(path: &str, body: &Value) -> (u16, String) {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(String::from))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string());
    let mut s = std::os::unix::net::UnixStream::connect(&socket)
        .unwrap_or_else(|e| panic!("connect to {socket}: {e}"));
    let body = serde_json::to_vec(body).expect("encode the request");
    let head = format!(
        "POST /v1.41{path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send the request");
    s.write_all(&body).expect("send the request body");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read the response");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response from the Docker API: {resp}"));
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Runs `cmd` (stdin from /dev/null) and returns its stdout; panics with
/// its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `kill -SIGNAL PID`; panics when kill fails.
pub fn send_signal(signal: &str, pid: u32) {
    run_ok(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()),
    );
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

// ---------------------------------------------------------------------------
// Threads and waiting

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
pub fn poll<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(Duration::from_millis(100), timeout, f)
}

/// Polls `f` every `every` until it returns Some or `timeout` passes.
pub fn poll_every<T>(
    every: Duration,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

// ---------------------------------------------------------------------------
// Once per test process: dockerd is there, no other docker e2e run is
// active, the image exists, nothing is left from an earlier run.

/// `None`: skipped. `Some(lock)`: ready, the lock held until the process ends.
static SETUP: OnceLock<Option<File>> = OnceLock::new();

/// `false`: skip (no dockerd and GIPAM_SKIP_E2E=1). The first call takes
/// the lock, builds the image and runs `remove_leftovers(suite)`.
pub fn setup(suite: &str, remove_leftovers: fn(&str)) -> bool {
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
            let e = engine();
            let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the default socket".into());
            eprintln!("{suite}: engine {} on {host}", e.version);
            ensure_image();
            remove_leftovers(suite);
            Some(lock)
        })
        .is_some()
}

/// Builds the busybox image from /bin/busybox unless it exists.
fn ensure_image() {
    ensure_image_at(None);
}

/// [`ensure_image`] on the daemon at `docker_host` (a `DOCKER_HOST`
/// value; `None`: the one under test), for tests that drive a second
/// dockerd (`e2e_fleet.rs`).
pub fn ensure_image_at(docker_host: Option<&str>) {
    let docker = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        if let Some(h) = docker_host {
            cmd.env("DOCKER_HOST", h);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI runs")
    };
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
    let mut import = Command::new("sh");
    if let Some(h) = docker_host {
        import.env("DOCKER_HOST", h);
    }
    let out = import
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

/// Removes the containers and networks named `<prefix>…` that are not this
/// process's (`<prefix><pid>-…`); the caller holds the lock, so no other
/// run is active. `revive(networks)` runs first and must make their IPAM
/// drivers answer (a release to one that does not makes dockerd retry for
/// ~15 s); what it returns is handed back.
pub fn remove_leftovers<T>(suite: &str, prefix: &str, revive: impl FnOnce(&[String]) -> T) -> T {
    let mine = format!("{prefix}{}-", std::process::id());
    let filter = format!("name={prefix}");
    let stale = |list: &[&str], format: &str| -> Vec<String> {
        let mut args = list.to_vec();
        args.extend(["--filter", &filter, "--format", format]);
        docker_ok(&args)
            .lines()
            .filter(|n| n.starts_with(prefix) && !n.starts_with(&mine))
            .map(String::from)
            .collect()
    };
    let containers = stale(&["ps", "-a"], "{{.Names}}");
    let networks = stale(&["network", "ls"], "{{.Name}}");
    let revived = revive(&networks);
    if !containers.is_empty() {
        eprintln!("{suite}: removing leftover containers {containers:?}");
        remove_containers(&containers);
    }
    for n in &networks {
        eprintln!("{suite}: removing leftover network {n}");
        let _ = docker(&["network", "rm", n]);
    }
    revived
}
