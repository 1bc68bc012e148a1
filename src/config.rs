//! Settings: one definition each, read from flags, then the environment
//! (with the GIPAM_-prefixed aliases of the original gipam), then the
//! default; validated into a [`Config`] before anything starts. Sources are
//! passed in (args and an env iterator), so tests never touch the process
//! environment.
//!
//! Where the line between refusing and exiting lies: only a command line
//! that cannot be parsed, or a place to listen that is not valid (SOCKET,
//! ADDRESS, SPEC_FILE, ALLOW_REMOTE), is [`ConfigError::Invalid`] and stops
//! gipam (exit 2): with no place to listen there is no one to answer. Every
//! other value gipam refuses, from a flag or the environment alike, comes
//! back as [`Config::core`]`= Err(`[`Refused`]`)`: gipam still listens and
//! answers every IPAM request with the reason (a managed plugin's settings
//! are its environment, and Docker shows a plugin's answers, never its
//! output). LOG, MAX_CONNECTIONS and CLIENT_TIMEOUT then serve with their
//! defaults.

mod fleet;
mod table;
mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::ArgMatches;
use ipnet::IpNet;

use crate::api::server::Limits;
use crate::ipam::{Family, Settings};
pub use fleet::{FleetConfig, valid_host_id};
use table::*;
use values::*;
pub use values::{Given, Origin};

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

/// Where to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp {
        addr: SocketAddr,
        spec_file: PathBuf,
    },
}

/// Where and how gipam answers: valid whenever there is a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serve {
    pub listen: Listen,
    /// What one client may hold and for how long.
    pub limits: Limits,
    /// Where Prometheus `/metrics` is served (METRICS_ADDRESS), if at all.
    pub metrics: Option<SocketAddr>,
    pub log: String,
}

/// What gipam serves with: the allocator's settings and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    pub settings: Settings,
    pub state_dir: PathBuf,
    /// Journal size that triggers a snapshot (the snapshot's own size
    /// raises it).
    pub compact_bytes: u64,
    /// How V4 and V6 were given: a fix for main pools that strand live
    /// networks is written the same way.
    pub v4: Given,
    pub v6: Given,
    /// Ask Docker for every endpoint's MAC (RequiresMACAddress).
    pub requires_mac: bool,
    /// The pool-tree file loaded at start (F7), if any.
    pub pools: Option<PathBuf>,
    /// Fleet mode (F9), when ETCD_ENDPOINTS is set.
    pub fleet: Option<FleetConfig>,
}

/// The settings gipam refuses, each with its one-line reason (which
/// starts with the setting as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub Vec<(Given, String)>);

impl Refused {
    /// Every reason, on one line.
    pub fn reasons(&self) -> String {
        let all: Vec<&str> = self.0.iter().map(|(_, why)| why.as_str()).collect();
        all.join("; ")
    }
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub serve: Serve,
    /// What to serve with, or the settings gipam refuses; then it answers
    /// every IPAM request with the reason (see the module doc).
    pub core: Result<Core, Refused>,
}

/// Why gipam does not start at all.
#[derive(Debug)]
pub enum ConfigError {
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
    /// A command line that cannot be parsed, or no valid place to listen:
    /// print this one line and exit 2.
    Invalid(String),
}

/// Every setting's value and where it came from.
struct Sources(Vec<(&'static str, Given)>);

impl Sources {
    fn read(matches: &ArgMatches, env: &HashMap<String, String>) -> Sources {
        let given = |s: &Setting| -> Given {
            let found = matches
                .get_one::<String>(s.flag)
                .map(|v| (Origin::Flag(s.flag), v.clone()))
                .or_else(|| {
                    env.get(s.env)
                        .map(|v| (Origin::Env(s.env.into()), v.clone()))
                })
                .or_else(|| {
                    s.aliases
                        .iter()
                        .find_map(|a| env.get(*a).map(|v| (Origin::Env((*a).into()), v.clone())))
                })
                .or_else(|| {
                    (s.env == "STATE_DIR")
                        .then(|| env.get("GIPAM_FILE"))
                        .flatten()
                        .map(|f| (Origin::Env("GIPAM_FILE".into()), parent_dir(f)))
                });
            let (origin, text) =
                found.unwrap_or_else(|| (Origin::Default(s.env), s.default.to_string()));
            Given {
                origin,
                text: text.trim().to_string(),
            }
        };
        Sources(SETTINGS.iter().map(|s| (s.env, given(s))).collect())
    }

    fn get(&self, env: &'static str) -> Given {
        self.0
            .iter()
            .find(|(e, _)| *e == env)
            .map(|(_, g)| g.clone())
            .unwrap_or(Given {
                origin: Origin::Default(env),
                text: String::new(),
            })
    }
}

/// Keeps a parsed value, or records why `given` is refused.
fn keep<T>(refused: &mut Vec<(Given, String)>, given: &Given, r: Result<T, String>) -> Option<T> {
    r.map_err(|why| refused.push((given.clone(), why))).ok()
}

/// Where to listen; an error stops gipam (module doc).
fn listen(src: &Sources) -> Result<Listen, String> {
    let address = src.get("ADDRESS");
    if address.text.is_empty() {
        let socket = src.get("SOCKET");
        if socket.text.is_empty() {
            return Err(format!(
                "{} is empty; give a path such as /run/docker/plugins/gipam.sock",
                socket.name()
            ));
        }
        return Ok(Listen::Unix(PathBuf::from(socket.text)));
    }
    let addr = tcp_address(&address)?;
    let remote = boolean(&src.get("ALLOW_REMOTE"))?;
    if !addr.ip().is_loopback() && !remote {
        let allow = if address.is_flag() {
            "--allow-remote true"
        } else {
            "ALLOW_REMOTE=true"
        };
        return Err(format!(
            "{address} is not a loopback address: gipam has no authentication, so every host that reaches it could allocate, release and list addresses; use 127.0.0.1:PORT, or set {allow} to serve other hosts"
        ));
    }
    let spec = src.get("SPEC_FILE");
    if spec.text.is_empty() {
        return Err(format!(
            "{} is empty; give a path such as /etc/docker/plugins/gipam.spec",
            spec.name()
        ));
    }
    Ok(Listen::Tcp {
        addr,
        spec_file: PathBuf::from(spec.text),
    })
}

/// The allocator's settings and the state's place; `None` when one of
/// them is refused (recorded in `refused`).
fn core(src: &Sources, refused: &mut Vec<(Given, String)>) -> Option<Core> {
    let (v4g, v6g) = (src.get("V4"), src.get("V6"));
    let v4 = match keep(refused, &v4g, pools(&v4g, Family::V4)) {
        Some(v) if v.is_empty() => {
            let default = Given {
                origin: Origin::Default("V4"),
                text: DEFAULT_V4.into(),
            };
            keep(refused, &default, pools(&default, Family::V4))
        }
        other => other,
    };
    let v6 = keep(refused, &v6g, pools(&v6g, Family::V6));
    // A block size is checked against the pools only when they are valid.
    let v4abg = src.get("V4AB");
    let mains4 = v4.as_deref().unwrap_or(&[]);
    let v4ab = keep(refused, &v4abg, block(&v4abg, Family::V4, mains4));
    let v6abg = src.get("V6AB");
    let mains6: &[IpNet] = match &v6 {
        Some(v) if v.is_empty() => &[ULA_SHAPE],
        Some(v) => v,
        None => &[],
    };
    let v6ab = keep(refused, &v6abg, block(&v6abg, Family::V6, mains6));
    let dir = src.get("STATE_DIR");
    let state_dir = if dir.text.is_empty() {
        let why = format!(
            "{} is empty; give a directory such as /var/lib/gipam",
            dir.name()
        );
        refused.push((dir, why));
        None
    } else {
        Some(PathBuf::from(&dir.text))
    };
    let compact = src.get("COMPACT_BYTES");
    let bytes = compact
        .text
        .parse::<u64>()
        .ok()
        .filter(|n| *n >= 4096)
        .ok_or_else(|| format!("{compact} is not a number of bytes >= 4096"));
    let compact_bytes = keep(refused, &compact, bytes);
    let mac = src.get("REQUIRE_MAC");
    let requires_mac = keep(refused, &mac, boolean(&mac));
    let fleet = fleet::fleet(src, refused);
    Some(Core {
        settings: Settings {
            v4: v4?,
            v6: v6?,
            v4ab: v4ab?,
            v6ab: v6ab?,
        },
        state_dir: state_dir?,
        compact_bytes: compact_bytes?,
        requires_mac: requires_mac?,
        v4: v4g,
        v6: v6g,
        pools: Some(src.get("POOLS").text)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        fleet: fleet?,
    })
}

/// clap's error as one line (help and version are not errors).
fn clap_error(e: clap::Error) -> ConfigError {
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            ConfigError::Info(e.to_string())
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("");
            ConfigError::Invalid(format!(
                "{}; gipam --help lists every flag",
                first.trim_start_matches("error: ")
            ))
        }
    }
}

impl Config {
    /// Builds a config from command-line args (with the program name first)
    /// and environment pairs.
    pub fn from_sources<A, E>(args: A, env: E) -> Result<Config, ConfigError>
    where
        A: IntoIterator<Item = String>,
        E: IntoIterator<Item = (String, String)>,
    {
        let matches = command().try_get_matches_from(args).map_err(clap_error)?;
        let env: HashMap<String, String> = env.into_iter().collect();
        let src = Sources::read(&matches, &env);
        let listen = listen(&src).map_err(ConfigError::Invalid)?;

        let mut refused = Vec::new();
        let defaults = Limits::default();
        let max = src.get("MAX_CONNECTIONS");
        let timeout = src.get("CLIENT_TIMEOUT");
        let limits = Limits {
            max_connections: keep(&mut refused, &max, count(&max, 1, 1 << 20))
                .unwrap_or(defaults.max_connections),
            client_timeout: keep(&mut refused, &timeout, seconds(&timeout))
                .unwrap_or(defaults.client_timeout),
        };
        let metrics = src.get("METRICS_ADDRESS");
        let metrics = match metrics.text.as_str() {
            "" => None,
            _ => keep(&mut refused, &metrics, tcp_address(&metrics)),
        };
        let log = src.get("LOG");
        let log = match keep(&mut refused, &log, check_log_filter(&log)) {
            Some(()) => log.text,
            None => "info".to_string(),
        };
        let core = core(&src, &mut refused);
        let core = match core {
            Some(core) if refused.is_empty() => Ok(core),
            _ => Err(Refused(refused)),
        };
        Ok(Config {
            serve: Serve {
                listen,
                limits,
                metrics,
                log,
            },
            core,
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
