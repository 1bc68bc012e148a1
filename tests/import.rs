//! `gipam import`: the original gipam's lease file into an empty state.
//! Docker's networks keep their PoolIDs (the original's random ids), their
//! addresses stay held, its main pools become gipam's; a non-empty state,
//! a running gipam and a file that does not parse are refused, naming why.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Daemon;
use serde_json::{Value, json};

/// What the original gipam's `Leaser.MarshalJSON` writes (MarshalIndent),
/// after two IPv4 networks and one IPv6 network, one block given back.
const LEASES: &str = r#"{
  "v6": "2001:db8:7700::/48",
  "v6ab": 64,
  "v6idx": 1,
  "v4": "10.70.0.0/16",
  "v4ab": 24,
  "v4idx": 3,
  "allocated": [
    {
      "id": "Xq3Ebw0ZcLkT9aPf",
      "v": 4,
      "pool": "10.70.0.0/24",
      "idx": 4,
      "allocated": [
        "10.70.0.1",
        "10.70.0.3"
      ],
      "free": [
        "10.70.0.2"
      ]
    },
    {
      "id": "h2GmRt6yUvWn1sKd",
      "v": 4,
      "pool": "10.70.2.0/24",
      "idx": 2,
      "allocated": [
        "10.70.2.1"
      ],
      "free": null
    },
    {
      "id": "pQ8zLc4VbN0mXe7J",
      "v": 6,
      "pool": "2001:db8:7700::/64",
      "idx": 3,
      "allocated": [
        "2001:db8:7700::1",
        "2001:db8:7700::2"
      ],
      "free": []
    }
  ],
  "free": [
    {
      "id": "Zr5TkWq9EeYy2uIo",
      "v": 4,
      "pool": "10.70.1.0/24",
      "idx": 1,
      "allocated": [],
      "free": []
    }
  ]
}"#;

fn import(file: &Path, state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gipam"))
        .arg("import")
        .arg(file)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("run gipam import")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn docker_keeps_its_networks_after_an_import() {
    let mut d = Daemon::new(&["--v4", "10.70.0.0/16", "--v6", "2001:db8:7700::/48"]);
    let file = d.dir.path().join("leases.json");
    std::fs::write(&file, LEASES).expect("write the lease file");
    let o = import(&file, &d.state);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("3 pools") && out.contains("5 leases"), "{out}");
    assert!(
        out.contains("V4=10.70.0.0/16 V4AB=24 V6=2001:db8:7700::/48 V6AB=64"),
        "{out}"
    );
    d.spawn().expect("gipam starts on the imported state");
    let mut c = d.client();

    // Docker sends the PoolID the original gipam gave it.
    let (s, v) = c
        .call(
            "IpamDriver.RequestAddress",
            &json!({"PoolID":"Xq3Ebw0ZcLkT9aPf","Address":"","Options":{}}),
        )
        .expect("RequestAddress");
    assert_eq!((s, &v["Address"]), (200, &json!("10.70.0.2/24")), "{v}");
    let (s, v) = c
        .call(
            "IpamDriver.RequestAddress",
            &json!({"PoolID":"pQ8zLc4VbN0mXe7J","Address":"2001:db8:7700::2","Options":{}}),
        )
        .expect("RequestAddress");
    assert_eq!(s, 500, "an imported lease is held: {v}");
    let (s, _) = c
        .call(
            "IpamDriver.ReleaseAddress",
            &json!({"PoolID":"Xq3Ebw0ZcLkT9aPf","Address":"10.70.0.3"}),
        )
        .expect("ReleaseAddress");
    assert_eq!(s, 200);
    // A new network gets a block none of the imported ones overlaps.
    let (s, v) = c
        .call(
            "IpamDriver.RequestPool",
            &json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":false}),
        )
        .expect("RequestPool");
    assert_eq!((s, &v["Pool"]), (200, &json!("10.70.1.0/24")), "{v}");

    let status = c.call("Gipam.Status", &Value::Null).expect("status").1;
    let leases = |id: &str| {
        status["Pools"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["PoolID"] == id))
            .map(|p| p["Leases"].clone())
    };
    assert_eq!(
        leases("LocalDefault/10.70.0.0/24"),
        Some(json!(2)),
        "{status}"
    );
    assert_eq!(
        leases("LocalDefault/10.70.2.0/24"),
        Some(json!(1)),
        "{status}"
    );
    assert_eq!(
        leases("LocalDefault/2001:db8:7700::/64"),
        Some(json!(2)),
        "{status}"
    );
    // The block's first address was the original's gateway.
    let all = c.call("Gipam.Leases", &Value::Null).expect("leases").1;
    assert!(
        all["Leases"]
            .as_array()
            .expect("Leases")
            .iter()
            .any(|l| l["Address"] == "10.70.2.1" && l["Gateway"] == true),
        "{all}"
    );

    // The alias survives a restart, and ReleasePool takes it too.
    assert!(d.stop());
    d.spawn().expect("gipam restarts");
    let mut c = d.client();
    let (s, _) = c
        .call(
            "IpamDriver.ReleasePool",
            &json!({"PoolID":"h2GmRt6yUvWn1sKd"}),
        )
        .expect("ReleasePool");
    assert_eq!(s, 200);
    let status = c.call("Gipam.Status", &Value::Null).expect("status").1;
    assert_eq!(
        status["Pools"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
}

#[test]
fn an_import_is_refused_naming_why() {
    let mut d = Daemon::new(&[]);
    let file = d.dir.path().join("leases.json");

    std::fs::write(&file, "{\"v4\": \"10.70.0.0/16\", \"allocated\": [").expect("write");
    let o = import(&file, &d.state);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not a lease file of the original gipam"),
        "{}",
        stderr(&o)
    );

    let overlapping = LEASES.replace("10.70.2.0/24", "10.70.0.0/23");
    std::fs::write(&file, overlapping).expect("write");
    let o = import(&file, &d.state);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("nothing was imported"),
        "{}",
        stderr(&o)
    );

    std::fs::write(&file, LEASES).expect("write");
    let o = import(&file, &d.state);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = import(&file, &d.state);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already holds 3 pools; import only into an empty state"),
        "{}",
        stderr(&o)
    );

    // While gipam runs, the state directory's lock refuses.
    d.args = ["--v4", "10.70.0.0/16", "--v6", "2001:db8:7700::/48"]
        .map(String::from)
        .to_vec();
    d.spawn().expect("gipam starts");
    let o = import(&file, &d.state);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is in use by another gipam"),
        "{}",
        stderr(&o)
    );
}
