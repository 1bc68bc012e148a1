//! Fleet mode (F9) on a real three-member etcd on loopback, three gipam
//! processes (the release binary) on their own sockets and state dirs:
//!
//! - block claims/s (RequestPool, each one etcd transaction plus an fsync)
//!   across the three hosts at 1, 16 and 64 clients, and shared-network
//!   RequestAddress/s (one create-if-absent transaction plus an fsync), with
//!   p50/p99, each next to etcd's own rate for a create-if-absent
//!   transaction at the same concurrency, measured in the same run just
//!   before it (the ceiling; target: at least half of it);
//! - local-pool RequestAddress in fleet mode against the same gipam binary
//!   in local mode (target: at least 0.9), alternating the two.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use serde_json::{Value, json};

use crate::common::etcd::Cluster;
use crate::common::{Client as Plugin, Daemon};
use crate::{Plan, Target, ms, quantile};

/// Throughput and latency of one run.
struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    failed: usize,
    /// The first failure's reply.
    first_error: Option<String>,
}

impl Figures {
    fn of(mut lat: Vec<Duration>, failed: usize, elapsed: Duration) -> Figures {
        lat.sort_unstable();
        Figures {
            rate: lat.len() as f64 / elapsed.as_secs_f64(),
            p50: quantile(&lat, 0.50),
            p99: quantile(&lat, 0.99),
            failed,
            first_error: None,
        }
    }

    fn row(&self, what: &str, clients: usize) {
        let failed = if self.failed > 0 {
            let first = self.first_error.as_deref().unwrap_or("");
            format!(
                " ({} failed; first: {})",
                self.failed,
                first.chars().take(160).collect::<String>()
            )
        } else {
            String::new()
        };
        println!(
            "| {what} | {clients} | {:.0} | {} | {} |{failed}",
            self.rate,
            ms(self.p50),
            ms(self.p99)
        );
    }
}

/// etcd's own ceiling: `clients` tasks making create-if-absent
/// transactions on fresh keys through one client, for `dur`.
fn etcd_ceiling(
    rt: &tokio::runtime::Runtime,
    eps: &[String],
    clients: usize,
    dur: Duration,
) -> Figures {
    rt.block_on(async {
        let client = Client::connect(eps, None).await.expect("connect to etcd");
        let start = Instant::now();
        let deadline = start + dur;
        let tasks: Vec<_> = (0..clients)
            .map(|t| {
                let mut c = client.clone();
                tokio::spawn(async move {
                    let (mut lat, mut failed, mut n) = (Vec::new(), 0, 0u64);
                    while Instant::now() < deadline {
                        let k = format!("/ceiling/c{clients}/t{t}/{n}");
                        n += 1;
                        let txn = Txn::new()
                            .when([Compare::version(k.as_str(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(k.as_str(), "x", None)]);
                        let t0 = Instant::now();
                        match c.txn(txn).await {
                            Ok(r) if r.succeeded() => lat.push(t0.elapsed()),
                            _ => failed += 1,
                        }
                    }
                    (lat, failed)
                })
            })
            .collect();
        let (mut all, mut failed) = (Vec::new(), 0);
        for t in tasks {
            if let Ok((lat, f)) = t.await {
                all.extend(lat);
                failed += f;
            }
        }
        Figures::of(all, failed, start.elapsed())
    })
}

/// `clients` threads spread over `sockets`, each sending `body(i)` as
/// `method` back to back for `dur`; a reply other than 200 is a failure.
fn drive(
    sockets: &[PathBuf],
    method: &'static str,
    body: impl Fn(usize, usize) -> Value + Send + Sync + 'static,
    clients: usize,
    dur: Duration,
) -> Figures {
    let body = Arc::new(body);
    let barrier = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let socket = sockets[t % sockets.len()].clone();
            let (body, barrier) = (body.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = Plugin::connect(&socket).expect("connect");
                barrier.wait();
                let deadline = Instant::now() + dur;
                let (mut lat, mut failed, mut i, mut first) = (Vec::new(), 0, 0, None);
                while Instant::now() < deadline {
                    let req = body(t, i);
                    i += 1;
                    let t0 = Instant::now();
                    match c.call(method, &req) {
                        Ok((200, _)) => lat.push(t0.elapsed()),
                        other => {
                            failed += 1;
                            first.get_or_insert_with(|| format!("{other:?}"));
                        }
                    }
                }
                (lat, failed, first)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let (mut all, mut failed, mut first) = (Vec::new(), 0, None);
    for t in threads {
        if let Ok((lat, f, e)) = t.join() {
            all.extend(lat);
            failed += f;
            first = first.or(e);
        }
    }
    let mut fig = Figures::of(all, failed, start.elapsed());
    fig.first_error = first;
    fig
}

fn pool(daemon: &Daemon, body: Value) -> String {
    let (status, v) = daemon
        .client()
        .call("IpamDriver.RequestPool", &body)
        .expect("RequestPool");
    assert_eq!(status, 200, "{v}");
    v["PoolID"].as_str().expect("PoolID").to_string()
}

fn address_body(id: String) -> impl Fn(usize, usize) -> Value + Send + Sync + 'static {
    move |_, _| json!({"PoolID": id, "Address": "", "Options": {}})
}

fn target(targets: &mut Vec<Target>, what: String, ratio: f64, aim: f64) {
    targets.push(Target {
        what,
        figure: format!("{ratio:.2}"),
        pass: ratio >= aim,
    });
}

pub fn fleet(plan: &Plan, targets: &mut Vec<Target>) {
    println!("\n## Fleet mode on etcd (3 members, 3 gipam hosts, all on loopback)\n");
    let cluster = Cluster::start(3);
    let eps = cluster.endpoints();
    let csv = cluster.endpoints_csv();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let start_host = |id: &str| {
        Daemon::start(&[
            "--etcd-endpoints",
            &csv,
            "--host-id",
            id,
            "--v4",
            "10.0.0.0/8",
            "--v4ab",
            "28",
        ])
    };
    let hosts: Vec<Daemon> = ["b0", "b1", "b2"].iter().map(|h| start_host(h)).collect();
    let sockets: Vec<PathBuf> = hosts.iter().map(|d| d.socket.clone()).collect();
    let shared_body = json!({"AddressSpace": "LocalDefault", "Pool": "", "SubPool": "",
        "Options": {"shared": "bench", "v4ab": "12"}, "V6": false});
    let ids: Vec<String> = hosts.iter().map(|d| pool(d, shared_body.clone())).collect();
    let shared_id = ids[0].clone();
    println!("| what | clients | req/s | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    for &clients in &plan.clients {
        let ceiling = etcd_ceiling(&rt, &eps, clients, plan.load);
        ceiling.row("etcd create-if-absent (ceiling)", clients);
        let claims = drive(
            &sockets,
            "IpamDriver.RequestPool",
            |_, _| json!({"AddressSpace": "LocalDefault", "Pool": "", "SubPool": "", "Options": {}, "V6": false}),
            clients,
            plan.load,
        );
        claims.row("block claims (RequestPool)", clients);
        let shared = drive(
            &sockets,
            "IpamDriver.RequestAddress",
            address_body(shared_id.clone()),
            clients,
            plan.load,
        );
        shared.row("shared-network RequestAddress", clients);
        target(
            targets,
            format!("fleet: block claims / etcd ceiling, {clients} clients (aim >= 0.5)"),
            claims.rate / ceiling.rate,
            0.5,
        );
        target(
            targets,
            format!("fleet: shared RequestAddress / etcd ceiling, {clients} clients (aim >= 0.5)"),
            shared.rate / ceiling.rate,
            0.5,
        );
    }
    drop(hosts);
    // Local pools: fleet mode against local mode, alternating.
    let fleet_host = start_host("b-local");
    let local_host = Daemon::start(&["--v4", "10.0.0.0/8", "--v4ab", "12"]);
    let own = json!({"AddressSpace": "LocalDefault", "Pool": "", "SubPool": "",
        "Options": {"v4ab": "12"}, "V6": false});
    let (fleet_id, local_id) = (pool(&fleet_host, own.clone()), pool(&local_host, own));
    println!("\n| local pool, RequestAddress | clients | fleet req/s | local req/s | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for &clients in &plan.clients {
        let (mut f, mut l) = (0.0, 0.0);
        for _ in 0..2 {
            l += drive(
                std::slice::from_ref(&local_host.socket),
                "IpamDriver.RequestAddress",
                address_body(local_id.clone()),
                clients,
                plan.load / 2,
            )
            .rate;
            f += drive(
                std::slice::from_ref(&fleet_host.socket),
                "IpamDriver.RequestAddress",
                address_body(fleet_id.clone()),
                clients,
                plan.load / 2,
            )
            .rate;
        }
        println!(
            "| | {clients} | {:.0} | {:.0} | {:.2} |",
            f / 2.0,
            l / 2.0,
            f / l
        );
        target(
            targets,
            format!("fleet: local-pool RequestAddress fleet/local, {clients} clients (aim >= 0.9)"),
            f / l,
            0.9,
        );
    }
}
