//! Where the state lives between restarts.
//!
//! A [`Store`] takes each planned [`Change`] in order and says when it is
//! durable; the service replies to Docker only after that. The local store
//! ([`local::LocalStore`]) appends to an fsync'd journal with group commit;
//! an etcd store can implement the same trait by making each change one
//! compare-and-swap transaction and failing the future on a conflict.

mod journal;
pub mod local;
mod writer;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::ipam::{Change, Frozen};

pub use local::LocalStore;

/// Resolves once a committed change is durable (or failed to become so).
pub type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Durable storage of changes.
pub trait Store: Send + Sync {
    /// Orders `change` after every change committed before this call (so
    /// callers commit while they still hold the lock they planned under) and
    /// returns a future that resolves when it is durable.
    fn commit(&self, change: Change) -> Commit;

    /// Makes everything committed so far durable and stops the store.
    fn close(&self) -> Result<(), StoreError>;

    /// Whether the store would like a copy of the live state to fold its
    /// log into (checked after commits, so it must be cheap).
    fn wants_snapshot(&self) -> bool {
        false
    }

    /// Takes a copy of the state holding exactly the changes committed so
    /// far ([`crate::ipam::State::freeze`]): call it under the same lock as
    /// [`Store::commit`].
    fn snapshot(&self, _state: Frozen) {}
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
    /// An earlier write failed; the store refuses further changes.
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
                "state store stopped accepting changes after a write error ({why}); fix the disk and restart gipam"
            ),
        }
    }
}

impl std::error::Error for StoreError {}
