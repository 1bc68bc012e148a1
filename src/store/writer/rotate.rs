//! Rotating the journal: the writer finishes the current journal where a
//! snapshot's copy of the state was taken, starts the next, and a
//! background thread writes the copy as `snapshot.json` and deletes the
//! journals it covers.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::super::StoreError;
use super::super::journal::{self, SNAPSHOT, SnapshotFile};
use super::{Writer, sync_dir};
use crate::ipam::Frozen;

impl Writer {
    /// Finishes the current journal, starts the next, and writes `state`
    /// (as of change `seq`) as the snapshot in the background. Any failure
    /// leaves the current journal in use and is tried again later.
    pub(super) fn rotate(&mut self, seq: u64, state: Box<Frozen>) {
        match self.try_rotate(seq, state) {
            Ok(()) => self.shared.retry_at.store(0, Ordering::Release),
            Err(e) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("snapshot skipped, the journal stays valid: {e}");
                let next = self.size + self.shared.compact_min;
                self.shared.retry_at.store(next, Ordering::Release);
                self.shared.compacting.store(false, Ordering::Release);
            }
        }
    }

    fn try_rotate(&mut self, seq: u64, state: Box<Frozen>) -> Result<(), StoreError> {
        // The finished journal loses its zero tail before anything follows it.
        let old = journal::journal_path(&self.shared.dir, self.gen_now);
        self.file
            .set_len(self.size)
            .map_err(|e| StoreError::io(&old, "truncate", e))?;
        self.alloc = self.size;
        self.file
            .sync_all()
            .map_err(|e| StoreError::io(&old, "sync", e))?;
        let next = self.gen_now + 1;
        let path = journal::journal_path(&self.shared.dir, next);
        let file = super::super::local::open_journal(&path, 0)?;
        if let Err(e) = sync_dir(&self.shared.dir) {
            // Without a durable entry the new journal could vanish with
            // what it holds; go on with the old one.
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("gipam-snapshot".into())
            .spawn(move || {
                let file = SnapshotFile {
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
                        shared.snapshots.fetch_add(1, Ordering::Relaxed);
                        let now = SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(1, |d| d.as_millis() as u64);
                        shared.snapshot_at_ms.store(now, Ordering::Relaxed);
                        log::info!("wrote a {len}-byte snapshot as of change {seq}");
                    }
                    Err(e) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        log::error!("snapshot failed (the journal stays valid): {e}");
                    }
                }
                shared.compacting.store(false, Ordering::Release);
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(e) => {
                let _ = fs::remove_file(&path);
                let _ = sync_dir(&self.shared.dir);
                return Err(StoreError::io(&self.shared.dir, "start snapshot in", e));
            }
        };
        self.file = file;
        self.gen_now = next;
        self.size = 0;
        self.alloc = 0;
        self.prealloc_after = 0;
        self.shared.journal_len.store(0, Ordering::Release);
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
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let data = journal::encode_snapshot(file).map_err(StoreError::Failed)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StoreError::io(&tmp, "create", e))?;
    if let Err(e) = f.write_all(&data).and_then(|_| f.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io(&tmp, "write", e));
    }
    let path = dir.join(SNAPSHOT);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, "replace", e))?;
    sync_dir(dir)?;
    Ok(data.len() as u64)
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
