//! Settings: one definition each, read from flags, then the environment
//! (with the GIPAM_-prefixed aliases of the original gipam), then the
//! default; validated into a [`Config`] before anything starts. Sources are
//! passed in (args and an env iterator), so tests never touch the process
//! environment.

mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};
use ipnet::IpNet;

use crate::api::server::Limits;
use crate::ipam::{Family, Settings};
use values::*;

/// The IPv4 pool used when V4 is not set: Docker's local defaults start at
/// 172.17.0.0/16 (plus 192.168.0.0/16 and, for swarm, 10.0.0.0/8), Podman's
/// at 10.88.0.0/16 and 10.89.0.0/16 onwards, so 172.16.0.0/16 overlaps none.
pub const DEFAULT_V4: &str = "172.16.0.0/16";

/// What V6AB is checked against when V6 is empty: the ULA generated at
/// first start is a /48 (RFC 4193).
const ULA_SHAPE: IpNet = IpNet::V6(ipnet::Ipv6Net::new_assert(
    std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0),
    48,
));

/// One setting.
struct Setting {
    env: &'static str,
    aliases: &'static [&'static str],
    flag: &'static str,
    default: &'static str,
    help: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        env: "V4",
        aliases: &["GIPAM_V4"],
        flag: "v4",
        default: DEFAULT_V4,
        help: "main IPv4 pool(s), comma-separated CIDRs",
    },
    Setting {
        env: "V4AB",
        aliases: &["GIPAM_V4AB"],
        flag: "v4ab",
        default: "24",
        help: "prefix length of the IPv4 block one network gets",
    },
    Setting {
        env: "V6",
        aliases: &["GIPAM_V6"],
        flag: "v6",
        default: "",
        help: "main IPv6 pool(s); empty: a ULA /48 generated once and kept in the state",
    },
    Setting {
        env: "V6AB",
        aliases: &["GIPAM_V6AB"],
        flag: "v6ab",
        default: "64",
        help: "prefix length of the IPv6 block one network gets",
    },
    Setting {
        env: "STATE_DIR",
        aliases: &[],
        flag: "state-dir",
        default: "/var/lib/gipam",
        help: "directory of the durable state (GIPAM_FILE=path uses the file's directory)",
    },
    Setting {
        env: "SOCKET",
        aliases: &[],
        flag: "socket",
        default: "/run/docker/plugins/gipam.sock",
        help: "unix socket to serve on",
    },
    Setting {
        env: "ADDRESS",
        aliases: &["GIPAM_ADDRESS"],
        flag: "address",
        default: "",
        help: "serve on TCP host:port instead (:port means loopback) and write SPEC_FILE",
    },
    Setting {
        env: "SPEC_FILE",
        aliases: &[],
        flag: "spec-file",
        default: "/etc/docker/plugins/gipam.spec",
        help: "plugin spec file written when ADDRESS is set; an existing one is replaced only if it is a stale one of gipam's",
    },
    Setting {
        env: "ALLOW_REMOTE",
        aliases: &[],
        flag: "allow-remote",
        default: "false",
        help: "allow ADDRESS on a non-loopback address: gipam has no authentication, so every host that reaches it can allocate, release and list addresses",
    },
    Setting {
        env: "MAX_CONNECTIONS",
        aliases: &[],
        flag: "max-connections",
        default: "256",
        help: "most client connections open at once; more are closed as soon as they are accepted",
    },
    Setting {
        env: "CLIENT_TIMEOUT",
        aliases: &[],
        flag: "client-timeout",
        default: "5",
        help: "seconds a client may take to send a request's headers or its body, or to read a reply; also how long an idle connection stays open",
    },
    Setting {
        env: "COMPACT_BYTES",
        aliases: &[],
        flag: "compact-bytes",
        default: "16777216",
        help: "journal size (bytes, at least 4096) past which it is folded into a new snapshot",
    },
    Setting {
        env: "METRICS_ADDRESS",
        aliases: &[],
        flag: "metrics-address",
        default: "",
        help: "serve Prometheus /metrics on TCP host:port (:port means loopback); empty: off. Read-only, but it shows pool names and use",
    },
    Setting {
        env: "LOG",
        aliases: &[],
        flag: "log",
        default: "info",
        help: "log filter, env_logger syntax (e.g. debug, gipam=trace)",
    },
];

/// Where to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp {
        addr: SocketAddr,
        spec_file: PathBuf,
    },
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub settings: Settings,
    pub state_dir: PathBuf,
    pub listen: Listen,
    /// Journal size that triggers a snapshot (the snapshot's own size
    /// raises it).
    pub compact_bytes: u64,
    /// What one client may hold and for how long.
    pub limits: Limits,
    /// Where Prometheus `/metrics` is served (METRICS_ADDRESS), if at all.
    pub metrics: Option<SocketAddr>,
    pub log: String,
}

/// Why no config came out.
#[derive(Debug)]
pub enum ConfigError {
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
    /// Bad input: print this one line and exit non-zero.
    Invalid(String),
}

fn command() -> Command {
    let mut cmd = Command::new("gipam")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Docker IPAM driver: per-network blocks from routed prefixes, kept durably")
        .after_help("Flags override environment variables, which override defaults.");
    for s in SETTINGS {
        let mut env = s.env.to_string();
        for a in s.aliases {
            env.push_str(", ");
            env.push_str(a);
        }
        let default = if s.default.is_empty() {
            "none".to_string()
        } else {
            s.default.to_string()
        };
        cmd = cmd.arg(
            Arg::new(s.flag)
                .long(s.flag)
                .value_name(s.env)
                .action(ArgAction::Set)
                .help(format!("{} [env: {env}] [default: {default}]", s.help)),
        );
    }
    cmd
}

impl Config {
    /// Builds a config from command-line args (with the program name first)
    /// and environment pairs.
    pub fn from_sources<A, E>(args: A, env: E) -> Result<Config, ConfigError>
    where
        A: IntoIterator<Item = String>,
        E: IntoIterator<Item = (String, String)>,
    {
        let matches = command()
            .try_get_matches_from(args)
            .map_err(|e| match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ConfigError::Info(e.to_string())
                }
                _ => ConfigError::Invalid(e.to_string().lines().next().unwrap_or("").to_string()),
            })?;
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut raw: HashMap<&'static str, String> = HashMap::new();
        for s in SETTINGS {
            let v = matches
                .get_one::<String>(s.flag)
                .cloned()
                .or_else(|| env.get(s.env).cloned())
                .or_else(|| s.aliases.iter().find_map(|a| env.get(*a).cloned()))
                .or_else(|| {
                    (s.env == "STATE_DIR")
                        .then(|| env.get("GIPAM_FILE"))
                        .flatten()
                        .map(|f| parent_dir(f))
                })
                .unwrap_or_else(|| s.default.to_string());
            raw.insert(s.env, v.trim().to_string());
        }
        let get = |k: &str| raw.get(k).cloned().unwrap_or_default();
        let invalid = ConfigError::Invalid;

        let v4 = pools("V4", &get("V4"), Family::V4).map_err(invalid)?;
        let v4 = if v4.is_empty() {
            pools("V4", DEFAULT_V4, Family::V4).map_err(invalid)?
        } else {
            v4
        };
        let v6 = pools("V6", &get("V6"), Family::V6).map_err(invalid)?;
        let v4ab = block("V4AB", &get("V4AB"), Family::V4, &v4).map_err(invalid)?;
        let v6_for_check: &[IpNet] = if v6.is_empty() { &[ULA_SHAPE] } else { &v6 };
        let v6ab = block("V6AB", &get("V6AB"), Family::V6, v6_for_check).map_err(invalid)?;

        let state_dir = PathBuf::from(get("STATE_DIR"));
        if state_dir.as_os_str().is_empty() {
            return Err(invalid(
                "STATE_DIR is empty; give a directory such as /var/lib/gipam".into(),
            ));
        }
        let listen = match get("ADDRESS").as_str() {
            "" => {
                let socket = get("SOCKET");
                if socket.is_empty() {
                    return Err(invalid(
                        "SOCKET is empty; give a path such as /run/docker/plugins/gipam.sock"
                            .into(),
                    ));
                }
                Listen::Unix(PathBuf::from(socket))
            }
            a => {
                let addr = tcp_address(a).map_err(invalid)?;
                let remote = boolean("ALLOW_REMOTE", &get("ALLOW_REMOTE")).map_err(invalid)?;
                if !addr.ip().is_loopback() && !remote {
                    return Err(invalid(format!(
                        "ADDRESS={a} is not a loopback address: gipam has no authentication, so every host that reaches it could allocate, release and list addresses; use 127.0.0.1:PORT, or set ALLOW_REMOTE=true to serve other hosts"
                    )));
                }
                let spec_file = PathBuf::from(get("SPEC_FILE"));
                if spec_file.as_os_str().is_empty() {
                    return Err(invalid(
                        "SPEC_FILE is empty; give a path such as /etc/docker/plugins/gipam.spec"
                            .into(),
                    ));
                }
                Listen::Tcp { addr, spec_file }
            }
        };
        let limits = Limits {
            max_connections: count("MAX_CONNECTIONS", &get("MAX_CONNECTIONS"), 1, 1 << 20)
                .map_err(invalid)?,
            client_timeout: seconds("CLIENT_TIMEOUT", &get("CLIENT_TIMEOUT")).map_err(invalid)?,
        };
        let metrics = match get("METRICS_ADDRESS").as_str() {
            "" => None,
            a => Some(tcp_address(a).map_err(|_| {
                invalid(format!(
                    "METRICS_ADDRESS={a} is not host:port (e.g. 127.0.0.1:9115 or :9115)"
                ))
            })?),
        };
        let log = get("LOG");
        check_log_filter(&log).map_err(invalid)?;
        let compact = get("COMPACT_BYTES");
        let compact_bytes = compact
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 4096)
            .ok_or_else(|| {
                invalid(format!(
                    "COMPACT_BYTES={compact} is not a number of bytes >= 4096"
                ))
            })?;
        Ok(Config {
            settings: Settings { v4, v6, v4ab, v6ab },
            state_dir,
            listen,
            compact_bytes,
            limits,
            metrics,
            log,
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
