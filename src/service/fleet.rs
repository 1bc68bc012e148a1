//! The request paths of fleet mode (F9). A new block, a shared network
//! and a shared network's address are claimed in etcd before the local
//! change that holds them is applied and written; the plan reserves what
//! it chose (the core's pending claims) so concurrent requests on this
//! host choose something else, and the claim compares against the
//! revision the plan saw. A lost claim catches up and plans again.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::Service;
use crate::error::Error;
use crate::fleet::{CLAIM_RETRIES, Claim, Fleet, FleetError};
use crate::ipam::{AddressRequest, Change, PoolId, PoolRequest, to_u128};

/// The pool id and reserved gateway of an added pool.
fn added(change: &Change) -> Option<(PoolId, Option<IpAddr>)> {
    match change {
        Change::AddPool {
            id, data_gateway, ..
        }
        | Change::AddPoolFrom {
            id, data_gateway, ..
        } => Some((id.clone(), *data_gateway)),
        _ => None,
    }
}

/// Ends a pending claim if the request is dropped while it waits (dockerd
/// gave up on it): the claim may have been made, so the tidy pass looks.
struct Cancel<'a> {
    svc: &'a Service,
    fleet: &'a Fleet,
    block: Option<IpNet>,
    addr: Option<(IpNet, u128)>,
}

impl Cancel<'_> {
    /// The request ended on a path that dealt with its pending claim.
    fn done(mut self) {
        self.block = None;
        self.addr = None;
    }
}

impl Drop for Cancel<'_> {
    fn drop(&mut self) {
        let (block, addr) = (self.block.take(), self.addr.take());
        if block.is_none() && addr.is_none() {
            return;
        }
        self.svc.with_foreign(|f| {
            if let Some(n) = &block {
                f.remove_pending(n);
            }
            if let Some((s, x)) = &addr {
                f.remove_pending_addr(s, *x);
            }
        });
        self.fleet.wake_tidy();
    }
}

/// What a fleet RequestPool claims.
enum Step {
    Block,
    Create(String),
    Join(String, crate::fleet::keys::SharedNet, i64),
}

impl Service {
    /// The shared network a held pool belongs to.
    pub(super) fn shared_name(&self, id: &PoolId) -> Option<String> {
        let live = self.lock();
        live.ipam
            .state()
            .pool(id)
            .and_then(|p| p.shared.as_deref().map(String::from))
    }

    /// Applies and writes a change whose claim was won, ending the
    /// pending claim in the same critical section. A change that no
    /// longer applies leaves the claim to the tidy pass.
    async fn commit_claimed(
        &self,
        fleet: &Fleet,
        change: Change,
        end: impl Fn(&mut crate::ipam::Foreign),
    ) -> Result<(), Error> {
        let out = self
            .change(|ipam| {
                end(ipam.foreign_mut());
                Ok((Some(change.clone()), ()))
            })
            .await;
        if out.is_err() {
            fleet.wake_tidy();
        }
        out
    }

    pub(super) async fn fleet_request_pool(
        &self,
        fleet: &Arc<Fleet>,
        req: &PoolRequest,
    ) -> Result<(PoolId, Option<IpAddr>), Error> {
        fleet.ready()?;
        let shared = req.options.shared.clone();
        let deadline = std::time::Instant::now() + fleet.config().timeout * 2;
        for attempt in 0..CLAIM_RETRIES {
            if attempt > 0 && std::time::Instant::now() > deadline {
                break;
            }
            if attempt > 0 {
                fleet
                    .stats
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let existing = shared.as_deref().and_then(|n| fleet.shared(n));
            let (change, net, revision, step) = {
                let mut live = self.lock();
                let ipam = &mut live.ipam;
                let (change, step) = match (&shared, existing) {
                    (None, _) => (ipam.plan_pool(req)?, Step::Block),
                    (Some(n), None) => (
                        ipam.plan_shared_pool(req, n, None)?,
                        Step::Create(n.clone()),
                    ),
                    (Some(n), Some((rec, rev))) => {
                        let at = Some((rec.subnet, rec.gateway));
                        let c = ipam.plan_shared_pool(req, n, at)?;
                        (c, Step::Join(n.clone(), rec, rev))
                    }
                };
                let Some((id, _)) = added(&change) else {
                    return Err(crate::ipam::Error::Inconsistent(
                        "a planned pool is not an added pool".into(),
                    )
                    .into());
                };
                let net = id.subnet;
                let revision = ipam.foreign().revision();
                ipam.foreign_mut().add_pending(net);
                (change, net, revision, step)
            };
            let cancel = Cancel {
                svc: self,
                fleet,
                block: Some(net),
                addr: None,
            };
            let claim = match &step {
                Step::Block => fleet.claim_block(net, revision).await,
                Step::Create(n) => {
                    let gw = added(&change).and_then(|(_, g)| g);
                    fleet.create_shared(n, net, gw, revision).await
                }
                Step::Join(n, rec, rev) => fleet.join_shared(n, rec.clone(), *rev).await,
            };
            match claim {
                Ok(Claim::Won) => {
                    let out = added(&change);
                    let done = self
                        .commit_claimed(fleet, change, |f| {
                            f.remove_pending(&net);
                            f.claimed(&net);
                        })
                        .await;
                    cancel.done();
                    done?;
                    return out.ok_or_else(|| {
                        crate::ipam::Error::Inconsistent(
                            "a planned pool is not an added pool".into(),
                        )
                        .into()
                    });
                }
                Ok(Claim::Lost(read))
                    if matches!(step, Step::Block)
                        && fleet.read_own(&read, &fleet.block_key(&net), fleet.host_id()) =>
                {
                    // A repeat found its own claim: it was made.
                    let out = added(&change);
                    let done = self
                        .commit_claimed(fleet, change, |f| {
                            f.remove_pending(&net);
                            f.claimed(&net);
                        })
                        .await;
                    cancel.done();
                    done?;
                    return out.ok_or_else(|| {
                        crate::ipam::Error::Inconsistent(
                            "a planned pool is not an added pool".into(),
                        )
                        .into()
                    });
                }
                Ok(Claim::Lost(read)) => {
                    self.with_foreign(|f| f.remove_pending(&net));
                    cancel.done();
                    // Learn what won before planning again: what the
                    // transaction read back, else every block.
                    if fleet.absorb(self, &read) == 0 {
                        fleet.refresh_blocks(self).await?;
                    }
                }
                Err(e) => {
                    self.with_foreign(|f| f.remove_pending(&net));
                    cancel.done();
                    // A claim whose answer was lost may have been made:
                    // the tidy pass frees it if so.
                    fleet.wake_tidy();
                    return Err(e.into());
                }
            }
        }
        Err(FleetError::Contended(format!(
            "no free block could be claimed in the fleet: other hosts claimed each one tried first (up to {CLAIM_RETRIES} tries within twice ETCD_TIMEOUT); try again"
        ))
        .into())
    }

    /// `gipam pools apply` in fleet mode: checked against this host's
    /// networks, written to etcd (compared against the tree this host
    /// last saw, so two operators cannot overwrite each other unseen),
    /// then applied here; the other hosts apply it from their watch.
    pub(super) async fn fleet_apply_tree(
        &self,
        fleet: &Arc<Fleet>,
        spec: &crate::ipam::TreeSpec,
    ) -> Result<bool, Error> {
        fleet.ready()?;
        let (fleet_tree, revision) = fleet.tree();
        // Refused here if it would strand a network of this host's.
        let changes_here = self.lock().ipam.plan_tree(spec)?.is_some();
        if fleet_tree.as_ref() != Some(spec) {
            match fleet.put_tree(spec, revision).await? {
                Claim::Won => {}
                Claim::Lost(_) => {
                    fleet.learn(self, vec![fleet.tree_key()]).await?;
                    return Err(FleetError::Refused(
                        "the fleet's pool tree changed while this one was applied (another host applied one); look at gipam pools show and apply again".into(),
                    )
                    .into());
                }
            }
        }
        let changed = self.apply_local_tree(spec).await?;
        fleet.wake_tidy();
        Ok(changed || changes_here)
    }

    pub(super) async fn fleet_request_address(
        &self,
        fleet: &Arc<Fleet>,
        name: &str,
        req: &AddressRequest,
    ) -> Result<IpNet, Error> {
        let subnet = req.pool.subnet;
        let prefix = subnet.prefix_len();
        let with_len = |a: IpAddr| {
            IpNet::new(a, prefix).map_err(|e| Error::BadRequest(format!("address {a}: {e}")))
        };
        fleet.ready()?;
        let deadline = std::time::Instant::now() + fleet.config().timeout * 2;
        for attempt in 0..CLAIM_RETRIES {
            if attempt > 0 && std::time::Instant::now() > deadline {
                break;
            }
            if attempt > 0 {
                fleet
                    .stats
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let shared_gw = fleet.shared(name).and_then(|(s, _)| s.gateway);
            let (change, address, gateway) = {
                let mut live = self.lock();
                let (change, address) = live.ipam.plan_address(req)?;
                // The network's gateway is the shared record's, reserved
                // on every holder: it is not claimed.
                let gateway = req.gateway && shared_gw == Some(address);
                if !gateway {
                    live.ipam
                        .foreign_mut()
                        .add_pending_addr(subnet, to_u128(address));
                }
                (change, address, gateway)
            };
            if gateway {
                self.change(|_| Ok((Some(change.clone()), ()))).await?;
                return with_len(address);
            }
            let x = to_u128(address);
            let cancel = Cancel {
                svc: self,
                fleet,
                block: None,
                addr: Some((subnet, x)),
            };
            // A gateway named by --gateway is claimed for the network,
            // and the same claim serves every holder.
            let owner = if req.gateway {
                crate::fleet::GATEWAY_OWNER
            } else {
                fleet.host_id()
            };
            match fleet.claim_addr(name, address, owner).await {
                Ok(Claim::Won) => {
                    let done = self
                        .commit_claimed(fleet, change, |f| f.remove_pending_addr(&subnet, x))
                        .await;
                    cancel.done();
                    done?;
                    return with_len(address);
                }
                Ok(Claim::Lost(read)) => {
                    fleet.absorb(self, &read);
                    let own = fleet.read_own(&read, &fleet.addr_key(name, address), owner);
                    if own
                        || (req.gateway
                            && fleet.addr_owner(name, address).as_deref()
                                == Some(crate::fleet::GATEWAY_OWNER))
                    {
                        let done = self
                            .commit_claimed(fleet, change, |f| f.remove_pending_addr(&subnet, x))
                            .await;
                        cancel.done();
                        done?;
                        return with_len(address);
                    }
                    self.with_foreign(|f| f.remove_pending_addr(&subnet, x));
                    cancel.done();
                    if req.address.is_some() {
                        return Err(Error::Ipam(crate::ipam::Error::AddressInUse {
                            addr: address,
                            pool: req.pool.clone(),
                        }));
                    }
                }
                Err(e) => {
                    self.with_foreign(|f| f.remove_pending_addr(&subnet, x));
                    cancel.done();
                    fleet.wake_tidy();
                    return Err(e.into());
                }
            }
        }
        Err(FleetError::Contended(format!(
            "no free address of shared network {name} could be claimed: other hosts took each one tried first (up to {CLAIM_RETRIES} tries within twice ETCD_TIMEOUT); try again"
        ))
        .into())
    }
}
