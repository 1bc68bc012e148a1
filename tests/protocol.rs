//! The plugin protocol over a real unix socket, with the exact JSON dockerd
//! sends (protocol doc §2), against the real gipam binary.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Client, Daemon};
use serde_json::{Value, json};

const V4: &str = "10.40.0.0/16";
const V6: &str = "2001:db8:7700::/48";

fn daemon() -> Daemon {
    Daemon::start(&["--v4", V4, "--v6", V6])
}

fn ok(c: &mut Client, method: &str, body: Value) -> Value {
    let (status, v) = c.call(method, &body).expect("call");
    assert_eq!(status, 200, "{method} {body} -> {v}");
    v
}

fn err(c: &mut Client, method: &str, body: Value) -> String {
    let (status, v) = c.call(method, &body).expect("call");
    assert_ne!(status, 200, "{method} {body} should fail, got {v}");
    v["Err"].as_str().expect("Err is a string").to_string()
}

fn pool(c: &mut Client, pool: &str, sub: &str, v6: bool, opts: Value) -> Value {
    ok(
        c,
        "IpamDriver.RequestPool",
        json!({"AddressSpace":"LocalDefault","Pool":pool,"SubPool":sub,"Options":opts,"V6":v6}),
    )
}

fn address(c: &mut Client, id: &str, want: &str, opts: Value) -> String {
    let v = ok(
        c,
        "IpamDriver.RequestAddress",
        json!({"PoolID":id,"Address":want,"Options":opts}),
    );
    v["Address"].as_str().expect("Address").to_string()
}

fn gateway_opts() -> Value {
    json!({"RequestAddressType":"com.docker.network.gateway"})
}

/// Every file of the state directory (but the lock) and its bytes.
fn state_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("state dir")
        .filter_map(|e| e.ok())
        // The pid and the acknowledgement record are bookkeeping, not
        // state: the writer rewrites `acked` when it falls idle after the
        // last good request, whenever that is.
        .filter(|e| !["lock", "pid", "acked"].contains(&e.file_name().to_string_lossy().as_ref()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read state file"),
            )
        })
        .collect()
}

#[test]
fn handshake_calls_take_an_empty_body_without_content_type() {
    let d = daemon();
    let mut c = d.client();
    assert_eq!(
        ok(&mut c, "Plugin.Activate", Value::Null),
        json!({"Implements":["IpamDriver"]})
    );
    assert_eq!(
        ok(&mut c, "IpamDriver.GetCapabilities", Value::Null),
        json!({"RequiresMACAddress":true,"RequiresRequestReplay":false})
    );
    assert_eq!(
        ok(&mut c, "IpamDriver.GetDefaultAddressSpaces", Value::Null),
        json!({"LocalDefaultAddressSpace":"LocalDefault","GlobalDefaultAddressSpace":"GlobalDefault"})
    );
}

/// REQUIRE_MAC=false (hosts with ipvlan networks, whose driver refuses an
/// endpoint that has a MAC) tells Docker not to give endpoints one.
#[test]
fn require_mac_false_asks_docker_for_no_mac() {
    let d = Daemon::start(&["--require-mac", "false"]);
    assert_eq!(
        ok(&mut d.client(), "IpamDriver.GetCapabilities", Value::Null),
        json!({"RequiresMACAddress":false,"RequiresRequestReplay":false})
    );
}

/// Protocol doc §2.7, step by step.
#[test]
fn worked_example_of_the_protocol_doc() {
    let d = daemon();
    let mut c = d.client();
    let v = pool(&mut c, "10.10.0.0/16", "10.10.5.0/24", false, json!({}));
    // gipam names a gateway in Data (the subnet's first usable address, as
    // a gateway request would have got); the daemon ignores it when the
    // user gave --gateway and requests that one, which replaces it.
    assert_eq!(
        v,
        json!({"PoolID":"LocalDefault/10.10.0.0/16/10.10.5.0/24","Pool":"10.10.0.0/16","Data":{"com.docker.network.gateway":"10.10.0.1/16"}})
    );
    let id = "LocalDefault/10.10.0.0/16/10.10.5.0/24";
    assert_eq!(
        address(&mut c, id, "10.10.5.254", gateway_opts()),
        "10.10.5.254/16"
    );
    // The replaced gateway is free again.
    assert_eq!(
        address(&mut c, id, "10.10.0.1", Value::Null),
        "10.10.0.1/16"
    );
    assert_eq!(
        address(&mut c, id, "10.10.1.5", Value::Null),
        "10.10.1.5/16"
    );
    // The range's first address is never handed out dynamically.
    assert_eq!(address(&mut c, id, "", Value::Null), "10.10.5.1/16");
    let rel = |c: &mut Client, a: &str| {
        ok(
            c,
            "IpamDriver.ReleaseAddress",
            json!({"PoolID":id,"Address":a}),
        )
    };
    assert_eq!(rel(&mut c, "10.10.5.1"), json!({}));
    assert_eq!(rel(&mut c, "10.10.0.1"), json!({}));
    assert_eq!(rel(&mut c, "10.10.5.254"), json!({}));
    assert_eq!(rel(&mut c, "10.10.1.5"), json!({}));
    assert_eq!(
        ok(&mut c, "IpamDriver.ReleasePool", json!({"PoolID":id})),
        json!({})
    );
    // Idempotent: releasing again is fine.
    assert_eq!(rel(&mut c, "10.10.5.1"), json!({}));
    assert_eq!(
        ok(&mut c, "IpamDriver.ReleasePool", json!({"PoolID":id})),
        json!({})
    );
}

#[test]
fn automatic_blocks_dual_stack_and_gateways() {
    let d = daemon();
    let mut c = d.client();
    let a = pool(&mut c, "", "", false, json!({}));
    assert_eq!(a["Pool"], "10.40.0.0/24");
    assert_eq!(a["PoolID"], "LocalDefault/10.40.0.0/24");
    let b = pool(&mut c, "", "", false, Value::Null);
    assert_eq!(b["Pool"], "10.40.1.0/24");
    let six = pool(&mut c, "", "", true, json!({}));
    assert_eq!(six["Pool"], "2001:db8:7700::/64");
    let small = pool(&mut c, "", "", false, json!({"v4ab":"28"}));
    assert_eq!(small["Pool"], "10.40.2.0/28");
    let sized = pool(&mut c, "0.0.0.0/26", "", false, json!({}));
    assert_eq!(sized["Pool"], "10.40.2.64/26");
    let sized6 = pool(&mut c, "::/80", "", true, json!({}));
    assert_eq!(sized6["Pool"], "2001:db8:7700:1::/80");

    let id = a["PoolID"].as_str().expect("id");
    assert_eq!(address(&mut c, id, "", gateway_opts()), "10.40.0.1/24");
    let mac = json!({"com.docker.network.endpoint.macaddress":"02:42:0a:28:00:02"});
    assert_eq!(address(&mut c, id, "", mac), "10.40.0.2/24");
    assert_eq!(address(&mut c, id, "", Value::Null), "10.40.0.3/24");
    let id6 = six["PoolID"].as_str().expect("id6");
    assert_eq!(
        address(&mut c, id6, "", gateway_opts()),
        "2001:db8:7700::1/64"
    );
    assert_eq!(address(&mut c, id6, "", Value::Null), "2001:db8:7700::2/64");
}

#[test]
fn the_daemons_overlap_loop_never_gets_the_same_block_twice() {
    let d = daemon();
    let mut c = d.client();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let v = pool(&mut c, "", "", false, json!({}));
        assert!(seen.insert(v["Pool"].to_string()), "{v} handed out twice");
    }
}

#[test]
fn pool_ids_and_allocations_survive_a_restart() {
    let mut d = daemon();
    let mut c = d.client();
    let v = pool(&mut c, "", "", false, json!({}));
    let id = v["PoolID"].as_str().expect("id").to_string();
    address(&mut c, &id, "", gateway_opts());
    let held = address(&mut c, &id, "", Value::Null);
    assert!(d.stop(), "clean exit on SIGTERM");
    assert!(!d.socket.exists(), "socket removed on shutdown");
    d.spawn().expect("restart");
    let mut c = d.client();
    // The same PoolID still works, the held address stays held.
    let ip = held.split('/').next().expect("ip");
    let e = err(
        &mut c,
        "IpamDriver.RequestAddress",
        json!({"PoolID":id,"Address":ip,"Options":null}),
    );
    assert!(e.contains("already in use"), "{e}");
    assert_eq!(address(&mut c, &id, "", Value::Null), "10.40.0.3/24");
    // The next network still gets a new block.
    assert_eq!(
        pool(&mut c, "", "", false, json!({}))["Pool"],
        "10.40.1.0/24"
    );
}

/// Every request product.md lists as bad input: a non-200 reply whose Err
/// names the object, and not one byte of the state changed.
#[test]
fn bad_input_is_refused_and_leaves_the_state_alone() {
    let d = Daemon::start(&["--v4", "10.40.0.0/30", "--v4ab", "31", "--v6", V6]);
    let mut c = d.client();
    let id = pool(&mut c, "10.50.0.0/30", "", false, json!({}))["PoolID"]
        .as_str()
        .expect("id")
        .to_string();
    address(&mut c, &id, "", gateway_opts());
    address(&mut c, &id, "", Value::Null);
    pool(&mut c, "", "", false, json!({}));
    pool(&mut c, "", "", false, json!({}));

    let rp = |pool: &str, sub: &str, v6: bool, opts: Value| json!({"AddressSpace":"LocalDefault","Pool":pool,"SubPool":sub,"Options":opts,"V6":v6});
    let ra = |id: &str, a: &str| json!({"PoolID":id,"Address":a,"Options":null});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "IpamDriver.RequestPool",
            rp("", "", false, json!({})),
            "no free /31 block",
        ),
        (
            "IpamDriver.RequestPool",
            rp("10.50.0.0/24", "", false, json!({})),
            "overlaps pool LocalDefault/10.50.0.0/30",
        ),
        (
            "IpamDriver.RequestPool",
            rp("10.60.0.1/24", "", false, json!({})),
            "host bits set",
        ),
        (
            "IpamDriver.RequestPool",
            rp("10.60.0.0/24", "", true, json!({})),
            "is not IPv6",
        ),
        (
            "IpamDriver.RequestPool",
            rp("2001:db8:9::/64", "", false, json!({})),
            "is not IPv4",
        ),
        (
            "IpamDriver.RequestPool",
            rp("10.60.0.0/24", "10.61.0.0/25", false, json!({})),
            "not inside subnet",
        ),
        (
            "IpamDriver.RequestPool",
            rp("", "10.61.0.0/25", false, json!({})),
            "needs a subnet",
        ),
        (
            "IpamDriver.RequestPool",
            rp("not-a-cidr", "", false, json!({})),
            "\"not-a-cidr\" is not a CIDR",
        ),
        (
            "IpamDriver.RequestPool",
            rp("0.0.0.0/0", "", false, json!({})),
            "covers every address",
        ),
        (
            "IpamDriver.RequestPool",
            rp("", "", false, json!({"v4bits":"28"})),
            "known options: v4ab, v6ab, serial, reuse",
        ),
        (
            "IpamDriver.RequestPool",
            rp("", "", false, json!({"reuse":"later"})),
            "reuse=\"later\" is invalid: want immediate or delayed",
        ),
        (
            "IpamDriver.RequestPool",
            rp("", "", false, json!({"v4ab":"40"})),
            "v4ab=\"40\"",
        ),
        (
            "IpamDriver.RequestPool",
            json!({"AddressSpace":"Elsewhere","Pool":"","SubPool":"","Options":{},"V6":false}),
            "address space \"Elsewhere\"",
        ),
        (
            "IpamDriver.RequestAddress",
            ra(&id, ""),
            "no free address left in pool LocalDefault/10.50.0.0/30",
        ),
        (
            "IpamDriver.RequestAddress",
            ra(&id, "10.50.0.1"),
            "10.50.0.1 already in use",
        ),
        (
            "IpamDriver.RequestAddress",
            ra(&id, "10.50.0.0"),
            "network address",
        ),
        (
            "IpamDriver.RequestAddress",
            ra(&id, "10.50.0.3"),
            "broadcast address",
        ),
        (
            "IpamDriver.RequestAddress",
            ra(&id, "10.99.0.1"),
            "outside pool",
        ),
        (
            "IpamDriver.RequestAddress",
            ra(&id, "2001:db8::1"),
            "outside pool",
        ),
        (
            "IpamDriver.RequestAddress",
            ra(&id, "10.50.0.300"),
            "not an IP address",
        ),
        (
            "IpamDriver.RequestAddress",
            ra("LocalDefault/10.77.0.0/24", ""),
            "pool LocalDefault/10.77.0.0/24 not found",
        ),
        (
            "IpamDriver.RequestAddress",
            ra("garbage", ""),
            "pool id \"garbage\" is malformed",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID":id,"Address":"","Options":{"com.docker.network.endpoint.macaddress":"zz"}}),
            "mac address \"zz\"",
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID":id,"Address":"10.99.0.1"}),
            "outside pool",
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID":id,"Address":""}),
            "names no address",
        ),
        (
            "IpamDriver.ReleasePool",
            json!({"PoolID":"LocalDefault/10.0.0.1/8"}),
            "malformed",
        ),
        (
            "IpamDriver.RequestPool",
            json!(["not", "an", "object"]),
            "not valid JSON",
        ),
        (
            "IpamDriver.RequestPool",
            json!({"V6":"yes"}),
            "not valid JSON",
        ),
    ];
    for (method, body, want) in cases {
        let before = state_files(&d.state);
        let e = err(&mut c, method, body.clone());
        assert!(e.contains(want), "{method} {body}: {e:?} lacks {want:?}");
        assert_eq!(
            state_files(&d.state),
            before,
            "{method} {body} changed the state"
        );
    }

    // Malformed bytes, empty bodies, oversized bodies, unknown endpoints.
    let raw: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/IpamDriver.RequestPool",
            b"{\"Pool\":".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "POST",
            "/IpamDriver.RequestAddress",
            Vec::new(),
            400,
            "body is empty",
        ),
        (
            "POST",
            "/IpamDriver.ReleaseAddress",
            vec![0xff, 0xfe],
            400,
            "not valid JSON",
        ),
        (
            "POST",
            "/IpamDriver.RequestPool",
            vec![b' '; 100_000],
            413,
            "larger than",
        ),
        (
            "POST",
            "/IpamDriver.Nope",
            b"{}".to_vec(),
            404,
            "does not exist",
        ),
        (
            "GET",
            "/IpamDriver.GetCapabilities",
            Vec::new(),
            405,
            "POST",
        ),
    ];
    for (m, path, body, status, want) in raw {
        let before = state_files(&d.state);
        // A fresh connection each: the server may close one after a 413.
        let mut c = d.client();
        let (s, b) = c.raw(m, path, &body).expect("raw call");
        let v: Value = serde_json::from_slice(&b).expect("error body is JSON");
        let e = v["Err"].as_str().expect("Err");
        assert_eq!(s, status, "{m} {path}: {e}");
        assert!(e.contains(want), "{m} {path}: {e:?} lacks {want:?}");
        assert_eq!(
            state_files(&d.state),
            before,
            "{m} {path} changed the state"
        );
    }
    // And the daemon still serves normally.
    let mut c = d.client();
    assert_eq!(
        ok(&mut c, "IpamDriver.GetCapabilities", Value::Null)["RequiresMACAddress"],
        true
    );
}

#[test]
fn status_and_leases_are_readable_over_the_socket() {
    let d = daemon();
    let mut c = d.client();
    let id = pool(&mut c, "", "", false, json!({}))["PoolID"]
        .as_str()
        .expect("id")
        .to_string();
    address(&mut c, &id, "", gateway_opts());
    let mac = json!({"com.docker.network.endpoint.macaddress":"02:42:0a:28:00:02","com.docker.network.endpoint.name":"web-1"});
    address(&mut c, &id, "", mac);
    // The fields of the first shape stay as they were; F11 only added some.
    let status = ok(&mut c, "Gipam.Status", Value::Null);
    assert_eq!(status["Leases"], json!(2));
    assert_eq!(
        status["Pools"],
        json!([{"PoolID":id,"Pool":"10.40.0.0/24","Auto":true,"Leases":2,"Family":"IPv4","Size":254,
            "Shared":null,"Owner":null,"TreePool":null,"Tags":[]}])
    );
    assert_eq!(status["Mains"]["V4"], json!(["10.40.0.0/16"]));
    let store = &status["Store"];
    assert!(
        store["JournalBytes"].as_u64().is_some_and(|n| n > 0),
        "{store}"
    );
    assert!(store["LastFsyncSeconds"].as_f64().is_some(), "{store}");
    assert_eq!(
        (&store["Errors"], &store["Snapshots"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(
        ok(&mut c, "Gipam.Leases", Value::Null)["Leases"][1],
        json!({"PoolID":id,"Address":"10.40.0.2","Gateway":false,"MacAddress":"02:42:0a:28:00:02","Name":"web-1"})
    );
}

#[test]
fn with_address_set_it_serves_tcp_and_writes_the_spec_file() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("plugins/gipam-tcp.spec");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gipam"))
        .arg("--address")
        .arg("127.0.0.1:0")
        .arg("--spec-file")
        .arg(&spec)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start gipam");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !spec.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = std::fs::read_to_string(&spec).expect("spec file written");
    let addr = url.trim().strip_prefix("tcp://").expect("tcp:// url");
    assert!(addr.starts_with("127.0.0.1:"), "{url}");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"POST /IpamDriver.GetCapabilities HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""RequiresMACAddress":true"#), "{reply}");
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().expect("wait").success());
    assert!(!spec.exists(), "spec file removed on shutdown");
}
