//! `gipam leases [POOL] [--json]`: every leased address, or those of one
//! pool (named by its PoolID, its subnet or its Docker network's name),
//! with what it is (the gateway or an endpoint) and who holds it (MAC,
//! endpoint name).
//!
//! `--json` prints `{"Leases": [...]}` with the fields of `/Gipam.Leases`
//! (`PoolID`, `Address`, `Gateway`, `MacAddress`, `Name`) plus `Network`
//! (a name or null).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{client, docker, table};

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The subnet of a PoolID (`Space/subnet[/range]`).
fn subnet_of(pool_id: &str) -> Option<ipnet::IpNet> {
    let mut parts = pool_id.splitn(4, '/');
    let _space = parts.next()?;
    format!("{}/{}", parts.next()?, parts.next()?).parse().ok()
}

/// Reads the leases (of `pool` only, when given) with network names.
pub fn collect(socket: &Path, pool: Option<&str>) -> Result<Value, String> {
    let reply = client::call(socket, "Gipam.Leases", &Value::Null)?;
    let view = docker::read_blocking(Duration::from_secs(3)).ok();
    let name_of = |id: &str| {
        let subnet = subnet_of(id)?;
        view.as_ref()?.network_of(&subnet).map(|n| n.name.clone())
    };
    let mut leases: Vec<Value> = reply
        .get("Leases")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for l in leases.iter_mut() {
        l["Network"] = json!(name_of(text(l, "PoolID")));
    }
    if let Some(want) = pool {
        let status = client::call(socket, "Gipam.Status", &Value::Null)?;
        let held: Vec<String> = status
            .get("Pools")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|p| text(p, "PoolID").to_string()).collect())
            .unwrap_or_default();
        let matches = |id: &str| {
            id == want
                || subnet_of(id).is_some_and(|s| s.to_string() == want)
                || name_of(id).as_deref() == Some(want)
        };
        if !held.iter().any(|id| matches(id)) {
            return Err(format!(
                "no held pool is {want:?} (by PoolID, subnet or network name); `gipam status` lists the pools"
            ));
        }
        leases.retain(|l| matches(text(l, "PoolID")));
    }
    Ok(json!({ "Leases": leases }))
}

/// The table a person reads.
pub fn render(leases: &Value) -> String {
    let list = leases
        .get("Leases")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return "no leases\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|l| {
            let or_dash = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
            vec![
                text(l, "PoolID").to_string(),
                or_dash("Network"),
                text(l, "Address").to_string(),
                if l.get("Gateway").and_then(Value::as_bool).unwrap_or(false) {
                    "gateway".into()
                } else {
                    "endpoint".into()
                },
                or_dash("MacAddress"),
                or_dash("Name"),
            ]
        })
        .collect();
    let mut out = table::render(
        &["POOL", "NETWORK", "ADDRESS", "KIND", "MAC", "NAME"],
        &rows,
    );
    out.push_str(&format!("{}\n", table::plural(list.len() as u128, "lease")));
    out
}

/// `gipam leases [POOL] [--json]`.
pub fn run(socket: &Path, pool: Option<&str>, json: bool) -> Result<(), String> {
    let leases = collect(socket, pool)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&leases).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(&leases));
    }
    Ok(())
}
