//! Latency under load while the local store compacts a large state: the
//! journal is topped up to just under the compaction threshold, gipam is
//! started on it, and the load's own writes trigger the compaction; a
//! watcher on the state dir times the compaction, so requests can be split
//! into those that overlapped it and the rest.

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

/// Mirrors `COMPACT_MIN_BYTES` in src/store/local.rs: the journal size below
/// which the store never compacts.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

/// Watches a state dir for the compaction of journal generation `g`: it
/// starts when the writer opens generation `g + 1` and ends when the
/// compactor deletes generation `g`.
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

/// Latency at the highest concurrency while the store compacts a large
/// state: the journal of `big/state` (holding the largest lease count) is
/// topped up to just under the compaction threshold, so the load's own
/// writes trigger the compaction about a third of the way in.
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
        "\n## 6. RequestAddress at {clients} clients while the store compacts ~{} leases\n",
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
        "state before the load: {} leases, {} (compaction starts at a {} journal)",
        count(n + top_up),
        describe(&state_dir),
        mb(threshold)
    );
    let ((server, store, pool), opened) = start_gipam_timed(&state_dir, big.join("gipam.sock"));
    println!(
        "restart on this state (journal just under the compaction threshold): \
         LocalStore::open took {}",
        ms(opened)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_compaction(&state_dir, g, stop.clone());
    let load = drive(&server.socket, &request_body(&pool), clients, plan.load);
    drop(server);
    store.close().expect("the store closes cleanly");
    stop.store(true, Ordering::Release);
    let (began, ended) = watcher.join().expect("the watcher finished");
    let Some(began) = began else {
        println!("no compaction started during the load (the top-up estimate missed); no figure");
        return;
    };
    let ended = ended.unwrap_or_else(Instant::now);
    let at = |i: Instant| ms(i.saturating_duration_since(load.start));
    let (mut inside, mut outside): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for (sent, lat) in &load.samples {
        if *sent + *lat >= began && *sent <= ended {
            inside.push(*lat);
        } else {
            outside.push(*lat);
        }
    }
    inside.sort_unstable();
    outside.sort_unstable();
    let window = ended - began;
    let overlap = ended.min(load.start + load.elapsed) - began.max(load.start);
    println!(
        "compaction ran from {} to {} after the load started ({} in all)\n",
        at(began),
        at(ended),
        ms(window)
    );
    println!("| requests | count | req/s | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows = [
        ("all", &load.sorted, load.elapsed),
        ("overlapping the compaction", &inside, overlap),
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
        "\nCPU over the load: clients {}, server runtime {}, journal writer {}, other (the compactor) {}.",
        ms(load.cpu.clients),
        ms(load.cpu.server),
        ms(load.cpu.journal),
        ms(load.cpu.other)
    );
    targets.push(Target {
        what: format!(
            "restart with {} leases < 2 s (worst case: journal just under the compaction threshold)",
            count(n + top_up)
        ),
        figure: ms(opened),
        pass: opened < Duration::from_secs(2),
    });
    targets.push(Target {
        what: format!(
            "p99 at {clients} clients < 5 ms, across a compaction of {} leases",
            count(n + top_up)
        ),
        figure: ms(load.p(0.99)),
        pass: load.p(0.99) < Duration::from_millis(5),
    });
}
