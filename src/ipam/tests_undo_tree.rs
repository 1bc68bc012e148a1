//! Undo with the pool tree (F7): the same contract as `tests_undo.rs`
//! (which exercises remembered identities, F6) over a mix of tree changes,
//! pools drawn by tags and reservations. After any sequence
//! of changes, taking back the newest ones in reverse order leaves the
//! state exactly as it was before them — leases, pools, cooling addresses
//! and the serial cursor alike (the snapshot shows all of them), and the
//! pool tree with the networks drawn from it.

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

/// Trees the random changes switch between: reservations for some of the
/// names the address requests use, an excluded range, no tree at all.
const TREES: [&str; 3] = [
    r#"{"pools":[{"name":"t","cidr":"10.9.1.0/26","block":29,"tags":["t"],
        "reservations":[{"address":"10.9.1.2","name":"c1"},{"address":"10.9.1.3","name":"c2"}]}]}"#,
    r#"{"pools":[{"name":"t","cidr":"10.9.1.0/26","block":29,"tags":["t"],"exclude":["10.9.1.32/29"],
        "reservations":[{"address":"10.9.1.2","name":"c1"},{"address":"10.9.1.10","name":"c3"}]}]}"#,
    r#"{"pools":[]}"#,
];

/// A random valid change: a pool (from the main pools or the tree), an
/// address, a release of either, a new tree.
fn random_change(ipam: &Ipam, rng: &mut Rng) -> Option<Change> {
    let pools: Vec<PoolId> = ipam.state().pools().map(|p| p.id.clone()).collect();
    let pick = rng.below(10);
    if pick == 9 && rng.below(3) == 0 {
        let spec = parse_tree_file(TREES[rng.below(TREES.len())].as_bytes()).ok()?;
        return ipam.plan_tree(&spec).ok().flatten();
    }
    if pick == 0 && rng.below(2) == 0 {
        let options = std::collections::HashMap::from([
            ("tags".to_string(), "t".to_string()),
            ("id".to_string(), format!("net{}", rng.below(5))),
        ]);
        let req = PoolRequest::parse("LocalDefault", "", "", false, &options).ok()?;
        return ipam.plan_pool(&req).ok();
    }
    if pools.is_empty() || pick == 0 {
        let reuse = ["immediate", "delayed"][rng.below(2)];
        let options = std::collections::HashMap::from([
            ("serial".to_string(), (rng.below(2) == 0).to_string()),
            ("reuse".to_string(), reuse.to_string()),
        ]);
        let req = PoolRequest::parse("LocalDefault", "", "", false, &options).ok()?;
        return ipam.plan_pool(&req).ok();
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
    // A gateway request for another address replaces the reserved gateway.
    let address = (pick == 6).then(|| {
        let IpAddr::V4(base) = id.subnet.addr() else {
            unreachable!("the test pools are IPv4")
        };
        IpAddr::V4((u32::from(base) + 1 + rng.below(6) as u32).into())
    });
    let req = AddressRequest {
        pool: id,
        address,
        gateway: pick == 5 || pick == 6,
        serial: false,
        mac: None,
        name: Some(format!("c{}", rng.below(100))),
    };
    ipam.plan_address(&req).ok().map(|(c, _)| c)
}

#[test]
fn taking_back_tree_changes_restores_the_state_exactly() {
    let (mut undone, mut gateways, mut trees) = (0, 0, 0);
    for seed in 1..=16u64 {
        // /29 blocks fill up quickly, so cooling lists wrap and evict.
        let settings = Settings {
            v4: vec!["10.9.0.0/26".parse().expect("net")],
            v6: vec![],
            v4ab: 29,
            v6ab: 64,
        };
        let mut ipam = Ipam::new(settings, State::new()).expect("ipam");
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        for _ in 0..300 {
            let before = json(&ipam);
            let mut undos = Vec::new();
            for _ in 0..=rng.below(4) {
                if let Some(c) = random_change(&ipam, &mut rng) {
                    if let Change::AddAddress { gateway: true, .. } = c {
                        gateways += 1;
                    }
                    if let Change::SetTree { .. } | Change::AddPoolFrom { .. } = c {
                        trees += 1;
                    }
                    undos.push(ipam.apply(&c).expect("planned changes apply"));
                }
            }
            if rng.below(3) == 0 {
                while let Some(u) = undos.pop() {
                    ipam.undo(u);
                    undone += 1;
                }
                assert_eq!(json(&ipam), before, "seed {seed}");
            }
        }
    }
    assert!(
        undone > 1000 && gateways > 100 && trees > 100,
        "{undone} undone, {gateways} gateway changes, {trees} tree changes"
    );
}

#[test]
fn a_foreign_pool_id_names_its_pool_until_taken_back() {
    let mut st = State::new();
    let id: PoolId = "LocalDefault/10.70.0.0/24".parse().expect("id");
    st.apply(&Change::AddPool {
        id: id.clone(),
        auto: true,
        serial: false,
        reuse: Reuse::default(),
        sticky: Default::default(),
        data_gateway: None,
    })
    .expect("pool");
    let before = serde_json::to_string(&st.snapshot()).expect("json");
    let alias = Change::AliasPool {
        alias: "Xq3Ebw0ZcLkT9aPf".into(),
        id: id.clone(),
    };
    let undo = st.apply(&alias).expect("alias");
    assert_eq!(st.alias("Xq3Ebw0ZcLkT9aPf"), Some(&id));
    // It survives the JSON form of the state.
    let back = State::from_snapshot(st.snapshot()).expect("reload");
    assert_eq!(back.alias("Xq3Ebw0ZcLkT9aPf"), Some(&id));
    st.undo(undo);
    assert_eq!(st.alias("Xq3Ebw0ZcLkT9aPf"), None);
    assert_eq!(serde_json::to_string(&st.snapshot()).expect("json"), before);
    // A PoolID of gipam's own, or a pool nobody holds, cannot be an alias.
    for bad in [
        Change::AliasPool {
            alias: "LocalDefault/10.71.0.0/24".into(),
            id: id.clone(),
        },
        Change::AliasPool {
            alias: "abc".into(),
            id: "LocalDefault/10.72.0.0/24".parse().expect("id"),
        },
    ] {
        assert!(st.apply(&bad).is_err(), "{bad:?}");
    }
}
