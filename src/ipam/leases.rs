//! The leases of one pool (and the addresses it remembers, F6), in chunks
//! that are shared until written.
//!
//! A snapshot of the state needs a copy of every lease taken under the
//! allocator lock. Keeping the leases in `Arc`'d chunks of 4096 addresses
//! makes that copy one reference count per chunk; the first change to a
//! chunk after a copy clones that chunk alone (`Arc::make_mut`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Lease;

/// Addresses per chunk, as a shift.
const CHUNK_BITS: u32 = 12;

/// Values by address (as an integer), lowest first, in shared chunks.
#[derive(Debug, Clone)]
pub struct ChunkMap<T> {
    chunks: BTreeMap<u128, Arc<BTreeMap<u128, T>>>,
    len: usize,
}

/// Leases by address, lowest first.
pub type Leases = ChunkMap<Lease>;

impl<T> Default for ChunkMap<T> {
    fn default() -> Self {
        ChunkMap {
            chunks: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T: Clone> ChunkMap<T> {
    /// An empty map.
    pub fn new() -> ChunkMap<T> {
        ChunkMap::default()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at `x`.
    pub fn get(&self, x: u128) -> Option<&T> {
        self.chunks.get(&(x >> CHUNK_BITS))?.get(&x)
    }

    /// Whether `x` has a value.
    pub fn contains(&self, x: u128) -> bool {
        self.get(x).is_some()
    }

    /// Sets the value at `x`; returns the one it replaced.
    pub fn insert(&mut self, x: u128, lease: T) -> Option<T> {
        let chunk = self.chunks.entry(x >> CHUNK_BITS).or_default();
        let old = Arc::make_mut(chunk).insert(x, lease);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the value at `x`.
    pub fn remove(&mut self, x: u128) -> Option<T> {
        let key = x >> CHUNK_BITS;
        let chunk = self.chunks.get_mut(&key)?;
        if !chunk.contains_key(&x) {
            return None;
        }
        let old = Arc::make_mut(chunk).remove(&x);
        if chunk.is_empty() {
            self.chunks.remove(&key);
        }
        self.len -= 1;
        old
    }

    /// Every value, lowest address first.
    pub fn iter(&self) -> impl Iterator<Item = (u128, &T)> + '_ {
        self.chunks
            .values()
            .flat_map(|c| c.iter().map(|(x, l)| (*x, l)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_does_not_see_later_changes() {
        let mut a = Leases::new();
        for x in [1u128, 2, 5000, 1 << 100] {
            assert!(a.insert(x, Lease::default()).is_none());
        }
        let copy = a.clone();
        a.remove(2);
        a.insert(7, Lease::default());
        assert_eq!(
            copy.iter().map(|(x, _)| x).collect::<Vec<_>>(),
            vec![1, 2, 5000, 1 << 100]
        );
        assert_eq!(
            a.iter().map(|(x, _)| x).collect::<Vec<_>>(),
            vec![1, 7, 5000, 1 << 100]
        );
        assert_eq!((a.len(), copy.len()), (4, 4));
        assert!(a.remove(2).is_none());
        assert!(a.remove(1 << 100).is_some());
        assert!(!a.contains(1 << 100));
    }
}
