//! The durable local store (F8): a JSON snapshot plus an append-only,
//! checksummed journal in STATE_DIR. This file opens and loads it; the
//! journal writer and snapshots are in `writer.rs`, the formats in
//! `journal.rs`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::ack;
use super::journal::{self, SNAPSHOT, SnapshotFile};
use super::writer::{self, Item, Queue, Shared, lock, sync_dir};
use super::{Durable, Store, StoreError, Ticket};
use crate::ipam::{Change, Frozen, State};

mod opened;
pub use opened::Opened;

/// A journal is folded into the snapshot once it is larger than this and
/// larger than the snapshot itself.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

/// The local file store.
pub struct LocalStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

/// What the files hold, once read and checked.
struct Loaded {
    state: State,
    /// The journal the snapshot continues in (older ones were folded).
    next_gen: u64,
    seq: u64,
    gen_now: u64,
    size: u64,
    ack_n: u64,
}

impl LocalStore {
    /// Opens (creating if needed) the store in `dir` and loads its state.
    pub fn open(dir: &Path) -> Result<(LocalStore, State), StoreError> {
        LocalStore::open_with(dir, COMPACT_MIN_BYTES)
    }

    /// [`LocalStore::open`] with the journal size that triggers a snapshot
    /// (COMPACT_BYTES; tests make it small).
    pub fn open_with(dir: &Path, compact_min: u64) -> Result<(LocalStore, State), StoreError> {
        let (opened, state) = LocalStore::load(dir)?;
        Ok((opened.start(compact_min)?, state))
    }

    /// Locks `dir` (creating it if needed) and reads its state, writing
    /// nothing: dropping the [`Opened`] leaves the directory as it was
    /// (a start that refuses its settings touches nothing);
    /// [`Opened::start`] begins writing.
    pub fn load(dir: &Path) -> Result<(Opened, State), StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io(dir, "create directory", e))?;
        let lock = take_lock(dir)?;
        let mut loaded = load(dir)?;
        let state = std::mem::take(&mut loaded.state);
        Ok((
            Opened {
                dir: dir.to_path_buf(),
                lock,
                loaded,
            },
            state,
        ))
    }
}

/// Reads the snapshot and the journals after it, checking that nothing the
/// acknowledgement record vouches for is missing or damaged.
fn load(dir: &Path) -> Result<Loaded, StoreError> {
    let acked = ack::read(dir)?;
    let (mut state, next_gen, mut seq, have_snapshot) = read_snapshot(dir)?;
    let gens = journal::journal_gens(dir)?;
    if acked.is_none() && (have_snapshot || !gens.is_empty()) {
        log::info!(
            "{}: no acknowledgement record (a state written by an older gipam); starting one",
            dir.display()
        );
    }
    let ack = acked.map(|(_, a)| a).unwrap_or_default();
    // Journals older than the snapshot were folded into it by a snapshot
    // that stopped before deleting them ([`Opened::start`] deletes them).
    let live: Vec<u64> = gens.into_iter().filter(|g| *g >= next_gen).collect();
    let missing = |g: u64, why: &str| StoreError::Corrupt {
        path: journal::journal_path(dir, g),
        line: 0,
        offset: 0,
        reason: format!("journal file is missing ({why})"),
    };
    if have_snapshot && live.first() != Some(&next_gen) {
        return Err(missing(next_gen, "the snapshot continues in it"));
    }
    if acked.is_some() && ack.gen_ >= next_gen && !live.contains(&ack.gen_) {
        return Err(missing(ack.gen_, "the acknowledgement record names it"));
    }
    let mut gen_now = next_gen;
    let mut size = 0;
    for (i, g) in live.iter().enumerate() {
        if *g != next_gen + i as u64 {
            return Err(missing(next_gen + i as u64, "the journals after it go on"));
        }
        let path = journal::journal_path(dir, *g);
        // Only the newest journal may end in a torn write, and only past
        // what the record says was acknowledged.
        let tail_from = (i + 1 == live.len()).then_some(if *g == ack.gen_ { ack.len } else { 0 });
        let good = replay(&path, tail_from, &mut state, &mut seq)?;
        if *g == ack.gen_ && good < ack.len {
            return Err(StoreError::Corrupt {
                path,
                line: 0,
                offset: good,
                reason: format!(
                    "the journal ends at byte {good}, but {} bytes of it were acknowledged",
                    ack.len
                ),
            });
        }
        gen_now = *g;
        size = good;
    }
    if seq < ack.seq {
        return Err(StoreError::Corrupt {
            path: journal::journal_path(dir, gen_now),
            line: 0,
            offset: size,
            reason: format!(
                "changes up to {} were acknowledged, but the state ends at change {seq}",
                ack.seq
            ),
        });
    }
    Ok(Loaded {
        state,
        next_gen,
        seq,
        gen_now,
        size,
        ack_n: acked.map_or(0, |(n, _)| n + 1),
    })
}

impl Store for LocalStore {
    fn commit(&self, change: Change) -> (Ticket, Durable) {
        let (tx, rx) = oneshot::channel();
        let ticket = {
            let mut q = lock(&self.shared.queue);
            let ticket = Ticket {
                epoch: self.shared.epoch.load(Ordering::Acquire),
                seq: q.next_seq,
            };
            q.next_seq += 1;
            if let Some(err) = refusal(&q) {
                return (ticket, Box::pin(async move { Err(err) }));
            }
            q.pending.push(Item::Change(ticket.seq, change, tx));
            (ticket, q.sleeping)
        };
        let (ticket, sleeping) = ticket;
        if sleeping {
            self.shared.wake.notify_one();
        }
        (ticket, wait(rx))
    }

    fn barrier(&self, upto: Ticket) -> Durable {
        if self.is_durable(upto) {
            return Box::pin(async { Ok(()) });
        }
        let (tx, rx) = oneshot::channel();
        let sleeping = {
            let mut q = lock(&self.shared.queue);
            let err = match refusal(&q) {
                None if upto.epoch != self.shared.epoch.load(Ordering::Acquire) => Some(
                    StoreError::Failed("an earlier change it depends on failed".into()),
                ),
                other => other,
            };
            if let Some(err) = err {
                return Box::pin(async move { Err(err) });
            }
            q.pending.push(Item::Barrier(tx));
            q.sleeping
        };
        if sleeping {
            self.shared.wake.notify_one();
        }
        wait(rx)
    }

    fn is_durable(&self, t: Ticket) -> bool {
        self.shared.epoch.load(Ordering::Acquire) == t.epoch
            && self.shared.durable.load(Ordering::Acquire) >= t.seq
    }

    fn failed(&self) -> Option<u64> {
        self.shared
            .failed
            .load(Ordering::Acquire)
            .then(|| self.shared.epoch.load(Ordering::Acquire))
    }

    fn durable_seq(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    fn resume(&self, epoch: u64) {
        let mut q = lock(&self.shared.queue);
        if q.failed.is_some() && self.shared.epoch.load(Ordering::Acquire) == epoch {
            q.failed = None;
            q.next_seq = self.shared.durable.load(Ordering::Acquire) + 1;
            self.shared.epoch.store(epoch + 1, Ordering::Release);
            self.shared.failed.store(false, Ordering::Release);
            log::info!("state store accepts changes again");
        }
    }

    fn wants_snapshot(&self) -> bool {
        self.shared.wants_snapshot()
    }

    fn stats(&self) -> super::StoreStats {
        self.shared.stats()
    }

    fn fsync_latency(&self) -> Option<&crate::metrics::Histogram> {
        Some(&self.shared.fsync)
    }

    fn snapshot(&self, state: Frozen) {
        if self.shared.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut q = lock(&self.shared.queue);
            if q.failed.is_some() || q.closing {
                self.shared.compacting.store(false, Ordering::Release);
                return;
            }
            let seq = q.next_seq - 1;
            q.pending.push(Item::Snapshot(seq, Box::new(state)));
        }
        self.shared.wake.notify_one();
    }

    fn close(&self) -> Result<(), StoreError> {
        lock(&self.shared.queue).closing = true;
        self.shared.wake.notify_all();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = writer {
            let _ = h.join();
        }
        let compactor = self
            .shared
            .compactor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = compactor {
            let _ = h.join();
        }
        match &lock(&self.shared.queue).failed {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(()),
        }
    }
}

/// Why the queue takes no change now, if it does not.
fn refusal(q: &Queue) -> Option<StoreError> {
    if let Some(why) = &q.failed {
        return Some(StoreError::Failed(why.clone()));
    }
    q.closing
        .then(|| StoreError::Failed("gipam is shutting down".into()))
}

fn wait(rx: oneshot::Receiver<Result<(), StoreError>>) -> Durable {
    Box::pin(async move {
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Failed("journal writer stopped".into())))
    })
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Locks the state directory itself (flock on the directory), so that no
/// path operation — deleting a file, say — can let a second gipam in. The
/// holder's pid is in `pid` ([`write_pid`]), for the message only.
fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let d = File::open(dir).map_err(|e| StoreError::io(dir, "open", e))?;
    let pid_path = dir.join("pid");
    if d.try_lock().is_err() {
        let holder = fs::read_to_string(&pid_path).unwrap_or_default();
        let holder = match holder.trim() {
            "" => "unknown pid".to_string(),
            pid => format!("pid {pid}"),
        };
        return Err(StoreError::Locked {
            path: dir.to_path_buf(),
            holder,
        });
    }
    Ok(d)
}

/// The snapshot: (state, next journal, its change number, whether a file
/// was there).
fn read_snapshot(dir: &Path) -> Result<(State, u64, u64, bool), StoreError> {
    let path = dir.join(SNAPSHOT);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((State::new(), 0, 0, false));
        }
        Err(e) => return Err(StoreError::io(&path, "read", e)),
    };
    let (file, legacy) = journal::decode_snapshot(&path, &data)?;
    if legacy {
        log::warn!(
            "{} has no checksum (written by an older gipam); the next snapshot adds one",
            path.display()
        );
    }
    let state = State::from_snapshot(file.state).map_err(|e| StoreError::Corrupt {
        path: path.clone(),
        line: 1,
        offset: 0,
        reason: e.to_string(),
    })?;
    Ok((state, file.next_gen, file.seq, true))
}

/// Replays one journal into `state`; returns the length of its intact part.
/// `tail_from`: a torn tail starting at or after this offset is dropped;
/// `None`, any damage is corruption.
fn replay(
    path: &Path,
    tail_from: Option<u64>,
    state: &mut State,
    seq: &mut u64,
) -> Result<u64, StoreError> {
    let data = fs::read(path).map_err(|e| StoreError::io(path, "read", e))?;
    let read = journal::read(path, &data, tail_from)?;
    for e in &read.entries {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            line: e.line,
            offset: e.offset,
            reason,
        };
        if e.seq != *seq + 1 {
            return Err(corrupt(format!(
                "expected change {}, found {}",
                *seq + 1,
                e.seq
            )));
        }
        state
            .apply(&e.change)
            .map_err(|err| corrupt(err.to_string()))?;
        *seq = e.seq;
    }
    if read.good_len < read.data_len {
        log::warn!(
            "{}: dropped {} bytes of an unacknowledged write torn by a crash",
            path.display(),
            read.data_len - read.good_len
        );
    }
    Ok(read.good_len)
}

/// Opens a journal for appending, cutting a torn tail at `len`.
pub(super) fn open_journal(path: &Path, len: u64) -> Result<File, StoreError> {
    let f = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io(path, "open", e))?;
    let actual = f
        .metadata()
        .map_err(|e| StoreError::io(path, "stat", e))?
        .len();
    if actual != len {
        f.set_len(len)
            .map_err(|e| StoreError::io(path, "truncate", e))?;
    }
    f.sync_all().map_err(|e| StoreError::io(path, "sync", e))?;
    Ok(f)
}

/// Folds every journal older than `upto` into a new snapshot, offline (from
/// the files alone, not the live state); returns the snapshot's size.
pub fn compact(dir: &Path, upto: u64) -> Result<u64, StoreError> {
    let (mut state, next_gen, mut seq, _) = read_snapshot(dir)?;
    for g in next_gen..upto {
        replay(&journal::journal_path(dir, g), None, &mut state, &mut seq)?;
    }
    let file = SnapshotFile {
        next_gen: upto,
        seq,
        state: state.snapshot(),
    };
    // The journal the snapshot continues in must exist before it does.
    let next = journal::journal_path(dir, upto);
    if !next.exists() {
        open_journal(&next, 0).map(drop)?;
        sync_dir(dir)?;
    }
    let len = writer::write_snapshot_file(dir, &file)?;
    writer::drop_journals(dir, next_gen, upto)?;
    Ok(len)
}
