//! Fleet mode (F9) against a real three-member etcd cluster on loopback
//! and three real gipam hosts: storms of block claims with and without a
//! member killed mid-storm, shared networks across hosts with a kill -9,
//! and a compaction while one host's watch lags.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::etcd::Cluster;
use common::fleet::*;
use common::{Client, Daemon};
use ipnet::IpNet;
use serde_json::{Value, json};

/// The blocks etcd holds under the default prefix, by subnet.
fn etcd_blocks(c: &Cluster) -> Vec<(String, IpNet)> {
    let out = c
        .etcdctl(&["get", "--prefix", "/gipam/blocks/", "--print-value-only"])
        .expect("etcdctl get");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some((
                v["host"].as_str()?.to_string(),
                v["subnet"].as_str()?.parse().ok()?,
            ))
        })
        .collect()
}

/// What one client thread of a storm asks for, in turn.
fn storm_request(i: usize, host: usize) -> Value {
    match i % 5 {
        0 | 1 => pool_req("", json!({})),
        2 => pool_req("", json!({"v4ab": "26"})),
        // Size-only (what Engine 29 sends).
        3 => pool_req("0.0.0.0/25", json!({})),
        // Explicit subnets every host asks for: at most one wins each.
        _ => pool_req(
            &format!("10.60.{}.0/24", 200 + (i / 5 + host) % 40),
            json!({}),
        ),
    }
}

/// Runs `per` RequestPools on each of 4 clients per host; returns every
/// acknowledged (host, subnet). `mid` runs once half of them are done.
fn storm(hosts: &[Daemon], per: usize, mid: impl FnOnce()) -> Vec<(String, IpNet)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = hosts.len() * 4 * per;
    let mut threads = Vec::new();
    for (h, d) in hosts.iter().enumerate() {
        for t in 0..4 {
            let socket = d.socket.clone();
            let acked = acked.clone();
            let done = done.clone();
            threads.push(std::thread::spawn(move || {
                let mut c = Client::connect(&socket).expect("connect");
                for i in 0..per {
                    let req = storm_request(i * 4 + t, h);
                    if let Ok((status, reply)) = c.call("IpamDriver.RequestPool", &req)
                        && let Some(net) = granted(status, &reply)
                    {
                        acked.lock().unwrap().push((format!("h{h}"), net));
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
    }
    let mut mid = Some(mid);
    while done.load(std::sync::atomic::Ordering::Relaxed) < total {
        if done.load(std::sync::atomic::Ordering::Relaxed) >= total / 2
            && let Some(f) = mid.take()
        {
            f();
        }
        std::thread::sleep(Duration::from_millis(5));
        if threads.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    for t in threads {
        t.join().expect("storm thread");
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

/// Every acknowledged pool is held by its host after a kill -9 and a
/// restart, and claimed in etcd by it; no two pools overlap anywhere.
fn check_storm(cluster: &Cluster, hosts: &mut [Daemon], acked: &[(String, IpNet)]) {
    assert!(acked.len() > 20, "too few pools granted: {}", acked.len());
    let pairs = overlapping_pairs(acked);
    assert!(pairs.is_empty(), "overlapping pools granted: {pairs:?}");
    for d in hosts.iter_mut() {
        d.kill9();
        d.spawn().expect("restart");
    }
    // The tidy pass only deletes what no host holds; wait until etcd and
    // the hosts agree.
    let want: HashSet<(String, IpNet)> = acked.iter().cloned().collect();
    for (h, d) in hosts.iter().enumerate() {
        let held: HashSet<IpNet> = pools_of(d).into_iter().collect();
        for (host, net) in acked.iter().filter(|(x, _)| *x == format!("h{h}")) {
            assert!(held.contains(net), "{host} lost acknowledged pool {net}");
        }
    }
    let mut tries = 0;
    loop {
        let in_etcd: HashSet<(String, IpNet)> = etcd_blocks(cluster).into_iter().collect();
        if in_etcd == want || tries > 50 {
            let missing: Vec<_> = want.difference(&in_etcd).collect();
            let extra: Vec<_> = in_etcd.difference(&want).collect();
            assert!(
                missing.is_empty(),
                "acknowledged claims missing in etcd: {missing:?}"
            );
            assert!(
                extra.is_empty(),
                "claims in etcd no host acknowledged: {extra:?}"
            );
            break;
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_storm_of_pool_requests_from_three_hosts_never_overlaps() {
    let cluster = Cluster::start(3);
    let ep = cluster.endpoints_csv();
    let mut hosts: Vec<Daemon> = (0..3).map(|i| host(&ep, &format!("h{i}"), &[])).collect();
    let acked = storm(&hosts, 12, || {});
    check_storm(&cluster, &mut hosts, &acked);
}

#[test]
fn a_storm_survives_an_etcd_member_killed_and_restarted_mid_storm() {
    let cluster = Arc::new(Mutex::new(Cluster::start(3)));
    let ep = cluster.lock().unwrap().endpoints_csv();
    let mut hosts: Vec<Daemon> = (0..3).map(|i| host(&ep, &format!("h{i}"), &[])).collect();
    let killer = cluster.clone();
    let acked = storm(&hosts, 12, move || {
        let mut c = killer.lock().unwrap();
        let victim = c.leader().unwrap_or(1);
        c.kill(victim);
        std::thread::sleep(Duration::from_millis(300));
        c.restart(victim);
    });
    let c = cluster.lock().unwrap();
    check_storm(&c, &mut hosts, &acked);
}

/// Asks a shared pool's address; returns it when granted.
fn request_addr(c: &mut Client, pool: &str) -> Option<IpAddr> {
    let (status, v) = c
        .call(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool, "Address": "", "Options": {}}),
        )
        .ok()?;
    (status == 200)
        .then(|| v["Address"].as_str()?.split('/').next()?.parse().ok())
        .flatten()
}

#[test]
fn a_shared_network_gives_unique_addresses_across_hosts_through_a_kill9() {
    let cluster = Cluster::start(3);
    let ep = cluster.endpoints_csv();
    let mut hosts: Vec<Daemon> = (0..3).map(|i| host(&ep, &format!("h{i}"), &[])).collect();
    let shared = pool_req("", json!({"shared": "storm", "v4ab": "22"}));
    let mut ids = Vec::new();
    for d in &hosts {
        let (status, v) = d.client().call("IpamDriver.RequestPool", &shared).unwrap();
        assert_eq!(status, 200, "{v}");
        ids.push(v["PoolID"].as_str().unwrap().to_string());
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one subnet everywhere: {ids:?}"
    );
    let pool = ids[0].clone();
    // Each client leases, releases every third lease again, and records
    // what it was acknowledged.
    let held = Arc::new(Mutex::new(Vec::<(usize, IpAddr)>::new()));
    let mut threads = Vec::new();
    for (h, d) in hosts.iter().enumerate() {
        for t in 0..3 {
            let socket = d.socket.clone();
            let held = held.clone();
            let pool = pool.clone();
            threads.push(std::thread::spawn(move || {
                let Ok(mut c) = Client::connect(&socket) else {
                    return;
                };
                for i in 0..30 {
                    let Some(a) = request_addr(&mut c, &pool) else {
                        // The host was killed: reconnect after its restart.
                        std::thread::sleep(Duration::from_millis(200));
                        match Client::connect(&socket) {
                            Ok(n) => c = n,
                            Err(_) => continue,
                        }
                        continue;
                    };
                    if (i + t) % 3 == 0 {
                        let r = c.call(
                            "IpamDriver.ReleaseAddress",
                            &json!({"PoolID": pool, "Address": a.to_string()}),
                        );
                        // Released, or its outcome unknown (the host was
                        // killed before it replied): not held for sure.
                        if !matches!(r, Ok((status, _)) if status != 200) {
                            continue;
                        }
                    }
                    held.lock().unwrap().push((h, a));
                }
            }));
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    hosts[1].kill9();
    std::thread::sleep(Duration::from_millis(200));
    hosts[1].spawn().expect("restart h1");
    for t in threads {
        t.join().unwrap();
    }
    let held = held.lock().unwrap().clone();
    assert!(held.len() > 60, "too few addresses granted: {}", held.len());
    let mut owner: HashMap<IpAddr, usize> = HashMap::new();
    for (h, a) in &held {
        if let Some(o) = owner.insert(*a, *h) {
            panic!("address {a} acknowledged to h{o} and h{h}");
        }
    }
    for (h, d) in hosts.iter().enumerate() {
        let leases: HashSet<IpAddr> = leases_of(d, &pool).into_iter().collect();
        for (_, a) in held.iter().filter(|(x, _)| *x == h) {
            assert!(leases.contains(a), "h{h} lost acknowledged lease {a}");
        }
    }
}

#[test]
fn a_compaction_while_a_watch_lags_reloads_the_fleet() {
    let cluster = Cluster::start(3);
    let ep = cluster.endpoints_csv();
    let a = host(&ep, "a", &[]);
    let b = host(&ep, "b", &[]);
    // b stops reading its watch while a claims blocks and the fleet's
    // history fills up past what the watch stream buffers.
    let stop = |sig: &str| {
        std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(b.pid().to_string())
            .status()
            .unwrap();
    };
    stop("STOP");
    let mut ca = a.client();
    let mut a_nets = Vec::new();
    for _ in 0..20 {
        let (status, v) = ca
            .call("IpamDriver.RequestPool", &pool_req("", json!({})))
            .unwrap();
        a_nets.push(granted(status, &v).expect("a's pool"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = cluster.client().await;
        // 4,000 revisions of 2 KiB: far more responses than etcd queues
        // for a reader that does not read (its watch falls behind).
        let filler = "x".repeat(2048);
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let (mut c, filler) = (c.clone(), filler.clone());
                tokio::spawn(async move {
                    for i in 0..250 {
                        c.put(format!("/gipam/filler/{t}/{i}"), filler.clone(), None)
                            .await
                            .expect("put filler");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("filler task");
        }
    });
    cluster.compact();
    stop("CONT");
    // b's next block must be one a does not hold.
    let mut cb = b.client();
    let mut ok = None;
    for _ in 0..50 {
        let (status, v) = cb
            .call("IpamDriver.RequestPool", &pool_req("", json!({})))
            .unwrap();
        if let Some(n) = granted(status, &v) {
            ok = Some(n);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let net = ok.expect("b gets a pool after the compaction");
    assert!(
        a_nets.iter().all(|x| !overlaps(x, &net)),
        "b's {net} overlaps one of a's {a_nets:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(&b.log).unwrap_or_default();
    assert!(
        log.contains("fell behind a compaction"),
        "b's log tells of the reload:\n{log}"
    );
}
