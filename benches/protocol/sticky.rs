//! F6 figures: what remembered identities cost. A state whose /64 pool
//! remembers N released containers by name (Engine 29's requests, each
//! address held back) against one that remembers none: heap bytes per
//! remembered identity, restart time, the cost of one change in memory and
//! durably, and RequestAddress throughput over the socket at 64 clients
//! next to the no-op ceiling, all in the same run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gipam::ipam::{AddressRequest, Change, Ipam, Mac, State};
use gipam::service::Service;
use gipam::store::{LocalStore, Store};
use tokio::runtime::Runtime;

use crate::load::{drive, start_gipam_timed, start_noop};
use crate::{
    POOL_BASE, Plan, Target, add_pool, count, heap_bytes, mean, ms, pool_id, quantile, settings, us,
};

/// Changes committed before their commits are awaited together.
const BATCH: usize = 10_000;

fn name(i: usize) -> String {
    format!("bench-{i:07}")
}

fn mac(i: usize) -> Mac {
    let b = (i as u32).to_be_bytes();
    Mac([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

/// The lease of container `i` (Engine 29: name and MAC) and its release.
fn lease_and_release(i: usize) -> [Change; 2] {
    let address = std::net::IpAddr::V6((POOL_BASE + 2 + i as u128).into());
    [
        Change::AddAddress {
            pool: pool_id(),
            address,
            gateway: false,
            dynamic: true,
            mac: Some(mac(i)),
            name: Some(name(i)),
        },
        Change::ReleaseAddress {
            pool: pool_id(),
            address,
        },
    ]
}

/// The bench pool remembering `n` released containers.
fn remembering(n: usize) -> State {
    let mut state = State::new();
    state.apply(&add_pool()).expect("add the bench pool");
    for i in 0..n {
        for c in lease_and_release(i) {
            state.apply(&c).expect("apply");
        }
    }
    state
}

/// A state dir whose pool remembers `n` containers, made through the
/// store as the service would (snapshots whenever the store asks).
fn remembering_dir(n: usize, rt: &Runtime) -> (tempfile::TempDir, Duration) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("state");
    let (store, mut state) = LocalStore::open(&path).expect("open the state dir");
    let t = Instant::now();
    rt.block_on(async {
        let c = add_pool();
        state.apply(&c).expect("apply the pool");
        store.commit(c).1.await.expect("commit the pool");
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..n {
            for c in lease_and_release(i) {
                state.apply(&c).expect("apply");
                batch.push(store.commit(c).1);
                if store.wants_snapshot() {
                    store.snapshot(state.freeze());
                }
            }
            if batch.len() >= BATCH || i + 1 == n {
                for c in batch.drain(..) {
                    c.await.expect("commit");
                }
            }
        }
    });
    store.close().expect("the store closes cleanly");
    (dir, t.elapsed())
}

/// Engine 29's request for container `i`.
fn request(i: usize) -> AddressRequest {
    AddressRequest {
        pool: pool_id(),
        address: None,
        gateway: false,
        serial: false,
        mac: Some(mac(i)),
        name: Some(name(i)),
    }
}

/// One request + release in memory: container `i` comes back (its
/// address is recalled when it is remembered) and leaves again.
fn pair(ipam: &mut Ipam, i: usize) {
    let (add, addr) = ipam.plan_address(&request(i)).expect("plan an address");
    ipam.apply(&add).expect("apply the lease");
    let release = ipam
        .plan_release_address(&pool_id(), addr)
        .expect("plan its release")
        .expect("leased");
    ipam.apply(&release).expect("apply the release");
}

/// Median-round time of one pair against each state. With none
/// remembered, the same few containers come and go (so the memory stays
/// tiny); with n, each pair is another of the n coming back.
fn pair_costs(n: usize, pairs: usize) -> [Duration; 2] {
    let mut ipams = [0, n].map(|k| Ipam::new(settings(), remembering(k)).expect("settings fit"));
    const ROUNDS: usize = 9;
    let per_round = (pairs / ROUNDS).max(1);
    let mut rounds = [Vec::new(), Vec::new()];
    let mut next = 0;
    for _ in 0..ROUNDS {
        for (k, (ipam, times)) in ipams.iter_mut().zip(rounds.iter_mut()).enumerate() {
            let t = Instant::now();
            for j in 0..per_round {
                let i = if k == 0 { j % 16 } else { (next + j) % n };
                pair(ipam, i);
            }
            times.push(t.elapsed() / per_round as u32);
        }
        next += per_round;
    }
    rounds.map(|mut r| {
        r.sort_unstable();
        quantile(&r, 0.5)
    })
}

/// Per-change times of durable changes through the Service on each dir,
/// alternating every few changes.
fn durable_costs(dirs: [&Path; 2], n: usize, changes: usize, rt: &Runtime) -> [Vec<Duration>; 2] {
    let opened = dirs.map(|dir| {
        let (store, state) = LocalStore::open(dir).expect("open the state dir");
        let store = Arc::new(store);
        let ipam = Ipam::new(settings(), state).expect("settings fit");
        (Service::new(ipam, store.clone()), store)
    });
    let mut times = [Vec::new(), Vec::new()];
    const SPELL: usize = 10;
    rt.block_on(async {
        let mut next = 0;
        for spell in 0..(changes / (2 * SPELL) + 1) {
            for (k, ((svc, _), times)) in opened.iter().zip(times.iter_mut()).enumerate() {
                for j in 0..SPELL {
                    let i = if k == 0 { j } else { (next + j) % n.max(1) };
                    let t = Instant::now();
                    let net = svc.request_address(&request(i)).await.expect("a lease");
                    let add = t.elapsed();
                    let t = Instant::now();
                    svc.release_address(&pool_id(), net.addr())
                        .await
                        .expect("a release");
                    if spell > 0 {
                        times.push(add);
                        times.push(t.elapsed());
                    }
                }
            }
            next += SPELL;
        }
    });
    for (svc, store) in opened {
        drop(svc);
        store.close().expect("the store closes cleanly");
    }
    times.map(|mut t| {
        t.sort_unstable();
        t
    })
}

/// Engine 29's RequestAddress body for a container named `name`.
fn body(pool: &str, name: &str) -> Vec<u8> {
    let opts = serde_json::json!({"com.docker.network.endpoint.macaddress": "0a:f5:fb:b3:37:2e",
                                  "com.docker.network.endpoint.name": name});
    let mut b =
        serde_json::to_vec(&serde_json::json!({"PoolID": pool, "Address": "", "Options": opts}))
            .expect("encode");
    b.push(b'\n');
    b
}

pub fn remembered(plan: &Plan, rt: &Runtime, targets: &mut Vec<Target>) {
    let n = plan.largest();
    println!("\n## 7. Remembered identities (F6): {} vs none\n", count(n));
    // Memory: heap bytes the remembering adds, over the leases it replaces.
    let before = heap_bytes();
    let state = remembering(n);
    let with = heap_bytes().saturating_sub(before);
    drop(state);
    let per = with as f64 / n as f64;
    println!(
        "Heap of a state whose pool remembers {} released containers (name + MAC each; no leases): {:.1} MB, {per:.0} B per identity.\n",
        count(n),
        with as f64 / 1e6
    );

    let (empty, _) = remembering_dir(0, rt);
    let (full, built) = remembering_dir(n, rt);
    let open = |dir: &Path| {
        let t = Instant::now();
        let (store, state) = LocalStore::open(dir).expect("open");
        let took = t.elapsed();
        assert_eq!(
            state.pool(&pool_id()).map(|p| p.remembered_count()),
            Some(n)
        );
        store.close().expect("close");
        took
    };
    let restart = open(&full.path().join("state"));
    println!(
        "Built through the store in {:.1} s ({} changes); restart (LocalStore::open) with {} remembered: {}.\n",
        built.as_secs_f64(),
        count(2 * n),
        count(n),
        ms(restart)
    );

    let [mem0, mem1] = pair_costs(n, plan.pairs);
    let [dur0, dur1] = durable_costs(
        [&empty.path().join("state"), &full.path().join("state")],
        n,
        plan.durable,
        rt,
    );
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    println!(
        "| measure | none remembered (16 containers come and go) | {} remembered | ratio |",
        count(n)
    );
    println!("|---|---:|---:|---:|");
    let mem_ratio = ratio(mem0, mem1);
    println!(
        "| (a) in memory: a named container comes back and leaves (plan+apply ×2, median of 9 rounds, {} pairs) | {} | {} | {mem_ratio:.2} |",
        plan.pairs,
        us(mem0),
        us(mem1)
    );
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (quantile(&dur0, q), quantile(&dur1, q));
        println!(
            "| (b) durable change via Service, sequential: {label} | {} | {} | {:.2} |",
            ms(a),
            ms(b),
            ratio(a, b)
        );
    }
    let dur_ratio = ratio(mean(&dur0), mean(&dur1));
    println!(
        "| (b) durable change: mean of {} changes | {} | {} | {dur_ratio:.2} |",
        dur0.len(),
        ms(mean(&dur0)),
        ms(mean(&dur1))
    );

    // Throughput: 64 clients, Engine 29's body (a name no one remembers,
    // so every request searches past the held addresses), on the empty and
    // the full dir, and the no-op ceiling, in this run.
    // Two rounds, the dirs alternating, so drift on this shared machine
    // hits both alike; the figure is the mean rate of the two.
    let clients = plan.clients[2];
    let mut runs: [Vec<(f64, Duration)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..2 {
        for (k, (label, dir)) in [("none", &empty), ("remembered", &full)]
            .into_iter()
            .enumerate()
        {
            let ((server, store, pool), _) = start_gipam_timed(
                &dir.path().join("state"),
                dir.path().join(format!("gipam{round}.sock")),
            );
            let l = drive(
                &server.socket,
                &body(&pool, "bench-load"),
                clients,
                plan.load,
            );
            drop(server);
            store.close().expect("close");
            for (asked, handed) in store.snapshots() {
                println!(
                    "(c) round {round}, {label}: a snapshot was asked for {} into the load, state copied in {}",
                    ms(asked.saturating_duration_since(l.start)),
                    ms(handed - asked)
                );
            }
            println!(
                "(c) round {round}, {label}: {:.0} req/s, p99 {}",
                l.rate(),
                ms(l.p(0.99))
            );
            runs[k].push((l.rate(), l.p(0.99)));
        }
    }
    let rates = runs.map(|r| {
        let n = r.len().max(1) as f64;
        let worst = r.iter().map(|(_, p)| *p).max().unwrap_or_default();
        (r.iter().map(|(x, _)| x).sum::<f64>() / n, worst)
    });
    println!();
    let noop_dir = tempfile::tempdir().expect("a temp dir");
    let noop = start_noop(noop_dir.path().join("noop.sock"));
    let l = drive(
        &noop.socket,
        &body(&pool_id().to_string(), "x"),
        clients,
        plan.load,
    );
    drop(noop);
    let ceiling = l.rate();
    println!(
        "| (c) RequestAddress/s at {clients} clients, Engine 29's body, mean of 2 rounds (ceiling {ceiling:.0}/s) | {:.0} ({:.2} of it), worst p99 {} | {:.0} ({:.2}), worst p99 {} | {:.2} |",
        rates[0].0,
        rates[0].0 / ceiling,
        ms(rates[0].1),
        rates[1].0,
        rates[1].0 / ceiling,
        ms(rates[1].1),
        rates[1].0 / rates[0].0
    );
    targets.push(Target {
        what: format!(
            "in-memory change with {} remembered within 1.5x of none",
            count(n)
        ),
        figure: format!("{mem_ratio:.2}x"),
        pass: mem_ratio <= 1.5,
    });
    targets.push(Target {
        what: format!(
            "durable change with {} remembered within 1.5x of none (mean)",
            count(n)
        ),
        figure: format!("{dur_ratio:.2}x"),
        pass: dur_ratio <= 1.5,
    });
    targets.push(Target {
        what: format!(
            "≥ half the no-op ceiling at {clients} clients with {} remembered",
            count(n)
        ),
        figure: format!("{:.2}", rates[1].0 / ceiling),
        pass: rates[1].0 >= ceiling / 2.0,
    });
}
