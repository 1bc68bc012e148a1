//! What the rest of the fleet holds (F9), as the core sees it: blocks that
//! other hosts (or shared networks) have claimed in etcd, blocks this host
//! is claiming right now, and, for each shared network this host holds, the
//! addresses other hosts lease in it.
//!
//! None of it is persisted here: the fleet module rebuilds it from etcd and
//! keeps it current from a watch. The core only reads it when it chooses a
//! block or an address, so a choice never lands on something the fleet
//! holds as far as this host knows; etcd's compare-and-swap catches what
//! it does not know yet.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use super::{AddrSet, Family, net_bounds};

/// Blocks and addresses held elsewhere in the fleet.
#[derive(Debug, Clone, Default)]
pub struct Foreign {
    /// Claimed blocks by (family, first address): (last address, net,
    /// holder). Claims in etcd never overlap each other.
    blocks: BTreeMap<(Family, u128), (u128, IpNet, Box<str>)>,
    /// Blocks this host's requests are claiming now (a few at most): they
    /// may overlap a block just seen from another host until etcd decides.
    pending: Vec<IpNet>,
    /// Addresses claimed in etcd per shared subnet (by any host).
    addrs: HashMap<IpNet, AddrSet>,
    /// Addresses of shared pools this host's requests are claiming now.
    pending_addrs: Vec<(IpNet, u128)>,
    /// The fleet revision all of the above is current at.
    revision: i64,
    /// Where this host starts looking in a main pool or a shared pool
    /// (a hash of its HOST_ID; 0 outside fleet mode): hosts start apart,
    /// so they rarely race for the same block or address, and each host's
    /// blocks sit together (Calico's block affinity).
    affinity: u64,
    /// Where the next block search of a size starts: just past the last
    /// block this host claimed of it (fleet mode; not kept).
    hints: HashMap<(Family, u8), u128>,
}

impl Foreign {
    /// Records a claimed block and who holds it.
    pub fn insert_block(&mut self, net: IpNet, holder: &str) {
        let (lo, hi) = net_bounds(&net);
        self.blocks
            .insert((Family::of_net(&net), lo), (hi, net, holder.into()));
    }

    /// Forgets a claimed block (released, or forgotten by the fleet).
    pub fn remove_block(&mut self, net: &IpNet) {
        let key = (Family::of_net(net), net_bounds(net).0);
        if self.blocks.get(&key).is_some_and(|(_, n, _)| n == net) {
            self.blocks.remove(&key);
        }
    }

    /// Forgets every block and address (before a full reload).
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.addrs.clear();
    }

    pub fn affinity(&self) -> u64 {
        self.affinity
    }

    pub fn set_affinity(&mut self, affinity: u64) {
        self.affinity = affinity;
    }

    /// Where a block search of `/prefix` starts, after a claim.
    pub fn block_hint(&self, family: Family, prefix: u8) -> Option<u128> {
        self.hints.get(&(family, prefix)).copied()
    }

    /// This host claimed `net`: the next search of its size starts after it.
    pub fn claimed(&mut self, net: &IpNet) {
        if self.affinity == 0 {
            return;
        }
        let end = net_bounds(net).1;
        if let Some(next) = end.checked_add(1) {
            self.hints
                .insert((Family::of_net(net), net.prefix_len()), next);
        }
    }

    /// The fleet revision the blocks and addresses are current at: a
    /// claim planned on them compares against it.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn set_revision(&mut self, revision: i64) {
        self.revision = revision;
    }

    /// The blocks this host is claiming now.
    pub fn pending(&self) -> &[IpNet] {
        &self.pending
    }

    /// The shared addresses this host is claiming now.
    pub fn pending_addrs(&self) -> &[(IpNet, u128)] {
        &self.pending_addrs
    }

    /// Whether `net` is being claimed by this host now.
    pub fn is_pending(&self, net: &IpNet) -> bool {
        self.pending.contains(net)
    }

    /// Marks an address of a shared pool as being claimed by this host.
    pub fn add_pending_addr(&mut self, subnet: IpNet, x: u128) {
        self.pending_addrs.push((subnet, x));
    }

    /// Ends the claim of an address.
    pub fn remove_pending_addr(&mut self, subnet: &IpNet, x: u128) {
        if let Some(i) = self
            .pending_addrs
            .iter()
            .position(|(s, a)| s == subnet && *a == x)
        {
            self.pending_addrs.swap_remove(i);
        }
    }

    /// Whether an address of a shared pool is being claimed by this host.
    pub fn is_pending_addr(&self, subnet: &IpNet, x: u128) -> bool {
        self.pending_addrs
            .iter()
            .any(|(s, a)| s == subnet && *a == x)
    }

    /// The addresses a shared pool's choice skips: claimed anywhere in
    /// the fleet, or being claimed here.
    pub(super) fn taken_addrs(&self, subnet: &IpNet) -> Option<AddrSet> {
        let claimed = self.addrs.get(subnet);
        let pending = self.pending_addrs.iter().filter(|(s, _)| s == subnet);
        if claimed.is_none() && self.pending_addrs.iter().all(|(s, _)| s != subnet) {
            return None;
        }
        let mut set = claimed.cloned().unwrap_or_default();
        for (_, x) in pending {
            set.insert(*x);
        }
        Some(set)
    }

    /// Marks a block as being claimed by this host.
    pub fn add_pending(&mut self, net: IpNet) {
        self.pending.push(net);
    }

    /// Ends a claim of this host (it succeeded or failed).
    pub fn remove_pending(&mut self, net: &IpNet) {
        if let Some(i) = self.pending.iter().position(|n| n == net) {
            self.pending.swap_remove(i);
        }
    }

    /// The claimed or pending block overlapping `net`: its net, holder
    /// (`None` for this host's own pending claim) and last address.
    pub fn overlapping(&self, net: &IpNet) -> Option<(IpNet, Option<&str>, u128)> {
        let f = Family::of_net(net);
        let (lo, hi) = net_bounds(net);
        let pending = self
            .pending
            .iter()
            .find(|p| p.contains(net) || net.contains(*p));
        if let Some(p) = pending {
            return Some((*p, None, net_bounds(p).1));
        }
        self.blocks
            .range((f, 0)..=(f, hi))
            .next_back()
            .filter(|(_, (end, _, _))| *end >= lo)
            .map(|(_, (end, n, holder))| (*n, Some(&**holder), *end))
    }

    /// Every claimed block with its holder, lowest first.
    pub fn blocks(&self) -> impl Iterator<Item = (&IpNet, &str)> + '_ {
        self.blocks.values().map(|(_, n, h)| (n, &**h))
    }

    /// The addresses held elsewhere in the shared pool `subnet`.
    pub fn addrs(&self, subnet: &IpNet) -> Option<&AddrSet> {
        self.addrs.get(subnet)
    }

    /// Marks an address of a shared pool as held elsewhere (or being
    /// claimed by this host).
    pub fn insert_addr(&mut self, subnet: IpNet, x: u128) {
        self.addrs.entry(subnet).or_default().insert(x);
    }

    /// Forgets every address of a shared pool (the network was deleted).
    pub fn clear_addrs(&mut self, subnet: &IpNet) {
        self.addrs.remove(subnet);
    }

    /// Frees an address of a shared pool.
    pub fn remove_addr(&mut self, subnet: &IpNet, x: u128) {
        if let Some(set) = self.addrs.get_mut(subnet) {
            set.remove(x);
            if set.is_empty() {
                self.addrs.remove(subnet);
            }
        }
    }
}
