//! The protocol benchmark: how fast gipam answers RequestAddress over its
//! unix socket with the durable local store on, against a no-op server on
//! the same kind of socket; what a lease costs in memory; how long a restart
//! takes; whether one change gets dearer as the state grows; and what a
//! journal compaction does to latency under load.
//!
//! It prints figures next to the targets and asserts nothing about timing
//! (it does check every reply and every reload, so a fast wrong answer
//! cannot pass for a figure). `BENCH_QUICK=1` shrinks every size for CI.
//! Run with `cargo bench --bench protocol` (`make bench`); name sections to
//! run only those: `cargo bench --bench protocol -- load restart`.
//!
//! - [`load`]: the servers, the clients that drive them, where the CPU goes.
//! - [`state`]: memory per lease, restart time, the cost of one change.
//! - [`compaction`]: latency under load while the store compacts.
//! - [`sticky`]: what remembered identities (F6) cost.
//! - [`text`]: what a journal line and a reply's address cost to write.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "protocol/compaction.rs"]
mod compaction;
#[path = "protocol/fleet.rs"]
mod fleet;
#[path = "protocol/load.rs"]
mod load;
#[path = "protocol/state.rs"]
mod state;
#[path = "protocol/sticky.rs"]
mod sticky;
#[path = "protocol/text.rs"]
mod text;

use std::alloc::{GlobalAlloc, Layout};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gipam::ipam::{AddressRequest, Change, Mac, PoolId, Settings, State};
use mimalloc::MiMalloc;
use tokio::runtime::Runtime;

// ---------------------------------------------------------------- heap count

/// The daemon's allocator (mimalloc, src/main.rs), counting the bytes
/// currently allocated so the memory figures are heap bytes rather than
/// page-granular RSS.
struct Counting;

static HEAP: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `MiMalloc` with the caller's arguments
// unchanged and only adds bookkeeping on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds alloc's contract.
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `MiMalloc`.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `MiMalloc` with `layout`.
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP.fetch_add(new_size, Ordering::Relaxed);
            HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes currently allocated by the whole process.
fn heap_bytes() -> usize {
    HEAP.load(Ordering::SeqCst)
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
                load: Duration::from_secs(4),
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
        reuse: Default::default(),
        sticky: Default::default(),
        data_gateway: None,
    }
}

/// How the leases of a built state are laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
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

/// A dynamic RequestAddress with no options, as the load sends it.
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
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n if n >= 10_000 => format!("{:.0}k", n as f64 / 1e3),
        n => n.to_string(),
    }
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

// ---------------------------------------------------------------- main

const SECTIONS: [&str; 8] = [
    "load",
    "memory",
    "restart",
    "change",
    "compaction",
    "sticky",
    "fleet",
    "text",
];

fn main() {
    // `cargo bench` passes `--bench`; any other argument names a section.
    let asked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(bad) = asked.iter().find(|a| !SECTIONS.contains(&a.as_str())) {
        eprintln!("unknown section {bad:?}; sections: {}", SECTIONS.join(", "));
        std::process::exit(2);
    }
    let run = |s: &str| asked.is_empty() || asked.iter().any(|a| a == s);
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
    // The compaction figure aims its trigger using the measured rate.
    let mut rate64 = 30_000.0;
    if run("load") {
        rate64 = load::throughput(&plan, &mut targets);
    }
    if run("memory") {
        state::memory(&plan, &mut targets);
    }
    let rt = runtime();
    let mut big = None;
    if run("restart") {
        big = Some(state::restart(&plan, &rt, &mut targets));
    }
    if run("change") || run("compaction") {
        let big = big.get_or_insert_with(|| state::big_state_dir(&plan, &rt));
        if run("change") {
            state::change_cost(&plan, &big.path().join("state"), &rt, &mut targets);
        }
        if run("compaction") {
            compaction::during_compaction(&plan, big.path(), rate64, &rt, &mut targets);
        }
    }

    if run("sticky") {
        sticky::remembered(&plan, &rt, &mut targets);
    }
    if run("fleet") {
        fleet::fleet(&plan, &mut targets);
    }
    if run("text") {
        text::text(&plan);
    }

    println!("\n## Targets\n");
    println!("| target | figure | |");
    println!("|---|---:|---|");
    for t in &targets {
        let verdict = if t.pass { "PASS" } else { "MISS" };
        println!("| {} | {} | {verdict} |", t.what, t.figure);
    }
    if plan.quick {
        println!("\n(BENCH_QUICK: lease counts are 10x smaller than the targets assume.)");
    }
    println!("\nbench ran in {:.1} s", started.elapsed().as_secs_f64());
}
