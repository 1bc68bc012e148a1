//! What Docker reports, read back for the scenarios' assertions: `docker
//! network inspect`, `docker inspect` of an endpoint, and the addresses and
//! routes `ip` shows inside a container.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::docker_ok;

pub fn parse_json(s: &str, what: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {s}"))
}

/// Asserts that `text` (a CLI error, say) contains each of `parts`.
pub fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "no {part:?} in: {text}");
    }
}

/// `docker network inspect -f FORMAT NET`.
pub fn network_inspect(net: &str, format: &str) -> String {
    docker_ok(&["network", "inspect", "-f", format, net])
}

/// `docker network inspect -f '{{json .IPAM.Config}}'`.
pub fn ipam_config(net: &str) -> Vec<Value> {
    match parse_json(
        &network_inspect(net, "{{json .IPAM.Config}}"),
        "IPAM.Config",
    ) {
        Value::Array(v) => v,
        other => panic!("IPAM.Config of {net} is not a list: {other}"),
    }
}

/// The IPAM.Config entries of one family.
pub fn configs_of(cfg: &[Value], v6: bool) -> Vec<&Value> {
    cfg.iter()
        .filter(|c| {
            c["Subnet"]
                .as_str()
                .and_then(|s| s.parse::<IpNet>().ok())
                .is_some_and(|n| matches!(n, IpNet::V6(_)) == v6)
        })
        .collect()
}

/// The IPAM.Config entry of one family (exactly one must exist).
pub fn config_of(cfg: &[Value], v6: bool) -> &Value {
    let list = configs_of(cfg, v6);
    assert_eq!(
        list.len(),
        1,
        "want one IPv{} entry in {cfg:?}",
        if v6 { 6 } else { 4 }
    );
    list[0]
}

/// The subnet of `network`'s IPAM.Config entry of one family (exactly one
/// must exist).
pub fn subnet_of(network: &str, v6: bool) -> IpNet {
    net(field(config_of(&ipam_config(network), v6), "Subnet"))
}

/// `docker inspect` of a container's endpoint on one network.
pub fn endpoint(container: &str, net: &str) -> Value {
    let out = docker_ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        container,
    ]);
    let v = parse_json(&out, "NetworkSettings.Networks");
    let ep = v[net].clone();
    assert!(ep.is_object(), "{container} has no endpoint on {net}: {v}");
    ep
}

/// The global addresses of eth0, as `ip addr` inside the container shows them.
pub fn addrs_inside(container: &str) -> Vec<IpNet> {
    let out = docker_ok(&["exec", container, "ip", "addr", "show", "dev", "eth0"]);
    out.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("inet ") || l.starts_with("inet6 "))
        .filter(|l| l.contains("scope global"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|a| {
            a.parse::<IpNet>()
                .unwrap_or_else(|e| panic!("bad address {a} in ip addr ({e}): {out}"))
        })
        .collect()
}

pub fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a CIDR: {e}"))
}

/// An address; a `/len` after it is ignored.
pub fn ip(s: &str) -> IpAddr {
    let a = s.split_once('/').map_or(s, |(a, _)| a);
    a.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not an address: {e}"))
}

pub fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// An address as Docker reports it; 20.10 reports some with a `/len`.
pub fn addr_field(v: &Value, key: &str) -> IpAddr {
    ip(field(v, key))
}

/// Checks `container`'s endpoint on `network`: the addresses Docker
/// reports (exactly, with their prefix lengths apart) and exactly those on
/// eth0 inside.
pub fn assert_endpoint(container: &str, network: &str, v4: (IpAddr, u8), v6: Option<(IpAddr, u8)>) {
    let ep = endpoint(container, network);
    assert_eq!(ep["IPAddress"], v4.0.to_string(), "{container}: {ep}");
    assert_eq!(ep["IPPrefixLen"], v4.1, "{container}: {ep}");
    match v6 {
        Some((a, len)) => {
            assert_eq!(ep["GlobalIPv6Address"], a.to_string(), "{container}: {ep}");
            assert_eq!(ep["GlobalIPv6PrefixLen"], len, "{container}: {ep}");
        }
        None => assert_eq!(ep["GlobalIPv6Address"], "", "{container}: {ep}"),
    }
    let mut want = vec![IpNet::new(v4.0, v4.1).expect("prefix length")];
    if let Some((a, len)) = v6 {
        want.push(IpNet::new(a, len).expect("prefix length"));
    }
    let inside: HashSet<IpNet> = addrs_inside(container).into_iter().collect();
    assert_eq!(
        inside,
        want.into_iter().collect::<HashSet<_>>(),
        "global addresses of eth0 in {container}"
    );
}

/// The (v4, v6) addresses Docker gave `container` on `network`, after
/// checking that eth0 inside has exactly them.
pub fn endpoint_addrs(container: &str, network: &str) -> (IpAddr, Option<IpAddr>) {
    let ep = endpoint(container, network);
    let a4 = addr_field(&ep, "IPAddress");
    let len4 = ep["IPPrefixLen"].as_u64().expect("IPPrefixLen") as u8;
    let v6 = match field(&ep, "GlobalIPv6Address") {
        "" => None,
        s => Some((
            ip(s),
            ep["GlobalIPv6PrefixLen"]
                .as_u64()
                .expect("GlobalIPv6PrefixLen") as u8,
        )),
    };
    assert_endpoint(container, network, (a4, len4), v6);
    (a4, v6.map(|(a, _)| a))
}

/// Every global address inside the container, with its interface, as `ip
/// -o addr` shows them (`eth0`, `eth1` after `docker network connect`…).
pub fn addrs_by_dev(container: &str) -> Vec<(String, IpNet)> {
    let out = docker_ok(&[
        "exec", container, "ip", "-o", "addr", "show", "scope", "global",
    ]);
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let dev = w.nth(1)?.split('@').next()?.to_string();
            let a = w.nth(1)?;
            Some((dev, net(a)))
        })
        .collect()
}

/// The default route's gateway inside the container for one family, as
/// `ip route` / `ip -6 route` show it; `None` when there is no default
/// route.
pub fn default_route_inside(container: &str, v6: bool) -> Option<IpAddr> {
    let family = if v6 { "-6" } else { "-4" };
    let out = docker_ok(&["exec", container, "ip", family, "route", "show"]);
    out.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("default") && w.next() == Some("via"))
            .then(|| w.next().map(ip))
            .flatten()
    })
}

/// Checks the gateways `container` has on `network` (its only network):
/// the endpoint's `Gateway` and `IPv6Gateway` in `docker inspect` (an
/// empty string for none; 20.10 adds a `/len` to some) and the default
/// routes inside, for each family.
pub fn assert_gateways(container: &str, network: &str, v4: Option<IpAddr>, v6: Option<IpAddr>) {
    let ep = endpoint(container, network);
    for (key, want, v6) in [("Gateway", v4, false), ("IPv6Gateway", v6, true)] {
        let got = match field(&ep, key) {
            "" => None,
            s => Some(ip(s)),
        };
        assert_eq!(got, want, "{container}: {key} in {ep}");
        assert_eq!(
            default_route_inside(container, v6),
            want,
            "{container}: the IPv{} default route inside",
            if v6 { 6 } else { 4 }
        );
    }
}
