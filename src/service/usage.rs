//! What status and metrics read of the held pools: sizes and use, copied
//! in one pass under the lock.

use ipnet::IpNet;

use super::Service;
use crate::ipam::{Family, PoolId};

/// One held pool as status and metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub id: PoolId,
    pub auto: bool,
    /// Addresses that can be leased (the subnet without its reserved ones).
    pub size: u128,
    /// Leased addresses, gateway included.
    pub leases: usize,
}

/// The pools and main pools at one moment, copied under the lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub pools: Vec<PoolUsage>,
    pub v4: Vec<IpNet>,
    pub v6: Vec<IpNet>,
}

impl Service {
    /// Every held pool with its size and use, and the main pools: one pass
    /// over the pools under the lock (no lease is copied), so status reads
    /// and scrapes never hold up allocations for long.
    pub fn usage(&self) -> Usage {
        let ipam = self.ipam();
        Usage {
            pools: ipam
                .state()
                .pools()
                .map(|p| PoolUsage {
                    id: p.id.clone(),
                    auto: p.auto,
                    size: crate::ipam::usable_count(&p.id.subnet),
                    leases: p.lease_count(),
                })
                .collect(),
            v4: ipam.mains(Family::V4),
            v6: ipam.mains(Family::V6),
        }
    }
}
