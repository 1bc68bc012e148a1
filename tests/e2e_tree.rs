//! End-to-end tests of the pool tree (F7) with the real dockerd and gipam as
//! a managed plugin (the shared `plugin_fixture`, which cleans up on Drop,
//! also when a scenario panics): a tree applied from the host with the
//! plugin's own `gipam` binary, tags and `pool=` picking blocks, a MAC
//! reservation that follows its container through `docker rm` + `docker
//! run` and refuses `--ip` from another one, python-docker-ipam's README
//! examples and its compose file (version 2.4 with `scope_filter_tags`,
//! run with compose 1.29: compose v2 drops ipam options), and POOLS=FILE
//! in the plugin through its propagated mount. Run against 28.5.2 (the
//! default socket) and 20.10.24 (`DOCKER_HOST=unix:///…/docker.sock` of a
//! second dockerd, testing.md).
//!
//! Address plan: the other docker suites use 10.21x–10.24x; this one uses
//! 10.250.0.0/16 (main pool), 10.251.0.0/16 and 2001:db8:e251::/48 (tree),
//! and the seed's own 100.64.0.0/15 and fc00:f00f::/32 (one scenario each
//! at a time: the bridge driver refuses overlapping subnets host-wide).
//! No traffic is sent to container addresses.

mod common;
mod docker_env;
mod plugin_fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

use docker_env::*;
use plugin_fixture::*;
use serde_json::Value;

const SUITE: &str = "e2e_tree";
const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed-schema.json");
/// Where the engines branch installs compose 1.29 (testing.md: a compose
/// test that needs ipam options runs on 1.29); GIPAM_COMPOSE_1_29 overrides.
const COMPOSE_1_29: &str = "/opt/gipam-compose-1.29/usr/bin/docker-compose";

const TREE: &str = r#"{
  "pools": [
    { "name": "e2e-web", "cidr": "10.251.0.0/20", "block": 28, "tags": ["web", "e2e"],
      "reservations": [ { "address": "10.251.0.9", "mac": "02:42:0a:fb:00:09" } ] },
    { "name": "e2e-db", "cidr": "10.251.16.0/20", "block": 26, "tags": ["db", "e2e"] },
    { "name": "e2e-web6", "cidr": "2001:db8:e251::/48", "block": 64, "tags": ["web"] }
  ]
}"#;

/// The plugin's own binary, as the README tells users to run it from the
/// host (`/var/lib/docker/plugins/<id>/rootfs/gipam`).
fn plugin_cli(p: &Plugin) -> PathBuf {
    let root = docker_ok(&["info", "-f", "{{.DockerRootDir}}"]);
    let bin = Path::new(&root)
        .join("plugins")
        .join(&p.id)
        .join("rootfs/gipam");
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// Runs `gipam ARGS --socket <plugin socket>`; returns stdout, or stderr as
/// the error.
fn cli(p: &Plugin, args: &[&str]) -> Result<String, String> {
    let out = Command::new(plugin_cli(p))
        .args(args)
        .arg("--socket")
        .arg(&p.socket)
        .output()
        .expect("run the plugin's gipam");
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// Runs a container on `net` with a fixed MAC through the Engine API at
/// version 1.41: the 28.x CLI cannot ask a 20.10 daemon for a MAC on a
/// user network, and 28.5 takes the old form too.
fn run_with_mac(p: &mut Plugin, what: &str, net: &str, mac: &str) -> String {
    let name = p.name(what);
    p.containers.push(name.clone());
    let (status, body) = docker_api_post(
        &format!("/containers/create?name={name}"),
        &serde_json::json!({"Image": IMAGE, "Cmd": ["sleep", "600"], "MacAddress": mac,
                "HostConfig": {"NetworkMode": net}}),
    );
    assert_eq!(status, 201, "create {name}: {body}");
    docker_ok(&["start", &name]);
    name
}

/// The reservation of `address` as `gipam pools show --json` lists it.
fn reservation_leased(p: &Plugin, address: &str) -> bool {
    let v = parse_json(
        &cli(p, &["pools", "show", "--json"]).expect("show"),
        "pools",
    );
    v["Pools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["Reservations"].as_array().cloned().unwrap_or_default())
        .find(|r| r["Address"] == address)
        .and_then(|r| r["Leased"].as_bool())
        .unwrap_or_else(|| panic!("no reservation {address} in {v}"))
}

#[test]
fn tags_pool_names_and_a_mac_reservation_on_a_real_dockerd() {
    let Some(mut p) = Plugin::start(SUITE, "t1", &["V4=10.250.0.0/16", "V6=2001:db8:e250::/48"])
    else {
        return;
    };
    let file = p.dir.path().join("pools.json");
    std::fs::write(&file, TREE).expect("write the tree");
    let out = cli(&p, &["pools", "apply", &file.to_string_lossy()]).expect("apply");
    assert!(
        out.starts_with("pool tree replaced") && out.contains("e2e-web"),
        "{out}"
    );

    // Docker takes --ip only on networks with a subnet the user gave: this
    // one names its IPv4 subnet inside the tagged pool, its IPv6 block
    // comes from the tags.
    let web = p.network(
        "web",
        &[
            "--ipv6",
            "--subnet",
            "10.251.0.0/28",
            "--ipam-opt",
            "tags=web",
        ],
    );
    assert_eq!(subnet_of(&web, true), net("2001:db8:e251::/64"));
    let auto = p.network("auto", &["--ipam-opt", "tags=web"]);
    assert_eq!(subnet_of(&auto, false), net("10.251.0.16/28"));
    let db = p.network("db", &["--ipam-opt", "pool=e2e-db"]);
    assert_eq!(subnet_of(&db, false), net("10.251.16.0/26"));
    let plain = p.network("plain", &[]);
    assert_eq!(subnet_of(&plain, false), net("10.250.0.0/24"));
    let e = p.network_fails("nope", &["--ipam-opt", "tags=nope"]);
    assert_mentions(&e, &["tag \"nope\" is carried by no pool", "db, e2e, web"]);
    let e = p.network_fails("nope2", &["--ipam-opt", "pool=nope"]);
    assert_mentions(
        &e,
        &[
            "pool \"nope\" is not in the pool tree",
            "e2e-web, e2e-db, e2e-web6",
        ],
    );

    // Dynamic addresses skip the reservation; its MAC gets it.
    let mac = "02:42:0a:fb:00:09";
    let a = p.run("a", &web, &[]);
    assert_eq!(endpoint_addrs(&a, &web).0, ip("10.251.0.2"));
    let pinned = run_with_mac(&mut p, "pinned", &web, mac);
    assert_eq!(endpoint_addrs(&pinned, &web).0, ip("10.251.0.9"));
    assert!(reservation_leased(&p, "10.251.0.9"));
    // Recreated: the MAC gets it back. Meanwhile --ip from another
    // container is refused, naming who it is for.
    p.rm_containers(&[&pinned]);
    assert!(!reservation_leased(&p, "10.251.0.9"));
    let e = p
        .try_run("thief", &web, &["--ip", "10.251.0.9"])
        .expect_err("reserved address");
    assert_mentions(&e, &["10.251.0.9", "reserved for MAC 02:42:0a:fb:00:09"]);
    p.rm_failed("thief");
    let b = p.run("b", &web, &[]);
    assert_eq!(endpoint_addrs(&b, &web).0, ip("10.251.0.3"));
    let again = run_with_mac(&mut p, "pinned2", &web, mac);
    assert_eq!(endpoint_addrs(&again, &web).0, ip("10.251.0.9"));

    // A tree without the reservation in use is refused, naming it.
    let cut = TREE.replace(
        r#"[ { "address": "10.251.0.9", "mac": "02:42:0a:fb:00:09" } ]"#,
        "[]",
    );
    std::fs::write(&file, cut).expect("write");
    let e = cli(&p, &["pools", "apply", &file.to_string_lossy()]).expect_err("refused");
    assert_mentions(
        &e,
        &[
            "reservation 10.251.0.9 for MAC 02:42:0a:fb:00:09",
            "is in use",
        ],
    );
    p.rm_all();
    p.assert_empty();
}

/// Takes a compose 1.29 project down on Drop (before the plugin goes).
struct ComposeDown(Command);

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let _ = self.0.output();
    }
}

fn compose_1_29(project: &str, file: &Path, args: &[&str]) -> Command {
    let bin = std::env::var("GIPAM_COMPOSE_1_29").unwrap_or_else(|_| COMPOSE_1_29.to_string());
    assert!(
        Path::new(&bin).exists(),
        "docker-compose 1.29 is not at {bin}: install it (the engines setup puts it in /opt/gipam-compose-1.29) or set GIPAM_COMPOSE_1_29"
    );
    let lib = Path::new(&bin)
        .ancestors()
        .nth(2)
        .map(|usr| usr.join("lib/python3/dist-packages"))
        .unwrap_or_default();
    let mut cmd = Command::new(&bin);
    cmd.env("PYTHONPATH", lib)
        .arg("-p")
        .arg(project)
        .arg("-f")
        .arg(file)
        .args(args);
    cmd
}

#[test]
fn the_seeds_schema_readme_examples_and_compose_file_give_its_blocks() {
    let Some(mut p) = Plugin::start(SUITE, "t2", &["V4=10.252.0.0/16"]) else {
        return;
    };
    let out = cli(&p, &["pools", "apply", SEED]).expect("schema.json loads unchanged");
    assert!(
        out.contains("100.64.0.0/20") && out.contains("null_routed"),
        "{out}"
    );
    // README: docker network create --ipam-driver pyipam test
    //   --ipam-opt "scope_filter_tags="null_routed"" --ipam-opt "id="testnet""
    let opts = [
        "--ipam-opt",
        "scope_filter_tags=null_routed",
        "--ipam-opt",
        "id=testnet",
    ];
    let test = p.network("test", &opts);
    let cfg = ipam_config(&test);
    assert_eq!(
        field(config_of(&cfg, false), "Subnet"),
        "100.64.0.0/30",
        "{cfg:?}"
    );
    assert_eq!(
        addr_field(config_of(&cfg, false), "Gateway"),
        ip("100.64.0.1")
    );
    // ... and the same with --ipv6 (test6).
    let mut opts6 = opts.to_vec();
    opts6.push("--ipv6");
    let test6 = p.network("test6", &opts6);
    let cfg = ipam_config(&test6);
    assert_eq!(
        field(config_of(&cfg, false), "Subnet"),
        "100.64.0.4/30",
        "{cfg:?}"
    );
    assert_eq!(
        addr_field(config_of(&cfg, false), "Gateway"),
        ip("100.64.0.5")
    );
    assert_eq!(
        field(config_of(&cfg, true), "Subnet"),
        "fc00:f00f::/64",
        "{cfg:?}"
    );
    assert_eq!(
        addr_field(config_of(&cfg, true), "Gateway"),
        ip("fc00:f00f::1")
    );
    let shown = cli(&p, &["pools", "show"]).expect("show");
    let row = shown
        .lines()
        .find(|l| l.starts_with("LocalDefault/100.64.0.0/30 "))
        .unwrap_or_else(|| panic!("no network row: {shown}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "LocalDefault/100.64.0.0/30",
            "100.64.0.0/20",
            "testnet",
            "1"
        ]
    );

    // README: the compose file, version 2.4, run with compose 1.29.
    let project = p.name("compose");
    let file = p.dir.path().join("docker-compose.yml");
    let yaml = format!(
        r#"version: "2.4"

networks:
  default:
    internal: true
    ipam:
      driver: {driver}
      options:
          id: "fluentd_default_net"
          scope_filter_tags: "host_to_container"
services:
  fluentd:
    hostname: fluentd
    domainname: docker.internal
    image: {IMAGE}
    command: ["sleep", "600"]
    networks:
      - default
"#,
        driver = p.name
    );
    std::fs::write(&file, yaml).expect("write the compose file");
    let _down = ComposeDown(compose_1_29(&project, &file, &["down", "-t", "1"]));
    run_ok(&mut compose_1_29(&project, &file, &["up", "-d"]));
    let network = format!("{project}_default");
    let cfg = ipam_config(&network);
    assert_eq!(field(&cfg[0], "Subnet"), "100.64.80.0/30", "{cfg:?}");
    let options = parse_json(
        &network_inspect(&network, "{{json .IPAM.Options}}"),
        "options",
    );
    assert_eq!(
        options["scope_filter_tags"], "host_to_container",
        "{options}"
    );
    let id = run_ok(&mut compose_1_29(&project, &file, &["ps", "-q", "fluentd"]));
    let (a, _) = endpoint_addrs(id.trim(), &network);
    assert_eq!(a, ip("100.64.80.2"));
    let v = parse_json(
        &cli(&p, &["pools", "show", "--json"]).expect("show"),
        "pools",
    );
    let owners: Vec<&Value> = v["Pools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["Networks"].as_array().into_iter().flatten())
        .map(|n| &n["Id"])
        .collect();
    assert!(owners.iter().any(|o| *o == "fluentd_default_net"), "{v}");
    run_ok(&mut compose_1_29(&project, &file, &["down", "-t", "1"]));
    p.rm_all();
    p.assert_empty();
}

#[test]
fn pools_file_in_the_plugins_propagated_mount_loads_at_start() {
    let Some(p) = Plugin::start(SUITE, "t3", &["V4=10.253.0.0/16"]) else {
        return;
    };
    let root = docker_ok(&["info", "-f", "{{.DockerRootDir}}"]);
    let mount = Path::new(&root)
        .join("plugins")
        .join(&p.id)
        .join("propagated-mount");
    assert!(mount.is_dir(), "{} is missing", mount.display());
    std::fs::write(mount.join("pools.json"), TREE).expect("write into /data");
    docker_ok(&["plugin", "disable", &p.name]);
    docker_ok(&["plugin", "set", &p.name, "POOLS=/data/pools.json"]);
    docker_ok(&["plugin", "enable", &p.name]);
    p.wait_ready(std::time::Duration::from_secs(30))
        .expect("plugin answers");
    let shown = cli(&p, &["pools", "show"]).expect("show");
    assert!(
        shown.contains("e2e-web6") && shown.contains("10.251.0.9"),
        "{shown}"
    );
}
