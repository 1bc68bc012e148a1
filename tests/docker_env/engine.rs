//! Which Docker engine and which compose the tests drive, and the facts
//! that differ between them, in one place: the scenarios assert each
//! engine's own behaviour by asking here, never by skipping.
//!
//! The engine is whatever answers on `DOCKER_HOST` (scripts/test-engines.sh
//! runs every test binary once per engine); `GIPAM_DOCKERD_PIDFILE` names
//! its pid file (default /var/run/docker.pid). The compose binaries are
//! `GIPAM_COMPOSE_V1` (default `docker-compose-1.29`) and
//! `GIPAM_COMPOSE_V2` (default `docker-compose`), as scripts/test-env.sh
//! installs them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{docker_ok, run_ok, text};

/// The daemon under test.
#[derive(Debug)]
pub struct Engine {
    /// As the daemon reports it, e.g. "28.5.2+dfsg4".
    pub version: String,
    pub major: u32,
    pub minor: u32,
}

impl Engine {
    /// Engine 28 added IPv6-only networks (`--ipv4=false`, API 1.48); 20.10
    /// ignores the flag and gives the network an IPv4 pool too.
    pub fn has_ipv6_only(&self) -> bool {
        self.major >= 28
    }

    /// Engine 28 gives the endpoints of an `--internal` bridge network no
    /// gateway (ipam-protocol.md §7): no `Gateway`/`IPv6Gateway` in `docker
    /// inspect`, no default route inside. 20.10 gives both.
    pub fn internal_bridge_has_gateway(&self) -> bool {
        self.major < 28
    }
}

/// The engine on `DOCKER_HOST`, asked once per process.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let version = docker_ok(&["version", "-f", "{{.Server.Version}}"]);
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        let mut num = || -> u32 {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("engine version {version:?}"))
        };
        let (major, minor) = (num(), num());
        Engine {
            version: version.clone(),
            major,
            minor,
        }
    })
}

/// The pid file of the dockerd under test.
pub fn dockerd_pidfile() -> PathBuf {
    std::env::var_os("GIPAM_DOCKERD_PIDFILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.pid"))
}

/// The pid of the dockerd under test, from its pid file.
pub fn dockerd_pid() -> Option<u32> {
    std::fs::read_to_string(dockerd_pidfile())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The file dockerd writes its log (and its plugins' output) to.
pub fn dockerd_log() -> Option<PathBuf> {
    let path = std::fs::read_link(format!("/proc/{}/fd/2", dockerd_pid()?)).ok()?;
    path.is_file().then_some(path)
}

/// A docker-compose the tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compose {
    /// docker-compose 1.29 (Python): passes `ipam.options`.
    V1,
    /// Compose v2 (Go, 2.40 on Debian): before v5 it drops `ipam.options`
    /// (docker/compose#9330, fixed in v5 by PR #14094).
    V2,
}

impl Compose {
    /// The binary: `GIPAM_COMPOSE_V1` / `GIPAM_COMPOSE_V2`.
    pub fn binary(self) -> String {
        let (var, default) = match self {
            Compose::V1 => ("GIPAM_COMPOSE_V1", "docker-compose-1.29"),
            Compose::V2 => ("GIPAM_COMPOSE_V2", "docker-compose"),
        };
        std::env::var(var).unwrap_or_else(|_| default.to_string())
    }

    /// (major, minor) of `binary version --short`, checked to be this
    /// generation.
    pub fn version(self) -> (u32, u32) {
        let bin = self.binary();
        let v = run_ok(Command::new(&bin).args(["version", "--short"]));
        let v = v.trim_start_matches('v');
        let mut parts = v.split(|c: char| !c.is_ascii_digit());
        let mut num = || -> u32 {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{bin} version {v:?}"))
        };
        let version = (num(), num());
        match self {
            Compose::V1 => assert_eq!(version.0, 1, "{bin} is not compose 1.x: {v}"),
            Compose::V2 => assert!(version.0 >= 2, "{bin} is not compose v2+: {v}"),
        }
        version
    }

    /// Whether this compose drops a network's `ipam.options` (v2 before v5).
    pub fn drops_ipam_options(self) -> bool {
        let (major, _) = self.version();
        (2..5).contains(&major)
    }

    /// `COMPOSE -p PROJECT -f FILE ARGS...`, not yet run.
    pub fn command(self, project: &str, file: &std::path::Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.binary());
        cmd.arg("-p").arg(project).arg("-f").arg(file).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// A veth pair on the host, both ends up, to be the `parent` of macvlan and
/// ipvlan networks (the kernel here has no dummy links; one parent per
/// network, Docker refuses a second network on a parent). Deleted on Drop
/// (deleting one end deletes both).
pub struct VethPair {
    /// The two ends.
    pub ends: [String; 2],
}

impl VethPair {
    /// `gv<tag>a` and `gv<tag>b`; `tag` must be unique on the host and at
    /// most 11 characters (link names have at most 15).
    pub fn new(tag: &str) -> VethPair {
        assert!(tag.len() <= 11, "veth tag {tag:?} is too long");
        let ends = [format!("gv{tag}a"), format!("gv{tag}b")];
        // A pair a killed run left behind.
        let _ = Command::new("ip")
            .args(["link", "del", &ends[0]])
            .stderr(Stdio::null())
            .status();
        let pair = VethPair { ends };
        run_ok(Command::new("ip").args([
            "link",
            "add",
            &pair.ends[0],
            "type",
            "veth",
            "peer",
            "name",
            &pair.ends[1],
        ]));
        for end in &pair.ends {
            run_ok(Command::new("ip").args(["link", "set", end, "up"]));
        }
        pair
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["link", "del", &self.ends[0]])
            .output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!("ip link del {}: {}", self.ends[0], text(&out.stderr));
        }
    }
}
