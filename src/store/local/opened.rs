//! Starting a local store whose state has been read: the half of opening
//! that writes (the holder's pid, clean-ups after a crash, the journal
//! writer), kept apart so that a start refused for its settings, having
//! only read, leaves the state directory as it was.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::super::StoreError;
use super::super::ack::{AckFile, Acked};
use super::super::journal::{self, SNAPSHOT};
use super::super::writer::{self, Queue, Shared, Writer, sync_dir};
use super::{Loaded, LocalStore, open_journal};

/// A locked state directory whose state has been read, with nothing
/// written yet.
pub struct Opened {
    pub(super) dir: std::path::PathBuf,
    pub(super) lock: File,
    pub(super) loaded: Loaded,
}

impl Opened {
    /// Starts the store: records the holder's pid, removes what an earlier
    /// crash left (a half-written snapshot, journals already folded into
    /// the snapshot, a torn tail) and starts the journal writer.
    pub fn start(self, compact_min: u64) -> Result<LocalStore, StoreError> {
        let Opened { dir, lock, loaded } = self;
        let dir = dir.as_path();
        write_pid(dir);
        let _ = fs::remove_file(dir.join(format!("{SNAPSHOT}.tmp")));
        writer::drop_journals(dir, 0, loaded.next_gen)?;
        let path = journal::journal_path(dir, loaded.gen_now);
        let file = open_journal(&path, loaded.size)?;
        sync_dir(dir)?;
        let acked = Acked {
            gen_: loaded.gen_now,
            len: loaded.size,
            seq: loaded.seq,
        };
        let ack = AckFile::open(dir, loaded.ack_n, acked)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                next_seq: loaded.seq + 1,
                failed: None,
                closing: false,
                sleeping: false,
            }),
            wake: Condvar::new(),
            epoch: AtomicU64::new(0),
            durable: AtomicU64::new(loaded.seq),
            failed: AtomicBool::new(false),
            compacting: AtomicBool::new(false),
            compactor: Mutex::new(None),
            snapshot_len: AtomicU64::new(
                fs::metadata(dir.join(SNAPSHOT))
                    .map(|m| m.len())
                    .unwrap_or(0),
            ),
            journal_len: AtomicU64::new(loaded.size),
            compact_min,
            retry_at: AtomicU64::new(0),
            fsync: Default::default(),
            snapshots: AtomicU64::new(0),
            snapshot_at_ms: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let writer = Writer {
            shared: shared.clone(),
            file,
            gen_now: loaded.gen_now,
            size: loaded.size,
            alloc: loaded.size,
            seq: loaded.seq,
            ack,
            dirty: false,
            prealloc_after: 0,
            acked_at: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("gipam-journal".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io(dir, "start journal writer for", e))?;
        Ok(LocalStore {
            shared,
            writer: Mutex::new(Some(handle)),
            _lock: lock,
        })
    }
}

/// Records the lock holder's pid in `pid`.
fn write_pid(dir: &Path) {
    let pid_path = dir.join("pid");
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&pid_path)
        .and_then(|mut f| writeln!(f, "{}", std::process::id()));
    if let Err(e) = written {
        log::debug!("cannot write {}: {e}", pid_path.display());
    }
}
