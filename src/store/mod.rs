//! Where the state lives between restarts.
//!
//! A [`Store`] takes each planned [`Change`] in order and says when it is
//! durable; the service replies to Docker only after that. The contract is
//! "accept or refuse this change": the service applies a change to the live
//! state tentatively, under its lock, and takes it back (in reverse order,
//! with every later change of the same [`Ticket::epoch`]) when the store
//! refuses it — so a failed change leaves nothing behind, and the next
//! request finds the state as the disk (or etcd) has it.
//!
//! The local store ([`local::LocalStore`]) appends to an fsync'd journal with
//! group commit; an etcd store implements the same trait by making each
//! change one compare-and-swap transaction and failing it on a conflict.

mod ack;
mod journal;
pub mod local;
mod writer;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::ipam::{Change, Frozen};
use crate::metrics::Histogram;

pub use local::{LocalStore, Opened};

/// Appends one change's journal line (`<crc> <seq> <json>\n`): for the
/// benchmark, which weighs it against plain serde.
pub fn encode_journal_line(buf: &mut Vec<u8>, seq: u64, change: &Change) {
    journal::encode(buf, seq, change);
}

/// Resolves once a committed change is durable (or failed to become so).
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Where one committed change stands in the store's order. Sequence numbers
/// are consecutive within an epoch; an epoch ends when a write fails (every
/// change of it not yet durable fails with it) and the next begins when the
/// service has taken those changes back ([`Store::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub epoch: u64,
    pub seq: u64,
}

/// Durable storage of changes. Every method is called under the service's
/// lock, so the store sees changes in the order they were applied.
pub trait Store: Send + Sync {
    /// Orders `change` after every change committed before this call and
    /// returns its ticket and a future that resolves when it is durable. A
    /// store that has failed refuses it at once (the future fails).
    fn commit(&self, change: Change) -> (Ticket, Durable);

    /// Resolves when every change up to `upto` is durable; fails when one
    /// of them failed.
    fn barrier(&self, upto: Ticket) -> Durable;

    /// Whether the change with this ticket is durable.
    fn is_durable(&self, ticket: Ticket) -> bool;

    /// The epoch whose writes failed, while the store refuses changes. Its
    /// changes up to [`Store::durable_seq`] are durable; the rest failed.
    fn failed(&self) -> Option<u64>;

    /// The highest durable sequence number of the current epoch.
    fn durable_seq(&self) -> u64;

    /// Accepts changes again after the failure of `epoch`; the caller has
    /// taken back every change of it that was not durable.
    fn resume(&self, epoch: u64);

    /// Makes everything committed so far durable and stops the store.
    fn close(&self) -> Result<(), StoreError>;

    /// Whether the store would like a copy of the live state to fold its
    /// log into (checked after commits, so it must be cheap).
    fn wants_snapshot(&self) -> bool {
        false
    }

    /// Takes a copy of the state holding exactly the changes committed so
    /// far ([`crate::ipam::State::freeze`]). The store must drop it if any
    /// of those changes fails.
    fn snapshot(&self, _state: Frozen) {}

    /// What the store tells about itself (`gipam status`, metrics); read
    /// from atomics, so it is cheap and takes no lock.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    /// The latency of its flushes to disk, for stores that flush.
    fn fsync_latency(&self) -> Option<&Histogram> {
        None
    }
}

/// What a store tells about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes of change records in the current journal.
    pub journal_bytes: u64,
    /// Size of the newest snapshot.
    pub snapshot_bytes: u64,
    /// Snapshots written since gipam started.
    pub snapshots: u64,
    /// When the newest snapshot was written by this gipam.
    pub last_snapshot: Option<SystemTime>,
    /// How long the last flush to disk took.
    pub last_fsync: Option<Duration>,
    /// Failed journal writes and snapshots since gipam started.
    pub errors: u64,
}

/// Why the store could not load or keep the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A file operation failed.
    Io {
        path: PathBuf,
        op: &'static str,
        reason: String,
    },
    /// A file is damaged somewhere other than a torn tail.
    Corrupt {
        path: PathBuf,
        line: usize,
        offset: u64,
        reason: String,
    },
    /// Another gipam holds the state directory.
    Locked { path: PathBuf, holder: String },
    /// The change could not be made durable (a write failed, or the store
    /// is shutting down); nothing of it is kept.
    Failed(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, e: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            op,
            reason: e.to_string(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, op, reason } => {
                write!(f, "cannot {op} {}: {reason}", path.display())
            }
            StoreError::Corrupt {
                path,
                line,
                offset,
                reason,
            } => write!(
                f,
                "state file {} is corrupt at line {line} (byte {offset}): {reason}; restore it from a backup or move it aside to start empty",
                path.display()
            ),
            StoreError::Locked { path, holder } => write!(
                f,
                "state directory {} is in use by another gipam ({holder}); stop it or use another STATE_DIR",
                path.display()
            ),
            StoreError::Failed(why) => write!(
                f,
                "the change was not made: the state store could not write it ({why}); gipam tries again with the next request once the cause is fixed"
            ),
        }
    }
}

impl std::error::Error for StoreError {}
