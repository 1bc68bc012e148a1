//! `gipam pools show` and `gipam pools apply FILE`: the pool tree of the
//! running gipam as tables (pools, reservations, networks), or the
//! plugin's JSON with `--json`. `apply` sends the file as it is; gipam
//! parses and validates it whole and answers with the tree now in force.

use std::fmt::Write as _;
use std::path::Path;

use super::{Client, http};
use crate::api::wire::PoolsResponse;

/// Calls `path` and returns the reply's JSON, or the plugin's `Err`.
fn call(client: &Client, path: &str, body: &[u8]) -> Result<serde_json::Value, String> {
    let (status, reply) = http::post(&client.socket, path, body)?;
    let value: serde_json::Value = serde_json::from_slice(&reply).map_err(|e| {
        format!(
            "gipam at {} answered {path} with something that is not JSON ({e}); is it an older gipam without the pool tree?",
            client.socket.display()
        )
    })?;
    if status != 200 {
        let err = value
            .get("Err")
            .and_then(|e| e.as_str())
            .unwrap_or("no error message");
        return Err(err.to_string());
    }
    Ok(value)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn out(text: &str) -> Result<(), String> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

fn print(client: &Client, value: serde_json::Value) -> Result<(), String> {
    if client.json {
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        return out(&format!("{text}\n"));
    }
    let reply: PoolsResponse = serde_json::from_value(value)
        .map_err(|e| format!("gipam's pool tree reply is not what this client reads: {e}"))?;
    let head = match reply.changed {
        Some(true) => "pool tree replaced\n",
        Some(false) => "pool tree unchanged (the file is the tree in force)\n",
        None => "",
    };
    out(&format!("{head}{}", table(&reply)))
}

/// `gipam pools show`.
pub fn show(client: &Client) -> Result<(), String> {
    let v = call(client, "/Gipam.Pools", b"")?;
    print(client, v)
}

/// `gipam pools apply FILE`.
pub fn apply(client: &Client, file: &Path) -> Result<(), String> {
    let body = std::fs::read(file)
        .map_err(|e| format!("cannot read pool file {}: {e}", file.display()))?;
    let v =
        call(client, "/Gipam.ApplyPools", &body).map_err(|e| format!("{}: {e}", file.display()))?;
    print(client, v)
}

/// Left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The tree as tables: pools (children indented under their parent, own
/// tags then inherited ones in brackets), then reservations and networks.
pub fn table(reply: &PoolsResponse) -> String {
    if reply.pools.is_empty() {
        return "no pool tree is loaded; load one with POOLS=FILE or gipam pools apply FILE\n"
            .to_string();
    }
    let head = |cols: &[&str]| cols.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    let mut pools = vec![head(&[
        "POOL", "CIDR", "BLOCK", "TAGS", "FLAGS", "NETWORKS", "RESERVED",
    ])];
    let mut reservations = vec![head(&["ADDRESS", "RESERVED FOR", "POOL", "IN USE"])];
    let mut networks = vec![head(&["NETWORK POOL", "TREE POOL", "ID", "LEASES"])];
    for p in &reply.pools {
        let mut tags = p.tags.join(",");
        if !p.inherited_tags.is_empty() {
            if !tags.is_empty() {
                tags.push(' ');
            }
            let _ = write!(tags, "[{}]", p.inherited_tags.join(","));
        }
        let mut flags = Vec::new();
        if p.propagate {
            flags.push("propagate");
        }
        if p.lock_down {
            flags.push("lock_down");
        }
        let mut cidr = p.cidr.clone();
        if !p.exclude.is_empty() {
            let _ = write!(cidr, " -{}", p.exclude.join(",-"));
        }
        pools.push(vec![
            format!("{}{}", "  ".repeat(p.depth), p.name),
            cidr,
            format!("/{}", p.block),
            if tags.is_empty() { "-".into() } else { tags },
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(",")
            },
            p.networks.len().to_string(),
            p.reservations.len().to_string(),
        ]);
        for r in &p.reservations {
            let who = match (&r.name, &r.mac_address) {
                (Some(n), _) => format!("name {n}"),
                (None, Some(m)) => format!("mac {m}"),
                (None, None) => "-".into(),
            };
            let used = if r.leased { "yes" } else { "no" };
            reservations.push(vec![r.address.clone(), who, p.name.clone(), used.into()]);
        }
        for n in &p.networks {
            networks.push(vec![
                n.pool_id.clone(),
                p.name.clone(),
                n.id.clone().unwrap_or_else(|| "-".into()),
                n.leases.to_string(),
            ]);
        }
    }
    let mut out = columns(&pools);
    if reservations.len() > 1 {
        out.push('\n');
        out.push_str(&columns(&reservations));
    }
    if networks.len() > 1 {
        out.push('\n');
        out.push_str(&columns(&networks));
    }
    out
}
