//! The local store's journal writer: one thread that takes everything
//! queued, appends it with one write and one `fdatasync`, then wakes every
//! waiter (group commit), so the cost of a change does not depend on the
//! size of the state.
//!
//! A write that fails (ENOSPC, EIO, …) fails every change not yet durable
//! and puts the store in the failed state until the service has taken those
//! changes back (`Store::resume`). The bytes the failed write may have left
//! past the durable end are cut off at once and again before the next
//! write, so a change reported as failed is never replayed by a later start.
//! Nothing else is fatal: zeros written ahead are best effort (gipam works
//! on a nearly full disk), and a snapshot that cannot be taken (EMFILE) is
//! skipped and tried again later.
//!
//! When the journal has outgrown the snapshot, the service hands the store
//! a copy of the live state (taken under its lock, so it holds exactly the
//! changes queued before it). The writer finishes the journal at that point,
//! starts the next one, and a background thread writes the copy as the new
//! snapshot and deletes the journals it covers.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use tokio::sync::oneshot;

use super::StoreError;
use super::ack::{ACK_EVERY, ACK_IDLE, AckFile, Acked};
use super::journal;
use crate::ipam::{Change, Frozen};
use crate::metrics::Histogram;

mod rotate;

pub use rotate::{drop_journals, write_snapshot_file};

/// How far ahead of the data the journal file is filled with zeros.
const PREALLOC_BYTES: u64 = 4 << 20;

pub type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// What the writer is asked to do, in commit order.
pub enum Item {
    /// Append change `seq`.
    Change(u64, Change, Waiter),
    /// Answer once everything queued before is durable.
    Barrier(Waiter),
    /// Start a new journal here; the state is as of change `seq`.
    Snapshot(u64, Box<Frozen>),
}

pub struct Queue {
    pub pending: Vec<Item>,
    pub next_seq: u64,
    /// Why the last write failed, until the service resumes the store.
    pub failed: Option<String>,
    pub closing: bool,
    /// The writer waits on `wake`: only then does a commit notify it (a
    /// notification is a futex syscall, and a busy writer takes everything
    /// queued when it comes back anyway).
    pub sleeping: bool,
}

/// What the store and its threads share.
pub struct Shared {
    pub dir: PathBuf,
    pub queue: Mutex<Queue>,
    pub wake: Condvar,
    /// The current epoch (see `Ticket`).
    pub epoch: AtomicU64,
    /// The highest durable sequence number.
    pub durable: AtomicU64,
    /// Mirrors `Queue::failed.is_some()` for a lock-free check.
    pub failed: AtomicBool,
    /// A snapshot is queued or being written.
    pub compacting: AtomicBool,
    pub compactor: Mutex<Option<JoinHandle<()>>>,
    /// Size of the newest snapshot.
    pub snapshot_len: AtomicU64,
    /// Size of the current journal's data.
    pub journal_len: AtomicU64,
    /// A journal smaller than this is never folded.
    pub compact_min: u64,
    /// After a snapshot could not be taken: no new try before the journal
    /// reaches this size (each try copies the whole state).
    pub retry_at: AtomicU64,
    /// How long each `fdatasync` of the journal took.
    pub fsync: Histogram,
    /// Snapshots written since the store opened.
    pub snapshots: AtomicU64,
    /// When the last of them was written (ms since the Unix epoch; 0: none).
    pub snapshot_at_ms: AtomicU64,
    /// Failed journal writes and snapshots since the store opened.
    pub errors: AtomicU64,
}

impl Shared {
    /// The counters and the state of the files, for status and metrics.
    pub fn stats(&self) -> super::StoreStats {
        let at = self.snapshot_at_ms.load(Ordering::Relaxed);
        super::StoreStats {
            journal_bytes: self.journal_len.load(Ordering::Acquire),
            snapshot_bytes: self.snapshot_len.load(Ordering::Acquire),
            snapshots: self.snapshots.load(Ordering::Relaxed),
            last_snapshot: (at > 0)
                .then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(at)),
            last_fsync: self.fsync.last(),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    /// Whether the journal has grown past the snapshot (and the minimum).
    pub fn wants_snapshot(&self) -> bool {
        let threshold = self
            .compact_min
            .max(self.snapshot_len.load(Ordering::Acquire));
        let len = self.journal_len.load(Ordering::Acquire);
        !self.compacting.load(Ordering::Acquire)
            && len >= threshold
            && len >= self.retry_at.load(Ordering::Acquire)
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
    /// End of the durable data in the current journal.
    pub size: u64,
    /// Length of the file: data plus zeros written ahead (see `extend`).
    pub alloc: u64,
    /// The last durable sequence number.
    pub seq: u64,
    pub ack: AckFile,
    /// A failed write may have left bytes past `size`.
    pub dirty: bool,
    /// No zeros are written ahead before the data reaches this (after the
    /// disk ran out of room for them).
    pub prealloc_after: u64,
    pub acked_at: Instant,
}

impl Writer {
    pub fn run(mut self) {
        let mut buf = Vec::with_capacity(64 << 10);
        // The queue and the batch being written trade their vectors, so
        // neither grows again from nothing for every batch.
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        loop {
            {
                let mut q = lock(&self.shared.queue);
                while q.pending.is_empty() && !q.closing {
                    if self.ack_behind() {
                        // Idle for a moment: note how far the journal is
                        // acknowledged. Not at once, so that a client
                        // sending one request after another does not wait
                        // for a second fsync each time.
                        q.sleeping = true;
                        let (g, idle) = self
                            .shared
                            .wake
                            .wait_timeout(q, ACK_IDLE)
                            .unwrap_or_else(|p| p.into_inner());
                        q = g;
                        q.sleeping = false;
                        if idle.timed_out() && q.pending.is_empty() && !q.closing {
                            drop(q);
                            self.write_ack();
                            q = lock(&self.shared.queue);
                        }
                        continue;
                    }
                    q.sleeping = true;
                    q = self.shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                    q.sleeping = false;
                }
                if q.pending.is_empty() {
                    drop(q);
                    self.finish();
                    return;
                }
                std::mem::swap(&mut q.pending, &mut batch);
            }
            self.process(&mut batch, &mut buf, &mut waiters);
            if self.ack_behind() && self.acked_at.elapsed() >= ACK_EVERY {
                self.write_ack();
            }
        }
    }

    fn process(&mut self, batch: &mut Vec<Item>, buf: &mut Vec<u8>, waiters: &mut Vec<Waiter>) {
        let mut last = self.seq;
        let mut result = Ok(());
        buf.clear();
        waiters.clear();
        for item in batch.drain(..) {
            match item {
                Item::Change(seq, change, w) => {
                    journal::encode(buf, seq, &change);
                    waiters.push(w);
                    last = seq;
                }
                Item::Barrier(w) => waiters.push(w),
                Item::Snapshot(seq, state) if result.is_ok() => {
                    result = self.flush(buf, last, waiters);
                    if result.is_ok() {
                        self.rotate(seq, state);
                    } else {
                        self.shared.compacting.store(false, Ordering::Release);
                    }
                }
                Item::Snapshot(..) => self.shared.compacting.store(false, Ordering::Release),
            }
        }
        if result.is_ok() {
            result = self.flush(buf, last, waiters);
        }
        if let Err(e) = result {
            log::error!("{e}");
            self.fail(e.to_string(), std::mem::take(waiters));
        }
    }

    /// Appends `buf`, makes it durable and answers `waiters`.
    fn flush(
        &mut self,
        buf: &mut Vec<u8>,
        last: u64,
        waiters: &mut Vec<Waiter>,
    ) -> Result<(), StoreError> {
        if !buf.is_empty() {
            if self.dirty {
                self.scrub()?;
            }
            self.extend(buf.len() as u64);
            self.dirty = true;
            self.file
                .write_all_at(buf, self.size)
                .and_then(|_| {
                    let start = Instant::now();
                    let synced = self.file.sync_data();
                    self.shared.fsync.observe(start.elapsed());
                    synced
                })
                .map_err(|e| {
                    let path = journal::journal_path(&self.shared.dir, self.gen_now);
                    StoreError::io(path, "append to", e)
                })?;
            self.dirty = false;
            self.size += buf.len() as u64;
            self.alloc = self.alloc.max(self.size);
            self.seq = last;
            self.shared.journal_len.store(self.size, Ordering::Release);
            self.shared.durable.store(last, Ordering::Release);
            buf.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
        Ok(())
    }

    /// Fails `waiters` and everything queued, and refuses changes until the
    /// service resumes the store.
    fn fail(&mut self, why: String, waiters: Vec<Waiter>) {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.scrub() {
            log::error!("{e}; trying again before the next write");
        }
        let rest = {
            let mut q = lock(&self.shared.queue);
            q.failed = Some(why.clone());
            self.shared.failed.store(true, Ordering::Release);
            std::mem::take(&mut q.pending)
        };
        let rest = rest.into_iter().filter_map(|i| match i {
            Item::Change(_, _, w) | Item::Barrier(w) => Some(w),
            Item::Snapshot(..) => {
                self.shared.compacting.store(false, Ordering::Release);
                None
            }
        });
        for w in waiters.into_iter().chain(rest.collect::<Vec<_>>()) {
            let _ = w.send(Err(StoreError::Failed(why.clone())));
        }
    }

    /// Cuts whatever a failed write left past the durable end. Reopens the
    /// file when the old descriptor is dead (a file system remounted after
    /// an I/O error).
    fn scrub(&mut self) -> Result<(), StoreError> {
        let path = journal::journal_path(&self.shared.dir, self.gen_now);
        let cut = |f: &File| f.set_len(self.size).and_then(|_| f.sync_all());
        if cut(&self.file).is_err() {
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| StoreError::io(&path, "reopen", e))?;
            let len = f
                .metadata()
                .map_err(|e| StoreError::io(&path, "stat", e))?
                .len();
            if len < self.size {
                return Err(StoreError::Corrupt {
                    path,
                    line: 0,
                    offset: len,
                    reason: format!(
                        "the journal lost acknowledged data ({len} of {} bytes left); restart gipam to check the state",
                        self.size
                    ),
                });
            }
            cut(&f).map_err(|e| StoreError::io(&path, "truncate", e))?;
            self.file = f;
        }
        self.alloc = self.size;
        self.dirty = false;
        Ok(())
    }

    /// Writes zeros a few MiB ahead of the data, when the disk has room: an
    /// fdatasync after an overwrite inside the file need not journal a new
    /// file size, which makes the common commit cheaper. Readers ignore the
    /// zero tail; a clean stop cuts it.
    fn extend(&mut self, more: u64) {
        if self.size + more <= self.alloc || self.size < self.prealloc_after {
            return;
        }
        let target = self.size + more + PREALLOC_BYTES;
        let zeros = vec![0u8; 64 << 10];
        while self.alloc < target {
            let n = (target - self.alloc).min(zeros.len() as u64) as usize;
            if let Err(e) = self.file.write_all_at(&zeros[..n], self.alloc) {
                log::debug!("no room to write zeros ahead of the journal: {e}");
                // Give the room back to the data itself.
                if self.file.set_len(self.size).is_ok() {
                    self.alloc = self.size;
                }
                self.prealloc_after = self.size + PREALLOC_BYTES;
                return;
            }
            self.alloc += n as u64;
        }
    }

    fn ack_behind(&self) -> bool {
        self.ack.last != self.acked_now()
    }

    fn acked_now(&self) -> Acked {
        Acked {
            gen_: self.gen_now,
            len: self.size,
            seq: self.seq,
        }
    }

    /// Rewrites the acknowledgement record (a failure only delays it).
    fn write_ack(&mut self) {
        let now = self.acked_now();
        if let Err(e) = self.ack.write(now) {
            log::warn!("{e}");
        }
        self.acked_at = Instant::now();
    }

    /// On a clean stop: cut the zero tail and record the end.
    fn finish(&mut self) {
        let path = journal::journal_path(&self.shared.dir, self.gen_now);
        if let Err(e) = self
            .file
            .set_len(self.size)
            .and_then(|_| self.file.sync_all())
        {
            log::warn!("cannot cut the zero tail of {}: {e}", path.display());
        }
        let now = self.acked_now();
        if let Err(e) = self.ack.write(now) {
            log::warn!("{e}");
        }
    }
}
