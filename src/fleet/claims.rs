//! The fleet's transactions. Each compares before it writes, so two hosts
//! racing for one block or address cannot both win: the loser's compare
//! fails, it learns the revision, catches up and plans again.

use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse};
use ipnet::IpNet;

use super::keys::{AddrClaim, BlockClaim, SharedNet};
use super::{Fleet, FleetError};
use crate::ipam::{Family, net_bounds};

/// How a claim ended.
#[derive(Debug, Clone)]
pub enum Claim {
    Won,
    /// Something it compared against had changed: someone else was first.
    /// The keys the transaction read back when it lost (what won).
    Lost(Vec<etcd_client::KeyValue>),
}

/// Supernets longer than this are covered by one range compare instead
/// of a key each (etcd allows 128 operations per transaction).
const SUPERNET_KEYS: u8 = 64;

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // These types serialise infallibly (strings, numbers, addresses).
    serde_json::to_vec(v).unwrap_or_default()
}

impl Fleet {
    /// Compares that hold only while no block overlapping `net` has been
    /// claimed since `revision` (when this host's view was current).
    fn block_compares(&self, net: &IpNet, revision: i64) -> Vec<Compare> {
        let (lo, hi) = self.keys.blocks_starting_in(net);
        let mut out = vec![Compare::mod_revision(lo, CompareOp::Less, revision + 1).with_range(hi)];
        let len = net.prefix_len();
        if len > SUPERNET_KEYS {
            let family = Family::of_net(net);
            let (a, b) = self.keys.blocks_up_to(family, net_bounds(net).0);
            out.push(Compare::mod_revision(a, CompareOp::Less, revision + 1).with_range(b));
            return out;
        }
        for l in 0..len {
            if let Ok(sup) = IpNet::new(net.addr(), l) {
                out.push(Compare::version(
                    self.keys.block(&sup.trunc()),
                    CompareOp::Equal,
                    0,
                ));
            }
        }
        out
    }

    /// Reads back the blocks starting inside `net` (when a claim loses,
    /// usually the one that won).
    fn read_blocks_in(&self, net: &IpNet) -> TxnOp {
        let (lo, hi) = self.keys.blocks_starting_in(net);
        TxnOp::get(lo, Some(GetOptions::new().with_range(hi)))
    }

    async fn txn(&self, txn: Txn) -> Result<Claim, FleetError> {
        let resp = self
            .conn
            .call_again(&self.stats, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            return Ok(Claim::Won);
        }
        self.stats
            .conflicts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut read = Vec::new();
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                read.extend(g.kvs().iter().cloned());
            }
        }
        Ok(Claim::Lost(read))
    }

    /// Claims `net` for this host.
    pub(crate) async fn claim_block(&self, net: IpNet, revision: i64) -> Result<Claim, FleetError> {
        let claim = BlockClaim {
            host: self.cfg.host_id.clone(),
            subnet: net,
            shared: None,
        };
        let txn = Txn::new()
            .when(self.block_compares(&net, revision))
            .and_then([TxnOp::put(self.keys.block(&net), json(&claim), None)])
            .or_else([self.read_blocks_in(&net)]);
        self.txn(txn).await
    }

    /// Creates the shared network `name` on block `net`, held by this host.
    pub(crate) async fn create_shared(
        &self,
        name: &str,
        net: IpNet,
        gateway: Option<IpAddr>,
        revision: i64,
    ) -> Result<Claim, FleetError> {
        let claim = BlockClaim {
            host: self.cfg.host_id.clone(),
            subnet: net,
            shared: Some(name.to_string()),
        };
        let shared = SharedNet {
            subnet: net,
            gateway,
            holders: vec![self.cfg.host_id.clone()],
        };
        let mut when = self.block_compares(&net, revision);
        when.push(Compare::version(
            self.keys.shared(name),
            CompareOp::Equal,
            0,
        ));
        let txn = Txn::new()
            .when(when)
            .and_then([
                TxnOp::put(self.keys.block(&net), json(&claim), None),
                TxnOp::put(self.keys.shared(name), json(&shared), None),
            ])
            .or_else([
                self.read_blocks_in(&net),
                TxnOp::get(self.keys.shared(name), None),
            ]);
        self.txn(txn).await
    }

    /// Adds this host to the holders of shared network `name`, as it was
    /// at `revision`.
    pub(crate) async fn join_shared(
        &self,
        name: &str,
        mut shared: SharedNet,
        revision: i64,
    ) -> Result<Claim, FleetError> {
        // Even when the record lists this host already (the view can lag
        // behind a leave), the write compares the revision seen: of a
        // join and a leave racing, one loses.
        if !shared.holders.contains(&self.cfg.host_id) {
            shared.holders.push(self.cfg.host_id.clone());
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                self.keys.shared(name),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(self.keys.shared(name), json(&shared), None)])
            .or_else([TxnOp::get(self.keys.shared(name), None)]);
        self.txn(txn).await
    }

    /// Takes this host off the holders of `name`; the last holder deletes
    /// the network, its block and every address still claimed in it.
    pub(super) async fn leave_shared(
        &self,
        name: &str,
        mut shared: SharedNet,
        revision: i64,
    ) -> Result<Claim, FleetError> {
        shared.holders.retain(|h| h != &self.cfg.host_id);
        let key = self.keys.shared(name);
        let when = [Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            revision,
        )];
        let ops = if shared.holders.is_empty() {
            vec![
                TxnOp::delete(key, None),
                TxnOp::delete(self.keys.block(&shared.subnet), None),
                TxnOp::delete(
                    format!("{}/addrs/{name}/", self.cfg.prefix),
                    Some(DeleteOptions::new().with_prefix()),
                ),
            ]
        } else {
            vec![TxnOp::put(key, json(&shared), None)]
        };
        self.txn(Txn::new().when(when).and_then(ops)).await
    }

    /// Rewrites shared network `name` as it was at `revision`.
    pub(super) async fn put_shared(
        &self,
        name: &str,
        shared: &SharedNet,
        revision: i64,
    ) -> Result<Claim, FleetError> {
        let key = self.keys.shared(name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(key, json(shared), None)]);
        self.txn(txn).await
    }

    /// Claims `address` of shared network `name` for `owner`: this host,
    /// or [`super::GATEWAY_OWNER`] for a gateway every holder shares.
    pub(crate) async fn claim_addr(
        &self,
        name: &str,
        address: IpAddr,
        owner: &str,
    ) -> Result<Claim, FleetError> {
        let claim = AddrClaim {
            host: owner.to_string(),
            address,
        };
        let key = self.keys.addr(name, address);
        let txn = Txn::new()
            .when([
                Compare::version(key.clone(), CompareOp::Equal, 0),
                Compare::version(self.keys.shared(name), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(key.clone(), json(&claim), None)])
            .or_else([
                TxnOp::get(key, None),
                TxnOp::get(self.keys.shared(name), None),
            ]);
        self.txn(txn).await
    }

    /// Deletes `key` if it is still the version seen at `revision`.
    pub(super) async fn delete_if(&self, key: String, revision: i64) -> Result<Claim, FleetError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::delete(key, None)]);
        self.txn(txn).await
    }

    /// Replaces the fleet's pool tree, as it was at `revision` (0: none).
    pub(crate) async fn put_tree(
        &self,
        tree: &crate::ipam::TreeSpec,
        revision: i64,
    ) -> Result<Claim, FleetError> {
        let key = self.keys.tree();
        let when = if revision == 0 {
            Compare::version(key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.clone(), CompareOp::Equal, revision)
        };
        let txn = Txn::new()
            .when([when])
            .and_then([TxnOp::put(key, json(tree), None)]);
        self.txn(txn).await
    }

    /// Records the main pools if the fleet has none yet.
    pub(super) async fn put_mains(&self, mains: &super::keys::Mains) -> Result<Claim, FleetError> {
        let key = self.keys.mains();
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, json(mains), None)]);
        self.txn(txn).await
    }
}
