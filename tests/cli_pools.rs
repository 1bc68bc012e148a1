//! `gipam pools show|apply` against a real gipam on a temporary socket:
//! tables and `--json`, errors, and how the client finds the socket with
//! zero, one or several plugins (fake `/run/docker/plugins/<id>/gipam.sock`
//! trees under a temporary directory, through the hidden
//! GIPAM_PLUGINS_DIR).

mod common;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};

use common::Daemon;
use serde_json::Value;

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed-schema.json");
const NATIVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pools.json");

/// Runs the gipam binary as a client, with the plugin root at `root` and
/// no SOCKET from the caller's environment.
fn gipam(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gipam"))
        .args(args)
        .env("GIPAM_PLUGINS_DIR", root)
        .env_remove("SOCKET")
        .output()
        .expect("run gipam")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A gipam whose socket is `root/<id>/gipam.sock`, as Docker lays out a
/// managed plugin's.
fn plugin(root: &Path, id: &str) -> Daemon {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).expect("plugin dir");
    let mut d = Daemon::new(&[]);
    d.socket = dir.join("gipam.sock");
    d.spawn().expect("gipam starts");
    d
}

#[test]
fn apply_and_show_print_tables_and_json() {
    let root = tempfile::tempdir().expect("root");
    let d = Daemon::start(&[]);
    let sock = d.socket.to_str().expect("utf-8 path");
    let o = gipam(root.path(), &["pools", "show", "--socket", sock]);
    let (out, _) = text(&o);
    assert!(
        o.status.success() && out.contains("no pool tree is loaded"),
        "{out}"
    );

    let o = gipam(root.path(), &["pools", "apply", NATIVE, "--socket", sock]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pool tree replaced");
    assert!(
        lines[1].starts_with("POOL") && lines[1].contains("TAGS"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("dc1 ") && lines[2].contains("10.50.0.0/16 -10.50.255.0/24"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("  dc1-web ") && lines[3].contains("web [dc1]"),
        "{out}"
    );
    assert!(out.contains("10.50.0.2  name web"), "{out}");
    assert!(out.contains("10.50.0.3  mac 02:42:0a:32:00:03"), "{out}");

    let o = gipam(root.path(), &["pools", "apply", NATIVE, "--socket", sock]);
    assert!(
        text(&o).0.starts_with("pool tree unchanged"),
        "{:?}",
        text(&o)
    );

    // SOCKET from the environment, and --json.
    let o = Command::new(env!("CARGO_BIN_EXE_gipam"))
        .args(["pools", "show", "--json"])
        .env("SOCKET", &d.socket)
        .output()
        .expect("run");
    let v: Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    assert_eq!(v["Pools"][1]["Name"], "dc1-web");
    assert_eq!(v["Pools"][1]["InheritedTags"][0], "dc1");
    assert_eq!(v["Pools"][1]["Reservations"][0]["Name"], "web");
}

#[test]
fn errors_say_what_is_wrong_and_exit_non_zero() {
    let root = tempfile::tempdir().expect("root");
    let d = Daemon::start(&["--pools", SEED]);
    let sock = d.socket.to_str().expect("utf-8 path");
    let mut c = d.client();
    let (status, _) = c
        .call(
            "IpamDriver.RequestPool",
            &serde_json::json!({"AddressSpace":"LocalDefault","Options":{"scope_filter_tags":"null_routed"}}),
        )
        .expect("pool");
    assert_eq!(status, 200);
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "pools",
                "apply",
                "/nonexistent/pools.json",
                "--socket",
                sock,
            ],
            "cannot read pool file /nonexistent/pools.json",
        ),
        (
            &["pools", "apply", NATIVE, "--socket", sock],
            "network pool LocalDefault/100.64.0.0/30 was drawn from tree pool 100.64.0.0/20",
        ),
        (
            &["pools", "apply", "/dev/null", "--socket", sock],
            "pool file is not valid JSON",
        ),
        (
            &["pools", "show", "--socket", "/nonexistent.sock"],
            "cannot connect to gipam at /nonexistent.sock",
        ),
    ];
    for (args, want) in cases {
        let o = gipam(root.path(), args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("gipam: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    let o = gipam(root.path(), &["pools", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
}

#[test]
fn the_socket_is_found_with_zero_one_or_several_plugins() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    // Zero: say what to do.
    let o = gipam(r, &["pools", "show"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("no gipam socket found")
            && err.contains("docker plugin enable")
            && err.contains("--socket"),
        "{err}"
    );
    // A stale socket of a disabled plugin does not count.
    std::fs::create_dir_all(r.join("dead")).expect("dir");
    drop(UnixListener::bind(r.join("dead/gipam.sock")).expect("bind"));
    let (_, err) = text(&gipam(r, &["pools", "show"]));
    assert!(
        err.contains("accept no connection") && err.contains("dead/gipam.sock"),
        "{err}"
    );
    // One managed plugin: found by itself.
    let a = plugin(r, "a1b2c3");
    let o = gipam(r, &["pools", "show"]);
    assert!(o.status.success(), "{:?}", text(&o));
    // Several: listed, and the flag to choose named.
    let b = plugin(r, "d4e5f6");
    let o = gipam(r, &["pools", "show"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    for want in [
        "several gipam plugins",
        "a1b2c3/gipam.sock",
        "d4e5f6/gipam.sock",
        "--socket",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    let o = gipam(
        r,
        &[
            "pools",
            "show",
            "--socket",
            b.socket.to_str().expect("utf-8"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    // The legacy socket wins over plugin directories.
    let mut legacy = Daemon::new(&[]);
    legacy.socket = r.join("gipam.sock");
    legacy.spawn().expect("legacy gipam");
    let mut c = legacy.client();
    let body = std::fs::read(NATIVE).expect("file");
    assert_eq!(
        c.raw("POST", "/Gipam.ApplyPools", &body).expect("apply").0,
        200
    );
    let (out, _) = text(&gipam(r, &["pools", "show"]));
    assert!(out.contains("dc1-web"), "{out}");
    drop((a, b));
}

#[test]
fn serve_and_no_subcommand_are_the_daemon() {
    let root = tempfile::tempdir().expect("root");
    for args in [&["serve", "--version"][..], &["--version"][..]] {
        let o = gipam(root.path(), args);
        assert!(
            o.status.success() && text(&o).0.starts_with("gipam "),
            "{args:?}"
        );
    }
    let o = gipam(root.path(), &["serve", "--help"]);
    assert!(text(&o).0.contains("[env: POOLS]"), "{:?}", text(&o));
}
