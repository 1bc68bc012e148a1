//! End-to-end tests of gipam's managed plugin driven by docker-compose:
//! compose 1.29 (Python) and compose v2 (Go, 2.40 on Debian), both
//! installed by scripts/test-env.sh (see `docker_env::engine::Compose`).
//!
//! Compose v2 before v5 drops a network's `ipam.options`
//! (ipam-protocol.md §7): the scenario that needs an option runs on 1.29
//! (9), and the README's example runs on both (10 on 1.29, 11 on v2),
//! asserting what each passes on and the documented workarounds: a
//! size-only `subnet: 0.0.0.0/28` for a block size, and a network made with
//! `docker network create --ipam-opt …` used as `external: true`.
//!
//! Address plan (see `e2e_plugin.rs`): 9 uses 10.219.0.0/16 and
//! 10.229.0.0/16; 10 uses 10.200.0.0/16 and 10.201.0.0/16; 11 uses
//! 10.202.0.0/16 and 10.203.0.0/16 (with 2001:db8:e2NN::/48 alike).

mod common;
mod docker_env;
mod plugin_fixture;

use std::collections::BTreeSet;

use docker_env::*;
use ipnet::IpNet;
use plugin_fixture::*;
use serde_json::json;

const SUITE: &str = "e2e_compose";

/// 9. A compose 1.29 project (file format 2.4) with `ipam: driver:` gipam,
///    options and config (subnet, ip_range, gateway, aux_addresses), a
///    service with fixed addresses and one with dynamic ones, and a second
///    network with an automatic block sized by an option: `up -d` gives
///    what the file says; `down` leaves gipam holding nothing.
#[test]
fn s9_compose_v1_project_with_ipam_options() {
    let Some(mut p) = Plugin::start(SUITE, "s9", &["V4=10.219.0.0/16", "V6=2001:db8:e219::/48"])
    else {
        return;
    };
    let project = p.name("compose");
    let file = p.dir.path().join("docker-compose.yml");
    let yaml = format!(
        r#"version: "2.4"
services:
  fixed:
    image: {IMAGE}
    command: ["sleep", "600"]
    networks:
      appnet:
        ipv4_address: 10.229.1.10
        ipv6_address: "2001:db8:e229::10"
  dynamic:
    image: {IMAGE}
    command: ["sleep", "600"]
    networks:
      - appnet
  auto:
    image: {IMAGE}
    command: ["sleep", "600"]
    networks:
      - autonet
networks:
  appnet:
    enable_ipv6: true
    ipam:
      driver: {driver}
      options:
        serial: "false"
      config:
        - subnet: 10.229.0.0/16
          ip_range: 10.229.5.0/24
          gateway: 10.229.5.254
          aux_addresses:
            host1: 10.229.1.5
        - subnet: "2001:db8:e229::/64"
  autonet:
    ipam:
      driver: {driver}
      options:
        v4ab: "28"
"#,
        driver = p.name
    );
    std::fs::write(&file, yaml).expect("write the compose file");
    p.compose.push((Compose::V1, project.clone(), file.clone()));
    let compose = |args: &[&str]| run_ok(&mut Compose::V1.command(&project, &file, args));
    compose(&["up", "-d"]);
    let appnet = format!("{project}_appnet");
    let autonet = format!("{project}_autonet");
    let cfg = ipam_config(&appnet);
    let v4 = config_of(&cfg, false);
    assert_eq!(field(v4, "Subnet"), "10.229.0.0/16", "{cfg:?}");
    assert_eq!(field(v4, "IPRange"), "10.229.5.0/24", "{cfg:?}");
    assert_eq!(addr_field(v4, "Gateway"), ip("10.229.5.254"), "{cfg:?}");
    assert_eq!(v4["AuxiliaryAddresses"], json!({"host1": "10.229.1.5"}));
    assert_eq!(field(config_of(&cfg, true), "Subnet"), "2001:db8:e229::/64");
    let auto_cfg = ipam_config(&autonet);
    assert_eq!(
        field(&auto_cfg[0], "Subnet"),
        "10.219.0.0/28",
        "{auto_cfg:?}"
    );
    assert_eq!(network_inspect(&appnet, "{{.IPAM.Driver}}"), p.name);

    let id = |service: &str| compose(&["ps", "-q", service]);
    let fixed = id("fixed");
    let dynamic = id("dynamic");
    let auto = id("auto");
    assert_endpoint(
        &fixed,
        &appnet,
        (ip("10.229.1.10"), 16),
        Some((ip("2001:db8:e229::10"), 64)),
    );
    let (d4, d6) = endpoint_addrs(&dynamic, &appnet);
    assert_eq!(
        d4,
        ip("10.229.5.1"),
        "lowest of the range but not its first"
    );
    assert_eq!(
        d6,
        Some(ip("2001:db8:e229::2")),
        "not ::0 (anycast), not ::1 (the gateway gipam chose)"
    );
    let (a4, _) = endpoint_addrs(&auto, &autonet);
    assert_eq!(a4, ip("10.219.0.2"));
    let status = p.status();
    // Gateways (appnet v4 + v6, autonet), aux, fixed ×2, dynamic ×2, auto.
    assert_eq!(status["Leases"], 9, "{status}");
    assert_eq!(
        status["Pools"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );

    compose(&["down", "-t", "1"]);
    p.compose.clear();
    for n in [&appnet, &autonet] {
        assert!(
            !docker(&["network", "inspect", n]).status.success(),
            "{n} is gone"
        );
    }
    p.assert_empty();
}

/// The README's compose example, with the test's driver, image and
/// addresses: an explicit dual-stack network with a fixed address, a
/// size-only `subnet: 0.0.0.0/28`, a network with `options: {v4ab: "28"}`
/// and an external network made with `--ipam-opt v4ab=28`. `a` and `b` are
/// the second octets of the main pool and of the explicit subnet.
fn readme_example(compose: Compose, scenario: &str, a: u8, b: u8) {
    let v4 = format!("10.{a}.0.0/16");
    let v6 = format!("2001:db8:e{a}::/48");
    let Some(mut p) = Plugin::start(SUITE, scenario, &[&format!("V4={v4}"), &format!("V6={v6}")])
    else {
        return;
    };
    let drops = compose.drops_ipam_options();
    eprintln!(
        "{scenario}: {} {:?} on engine {}: drops ipam options: {drops}",
        compose.binary(),
        compose.version(),
        engine().version
    );
    let external = p.network("tagged", &["--ipam-opt", "v4ab=28"]);
    let tagged = net(&format!("10.{a}.0.0/28"));
    assert_eq!(
        subnet_of(&external, false),
        tagged,
        "--ipam-opt reaches gipam"
    );

    let project = p.name("compose");
    let file = p.dir.path().join("docker-compose.yml");
    let yaml = format!(
        r#"version: "2.4"
services:
  app:
    image: {IMAGE}
    command: ["sleep", "600"]
    networks:
      web:
        ipv4_address: 10.{b}.5.10
      auto: {{}}
      opts: {{}}
      {external}: {{}}
networks:
  web:
    enable_ipv6: true
    ipam:
      driver: {driver}
      config:
        - subnet: 10.{b}.0.0/16
          ip_range: 10.{b}.5.0/24
          gateway: 10.{b}.5.254
          aux_addresses: {{ host1: 10.{b}.1.5 }}
        - subnet: "2001:db8:e{b}::/64"
  auto:
    ipam:
      driver: {driver}
      config:
        - subnet: 0.0.0.0/28
  opts:
    ipam:
      driver: {driver}
      options: {{ v4ab: "28" }}
  {external}:
    external: true
"#,
        driver = p.name
    );
    std::fs::write(&file, yaml).expect("write the compose file");
    p.compose.push((compose, project.clone(), file.clone()));
    let run = |args: &[&str]| run_ok(&mut compose.command(&project, &file, args));
    run(&["up", "-d"]);

    let web = format!("{project}_web");
    let cfg = ipam_config(&web);
    let c4 = config_of(&cfg, false);
    assert_eq!(field(c4, "Subnet"), format!("10.{b}.0.0/16"), "{cfg:?}");
    assert_eq!(field(c4, "IPRange"), format!("10.{b}.5.0/24"), "{cfg:?}");
    assert_eq!(addr_field(c4, "Gateway"), ip(&format!("10.{b}.5.254")));
    assert_eq!(
        c4["AuxiliaryAddresses"],
        json!({"host1": format!("10.{b}.1.5")})
    );
    assert_eq!(
        field(config_of(&cfg, true), "Subnet"),
        format!("2001:db8:e{b}::/64")
    );

    let app = run(&["ps", "-q", "app"]);
    let ep = endpoint(&app, &web);
    assert_eq!(addr_field(&ep, "IPAddress"), ip(&format!("10.{b}.5.10")));
    assert_eq!(ep["IPPrefixLen"], 16, "{ep}");
    let a6 = addr_field(&ep, "GlobalIPv6Address");
    assert!(net(&format!("2001:db8:e{b}::/64")).contains(&a6), "{ep}");

    // The block of a network, from the container's address on it.
    let block_of = |n: &str| -> IpNet {
        let ep = endpoint(&app, n);
        let len = ep["IPPrefixLen"].as_u64().expect("IPPrefixLen") as u8;
        IpNet::new(addr_field(&ep, "IPAddress"), len)
            .expect("prefix length")
            .trunc()
    };
    let auto = block_of(&format!("{project}_auto"));
    let opts = block_of(&format!("{project}_opts"));
    eprintln!(
        "{scenario}: size-only subnet gave {auto} (inspect: {}); options network {opts}",
        network_inspect(&format!("{project}_auto"), "{{json .IPAM.Config}}")
    );
    assert_eq!(
        auto.prefix_len(),
        28,
        "subnet: 0.0.0.0/28 works on every compose"
    );
    assert_eq!(
        field(&ipam_config(&format!("{project}_auto"))[0], "Subnet"),
        "0.0.0.0/28",
        "20.10 and 28.5 show a size-only subnet as given"
    );
    assert_eq!(
        opts.prefix_len(),
        if drops { 24 } else { 28 },
        "compose {:?} {} ipam options",
        compose.version(),
        if drops { "drops" } else { "passes" }
    );
    assert_eq!(block_of(&external), tagged, "the external network");
    let main = net(&v4);
    for blk in [auto, opts, tagged] {
        assert!(main.contains(&blk), "{blk} from V4 {v4}");
    }
    let blocks: BTreeSet<IpNet> = [auto, opts, tagged].into_iter().collect();
    assert_eq!(blocks.len(), 3, "three blocks");
    let held: BTreeSet<IpNet> = p.pools();
    assert!(held.is_superset(&blocks), "gipam holds {held:?}");

    run(&["down", "-t", "1"]);
    p.compose.clear();
    assert!(
        docker(&["network", "inspect", &external]).status.success(),
        "down keeps the external network"
    );
    p.rm_all();
    p.assert_empty();
}

/// 10. The README's compose example on compose 1.29.
#[test]
fn s10_readme_compose_example_on_compose_v1() {
    readme_example(Compose::V1, "s10", 200, 201);
}

/// 11. The README's compose example on compose v2 (2.40): the same, except
///     that `options:` does not reach gipam before compose v5.
#[test]
fn s11_readme_compose_example_on_compose_v2() {
    readme_example(Compose::V2, "s11", 202, 203);
}
