//! The local store on its own: what it writes comes back after a reopen,
//! compaction keeps it, a torn tail is cut, damage elsewhere is reported.

use std::path::Path;

use gipam::ipam::{Change, Mac, PoolId, State};
use gipam::store::local::compact;
use gipam::store::{LocalStore, Store, StoreError};

fn pool(n: u32) -> PoolId {
    format!("LocalDefault/10.{}.{}.0/24", n / 256, n % 256)
        .parse()
        .expect("pool id")
}

fn add_address(p: &PoolId, host: u8) -> Change {
    let subnet = p.subnet.addr().to_string();
    let base = subnet.rsplit_once('.').map(|(b, _)| b).unwrap_or_default();
    Change::AddAddress {
        pool: p.clone(),
        address: format!("{base}.{host}").parse().expect("ip"),
        gateway: host == 1,
        dynamic: host > 1,
        mac: Some(Mac([2, 0x42, 0, 0, 0, host])),
        name: Some(format!("c{host}")),
    }
}

/// Commits `changes` (all queued, then awaited together) and applies them
/// to `model` too.
async fn commit_all(store: &LocalStore, model: &mut State, changes: Vec<Change>) {
    let mut pending = Vec::new();
    for c in changes {
        model.apply(&c).expect("model applies");
        pending.push(store.commit(c).1);
    }
    for p in pending {
        p.await.expect("durable");
    }
}

fn json(s: &State) -> String {
    serde_json::to_string(&s.snapshot()).expect("snapshot json")
}

fn workload(pools: std::ops::Range<u32>) -> Vec<Change> {
    let mut out = Vec::new();
    for n in pools {
        let p = pool(n);
        out.push(Change::AddPool {
            id: p.clone(),
            auto: true,
            serial: n % 2 == 0,
            reuse: Default::default(),
            sticky: Default::default(),
            data_gateway: None,
        });
        for h in 1..=20 {
            out.push(add_address(&p, h));
        }
        out.push(Change::ReleaseAddress {
            pool: p.clone(),
            address: match add_address(&p, 7) {
                Change::AddAddress { address, .. } => address,
                _ => unreachable!("built above"),
            },
        });
        if n % 5 == 4 {
            out.push(Change::ReleasePool { id: p });
        }
    }
    out
}

fn journals(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("journal."))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn what_was_committed_comes_back_after_reopen_and_compaction() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut model = State::new();
    {
        let (store, state) = LocalStore::open(dir.path()).expect("open");
        assert_eq!(state.pools().count(), 0);
        commit_all(&store, &mut model, workload(0..50)).await;
        store.close().expect("close");
    }
    let (store, state) = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(json(&state), json(&model), "journal replay");
    drop(store);

    // Fold journal 0 into the snapshot as the writer does after rotating.
    std::fs::write(dir.path().join("journal.1.log"), b"").expect("next journal");
    compact(dir.path(), 1).expect("compact");
    assert_eq!(journals(dir.path()), vec!["journal.1.log".to_string()]);
    let (store, state) = LocalStore::open(dir.path()).expect("reopen after compaction");
    assert_eq!(json(&state), json(&model), "snapshot");
    // And it keeps going from there.
    commit_all(&store, &mut model, workload(50..60)).await;
    store.close().expect("close");
    drop(store);
    let (_store, state) = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(json(&state), json(&model), "snapshot + journal");
}

#[tokio::test]
async fn a_torn_tail_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut model = State::new();
    {
        let (store, _) = LocalStore::open(dir.path()).expect("open");
        commit_all(&store, &mut model, workload(0..3)).await;
    }
    let j = dir.path().join("journal.0.log");
    let mut data = std::fs::read(&j).expect("journal");
    // The writer keeps zeros ahead of its data; a torn write lands right
    // after the data, inside them.
    let intact = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    data.truncate(intact);
    data.extend_from_slice(b"1234abcd 999 {\"op\":\"add_po");
    std::fs::write(&j, &data).expect("tear");
    let (store, state) = LocalStore::open(dir.path()).expect("torn tail is fine");
    assert_eq!(json(&state), json(&model));
    assert_eq!(
        std::fs::metadata(&j).expect("meta").len() as usize,
        intact,
        "tail cut"
    );
    // Appending after the cut works and survives another reopen.
    commit_all(
        &store,
        &mut model,
        vec![Change::ReleasePool { id: pool(0) }],
    )
    .await;
    drop(store);
    let (_s, state) = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(json(&state), json(&model));
}

#[tokio::test]
async fn damage_is_reported_with_file_and_position_and_nothing_is_replaced() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut model = State::new();
    {
        let (store, _) = LocalStore::open(dir.path()).expect("open");
        commit_all(&store, &mut model, workload(0..2)).await;
    }
    // A missing change in the middle: sequence numbers expose it.
    let j = dir.path().join("journal.0.log");
    let original = std::fs::read(&j).expect("journal");
    let lines: Vec<&[u8]> = original.split_inclusive(|b| *b == b'\n').collect();
    let gap: Vec<u8> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .flat_map(|(_, l)| l.iter().copied())
        .collect();
    std::fs::write(&j, &gap).expect("write");
    match LocalStore::open(dir.path()) {
        Err(StoreError::Corrupt { path, line, .. }) => {
            assert_eq!(path, j);
            assert_eq!(line, 4);
        }
        other => panic!("expected corruption, got {:?}", other.err()),
    }
    assert_eq!(std::fs::read(&j).expect("journal"), gap, "left as it was");

    // A damaged snapshot.
    std::fs::write(&j, &original).expect("restore");
    std::fs::write(
        dir.path().join("snapshot.json"),
        b"{\"format\":1,\"next_gen\":0,\"seq\":0,\"state\":{\"pools\":[{\"id\":",
    )
    .expect("snap");
    let e = LocalStore::open(dir.path()).err().expect("refused");
    let msg = e.to_string();
    assert!(msg.contains("snapshot.json is corrupt"), "{msg}");
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_store, _) = LocalStore::open(dir.path()).expect("open");
    match LocalStore::open(dir.path()) {
        Err(StoreError::Locked { holder, .. }) => {
            assert_eq!(holder, format!("pid {}", std::process::id()));
        }
        other => panic!("expected a lock error, got {:?}", other.err()),
    }
    // The lock is the directory's own flock: deleting every file that
    // looks like a lock does not let a second store in.
    for f in ["pid", "lock"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    assert!(matches!(
        LocalStore::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
}

#[tokio::test]
async fn concurrent_commits_share_fsyncs_and_all_become_durable() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut model = State::new();
    let (store, _) = LocalStore::open(dir.path()).expect("open");
    let p = pool(1);
    let mut changes = vec![Change::AddPool {
        id: p.clone(),
        auto: false,
        serial: false,
        reuse: Default::default(),
        sticky: Default::default(),
        data_gateway: None,
    }];
    changes.extend((1..=250).map(|h| add_address(&p, h)));
    commit_all(&store, &mut model, changes).await;
    drop(store);
    let (_s, state) = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(state.lease_count(), 250);
    assert_eq!(json(&state), json(&model));
}

#[tokio::test]
async fn the_writer_rotates_and_compacts_in_the_background() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut model = State::new();
    {
        let (store, _) = LocalStore::open_with(dir.path(), 4096).expect("open");
        let mut snapshots = 0;
        for chunk in 0..20 {
            commit_all(&store, &mut model, workload(chunk * 5..chunk * 5 + 5)).await;
            // What the service does after a commit, under its lock.
            if store.wants_snapshot() {
                store.snapshot(model.freeze());
                snapshots += 1;
            }
        }
        assert!(snapshots > 0, "the journal outgrew 4 KiB");
        // close() waits for a running compaction.
        store.close().expect("close");
    }
    assert!(
        dir.path().join("snapshot.json").exists(),
        "a snapshot was written"
    );
    let js = journals(dir.path());
    assert!(js.len() <= 2, "old journals folded away: {js:?}");
    let (_s, state) = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(json(&state), json(&model));
}
