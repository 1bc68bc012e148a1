//! The glue between the protocol edge and the core: each operation plans a
//! change under the allocator lock, applies it and hands it to the store in
//! the same critical section (so the journal order is the apply order),
//! then waits — without the lock — until the store says it is durable.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

use crate::error::Error;
use crate::ipam::{AddressRequest, Change, Ipam, PoolId, PoolRequest};
use crate::store::{Commit, Store};

/// The driver's state and where it is kept.
pub struct Service {
    ipam: Mutex<Ipam>,
    store: Arc<dyn Store>,
}

impl Service {
    /// A service over a loaded allocator and its store.
    pub fn new(ipam: Ipam, store: Arc<dyn Store>) -> Service {
        Service {
            ipam: Mutex::new(ipam),
            store,
        }
    }

    /// The allocator, for read-only inspection.
    pub fn ipam(&self) -> MutexGuard<'_, Ipam> {
        // Planning never panics half-way through a mutation: apply is the
        // only mutation and it validates before changing anything.
        self.ipam.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plans, applies and commits one change; waits until it is durable.
    async fn change<T>(
        &self,
        plan: impl FnOnce(&Ipam) -> Result<(Option<Change>, T), crate::ipam::Error>,
    ) -> Result<T, Error> {
        let (commit, out): (Option<Commit>, T) = {
            let mut ipam = self.ipam();
            let (change, out) = plan(&ipam)?;
            match change {
                Some(c) => {
                    ipam.apply(&c)?;
                    let commit = self.store.commit(c);
                    if self.store.wants_snapshot() {
                        // A copy under the lock holds exactly the changes
                        // committed so far; lease chunks are shared, so it
                        // costs little more than one pass over the pools.
                        self.store.snapshot(ipam.state().freeze());
                    }
                    (Some(commit), out)
                }
                None => (None, out),
            }
        };
        if let Some(c) = commit {
            c.await?;
        }
        Ok(out)
    }

    /// RequestPool: returns the pool's id (its subnet is `id.subnet`) and
    /// the gateway reserved with it, which goes into the reply's `Data`.
    pub async fn request_pool(&self, req: &PoolRequest) -> Result<(PoolId, Option<IpAddr>), Error> {
        self.change(|ipam| {
            let change = ipam.plan_pool(req)?;
            let Change::AddPool {
                id, data_gateway, ..
            } = &change
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
        self.change(|ipam| {
            let c = ipam.plan_release_pool(id);
            let held = c.is_some();
            Ok((c, held))
        })
        .await
    }

    /// RequestAddress: returns the address with the pool's prefix length.
    pub async fn request_address(&self, req: &AddressRequest) -> Result<IpNet, Error> {
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
            .await
    }
}
