//! The fleet endpoints without etcd: the wire shape of a snapshot built by
//! hand, the answers outside fleet mode, and fleet mode before etcd ever
//! answered (nothing here contacts etcd: every refusal below is decided
//! from the empty view).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::FleetConfig;
use crate::fleet::keys::{Mains, SharedNet};
use crate::fleet::{Fleet, FleetSnapshot, HostView};
use crate::ipam::{Ipam, Settings};
use crate::service::Service;
use crate::store::{LocalStore, Store};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("net")
}

/// A service on a fresh state in `dir`, in fleet mode as host `a` when
/// `fleet` (its etcd is a port nothing listens on).
fn service(dir: &std::path::Path, fleet: bool) -> Arc<Service> {
    let (store, state) = LocalStore::open(dir).expect("open");
    let store: Arc<dyn Store> = Arc::new(store);
    let settings = Settings {
        v4: vec![net("10.77.0.0/16")],
        v6: vec![net("fd00:77::/48")],
        v4ab: 24,
        v6ab: 64,
    };
    let mut svc = Service::new(Ipam::new(settings, state).expect("ipam"), store);
    if fleet {
        svc = svc.in_fleet(Arc::new(Fleet::new(FleetConfig {
            endpoints: vec!["http://127.0.0.1:9".into()],
            prefix: "/gipam".into(),
            ca: None,
            identity: None,
            user: None,
            timeout: Duration::from_secs(1),
            host_id: "a".into(),
        })));
    }
    Arc::new(svc)
}

/// POSTs `body` to `path`; (status, JSON reply).
async fn post(svc: &Arc<Service>, path: &str, body: &str) -> (u16, Value) {
    let r = warp::test::request()
        .method("POST")
        .path(path)
        .body(body)
        .reply(&super::super::routes(svc.clone()))
        .await;
    let v = serde_json::from_slice(r.body()).expect("JSON reply");
    (r.status().as_u16(), v)
}

fn err(v: &Value) -> &str {
    v["Err"].as_str().unwrap_or_else(|| panic!("no Err in {v}"))
}

#[test]
fn a_snapshot_has_the_documented_shape() {
    let host = |name: &str, alive, seen, blocks: &[&str], shared: &[&str], addrs| HostView {
        host: name.into(),
        seen,
        alive,
        blocks: blocks.iter().map(|b| net(b)).collect(),
        shared: shared.iter().map(|s| s.to_string()).collect(),
        shared_addresses: addrs,
    };
    let mut shared = BTreeMap::new();
    shared.insert(
        "n1".to_string(),
        SharedNet {
            subnet: net("10.77.9.0/24"),
            gateway: Some("10.77.9.1".parse().expect("ip")),
            holders: vec!["a".into(), "b".into()],
        },
    );
    let snap = FleetSnapshot {
        host: "a".into(),
        revision: 42,
        etcd_ok: false,
        etcd_error: Some("connection refused".into()),
        hosts: vec![
            host(
                "a",
                true,
                Some(1_796_113_802),
                &["10.77.0.0/24"],
                &["n1"],
                2,
            ),
            host("b", false, None, &[], &["n1"], 0),
        ],
        shared,
        mains: Some(Mains {
            v4: vec![net("10.77.0.0/16")],
            v6: vec![],
        }),
    };
    let wire = serde_json::to_value(super::response(snap, &["http://e1:2379".into()]));
    assert_eq!(
        wire.expect("JSON"),
        json!({
            "Host": "a",
            "Revision": 42,
            "EtcdOk": false,
            "EtcdError": "connection refused",
            "Endpoints": ["http://e1:2379"],
            "Hosts": [
                {"Host": "a", "Alive": true, "LastSeen": 1_796_113_802u64,
                 "Blocks": ["10.77.0.0/24"], "Shared": ["n1"], "SharedAddresses": 2},
                {"Host": "b", "Alive": false, "LastSeen": null,
                 "Blocks": [], "Shared": ["n1"], "SharedAddresses": 0}
            ],
            "Shared": [
                {"Name": "n1", "Subnet": "10.77.9.0/24", "Gateway": "10.77.9.1", "Holders": ["a", "b"]}
            ],
            "Mains": {"V4": ["10.77.0.0/16"], "V6": []}
        })
    );
    let forgot = crate::fleet::Forgotten {
        host: "b".into(),
        blocks: vec![net("10.77.3.0/24")],
        shared_left: vec!["n1".into()],
        shared_addresses: 3,
    };
    assert_eq!(
        serde_json::to_value(super::forgotten(forgot)).expect("JSON"),
        json!({"Host": "b", "Blocks": ["10.77.3.0/24"], "SharedLeft": ["n1"], "SharedAddresses": 3})
    );
}

#[tokio::test]
async fn outside_fleet_mode_the_fleet_endpoints_say_so() {
    let dir = tempfile::tempdir().expect("dir");
    let svc = service(dir.path(), false);
    for (path, body) in [
        ("/Gipam.Fleet", ""),
        ("/Gipam.FleetForget", r#"{"Host":"b"}"#),
    ] {
        let (status, v) = post(&svc, path, body).await;
        assert_eq!(status, 500, "{path}: {v}");
        assert!(
            err(&v).starts_with("this gipam is not in fleet mode (ETCD_ENDPOINTS is empty)"),
            "{path}: {v}"
        );
    }
    let req = r#"{"AddressSpace":"LocalDefault","Pool":"","Options":{"id":"web"},"V6":false}"#;
    let (status, v) = post(&svc, "/IpamDriver.RequestPool", req).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(&svc, "/Gipam.Status", "").await;
    assert_eq!(status, 200);
    assert_eq!(v["Fleet"], Value::Null, "{v}");
    let pool = &v["Pools"][0];
    assert_eq!(
        [&pool["Shared"], &pool["Owner"], &pool["TreePool"]],
        [&Value::Null, &json!("web"), &Value::Null],
        "{v}"
    );
}

#[tokio::test]
async fn a_forget_request_is_checked_before_anything_is_released() {
    let dir = tempfile::tempdir().expect("dir");
    let svc = service(dir.path(), true);
    for (body, want) in [
        ("{\"Host\":", "FleetForget request is not valid JSON"),
        (
            "[\"b\"]",
            "FleetForget request is not valid JSON: expected an object",
        ),
        ("", "FleetForget request body is empty"),
        (r#"{"Host":null}"#, "FleetForget needs Host"),
    ] {
        let (status, v) = post(&svc, "/Gipam.FleetForget", body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(err(&v).starts_with(want), "{body}: {v}");
    }
    for (host, want) in [
        ("a", "host a is this host"),
        ("gone", "the fleet has no host gone"),
        ("no/such", "is not a host name"),
    ] {
        let body = json!({ "Host": host }).to_string();
        let (status, v) = post(&svc, "/Gipam.FleetForget", &body).await;
        assert_eq!(status, 500, "{host}: {v}");
        assert!(err(&v).contains(want), "{host}: {v}");
    }
}

#[tokio::test]
async fn fleet_mode_before_etcd_answered_shows_an_empty_fleet() {
    let dir = tempfile::tempdir().expect("dir");
    let svc = service(dir.path(), true);
    let (status, v) = post(&svc, "/Gipam.Fleet", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"Host": "a", "Revision": 0, "EtcdOk": false, "EtcdError": null,
               "Endpoints": ["http://127.0.0.1:9"], "Hosts": [], "Shared": [], "Mains": null})
    );
    let (_, v) = post(&svc, "/Gipam.Status", "").await;
    assert_eq!(
        v["Fleet"],
        json!({"Host": "a", "EtcdOk": false, "EtcdError": null,
               "Endpoints": ["http://127.0.0.1:9"], "Revision": 0, "Hosts": 0,
               "RoundTrips": 0, "LastRoundTripSeconds": null,
               "Conflicts": 0, "Retries": 0, "Errors": 0})
    );
}
