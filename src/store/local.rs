//! The durable local store (F8): a JSON snapshot plus an append-only,
//! checksummed journal in STATE_DIR. This file opens and loads it; the
//! journal writer and snapshots are in `writer.rs`, the formats in
//! `journal.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::journal::{self, SNAPSHOT, SnapshotFile};
use super::writer::{self, Item, Queue, Shared, Writer, lock, sync_dir};
use super::{Commit, Store, StoreError};
use crate::ipam::{Change, Frozen, State};

/// A journal is folded into the snapshot once it is larger than this and
/// larger than the snapshot itself.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

/// The local file store.
pub struct LocalStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

impl LocalStore {
    /// Opens (creating if needed) the store in `dir` and loads its state.
    pub fn open(dir: &Path) -> Result<(LocalStore, State), StoreError> {
        LocalStore::open_with(dir, COMPACT_MIN_BYTES)
    }

    /// [`LocalStore::open`] with the journal size that triggers a snapshot
    /// (COMPACT_BYTES; tests make it small).
    pub fn open_with(dir: &Path, compact_min: u64) -> Result<(LocalStore, State), StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, "create directory", e))?;
        let lock = take_lock(dir)?;
        let _ = fs::remove_file(dir.join(format!("{SNAPSHOT}.tmp")));
        let (mut state, next_gen, mut seq) = read_snapshot(dir)?;
        let gens = journal::journal_gens(dir)?;
        // Journals older than the snapshot were folded into it by a snapshot
        // that stopped before deleting them.
        writer::drop_journals(dir, 0, next_gen)?;
        let live: Vec<u64> = gens.into_iter().filter(|g| *g >= next_gen).collect();
        let mut gen_now = next_gen;
        let mut size = 0;
        for (i, g) in live.iter().enumerate() {
            let path = journal::journal_path(dir, *g);
            if *g != next_gen + i as u64 {
                return Err(StoreError::Corrupt {
                    path: journal::journal_path(dir, next_gen + i as u64),
                    line: 0,
                    offset: 0,
                    reason: "journal file is missing".into(),
                });
            }
            let last = i + 1 == live.len();
            let good = replay(&path, last, &mut state, &mut seq)?;
            gen_now = *g;
            size = good;
        }
        let path = journal::journal_path(dir, gen_now);
        let file = open_journal(&path, size)?;
        sync_dir(dir)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                next_seq: seq + 1,
                failed: None,
                closing: false,
            }),
            wake: Condvar::new(),
            compacting: AtomicBool::new(false),
            compactor: Mutex::new(None),
            snapshot_len: AtomicU64::new(
                fs::metadata(dir.join(SNAPSHOT))
                    .map(|m| m.len())
                    .unwrap_or(0),
            ),
            journal_len: AtomicU64::new(size),
            compact_min,
        });
        let writer = Writer {
            shared: shared.clone(),
            file,
            gen_now,
            size,
            alloc: size,
        };
        let handle = std::thread::Builder::new()
            .name("gipam-journal".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io(dir, "start journal writer for", e))?;
        Ok((
            LocalStore {
                shared,
                writer: Mutex::new(Some(handle)),
                _lock: lock,
            },
            state,
        ))
    }
}

impl Store for LocalStore {
    fn commit(&self, change: Change) -> Commit {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = lock(&self.shared.queue);
            if let Some(why) = &q.failed {
                let err = StoreError::Failed(why.clone());
                return Box::pin(async move { Err(err) });
            }
            if q.closing {
                let err = StoreError::Failed("gipam is shutting down".into());
                return Box::pin(async move { Err(err) });
            }
            let seq = q.next_seq;
            q.next_seq += 1;
            q.pending.push(Item::Change(seq, change, tx));
        }
        self.shared.wake.notify_one();
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Failed("journal writer stopped".into())))
        })
    }

    fn wants_snapshot(&self) -> bool {
        self.shared.wants_snapshot()
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

impl Drop for LocalStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Takes the directory's lock file so a second gipam cannot share it.
fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io(&path, "open", e))?;
    if f.try_lock().is_err() {
        let holder = fs::read_to_string(&path).unwrap_or_default();
        let holder = match holder.trim() {
            "" => "unknown pid".to_string(),
            pid => format!("pid {pid}"),
        };
        return Err(StoreError::Locked {
            path: dir.to_path_buf(),
            holder,
        });
    }
    let _ = f.set_len(0);
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

fn read_snapshot(dir: &Path) -> Result<(State, u64, u64), StoreError> {
    let path = dir.join(SNAPSHOT);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((State::new(), 0, 0)),
        Err(e) => return Err(StoreError::io(&path, "read", e)),
    };
    let corrupt = |line: usize, offset: u64, reason: String| StoreError::Corrupt {
        path: path.clone(),
        line,
        offset,
        reason,
    };
    let file: SnapshotFile = serde_json::from_slice(&data).map_err(|e| {
        let offset = data
            .split(|b| *b == b'\n')
            .take(e.line().saturating_sub(1))
            .map(|l| l.len() as u64 + 1)
            .sum::<u64>()
            + e.column() as u64;
        corrupt(e.line(), offset, e.to_string())
    })?;
    if file.format != 1 {
        return Err(corrupt(1, 0, format!("unknown format {}", file.format)));
    }
    let state = State::from_snapshot(file.state).map_err(|e| corrupt(1, 0, e.to_string()))?;
    Ok((state, file.next_gen, file.seq))
}

/// Replays one journal into `state`; returns the length of its intact part.
fn replay(path: &Path, last: bool, state: &mut State, seq: &mut u64) -> Result<u64, StoreError> {
    let data = fs::read(path).map_err(|e| StoreError::io(path, "read", e))?;
    let read = journal::read(path, &data, last)?;
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
    let (mut state, next_gen, mut seq) = read_snapshot(dir)?;
    for g in next_gen..upto {
        replay(&journal::journal_path(dir, g), false, &mut state, &mut seq)?;
    }
    let file = SnapshotFile {
        format: 1,
        next_gen: upto,
        seq,
        state: state.snapshot(),
    };
    let len = writer::write_snapshot_file(dir, &file)?;
    writer::drop_journals(dir, next_gen, upto)?;
    Ok(len)
}
