//! A set of addresses kept as disjoint, merged runs.
//!
//! Addresses of both families are handled as `u128` (an IPv4 address is its
//! `u32` value). A run of consecutive members costs one map entry, so a pool
//! filled from the bottom stays a handful of entries, and "the lowest address
//! not in the set at or above `x`" is one `O(log n)` lookup — which is what
//! lets a /64 be served without ever enumerating it (F4).

use std::collections::BTreeMap;

/// Disjoint, non-adjacent inclusive runs `start -> end`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrSet {
    runs: BTreeMap<u128, u128>,
    len: u128,
}

impl AddrSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many addresses the set holds.
    pub fn len(&self) -> u128 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The run that contains `x`, if any.
    fn run_of(&self, x: u128) -> Option<(u128, u128)> {
        self.runs
            .range(..=x)
            .next_back()
            .filter(|(_, end)| **end >= x)
            .map(|(s, e)| (*s, *e))
    }

    /// Whether `x` is a member.
    pub fn contains(&self, x: u128) -> bool {
        self.run_of(x).is_some()
    }

    /// Adds `x`; returns false when it was already there.
    pub fn insert(&mut self, x: u128) -> bool {
        if self.contains(x) {
            return false;
        }
        let mut start = x;
        let mut end = x;
        // Merge with the run ending just below x.
        if let Some(below) = x.checked_sub(1)
            && let Some((s, _)) = self.run_of(below)
        {
            self.runs.remove(&s);
            start = s;
        }
        // Merge with the run starting just above x.
        if let Some(above) = x.checked_add(1)
            && let Some(e) = self.runs.remove(&above)
        {
            end = e;
        }
        self.runs.insert(start, end);
        self.len += 1;
        true
    }

    /// Removes `x`; returns false when it was not there.
    pub fn remove(&mut self, x: u128) -> bool {
        let Some((s, e)) = self.run_of(x) else {
            return false;
        };
        self.runs.remove(&s);
        if s < x {
            self.runs.insert(s, x - 1);
        }
        if x < e {
            self.runs.insert(x + 1, e);
        }
        self.len -= 1;
        true
    }

    /// The lowest address in `lo..=hi` that is not a member.
    pub fn first_free(&self, lo: u128, hi: u128) -> Option<u128> {
        if lo > hi {
            return None;
        }
        match self.run_of(lo) {
            None => Some(lo),
            // Runs are merged, so the address after a run is free.
            Some((_, end)) => end.checked_add(1).filter(|x| *x <= hi),
        }
    }

    /// Every member in ascending order (used for snapshots and tests).
    pub fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.runs.iter().flat_map(|(s, e)| *s..=*e)
    }

    /// Number of runs: what the set costs in memory.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut s = AddrSet::new();
        assert!(s.insert(5));
        assert!(s.insert(7));
        assert_eq!(s.runs(), 2);
        assert!(s.insert(6));
        assert_eq!(s.runs(), 1);
        assert!(!s.insert(6));
        assert_eq!(s.len(), 3);
        assert!(s.remove(6));
        assert_eq!(s.runs(), 2);
        assert!(!s.remove(6));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![5, 7]);
    }

    #[test]
    fn first_free_skips_runs() {
        let mut s = AddrSet::new();
        for x in 10..20 {
            s.insert(x);
        }
        assert_eq!(s.first_free(0, 100), Some(0));
        assert_eq!(s.first_free(10, 100), Some(20));
        assert_eq!(s.first_free(15, 19), None);
        assert_eq!(s.first_free(20, 19), None);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut s = AddrSet::new();
        assert!(s.insert(u128::MAX));
        assert!(s.insert(0));
        assert_eq!(s.first_free(u128::MAX, u128::MAX), None);
        assert_eq!(s.first_free(0, u128::MAX), Some(1));
        assert!(s.remove(u128::MAX));
        assert_eq!(s.len(), 1);
    }
}
