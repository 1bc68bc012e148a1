//! This host's view of the fleet: every key under ETCD_PREFIX, loaded
//! whole and then followed by a watch from the revision it was loaded at.
//! A compacted or lost watch reloads everything. Each change is applied to
//! the view and, under the service's lock, to the core's [`Foreign`] with
//! the revision it is current at, so a claim planned on it compares
//! against exactly what the plan saw.
//!
//! That revision only ever comes from what was actually applied: a read's
//! own revision, or the revision of the last event applied (events arrive
//! in order). Never from a watch response's header or a progress report:
//! etcd 3.4 before 3.4.25 can report progress past events it has not sent
//! yet (etcd-io/etcd#15220), and a claim compared against such a revision
//! could overlap a block this host never saw. Blocks can be re-read on
//! their own after a lost claim, so they carry a revision of their own,
//! never behind the view's. Lock order: the view, then the service.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use ipnet::IpNet;
use serde::Serialize;

use super::Fleet;
use super::conn::Health;
use super::keys::{AddrClaim, BlockClaim, HostRecord, Key, Mains, SharedNet};
use crate::ipam::{Foreign, TreeSpec, to_u128};
use crate::service::Service;

mod reads;

/// The fleet's keys, decoded, each with its mod revision.
#[derive(Debug, Default)]
pub(super) struct View {
    /// Every event up to here is applied.
    pub revision: i64,
    /// Every block key is as etcd had it at this revision (>= revision).
    pub blocks_revision: i64,
    pub blocks: BTreeMap<IpNet, (BlockClaim, i64)>,
    pub shared: HashMap<String, (SharedNet, i64)>,
    pub addrs: HashMap<(String, IpAddr), (AddrClaim, i64)>,
    pub hosts: BTreeMap<String, HostRecord>,
    pub alive: HashSet<String>,
    pub mains: Option<(Mains, i64)>,
    pub tree: Option<(TreeSpec, i64)>,
}

/// One host as `gipam fleet` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    pub host: String,
    /// Unix seconds of its last heartbeat.
    pub seen: Option<u64>,
    pub alive: bool,
    pub blocks: Vec<IpNet>,
    pub shared: Vec<String>,
    /// Addresses it holds in shared networks.
    pub shared_addresses: usize,
}

/// The fleet at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub host: String,
    pub revision: i64,
    pub etcd_ok: bool,
    pub etcd_error: Option<String>,
    pub hosts: Vec<HostView>,
    pub shared: BTreeMap<String, SharedNet>,
    pub mains: Option<Mains>,
}

/// What one key's change does to [`Foreign`].
enum Delta {
    Block(IpNet, Option<String>),
    Addr(IpNet, IpAddr, bool),
    ClearAddrs(IpNet),
}

impl View {
    /// Applies a watched event at `rev`, unless a read already covers it.
    /// `floors` are the view's revisions before the batch: the events of
    /// one revision (a transaction) come in one batch, and each of them is
    /// compared against what the view had before it.
    fn event(
        &mut self,
        floors: (i64, i64),
        key: Key,
        value: Option<&[u8]>,
        rev: i64,
        out: &mut Vec<Delta>,
    ) {
        let floor = match key {
            Key::Block(_) => floors.1,
            _ => floors.0,
        };
        if rev > floor {
            self.apply(key, value, rev, out);
        }
    }

    /// Applies a put (`Some(value)`) or delete of `key`.
    fn apply(&mut self, key: Key, value: Option<&[u8]>, rev: i64, out: &mut Vec<Delta>) {
        fn parse<T: serde::de::DeserializeOwned>(v: &[u8]) -> Option<T> {
            serde_json::from_slice(v).ok()
        }
        match (key, value) {
            (Key::Block(net), Some(v)) => {
                if let Some(claim) = parse::<BlockClaim>(v) {
                    out.push(Delta::Block(net, Some(claim.holder())));
                    self.blocks.insert(net, (claim, rev));
                }
            }
            (Key::Block(net), None) => {
                self.blocks.remove(&net);
                out.push(Delta::Block(net, None));
            }
            (Key::Shared(name), Some(v)) => {
                if let Some(s) = parse(v) {
                    self.shared.insert(name, (s, rev));
                }
            }
            (Key::Shared(name), None) => {
                // Its addresses go in the same transaction, after it: drop
                // them now, while the subnet is still known.
                if let Some((rec, _)) = self.shared.remove(&name) {
                    out.push(Delta::ClearAddrs(rec.subnet));
                }
                self.addrs.retain(|(n, _), _| *n != name);
            }
            (Key::Addr(name, a), Some(v)) => {
                if let Some(claim) = parse(v) {
                    if let Some((s, _)) = self.shared.get(&name) {
                        out.push(Delta::Addr(s.subnet, a, true));
                    }
                    self.addrs.insert((name, a), (claim, rev));
                }
            }
            (Key::Addr(name, a), None) => {
                if let Some((s, _)) = self.shared.get(&name) {
                    out.push(Delta::Addr(s.subnet, a, false));
                } else if let Some(net) = self.blocks.keys().find(|n| n.contains(&a)) {
                    out.push(Delta::Addr(*net, a, false));
                }
                self.addrs.remove(&(name, a));
            }
            (Key::Host(id), Some(v)) => {
                if let Some(h) = parse(v) {
                    self.hosts.insert(id, h);
                }
            }
            (Key::Host(id), None) => {
                self.hosts.remove(&id);
            }
            (Key::Alive(id), Some(_)) => {
                self.alive.insert(id);
            }
            (Key::Alive(id), None) => {
                self.alive.remove(&id);
            }
            (Key::Mains, Some(v)) => self.mains = parse(v).map(|m| (m, rev)),
            (Key::Mains, None) => self.mains = None,
            (Key::Tree, Some(v)) => self.tree = parse(v).map(|t| (t, rev)),
            (Key::Tree, None) => self.tree = None,
        }
    }

    pub(super) fn snapshot(&self, me: &str, health: Health) -> Snapshot {
        let mut hosts: BTreeMap<String, HostView> = BTreeMap::new();
        let entry = |hosts: &mut BTreeMap<String, HostView>, id: &str| {
            hosts.entry(id.to_string()).or_insert_with(|| HostView {
                host: id.to_string(),
                seen: None,
                alive: false,
                blocks: Vec::new(),
                shared: Vec::new(),
                shared_addresses: 0,
            });
        };
        for (id, rec) in &self.hosts {
            entry(&mut hosts, id);
            if let Some(h) = hosts.get_mut(id) {
                h.seen = Some(rec.seen);
            }
        }
        for (net, (claim, _)) in &self.blocks {
            if claim.shared.is_none() {
                entry(&mut hosts, &claim.host);
                if let Some(h) = hosts.get_mut(&claim.host) {
                    h.blocks.push(*net);
                }
            }
        }
        for (name, (s, _)) in &self.shared {
            for holder in &s.holders {
                entry(&mut hosts, holder);
                if let Some(h) = hosts.get_mut(holder) {
                    h.shared.push(name.clone());
                }
            }
        }
        for (claim, _) in self.addrs.values() {
            if claim.host == super::GATEWAY_OWNER {
                continue;
            }
            entry(&mut hosts, &claim.host);
            if let Some(h) = hosts.get_mut(&claim.host) {
                h.shared_addresses += 1;
            }
        }
        for (id, h) in hosts.iter_mut() {
            h.alive = self.alive.contains(id);
        }
        Snapshot {
            host: me.to_string(),
            revision: self.revision,
            etcd_ok: health.ok,
            etcd_error: (!health.ok).then_some(health.last_error).flatten(),
            hosts: hosts.into_values().collect(),
            shared: self
                .shared
                .iter()
                .map(|(n, (s, _))| (n.clone(), s.clone()))
                .collect(),
            mains: self.mains.as_ref().map(|(m, _)| m.clone()),
        }
    }
}

fn apply_deltas(foreign: &mut Foreign, deltas: &[Delta], revision: i64) {
    for d in deltas {
        match d {
            Delta::Block(net, Some(holder)) => foreign.insert_block(*net, holder),
            Delta::Block(net, None) => foreign.remove_block(net),
            Delta::Addr(subnet, a, true) => foreign.insert_addr(*subnet, to_u128(*a)),
            Delta::Addr(subnet, a, false) => foreign.remove_addr(subnet, to_u128(*a)),
            Delta::ClearAddrs(subnet) => foreign.clear_addrs(subnet),
        }
    }
    foreign.set_revision(revision);
}

impl Fleet {
    /// Follows the fleet's changes from `from` until the watch ends; a
    /// compaction, a cancel or an error returns (the caller reloads).
    async fn watch(&self, svc: &Service, from: i64) -> Result<(), super::FleetError> {
        let root = self.keys.root();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let mut stream = self
            .conn
            .call(&self.stats, |mut c| async move {
                c.watch(root, Some(opts)).await
            })
            .await?;
        // Ticks in a row with no message at all, each asking for a
        // progress report: three mean the stream is dead.
        let mut quiet = 0;
        loop {
            let tick = tokio::time::sleep(Duration::from_secs(2));
            tokio::select! {
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(self.conn.unavailable(&e.to_string())),
                    };
                    quiet = 0;
                    if resp.compact_revision() > 0 {
                        log::warn!("fleet watch fell behind a compaction of etcd (revision {}); reloading the fleet", resp.compact_revision());
                        return Ok(());
                    }
                    if resp.canceled() {
                        log::warn!("etcd canceled the fleet watch ({}); reloading the fleet", resp.cancel_reason());
                        return Ok(());
                    }
                    self.apply_events(svc, resp.events());
                }
                _ = tick => {
                    quiet += 1;
                    if quiet > 3 {
                        return Err(self.conn.unavailable("the watch went quiet"));
                    }
                    let _ = stream.request_progress().await;
                }
            }
        }
    }
}

impl Fleet {
    /// Applies watched events to the view and then the core, in order.
    fn apply_events(&self, svc: &Service, events: &[etcd_client::Event]) {
        let mut deltas = Vec::new();
        let mut view = self.view();
        let floors = (view.revision, view.blocks_revision);
        let mut last = view.revision;
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            last = last.max(kv.mod_revision());
            let Some(key) = self.keys.parse(kv.key()) else {
                continue;
            };
            let value = (ev.event_type() == EventType::Put).then(|| kv.value());
            view.event(floors, key, value, kv.mod_revision(), &mut deltas);
        }
        view.revision = last;
        view.blocks_revision = view.blocks_revision.max(last);
        let revision = view.blocks_revision;
        svc.with_foreign(|f| apply_deltas(f, &deltas, revision));
    }
}

/// Keeps this host's view current until the process ends: load, watch,
/// and load again after a compaction or a lost connection.
pub async fn follow(fleet: Arc<Fleet>, svc: Arc<Service>) {
    let mut failing = false;
    loop {
        let from = match fleet.reload(&svc).await {
            Ok(rev) => rev + 1,
            Err(e) => {
                if !failing {
                    log::warn!("fleet view: {e}");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if failing {
            log::info!("fleet view: etcd answers again");
            failing = false;
        }
        if let Err(e) = fleet.watch(&svc, from).await {
            log::warn!("fleet watch: {e}");
            failing = true;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
