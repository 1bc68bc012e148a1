//! F6 end to end, with the managed plugin in the real dockerd: addresses
//! that follow their container. What each engine sends decides what can
//! follow (ipam-protocol.md §7): Engine 29 sends the endpoint name, so a
//! container recreated by name gets its address back; 20.10 and 28.5 send
//! only a MAC, random on every start unless the user pins it, so there a
//! container recreated keeps its address only with a pinned MAC
//! (`--mac-address`, compose `mac_address:`), and `docker restart` keeps
//! it by the lowest-free rule. Each scenario asserts what its engine does,
//! by version; Engine 29's exact requests are replayed in
//! `protocol_sticky.rs`, since 29 does not install here.
//!
//! Everything is asserted on what Docker reports (`docker inspect`, eth0
//! inside the container); no traffic goes to a container. Each scenario's
//! plugin, containers, networks and compose project are removed on Drop,
//! also when it fails (`plugin_fixture::Plugin`).
//!
//! Address plan (see `e2e_plugin.rs`; 10.21x–10.24x are taken): scenario k
//! uses V4=10.25k.0.0/16 and V6=2001:db8:e25k::/48.
//!
//! The dockerd restart scenario runs only with GIPAM_E2E_RESTART_DOCKERD=1
//! (it stops and starts the host's dockerd; `make test` sets it). For an
//! engine other than the default one, DOCKER_HOST names its socket and
//! GIPAM_DOCKERD_PIDFILE its pid file.

mod common;
mod docker_env;
mod plugin_fixture;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docker_env::*;
use plugin_fixture::*;
use serde_json::json;

const SUITE: &str = "e2e_sticky";

/// The scenarios share dockerd; the one that restarts it runs alone.
static DAEMON: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Engine 29 (API 1.52) is the first to send the endpoint name.
fn sends_names() -> bool {
    server_api_version() >= (1, 52)
}

/// `docker run -d --name <tag>-WHAT --network NET --mac-address MAC`. The
/// 28.x CLI cannot give a MAC on a user network to a 20.10 daemon (API
/// 1.41), so there the container is created through the Engine API.
fn run_with_mac(p: &mut Plugin, what: &str, net: &str, mac: &str, extra: &[&str]) -> String {
    if server_api_version() >= (1, 44) {
        let mut args = vec!["--mac-address", mac];
        args.extend_from_slice(extra);
        return p.run(what, net, &args);
    }
    // The only flags the scenarios pass: `--restart always --stop-timeout 1`.
    let always = extra.contains(&"--restart");
    assert!(
        always || extra.is_empty(),
        "flags for the Engine API: {extra:?}"
    );
    let policy = if always { "always" } else { "no" };
    let name = p.name(what);
    p.containers.push(name.clone());
    let (status, body) = docker_api_post(
        &format!("/containers/create?name={name}"),
        &json!({"Image": IMAGE, "Cmd": ["sleep", "600"], "MacAddress": mac, "StopTimeout": 1,
                "HostConfig": {"NetworkMode": net, "RestartPolicy": {"Name": policy}}}),
    );
    assert_eq!(status, 201, "create {name}: {body}");
    docker_ok(&["start", &name]);
    name
}

fn mac_of(container: &str, net: &str) -> String {
    field(&endpoint(container, net), "MacAddress").to_string()
}

#[test]
fn s1_a_container_recreated_with_its_mac_gets_its_addresses_back() {
    let _shared = DAEMON.read().unwrap_or_else(|e| e.into_inner());
    let Some(mut p) = Plugin::start(SUITE, "s1", &["V4=10.251.0.0/16", "V6=2001:db8:e251::/48"])
    else {
        return;
    };
    let net = p.network("n", &["--ipv6"]);
    let mac = "02:42:0a:fb:00:99";
    let x = p.run("x", &net, &[]);
    let a = run_with_mac(&mut p, "a", &net, mac, &[]);
    assert_eq!(mac_of(&a, &net), mac);
    let (x4, x6) = endpoint_addrs(&x, &net);
    let (a4, a6) = endpoint_addrs(&a, &net);
    assert!(x4 < a4, "x came first: {x4} {a4}");

    // docker restart: the same address on every engine (lowest free).
    docker_ok(&["restart", "-t", "0", &a]);
    assert_eq!(endpoint_addrs(&a, &net), (a4, a6), "after docker restart");

    // Both removed; a recreated with its MAC gets its own addresses, not
    // the lowest free ones (x's); a newcomer gets x's.
    p.rm_containers(&[x.clone(), a.clone()]);
    let a = run_with_mac(&mut p, "a", &net, mac, &[]);
    assert_eq!(endpoint_addrs(&a, &net), (a4, a6), "recreated with its MAC");
    let y = p.run("y", &net, &[]);
    assert_eq!(endpoint_addrs(&y, &net), (x4, x6), "the lowest free");
    p.rm_all();
    p.assert_empty();
}

#[test]
fn s2_sticky_mac_holds_a_pinned_macs_address_back_from_others() {
    let _shared = DAEMON.read().unwrap_or_else(|e| e.into_inner());
    let Some(mut p) = Plugin::start(SUITE, "s2", &["V4=10.252.0.0/16", "V6=2001:db8:e252::/48"])
    else {
        return;
    };
    let net = p.network("n", &["--ipam-opt", "sticky=mac"]);
    let a = run_with_mac(&mut p, "a", &net, "02:42:0a:fc:00:01", &[]);
    let b = run_with_mac(&mut p, "b", &net, "02:42:0a:fc:00:02", &[]);
    let (a4, _) = endpoint_addrs(&a, &net);
    let (b4, _) = endpoint_addrs(&b, &net);
    p.rm_containers(&[a.as_str()]);
    // a is away: a newcomer does not get its address ...
    let c = p.run("c", &net, &[]);
    let (c4, _) = endpoint_addrs(&c, &net);
    assert!(c4 != a4 && c4 != b4, "c got {c4}; a had {a4}");
    // ... which a gets back.
    let a = run_with_mac(&mut p, "a", &net, "02:42:0a:fc:00:01", &[]);
    assert_eq!(endpoint_addrs(&a, &net).0, a4);

    // A value gipam does not take is refused, naming the ones it takes.
    let err = p.network_fails("bad", &["--ipam-opt", "sticky=always"]);
    assert_mentions(&err, &["sticky", "name, mac or off"]);
    p.rm_all();
    p.assert_empty();
}

#[test]
fn s3_recreated_by_name_follows_on_engine_29_only() {
    let _shared = DAEMON.read().unwrap_or_else(|e| e.into_inner());
    // `docker rm -f web && docker run --name web`, another container
    // started in between. 29 sends the name: web gets its address back and
    // the other skips it. 20.10 and 28.5 send a fresh random MAC and no
    // name: web is nobody gipam knows, so the lowest free rule gives the
    // other web's old address (the README says: pin a MAC, use --ip, or a
    // reservation).
    let Some(mut p) = Plugin::start(SUITE, "s3", &["V4=10.253.0.0/16", "V6=2001:db8:e253::/48"])
    else {
        return;
    };
    let net = p.network("n", &["--ipv6"]);
    let web = p.run("web", &net, &[]);
    let db = p.run("db", &net, &[]);
    let web_was = endpoint_addrs(&web, &net);
    let db_was = endpoint_addrs(&db, &net);
    p.rm_containers(&[web.as_str()]);
    let other = p.run("other", &net, &[]);
    let web = p.run("web", &net, &[]);
    let (other_got, web_got) = (endpoint_addrs(&other, &net), endpoint_addrs(&web, &net));
    if sends_names() {
        assert_eq!(web_got, web_was, "Engine 29: web follows its name");
        assert_ne!(other_got.0, web_was.0);
    } else {
        assert_eq!(other_got, web_was, "no name: the lowest free goes first");
        assert_ne!(web_got.0, web_was.0);
    }
    assert_eq!(endpoint_addrs(&db, &net), db_was);
    p.rm_all();
    p.assert_empty();
}

#[test]
fn s4_compose_down_and_up_with_mac_address_gives_the_same_addresses() {
    let _shared = DAEMON.read().unwrap_or_else(|e| e.into_inner());
    // compose removes the network at `down` too: gipam keeps what the
    // pool remembered and gives it back when `up` creates the same pool.
    let Some(mut p) = Plugin::start(SUITE, "s4", &["V4=10.254.0.0/16", "V6=2001:db8:e254::/48"])
    else {
        return;
    };
    let project = p.name("proj");
    let file = p.dir.path().join("compose.yaml");
    let services: String = (1..=3)
        .map(|i| {
            format!(
                "  s{i}:\n    image: {IMAGE}\n    command: [\"sleep\", \"600\"]\n    \
                 mac_address: \"02:42:0a:fe:00:0{i}\"\n    networks: [net]\n"
            )
        })
        .collect();
    let yaml = format!(
        "services:\n{services}networks:\n  net:\n    enable_ipv6: true\n    ipam:\n      driver: {}\n",
        p.name
    );
    std::fs::write(&file, yaml).expect("write the compose file");
    p.compose.push((Compose::V2, project.clone(), file.clone()));
    let net = format!("{project}_net");
    let up = |what: &str| {
        run_ok(
            Compose::V2
                .command(&project, &file, &["up", "-d"])
                .stdin(Stdio::null()),
        );
        (1..=3)
            .map(|i| {
                let c = format!("{project}-s{i}-1");
                assert_eq!(mac_of(&c, &net), format!("02:42:0a:fe:00:0{i}"), "{what}");
                (c.clone(), endpoint_addrs(&c, &net))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let before = up("first up");
    for round in 0..2 {
        run_ok(
            Compose::V2
                .command(&project, &file, &["down", "-t", "1"])
                .stdin(Stdio::null()),
        );
        assert_eq!(p.status()["Leases"], 0, "down released everything");
        let after = up("up again");
        assert_eq!(after, before, "round {round}");
    }
    run_ok(
        Compose::V2
            .command(&project, &file, &["down", "-t", "1"])
            .stdin(Stdio::null()),
    );
    p.compose.clear();
    p.assert_empty();
}

// ---------------------------------------------------------------------------
// The dockerd restart (as in `e2e_daemon_restart.rs`, whose helpers are
// that file's own).

const DOCKERD_LOG: &str = "/var/log/gipam-test-dockerd.log";

fn nul_split(bytes: Vec<u8>) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Stops the running dockerd (SIGTERM) and starts it again with the argv,
/// working directory and environment it had; waits until it answers.
fn restart_dockerd() {
    // The engine DOCKER_HOST points at: its pid file is named apart when
    // it is not the default one (a second dockerd next to the first).
    let pidfile = std::env::var("GIPAM_DOCKERD_PIDFILE")
        .unwrap_or_else(|_| "/var/run/docker.pid".to_string());
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("read {pidfile}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("no pid in {pidfile}: {e}"));
    let argv = nul_split(std::fs::read(format!("/proc/{pid}/cmdline")).expect("dockerd cmdline"));
    assert!(
        argv.first()
            .is_some_and(|a| a.to_string_lossy().ends_with("dockerd")),
        "pid {pid} of {pidfile} is not dockerd: {argv:?}"
    );
    // The directory it was started from may be gone since: then "/".
    let cwd: PathBuf = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| "/".into());
    let env: Vec<(OsString, OsString)> =
        nul_split(std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
            .into_iter()
            .filter_map(|kv| {
                let kv = kv.into_vec();
                let eq = kv.iter().position(|b| *b == b'=')?;
                Some((
                    OsString::from_vec(kv[..eq].to_vec()),
                    OsString::from_vec(kv[eq + 1..].to_vec()),
                ))
            })
            .collect();
    eprintln!("restarting dockerd (pid {pid}): {argv:?}");
    send_signal("TERM", pid);
    poll(Duration::from_secs(180), || (!alive(pid)).then_some(()))
        .unwrap_or_else(|| panic!("dockerd {pid} still runs 180 s after SIGTERM"));
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .expect("open the dockerd log");
    let status = Command::new("setsid")
        .arg("-f")
        .arg("nohup")
        .args(&argv)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("dockerd log")))
        .stderr(Stdio::from(log))
        .status()
        .expect("run setsid -f nohup dockerd");
    assert!(status.success(), "starting dockerd: {status}");
    poll(Duration::from_secs(120), || docker_info().ok()).unwrap_or_else(|| {
        panic!("dockerd did not answer within 120 s after the restart; see {DOCKERD_LOG}")
    });
}

fn running(container: &str) -> bool {
    let out = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.Restarting}}",
        container,
    ]);
    text(&out.stdout) == "true false"
}

#[test]
fn s5_dockerd_restart_gives_pinned_and_named_containers_their_own_addresses() {
    // dockerd goes away under every other scenario of this binary: alone.
    let _alone = DAEMON.write().unwrap_or_else(|e| e.into_inner());
    // At stop dockerd releases every endpoint; at start it asks again, in
    // its own order. A pinned MAC (any engine) or the name (29) is followed
    // exactly; random MACs without names get the same set back (F5's
    // lowest free rule), perhaps shuffled, as with Docker's own IPAM.
    if std::env::var("GIPAM_E2E_RESTART_DOCKERD").as_deref() != Ok("1") {
        eprintln!(
            "SKIP {SUITE} s5: restarting dockerd needs GIPAM_E2E_RESTART_DOCKERD=1 (make test sets it)"
        );
        return;
    }
    let Some(mut p) = Plugin::start(SUITE, "s5", &["V4=10.255.0.0/16", "V6=2001:db8:e255::/48"])
    else {
        return;
    };
    // Pinned MACs on a `sticky=mac` network (a MAC-only memory is held back
    // there, so a container that dockerd happens to start first cannot take
    // it); random MACs on a default one (their memories would never be
    // claimed, so holding them back would only push others aside).
    let net = p.network("n", &["--ipv6"]);
    let net_m = p.network("m", &["--ipv6", "--ipam-opt", "sticky=mac"]);
    let policy = ["--restart", "always", "--stop-timeout", "1"];
    let mut pinned = Vec::new();
    let mut random = Vec::new();
    for i in 1..=3 {
        random.push(p.run(&format!("r{i}"), &net, &policy));
        let mac = format!("02:42:0a:ff:00:0{i}");
        pinned.push(run_with_mac(
            &mut p,
            &format!("m{i}"),
            &net_m,
            &mac,
            &policy,
        ));
    }
    let addrs = |names: &[String], net: &str| -> BTreeMap<String, (IpAddr, Option<IpAddr>)> {
        names
            .iter()
            .map(|c| (c.clone(), endpoint_addrs(c, net)))
            .collect()
    };
    let (pinned_before, random_before) = (addrs(&pinned, &net_m), addrs(&random, &net));
    let t0 = Instant::now();
    restart_dockerd();
    p.wait_ready(Duration::from_secs(60))
        .expect("the plugin is enabled again after the restart");
    let all: Vec<&String> = pinned.iter().chain(&random).collect();
    poll(Duration::from_secs(120), || {
        all.iter().all(|c| running(c)).then_some(())
    })
    .unwrap_or_else(|| panic!("containers not running 120 s after the restart"));
    eprintln!(
        "s5: all back {:.1} s after the restart began",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        addrs(&pinned, &net_m),
        pinned_before,
        "pinned MACs follow exactly"
    );
    let random_after = addrs(&random, &net);
    if sends_names() {
        assert_eq!(random_after, random_before, "Engine 29: names follow");
    } else {
        let set = |m: &BTreeMap<String, (IpAddr, Option<IpAddr>)>| {
            let mut v: Vec<_> = m.values().copied().collect();
            v.sort();
            v
        };
        assert_eq!(set(&random_after), set(&random_before), "the same set");
    }
    p.rm_all();
    p.assert_empty();
}
