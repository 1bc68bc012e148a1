//! `gipam fleet` and `/Gipam.Fleet` against a real gipam on a temporary
//! socket: not in fleet mode, the error names why and what to do, on the
//! socket and from the CLI; in fleet mode with an etcd that does not
//! answer, the commands still answer and say so. The usage lists the
//! commands. The fleet itself against a real etcd is tests/fleet.rs.

mod common;

use std::process::{Command, Output};

use common::Daemon;
use serde_json::{Value, json};

fn gipam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gipam"))
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("SOCKET")
        .output()
        .expect("run gipam")
}

fn stderr(o: &Output) -> String {
    assert!(!o.status.success(), "gipam succeeded: {o:?}");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const NOT_IN_FLEET: &str = "this gipam is not in fleet mode (ETCD_ENDPOINTS is empty)";

#[test]
fn the_fleet_endpoints_refuse_outside_fleet_mode() {
    let d = Daemon::start(&["--v4", "10.214.0.0/16"]);
    let mut c = d.client();
    for (method, body) in [
        ("Gipam.Fleet", Value::Null),
        ("Gipam.FleetForget", json!({"Host": "b"})),
    ] {
        let (status, v) = c.call(method, &body).expect(method);
        assert_eq!(status, 500, "{method}: {v}");
        let err = v["Err"].as_str().unwrap_or_default();
        assert!(
            err.starts_with(NOT_IN_FLEET) && err.contains("ETCD_ENDPOINTS (--etcd-endpoints)"),
            "{method}: {v}"
        );
    }
    // A malformed forget is a 400, whatever the mode.
    let (status, body) = c
        .raw("POST", "/Gipam.FleetForget", b"{\"Host\": 7}")
        .expect("raw");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, v) = c.call("Gipam.Status", &Value::Null).expect("status");
    assert_eq!(status, 200);
    assert_eq!(v.get("Fleet"), Some(&Value::Null), "{v}");
}

#[test]
fn gipam_fleet_outside_fleet_mode_says_why_and_exits_1() {
    let d = Daemon::start(&["--v4", "10.215.0.0/16"]);
    let sock = d.socket.to_str().expect("utf-8 path");
    for args in [
        vec!["fleet", "--socket", sock],
        vec!["fleet", "--json", "--socket", sock],
        vec!["fleet", "forget", "b", "--socket", sock],
    ] {
        let e = stderr(&gipam(&args));
        // "gipam refused Gipam.Fleet: …" or "… Gipam.FleetForget: …"
        assert!(
            e.starts_with("gipam fleet: gipam refused Gipam.Fleet") && e.contains(NOT_IN_FLEET),
            "{args:?}: {e}"
        );
    }
    let e = stderr(&gipam(&["fleet", "forget", "--socket", sock]));
    assert!(e.contains("forget needs the HOST"), "{e}");
    let e = stderr(&gipam(&["fleet", "forgot", "b", "--socket", sock]));
    assert!(e.contains("unknown fleet command \"forgot\""), "{e}");
    let e = stderr(&gipam(&["fleet", "forget", "b", "c", "--socket", sock]));
    assert!(e.contains("unexpected \"c\""), "{e}");

    let missing = "/nonexistent/gipam.sock";
    let e = stderr(&gipam(&["fleet", "--socket", missing]));
    assert!(
        e.starts_with("gipam fleet: cannot reach gipam on /nonexistent/gipam.sock")
            && e.contains("--socket or SOCKET"),
        "{e}"
    );
}

/// A loopback port nothing listens on (free a moment ago).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[test]
fn in_fleet_mode_without_etcd_the_commands_say_etcd_is_failing() {
    let etcd = format!("http://127.0.0.1:{}", dead_port());
    let d = Daemon::start(&[
        "--v4",
        "10.216.0.0/16",
        "--etcd-endpoints",
        &etcd,
        "--etcd-timeout",
        "1",
        "--host-id",
        "a",
    ]);
    let sock = d.socket.to_str().expect("utf-8 path");
    let o = gipam(&["fleet", "--socket", sock]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with(
            "no hosts in the fleet yet\n\nno shared networks\n\nthis host: a; 0 hosts, 0 alive\n"
        ) && out.contains("etcd: failing: ")
            && out.ends_with(&format!("(endpoints {etcd}, view at revision 0)\n")),
        "{out}"
    );
    let o = gipam(&["fleet", "--json", "--socket", sock]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        (&v["Host"], &v["EtcdOk"], &v["Endpoints"], &v["Hosts"]),
        (&json!("a"), &json!(false), &json!([etcd]), &json!([])),
        "{v}"
    );
    let o = gipam(&["status", "--socket", sock]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("fleet: host a, etcd failing: ") && out.contains(", 0 hosts (revision 0; "),
        "{out}"
    );
    let e = stderr(&gipam(&["fleet", "forget", "a", "--socket", sock]));
    assert!(e.contains("host a is this host"), "{e}");
    let e = stderr(&gipam(&["fleet", "forget", "b", "--socket", sock]));
    assert!(
        e.contains("the fleet has no host b; gipam fleet lists the hosts"),
        "{e}"
    );
}

#[test]
fn the_usage_lists_the_fleet_commands() {
    let o = gipam(&["fleet", "--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("gipam fleet [--json]") && out.contains("gipam fleet forget HOST [--json]"),
        "{out}"
    );
}
