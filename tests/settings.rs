//! Settings at start, against the real binary on a temporary socket: a
//! start gipam refuses (a bad value, main pools that strand live networks,
//! a damaged or locked state) still answers — the handshake as usual,
//! every IPAM call with the one-line reason and its fix — writes nothing to
//! the state, prints the reason once, and works once started with the fix;
//! main pools are used in the order listed, also after a restart that
//! changes the order.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Client, Daemon};
use serde_json::{Value, json};

const V4: &str = "10.40.0.0/16";
const V6: &str = "2001:db8:7700::/48";

fn call(c: &mut Client, method: &str, body: Value) -> (u16, Value) {
    c.call(method, &body).expect("call")
}

fn auto_pool(c: &mut Client, v6: bool) -> Value {
    let body = json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":v6});
    let (status, v) = call(c, "IpamDriver.RequestPool", body);
    assert_eq!(status, 200, "{v}");
    v
}

/// Every file of the state directory and its bytes (nothing left out: a
/// refused start writes nothing at all, not even its pid).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("state dir")
        .filter_map(|e| e.ok())
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read state file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// Asserts that the handshake answers as usual and that every call that
/// reads or changes the state answers 500 with the same one line; returns
/// it.
fn assert_refusing(d: &Daemon) -> String {
    let mut c = d.client();
    let handshake = [
        ("Plugin.Activate", json!({"Implements":["IpamDriver"]})),
        (
            "IpamDriver.GetCapabilities",
            json!({"RequiresMACAddress":true,"RequiresRequestReplay":false}),
        ),
        (
            "IpamDriver.GetDefaultAddressSpaces",
            json!({"LocalDefaultAddressSpace":"LocalDefault","GlobalDefaultAddressSpace":"GlobalDefault"}),
        ),
    ];
    for (method, want) in handshake {
        assert_eq!(call(&mut c, method, Value::Null), (200, want), "{method}");
    }
    let id = "LocalDefault/10.40.0.0/24";
    let refused = [
        (
            "IpamDriver.RequestPool",
            json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":false}),
        ),
        (
            "IpamDriver.RequestPool",
            json!({"AddressSpace":"LocalDefault","Pool":"10.99.0.0/24","SubPool":"","Options":null,"V6":false}),
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID":id,"Address":"","Options":null}),
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID":id,"Address":"10.40.0.2"}),
        ),
        ("IpamDriver.ReleasePool", json!({"PoolID":id})),
        ("Gipam.Status", Value::Null),
        ("Gipam.Leases", Value::Null),
    ];
    let mut reason: Option<String> = None;
    for (method, body) in refused {
        let (status, v) = call(&mut c, method, body);
        assert_eq!(status, 500, "{method}: {v}");
        let err = v["Err"].as_str().expect("Err").to_string();
        assert!(!err.contains('\n'), "one line: {err}");
        if let Some(r) = &reason {
            assert_eq!(&err, r, "{method}: the same reason for every call");
        }
        reason = Some(err);
    }
    let reason = reason.unwrap_or_default();
    // The reason is printed once (stderr: the dockerd log marks it an
    // error), and refused calls do not repeat it in the log.
    let errors = std::fs::read_to_string(&d.errors).unwrap_or_default();
    assert_eq!(errors.matches(reason.as_str()).count(), 1, "{errors}");
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(!log.contains(reason.as_str()), "{log}");
    reason
}

#[test]
fn a_refused_setting_is_answered_with_its_reason_and_a_fixed_one_works() {
    let mut d = Daemon::new(&["--v4", V4, "--v6", V6, "--v4ab", "40"]);
    d.spawn().expect("a refused setting still answers");
    let reason = assert_refusing(&d);
    assert_eq!(
        reason,
        "gipam refused its settings at start: --v4ab 40 is not a prefix length from 1 to 32; \
         fix --v4ab and start gipam again (gipam --help lists every setting)"
    );
    assert!(!d.state.exists(), "a refused start creates no state");
    assert!(d.stop(), "a refusing gipam stops cleanly");
    assert!(!d.socket.exists(), "and removes its socket");

    d.args = vec!["--v4".into(), V4.into(), "--v6".into(), V6.into()];
    d.spawn().expect("fixed");
    let mut c = d.client();
    assert_eq!(auto_pool(&mut c, false)["Pool"], "10.40.0.0/24");
}

#[test]
fn main_pools_that_strand_live_networks_are_refused_with_the_fix_the_state_untouched() {
    // V6 empty: the generated ULA, which the fix must spell out.
    let mut d = Daemon::start(&["--v4", V4]);
    let mut c = d.client();
    auto_pool(&mut c, false);
    let v6 = auto_pool(&mut c, true);
    let ula_block: ipnet::Ipv6Net = v6["Pool"].as_str().expect("Pool").parse().expect("v6");
    let ula = ipnet::Ipv6Net::new(ula_block.network(), 48)
        .expect("/48")
        .trunc();
    let id = v6["PoolID"].as_str().expect("PoolID").to_string();
    let (status, _) = call(
        &mut c,
        "IpamDriver.RequestAddress",
        json!({"PoolID":id,"Address":"","Options":null}),
    );
    assert_eq!(status, 200);
    drop(c);
    assert!(d.stop());
    let before = files(&d.state);

    d.args = ["--v4", "10.50.0.0/16", "--v6", "2001:db8:9900::/48"]
        .map(String::from)
        .to_vec();
    d.spawn().expect("refused main pools still answer");
    let reason = assert_refusing(&d);
    for part in [
        "gipam refused its main pools at start: ".to_string(),
        "--v4 10.50.0.0/16 (was 10.40.0.0/16) no longer contains LocalDefault/10.40.0.0/24, held by live networks".to_string(),
        format!("--v6 2001:db8:9900::/48 (was empty: the generated ULA {ula}) no longer contains LocalDefault/{ula_block}"),
        format!("start gipam again with --v4 10.50.0.0/16,10.40.0.0/16 --v6 2001:db8:9900::/48,{ula}"),
        "Or remove those networks: put the old pools back (start gipam again with --v4 10.40.0.0/16 --v6 \"\"), docker network rm them, then set the new pools again (start gipam again with --v4 10.50.0.0/16 --v6 2001:db8:9900::/48)".to_string(),
    ] {
        assert!(reason.contains(&part), "no {part:?} in: {reason}");
    }
    assert!(d.stop());
    assert_eq!(
        files(&d.state),
        before,
        "the state is byte for byte as it was"
    );

    // The fix, as the reason spells it: new networks from the new pools.
    let fix = reason
        .split("start gipam again with ")
        .nth(1)
        .and_then(|rest| rest.split(". Or").next())
        .expect("the fix");
    d.args = fix.split_whitespace().map(String::from).collect();
    d.spawn().expect("the fix is accepted");
    let mut c = d.client();
    assert_eq!(auto_pool(&mut c, false)["Pool"], "10.50.0.0/24");
    assert_eq!(auto_pool(&mut c, true)["Pool"], "2001:db8:9900::/64");
    let (_, status) = call(&mut c, "Gipam.Status", Value::Null);
    assert_eq!(status["Leases"], 5, "the old leases are all kept: {status}");
}

#[test]
fn a_damaged_state_is_refused_naming_the_file_and_left_as_it_was() {
    let mut d = Daemon::start(&["--v4", V4, "--v6", V6]);
    let mut c = d.client();
    for _ in 0..3 {
        auto_pool(&mut c, false);
    }
    drop(c);
    assert!(d.stop());
    let journal = d.state.join("journal.0.log");
    let mut data = std::fs::read(&journal).expect("journal");
    // Flip a byte inside the second line: an intact line follows it.
    let second = data.iter().position(|b| *b == b'\n').expect("line") + 12;
    data[second] ^= 0x20;
    std::fs::write(&journal, &data).expect("write");
    let before = files(&d.state);
    d.spawn().expect("a damaged state still answers");
    let reason = assert_refusing(&d);
    assert!(
        reason.starts_with("gipam cannot open its state: ")
            && reason.contains("journal.0.log is corrupt at line 2"),
        "{reason}"
    );
    assert!(d.stop());
    assert_eq!(files(&d.state), before, "never replaced, never repaired");
}

#[test]
fn a_state_another_gipam_holds_is_refused_naming_it() {
    let first = Daemon::start(&["--v4", V4, "--v6", V6]);
    let mut second = Daemon::new(&["--v4", V4, "--v6", V6]);
    second.state = first.state.clone();
    second.spawn().expect("the second gipam answers");
    let reason = assert_refusing(&second);
    assert!(reason.contains("in use by another gipam"), "{reason}");
    assert!(reason.contains(&format!("pid {}", first.pid())), "{reason}");
    // The first one is not disturbed.
    let mut c = first.client();
    assert_eq!(auto_pool(&mut c, false)["Pool"], "10.40.0.0/24");
}

#[test]
fn main_pools_are_used_in_the_order_listed_also_after_a_restart_that_changes_it() {
    // The first pool holds two /24s; then the next pool in the list.
    let mut d = Daemon::start(&["--v4", "10.60.0.0/23,10.40.0.0/16", "--v6", V6]);
    let mut c = d.client();
    let got: Vec<Value> = (0..3)
        .map(|_| auto_pool(&mut c, false)["Pool"].clone())
        .collect();
    assert_eq!(got, ["10.60.0.0/24", "10.60.1.0/24", "10.40.0.0/24"]);
    drop(c);
    assert!(d.stop());
    // A new pool put first takes the new networks, after a restart.
    d.args = ["--v4", "10.70.0.0/16,10.40.0.0/16,10.60.0.0/23", "--v6", V6]
        .map(String::from)
        .to_vec();
    d.spawn().expect("pools added");
    let mut c = d.client();
    let got: Vec<Value> = (0..2)
        .map(|_| auto_pool(&mut c, false)["Pool"].clone())
        .collect();
    assert_eq!(got, ["10.70.0.0/24", "10.70.1.0/24"]);
    drop(c);
    assert!(d.stop());
    // The same pools in another order: the new first one is used first.
    d.args = ["--v4", "10.40.0.0/16,10.70.0.0/16,10.60.0.0/23", "--v6", V6]
        .map(String::from)
        .to_vec();
    d.spawn().expect("reordered");
    let mut c = d.client();
    assert_eq!(auto_pool(&mut c, false)["Pool"], "10.40.1.0/24");
}

#[test]
fn a_command_line_gipam_cannot_parse_stops_it_with_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    for (args, want) in [
        (&["--bogus"][..], "unexpected argument '--bogus' found"),
        (&["--v4ab"][..], "a value is required for '--v4ab <V4AB>'"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gipam"))
            .args(args)
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .expect("run gipam");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(want) && stderr.contains("gipam --help lists every flag"),
            "{stderr}"
        );
        assert!(!dir.path().join("state").exists());
    }
}

#[test]
fn the_binary_calls_itself_gipam_whatever_its_file_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("gipam-static");
    std::fs::copy(env!("CARGO_BIN_EXE_gipam"), &copy).expect("copy the binary");
    let out = std::process::Command::new(&copy)
        .arg("--help")
        .output()
        .expect("run the copy");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: gipam [OPTIONS]"), "{help}");
    assert!(!help.contains("gipam-static"), "{help}");
}
