//! `gipam status [--json]`: every held pool with its network, family,
//! size, used and free addresses (with a bar) and whether gipam chose it
//! (auto) or Docker named it (explicit) and its shared network or owner
//! (`shared=NAME`, `id=OWNER`); totals per family; the store's journal,
//! last snapshot and last fsync; in fleet mode, this host, etcd's health
//! and the hosts. Network names come from Docker when it answers, else the
//! PoolID stands alone.
//!
//! `--json` prints one object of a stable shape (fields are only added):
//! `/Gipam.Status` as the daemon answers it, with `Network` (a name or
//! null) and `Free` on each pool, `Totals`, and `Docker` (null when Docker
//! answered, else why not). See the README, "gipam status".

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{client, docker, table};

/// How long Docker may take to tell network names.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(3);

fn num(v: &Value, key: &str) -> u128 {
    v.get(key)
        .and_then(|x| {
            x.as_u64()
                .map(u128::from)
                .or_else(|| x.as_f64().map(|f| f as u128))
        })
        .unwrap_or(0)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Reads the status and, when Docker answers, the network names.
pub fn collect(socket: &Path) -> Result<Value, String> {
    let mut status = client::call(socket, "Gipam.Status", &Value::Null)?;
    let view = docker::read_blocking(DOCKER_TIMEOUT);
    let mut totals = json!({});
    if let Some(pools) = status.get_mut("Pools").and_then(Value::as_array_mut) {
        for p in pools.iter_mut() {
            let network = match (&view, text(p, "Pool").parse::<ipnet::IpNet>()) {
                (Ok(v), Ok(subnet)) => v.network_of(&subnet).map(|n| n.name.clone()),
                _ => None,
            };
            let (size, used) = (num(p, "Size"), num(p, "Leases"));
            p["Network"] = json!(network);
            p["Free"] = json!(size.saturating_sub(used));
            let family = text(p, "Family").to_string();
            let t = totals.as_object_mut().map(|o| {
                o.entry(family)
                    .or_insert(json!({"Pools": 0, "Size": 0, "Leases": 0}))
            });
            if let Some(t) = t {
                t["Pools"] = json!(num(t, "Pools") + 1);
                t["Size"] = json!(num(t, "Size").saturating_add(size));
                t["Leases"] = json!(num(t, "Leases") + used);
            }
        }
    }
    status["Totals"] = totals;
    status["Docker"] = match view {
        Ok(_) => Value::Null,
        Err(e) => json!(e),
    };
    Ok(status)
}

/// A pool's `shared=NAME` and `id=OWNER`, as `--ipam-opt` gave them; `-`
/// for neither.
fn labels(p: &Value) -> String {
    let mut v: Vec<String> = [("Shared", "shared"), ("Owner", "id"), ("TreePool", "pool")]
        .iter()
        .filter_map(|(k, opt)| {
            p.get(*k)
                .and_then(Value::as_str)
                .map(|v| format!("{opt}={v}"))
        })
        .collect();
    let tags: Vec<&str> = p
        .get("Tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !tags.is_empty() {
        v.push(format!("tags={}", tags.join("+")));
    }
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// `fleet: host a, etcd ok, 3 hosts (…)` from the status's `Fleet`.
fn fleet_line(f: &Value) -> String {
    let etcd = match (
        f.get("EtcdOk").and_then(Value::as_bool).unwrap_or(false),
        f.get("EtcdError").and_then(Value::as_str),
    ) {
        (true, _) => "etcd ok".to_string(),
        (false, Some(e)) => format!("etcd failing: {e}"),
        (false, None) => "etcd not answered yet".to_string(),
    };
    let last = match f.get("LastRoundTripSeconds").and_then(Value::as_f64) {
        Some(s) => format!(", last {:.2} ms", s * 1e3),
        None => String::new(),
    };
    format!(
        "fleet: host {}, {etcd}, {} (revision {}; {}{last}; {}, {}, {})\n",
        text(f, "Host"),
        table::plural(num(f, "Hosts"), "host"),
        f.get("Revision").and_then(Value::as_i64).unwrap_or(0),
        table::plural(num(f, "RoundTrips"), "etcd round trip"),
        table::plural(num(f, "Conflicts"), "conflict"),
        match num(f, "Retries") {
            1 => "1 retry".to_string(),
            n => format!("{n} retries"),
        },
        table::plural(num(f, "Errors"), "error"),
    )
}

/// The table a person reads.
pub fn render(status: &Value) -> String {
    let pools = status
        .get("Pools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = String::new();
    if pools.is_empty() {
        out.push_str("no pools held\n");
    } else {
        let rows: Vec<Vec<String>> = pools
            .iter()
            .map(|p| {
                let (size, used) = (num(p, "Size"), num(p, "Leases"));
                vec![
                    text(p, "PoolID").to_string(),
                    p.get("Network")
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                        .to_string(),
                    text(p, "Family").to_string(),
                    table::count(size),
                    used.to_string(),
                    table::count(size.saturating_sub(used)),
                    table::bar(used, size),
                    if p.get("Auto").and_then(Value::as_bool).unwrap_or(false) {
                        "auto".into()
                    } else {
                        "explicit".into()
                    },
                    labels(p),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &[
                "POOL", "NETWORK", "FAMILY", "SIZE", "USED", "FREE", "USE", "KIND", "LABELS",
            ],
            &rows,
        ));
    }
    out.push('\n');
    let mut totals = Vec::new();
    for fam in ["IPv4", "IPv6"] {
        if let Some(t) = status.get("Totals").and_then(|t| t.get(fam)) {
            let (size, used) = (num(t, "Size"), num(t, "Leases"));
            totals.push(format!(
                "{fam}: {}, {} of {} addresses used",
                table::plural(num(t, "Pools"), "pool"),
                used,
                table::count(size)
            ));
        }
    }
    out.push_str(&format!(
        "total: {}, {}{}{}\n",
        table::plural(pools.len() as u128, "pool"),
        table::plural(num(status, "Leases"), "lease"),
        if totals.is_empty() { "" } else { " (" },
        if totals.is_empty() {
            String::new()
        } else {
            totals.join("; ") + ")"
        }
    ));
    if let Some(m) = status.get("Mains") {
        let list = |k: &str| {
            let v: Vec<&str> = m
                .get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        out.push_str(&format!(
            "main pools: V4={} V6={}\n",
            list("V4"),
            list("V6")
        ));
    }
    if let Some(s) = status.get("Store") {
        let snapshot = match s.get("LastSnapshot").and_then(Value::as_f64) {
            Some(t) => format!("last written {}", table::utc(t)),
            None => "none written since start".into(),
        };
        let fsync = match s.get("LastFsyncSeconds").and_then(Value::as_f64) {
            Some(f) => format!("{:.2} ms", f * 1e3),
            None => "none yet".into(),
        };
        out.push_str(&format!(
            "store: journal {}, snapshot {} ({snapshot}), last fsync {fsync}, {}\n",
            table::bytes(num(s, "JournalBytes") as u64),
            table::bytes(num(s, "SnapshotBytes") as u64),
            table::plural(num(s, "Errors"), "error")
        ));
    }
    if let Some(f) = status.get("Fleet").filter(|f| f.is_object()) {
        out.push_str(&fleet_line(f));
    }
    if let Some(e) = status.get("Docker").and_then(Value::as_str) {
        out.push_str(&format!("network names unknown: {e}\n"));
    }
    out
}

/// `gipam status [--json]`.
pub fn run(socket: &Path, json: bool) -> Result<(), String> {
    let status = collect(socket)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn pools_show_their_shared_network_or_owner_and_the_fleet_a_line() {
        let pool = |id: &str, shared: Option<&str>, owner: Option<&str>| {
            json!({"PoolID": id, "Pool": "10.77.0.0/24", "Family": "IPv4", "Size": 254,
                   "Leases": 1, "Auto": true, "Shared": shared, "Owner": owner, "TreePool": null})
        };
        let status = json!({
            "Pools": [
                pool("LocalDefault/10.77.0.0/24", Some("n1"), None),
                pool("LocalDefault/10.77.1.0/24", None, Some("web")),
                pool("LocalDefault/10.77.2.0/24", Some("n2"), Some("db")),
                pool("LocalDefault/10.77.3.0/24", None, None),
            ],
            "Leases": 4,
            "Fleet": {"Host": "a", "EtcdOk": true, "EtcdError": null, "Endpoints": ["http://e1:2379"],
                      "Revision": 42, "Hosts": 3, "RoundTrips": 120, "LastRoundTripSeconds": 0.0012,
                      "Conflicts": 1, "Retries": 1, "Errors": 0},
        });
        let out = super::render(&status);
        let last_column = |id: &str| {
            let line = out.lines().find(|l| l.starts_with(id)).expect(id);
            line.split_whitespace().last().map(str::to_string)
        };
        assert!(
            out.lines().next().is_some_and(|h| h.ends_with("LABELS")),
            "{out}"
        );
        assert_eq!(
            last_column("LocalDefault/10.77.0.0/24").as_deref(),
            Some("shared=n1")
        );
        assert_eq!(
            last_column("LocalDefault/10.77.1.0/24").as_deref(),
            Some("id=web")
        );
        assert_eq!(
            last_column("LocalDefault/10.77.2.0/24").as_deref(),
            Some("shared=n2,id=db")
        );
        assert_eq!(
            last_column("LocalDefault/10.77.3.0/24").as_deref(),
            Some("-")
        );
        assert!(
            out.contains("fleet: host a, etcd ok, 3 hosts (revision 42; 120 etcd round trips, last 1.20 ms; 1 conflict, 1 retry, 0 errors)\n"),
            "{out}"
        );

        let mut failing = status.clone();
        failing["Fleet"]["EtcdOk"] = json!(false);
        failing["Fleet"]["EtcdError"] = json!("connection refused");
        assert!(
            super::render(&failing)
                .contains("fleet: host a, etcd failing: connection refused, 3 hosts")
        );
        let mut local = status;
        local["Fleet"] = json!(null);
        assert!(!super::render(&local).contains("fleet:"));
    }
}
