//! Undo (a change whose commit failed is taken back): after any sequence
//! of changes, taking back the newest ones in reverse order leaves the
//! state exactly as it was before them — leases, pools, cooling addresses,
//! the serial cursor, the remembered addresses and their clock, what
//! released pools remembered (the snapshot shows all of them), and the
//! indexes derived from them (compared apart: the used set, the name and
//! MAC lookups, the reclaim order).

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;

/// xorshift64*, seeded per case so a failure names a reproducible run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

fn json(ipam: &Ipam) -> String {
    serde_json::to_string(&ipam.state().snapshot()).expect("snapshot json")
}

/// What the random changes exercised.
#[derive(Default, Debug)]
struct Seen {
    undone: usize,
    gateways: usize,
    /// Dynamic requests that got their remembered address back.
    returns: usize,
    /// Dynamic requests that took an address held back for another.
    reclaims: usize,
    /// Pools added again with the id a released pool remembered under.
    readded: usize,
    mac_pools: usize,
}

/// A random pool request: automatic /29s (which come back with the same id
/// after a release) or an explicit /28 over two of them (which drops what
/// released pools remembered there), with random `serial`, `reuse` and
/// `sticky`.
fn random_pool(ipam: &Ipam, rng: &mut Rng) -> Option<Change> {
    let options = HashMap::from([
        ("serial".to_string(), (rng.below(2) == 0).to_string()),
        (
            "reuse".to_string(),
            ["immediate", "delayed"][rng.below(2)].into(),
        ),
        (
            "sticky".to_string(),
            ["name", "mac", "off", "name"][rng.below(4)].into(),
        ),
    ]);
    let subnet = if rng.below(8) == 0 {
        ["10.9.0.0/28", "10.9.0.16/28"][rng.below(2)]
    } else {
        ""
    };
    let req = PoolRequest::parse("LocalDefault", subnet, "", false, &options).ok()?;
    ipam.plan_pool(&req).ok()
}

/// A random valid change: a pool, an address (dynamic, `--ip` or a
/// gateway, from one of a few names and MACs so identities come back), a
/// release of either.
fn random_change(ipam: &Ipam, rng: &mut Rng, seen: &mut Seen) -> Option<Change> {
    let pools: Vec<PoolId> = ipam.state().pools().map(|p| p.id.clone()).collect();
    let pick = rng.below(10);
    if pools.is_empty() || pick == 0 {
        return random_pool(ipam, rng);
    }
    let id = pools[rng.below(pools.len())].clone();
    if pick == 1 {
        return ipam.plan_release_pool(&id);
    }
    let pool = ipam.state().pool(&id)?;
    let leased: Vec<IpAddr> = pool.leases().map(|(a, _)| a).collect();
    if pick < 5 && !leased.is_empty() {
        let a = leased[rng.below(leased.len())];
        return ipam.plan_release_address(&id, a).ok().flatten();
    }
    // A gateway request for another address replaces the reserved
    // gateway; the same for an endpoint is `--ip`.
    let base = |rng: &mut Rng| {
        let IpAddr::V4(base) = id.subnet.addr() else {
            unreachable!("the test pools are IPv4")
        };
        IpAddr::V4((u32::from(base) + 1 + rng.below(6) as u32).into())
    };
    let gateway = pick == 5 || pick == 6;
    let address = (pick == 6 || pick == 7).then(|| base(rng));
    // Engine 29 sends a name and a MAC, 20.10 a MAC, aux requests nothing.
    let n = rng.below(12);
    let (name, mac) = match rng.below(4) {
        _ if gateway => (None, None),
        0 => (None, Some(Mac([2, 0x42, 0, 0, 0, n as u8]))),
        1 => (None, None),
        _ => (
            Some(format!("c{n}")),
            Some(Mac([2, 0x42, 1, 0, 0, rng.below(255) as u8])),
        ),
    };
    let req = AddressRequest {
        pool: id,
        address,
        gateway,
        serial: false,
        mac,
        name,
    };
    let (change, x) = ipam.plan_address(&req).ok()?;
    let x = to_u128(x);
    if address.is_none() && !gateway {
        if pool.recall(&req) == Some(x) {
            seen.returns += 1;
        } else if pool.memory.is_held(x) {
            seen.reclaims += 1;
        }
    }
    Some(change)
}

#[test]
fn taking_back_the_newest_changes_restores_the_state_exactly() {
    let mut seen = Seen::default();
    for seed in 1..=24u64 {
        // /29 blocks fill up quickly, so cooling lists wrap and evict, and
        // held-back addresses are reclaimed.
        let settings = Settings {
            v4: vec!["10.9.0.0/26".parse().expect("net")],
            v6: vec![],
            v4ab: 29,
            v6ab: 64,
        };
        let mut ipam = Ipam::new(settings, State::new()).expect("ipam");
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        for round in 0..400 {
            let before = (json(&ipam), ipam.state().derived());
            let mut undos = Vec::new();
            for _ in 0..=rng.below(4) {
                if let Some(c) = random_change(&ipam, &mut rng, &mut seen) {
                    match &c {
                        Change::AddAddress { gateway: true, .. } => seen.gateways += 1,
                        Change::AddPool { id, sticky, .. } => {
                            seen.mac_pools += usize::from(*sticky == Sticky::Mac);
                            let text = json(&ipam);
                            let retired = format!(r#""retired":[{{"id":"{id}""#);
                            seen.readded += usize::from(text.contains(&retired));
                        }
                        _ => {}
                    }
                    undos.push(ipam.apply(&c).expect("planned changes apply"));
                }
            }
            if rng.below(3) == 0 {
                while let Some(u) = undos.pop() {
                    ipam.undo(u);
                    seen.undone += 1;
                }
                assert_eq!((json(&ipam), ipam.state().derived()), before, "seed {seed}");
            }
            if round % 20 == 0 {
                let rebuilt = State::from_snapshot(ipam.state().snapshot()).expect("reloads");
                let again = serde_json::to_string(&rebuilt.snapshot()).expect("json");
                assert_eq!(again, json(&ipam), "seed {seed} round {round}");
                assert_eq!(rebuilt.derived(), ipam.state().derived(), "seed {seed}");
            }
        }
    }
    let Seen {
        undone,
        gateways,
        returns,
        reclaims,
        readded,
        mac_pools,
    } = seen;
    assert!(
        undone > 1000
            && gateways > 100
            && returns > 80
            && reclaims > 50
            && readded > 10
            && mac_pools > 20,
        "{seen:?}"
    );
}
