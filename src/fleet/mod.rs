//! Fleet mode on etcd (F9): several hosts share one address plan.
//!
//! ```text
//!   host a (gipam)                 etcd (3 members)                host b
//!   local store: its pools,   <->  P/blocks/… one key per block <-> local store
//!   their leases (fsync)           P/shared/NAME, P/addrs/NAME/…
//!   view of the fleet  <-- watch   P/hosts/…, P/alive/…   watch --> view
//! ```
//!
//! - A block is the host's that claimed it (Calico's block affinity): the
//!   claim is one etcd transaction that compares every key that could
//!   overlap the block against the revision this host's view is current
//!   at, so of two overlapping claims at most one succeeds; the loser
//!   catches up and chooses again. Addresses in a host's own blocks never
//!   touch etcd: they are leased and made durable by the local store, and
//!   keep working while etcd is down.
//! - A shared network (`shared=NAME`) is one record in etcd with its subnet,
//!   gateway and holders; each of its addresses is claimed by one
//!   create-if-absent transaction, owned by the host that took it.
//! - Nothing is ever released by a timer. What this host holds in etcd and
//!   no longer holds locally (released, or claimed by a request that then
//!   failed) is deleted by `fleet::sync`'s tidy pass, which compares revisions,
//!   so it never deletes a newer claim.
//!
//! The order that keeps a reply honest: a new block or shared address is
//! claimed in etcd (quorum) before the local change that holds it is
//! written (fsync), and a release is written locally before its claim is
//! deleted. A crash in between leaves a claim with no local holder, which
//! the tidy pass frees; never a local holder without a claim.

mod claims;
mod conn;
mod forget;
pub mod keys;
mod sync;
mod view;

use std::sync::Mutex;

pub use claims::Claim;
pub use conn::{EtcdStats, FleetError, Health};
pub use forget::Forgotten;
pub use sync::{heartbeat_loop, start_sync, tidy_loop};
pub use view::{HostView, Snapshot as FleetSnapshot, follow};

use crate::config::FleetConfig;
use keys::Keys;
use view::View;

/// The owner of a shared network's address that is a gateway named by
/// `--gateway` (the same on every holder; it goes with the network).
pub const GATEWAY_OWNER: &str = "<gateway>";

/// Where a host starts looking for blocks and shared addresses: FNV-1a
/// of its HOST_ID, mixed (splitmix64's finaliser) so that names differing
/// in one character (`web1`, `web2`) land far apart in every pool size;
/// never 0 (0 is "alone": the start of each pool).
pub fn affinity(host_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)).max(1)
}

/// Claims retried after a conflict before the request fails.
pub const CLAIM_RETRIES: usize = 16;

/// One host's membership of a fleet.
pub struct Fleet {
    cfg: FleetConfig,
    keys: Keys,
    conn: conn::Conn,
    view: Mutex<View>,
    /// Wakes the tidy pass (after a release, or a failed local change).
    tidy: tokio::sync::Notify,
    /// Whether the start-up sync has run: until then new blocks are refused.
    synced: std::sync::atomic::AtomicBool,
    /// Why the start-up sync refused to finish, if it did.
    sync_error: Mutex<Option<String>>,
    /// The etcd lease this host's alive key is bound to.
    lease: Mutex<Option<i64>>,
    /// Set by a clean stop: the heartbeat ends.
    leaving: std::sync::atomic::AtomicBool,
    /// Round trips, conflicts, retries and errors (metrics, status).
    pub stats: conn::EtcdStats,
}

impl Fleet {
    /// A fleet member; nothing is contacted until it is used.
    pub fn new(cfg: FleetConfig) -> Fleet {
        let keys = Keys::new(&cfg.prefix);
        let conn = conn::Conn::new(&cfg);
        Fleet {
            keys,
            conn,
            cfg,
            view: Mutex::new(View::default()),
            tidy: tokio::sync::Notify::new(),
            synced: std::sync::atomic::AtomicBool::new(false),
            sync_error: Mutex::new(None),
            lease: Mutex::new(None),
            leaving: std::sync::atomic::AtomicBool::new(false),
            stats: conn::EtcdStats::default(),
        }
    }

    pub fn host_id(&self) -> &str {
        &self.cfg.host_id
    }

    pub fn config(&self) -> &FleetConfig {
        &self.cfg
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// On a clean stop: ends the heartbeat at once (revokes the alive
    /// key's lease), so the host shows as gone and can be forgotten.
    pub async fn leave(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Release);
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(id) = lease {
            let _ = self
                .conn
                .call(&self.stats, |mut c| async move { c.lease_revoke(id).await })
                .await;
        }
    }

    /// Asks the tidy pass to run soon.
    pub fn wake_tidy(&self) {
        self.tidy.notify_one();
    }

    /// Refuses fleet changes until the start-up sync has run.
    pub fn ready(&self) -> Result<(), FleetError> {
        if let Some(why) = self
            .sync_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(FleetError::Refused(why));
        }
        if !self.synced.load(std::sync::atomic::Ordering::Acquire) {
            return Err(self.conn.not_yet());
        }
        Ok(())
    }

    pub fn shared_key(&self, name: &str) -> String {
        self.keys.shared(name)
    }

    pub fn addr_key(&self, name: &str, address: std::net::IpAddr) -> String {
        self.keys.addr(name, address)
    }

    /// The fleet's pool tree and its revision (0: none yet).
    pub fn tree(&self) -> (Option<crate::ipam::TreeSpec>, i64) {
        match &self.view().tree {
            Some((t, r)) => (Some(t.clone()), *r),
            None => (None, 0),
        }
    }

    pub fn tree_key(&self) -> String {
        self.keys.tree()
    }

    /// Whether a lost transaction read back `key` written by `owner`: a
    /// repeat of a transaction that was applied (its answer was lost) finds
    /// its own write, and has in fact won.
    pub fn read_own(&self, read: &[etcd_client::KeyValue], key: &str, owner: &str) -> bool {
        read.iter().any(|kv| {
            kv.key() == key.as_bytes()
                && serde_json::from_slice::<serde_json::Value>(kv.value()).is_ok_and(|v| {
                    v["host"] == owner && v.get("shared").is_none_or(|s| s.is_null())
                })
        })
    }

    pub fn block_key(&self, net: &ipnet::IpNet) -> String {
        self.keys.block(net)
    }

    /// Who holds `address` of shared network `name`, as the view has it.
    pub fn addr_owner(&self, name: &str, address: std::net::IpAddr) -> Option<String> {
        self.view()
            .addrs
            .get(&(name.to_string(), address))
            .map(|(c, _)| c.host.clone())
    }

    /// The shared network NAME as the view has it, with its revision.
    pub fn shared(&self, name: &str) -> Option<(keys::SharedNet, i64)> {
        self.view().shared.get(name).cloned()
    }

    /// The fleet as this host sees it (`gipam fleet`, `gipam status`).
    pub fn snapshot(&self) -> FleetSnapshot {
        let health = self.conn.health();
        self.view().snapshot(&self.cfg.host_id, health)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_named_alike_start_far_apart() {
        let slots = 1u64 << 20;
        let at: Vec<u64> = ["b0", "b1", "b2", "web1", "web2"]
            .iter()
            .map(|h| super::affinity(h) % slots)
            .collect();
        for (i, a) in at.iter().enumerate() {
            for b in &at[i + 1..] {
                assert!(a.abs_diff(*b) > 1000, "{at:?}");
            }
        }
    }
}
