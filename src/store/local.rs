//! The durable local store (F8): a JSON snapshot plus an append-only,
//! checksummed journal in STATE_DIR.
//!
//! Changes are queued in commit order; one writer thread takes everything
//! queued, appends it with one write and one `fdatasync`, then wakes every
//! waiter (group commit), so the cost of a change does not depend on the
//! size of the state. When the journal has grown past the snapshot, the
//! writer starts a new journal file and a background thread folds the old
//! ones into a new snapshot (written to a temporary file, fsync'd, renamed).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::journal::{self, SNAPSHOT, SnapshotFile};
use super::{Commit, Store, StoreError};
use crate::ipam::{Change, State};

/// A journal is folded into the snapshot once it is larger than this and
/// larger than the snapshot itself.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

/// How far ahead of the data the journal file is filled with zeros.
const PREALLOC_BYTES: u64 = 4 << 20;

type Waiter = oneshot::Sender<Result<(), StoreError>>;

struct Queue {
    pending: Vec<(u64, Change, Waiter)>,
    next_seq: u64,
    failed: Option<String>,
    closing: bool,
}

struct Shared {
    dir: PathBuf,
    queue: Mutex<Queue>,
    wake: Condvar,
    compacting: AtomicBool,
    compactor: Mutex<Option<JoinHandle<()>>>,
    /// Size of the newest snapshot: the journal is folded in once it has
    /// grown past this (and past the configured minimum).
    snapshot_len: AtomicU64,
}

/// The local file store.
pub struct LocalStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // A panic while holding the queue lock leaves it consistent (pushes
    // and takes are single operations), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "sync directory", e))
}

impl LocalStore {
    /// Opens (creating if needed) the store in `dir` and loads its state.
    pub fn open(dir: &Path) -> Result<(LocalStore, State), StoreError> {
        LocalStore::open_with(dir, COMPACT_MIN_BYTES)
    }

    /// [`LocalStore::open`] with the journal size that triggers compaction
    /// (tests make it small).
    pub fn open_with(dir: &Path, compact_min: u64) -> Result<(LocalStore, State), StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, "create directory", e))?;
        let lock = take_lock(dir)?;
        let _ = fs::remove_file(dir.join(format!("{SNAPSHOT}.tmp")));
        let (mut state, next_gen, mut seq) = read_snapshot(dir)?;
        let gens = journal::journal_gens(dir)?;
        for g in gens.iter().filter(|g| **g < next_gen) {
            // Already folded into the snapshot by a compaction that stopped
            // before deleting them.
            let p = journal::journal_path(dir, *g);
            fs::remove_file(&p).map_err(|e| StoreError::io(&p, "remove", e))?;
        }
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
        });
        let writer = Writer {
            shared: shared.clone(),
            file,
            gen_now,
            size,
            alloc: size,
            compact_min,
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
            q.pending.push((seq, change, tx));
        }
        self.shared.wake.notify_one();
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Failed("journal writer stopped".into())))
        })
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
    let mut offset = 0u64;
    for (i, e) in read.entries.iter().enumerate() {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            line: i + 1,
            offset,
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
        offset = data[offset as usize..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len() as u64, |n| offset + n as u64 + 1);
    }
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1) as u64;
    if read.good_len < end {
        log::warn!(
            "{}: dropped {} bytes of an unacknowledged write torn by a crash",
            path.display(),
            end - read.good_len
        );
    }
    Ok(read.good_len)
}

/// Opens a journal for appending, cutting a torn tail at `len`.
fn open_journal(path: &Path, len: u64) -> Result<File, StoreError> {
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

struct Writer {
    shared: Arc<Shared>,
    file: File,
    gen_now: u64,
    /// End of the data in the current journal.
    size: u64,
    /// Length of the file: data plus zeros written ahead (see `extend`).
    alloc: u64,
    compact_min: u64,
}

impl Writer {
    fn run(mut self) {
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
            buf.clear();
            for (seq, change, _) in &batch {
                journal::encode(&mut buf, *seq, change);
            }
            let path = journal::journal_path(&self.shared.dir, self.gen_now);
            let written = self
                .extend(buf.len() as u64)
                .and_then(|_| self.file.write_all_at(&buf, self.size))
                .and_then(|_| self.file.sync_data())
                .map_err(|e| StoreError::io(&path, "append to", e));
            match written {
                Ok(()) => {
                    self.size += buf.len() as u64;
                    for (_, _, w) in batch {
                        let _ = w.send(Ok(()));
                    }
                    if let Err(e) = self.maybe_rotate() {
                        log::error!("{e}");
                        self.fail(e.to_string(), Vec::new());
                        return;
                    }
                }
                Err(e) => {
                    log::error!("{e}");
                    self.fail(e.to_string(), batch);
                    return;
                }
            }
        }
    }

    /// Stops accepting changes and fails everything waiting.
    fn fail(&self, why: String, batch: Vec<(u64, Change, Waiter)>) {
        let rest = {
            let mut q = lock(&self.shared.queue);
            q.failed = Some(why.clone());
            std::mem::take(&mut q.pending)
        };
        for (_, _, w) in batch.into_iter().chain(rest) {
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

    /// Starts a new journal and folds the old ones into the snapshot when
    /// the journal has outgrown the snapshot.
    fn maybe_rotate(&mut self) -> Result<(), StoreError> {
        let threshold = self
            .compact_min
            .max(self.shared.snapshot_len.load(Ordering::Acquire));
        if self.size < threshold || self.shared.compacting.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // The finished journal loses its zero tail before anything follows it.
        let old = journal::journal_path(&self.shared.dir, self.gen_now);
        self.file
            .set_len(self.size)
            .and_then(|_| self.file.sync_all())
            .map_err(|e| StoreError::io(&old, "truncate", e))?;
        let next = self.gen_now + 1;
        let path = journal::journal_path(&self.shared.dir, next);
        self.file = open_journal(&path, 0)?;
        sync_dir(&self.shared.dir)?;
        self.gen_now = next;
        self.size = 0;
        self.alloc = 0;
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("gipam-compact".into())
            .spawn(move || {
                match compact(&shared.dir, next) {
                    Ok(len) => {
                        shared.snapshot_len.store(len, Ordering::Release);
                        log::info!("compacted the journal into a {len}-byte snapshot");
                    }
                    Err(e) => log::error!("compaction failed (the journal stays valid): {e}"),
                }
                shared.compacting.store(false, Ordering::Release);
            })
            .map_err(|e| StoreError::io(&self.shared.dir, "start compaction in", e))?;
        *self
            .shared
            .compactor
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }
}

/// Folds every journal older than `upto` into a new snapshot; returns its
/// size. Reads only files, never the live state, so it needs no lock.
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
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let data = serde_json::to_vec(&file).map_err(|e| StoreError::Failed(e.to_string()))?;
    let mut f = File::create(&tmp).map_err(|e| StoreError::io(&tmp, "create", e))?;
    f.write_all(&data)
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::io(&tmp, "write", e))?;
    let path = dir.join(SNAPSHOT);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, "replace", e))?;
    sync_dir(dir)?;
    for g in next_gen..upto {
        let p = journal::journal_path(dir, g);
        fs::remove_file(&p).map_err(|e| StoreError::io(&p, "remove", e))?;
    }
    Ok(data.len() as u64 + 1)
}
