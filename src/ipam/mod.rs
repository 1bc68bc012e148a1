//! The pure core: pools, blocks, address sets and the rules that choose them.
//!
//! Nothing here knows about HTTP, Docker's JSON names, files or the network.
//! Callers hand in typed values and get `Result<_, Error>` back. Every change
//! to the state is first *planned* (`Ipam::plan_*`, read-only) into a
//! [`Change`], then *applied* (`State::apply`); the same `apply` replays the
//! journal at start, so what is on disk and what is in memory cannot drift.

/// Serialises a type as its `Display` string and parses it back with
/// `FromStr` (pool ids and MACs are strings in the state files).
macro_rules! serde_as_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_string;

mod addrset;
mod allocator;
mod blocks;
mod change;
mod error;
mod foreign;
mod hostroute;
mod leases;
mod net;
mod options;
mod pool;
mod pool_choose;
mod poolid;
mod retired;
mod snapshot;
mod state;
mod sticky;
mod sticky_pool;
mod stranded;
pub mod text;
mod tree;
mod tree_plan;
mod treefile;

pub use addrset::AddrSet;
pub use allocator::{AddressRequest, Ipam, PoolRequest, PoolSpec, Settings};
pub use change::{Change, Mac};
pub use error::{Error, QUOTE_MAX, Quoted, quote};
pub use foreign::Foreign;
pub use hostroute::HostRoute;
pub use leases::Leases;
pub use net::{
    Family, first_usable, net_bounds, parse_addr, parse_net, parse_prefix_len, to_addr, to_u128,
    usable_count,
};
pub use options::{DOCKER_SERIAL, KNOWN_OPTIONS, PoolOptions, Reuse};
pub use pool::{COOLING_MAX, Lease, Pool};
pub use poolid::{GLOBAL_SPACE, LOCAL_SPACE, PoolId};
pub use snapshot::{Frozen, PoolMemory, Snapshot, SnapshotMains, SnapshotRemembered};
pub use state::{State, Undo};
pub use sticky::Sticky;
pub use stranded::{Stranded, Strands};
pub use tree::{Identity, Reservation, ReservationSpec, Tree, TreePool, TreePoolSpec, TreeSpec};
pub use tree_plan::{NetworkView, ReservationView, TreePoolView};
pub use treefile::parse_tree_file;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_engine29;
#[cfg(test)]
mod tests_sticky;
#[cfg(test)]
mod tests_tree;
#[cfg(test)]
mod tests_undo;
#[cfg(test)]
mod tests_undo_tree;
