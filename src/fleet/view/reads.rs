//! The view's reads outside the watch: the whole fleet (at start, after a
//! compacted or lost watch), every block (after a lost claim), and single
//! keys a lost transaction read back. Each applies only what is newer
//! than the view, so it never takes the view back.

use std::collections::BTreeMap;

use etcd_client::{GetOptions, KeyValue};
use ipnet::IpNet;

use super::{Fleet, Key, View, apply_deltas};
use crate::fleet::FleetError;
use crate::fleet::keys::BlockClaim;
use crate::service::Service;

impl Fleet {
    /// Loads every key of the fleet; returns the revision it is current at.
    pub(crate) async fn reload(&self, svc: &Service) -> Result<i64, FleetError> {
        let root = self.keys.root();
        let resp = self
            .conn
            .call_again(&self.stats, |mut c| {
                let root = root.clone();
                async move { c.get(root, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut view = View {
            revision,
            blocks_revision: revision,
            ..View::default()
        };
        let mut deltas = Vec::new();
        // Shared records first: address keys need their subnets.
        let kvs: Vec<&KeyValue> = resp.kvs().iter().collect();
        let (shared, rest): (Vec<&KeyValue>, Vec<&KeyValue>) = kvs
            .into_iter()
            .partition(|kv| matches!(self.keys.parse(kv.key()), Some(Key::Shared(_))));
        for kv in shared.into_iter().chain(rest) {
            if let Some(key) = self.keys.parse(kv.key()) {
                view.apply(key, Some(kv.value()), kv.mod_revision(), &mut deltas);
            }
        }
        let mut current = self.view();
        // Another reload (or the watch) got further meanwhile: this older
        // read must not take the view back.
        if revision < current.revision {
            return Ok(current.revision);
        }
        svc.with_foreign(|f| {
            f.clear();
            apply_deltas(f, &deltas, revision);
        });
        *current = view;
        Ok(revision)
    }

    /// Reads every block again (after a lost claim: the block that won is
    /// known before the next plan, whatever the watch has sent).
    pub(crate) async fn refresh_blocks(&self, svc: &Service) -> Result<(), FleetError> {
        let (lo, hi) = self.keys.all_blocks();
        let resp = self
            .conn
            .call_again(&self.stats, |mut c| {
                let (lo, hi) = (lo.clone(), hi.clone());
                async move { c.get(lo, Some(GetOptions::new().with_range(hi))).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut view = self.view();
        if revision <= view.blocks_revision {
            return Ok(());
        }
        let mut blocks = BTreeMap::new();
        for kv in resp.kvs() {
            if let (Some(Key::Block(net)), Ok(claim)) = (
                self.keys.parse(kv.key()),
                serde_json::from_slice::<BlockClaim>(kv.value()),
            ) {
                blocks.insert(net, (claim, kv.mod_revision()));
            }
        }
        svc.with_foreign(|f| {
            let old: Vec<IpNet> = f.blocks().map(|(n, _)| *n).collect();
            for n in old {
                f.remove_block(&n);
            }
            for (net, (claim, _)) in &blocks {
                f.insert_block(*net, &claim.holder());
            }
            f.set_revision(revision);
        });
        view.blocks = blocks;
        view.blocks_revision = revision;
        Ok(())
    }

    /// Applies keys read outside the watch (after a lost claim) that the
    /// watch has not delivered yet: it will deliver them again, in order.
    pub(crate) async fn learn(&self, svc: &Service, keys: Vec<String>) -> Result<(), FleetError> {
        for key in keys {
            let resp = self
                .conn
                .call_again(&self.stats, |mut c| {
                    let key = key.clone();
                    async move { c.get(key, None).await }
                })
                .await?;
            self.absorb(svc, resp.kvs());
        }
        Ok(())
    }

    /// Applies keys a lost transaction read back, where they are newer
    /// than the view; returns how many were.
    pub(crate) fn absorb(&self, svc: &Service, kvs: &[KeyValue]) -> usize {
        let mut view = self.view();
        let mut deltas = Vec::new();
        let mut newer = 0;
        for kv in kvs {
            let Some(k) = self.keys.parse(kv.key()) else {
                continue;
            };
            let floor = match k {
                Key::Block(_) => view.blocks_revision,
                _ => view.revision,
            };
            if kv.mod_revision() > floor {
                view.apply(k, Some(kv.value()), kv.mod_revision(), &mut deltas);
                newer += 1;
            }
        }
        svc.with_foreign(|f| {
            let rev = f.revision();
            apply_deltas(f, &deltas, rev);
        });
        newer
    }
}
