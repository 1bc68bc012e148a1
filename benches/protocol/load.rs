//! Load over the unix socket: gipam in-process on a durable store and a
//! no-op warp server (the ceiling), each on a multi-thread runtime like
//! gipam's `main` builds; blocking keep-alive clients, one thread each; and
//! where the CPU goes, read per thread from `/proc/self/task/*/schedstat`.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gipam::api::server::{self, Listener};
use gipam::ipam::{Change, Frozen, Ipam};
use gipam::service::Service;
use gipam::store::{Durable, LocalStore, Store, StoreError, Ticket};
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use warp::Filter;

use crate::{POOL, Plan, Target, ms, pool_id, quantile, settings};

const REQUEST_ADDRESS: &str = "/IpamDriver.RequestAddress";
/// Requests per client before the clock starts (connection set-up, caches).
const WARMUP: usize = 20;

// ---------------------------------------------------------------- servers

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server on a unix socket, served by a multi-thread runtime in a
/// background thread; stopped (gracefully) on Drop.
pub struct Server {
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start<F, Fut>(socket: PathBuf, serve: F) -> Server
    where
        F: FnOnce(UnixListener, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, bound) = std::sync::mpsc::channel();
        let path = socket.clone();
        let thread = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .expect("a multi-thread runtime");
                rt.block_on(async move {
                    let listener = UnixListener::bind(&path).expect("bind the bench socket");
                    let _ = ready.send(());
                    let shutdown: Shutdown = Box::pin(async move {
                        let _ = stopped.await;
                    });
                    serve(listener, shutdown).await;
                });
            })
            .expect("start the server thread");
        bound.recv().expect("the server thread binds its socket");
        Server {
            socket,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The LocalStore gipam runs on in the bench, noting when the service is
/// told a snapshot is wanted (it then takes a copy of the state, sharing its
/// lease chunks, under its allocator lock, so every request waits that long)
/// and when it hands the copy over.
pub struct BenchStore {
    inner: LocalStore,
    snapshots: Mutex<Vec<(Instant, Option<Instant>)>>,
}

impl BenchStore {
    /// (asked for, copy handed over) of every snapshot so far.
    pub fn snapshots(&self) -> Vec<(Instant, Instant)> {
        let s = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().filter_map(|(a, h)| Some((*a, (*h)?))).collect()
    }
}

impl Store for BenchStore {
    fn commit(&self, change: Change) -> (Ticket, Durable) {
        self.inner.commit(change)
    }

    fn barrier(&self, upto: Ticket) -> Durable {
        self.inner.barrier(upto)
    }

    fn is_durable(&self, ticket: Ticket) -> bool {
        self.inner.is_durable(ticket)
    }

    fn failed(&self) -> Option<u64> {
        self.inner.failed()
    }

    fn durable_seq(&self) -> u64 {
        self.inner.durable_seq()
    }

    fn resume(&self, epoch: u64) {
        self.inner.resume(epoch)
    }

    fn close(&self) -> Result<(), StoreError> {
        self.inner.close()
    }

    fn wants_snapshot(&self) -> bool {
        let wants = self.inner.wants_snapshot();
        if wants {
            // Rare (once per snapshot), so the lock costs nothing overall.
            let mut s = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
            s.push((Instant::now(), None));
        }
        wants
    }

    fn snapshot(&self, state: Frozen) {
        let handed = Instant::now();
        if let Some(last) = self
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_mut()
        {
            last.1.get_or_insert(handed);
        }
        self.inner.snapshot(state)
    }
}

/// gipam in-process over a durable store in `state_dir`, with the bench
/// pool created through the protocol unless the state already holds it.
fn start_gipam(state_dir: &Path, socket: PathBuf) -> (Server, Arc<BenchStore>, String) {
    start_gipam_timed(state_dir, socket).0
}

/// As [`start_gipam`], also returning how long `LocalStore::open` took.
pub fn start_gipam_timed(
    state_dir: &Path,
    socket: PathBuf,
) -> ((Server, Arc<BenchStore>, String), Duration) {
    let t = Instant::now();
    let (store, state) = LocalStore::open(state_dir).expect("open the state dir");
    let opened = t.elapsed();
    let has_pool = state.pool(&pool_id()).is_some();
    let store = Arc::new(BenchStore {
        inner: store,
        snapshots: Mutex::new(Vec::new()),
    });
    let ipam = Ipam::new(settings(), state).expect("the settings fit the state");
    let svc = Arc::new(Service::new(ipam, store.clone()));
    let server = Server::start(socket, move |l, shutdown| {
        server::run(Listener::Unix(l), svc, server::Limits::default(), shutdown)
    });
    if has_pool {
        return ((server, store, pool_id().to_string()), opened);
    }
    let mut c = crate::common::Client::connect(&server.socket).expect("connect to gipam");
    let (status, reply) = c
        .call(
            "IpamDriver.RequestPool",
            &serde_json::json!({"AddressSpace": "LocalDefault", "Pool": POOL,
                                "SubPool": "", "Options": {}, "V6": true}),
        )
        .expect("RequestPool answers");
    assert_eq!(status, 200, "RequestPool failed: {reply}");
    let pool = reply["PoolID"]
        .as_str()
        .expect("RequestPool returns a PoolID")
        .to_string();
    ((server, store, pool), opened)
}

/// The ceiling: every POST is answered `{}` once its body is read.
pub fn start_noop(socket: PathBuf) -> Server {
    Server::start(socket, |l, shutdown| async move {
        let routes = warp::post()
            .and(warp::body::bytes())
            .map(|_body: bytes::Bytes| warp::reply::json(&serde_json::json!({})));
        warp::serve(routes)
            .incoming(l)
            .graceful(shutdown)
            .run()
            .await
    })
}

/// The RequestAddress body dockerd sends for a dynamic address.
pub fn request_body(pool: &str) -> Vec<u8> {
    let mut body =
        serde_json::to_vec(&serde_json::json!({"PoolID": pool, "Address": "", "Options": null}))
            .expect("the request encodes");
    body.push(b'\n');
    body
}

// ---------------------------------------------------------------- cpu

/// On-CPU time of each live thread of this process: tid -> (name, time).
fn threads_cpu() -> HashMap<u64, (String, Duration)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let p = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(p.join("comm")),
            std::fs::read_to_string(p.join("schedstat")),
        ) else {
            continue;
        };
        out.insert(tid, (name.trim().to_string(), schedstat_time(&stat)));
    }
    out
}

/// The first field of a schedstat file: nanoseconds spent on a CPU.
fn schedstat_time(text: &str) -> Duration {
    Duration::from_nanos(
        text.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

/// On-CPU time of the calling thread.
fn own_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .map_or(Duration::ZERO, |s| schedstat_time(&s))
}

/// User + system time of the whole process, exited threads included
/// (`/proc/self/stat` fields 14 and 15, in USER_HZ = 100 ticks).
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Where the CPU went during one load.
#[derive(Default)]
pub struct Cpu {
    /// The load threads (request encoding, socket I/O).
    pub clients: Duration,
    /// The server's runtime workers and its accept thread (HTTP, JSON,
    /// handlers, allocator).
    pub server: Duration,
    /// gipam's journal writer (encode, write, fdatasync).
    pub journal: Duration,
    /// Everything else: threads that came and went (the snapshot writer),
    /// the bench's main thread.
    pub other: Duration,
}

impl Cpu {
    fn between(
        before: &HashMap<u64, (String, Duration)>,
        after: &HashMap<u64, (String, Duration)>,
        process: Duration,
        clients: Duration,
    ) -> Cpu {
        let mut cpu = Cpu {
            clients,
            ..Cpu::default()
        };
        for (tid, (name, t)) in after {
            let t0 = before.get(tid).map_or(Duration::ZERO, |(_, t0)| *t0);
            let d = t.saturating_sub(t0);
            if name.starts_with("tokio") || name == "bench-server" {
                cpu.server += d;
            } else if name == "gipam-journal" {
                cpu.journal += d;
            }
        }
        cpu.other = process.saturating_sub(cpu.clients + cpu.server + cpu.journal);
        cpu
    }

    fn total(&self) -> Duration {
        self.clients + self.server + self.journal + self.other
    }
}

// ---------------------------------------------------------------- load

/// What one concurrency level measured.
pub struct Load {
    pub clients: usize,
    pub start: Instant,
    pub elapsed: Duration,
    /// (sent at, latency) of every timed request.
    pub samples: Vec<(Instant, Duration)>,
    pub sorted: Vec<Duration>,
    pub cpu: Cpu,
}

impl Load {
    pub fn rate(&self) -> f64 {
        self.sorted.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p(&self, q: f64) -> Duration {
        quantile(&self.sorted, q)
    }

    /// CPU microseconds per request.
    fn per_request(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / self.sorted.len().max(1) as f64
    }
}

/// `clients` threads, each on its own keep-alive connection, send `body`
/// back to back for `dur`; every reply must be a 200.
pub fn drive(socket: &Path, body: &[u8], clients: usize, dur: Duration) -> Load {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.to_path_buf();
            let body = body.to_vec();
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .name("load-client".into())
                .spawn(move || {
                    let mut c = crate::common::Client::connect(&socket)
                        .expect("connect to the bench socket");
                    let send = |c: &mut crate::common::Client| {
                        let (status, reply) = c
                            .raw("POST", REQUEST_ADDRESS, &body)
                            .expect("the server answers");
                        assert_eq!(
                            status,
                            200,
                            "request failed: {}",
                            String::from_utf8_lossy(&reply)
                        );
                    };
                    for _ in 0..WARMUP {
                        send(&mut c);
                    }
                    barrier.wait();
                    let cpu0 = own_cpu();
                    let deadline = Instant::now() + dur;
                    let mut samples = Vec::new();
                    loop {
                        let t = Instant::now();
                        if t >= deadline {
                            break;
                        }
                        send(&mut c);
                        samples.push((t, t.elapsed()));
                    }
                    (Instant::now(), samples, own_cpu().saturating_sub(cpu0))
                })
                .expect("start a load thread")
        })
        .collect();
    barrier.wait();
    let (threads0, process0, start) = (threads_cpu(), process_cpu(), Instant::now());
    let mut end = start;
    let mut samples = Vec::new();
    let mut clients_cpu = Duration::ZERO;
    for t in threads {
        let (e, s, cpu) = t.join().expect("a load thread finished");
        end = end.max(e);
        samples.extend(s);
        clients_cpu += cpu;
    }
    let cpu = Cpu::between(
        &threads0,
        &threads_cpu(),
        process_cpu().saturating_sub(process0),
        clients_cpu,
    );
    let mut sorted: Vec<Duration> = samples.iter().map(|(_, l)| *l).collect();
    sorted.sort_unstable();
    Load {
        clients,
        start,
        elapsed: end - start,
        samples,
        sorted,
        cpu,
    }
}

fn cpu_row(server: &str, l: &Load) {
    let c = &l.cpu;
    println!(
        "| {server} | {} | {:.0} | {:.0}% | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        l.clients,
        l.rate(),
        c.total().as_secs_f64() / l.elapsed.as_secs_f64() * 100.0,
        l.per_request(c.clients),
        l.per_request(c.server),
        l.per_request(c.journal),
        l.per_request(c.other),
        l.per_request(c.total()),
    );
}

/// Figures 1 and 2. Each gipam level starts from an empty state dir so no
/// level inherits another's journal (and a compaction; see
/// `compaction::during_compaction`). Returns gipam's rate at the highest concurrency.
pub fn throughput(plan: &Plan, targets: &mut Vec<Target>) -> f64 {
    println!("\n## 1-2. RequestAddress over the unix socket (durable store) vs a no-op server\n");
    println!(
        "{} per level; each client its own keep-alive connection and thread, {WARMUP} warm-up requests \
         each; gipam starts each level on an empty state dir (one /64).\n",
        ms(plan.load)
    );
    let mut snapshots = Vec::new();
    let gipam: Vec<Load> = plan
        .clients
        .iter()
        .map(|n| {
            let dir = tempfile::tempdir().expect("a temp dir");
            let (server, store, pool) =
                start_gipam(&dir.path().join("state"), dir.path().join("gipam.sock"));
            let load = drive(&server.socket, &request_body(&pool), *n, plan.load);
            drop(server);
            store.close().expect("the store closes cleanly");
            for (asked, handed) in store.snapshots() {
                snapshots.push(format!(
                    "{n} clients: asked for {} into the load, state copied in {}",
                    ms(asked.saturating_duration_since(load.start)),
                    ms(handed - asked)
                ));
            }
            load
        })
        .collect();
    let dir = tempfile::tempdir().expect("a temp dir");
    let noop_server = start_noop(dir.path().join("noop.sock"));
    let body = request_body(&pool_id().to_string());
    let noop: Vec<Load> = plan
        .clients
        .iter()
        .map(|n| drive(&noop_server.socket, &body, *n, plan.load))
        .collect();
    drop(noop_server);

    println!("| clients | gipam req/s | p50 | p99 | no-op req/s | p50 | p99 | gipam / no-op |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (g, o) in gipam.iter().zip(&noop) {
        println!(
            "| {} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2} |",
            g.clients,
            g.rate(),
            ms(g.p(0.5)),
            ms(g.p(0.99)),
            o.rate(),
            ms(o.p(0.5)),
            ms(o.p(0.99)),
            g.rate() / o.rate()
        );
    }
    if snapshots.is_empty() {
        println!("\nNo level reached the snapshot threshold (16 MiB of journal).");
    } else {
        println!(
            "\nSnapshots during the gipam levels (a fresh store asks for one at 16 MiB of journal): {}.",
            snapshots.join("; ")
        );
    }
    println!(
        "\nWhere the CPU goes (µs of CPU per request, by thread; both servers and the clients share 2 cores):\n"
    );
    println!(
        "| server | clients | req/s | CPU used (100% = 1 core) | clients | server runtime | journal writer | other | total |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in &gipam {
        cpu_row("gipam", l);
    }
    for l in &noop {
        cpu_row("no-op", l);
    }
    let (Some(g), Some(o)) = (gipam.last(), noop.last()) else {
        return 0.0;
    };
    targets.push(Target {
        what: format!("durable RequestAddress/s at {} clients ≥ 20000", g.clients),
        figure: format!("{:.0}/s", g.rate()),
        pass: g.rate() >= 20_000.0,
    });
    targets.push(Target {
        what: format!("p99 at {} clients < 5 ms", g.clients),
        figure: ms(g.p(0.99)),
        pass: g.p(0.99) < Duration::from_millis(5),
    });
    targets.push(Target {
        what: format!("≥ half the no-op ceiling at {} clients", g.clients),
        figure: format!("{:.2}", g.rate() / o.rate()),
        pass: g.rate() >= o.rate() / 2.0,
    });
    g.rate()
}
