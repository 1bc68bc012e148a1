//! Strict parsing of every address and CIDR field, and short quotes of
//! bad input in replies and the log.

use serde_json::{Value, json};

use super::{Daemon, call, daemon};

/// Leading zeros and anything after `/` that is not a prefix length are
/// refused in every field that takes an address or a CIDR, naming the
/// field and the text; Docker's own requests still pass.
#[test]
fn addresses_and_cidrs_are_parsed_strictly_in_every_field() {
    let d = daemon();
    let mut c = d.client();
    let (s, v) = call(
        &mut c,
        "IpamDriver.RequestPool",
        json!({"AddressSpace":"LocalDefault","Pool":"10.123.0.0/24","SubPool":"","Options":{},"V6":false}),
    );
    assert_eq!(s, 200, "{v}");
    let id = v["PoolID"].as_str().expect("PoolID").to_string();
    let rp = |pool: &str, sub: &str, v6: bool| json!({"AddressSpace":"LocalDefault","Pool":pool,"SubPool":sub,"Options":{},"V6":v6});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "IpamDriver.RequestPool",
            rp("010.083.000.000/24", "", false),
            "pool \"010.083.000.000/24\" is not a CIDR such as 10.1.0.0/24: an IPv4 octet has a leading zero",
        ),
        (
            "IpamDriver.RequestPool",
            rp("10.123.0.50/garbage", "", false),
            "pool \"10.123.0.50/garbage\" is not a CIDR such as 10.1.0.0/24: the text after '/' must be a prefix length from 0 to 32",
        ),
        (
            "IpamDriver.RequestPool",
            rp("10.9.0.0/024", "", false),
            "pool \"10.9.0.0/024\"",
        ),
        (
            "IpamDriver.RequestPool",
            rp("2001:db8:1::/064", "", true),
            "pool \"2001:db8:1::/064\" is not a CIDR such as 10.1.0.0/24: the text after '/' must be a prefix length from 0 to 128",
        ),
        (
            "IpamDriver.RequestPool",
            rp("10.9.0.0/16", "10.9.001.0/24", false),
            "ip range \"10.9.001.0/24\" is not a CIDR such as 10.1.0.0/24: an IPv4 octet has a leading zero",
        ),
        (
            "IpamDriver.RequestPool",
            rp("10.9.0.0/16", "10.9.1.0/+24", false),
            "ip range \"10.9.1.0/+24\"",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID":id,"Address":"10.123.0.50/garbage","Options":null}),
            "address \"10.123.0.50/garbage\" is not an IP address: the text after '/' must be a prefix length",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID":id,"Address":"010.123.000.050","Options":null}),
            "address \"010.123.000.050\" is not an IP address: an IPv4 octet has a leading zero",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID":id,"Address":"10.123.0.001","Options":{"RequestAddressType":"com.docker.network.gateway"}}),
            "gateway address \"10.123.0.001\" is not an IP address: an IPv4 octet has a leading zero",
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID":id,"Address":"10.123.0.5/33"}),
            "address \"10.123.0.5/33\" is not an IP address",
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID":"LocalDefault/010.123.0.0/24","Address":"10.123.0.5"}),
            "pool id \"LocalDefault/010.123.0.0/24\" is malformed",
        ),
        (
            "IpamDriver.ReleasePool",
            json!({"PoolID":"LocalDefault/10.123.0.0/024"}),
            "pool id \"LocalDefault/10.123.0.0/024\" is malformed",
        ),
    ];
    for (method, body, want) in cases {
        let (s, v) = call(&mut c, method, body.clone());
        assert_ne!(s, 200, "{method} {body} was accepted: {v}");
        let e = v["Err"].as_str().expect("Err");
        assert!(e.contains(want), "{method} {body}: {e:?} lacks {want:?}");
    }
    // The forms dockerd sends pass: a plain address, and one with the
    // pool's prefix length.
    for a in ["10.123.0.7", "10.123.0.8/24"] {
        let body = json!({"PoolID":id,"Address":a,"Options":null});
        let (s, v) = call(&mut c, "IpamDriver.RequestAddress", body);
        assert_eq!(s, 200, "{a}: {v}");
    }
}

/// Bad settings are strict too: refused at start, with one line that
/// every IPAM call answers.
#[test]
fn a_main_pool_with_leading_zeros_is_refused_at_start() {
    let mut d = Daemon::new(&["--v4", "010.040.000.000/16"]);
    d.spawn().expect("a refused setting still answers");
    let mut c = d.client();
    let body =
        json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":false});
    let (status, v) = call(&mut c, "IpamDriver.RequestPool", body);
    assert_eq!(status, 500, "{v}");
    let err = v["Err"].as_str().expect("Err");
    assert!(err.contains("--v4 010.040.000.000/16"), "{err}");
    assert!(err.contains("leading zero"), "{err}");
    assert!(!d.state.exists(), "nothing written");
}

/// A 60 KiB field comes back as a short prefix, in the reply and the log.
#[test]
fn errors_quote_only_a_short_prefix_of_the_input() {
    let mut d = daemon();
    let mut c = d.client();
    let long = "9".repeat(60_000);
    let bodies = [
        ("IpamDriver.RequestPool", json!({"Pool": long})),
        ("IpamDriver.RequestPool", json!({"AddressSpace": long})),
        (
            "IpamDriver.RequestPool",
            json!({"Options": {long.clone(): "1"}}),
        ),
        ("IpamDriver.RequestPool", json!({"Options": {"v4ab": long}})),
        ("IpamDriver.RequestPool", json!({"V6": long})),
        ("IpamDriver.ReleasePool", json!({"PoolID": long})),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID":"LocalDefault/10.40.0.0/24","Address":long}),
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID":"LocalDefault/10.40.0.0/24","Options":{"com.docker.network.endpoint.macaddress":long}}),
        ),
    ];
    for (method, body) in bodies {
        let (s, v) = call(&mut c, method, body);
        assert_ne!(s, 200, "{method}: {v}");
        let e = v["Err"].as_str().expect("Err");
        assert!(e.len() < 400, "{method}: a {} byte error", e.len());
    }
    let path = format!("/{long}");
    let (s, b) = c.raw("POST", &path[..8000], b"{}").expect("raw");
    assert_eq!(s, 404);
    assert!(b.len() < 600, "404 body of {} bytes", b.len());
    // The log quotes no more than the replies do.
    assert!(d.stop(), "clean stop");
    let log = std::fs::read_to_string(&d.log).expect("log");
    assert!(
        log.contains("is not a CIDR"),
        "the errors are logged: {log}"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 700, "a log line of {longest} bytes");
}
