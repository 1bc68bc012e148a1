//! The block search: the lowest free block of a size in some regions (the
//! main pools, or one pool of the tree) that overlaps no held pool, none of
//! the ranges set apart (the tree's pools for the main pools; a tree pool's
//! excluded ranges and children for its own blocks) and collides with no
//! host route. Every skip jumps past what it skips, so a /64 is never
//! enumerated.

use ipnet::IpNet;

use super::hostroute::collision_end;
use super::{Error, Family, HostRoute, Ipam, net_bounds, to_addr};

impl Ipam {
    /// The lowest free block of `/prefix` in the main pools of `family`
    /// that collides with none of `routes`. Held blocks are skipped, so the
    /// daemon's "this overlaps a host route, give me another" loop always
    /// makes progress (moby/libnetwork#1386). Both skips jump past what they
    /// skip, so a /64 is never enumerated.
    pub fn find_block(
        &self,
        family: Family,
        prefix: u8,
        routes: &[HostRoute],
    ) -> Result<IpNet, Error> {
        let mains = self.mains(family);
        let avoid = self.state().tree().roots(family);
        if let Some(net) = self.find_block_in(family, &mains, prefix, routes, &avoid) {
            return Ok(net);
        }
        let routes = routes.iter().filter(|r| Family::of_net(&r.net) == family);
        Err(Error::NoFreeBlock {
            prefix,
            family,
            mains,
            routes: routes.count(),
        })
    }

    /// The lowest free block of `/prefix` in `regions` that overlaps no
    /// held pool and none of `avoid`, and collides with none of `routes`.
    pub(super) fn find_block_in(
        &self,
        family: Family,
        regions: &[IpNet],
        prefix: u8,
        routes: &[HostRoute],
        avoid: &[IpNet],
    ) -> Option<IpNet> {
        // Only routes inside or over a region can collide with a block
        // (a full BGP table has ~1M routes; the operator's pools hold few).
        let near: Vec<HostRoute> = routes
            .iter()
            .filter(|r| {
                let n = &r.net;
                regions.iter().any(|m| m.contains(n) || n.contains(m))
            })
            .copied()
            .collect();
        let bits = family.bits();
        if prefix == 0 || prefix > bits {
            return None;
        }
        let size = 1u128 << (bits - prefix);
        for main in regions.iter().filter(|m| m.prefix_len() <= prefix) {
            let (mlo, mhi) = net_bounds(main);
            // In a fleet each host starts at its own slot of the region and
            // wraps around (see `Foreign::affinity`); alone, at its start.
            let slots = ((mhi - mlo) / size).saturating_add(1);
            let slot = mlo + (u128::from(self.foreign().affinity()) % slots) * size;
            // In a fleet, past the host's last block (its blocks sit
            // together, and are not walked one by one at every request).
            let first = match self.foreign().block_hint(family, prefix) {
                Some(h) if h >= mlo && h <= mhi && h % size == mlo % size => h,
                _ => slot,
            };
            let scans = [(first, mhi), (mlo, first.saturating_sub(1))];
            for (from, to) in scans.into_iter().filter(|(f, t)| f <= t) {
                if let Some(net) = self.scan_blocks(family, from, to, size, prefix, &near, avoid) {
                    return Some(net);
                }
            }
        }
        None
    }

    /// The lowest free block of `size` starting in [from, to] and ending
    /// by the end of its region.
    #[allow(clippy::too_many_arguments)]
    fn scan_blocks(
        &self,
        family: Family,
        from: u128,
        to: u128,
        size: u128,
        prefix: u8,
        near: &[HostRoute],
        avoid: &[IpNet],
    ) -> Option<IpNet> {
        let mut cand = from;
        while cand <= to && cand.checked_add(size - 1).is_some() {
            let Ok(net) = IpNet::new(to_addr(family, cand), prefix) else {
                break;
            };
            let set_apart = avoid
                .iter()
                .filter(|a| a.contains(&net) || net.contains(*a))
                .map(|a| net_bounds(a).1.max(net_bounds(&net).1))
                .max();
            let end = match self.taken_end(&net) {
                Some(held_end) => held_end,
                None => match set_apart.or_else(|| collision_end(near, &net)) {
                    Some(end) => end,
                    None => return Some(net),
                },
            };
            match (end / size)
                .checked_add(1)
                .and_then(|n| n.checked_mul(size))
            {
                Some(next) if next > cand => cand = next,
                _ => break,
            }
        }
        None
    }
}
