//! Latency under load while the local store takes a snapshot of a large
//! state: the journal is topped up to just under the snapshot threshold,
//! gipam is started on it, and the load's own writes make the store ask for
//! a snapshot. The service then takes a copy of the state under its
//! allocator lock (`State::freeze`: lease chunks are shared, not cloned, so
//! requests wait only briefly), the writer starts the next journal, and a
//! background thread writes the copy as the snapshot and deletes the old
//! journal. The store wrapper times the ask and the copy, a watcher on the
//! state dir the rest, so requests can be split into those that overlapped
//! the snapshot (and the copy) and the rest.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gipam::store::Store;
use tokio::runtime::Runtime;

use crate::load::{drive, request_body, start_gipam_timed};
use crate::state::{commit_leases, describe, layout};
use crate::{Plan, Shape, Target, count, lease, mb, ms, pool_id, quantile};

/// Mirrors `COMPACT_MIN_BYTES` in src/store/local.rs (the default of
/// COMPACT_BYTES): the journal size below which the store never asks for a
/// snapshot. Above it, the store asks once the journal's data is as large as
/// the snapshot file.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

/// Watches a state dir for the snapshot that ends journal generation `g`:
/// when the writer opens generation `g + 1` (after the service has handed
/// over its copy of the state) and when the snapshot thread, having written
/// the snapshot, deletes generation `g`.
fn watch_compaction(
    dir: &Path,
    g: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(Option<Instant>, Option<Instant>)> {
    let next = dir.join(format!("journal.{}.log", g + 1));
    let old = dir.join(format!("journal.{g}.log"));
    std::thread::spawn(move || {
        let (mut began, mut ended) = (None, None);
        loop {
            let done = stop.load(Ordering::Acquire);
            if began.is_none() && next.exists() {
                began = Some(Instant::now());
            }
            if began.is_some() && ended.is_none() && !old.exists() {
                ended = Some(Instant::now());
            }
            if done || ended.is_some() {
                return (began, ended);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// Latency at the highest concurrency while the store takes a snapshot of
/// a large state: the journal of `big/state` (holding the largest lease
/// count) is topped up to just under the snapshot threshold, so the load's
/// own writes make the store ask for one about a third of the way in.
pub fn during_compaction(
    plan: &Plan,
    big: &Path,
    rate: f64,
    rt: &Runtime,
    targets: &mut Vec<Target>,
) {
    let clients = plan.clients[2];
    let state_dir = big.join("state");
    let n = plan.largest();
    println!(
        "\n## 6. RequestAddress at {clients} clients while the store takes a snapshot of ~{} leases\n",
        count(n)
    );
    let line = {
        let json = serde_json::to_string(&lease(&pool_id(), n, Shape::Dense)).expect("encodes");
        (json.len() + format!("00000000 {n} \n").len()) as u64
    };
    let (gens, snapshot) = layout(&state_dir);
    let journal = gens.last().map_or(0, |(_, l)| *l);
    let threshold = COMPACT_MIN_BYTES.max(snapshot);
    let margin = (rate * plan.load.as_secs_f64() / 3.0) as u64 * line;
    let top_up = (threshold.saturating_sub(journal + margin) / line) as usize;
    commit_leases(&state_dir, n, top_up, rt);
    let g = layout(&state_dir).0.last().map_or(0, |(g, _)| *g);
    println!(
        "state before the load: {} leases, {} (the store asks for a snapshot at {} of journal)",
        count(n + top_up),
        describe(&state_dir),
        mb(threshold)
    );
    let ((server, store, pool), opened) = start_gipam_timed(&state_dir, big.join("gipam.sock"));
    println!(
        "restart on this state (journal just under the snapshot threshold): \
         LocalStore::open took {}",
        ms(opened)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_compaction(&state_dir, g, stop.clone());
    let load = drive(&server.socket, &request_body(&pool), clients, plan.load);
    drop(server);
    store.close().expect("the store closes cleanly");
    stop.store(true, Ordering::Release);
    let (rotated, ended) = watcher.join().expect("the watcher finished");
    let (Some(&(asked, copied)), Some(rotated)) = (store.snapshots().first(), rotated) else {
        println!("no snapshot started during the load (the top-up estimate missed); no figure");
        return;
    };
    let ended = ended.unwrap_or_else(Instant::now);
    let at = |i: Instant| ms(i.saturating_duration_since(load.start));
    let overlapping = |from: Instant, to: Instant| {
        let mut v: Vec<Duration> = load
            .samples
            .iter()
            .filter(|(sent, lat)| *sent + *lat >= from && *sent <= to)
            .map(|(_, lat)| *lat)
            .collect();
        v.sort_unstable();
        v
    };
    let inside = overlapping(asked, ended);
    let copy = overlapping(asked, copied);
    let mut outside: Vec<Duration> = load
        .samples
        .iter()
        .filter(|(sent, lat)| !(*sent + *lat >= asked && *sent <= ended))
        .map(|(_, lat)| *lat)
        .collect();
    outside.sort_unstable();
    let end = load.start + load.elapsed;
    let span =
        |from: Instant, to: Instant| to.min(end).saturating_duration_since(from.max(load.start));
    let overlap = span(asked, ended);
    println!(
        "snapshot asked for {} after the load started; the service took its copy of the state \
         (shared chunks) under its lock in {}; the writer started the next journal at {}; the \
         snapshot was written and the old journal deleted at {} ({} from the ask)\n",
        at(asked),
        ms(copied - asked),
        at(rotated),
        at(ended),
        ms(ended - asked)
    );
    println!("| requests | count | req/s | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows = [
        ("all", &load.sorted, load.elapsed),
        (
            "overlapping the snapshot (ask to old journal deleted)",
            &inside,
            overlap,
        ),
        (
            "… of which overlapping the copy",
            &copy,
            span(asked, copied),
        ),
        ("the rest", &outside, load.elapsed.saturating_sub(overlap)),
    ];
    for (label, s, span) in rows {
        println!(
            "| {label} | {} | {:.0} | {} | {} | {} |",
            s.len(),
            s.len() as f64 / span.as_secs_f64().max(1e-9),
            ms(quantile(s, 0.5)),
            ms(quantile(s, 0.99)),
            ms(s.last().copied().unwrap_or_default())
        );
    }
    println!(
        "\nCPU over the load: clients {}, server runtime {} (the copy included), journal writer {}, \
         other (the snapshot thread) {}.",
        ms(load.cpu.clients),
        ms(load.cpu.server),
        ms(load.cpu.journal),
        ms(load.cpu.other)
    );
    targets.push(Target {
        what: format!(
            "restart with {} leases < 2 s (journal just under the snapshot threshold)",
            count(n + top_up)
        ),
        figure: ms(opened),
        pass: opened < Duration::from_secs(2),
    });
    targets.push(Target {
        what: format!(
            "p99 at {clients} clients < 5 ms, across a snapshot of {} leases",
            count(n + top_up)
        ),
        figure: ms(load.p(0.99)),
        pass: load.p(0.99) < Duration::from_millis(5),
    });
}
