//! The glue between the protocol edge and the core: each operation plans a
//! change under the allocator lock, applies it tentatively and hands it to
//! the store in the same critical section (so the store's order is the
//! apply order), then waits — without the lock — until the store says it is
//! durable.
//!
//! Two rules keep every reply honest (issue: nothing acknowledged is lost):
//!
//! - A change the store refuses is taken back, with every change applied
//!   after it that the failure took down too, newest first, before anything
//!   else is planned (`Service::recover`). A failed change leaves nothing
//!   behind, and the store accepts changes again once that is done.
//! - A request that changes nothing (a duplicate release, a release of an
//!   address another request is releasing) may rest on a change that is
//!   still being written: it answers only once the last change applied
//!   before it is durable, and plans again if that change failed.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

mod fleet;
mod usage;

pub use usage::{PoolUsage, Usage};

use crate::error::Error;
use crate::ipam::{
    AddressRequest, Change, Foreign, Ipam, PoolId, PoolRequest, TreePoolView, TreeSpec, Undo,
};
use crate::metrics::RequestMetrics;
use crate::store::{Durable, Store, StoreError, StoreStats, Ticket};

/// How often a request that changes nothing plans again when the change
/// its answer rested on failed.
const REPLANS: usize = 3;

/// The live state and what is not yet known to be durable.
struct Live {
    ipam: Ipam,
    /// Applied changes whose commit has not been seen durable, oldest
    /// first, with what it takes to take each back.
    inflight: VecDeque<(Ticket, Undo)>,
    /// The last change committed: what a reply that changes nothing waits for.
    last: Option<Ticket>,
    /// Fleet mode: releases applied but not yet durable. The tidy pass
    /// treats what they release as still held, so no claim goes from etcd
    /// before its release is on disk (a failed write takes it back).
    releasing: Vec<Releasing>,
}

/// What a release not yet durable releases (fleet mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Releasing {
    pub pool: PoolId,
    /// The address, for a ReleaseAddress.
    pub address: Option<IpAddr>,
    /// The shared network the pool belongs to.
    pub shared: Option<String>,
}

/// Ends a [`Releasing`] entry when the wait for its write ends (however).
struct ReleasingGuard<'a> {
    svc: &'a Service,
    entry: Option<Releasing>,
}

impl Drop for ReleasingGuard<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            let mut live = self.svc.lock();
            if let Some(i) = live.releasing.iter().position(|r| *r == e) {
                live.releasing.swap_remove(i);
            }
        }
    }
}

/// The driver's state and where it is kept.
pub struct Service {
    live: Mutex<Live>,
    store: Arc<dyn Store>,
    metrics: RequestMetrics,
    requires_mac: bool,
    /// Fleet mode (F9): blocks and shared networks go through etcd.
    fleet: Option<Arc<crate::fleet::Fleet>>,
}

/// Read access to the allocator (status and listing reads).
pub struct IpamGuard<'a>(MutexGuard<'a, Live>);

impl Deref for IpamGuard<'_> {
    type Target = Ipam;

    fn deref(&self) -> &Ipam {
        &self.0.ipam
    }
}

/// What a request waits for once it has left the lock.
enum Wait<T> {
    Own(Durable, T),
    Earlier(Durable, T),
}

impl Service {
    /// A service over a loaded allocator and its store.
    pub fn new(ipam: Ipam, store: Arc<dyn Store>) -> Service {
        Service {
            live: Mutex::new(Live {
                ipam,
                inflight: VecDeque::new(),
                last: None,
                releasing: Vec::new(),
            }),
            store,
            metrics: RequestMetrics::default(),
            requires_mac: true,
            fleet: None,
        }
    }

    /// Serves in fleet mode (F9).
    pub fn in_fleet(mut self, fleet: Arc<crate::fleet::Fleet>) -> Service {
        self.fleet = Some(fleet);
        self
    }

    /// The fleet this host is in, if any.
    pub fn fleet(&self) -> Option<&Arc<crate::fleet::Fleet>> {
        self.fleet.as_ref()
    }

    /// Releases applied but not yet durable (fleet mode; see [`Releasing`]).
    pub fn releasing(&self) -> Vec<Releasing> {
        self.lock().releasing.clone()
    }

    /// Changes what the core knows of the fleet, under the lock.
    pub fn with_foreign<T>(&self, f: impl FnOnce(&mut Foreign) -> T) -> T {
        f(self.lock().ipam.foreign_mut())
    }

    /// Whether Docker is asked for every endpoint's MAC (REQUIRE_MAC, on
    /// by default): GetCapabilities says so.
    pub fn requiring_mac(mut self, requires_mac: bool) -> Service {
        self.requires_mac = requires_mac;
        self
    }

    /// What GetCapabilities answers for RequiresMACAddress.
    pub fn requires_mac(&self) -> bool {
        self.requires_mac
    }

    /// The pool a foreign PoolID names (the original gipam's, imported).
    pub fn resolve_alias(&self, name: &str) -> Option<PoolId> {
        self.lock().ipam.state().alias(name).cloned()
    }

    /// Requests counted by the protocol edge.
    pub fn metrics(&self) -> &RequestMetrics {
        &self.metrics
    }

    /// What the store tells about itself (no lock taken).
    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// The store's flush latency, when it flushes.
    pub fn fsync_latency(&self) -> Option<&crate::metrics::Histogram> {
        self.store.fsync_latency()
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        // Planning never panics half-way through a mutation: apply is the
        // only mutation and it validates before changing anything.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The allocator, for read-only inspection.
    pub fn ipam(&self) -> IpamGuard<'_> {
        IpamGuard(self.lock())
    }

    /// After a failed write: takes back every change the store did not make
    /// durable, newest first, then lets the store accept changes again.
    fn recover(&self, live: &mut Live) {
        let Some(epoch) = self.store.failed() else {
            return;
        };
        let durable = self.store.durable_seq();
        let mut undone = 0;
        while let Some((t, _)) = live.inflight.back() {
            if t.epoch != epoch || t.seq <= durable {
                break;
            }
            if let Some((_, undo)) = live.inflight.pop_back() {
                live.ipam.undo(undo);
                undone += 1;
            }
        }
        // What is left was durable before the failure.
        live.inflight.clear();
        live.last = None;
        self.store.resume(epoch);
        if undone > 0 {
            log::warn!("took back {undone} changes that could not be written");
        }
    }

    /// Plans, applies and commits one change; waits until it is durable.
    async fn change<T>(
        &self,
        mut plan: impl FnMut(&mut Ipam) -> Result<(Option<Change>, T), crate::ipam::Error>,
    ) -> Result<T, Error> {
        let mut last_err = None;
        // Held until the wait for this request's own change ends.
        let mut guard = ReleasingGuard {
            svc: self,
            entry: None,
        };
        for _ in 0..REPLANS {
            let wait = {
                let mut live = self.lock();
                self.recover(&mut live);
                while let Some((t, _)) = live.inflight.front() {
                    if !self.store.is_durable(*t) {
                        break;
                    }
                    live.inflight.pop_front();
                }
                // An error may rest on an unwritten change as much as a
                // no-op answer does (an overlap with a pool still being
                // added): it waits for the same barrier.
                let (change, out) = match plan(&mut live.ipam) {
                    Ok((change, out)) => (change, Ok(out)),
                    Err(e) => (None, Err(e)),
                };
                match change {
                    Some(c) => {
                        let releasing = self.fleet.as_ref().and_then(|_| {
                            let (pool, address) = match &c {
                                Change::ReleasePool { id } => (id, None),
                                Change::ReleaseAddress { pool, address } => (pool, Some(*address)),
                                _ => return None,
                            };
                            let shared = live
                                .ipam
                                .state()
                                .pool(pool)?
                                .shared
                                .as_deref()
                                .map(String::from);
                            Some(Releasing {
                                pool: pool.clone(),
                                address,
                                shared,
                            })
                        });
                        let undo = live.ipam.apply(&c)?;
                        if let Some(r) = &releasing {
                            live.releasing.push(r.clone());
                        }
                        guard = ReleasingGuard {
                            svc: self,
                            entry: releasing,
                        };
                        let (ticket, durable) = self.store.commit(c);
                        live.inflight.push_back((ticket, undo));
                        live.last = Some(ticket);
                        if self.store.wants_snapshot() {
                            // A copy under the lock holds exactly the changes
                            // committed so far; lease chunks are shared, so it
                            // costs little more than one pass over the pools.
                            self.store.snapshot(live.ipam.state().freeze());
                        }
                        Wait::Own(durable, out)
                    }
                    None => match live.last.filter(|t| !self.store.is_durable(*t)) {
                        Some(t) => Wait::Earlier(self.store.barrier(t), out),
                        None => return Ok(out?),
                    },
                }
            };
            match wait {
                Wait::Own(durable, out) => {
                    let done = durable.await;
                    if done.is_err() {
                        self.recover(&mut self.lock());
                    }
                    drop(guard);
                    return match done {
                        Ok(()) => Ok(out?),
                        Err(e) => Err(e.into()),
                    };
                }
                Wait::Earlier(durable, out) => match durable.await {
                    Ok(()) => return Ok(out?),
                    Err(e) => {
                        // The answer rested on a change that was taken
                        // back: plan again on the state as it now is.
                        self.recover(&mut self.lock());
                        last_err = Some(e);
                    }
                },
            }
        }
        Err(last_err
            .unwrap_or_else(|| StoreError::Failed("the state store keeps failing".into()))
            .into())
    }

    /// RequestPool: returns the pool's id (its subnet is `id.subnet`) and
    /// the gateway reserved with it, which goes into the reply's `Data`.
    pub async fn request_pool(&self, req: &PoolRequest) -> Result<(PoolId, Option<IpAddr>), Error> {
        if let Some(fleet) = &self.fleet {
            return self.fleet_request_pool(fleet, req).await;
        }
        self.change(|ipam| {
            let change = ipam.plan_pool(req)?;
            let (Change::AddPool {
                id, data_gateway, ..
            }
            | Change::AddPoolFrom {
                id, data_gateway, ..
            }) = &change
            else {
                return Err(crate::ipam::Error::Inconsistent(
                    "a planned pool is not an added pool".into(),
                ));
            };
            let out = (id.clone(), *data_gateway);
            Ok((Some(change), out))
        })
        .await
    }

    /// ReleasePool: idempotent; returns whether the pool was held.
    pub async fn release_pool(&self, id: &PoolId) -> Result<bool, Error> {
        let held = self
            .change(|ipam| {
                let c = ipam.plan_release_pool(id);
                let held = c.is_some();
                Ok((c, held))
            })
            .await?;
        // Its claim in etcd goes once the release is durable here.
        if let Some(fleet) = &self.fleet {
            fleet.wake_tidy();
        }
        Ok(held)
    }

    /// RequestAddress: returns the address with the pool's prefix length.
    pub async fn request_address(&self, req: &AddressRequest) -> Result<IpNet, Error> {
        if let Some(fleet) = &self.fleet
            && let Some(name) = self.shared_name(&req.pool)
        {
            return self.fleet_request_address(fleet, &name, req).await;
        }
        let addr = self
            .change(|ipam| {
                let (c, a) = ipam.plan_address(req)?;
                Ok((Some(c), a))
            })
            .await?;
        IpNet::new(addr, req.pool.subnet.prefix_len())
            .map_err(|e| Error::BadRequest(format!("address {addr}: {e}")))
    }

    /// ReleaseAddress: idempotent.
    pub async fn release_address(&self, id: &PoolId, address: IpAddr) -> Result<(), Error> {
        self.change(|ipam| Ok((ipam.plan_release_address(id, address)?, ())))
            .await?;
        if let Some(fleet) = &self.fleet
            && self.shared_name(id).is_some()
        {
            fleet.wake_tidy();
        }
        Ok(())
    }

    /// `gipam pools apply`: replaces the pool tree whole, through the same
    /// change path as every request (durable before the reply, taken back
    /// if the store refuses it). Returns whether the tree changed.
    pub async fn apply_tree(&self, spec: &TreeSpec) -> Result<bool, Error> {
        if let Some(fleet) = &self.fleet {
            return self.fleet_apply_tree(fleet, spec).await;
        }
        self.apply_local_tree(spec).await
    }

    /// Replaces this host's tree (fleet mode: the fleet's, once etcd has
    /// it).
    pub async fn apply_local_tree(&self, spec: &TreeSpec) -> Result<bool, Error> {
        self.change(|ipam| {
            let c = ipam.plan_tree(spec)?;
            let changed = c.is_some();
            Ok((c, changed))
        })
        .await
    }

    /// `gipam pools show`: the tree with its reservations and networks,
    /// read under the lock and handed out as a copy.
    pub fn pools(&self) -> Vec<TreePoolView> {
        self.lock().ipam.tree_view()
    }
}
