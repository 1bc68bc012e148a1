//! The protocol benchmark: how fast gipam answers RequestAddress over its
//! unix socket with the durable local store on, against a no-op server on
//! the same kind of socket; what a lease costs in memory; how long a restart
//! takes; and whether one change gets dearer as the state grows.
//!
//! It prints figures next to the targets and asserts nothing about timing
//! (it does check that every reply and every reload is correct, so a fast
//! wrong answer cannot pass for a figure). `BENCH_QUICK=1` shrinks every
//! size for CI. Run with `cargo bench --bench protocol` (`make bench`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gipam::api::server::{self, Listener};
use gipam::ipam::{AddressRequest, Change, Ipam, Mac, PoolId, Settings, State};
use gipam::service::Service;
use gipam::store::{LocalStore, Store, local};
use tokio::net::UnixListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use warp::Filter;

// ---------------------------------------------------------------- heap count

/// The system allocator, counting the bytes currently allocated so the
/// memory figures are heap bytes rather than page-granular RSS.
struct Counting;

static HEAP: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only adds bookkeeping on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds alloc's contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) };
        HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP.fetch_add(new_size, Ordering::Relaxed);
            HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap_bytes() -> usize {
    HEAP.load(Ordering::SeqCst)
}

/// Resident set size from `/proc/self/status`, in bytes.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

// ---------------------------------------------------------------- the plan

/// Sizes and durations of one run.
struct Plan {
    quick: bool,
    /// How long each concurrency level runs.
    load: Duration,
    clients: [usize; 3],
    /// Lease counts for the memory and restart figures.
    leases: [usize; 2],
    /// Request/release pairs timed in memory per state size.
    pairs: usize,
    /// Durable changes timed one after the other per state size.
    durable: usize,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Plan {
                quick,
                load: Duration::from_millis(700),
                clients: [1, 16, 64],
                leases: [10_000, 100_000],
                pairs: 20_000,
                durable: 100,
            }
        } else {
            Plan {
                quick,
                load: Duration::from_secs(3),
                clients: [1, 16, 64],
                leases: [100_000, 1_000_000],
                pairs: 200_000,
                durable: 400,
            }
        }
    }

    fn largest(&self) -> usize {
        self.leases[1]
    }
}

/// One target, its figure and whether the figure meets it.
struct Target {
    what: String,
    figure: String,
    pass: bool,
}

// ---------------------------------------------------------------- fixtures

/// The /64 every figure uses; big enough that addresses never run out.
const POOL: &str = "2001:db8::/64";
const POOL_BASE: u128 = 0x2001_0db8_u128 << 96;
const REQUEST_ADDRESS: &str = "/IpamDriver.RequestAddress";

fn pool_id() -> PoolId {
    format!("LocalDefault/{POOL}")
        .parse()
        .expect("the bench pool id is well formed")
}

fn settings() -> Settings {
    Settings {
        v4: Vec::new(),
        v6: vec!["2001:db8::/48".parse().expect("a valid /48")],
        v4ab: 24,
        v6ab: 64,
    }
}

fn add_pool() -> Change {
    Change::AddPool {
        id: pool_id(),
        auto: false,
        serial: false,
    }
}

/// How the leases of a built state are laid out.
#[derive(Clone, Copy)]
enum Shape {
    /// Consecutive addresses, no MAC or name: what dynamic requests make.
    Dense,
    /// Consecutive addresses with the MAC and endpoint name Engine 29 sends.
    Named,
    /// Every other address: no two leases adjacent (static `--ip` spread).
    Scattered,
}

/// The `i`th lease of a state of the given shape.
fn lease(id: &PoolId, i: usize, shape: Shape) -> Change {
    let i = i as u128;
    let offset = match shape {
        Shape::Scattered => 1 + 2 * i,
        _ => 1 + i,
    };
    let (mac, name) = match shape {
        Shape::Named => {
            let b = (i as u32).to_be_bytes();
            (
                Some(Mac([0x02, 0x42, b[0], b[1], b[2], b[3]])),
                Some(format!("bench-{i:07}")),
            )
        }
        _ => (None, None),
    };
    Change::AddAddress {
        pool: id.clone(),
        address: IpAddr::V6(Ipv6Addr::from(POOL_BASE + offset)),
        gateway: false,
        dynamic: true,
        mac,
        name,
    }
}

/// A fresh state holding `n` leases in the bench pool.
fn build_state(n: usize, shape: Shape) -> State {
    let id = pool_id();
    let mut state = State::new();
    state.apply(&add_pool()).expect("add the bench pool");
    for i in 0..n {
        state.apply(&lease(&id, i, shape)).expect("add a lease");
    }
    state
}

fn address_request() -> AddressRequest {
    AddressRequest {
        pool: pool_id(),
        address: None,
        gateway: false,
        serial: false,
        mac: None,
        name: None,
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

// ---------------------------------------------------------------- formatting

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// The `q` quantile of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len().max(1) as u32
}

// ---------------------------------------------------------------- servers

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server on a unix socket, served by a multi-thread runtime (the kind
/// gipam's `main` builds) in a background thread; stopped on Drop.
struct Server {
    socket: PathBuf,
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
        let thread = std::thread::spawn(move || {
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
        });
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

/// gipam in-process over a durable store in `dir/state`, with the bench
/// pool created through the protocol. Returns the server and its store.
fn start_gipam(dir: &Path) -> (Server, Arc<LocalStore>, String) {
    let (store, state) = LocalStore::open(&dir.join("state")).expect("open the state dir");
    let store = Arc::new(store);
    let ipam = Ipam::new(settings(), state).expect("the settings fit an empty state");
    let svc = Arc::new(Service::new(ipam, store.clone()));
    let server = Server::start(dir.join("gipam.sock"), move |l, shutdown| {
        server::run(Listener::Unix(l), svc, shutdown)
    });
    let mut c = common::Client::connect(&server.socket).expect("connect to gipam");
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
    (server, store, pool)
}

/// The ceiling: every POST is answered `{}` once its body is read.
fn start_noop(dir: &Path) -> Server {
    Server::start(dir.join("noop.sock"), |l, shutdown| async move {
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

// ---------------------------------------------------------------- load

/// What one concurrency level measured.
struct Load {
    clients: usize,
    requests: usize,
    elapsed: Duration,
    sorted: Vec<Duration>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, q: f64) -> Duration {
        quantile(&self.sorted, q)
    }
}

/// Requests per client before the clock starts (connection set-up, caches).
const WARMUP: usize = 20;

/// `clients` threads, each on its own keep-alive connection, send `body`
/// back to back for `dur`; every reply must be a 200.
fn drive(socket: &Path, body: &[u8], clients: usize, dur: Duration) -> Load {
    let barrier = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.to_path_buf();
            let body = body.to_vec();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = common::Client::connect(&socket).expect("connect to the bench socket");
                let send = |c: &mut common::Client| {
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
                let start = Instant::now();
                let deadline = start + dur;
                let mut lat = Vec::new();
                loop {
                    let t = Instant::now();
                    if t >= deadline {
                        break;
                    }
                    send(&mut c);
                    lat.push(t.elapsed());
                }
                (start, Instant::now(), lat)
            })
        })
        .collect();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut sorted = Vec::new();
    for t in threads {
        let (s, e, lat) = t.join().expect("a load thread finished");
        first = Some(first.map_or(s, |f| f.min(s)));
        last = Some(last.map_or(e, |l| l.max(e)));
        sorted.extend(lat);
    }
    sorted.sort_unstable();
    let elapsed = match (first, last) {
        (Some(f), Some(l)) => l - f,
        _ => Duration::ZERO,
    };
    Load {
        clients,
        requests: sorted.len(),
        elapsed,
        sorted,
    }
}

fn throughput(plan: &Plan, targets: &mut Vec<Target>) {
    println!("\n## 1-2. RequestAddress over the unix socket (durable store) vs a no-op server");
    println!(
        "{} per level, each client its own keep-alive connection and thread; {WARMUP} warm-up requests each.\n",
        ms(plan.load)
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let (server, store, pool) = start_gipam(dir.path());
    let mut body =
        serde_json::to_vec(&serde_json::json!({"PoolID": pool, "Address": "", "Options": null}))
            .expect("the request encodes");
    body.push(b'\n');
    let gipam: Vec<Load> = plan
        .clients
        .iter()
        .map(|n| drive(&server.socket, &body, *n, plan.load))
        .collect();
    drop(server);
    store.close().expect("the store closes cleanly");
    let noop_server = start_noop(dir.path());
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
    let (Some(g), Some(o)) = (gipam.last(), noop.last()) else {
        return;
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
}

// ---------------------------------------------------------------- memory

fn memory(plan: &Plan, targets: &mut Vec<Target>) {
    println!("\n## 3. Memory per lease (one /64, State::apply of AddAddress into a fresh State)\n");
    println!("| leases | layout | heap bytes/lease | RSS Δ bytes/lease |");
    println!("|---:|---|---:|---:|");
    let shapes = [
        (
            Shape::Dense,
            "consecutive, no MAC/name (RequestAddress as benched)",
        ),
        (
            Shape::Named,
            "consecutive, with MAC + 13-byte endpoint name",
        ),
        (Shape::Scattered, "every other address, no MAC/name"),
    ];
    let mut dense_largest = 0.0;
    for (shape, label) in shapes {
        for n in plan.leases {
            let (heap0, rss0) = (heap_bytes(), rss_bytes());
            let state = build_state(n, shape);
            let (heap1, rss1) = (heap_bytes(), rss_bytes());
            assert_eq!(state.lease_count(), n);
            let per_heap = heap1.saturating_sub(heap0) as f64 / n as f64;
            let per_rss = rss1.saturating_sub(rss0) as f64 / n as f64;
            println!("| {} | {label} | {per_heap:.0} | {per_rss:.0} |", count(n));
            if matches!(shape, Shape::Dense) && n == plan.largest() {
                dense_largest = per_heap;
            }
            drop(state);
        }
    }
    targets.push(Target {
        what: format!("< 200 bytes/lease at {} leases", count(plan.largest())),
        figure: format!("{dense_largest:.0} B"),
        pass: dense_largest < 200.0,
    });
}

// ---------------------------------------------------------------- restart

/// Leases committed before their commits are awaited together.
const COMMIT_BATCH: usize = 10_000;

/// Commits the bench pool and `n` leases through a LocalStore in `dir`,
/// then closes it (which waits for any compaction it started).
fn fill_store(dir: &Path, n: usize, rt: &Runtime) -> Duration {
    let (store, state) = LocalStore::open(dir).expect("open a fresh state dir");
    assert_eq!(state.lease_count(), 0, "the state dir is fresh");
    let id = pool_id();
    let t = Instant::now();
    rt.block_on(async {
        store.commit(add_pool()).await.expect("commit the pool");
        let mut batch = Vec::with_capacity(COMMIT_BATCH);
        for i in 0..n {
            batch.push(store.commit(lease(&id, i, Shape::Dense)));
            if batch.len() == COMMIT_BATCH || i + 1 == n {
                for r in futures_util::future::join_all(batch.drain(..)).await {
                    r.expect("commit a lease");
                }
            }
        }
    });
    store.close().expect("the store closes cleanly");
    t.elapsed()
}

/// The journal generations in `dir` and their sizes, and the snapshot size.
fn layout(dir: &Path) -> (Vec<(u64, u64)>, u64) {
    let mut gens = Vec::new();
    let mut snapshot = 0;
    for e in std::fs::read_dir(dir)
        .expect("list the state dir")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let len = e.metadata().map_or(0, |m| m.len());
        if name == "snapshot.json" {
            snapshot = len;
        } else if let Some(g) = name
            .strip_prefix("journal.")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|g| g.parse::<u64>().ok())
        {
            gens.push((g, len));
        }
    }
    gens.sort_unstable();
    (gens, snapshot)
}

fn describe(dir: &Path) -> String {
    let (gens, snapshot) = layout(dir);
    let journal: u64 = gens.iter().map(|(_, l)| l).sum();
    let snap = if snapshot > 0 {
        format!("snapshot {}", mb(snapshot))
    } else {
        "no snapshot".into()
    };
    format!("{snap} + {} journal(s) {}", gens.len(), mb(journal))
}

/// Median time of `LocalStore::open` on `dir`, checking what it loads.
fn time_open(dir: &Path, n: usize, reps: usize) -> Duration {
    let mut times: Vec<Duration> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            let (store, state) = LocalStore::open(dir).expect("reopen the state dir");
            let took = t.elapsed();
            assert_eq!(
                state.lease_count(),
                n,
                "every lease is back after a restart"
            );
            drop(state);
            store.close().expect("the store closes cleanly");
            took
        })
        .collect();
    times.sort_unstable();
    quantile(&times, 0.5)
}

/// Writes the pool and `n` leases as one journal in the documented format
/// (`<crc32 hex> <seq> <json>`), as if compaction had never run.
fn write_journal_only(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("create the state dir");
    let file = std::fs::File::create(dir.join("journal.0.log")).expect("create the journal");
    let mut out = std::io::BufWriter::new(file);
    let id = pool_id();
    let changes = std::iter::once(add_pool()).chain((0..n).map(|i| lease(&id, i, Shape::Dense)));
    for (seq, change) in (1u64..).zip(changes) {
        let body = format!(
            "{seq} {}",
            serde_json::to_string(&change).expect("a change encodes")
        );
        writeln!(out, "{:08x} {body}", crc32fast::hash(body.as_bytes()))
            .expect("write the journal");
    }
    out.into_inner()
        .expect("flush the journal")
        .sync_all()
        .expect("sync the journal");
}

/// Returns the state dir holding the largest number of leases, compacted.
fn restart(plan: &Plan, rt: &Runtime, targets: &mut Vec<Target>) -> tempfile::TempDir {
    println!("\n## 4. Restart: LocalStore::open with the leases in one /64 (warm page cache)\n");
    println!("| leases | on disk | commit time | open |");
    println!("|---:|---|---:|---:|");
    let mut kept = None;
    for n in plan.leases {
        let reps = if n >= 1_000_000 { 1 } else { 3 };
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = dir.path().join("state");
        let filled = fill_store(&state, n, rt);
        let as_written = describe(&state);
        let open_a = time_open(&state, n, reps);
        println!(
            "| {} | (a) as left by the store: {as_written} | {} | {} |",
            count(n),
            ms(filled),
            ms(open_a)
        );
        let upto = layout(&state).0.last().map_or(0, |(g, _)| g + 1);
        let t = Instant::now();
        local::compact(&state, upto).expect("compact the journal");
        let compact_time = t.elapsed();
        let compacted = describe(&state);
        let open_b = time_open(&state, n, reps);
        println!(
            "| {} | (b) compacted: {compacted} | compact {} | {} |",
            count(n),
            ms(compact_time),
            ms(open_b)
        );
        let only = dir.path().join("journal-only");
        write_journal_only(&only, n);
        let only_desc = describe(&only);
        let open_j = time_open(&only, n, reps);
        println!(
            "| {} | (a') never compacted: {only_desc} | – | {} |",
            count(n),
            ms(open_j)
        );
        if n == plan.largest() {
            for (label, d) in [("as left by the store", open_a), ("compacted", open_b)] {
                targets.push(Target {
                    what: format!("restart with {} leases < 2 s ({label})", count(n)),
                    figure: ms(d),
                    pass: d < Duration::from_secs(2),
                });
            }
            kept = Some(dir);
        }
    }
    kept.expect("the largest size is always run")
}

// ---------------------------------------------------------------- change cost

/// Mean time of one in-memory RequestAddress + ReleaseAddress pair (plan and
/// apply each) against a state of `n` leases: the median of five rounds.
fn pair_cost(n: usize, pairs: usize) -> Duration {
    let mut ipam = Ipam::new(settings(), build_state(n, Shape::Dense)).expect("settings fit");
    let req = address_request();
    let id = pool_id();
    let pair = |ipam: &mut Ipam| {
        let (add, addr) = ipam.plan_address(&req).expect("plan an address");
        ipam.apply(&add).expect("apply the lease");
        let release = ipam
            .plan_release_address(&id, addr)
            .expect("plan its release")
            .expect("the address is leased");
        ipam.apply(&release).expect("apply the release");
    };
    for _ in 0..2_000 {
        pair(&mut ipam);
    }
    let round = (pairs / 5).max(1);
    let mut rounds: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..round {
                pair(&mut ipam);
            }
            t.elapsed() / round as u32
        })
        .collect();
    rounds.sort_unstable();
    rounds[2]
}

/// Per-change times of `changes` durable changes made one after the other
/// through the Service (plan, apply, commit, fsync), alternating request
/// and release, on the store in `dir` holding `n` leases.
fn durable_cost(dir: &Path, n: usize, changes: usize, rt: &Runtime) -> Vec<Duration> {
    let (store, state) = LocalStore::open(dir).expect("open the state dir");
    assert_eq!(state.lease_count(), n);
    let store = Arc::new(store);
    let svc = Service::new(
        Ipam::new(settings(), state).expect("settings fit"),
        store.clone(),
    );
    let req = address_request();
    let id = pool_id();
    let mut times = Vec::with_capacity(changes);
    rt.block_on(async {
        for i in 0..(changes / 2 + 5) {
            let t = Instant::now();
            let net = svc.request_address(&req).await.expect("a durable lease");
            let took_add = t.elapsed();
            let t = Instant::now();
            svc.release_address(&id, net.addr())
                .await
                .expect("a durable release");
            if i >= 5 {
                times.push(took_add);
                times.push(t.elapsed());
            }
        }
    });
    drop(svc);
    store.close().expect("the store closes cleanly");
    times.sort_unstable();
    times
}

fn change_cost(plan: &Plan, big_dir: &Path, rt: &Runtime, targets: &mut Vec<Target>) {
    let (small, big) = (1_000, plan.largest());
    println!(
        "\n## 5. Cost of one change at {} vs {} leases\n",
        count(small),
        count(big)
    );
    let mem_small = pair_cost(small, plan.pairs);
    let mem_big = pair_cost(big, plan.pairs);
    let small_dir = tempfile::tempdir().expect("a temp dir");
    fill_store(small_dir.path(), small, rt);
    let dur_small = durable_cost(small_dir.path(), small, plan.durable, rt);
    let dur_big = durable_cost(big_dir, big, plan.durable, rt);
    let mem_ratio = mem_big.as_secs_f64() / mem_small.as_secs_f64();
    let mean_ratio = mean(&dur_big).as_secs_f64() / mean(&dur_small).as_secs_f64();
    let p50_ratio = quantile(&dur_big, 0.5).as_secs_f64() / quantile(&dur_small, 0.5).as_secs_f64();
    println!(
        "| measure | {} leases | {} leases | ratio |",
        count(small),
        count(big)
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| (a) in memory: plan+apply RequestAddress + ReleaseAddress pair (mean of {} pairs) | {} | {} | {mem_ratio:.2} |",
        plan.pairs,
        us(mem_small),
        us(mem_big)
    );
    println!(
        "| (b) durable change via Service, sequential ({} changes): mean | {} | {} | {mean_ratio:.2} |",
        dur_small.len(),
        ms(mean(&dur_small)),
        ms(mean(&dur_big))
    );
    println!(
        "| (b) durable change: p50 | {} | {} | {p50_ratio:.2} |",
        ms(quantile(&dur_small, 0.5)),
        ms(quantile(&dur_big, 0.5))
    );
    println!(
        "| (b) durable change: p99 | {} | {} | |",
        ms(quantile(&dur_small, 0.99)),
        ms(quantile(&dur_big, 0.99))
    );
    targets.push(Target {
        what: format!(
            "in-memory change at {} within 1.5x of {}",
            count(big),
            count(small)
        ),
        figure: format!("{mem_ratio:.2}x"),
        pass: mem_ratio <= 1.5,
    });
    targets.push(Target {
        what: format!(
            "durable change at {} within 1.5x of {} (mean)",
            count(big),
            count(small)
        ),
        figure: format!("{mean_ratio:.2}x"),
        pass: mean_ratio <= 1.5,
    });
}

// ---------------------------------------------------------------- main

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let plan = Plan::from_env();
    let started = Instant::now();
    println!(
        "# gipam protocol benchmark{}",
        if plan.quick {
            " (BENCH_QUICK: sizes shrunk)"
        } else {
            ""
        }
    );
    println!(
        "{} CPUs; state dirs under {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::temp_dir().display()
    );
    let mut targets = Vec::new();
    throughput(&plan, &mut targets);
    memory(&plan, &mut targets);
    let rt = runtime();
    let big = restart(&plan, &rt, &mut targets);
    change_cost(&plan, &big.path().join("state"), &rt, &mut targets);

    println!("\n## Targets\n");
    println!("| target | figure | |");
    println!("|---|---:|---|");
    for t in &targets {
        println!("| {} | {} | {} |", t.what, t.figure, pass(t.pass));
    }
    if plan.quick {
        println!("\n(BENCH_QUICK: the lease counts are 10x smaller than the targets assume.)");
    }
    println!("\nbench ran in {:.1} s", started.elapsed().as_secs_f64());
}
