//! `gipam import FILE [--state-dir DIR]`: moving over from the original
//! gipam (archekb/gipam). Its lease file is the JSON of its `Leaser`: the
//! main pools `v4`/`v6` with block sizes `v4ab`/`v6ab` and cursors
//! `v4idx`/`v6idx`, and the blocks, `allocated` (held by networks) and
//! `free` (given back), each `{"id", "v", "pool", "idx", "allocated",
//! "free"}` with the block's leased and released addresses.
//!
//! The original gipam answered RequestPool with a random 16-character
//! PoolID (`Subnet.ID`), which Docker stored with each network and keeps
//! sending. So each held block becomes a gipam pool *and* that PoolID
//! becomes an alias of it (`Change::AliasPool`): Docker's existing
//! networks keep working, their addresses stay held, and the main pools
//! become gipam's V4/V6. Free blocks and the cursors need nothing: gipam
//! picks the lowest free block. The original made its gateway request
//! first on a fresh block, which got the block's first address, so that
//! address is marked as the gateway.
//!
//! It runs offline, on STATE_DIR, with gipam stopped: the store's lock
//! refuses while a gipam holds it, the state must hold no pool, and the
//! whole file is checked (applied to a copy) before anything is written.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use crate::ipam::{Change, Family, LOCAL_SPACE, PoolId, Reuse, first_usable, to_u128};
use crate::store::{LocalStore, Store};

/// The original gipam's lease file (`pkg/leaser/leaser.go`, MarshalJSON).
#[derive(Debug, Deserialize)]
struct LeaseFile {
    v4: String,
    #[serde(default)]
    v4ab: u8,
    #[serde(default)]
    v6: String,
    #[serde(default)]
    v6ab: u8,
    #[serde(default)]
    allocated: Option<Vec<Block>>,
    #[serde(default)]
    free: Option<Vec<Block>>,
}

/// One block (`pkg/leaser/subnet.go`, `Subnet`).
#[derive(Debug, Deserialize)]
struct Block {
    id: String,
    v: u8,
    pool: String,
    #[serde(default)]
    allocated: Option<Vec<String>>,
}

/// What the file asks for, checked.
struct Plan {
    changes: Vec<Change>,
    pools: usize,
    leases: usize,
    settings: String,
}

fn main_pool(name: &str, text: &str, family: Family) -> Result<Vec<IpNet>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let net: IpNet = text
        .parse()
        .map_err(|e| format!("{name} {text:?} is not a CIDR: {e}"))?;
    if Family::of_net(&net) != family || net.trunc() != net {
        return Err(format!(
            "{name} {text:?} is not a canonical {family} prefix"
        ));
    }
    Ok(vec![net])
}

fn plan(file: &LeaseFile) -> Result<Plan, String> {
    let v4 = main_pool("v4", &file.v4, Family::V4)?;
    if v4.is_empty() {
        return Err("v4 is empty; the original gipam always has an IPv4 main pool".into());
    }
    let v6 = main_pool("v6", &file.v6, Family::V6)?;
    let mut changes = vec![Change::SetMains {
        v4: v4.clone(),
        v6: v6.clone(),
    }];
    let mut ids = HashSet::new();
    let mut leases = 0;
    let blocks = file.allocated.as_deref().unwrap_or_default();
    for b in blocks {
        let what = format!("allocated block {:?} ({})", b.id, b.pool);
        if b.id.is_empty()
            || b.id.len() > 64
            || !b.id.bytes().all(|c| c.is_ascii_graphic())
            || b.id.parse::<PoolId>().is_ok()
        {
            return Err(format!(
                "{what}: its id is not a PoolID of the original gipam"
            ));
        }
        if !ids.insert(b.id.as_str()) {
            return Err(format!("{what}: the id appears twice"));
        }
        let subnet: IpNet = b
            .pool
            .parse()
            .map_err(|e| format!("{what}: pool is not a CIDR: {e}"))?;
        let family = match b.v {
            4 => Family::V4,
            6 => Family::V6,
            v => return Err(format!("{what}: v is {v}, not 4 or 6")),
        };
        let mains = if family == Family::V4 { &v4 } else { &v6 };
        if Family::of_net(&subnet) != family
            || subnet.trunc() != subnet
            || !mains.iter().any(|m| m.contains(&subnet))
        {
            return Err(format!(
                "{what}: not a canonical {family} block of the main pool"
            ));
        }
        let id = PoolId {
            space: LOCAL_SPACE,
            subnet,
            range: None,
        };
        changes.push(Change::AddPool {
            id: id.clone(),
            auto: true,
            serial: false,
            reuse: Reuse::default(),
            sticky: Default::default(),
            data_gateway: None,
        });
        changes.push(Change::AliasPool {
            alias: b.id.clone(),
            id: id.clone(),
        });
        let mut seen = HashSet::new();
        for a in b.allocated.as_deref().unwrap_or_default() {
            let bare = a.split_once('/').map_or(a.as_str(), |(ip, _)| ip);
            let address: IpAddr = bare
                .parse()
                .map_err(|_| format!("{what}: {a:?} is not an address"))?;
            if !subnet.contains(&address) || !seen.insert(address) {
                return Err(format!(
                    "{what}: address {a} is outside the block or listed twice"
                ));
            }
            changes.push(Change::AddAddress {
                pool: id.clone(),
                address,
                gateway: to_u128(address) == first_usable(&subnet),
                dynamic: false,
                mac: None,
                name: None,
            });
            leases += 1;
        }
    }
    let mut settings = format!("V4={}", file.v4);
    if file.v4ab > 0 {
        settings.push_str(&format!(" V4AB={}", file.v4ab));
    }
    if !file.v6.is_empty() {
        settings.push_str(&format!(" V6={}", file.v6));
        if file.v6ab > 0 {
            settings.push_str(&format!(" V6AB={}", file.v6ab));
        }
    }
    Ok(Plan {
        changes,
        pools: blocks.len(),
        leases,
        settings,
    })
}

/// Imports `file` into the empty state in `dir`.
pub fn run(file: &Path, dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let parsed: LeaseFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a lease file of the original gipam: {e}",
            file.display()
        )
    })?;
    let plan =
        plan(&parsed).map_err(|e| format!("{}: {e}; nothing was imported", file.display()))?;
    let free = parsed.free.as_ref().map_or(0, Vec::len);
    let (store, state) = LocalStore::open(dir).map_err(|e| e.to_string())?;
    let held = state.pools().count();
    if held > 0 {
        let _ = store.close();
        return Err(format!(
            "state directory {} already holds {held} pools; import only into an empty state: give a new --state-dir (or STATE_DIR), then start gipam on it",
            dir.display()
        ));
    }
    // Every change is checked on a copy before the first is written.
    let mut check = state.clone();
    for c in &plan.changes {
        check
            .apply(c)
            .map_err(|e| format!("{}: {e}; nothing was imported", file.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let written = runtime.block_on(async {
        for c in plan.changes {
            store.commit(c).1.await?;
        }
        Ok::<(), crate::store::StoreError>(())
    });
    let closed = store.close();
    written.and(closed).map_err(|e| {
        format!(
            "{e}; the import stopped half-way: remove {} and import again",
            dir.display()
        )
    })?;
    println!(
        "imported {} into {}: {} pools (Docker's PoolIDs from the original gipam kept as aliases), {} leases; free blocks need nothing ({free})",
        file.display(),
        dir.display(),
        plan.pools,
        plan.leases
    );
    println!(
        "start gipam on it with the original's main pools: {} STATE_DIR={}",
        plan.settings,
        dir.display()
    );
    Ok(())
}
