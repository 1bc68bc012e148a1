//! `gipam fleet [--json]` and `gipam fleet forget HOST [--json]` (F9,
//! F11): the fleet as the local gipam sees it — every host with whether it
//! runs, when it was last seen and what it holds, then the shared networks
//! and etcd's health — and the explicit release of a host that is gone for
//! good (gipam refuses it while the host is alive).
//!
//! `--json` prints the plugin's reply as it is: `/Gipam.Fleet` or
//! `/Gipam.FleetForget` (shapes in `api::wire`, `FleetResponse` and
//! `FleetForgetResponse`; see the README, "gipam fleet").

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{client, table};
use crate::api::wire::{FleetForgetResponse, FleetResponse};

/// Blocks listed by name in a host's row before the rest are counted.
const BLOCKS_SHOWN: usize = 3;

/// `3s ago`, `4m ago`, `2h ago`, `5d ago`, or `never`; a heartbeat
/// stamped ahead of `now` (clocks apart) reads as `0s ago`.
pub fn age(seen: Option<u64>, now: u64) -> String {
    let Some(seen) = seen else {
        return "never".into();
    };
    let s = now.saturating_sub(seen);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// `0`, `2: 10.1.0.0/24,10.1.1.0/24`, `12: a,b,c,… (+9)`.
fn blocks(list: &[String]) -> String {
    if list.is_empty() {
        return "0".into();
    }
    let shown = list[..list.len().min(BLOCKS_SHOWN)].join(",");
    match list.len().checked_sub(BLOCKS_SHOWN) {
        Some(more) if more > 0 => format!("{}: {shown},… (+{more})", list.len()),
        _ => format!("{}: {shown}", list.len()),
    }
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// The etcd line: `etcd: ok (…)`, `etcd: unreachable: why (…)`.
fn etcd_line(f: &FleetResponse) -> String {
    let health = match (f.etcd_ok, &f.etcd_error) {
        (true, _) => "ok".to_string(),
        (false, Some(e)) => format!("failing: {e}"),
        (false, None) => "not answered yet".to_string(),
    };
    format!(
        "etcd: {health} (endpoints {}, view at revision {})\n",
        list_or_dash(&f.endpoints),
        f.revision
    )
}

/// The tables a person reads; `now` is Unix seconds (ages are relative).
pub fn render(f: &FleetResponse, now: u64) -> String {
    let mut out = String::new();
    if f.hosts.is_empty() {
        out.push_str("no hosts in the fleet yet\n");
    } else {
        let rows: Vec<Vec<String>> = f
            .hosts
            .iter()
            .map(|h| {
                vec![
                    h.host.clone(),
                    if h.alive { "yes" } else { "no" }.into(),
                    age(h.last_seen, now),
                    blocks(&h.blocks),
                    list_or_dash(&h.shared),
                    h.shared_addresses.to_string(),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &[
                "HOST",
                "ALIVE",
                "LAST SEEN",
                "BLOCKS",
                "SHARED",
                "ADDRESSES",
            ],
            &rows,
        ));
    }
    out.push('\n');
    if f.shared.is_empty() {
        out.push_str("no shared networks\n");
    } else {
        let rows: Vec<Vec<String>> = f
            .shared
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.subnet.clone(),
                    s.gateway.clone().unwrap_or_else(|| "-".into()),
                    list_or_dash(&s.holders),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &["NAME", "SUBNET", "GATEWAY", "HOLDERS"],
            &rows,
        ));
    }
    out.push('\n');
    let alive = f.hosts.iter().filter(|h| h.alive).count();
    out.push_str(&format!(
        "this host: {}; {}, {alive} alive\n",
        f.host,
        table::plural(f.hosts.len() as u128, "host")
    ));
    out.push_str(&etcd_line(f));
    out
}

/// What a forget released, for a person.
pub fn render_forgotten(f: &FleetForgetResponse) -> String {
    format!(
        "host {} forgotten\nblocks released: {}\nshared networks left: {}\nshared addresses released: {}\n",
        f.host,
        if f.blocks.is_empty() {
            "none".into()
        } else {
            f.blocks.join(", ")
        },
        if f.shared_left.is_empty() {
            "none".into()
        } else {
            f.shared_left.join(", ")
        },
        f.shared_addresses
    )
}

fn print_json(v: &Value) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, method: &str) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| {
        format!("gipam's {method} reply is not what this client reads ({e}); is the plugin older than this gipam binary?")
    })
}

/// `gipam fleet [--json]`.
pub fn run(socket: &Path, json: bool) -> Result<(), String> {
    let v = client::call(socket, "Gipam.Fleet", &Value::Null)?;
    if json {
        return print_json(&v);
    }
    let f: FleetResponse = decode(v, "Gipam.Fleet")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    print!("{}", render(&f, now));
    Ok(())
}

/// `gipam fleet forget HOST [--json]`.
pub fn forget(socket: &Path, host: &str, json: bool) -> Result<(), String> {
    let v = client::call(socket, "Gipam.FleetForget", &json!({ "Host": host }))?;
    if json {
        return print_json(&v);
    }
    let f: FleetForgetResponse = decode(v, "Gipam.FleetForget")?;
    print!("{}", render_forgotten(&f));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{FleetHost, FleetShared, MainsStatus};

    const NOW: u64 = 1_796_113_802;

    fn host(name: &str, alive: bool, seen: Option<u64>, blocks: usize) -> FleetHost {
        FleetHost {
            host: name.into(),
            alive,
            last_seen: seen,
            blocks: (0..blocks).map(|i| format!("10.77.{i}.0/24")).collect(),
            shared: if alive { vec!["n1".into()] } else { vec![] },
            shared_addresses: if alive { 2 } else { 0 },
        }
    }

    fn fleet() -> FleetResponse {
        FleetResponse {
            host: "a".into(),
            revision: 42,
            etcd_ok: true,
            etcd_error: None,
            endpoints: vec!["http://e1:2379".into(), "http://e2:2379".into()],
            hosts: vec![
                host("a", true, Some(NOW - 3), 2),
                host("b", false, Some(NOW - 7200), 5),
                host("c", false, None, 0),
            ],
            shared: vec![FleetShared {
                name: "n1".into(),
                subnet: "10.77.200.0/24".into(),
                gateway: Some("10.77.200.1".into()),
                holders: vec!["a".into(), "b".into()],
            }],
            mains: Some(MainsStatus {
                v4: vec!["10.77.0.0/16".into()],
                v6: vec![],
            }),
        }
    }

    #[test]
    fn ages_read_like_a_person_says_them() {
        for (seen, want) in [
            (None, "never"),
            (Some(NOW), "0s ago"),
            (Some(NOW - 59), "59s ago"),
            (Some(NOW - 60), "1m ago"),
            (Some(NOW - 3599), "59m ago"),
            (Some(NOW - 3600), "1h ago"),
            (Some(NOW - 86_400 * 3), "3d ago"),
            // Stamped by a clock ahead of ours.
            (Some(NOW + 5), "0s ago"),
        ] {
            assert_eq!(age(seen, NOW), want, "{seen:?}");
        }
    }

    #[test]
    fn long_block_lists_are_shortened() {
        let list = |n: usize| -> Vec<String> { (0..n).map(|i| format!("b{i}")).collect() };
        assert_eq!(blocks(&list(0)), "0");
        assert_eq!(blocks(&list(1)), "1: b0");
        assert_eq!(blocks(&list(3)), "3: b0,b1,b2");
        assert_eq!(blocks(&list(12)), "12: b0,b1,b2,… (+9)");
    }

    #[test]
    fn the_fleet_table_lists_hosts_shared_networks_and_etcd() {
        let out = render(&fleet(), NOW);
        let want = "\
HOST  ALIVE  LAST SEEN  BLOCKS                                            SHARED  ADDRESSES
a     yes    3s ago     2: 10.77.0.0/24,10.77.1.0/24                      n1      2
b     no     2h ago     5: 10.77.0.0/24,10.77.1.0/24,10.77.2.0/24,… (+2)  -       0
c     no     never      0                                                 -       0

NAME  SUBNET          GATEWAY      HOLDERS
n1    10.77.200.0/24  10.77.200.1  a,b

this host: a; 3 hosts, 1 alive
etcd: ok (endpoints http://e1:2379,http://e2:2379, view at revision 42)
";
        assert_eq!(out, want, "\n{out}");
    }

    #[test]
    fn an_empty_fleet_and_a_failing_etcd_say_so() {
        let mut f = fleet();
        f.hosts.clear();
        f.shared.clear();
        f.etcd_ok = false;
        f.etcd_error = Some("etcd at http://e1:2379 failed: connection refused".into());
        let out = render(&f, NOW);
        assert!(
            out.starts_with("no hosts in the fleet yet\n\nno shared networks\n"),
            "{out}"
        );
        assert!(
            out.ends_with("etcd: failing: etcd at http://e1:2379 failed: connection refused (endpoints http://e1:2379,http://e2:2379, view at revision 42)\n"),
            "{out}"
        );
        f.etcd_error = None;
        assert!(render(&f, NOW).contains("etcd: not answered yet"));
    }

    #[test]
    fn a_forget_tells_what_was_released() {
        let mut f = FleetForgetResponse {
            host: "b".into(),
            blocks: vec!["10.77.3.0/24".into(), "10.77.4.0/24".into()],
            shared_left: vec!["n1".into()],
            shared_addresses: 3,
        };
        assert_eq!(
            render_forgotten(&f),
            "host b forgotten\nblocks released: 10.77.3.0/24, 10.77.4.0/24\nshared networks left: n1\nshared addresses released: 3\n"
        );
        f.blocks.clear();
        f.shared_left.clear();
        f.shared_addresses = 0;
        assert_eq!(
            render_forgotten(&f),
            "host b forgotten\nblocks released: none\nshared networks left: none\nshared addresses released: 0\n"
        );
    }
}
