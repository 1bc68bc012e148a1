//! Parsers for single setting values: pool lists, block sizes, log
//! filters, listen addresses, booleans, counts and durations. Each error is
//! one line that starts with the setting as the user gave it ([`Given`]:
//! `--v4ab 40` for a flag, `V4AB=40` for the environment) and says what
//! would be valid.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::ipam::Family;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, by its long name (`v4ab`).
    Flag(&'static str),
    /// An environment variable, by the name it was found under (`V4AB`,
    /// or an alias such as `GIPAM_V4AB`).
    Env(String),
    /// Not given: the default, named by the setting's environment name.
    Default(&'static str),
}

/// A setting's value as the user gave it, so that messages and fixes
/// name what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub origin: Origin,
    pub text: String,
}

impl Given {
    /// The setting given `value` the same way: `--v4 X` or `V4=X`.
    pub fn with(&self, value: &str) -> String {
        match &self.origin {
            Origin::Flag(flag) if value.is_empty() => format!("--{flag} \"\""),
            Origin::Flag(flag) => format!("--{flag} {value}"),
            Origin::Env(name) => format!("{name}={value}"),
            Origin::Default(name) => format!("{name}={value}"),
        }
    }

    /// The flag (`--v4ab`) or variable (`V4AB`) it was given as.
    pub fn name(&self) -> String {
        match &self.origin {
            Origin::Flag(flag) => format!("--{flag}"),
            Origin::Env(name) => name.clone(),
            Origin::Default(name) => name.to_string(),
        }
    }

    /// Whether it came from the command line.
    pub fn is_flag(&self) -> bool {
        matches!(self.origin, Origin::Flag(_))
    }
}

impl fmt::Display for Given {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with(&self.text))
    }
}

pub(super) fn parent_dir(file: &str) -> String {
    std::path::Path::new(file)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".to_string())
}

/// Parses a comma-separated list of canonical, non-overlapping CIDRs.
pub(super) fn pools(given: &Given, family: Family) -> Result<Vec<IpNet>, String> {
    let mut out: Vec<IpNet> = Vec::new();
    for item in given
        .text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let net = crate::ipam::parse_net(item).map_err(|why| {
            format!(
                "{given}: {item:?} is not a CIDR such as {}: {why}",
                example(family)
            )
        })?;
        if Family::of_net(&net) != family {
            return Err(format!("{given}: {item} is not an {family} prefix"));
        }
        if net.trunc() != net {
            return Err(format!(
                "{given}: {item} has host bits set; use {}",
                net.trunc()
            ));
        }
        if let Some(o) = out.iter().find(|o| o.contains(&net) || net.contains(*o)) {
            return Err(format!(
                "{given}: {item} overlaps {o}; list each prefix once"
            ));
        }
        out.push(net);
    }
    Ok(out)
}

pub(super) fn example(family: Family) -> &'static str {
    match family {
        Family::V4 => "10.40.0.0/16",
        Family::V6 => "2001:db8:7700::/48",
    }
}

/// Parses a block size that at least one main pool can hold.
pub(super) fn block(given: &Given, family: Family, mains: &[IpNet]) -> Result<u8, String> {
    let max = family.bits();
    let n: u8 = given
        .text
        .trim_start_matches('/')
        .parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("{given} is not a prefix length from 1 to {max}"))?;
    if !mains.is_empty() && mains.iter().all(|m| m.prefix_len() > n) {
        let list: Vec<String> = mains.iter().map(|m| m.to_string()).collect();
        return Err(format!(
            "{given} is larger than every main {family} pool ({}); use a longer prefix",
            list.join(", ")
        ));
    }
    Ok(n)
}

/// Checks an env_logger filter (`info`, `gipam=debug,warp=warn`, `trace/regex`):
/// env_logger itself only warns about a bad one and starts with defaults.
pub(super) fn check_log_filter(given: &Given) -> Result<(), String> {
    let text = given.text.as_str();
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let directives = text.split_once('/').map_or(text, |(d, _)| d);
    for d in directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let ok = match d.split_once('=') {
            Some((target, level)) => {
                !target.is_empty() && LEVELS.contains(&level.to_ascii_lowercase().as_str())
            }
            // A bare word is a level or a module path (all levels).
            None => d
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == ':'),
        };
        if !ok {
            return Err(format!(
                "{given}: {d:?} is not a log directive; use a level ({}) or module=level",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// `host:port`, `[v6]:port` or `:port` (loopback).
pub(super) fn tcp_address(given: &Given) -> Result<SocketAddr, String> {
    let text = given.text.as_str();
    let bad = || format!("{given} is not host:port (e.g. 127.0.0.1:8181 or :8181)");
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| bad())
}

/// `true`/`false` (and the usual spellings of each).
pub(super) fn boolean(given: &Given) -> Result<bool, String> {
    match given.text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{given} is not true or false")),
    }
}

/// A whole number from `min` to `max`.
pub(super) fn count(given: &Given, min: usize, max: usize) -> Result<usize, String> {
    given
        .text
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{given} is not a whole number from {min} to {max}"))
}

/// Seconds, fractions allowed (`5`, `0.5`), from 0.05 to 3600.
pub(super) fn seconds(given: &Given) -> Result<Duration, String> {
    given
        .text
        .parse::<f64>()
        .ok()
        .filter(|s| (0.05..=3600.0).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{given} is not a number of seconds from 0.05 to 3600"))
}
