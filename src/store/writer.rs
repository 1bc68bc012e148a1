//! The local store's journal writer: one thread that takes everything
//! queued, appends it with one write and one `fdatasync`, then wakes every
//! waiter (group commit), so the cost of a change does not depend on the
//! size of the state.
//!
//! When the journal has outgrown the snapshot, the service hands the store
//! a copy of the live state (taken under the allocator lock, so it holds
//! exactly the changes queued before it). The writer finishes the journal
//! at that point, starts the next one, and a background thread writes the
//! copy as the new snapshot and deletes the journals it covers — no
//! re-reading of files, so compaction costs little CPU.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::StoreError;
use super::journal::{self, SNAPSHOT, SnapshotFile};
use crate::ipam::{Change, Frozen};

/// How far ahead of the data the journal file is filled with zeros.
const PREALLOC_BYTES: u64 = 4 << 20;

pub type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// What the writer is asked to do, in commit order.
pub enum Item {
    /// Append change `seq`.
    Change(u64, Change, Waiter),
    /// Start a new journal here; the state is as of change `seq`.
    Snapshot(u64, Box<Frozen>),
}

pub struct Queue {
    pub pending: Vec<Item>,
    pub next_seq: u64,
    pub failed: Option<String>,
    pub closing: bool,
}

/// What the store and its threads share.
pub struct Shared {
    pub dir: PathBuf,
    pub queue: Mutex<Queue>,
    pub wake: Condvar,
    /// A snapshot is queued or being written.
    pub compacting: AtomicBool,
    pub compactor: Mutex<Option<JoinHandle<()>>>,
    /// Size of the newest snapshot.
    pub snapshot_len: AtomicU64,
    /// Size of the current journal's data.
    pub journal_len: AtomicU64,
    /// A journal smaller than this is never folded.
    pub compact_min: u64,
}

impl Shared {
    /// Whether the journal has grown past the snapshot (and the minimum).
    pub fn wants_snapshot(&self) -> bool {
        let threshold = self
            .compact_min
            .max(self.snapshot_len.load(Ordering::Acquire));
        !self.compacting.load(Ordering::Acquire)
            && self.journal_len.load(Ordering::Acquire) >= threshold
    }
}

/// Locks the queue. A panic while holding it leaves it consistent (pushes
/// and takes are single operations), so poisoning is ignored.
pub fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "sync directory", e))
}

pub struct Writer {
    pub shared: Arc<Shared>,
    pub file: File,
    pub gen_now: u64,
    /// End of the data in the current journal.
    pub size: u64,
    /// Length of the file: data plus zeros written ahead (see `extend`).
    pub alloc: u64,
}

impl Writer {
    pub fn run(mut self) {
        let mut buf = Vec::with_capacity(64 << 10);
        loop {
            let batch = {
                let mut q = lock(&self.shared.queue);
                while q.pending.is_empty() && !q.closing {
                    q = self.shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.pending.is_empty() {
                    return;
                }
                std::mem::take(&mut q.pending)
            };
            let mut waiters = Vec::with_capacity(batch.len());
            let mut result = Ok(());
            buf.clear();
            for item in batch {
                match item {
                    Item::Change(seq, change, w) => {
                        journal::encode(&mut buf, seq, &change);
                        waiters.push(w);
                    }
                    Item::Snapshot(seq, state) if result.is_ok() => {
                        result = self.flush(&mut buf).and_then(|_| self.rotate(seq, state));
                    }
                    Item::Snapshot(..) => {}
                }
            }
            if result.is_ok() {
                result = self.flush(&mut buf);
            }
            match result {
                Ok(()) => {
                    for w in waiters {
                        let _ = w.send(Ok(()));
                    }
                }
                Err(e) => {
                    log::error!("{e}");
                    self.fail(e.to_string(), waiters);
                    return;
                }
            }
        }
    }

    /// Appends `buf` and makes it durable.
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = journal::journal_path(&self.shared.dir, self.gen_now);
        self.extend(buf.len() as u64)
            .and_then(|_| self.file.write_all_at(buf, self.size))
            .and_then(|_| self.file.sync_data())
            .map_err(|e| StoreError::io(&path, "append to", e))?;
        self.size += buf.len() as u64;
        self.shared.journal_len.store(self.size, Ordering::Release);
        buf.clear();
        Ok(())
    }

    /// Stops accepting changes and fails everything waiting.
    fn fail(&self, why: String, waiters: Vec<Waiter>) {
        let rest = {
            let mut q = lock(&self.shared.queue);
            q.failed = Some(why.clone());
            std::mem::take(&mut q.pending)
        };
        let rest = rest.into_iter().filter_map(|i| match i {
            Item::Change(_, _, w) => Some(w),
            Item::Snapshot(..) => None,
        });
        for w in waiters.into_iter().chain(rest) {
            let _ = w.send(Err(StoreError::Failed(why.clone())));
        }
    }

    /// Makes sure `more` bytes past the data land inside the file by
    /// writing zeros ahead, a few MiB at a time. An fdatasync after an
    /// overwrite inside the file need not journal a new file size, which
    /// makes the common commit cheaper. Readers ignore the zero tail.
    fn extend(&mut self, more: u64) -> std::io::Result<()> {
        if self.size + more <= self.alloc {
            return Ok(());
        }
        let target = self.size + more + PREALLOC_BYTES;
        let zeros = vec![0u8; 64 << 10];
        while self.alloc < target {
            let n = (target - self.alloc).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], self.alloc)?;
            self.alloc += n as u64;
        }
        Ok(())
    }

    /// Finishes the current journal, starts the next, and writes `state`
    /// (as of change `seq`) as the snapshot in the background.
    fn rotate(&mut self, seq: u64, state: Box<Frozen>) -> Result<(), StoreError> {
        // The finished journal loses its zero tail before anything follows it.
        let old = journal::journal_path(&self.shared.dir, self.gen_now);
        self.file
            .set_len(self.size)
            .and_then(|_| self.file.sync_all())
            .map_err(|e| StoreError::io(&old, "truncate", e))?;
        let next = self.gen_now + 1;
        let path = journal::journal_path(&self.shared.dir, next);
        self.file = super::local::open_journal(&path, 0)?;
        sync_dir(&self.shared.dir)?;
        self.gen_now = next;
        self.size = 0;
        self.alloc = 0;
        self.shared.journal_len.store(0, Ordering::Release);
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("gipam-snapshot".into())
            .spawn(move || {
                let file = SnapshotFile {
                    format: 1,
                    next_gen: next,
                    seq,
                    state: state.snapshot(),
                };
                drop(state);
                let done = write_snapshot_file(&shared.dir, &file)
                    .and_then(|len| drop_journals(&shared.dir, 0, next).map(|_| len));
                match done {
                    Ok(len) => {
                        shared.snapshot_len.store(len, Ordering::Release);
                        log::info!("wrote a {len}-byte snapshot as of change {seq}");
                    }
                    Err(e) => log::error!("snapshot failed (the journal stays valid): {e}"),
                }
                shared.compacting.store(false, Ordering::Release);
            })
            .map_err(|e| StoreError::io(&self.shared.dir, "start snapshot in", e))?;
        let previous = self
            .shared
            .compactor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(handle);
        if let Some(h) = previous {
            let _ = h.join();
        }
        Ok(())
    }
}

/// Writes `file` as the snapshot (temporary file, fsync, rename, fsync the
/// directory); returns its size.
pub fn write_snapshot_file(dir: &Path, file: &SnapshotFile) -> Result<u64, StoreError> {
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let data = serde_json::to_vec(file).map_err(|e| StoreError::Failed(e.to_string()))?;
    let mut f = File::create(&tmp).map_err(|e| StoreError::io(&tmp, "create", e))?;
    f.write_all(&data)
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::io(&tmp, "write", e))?;
    let path = dir.join(SNAPSHOT);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, "replace", e))?;
    sync_dir(dir)?;
    Ok(data.len() as u64 + 1)
}

/// Deletes the journals of generations `from..upto` that exist.
pub fn drop_journals(dir: &Path, from: u64, upto: u64) -> Result<(), StoreError> {
    for g in journal::journal_gens(dir)?
        .into_iter()
        .filter(|g| (from..upto).contains(g))
    {
        let p = journal::journal_path(dir, g);
        fs::remove_file(&p).map_err(|e| StoreError::io(&p, "remove", e))?;
    }
    Ok(())
}
