//! Crash safety (F8): kill -9 the daemon in the middle of a concurrent
//! allocation storm, restart it, and check that every acknowledged
//! allocation is still held and that no address was ever given twice.
//! Repeated at several pseudo-random points on the same state.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Daemon, Rng};
use serde_json::json;

/// What the clients were told, shared by all storm threads.
#[derive(Default)]
struct Ledger {
    /// Address -> pool of every acknowledged allocation not yet released.
    held: HashMap<String, String>,
    /// Allocations acknowledged while already held by someone else.
    doubles: Vec<String>,
    acks: usize,
}

/// One storm client: allocate, and now and then release one of its own.
fn storm(socket: std::path::PathBuf, pools: Vec<String>, ledger: Arc<Mutex<Ledger>>, seed: u64) {
    let Ok(mut c) = Client::connect(&socket) else {
        return;
    };
    let mut rng = Rng(seed | 1);
    let mut mine: Vec<(String, String)> = Vec::new();
    loop {
        let release = !mine.is_empty() && rng.next().is_multiple_of(4);
        if release {
            let i = (rng.next() % mine.len() as u64) as usize;
            let (pool, addr) = mine.swap_remove(i);
            let body = json!({"PoolID": pool, "Address": addr});
            // Forget it before asking: an unacknowledged release may or may
            // not have happened, so the address is no longer checkable.
            ledger.lock().expect("ledger").held.remove(&addr);
            match c.call("IpamDriver.ReleaseAddress", &body) {
                Ok(_) => {}
                Err(_) => return,
            }
        } else {
            let pool = &pools[(rng.next() % pools.len() as u64) as usize];
            let body = json!({"PoolID": pool, "Address": "", "Options": null});
            match c.call("IpamDriver.RequestAddress", &body) {
                Ok((200, v)) => {
                    let cidr = v["Address"].as_str().unwrap_or_default();
                    let addr = cidr.split('/').next().unwrap_or_default().to_string();
                    let mut l = ledger.lock().expect("ledger");
                    l.acks += 1;
                    if l.held.insert(addr.clone(), pool.clone()).is_some() {
                        l.doubles.push(addr.clone());
                    }
                    mine.push((pool.clone(), addr));
                }
                // A full pool answers an error; keep storming.
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

#[test]
fn kill_9_during_an_allocation_storm_loses_no_acknowledged_allocation() {
    let mut rng = Rng::from_clock();
    println!("crash test seed {}", rng.0);
    // A tiny COMPACT_BYTES makes the store rotate journals and write
    // snapshots all through the storm, so kills land inside those too.
    let mut d = Daemon::start(&[
        "--v4",
        "10.40.0.0/16",
        "--v6",
        "2001:db8:7700::/48",
        "--compact-bytes",
        "4096",
    ]);
    let mut c = d.client();
    let mut pools = Vec::new();
    for v6 in [false, true] {
        let body =
            json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":v6});
        let (s, v) = c.call("IpamDriver.RequestPool", &body).expect("pool");
        assert_eq!(s, 200, "{v}");
        pools.push(v["PoolID"].as_str().expect("id").to_string());
    }
    // A small explicit pool so the storm also hits exhaustion and reuse.
    let body = json!({"AddressSpace":"LocalDefault","Pool":"10.99.0.0/26","SubPool":"","Options":{},"V6":false});
    let (s, v) = c.call("IpamDriver.RequestPool", &body).expect("pool");
    assert_eq!(s, 200, "{v}");
    pools.push(v["PoolID"].as_str().expect("id").to_string());
    drop(c);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..5 {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (s, p, l) = (d.socket.clone(), pools.clone(), ledger.clone());
                let seed = rng.next() ^ t;
                std::thread::spawn(move || storm(s, p, l, seed))
            })
            .collect();
        let delay = Duration::from_millis(50 + rng.next() % 400);
        std::thread::sleep(delay);
        d.kill9();
        for t in threads {
            t.join().expect("storm thread");
        }
        let (acks, held) = {
            let l = ledger.lock().expect("ledger");
            assert!(l.doubles.is_empty(), "given twice: {:?}", l.doubles);
            (l.acks, l.held.clone())
        };
        println!(
            "round {round}: killed after {delay:?}, {acks} acks so far, {} held",
            held.len()
        );
        assert!(acks > 0, "the storm made no allocation before the kill");

        d.spawn().expect("restart after kill -9");
        let mut c = d.client();
        // Every acknowledged, unreleased allocation is still held.
        for (addr, pool) in &held {
            let body = json!({"PoolID": pool, "Address": addr, "Options": null});
            let (s, v) = c.call("IpamDriver.RequestAddress", &body).expect("probe");
            assert_ne!(
                s, 200,
                "round {round}: acknowledged {addr} in {pool} was lost"
            );
            let e = v["Err"].as_str().unwrap_or_default();
            assert!(e.contains("already in use"), "round {round}: {addr}: {e}");
        }
    }
    assert!(
        d.state.join("snapshot.json").exists(),
        "the storm wrote snapshots (COMPACT_BYTES=4096)"
    );
    // A last check that the restarted daemon never hands out a held address.
    let held = ledger.lock().expect("ledger").held.clone();
    let mut c = d.client();
    let start = Instant::now();
    let mut fresh = HashSet::new();
    while start.elapsed() < Duration::from_secs(2) && fresh.len() < 200 {
        let body = json!({"PoolID": &pools[0], "Address": "", "Options": null});
        let (s, v) = c.call("IpamDriver.RequestAddress", &body).expect("alloc");
        if s != 200 {
            break;
        }
        let a = v["Address"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(!held.contains_key(&a), "{a} handed out while held");
        assert!(fresh.insert(a.clone()), "{a} handed out twice");
    }
}
