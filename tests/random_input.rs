//! Thousands of mangled and random requests against every endpoint, in
//! process through `warp::test`: every reply is a known status with a JSON
//! body (an `Err` string when it is not 200), nothing panics, and what the
//! store has on disk afterwards is exactly the live state.

mod common;

use std::sync::Arc;

use common::Rng;
use gipam::api::routes;
use gipam::ipam::{Ipam, Settings};
use gipam::service::Service;
use gipam::store::{LocalStore, Store};
use serde_json::{Value, json};

const ENDPOINTS: &[&str] = &[
    "/Plugin.Activate",
    "/IpamDriver.GetCapabilities",
    "/IpamDriver.GetDefaultAddressSpaces",
    "/IpamDriver.RequestPool",
    "/IpamDriver.ReleasePool",
    "/IpamDriver.RequestAddress",
    "/IpamDriver.ReleaseAddress",
    "/Gipam.Status",
    "/Gipam.Leases",
    "/IpamDriver.Nope",
];

/// Values that are plausible, edge-case or plain wrong for any field.
fn value(rng: &mut Rng, ids: &[String]) -> Value {
    let strings = [
        "",
        "LocalDefault",
        "GlobalDefault",
        "10.40.0.0/16",
        "10.40.0.0/24",
        "10.40.3.0/28",
        "10.40.0.1",
        "0.0.0.0/26",
        "0.0.0.0/0",
        "::/80",
        "2001:db8:7700::/64",
        "2001:db8:7700::/127",
        "2001:db8:7700::5",
        "10.99.0.0/31",
        "10.99.0.0/32",
        "255.255.255.255/32",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        "10.40.0.0/16/10.40.5.0/24",
        "LocalDefault/10.40.0.0/24",
        "LocalDefault/::/0",
        "02:42:0a:28:00:02",
        "com.docker.network.gateway",
        "not an address",
        "🦀",
        "10.40.0.256",
        "::ffff:10.40.0.1",
    ];
    match rng.below(9) {
        0 => json!(null),
        1 => json!(rng.next().is_multiple_of(2)),
        2 => json!(rng.next() as i64),
        3 => json!([1, "two"]),
        4 => json!({"nested": {"deep": true}}),
        5 if !ids.is_empty() => json!(rng.pick(ids)),
        6 => json!("x".repeat(rng.below(5000))),
        _ => json!(rng.pick(&strings)),
    }
}

fn body(rng: &mut Rng, ids: &[String]) -> Vec<u8> {
    let keys = [
        "AddressSpace",
        "Pool",
        "SubPool",
        "Options",
        "V6",
        "PoolID",
        "Address",
        "Unknown",
    ];
    let option_keys = [
        "v4ab",
        "v6ab",
        "serial",
        "bogus",
        "RequestAddressType",
        "com.docker.network.endpoint.macaddress",
        "com.docker.network.endpoint.name",
        "com.docker.network.ipam.serial",
    ];
    let mut obj = serde_json::Map::new();
    for _ in 0..rng.below(7) {
        let k = *rng.pick(&keys);
        let v = if k == "Options" && rng.below(3) > 0 {
            let mut o = serde_json::Map::new();
            for _ in 0..rng.below(3) {
                let ok = *rng.pick(&option_keys);
                let ov = match rng.below(4) {
                    0 => json!(rng.below(140).to_string()),
                    1 => json!("true"),
                    _ => value(rng, ids),
                };
                o.insert(ok.to_string(), ov);
            }
            Value::Object(o)
        } else if k == "V6" && rng.below(2) == 0 {
            json!(rng.below(2) == 0)
        } else {
            value(rng, ids)
        };
        obj.insert(k.to_string(), v);
    }
    let mut bytes = serde_json::to_vec(&Value::Object(obj)).unwrap_or_default();
    // Sometimes mangle the bytes themselves.
    match rng.below(6) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        1 => bytes.truncate(rng.below(bytes.len() + 1)),
        2 => bytes = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        _ => {}
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_panic_and_the_disk_matches_memory() {
    let mut rng = Rng::from_clock();
    println!("random input seed {}", rng.0);
    let dir = tempfile::tempdir().expect("tmp");
    let settings = Settings {
        v4: vec!["10.40.0.0/16".parse().expect("net")],
        v6: vec!["2001:db8:7700::/48".parse().expect("net")],
        v4ab: 24,
        v6ab: 64,
    };
    // A small snapshot threshold so snapshots happen along the way too.
    let (store, state) = LocalStore::open_with(dir.path(), 4096).expect("open");
    let store: Arc<dyn Store> = Arc::new(store);
    let ipam = Ipam::new(settings.clone(), state).expect("ipam");
    let svc = Arc::new(Service::new(ipam, store.clone()));
    let filter = routes(svc.clone());

    let mut ids: Vec<String> = Vec::new();
    let mut ok = 0;
    let mut leased = 0;
    for _ in 0..4000 {
        let path = *rng.pick(ENDPOINTS);
        let method = if rng.below(20) == 0 { "GET" } else { "POST" };
        let b = match path {
            // Half the address calls are well formed, so pools fill up,
            // empty and get released while the noise goes on.
            "/IpamDriver.RequestAddress" | "/IpamDriver.ReleaseAddress"
                if !ids.is_empty() && rng.below(2) == 0 =>
            {
                let id = rng.pick(&ids).clone();
                let addr = if rng.below(2) == 0 {
                    json!("")
                } else {
                    value(&mut rng, &ids)
                };
                serde_json::to_vec(&json!({"PoolID": id, "Address": addr, "Options": null}))
                    .unwrap_or_default()
            }
            _ => body(&mut rng, &ids),
        };
        let resp = warp::test::request()
            .method(method)
            .path(path)
            .body(b.clone())
            .reply(&filter)
            .await;
        let status = resp.status().as_u16();
        assert!(
            [200, 400, 404, 405, 413, 500].contains(&status),
            "{path} answered {status} to {:?}",
            String::from_utf8_lossy(&b)
        );
        let v: Value = serde_json::from_slice(resp.body()).unwrap_or_else(|e| {
            panic!(
                "{path}: reply is not JSON ({e}) for {:?}",
                String::from_utf8_lossy(&b)
            )
        });
        if status == 200 {
            ok += 1;
            if let Some(id) = v["PoolID"].as_str() {
                ids.push(id.to_string());
            }
            if v["Address"].is_string() {
                leased += 1;
            }
        } else {
            let e = v["Err"].as_str().unwrap_or_default();
            assert!(!e.is_empty(), "{path} {status} without Err: {v}");
        }
    }
    println!(
        "{ok} of 4000 random requests succeeded; {} pools and {leased} addresses handed out",
        ids.len()
    );
    assert!(
        !ids.is_empty() && leased > 0,
        "the generator should also produce valid pool and address requests"
    );

    // Whatever happened, the disk holds exactly the live state.
    let live = serde_json::to_string(&svc.ipam().state().snapshot()).expect("json");
    store.close().expect("close");
    drop(filter);
    drop(svc);
    drop(store);
    let (_store, reloaded) = LocalStore::open(dir.path()).expect("reopen");
    let disk = serde_json::to_string(&reloaded.snapshot()).expect("json");
    assert_eq!(disk, live, "state on disk differs from memory");
}
