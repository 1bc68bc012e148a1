//! Figures about the state rather than the socket: heap bytes per lease,
//! `LocalStore::open` time with a large state (as the store leaves it, fully
//! compacted, and as one never-compacted journal), and the cost of one
//! change — in memory and durably — at a small and a large state.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gipam::ipam::Ipam;
use gipam::service::Service;
use gipam::store::{LocalStore, Store, local};
use tokio::runtime::Runtime;

use crate::{
    Plan, Shape, Target, add_pool, address_request, build_state, count, heap_bytes, lease, mb,
    mean, ms, pool_id, quantile, settings, us,
};

// ---------------------------------------------------------------- memory

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

pub fn memory(plan: &Plan, targets: &mut Vec<Target>) {
    println!("\n## 3. Memory per lease (one /64, State::apply of AddAddress into a fresh State)\n");
    println!("| leases | layout | heap bytes/lease | RSS Δ bytes/lease |");
    println!("|---:|---|---:|---:|");
    let shapes = [
        (
            Shape::Dense,
            "consecutive, no MAC/name (as RequestAddress makes them)",
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
            if shape == Shape::Dense && n == plan.largest() {
                dense_largest = per_heap;
            }
        }
    }
    println!("\n(RSS Δ is page-granular and reuses memory freed by earlier rows; heap is exact.)");
    targets.push(Target {
        what: format!("< 200 bytes/lease at {} leases", count(plan.largest())),
        figure: format!("{dense_largest:.0} B"),
        pass: dense_largest < 200.0,
    });
}

// ---------------------------------------------------------------- restart

/// Leases committed before their commits are awaited together.
const COMMIT_BATCH: usize = 10_000;

/// Commits leases `from..from + n` (and the bench pool, if the state has
/// none) through a LocalStore in `dir`, applying them to the loaded state
/// and handing it to the store whenever it asks for a snapshot, as the
/// service does; then closes it, which waits for a snapshot being written.
pub fn commit_leases(dir: &Path, from: usize, n: usize, rt: &Runtime) -> Duration {
    let (store, mut state) = LocalStore::open(dir).expect("open the state dir");
    assert_eq!(
        state.lease_count(),
        from,
        "the state holds the leases before `from`"
    );
    let id = pool_id();
    let new_pool = state.pool(&id).is_none();
    let t = Instant::now();
    rt.block_on(async {
        if new_pool {
            let c = add_pool();
            state.apply(&c).expect("apply the pool");
            store.commit(c).1.await.expect("commit the pool");
        }
        let mut batch = Vec::with_capacity(COMMIT_BATCH);
        for i in from..from + n {
            let c = lease(&id, i, Shape::Dense);
            state.apply(&c).expect("apply a lease");
            batch.push(store.commit(c).1);
            if store.wants_snapshot() {
                store.snapshot(state.freeze());
            }
            if batch.len() == COMMIT_BATCH || i + 1 == from + n {
                // In order: the writer acknowledges them in order anyway.
                for c in batch.drain(..) {
                    c.await.expect("commit a lease");
                }
            }
        }
    });
    store.close().expect("the store closes cleanly");
    t.elapsed()
}

/// The journal generations in `dir` with the length of their data, and the
/// snapshot size. The writer fills a journal with zeros a few MiB ahead of
/// its data (and `open` cuts them off), so a journal's file is longer than
/// its data; this counts the data only, as the store's threshold does.
pub fn layout(dir: &Path) -> (Vec<(u64, u64)>, u64) {
    let (gens, snapshot, _) = files(dir);
    (gens, snapshot)
}

/// [`layout`], also returning the zero bytes written ahead in the journals.
fn files(dir: &Path) -> (Vec<(u64, u64)>, u64, u64) {
    let mut gens = Vec::new();
    let mut snapshot = 0;
    let mut zeros = 0;
    for e in std::fs::read_dir(dir)
        .expect("list the state dir")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "snapshot.json" {
            snapshot = e.metadata().map_or(0, |m| m.len());
        } else if let Some(g) = name
            .strip_prefix("journal.")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|g| g.parse::<u64>().ok())
        {
            let data = std::fs::read(e.path()).expect("read a journal");
            let len = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1) as u64;
            zeros += data.len() as u64 - len;
            gens.push((g, len));
        }
    }
    gens.sort_unstable();
    (gens, snapshot, zeros)
}

pub fn describe(dir: &Path) -> String {
    let (gens, snapshot, zeros) = files(dir);
    let journal: u64 = gens.iter().map(|(_, l)| l).sum();
    let snap = if snapshot > 0 {
        format!("snapshot {}", mb(snapshot))
    } else {
        "no snapshot".into()
    };
    let ahead = if zeros > 0 {
        format!(" (+ {} of zeros ahead)", mb(zeros))
    } else {
        String::new()
    };
    format!("{snap} + {} journal(s) {}{ahead}", gens.len(), mb(journal))
}

/// Folds every journal in `dir` (a closed store) into the snapshot.
fn compact_all(dir: &Path) -> Duration {
    let upto = layout(dir).0.last().map_or(0, |(g, _)| g + 1);
    let t = Instant::now();
    local::compact(dir, upto).expect("compact the journal");
    t.elapsed()
}

/// A state dir (`<tempdir>/state`) holding the largest lease count,
/// compacted: what `restart` leaves behind, for when it is not run.
pub fn big_state_dir(plan: &Plan, rt: &Runtime) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let state = dir.path().join("state");
    commit_leases(&state, 0, plan.largest(), rt);
    compact_all(&state);
    dir
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
/// (`<crc32 hex> <seq> <json>`, store/journal.rs), as if compaction had
/// never run. `time_open` checks that the store reads it back whole.
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

/// Returns the tempdir whose `state` holds the largest lease count, compacted.
pub fn restart(plan: &Plan, rt: &Runtime, targets: &mut Vec<Target>) -> tempfile::TempDir {
    println!("\n## 4. Restart: LocalStore::open with the leases in one /64 (warm page cache)\n");
    println!("| leases | on disk | to build it | open |");
    println!("|---:|---|---:|---:|");
    let mut kept = None;
    for n in plan.leases {
        let reps = if n >= 1_000_000 { 1 } else { 3 };
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = dir.path().join("state");
        let filled = commit_leases(&state, 0, n, rt);
        let as_left = describe(&state);
        let open_a = time_open(&state, n, reps);
        println!(
            "| {} | (a) as the store left it: {as_left} | commit {} | {} |",
            count(n),
            ms(filled),
            ms(open_a)
        );
        let compacted = compact_all(&state);
        let open_b = time_open(&state, n, reps);
        println!(
            "| {} | (b) compacted: {} | compact {} | {} |",
            count(n),
            describe(&state),
            ms(compacted),
            ms(open_b)
        );
        let only = dir.path().join("journal-only");
        write_journal_only(&only, n);
        let open_j = time_open(&only, n, reps);
        println!(
            "| {} | (a') never compacted: {} | – | {} |",
            count(n),
            describe(&only),
            ms(open_j)
        );
        std::fs::remove_dir_all(&only).expect("remove the journal-only dir");
        if n == plan.largest() {
            for (label, d) in [
                ("as the store left it", open_a),
                ("compacted", open_b),
                ("never compacted", open_j),
            ] {
                targets.push(Target {
                    what: format!("restart with {} leases < 2 s ({label})", count(n)),
                    figure: ms(d),
                    pass: d < Duration::from_secs(2),
                });
            }
            kept = Some(dir);
        }
    }
    println!(
        "\n(a) is what a restart meets after the snapshots the store asked for while the leases were \
         committed (in batches of {COMMIT_BATCH}, awaited per batch; each time it asked, the bench \
         handed it a copy of the state, as the service does); (b) after folding every journal into \
         the snapshot offline with `local::compact`; (a') one journal, as if no snapshot was ever \
         written. Journal sizes are of the data; `open` cuts off the zeros written ahead."
    );
    kept.expect("the largest size is always run")
}

// ---------------------------------------------------------------- change cost

/// One RequestAddress + ReleaseAddress pair, planned and applied in memory.
fn pair(ipam: &mut Ipam, req: &gipam::ipam::AddressRequest, id: &gipam::ipam::PoolId) {
    let (add, addr) = ipam.plan_address(req).expect("plan an address");
    ipam.apply(&add).expect("apply the lease");
    let release = ipam
        .plan_release_address(id, addr)
        .expect("plan its release")
        .expect("the address is leased");
    ipam.apply(&release).expect("apply the release");
}

/// Mean time of one in-memory pair against each of the two state sizes.
/// Rounds alternate between the sizes (so drift hits both alike); each
/// figure is the median round.
fn pair_costs(sizes: [usize; 2], pairs: usize) -> [Duration; 2] {
    let req = address_request();
    let id = pool_id();
    let mut ipams = sizes.map(|n| {
        let mut ipam = Ipam::new(settings(), build_state(n, Shape::Dense)).expect("settings fit");
        // Past the first 1024 releases the cooling list is full and every
        // pair reaches its steady state.
        for _ in 0..2_000 {
            pair(&mut ipam, &req, &id);
        }
        ipam
    });
    const ROUNDS: usize = 9;
    let per_round = (pairs / ROUNDS).max(1);
    let mut rounds = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (ipam, times) in ipams.iter_mut().zip(rounds.iter_mut()) {
            let t = Instant::now();
            for _ in 0..per_round {
                pair(ipam, &req, &id);
            }
            times.push(t.elapsed() / per_round as u32);
        }
    }
    rounds.map(|mut r| {
        r.sort_unstable();
        quantile(&r, 0.5)
    })
}

/// Per-change times of `changes` durable changes on each of two stores,
/// made one after the other through the Service (plan, apply, commit,
/// fdatasync, reply), alternating request and release, and alternating
/// between the stores every few changes so disk drift hits both alike.
fn durable_costs(dirs: [(&Path, usize); 2], changes: usize, rt: &Runtime) -> [Vec<Duration>; 2] {
    let opened = dirs.map(|(dir, n)| {
        let (store, state) = LocalStore::open(dir).expect("open the state dir");
        assert_eq!(state.lease_count(), n);
        let store = Arc::new(store);
        let ipam = Ipam::new(settings(), state).expect("settings fit");
        (Service::new(ipam, store.clone()), store)
    });
    let req = address_request();
    let id = pool_id();
    let mut times = [Vec::new(), Vec::new()];
    const SPELL: usize = 10;
    rt.block_on(async {
        for spell in 0..(changes / (2 * SPELL) + 1) {
            for ((svc, _), times) in opened.iter().zip(times.iter_mut()) {
                for _ in 0..SPELL {
                    let t = Instant::now();
                    let net = svc.request_address(&req).await.expect("a durable lease");
                    let add = t.elapsed();
                    let t = Instant::now();
                    svc.release_address(&id, net.addr())
                        .await
                        .expect("a durable release");
                    // The first spell warms the files and the page cache.
                    if spell > 0 {
                        times.push(add);
                        times.push(t.elapsed());
                    }
                }
            }
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

pub fn change_cost(plan: &Plan, big_dir: &Path, rt: &Runtime, targets: &mut Vec<Target>) {
    let (small, big) = (1_000, plan.largest());
    println!(
        "\n## 5. Cost of one change at {} vs {} leases\n",
        count(small),
        count(big)
    );
    let [mem_small, mem_big] = pair_costs([small, big], plan.pairs);
    let small_dir = tempfile::tempdir().expect("a temp dir");
    commit_leases(small_dir.path(), 0, small, rt);
    let [dur_small, dur_big] = durable_costs(
        [(small_dir.path(), small), (big_dir, big)],
        plan.durable,
        rt,
    );
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    let mem_ratio = ratio(mem_small, mem_big);
    let mean_ratio = ratio(mean(&dur_small), mean(&dur_big));
    println!(
        "| measure | {} leases | {} leases | ratio |",
        count(small),
        count(big)
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| (a) in memory: plan+apply of a RequestAddress + ReleaseAddress pair (median of 9 rounds, {} pairs) | {} | {} | {mem_ratio:.2} |",
        plan.pairs,
        us(mem_small),
        us(mem_big)
    );
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (quantile(&dur_small, q), quantile(&dur_big, q));
        println!(
            "| (b) durable change via Service, sequential: {label} | {} | {} | {:.2} |",
            ms(a),
            ms(b),
            ratio(a, b)
        );
    }
    println!(
        "| (b) durable change: mean of {} changes | {} | {} | {mean_ratio:.2} |",
        dur_small.len(),
        ms(mean(&dur_small)),
        ms(mean(&dur_big)),
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
