//! `gipam reconcile`'s informational section: the addresses gipam
//! remembers (F6, `/Gipam.Remembered`) for containers that no longer exist
//! — no container has the remembered name, no endpoint the remembered MAC.
//! `--apply` never acts on them: a remembered address is not held, only
//! held back (and a pool hands it to others once it has nothing else free);
//! the list says what waits for a container that may never come back.
//!
//! A stopped container still exists: its name counts, and so does its MAC
//! when Docker keeps it (pinned with `--mac-address`). A random MAC is gone
//! with the stop (Docker makes a new one per start), so an address
//! remembered for one is reported once its container stopped: nothing will
//! come back with that MAC.
//!
//! Like the leaks, only a record in both of gipam's reads (same pool,
//! address, identity and age) is judged: one remembered after the first
//! read is for a container Docker may still have been removing.

use std::net::IpAddr;
use std::path::Path;

use serde_json::{Value, json};

use super::docker::DockerView;
use super::{client, table};

/// One address gipam remembers for a container that left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMemory {
    pub pool_id: String,
    /// False: the pool was released; its memory waits for a pool with its id.
    pub pool_held: bool,
    pub address: IpAddr,
    pub name: Option<String>,
    pub mac: Option<String>,
    /// When, in the pool's clock (its count of remembered releases).
    pub released: u64,
    /// The pool's clock at the read.
    pub pool_releases: u64,
}

impl HeldMemory {
    /// The same record in another read: the pool's clock moves with every
    /// other release, so it is left out.
    fn same(&self, other: &HeldMemory) -> bool {
        (
            &self.pool_id,
            self.address,
            &self.name,
            &self.mac,
            self.released,
        ) == (
            &other.pool_id,
            other.address,
            &other.name,
            &other.mac,
            other.released,
        )
    }

    /// The wire form, as `/Gipam.Remembered` lists it.
    pub fn json(&self) -> Value {
        json!({
            "PoolID": self.pool_id,
            "PoolHeld": self.pool_held,
            "Address": self.address.to_string(),
            "Name": self.name,
            "MacAddress": self.mac,
            "Released": self.released,
            "PoolReleases": self.pool_releases,
        })
    }
}

fn opt(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// Reads what gipam remembers (`/Gipam.Remembered`). An error is kept as
/// the reason the section is missing (a gipam older than this CLI answers
/// that the endpoint does not exist).
pub fn read(socket: &Path) -> Result<Vec<HeldMemory>, String> {
    let v = client::call(socket, "Gipam.Remembered", &Value::Null)?;
    let list = v
        .get("Remembered")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    Ok(list
        .filter_map(|r| {
            Some(HeldMemory {
                pool_id: opt(r, "PoolID")?,
                pool_held: r.get("PoolHeld").and_then(Value::as_bool).unwrap_or(true),
                address: opt(r, "Address")?.parse().ok()?,
                name: opt(r, "Name"),
                mac: opt(r, "MacAddress"),
                released: r.get("Released").and_then(Value::as_u64).unwrap_or(0),
                pool_releases: r.get("PoolReleases").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect())
}

/// The records of `second`, unchanged since `first`, whose container
/// Docker does not have (no container of that name, no endpoint of that
/// MAC). A record with no identity at all is never reported.
pub fn gone(first: &[HeldMemory], docker: &DockerView, second: &[HeldMemory]) -> Vec<HeldMemory> {
    second
        .iter()
        .filter(|r| r.name.is_some() || r.mac.is_some())
        .filter(|r| !docker.has_container(r.name.as_deref(), r.mac.as_deref()))
        .filter(|r| first.iter().any(|f| f.same(r)))
        .cloned()
        .collect()
}

/// The table section: the records, or why there are none to show.
pub fn render(gone: &Result<Vec<HeldMemory>, String>) -> String {
    let list = match gone {
        Ok(list) if list.is_empty() => return String::new(),
        Ok(list) => list,
        Err(e) => return format!("remembered addresses not checked: {e}\n"),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let (who, why) = match (&r.name, &r.mac) {
                (Some(n), _) => (format!("name {n}"), "no container has this name"),
                (None, Some(m)) => (format!("mac {m}"), "no endpoint has this MAC"),
                (None, None) => ("-".into(), "no identity"),
            };
            let pool = if r.pool_held {
                r.pool_id.clone()
            } else {
                format!("{} (released)", r.pool_id)
            };
            vec![who, pool, r.address.to_string(), why.into()]
        })
        .collect();
    let mut out = table::render(&["REMEMBERED FOR", "POOL", "ADDRESS", "WHY"], &rows);
    let (n, it) = match list.len() {
        1 => ("1 address".to_string(), "it"),
        n => (format!("{n} addresses"), "them"),
    };
    out.push_str(&format!(
        "{n} remembered for containers that no longer exist (for information: `--apply` leaves {it})\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(addr: &str, name: Option<&str>, mac: Option<&str>, released: u64) -> HeldMemory {
        HeldMemory {
            pool_id: "LocalDefault/10.9.0.0/24".into(),
            pool_held: true,
            address: addr.parse().unwrap(),
            name: name.map(String::from),
            mac: mac.map(String::from),
            released,
            pool_releases: 9,
        }
    }

    #[test]
    fn only_records_whose_container_is_gone_are_reported() {
        let mut docker = DockerView::default();
        docker.containers.insert("web".into()); // running or stopped
        docker.macs.insert("02:42:0a:09:00:03".into());
        let mut retired = mem("10.9.1.8", Some("db"), None, 0);
        retired.pool_id = "LocalDefault/10.9.1.0/24".into();
        retired.pool_held = false;
        let first = vec![
            mem("10.9.0.2", Some("web"), None, 1),               // exists
            mem("10.9.0.3", None, Some("02:42:0A:09:00:03"), 2), // its MAC exists
            mem("10.9.0.4", Some("gone"), None, 3),              // reported
            mem("10.9.0.5", None, Some("02:42:0a:09:00:05"), 4), // reported
            mem("10.9.0.6", Some("old"), None, 5),               // remembered again
            mem("10.9.0.9", None, None, 8),                      // no identity
            retired.clone(),                                     // reported
        ];
        let mut second = first.clone();
        second[4] = mem("10.9.0.6", Some("old"), None, 10);
        second.push(mem("10.9.0.7", Some("new"), None, 11)); // not in the first
        for r in &mut second {
            r.pool_releases = 12; // other releases in between do not matter
        }
        let gone = gone(&first, &docker, &second);
        let addrs: Vec<String> = gone.iter().map(|r| r.address.to_string()).collect();
        assert_eq!(addrs, ["10.9.0.4", "10.9.0.5", "10.9.1.8"]);
    }

    #[test]
    fn the_section_names_the_identity_and_a_released_pool() {
        let mut retired = mem("10.9.1.8", None, Some("02:42:0a:09:01:08"), 0);
        retired.pool_id = "LocalDefault/10.9.1.0/24".into();
        retired.pool_held = false;
        let out = render(&Ok(vec![mem("10.9.0.4", Some("web"), None, 3), retired]));
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["REMEMBERED", "FOR", "POOL", "ADDRESS", "WHY"]);
        assert_eq!(
            lines[1][..4],
            ["name", "web", "LocalDefault/10.9.0.0/24", "10.9.0.4"]
        );
        assert_eq!(
            lines[2][..5],
            [
                "mac",
                "02:42:0a:09:01:08",
                "LocalDefault/10.9.1.0/24",
                "(released)",
                "10.9.1.8"
            ]
        );
        assert!(out.contains("2 addresses remembered"), "{out}");
        assert_eq!(render(&Ok(vec![])), "");
        assert!(render(&Err("e".into())).starts_with("remembered addresses not checked: e"));
    }
}
