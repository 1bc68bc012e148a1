//! Network-level `--ipam-opt` keys.
//!
//! Unknown keys are refused with the list of known ones, because a typo that
//! silently does nothing is worse than an error; an unknown value is refused
//! with the values the key accepts. Keys Docker itself adds (`com.docker.*`)
//! pass.
//!
//! Which pool of the tree a network draws from is an option too (`tags=`,
//! the seed's `scope_filter_tags=`, `pool=`), and so is the seed's owner
//! `id=`, recorded with the network. Reservations and tags themselves live
//! only in the tree, never in options.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Error, Family, Sticky};

/// The keys a user may give with `--ipam-opt`.
pub const KNOWN_OPTIONS: &[&str] = &[
    "v4ab",
    "v6ab",
    "serial",
    "reuse",
    "sticky",
    "tags",
    "shared",
    "scope_filter_tags",
    "pool",
    "id",
];

/// When a released address may be handed out again (F5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reuse {
    /// At once: the lowest free address goes next, as in Docker's own IPAM,
    /// so a container restarted on its own gets its address back.
    #[default]
    Immediate,
    /// Only when the pool has nothing else free, oldest release first (for
    /// hosts that fear stale ARP/ND caches).
    Delayed,
}

impl Reuse {
    /// The values `reuse=` accepts.
    pub const VALUES: &'static str = "immediate or delayed";

    /// Whether this is the default (left out of the journal and snapshot).
    pub fn is_default(&self) -> bool {
        *self == Reuse::Immediate
    }
}

impl fmt::Display for Reuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reuse::Immediate => "immediate",
            Reuse::Delayed => "delayed",
        })
    }
}

/// Docker's own spelling of the serial option (moby `ipamapi/labels.go`).
pub const DOCKER_SERIAL: &str = "com.docker.network.ipam.serial";

/// What the options of one RequestPool ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolOptions {
    /// Block size for an automatic IPv4 block.
    pub v4ab: Option<u8>,
    /// Block size for an automatic IPv6 block.
    pub v6ab: Option<u8>,
    /// Rotate through the pool instead of taking the lowest free address.
    pub serial: bool,
    /// When released addresses come back.
    pub reuse: Reuse,
    /// `tags=` / `scope_filter_tags=`: draw from a tree pool carrying all.
    pub tags: Vec<String>,
    /// `pool=NAME`: draw from this tree pool.
    pub pool: Option<String>,
    /// `id=`: the network's owner, recorded with it (python-docker-ipam).
    pub owner: Option<String>,
    /// Which remembered addresses are held back (F6).
    pub sticky: Sticky,
    /// `shared=NAME`: the fleet-wide network NAME (F9).
    pub shared: Option<String>,
}

impl PoolOptions {
    /// Validates an options map.
    pub fn parse(opts: &HashMap<String, String>) -> Result<Self, Error> {
        let mut out = PoolOptions::default();
        // Sorted so the first error reported does not depend on hash order.
        let mut keys: Vec<&String> = opts.keys().collect();
        keys.sort();
        for key in keys {
            let value = &opts[key];
            match key.as_str() {
                "v4ab" => out.v4ab = Some(prefix(key, value, Family::V4)?),
                "v6ab" => out.v6ab = Some(prefix(key, value, Family::V6)?),
                "serial" | DOCKER_SERIAL => out.serial |= boolean(key, value)?,
                "reuse" => out.reuse = reuse(key, value)?,
                "tags" | "scope_filter_tags" => {
                    for t in tag_list(value) {
                        if !out.tags.contains(&t) {
                            out.tags.push(t);
                        }
                    }
                }
                "pool" => out.pool = Some(word(key, value)?),
                "id" => out.owner = Some(word(key, value)?),
                "shared" => out.shared = Some(shared_name(key, value)?),
                "sticky" => {
                    out.sticky = Sticky::parse(value).ok_or_else(|| Error::BadOption {
                        key: key.clone(),
                        value: value.clone(),
                        want: Sticky::VALUES.to_string(),
                    })?
                }
                k if k.starts_with("com.docker.") => {}
                _ => {
                    return Err(Error::UnknownOption {
                        key: key.clone(),
                        known: KNOWN_OPTIONS,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The block size asked for `family`, if any.
    pub fn block(&self, family: Family) -> Option<u8> {
        match family {
            Family::V4 => self.v4ab,
            Family::V6 => self.v6ab,
        }
    }
}

fn prefix(key: &str, value: &str, family: Family) -> Result<u8, Error> {
    let max = family.bits();
    let bad = || Error::BadOption {
        key: key.to_string(),
        value: value.to_string(),
        want: format!("a prefix length from 1 to {max}"),
    };
    let n: u8 = value
        .trim()
        .trim_start_matches('/')
        .parse()
        .map_err(|_| bad())?;
    if n == 0 || n > max {
        return Err(bad());
    }
    Ok(n)
}

/// Tags as users write them: `a,b`, also with the quotes and brackets the
/// seed's README examples leave in (`"null_routed"`, `["a","b"]`).
fn tag_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|t| {
            t.trim()
                .trim_matches(|c| matches!(c, '"' | '\'' | '[' | ']' | ' '))
        })
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// A pool name or owner id: the text without surrounding quotes, not empty.
fn word(key: &str, value: &str) -> Result<String, Error> {
    let w = value.trim().trim_matches(|c| matches!(c, '"' | '\''));
    if w.is_empty() || w.len() > 128 || w.chars().any(char::is_control) {
        return Err(Error::BadOption {
            key: key.to_string(),
            value: value.to_string(),
            want: "a name of 1 to 128 printable characters".to_string(),
        });
    }
    Ok(w.to_string())
}

/// A shared network's name (F9): it becomes part of etcd keys, so it is
/// kept to letters, digits and `._-`.
fn shared_name(key: &str, value: &str) -> Result<String, Error> {
    let w = value.trim();
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if w.is_empty() || w.len() > 64 || !w.chars().all(ok) {
        return Err(Error::BadOption {
            key: key.to_string(),
            value: value.to_string(),
            want: "a name of 1 to 64 letters, digits, '.', '_' or '-'".to_string(),
        });
    }
    Ok(w.to_string())
}

fn reuse(key: &str, value: &str) -> Result<Reuse, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "immediate" => Ok(Reuse::Immediate),
        "delayed" => Ok(Reuse::Delayed),
        _ => Err(Error::BadOption {
            key: key.to_string(),
            value: value.to_string(),
            want: Reuse::VALUES.to_string(),
        }),
    }
}

fn boolean(key: &str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(Error::BadOption {
            key: key.to_string(),
            value: value.to_string(),
            want: "true or false".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_known_keys() {
        let o = PoolOptions::parse(&map(&[("v4ab", "28"), ("v6ab", "/80"), ("serial", "true")]))
            .expect("valid");
        assert_eq!(o.v4ab, Some(28));
        assert_eq!(o.v6ab, Some(80));
        assert!(o.serial);
        let o = PoolOptions::parse(&map(&[(DOCKER_SERIAL, "true")])).expect("valid");
        assert!(o.serial);
        assert_eq!(o.reuse, Reuse::Immediate);
        let o = PoolOptions::parse(&map(&[("reuse", "Delayed")])).expect("valid");
        assert_eq!(o.reuse, Reuse::Delayed);
    }

    #[test]
    fn docker_keys_pass_and_unknown_keys_fail() {
        assert!(PoolOptions::parse(&map(&[("com.docker.network.whatever", "x")])).is_ok());
        let err = PoolOptions::parse(&map(&[("v4bits", "28")])).expect_err("typo");
        assert!(
            err.to_string()
                .contains("v4ab, v6ab, serial, reuse, sticky"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_fail() {
        for (k, v) in [
            ("v4ab", "0"),
            ("v4ab", "33"),
            ("v4ab", "x"),
            ("v6ab", "129"),
            ("serial", "maybe"),
            ("reuse", "later"),
            ("reuse", ""),
        ] {
            assert!(PoolOptions::parse(&map(&[(k, v)])).is_err(), "{k}={v}");
        }
        let err = PoolOptions::parse(&map(&[("sticky", "container")])).expect_err("bad value");
        let want = r#"ipam option sticky="container" is invalid: want name, mac or off"#;
        assert_eq!(err.to_string(), want);
        for (v, want) in [
            ("mac", Sticky::Mac),
            ("Name", Sticky::Name),
            ("off", Sticky::Off),
        ] {
            let o = PoolOptions::parse(&map(&[("sticky", v)])).expect("valid");
            assert_eq!(o.sticky, want, "sticky={v}");
        }
        let err = PoolOptions::parse(&map(&[("reuse", "later")])).expect_err("bad value");
        let want = r#"ipam option reuse="later" is invalid: want immediate or delayed"#;
        assert_eq!(err.to_string(), want);
    }
}
