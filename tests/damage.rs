//! Damage to the state files is always detected (issue: nothing
//! acknowledged is lost): a changed snapshot, a missing, emptied or
//! shortened journal, a raised `next_gen`, damage at the end of the
//! journal, and a random byte flipped anywhere in any state file. Each is
//! either refused, naming the file and the position, or provably harmless:
//! the state that opens is exactly the one acknowledged. Only a torn write
//! past the acknowledged end — what a crash leaves — is dropped.

mod common;

use std::path::{Path, PathBuf};

use common::Rng;
use gipam::ipam::{Change, PoolId, State};
use gipam::store::{LocalStore, Store, StoreError};

fn pool(n: u32) -> PoolId {
    format!("LocalDefault/10.{}.{}.0/24", 60 + n / 256, n % 256)
        .parse()
        .expect("pool id")
}

fn changes(pools: std::ops::Range<u32>) -> Vec<Change> {
    let mut out = Vec::new();
    for n in pools {
        let id = pool(n);
        out.push(Change::AddPool {
            id: id.clone(),
            auto: n % 2 == 0,
            serial: false,
            reuse: Default::default(),
            sticky: Default::default(),
            data_gateway: None,
        });
        for host in 1..=4u8 {
            out.push(Change::AddAddress {
                pool: id.clone(),
                address: std::net::IpAddr::from([10, 60 + (n / 256) as u8, (n % 256) as u8, host]),
                gateway: host == 1,
                dynamic: host > 1,
                mac: None,
                name: Some(format!("c{n}-{host}")),
            });
        }
    }
    out
}

fn json(s: &State) -> String {
    serde_json::to_string(&s.snapshot()).expect("json")
}

/// A state with a snapshot and a journal after it, every change
/// acknowledged and the store closed cleanly; returns its JSON.
fn build(dir: &Path) -> String {
    let mut model = State::new();
    let (store, _) = LocalStore::open_with(dir, 4096).expect("open");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for chunk in changes(0..12).chunks(10) {
        let mut waits = Vec::new();
        for c in chunk {
            model.apply(c).expect("model");
            waits.push(store.commit(c.clone()).1);
        }
        for w in waits {
            rt.block_on(w).expect("durable");
        }
        if store.wants_snapshot() {
            store.snapshot(model.freeze());
        }
    }
    store.close().expect("close");
    drop(store);
    assert!(
        dir.join("snapshot.json").exists(),
        "the fixture has a snapshot"
    );
    json(&model)
}

fn newest_journal(dir: &Path) -> PathBuf {
    let mut js: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    js.sort();
    js.pop().expect("a journal")
}

/// Opening refuses with an error that names a state file and a position.
fn assert_refused(dir: &Path, what: &str) {
    match LocalStore::open(dir) {
        Err(StoreError::Corrupt { path, .. }) => {
            assert!(path.starts_with(dir), "{what}: names {}", path.display());
            let msg = LocalStore::open(dir)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                msg.contains("line") && msg.contains("byte"),
                "{what}: {msg}"
            );
        }
        Err(e) => panic!("{what}: refused, but not as damage: {e}"),
        Ok(_) => panic!("{what}: opened a damaged state"),
    }
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut data = std::fs::read(path).expect("read");
    f(&mut data);
    std::fs::write(path, data).expect("write");
}

#[test]
fn every_named_kind_of_damage_is_refused() {
    type Damage = fn(&Path);
    let cases: &[(&str, Damage)] = &[
        ("one address changed in the snapshot", |d| {
            edit(&d.join("snapshot.json"), |data| {
                let text = String::from_utf8(data.clone()).expect("utf8");
                *data = text.replacen("10.60.0.2", "10.60.0.9", 1).into_bytes();
            })
        }),
        ("next_gen raised in the snapshot", |d| {
            edit(&d.join("snapshot.json"), |data| {
                let text = String::from_utf8(data.clone()).expect("utf8");
                let at = text.find("\"next_gen\":").expect("next_gen") + 11;
                let mut out = text.into_bytes();
                out[at] = if out[at] == b'9' { b'8' } else { out[at] + 1 };
                *data = out;
            })
        }),
        ("the journal the snapshot continues in deleted", |d| {
            std::fs::remove_file(newest_journal(d)).expect("rm")
        }),
        ("the journal emptied", |d| {
            std::fs::write(newest_journal(d), b"").expect("empty")
        }),
        ("a byte flipped in the last line", |d| {
            edit(&newest_journal(d), |data| {
                let n = data.len();
                data[n - 10] ^= 0x01;
            })
        }),
        ("the journal truncated at half", |d| {
            edit(&newest_journal(d), |data| {
                let n = data.len();
                data.truncate(n / 2);
            })
        }),
        ("zeros over the last half of the journal", |d| {
            edit(&newest_journal(d), |data| {
                let n = data.len();
                data[n / 2..].fill(0);
            })
        }),
        ("the last line cut off", |d| {
            edit(&newest_journal(d), |data| {
                data.pop();
                while data.last().is_some_and(|b| *b != b'\n') {
                    data.pop();
                }
            })
        }),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().expect("dir");
        build(dir.path());
        assert!(
            std::fs::metadata(newest_journal(dir.path()))
                .expect("journal")
                .len()
                > 0,
            "{what}: the fixture's newest journal holds changes"
        );
        damage(dir.path());
        let before: Vec<(PathBuf, Vec<u8>)> = files(dir.path());
        assert_refused(dir.path(), what);
        assert_eq!(
            files(dir.path()),
            before,
            "{what}: a refused start changes nothing"
        );
    }
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.ends_with("pid"))
        .map(|p| {
            let data = std::fs::read(&p).expect("read");
            (p, data)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_random_byte_flipped_anywhere_is_refused_or_harmless() {
    let template = tempfile::tempdir().expect("dir");
    let want = build(template.path());
    let names: Vec<PathBuf> = files(template.path()).into_iter().map(|(p, _)| p).collect();
    let mut rng = Rng::from_clock();
    let seed = rng.0;
    let (mut refused, mut harmless) = (0, 0);
    for round in 0..300 {
        let dir = tempfile::tempdir().expect("dir");
        for p in &names {
            let to = dir.path().join(p.file_name().expect("name"));
            std::fs::copy(p, to).expect("copy");
        }
        let victim = dir.path().join(rng.pick(&names).file_name().expect("name"));
        let mut data = std::fs::read(&victim).expect("read");
        if data.is_empty() {
            continue;
        }
        let at = rng.below(data.len());
        let was = data[at];
        data[at] = (was as u64 ^ (1 + rng.below(255) as u64)) as u8;
        std::fs::write(&victim, &data).expect("write");
        let what = format!(
            "seed {seed} round {round}: byte {at} of {} {was:#04x} -> {:#04x}",
            victim.display(),
            data[at]
        );
        match LocalStore::open(dir.path()) {
            Ok((_s, state)) => {
                // Only one slot of the acknowledgement record may go
                // unnoticed (a torn write of it looks the same), and then
                // the state must be exactly the acknowledged one.
                assert_eq!(json(&state), want, "{what}: opened with a different state");
                assert!(
                    victim.ends_with("acked"),
                    "{what}: damage to a state file went unnoticed"
                );
                harmless += 1;
            }
            Err(StoreError::Corrupt { path, .. }) => {
                assert!(path.starts_with(dir.path()), "{what}");
                refused += 1;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    assert!(
        refused > 0 && refused + harmless > 200,
        "{refused} refused, {harmless} harmless"
    );
}

#[test]
fn a_torn_write_past_the_acknowledged_end_is_dropped_and_nothing_else() {
    let dir = tempfile::tempdir().expect("dir");
    let want = build(dir.path());
    // A crash in the middle of the next write: part of a line, unacknowledged.
    let j = newest_journal(dir.path());
    edit(&j, |data| {
        data.extend_from_slice(b"1a2b3c4d 999 {\"op\":\"add_po")
    });
    let (_s, state) = LocalStore::open(dir.path()).expect("a torn tail is not damage");
    assert_eq!(json(&state), want);
    drop(_s);
    // The same bytes with zeros after them (some file systems do that).
    edit(&j, |data| {
        data.extend_from_slice(b"1a2b3c4d 999 {\"op\":\"add_po\0\0\0\0\0\0")
    });
    let (_s, state) = LocalStore::open(dir.path()).expect("a torn tail is not damage");
    assert_eq!(json(&state), want);
}

#[test]
fn a_state_from_before_checksums_still_opens() {
    // What gipam wrote before snapshot checksums and the acknowledgement
    // record: a format-1 snapshot and a journal after it.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("snapshot.json"),
        b"{\"format\":1,\"next_gen\":1,\"seq\":1,\"state\":{\"pools\":[{\"id\":\"LocalDefault/10.1.0.0/24\",\"leases\":[{\"address\":\"10.1.0.2\"}]}]}}\n",
    )
    .expect("snapshot");
    std::fs::write(dir.path().join("journal.1.log"), b"").expect("journal");
    let (s, state) = LocalStore::open(dir.path()).expect("opens");
    assert_eq!(state.lease_count(), 1);
    s.close().expect("close");
    assert!(dir.path().join("acked").exists(), "the record is started");
}
