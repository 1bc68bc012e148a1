//! The on-disk formats of the local store.
//!
//! `snapshot.json` is `{"format":2,"crc":"<crc32>","body":{"next_gen":G,
//! "seq":S,"state":{…}}}`: the state after change `S`, covering every
//! journal older than generation `G`, the CRC taken over the exact bytes of
//! `body` (so the file stays one JSON document people can read). Format 1,
//! written by gipam before checksums, is `{"format":1,"next_gen":…}` and is
//! still read; the next snapshot replaces it.
//!
//! `journal.<G>.log` holds one change a line: `<crc32 hex> <seq> <json>`,
//! the CRC taken over `<seq> <json>`. A line is only ever appended whole
//! and fsync'd before its change is acknowledged, so damage in the last
//! lines of the newest journal *past the acknowledgement record* (`ack.rs`)
//! is a torn write that was never acknowledged; damage anywhere else is
//! corruption and stops the start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::ipam::{Change, Snapshot, text};

/// Snapshot file name.
pub const SNAPSHOT: &str = "snapshot.json";

/// The snapshot file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    pub next_gen: u64,
    pub seq: u64,
    pub state: Snapshot,
}

/// Format 1: the same fields beside `format`, no checksum.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotV1 {
    format: u32,
    next_gen: u64,
    seq: u64,
    state: Snapshot,
}

const SNAPSHOT_HEAD: &[u8] = br#"{"format":2,"crc":""#;
const SNAPSHOT_BODY: &[u8] = br#"","body":"#;

/// The bytes of a snapshot file (format 2).
pub fn encode_snapshot(file: &SnapshotFile) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec(file).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(SNAPSHOT_HEAD);
    out.extend_from_slice(format!("{:08x}", crc32fast::hash(&body)).as_bytes());
    out.extend_from_slice(SNAPSHOT_BODY);
    out.extend_from_slice(&body);
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// Decodes a snapshot file; the flag says it was format 1 (unverified).
pub fn decode_snapshot(path: &Path, data: &[u8]) -> Result<(SnapshotFile, bool), StoreError> {
    let corrupt = |offset: usize, reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        line: 1 + data[..offset.min(data.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        offset: offset as u64,
        reason,
    };
    let body_at = SNAPSHOT_HEAD.len() + 8 + SNAPSHOT_BODY.len();
    if let Some(rest) = data.strip_prefix(SNAPSHOT_HEAD) {
        let crc = std::str::from_utf8(rest.get(..8).unwrap_or_default())
            .ok()
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .filter(|_| rest.get(8..8 + SNAPSHOT_BODY.len()) == Some(SNAPSHOT_BODY))
            .ok_or_else(|| corrupt(SNAPSHOT_HEAD.len(), "checksum field is damaged".into()))?;
        let body = data
            .get(body_at..)
            .and_then(|b| b.strip_suffix(b"}\n"))
            .ok_or_else(|| corrupt(data.len(), "file does not end with }\\n".into()))?;
        if crc32fast::hash(body) != crc {
            return Err(corrupt(
                body_at,
                format!(
                    "checksum mismatch over bytes {body_at}..{}",
                    body_at + body.len()
                ),
            ));
        }
        let file: SnapshotFile = serde_json::from_slice(body)
            .map_err(|e| corrupt(body_at, format!("body does not parse: {e}")))?;
        return Ok((file, false));
    }
    let v1: SnapshotV1 = serde_json::from_slice(data).map_err(|e| {
        let offset = data
            .split(|b| *b == b'\n')
            .take(e.line().saturating_sub(1))
            .map(|l| l.len() + 1)
            .sum::<usize>()
            + e.column();
        corrupt(offset, e.to_string())
    })?;
    if v1.format != 1 {
        return Err(corrupt(0, format!("unknown format {}", v1.format)));
    }
    Ok((
        SnapshotFile {
            next_gen: v1.next_gen,
            seq: v1.seq,
            state: v1.state,
        },
        true,
    ))
}

/// Path of journal generation `g`.
pub fn journal_path(dir: &Path, g: u64) -> PathBuf {
    dir.join(format!("journal.{g}.log"))
}

/// Generations of the journal files in `dir`, ascending.
pub fn journal_gens(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, "read directory", e))?;
    let mut gens = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(dir, "read directory", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(g) = name
            .strip_prefix("journal.")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|g| g.parse::<u64>().ok())
        {
            gens.push(g);
        }
    }
    gens.sort_unstable();
    Ok(gens)
}

/// Appends the line for one change to `buf`. The two changes every
/// container makes (an address leased, an address released) are written by
/// hand, byte for byte what serde writes for them (a test holds the two
/// equal); the rest go through serde.
pub fn encode(buf: &mut Vec<u8>, seq: u64, change: &Change) {
    let start = buf.len();
    buf.extend_from_slice(b"00000000 ");
    let body = buf.len();
    text::push_u64(buf, seq);
    buf.push(b' ');
    if !encode_common(buf, change) {
        // Writing into a Vec cannot fail, and a Change always serialises.
        let _ = serde_json::to_writer(&mut *buf, change);
    }
    let crc = crc32fast::hash(&buf[body..]);
    let mut hex = [0u8; 8];
    text::hex8(&mut hex, crc);
    buf[start..start + 8].copy_from_slice(&hex);
    buf.push(b'\n');
}

/// The JSON of an AddAddress or ReleaseAddress (false for other changes).
fn encode_common(buf: &mut Vec<u8>, change: &Change) -> bool {
    let (op, pool, address) = match change {
        Change::AddAddress { pool, address, .. } => ("add_address", pool, address),
        Change::ReleaseAddress { pool, address } => ("release_address", pool, address),
        _ => return false,
    };
    buf.extend_from_slice(b"{\"op\":\"");
    buf.extend_from_slice(op.as_bytes());
    buf.extend_from_slice(b"\",\"pool\":\"");
    text::push_pool_id(buf, pool);
    buf.extend_from_slice(b"\",\"address\":\"");
    text::push_ip(buf, *address);
    buf.push(b'"');
    if let Change::AddAddress {
        gateway,
        dynamic,
        mac,
        name,
        ..
    } = change
    {
        if *gateway {
            buf.extend_from_slice(b",\"gateway\":true");
        }
        if *dynamic {
            buf.extend_from_slice(b",\"dynamic\":true");
        }
        if let Some(mac) = mac {
            buf.extend_from_slice(b",\"mac\":\"");
            text::push_mac(buf, mac);
            buf.push(b'"');
        }
        if let Some(name) = name {
            buf.extend_from_slice(b",\"name\":");
            // Names are the client's text: serde escapes them.
            let _ = serde_json::to_writer(&mut *buf, name);
        }
    }
    buf.push(b'}');
    true
}

/// One decoded journal line.
pub struct Entry {
    pub seq: u64,
    pub change: Change,
    /// Where it stands in the file (1-based line, byte offset), for errors.
    pub line: usize,
    pub offset: u64,
}

/// The result of reading one journal file.
pub struct Read {
    pub entries: Vec<Entry>,
    /// Length of the intact prefix; less than `data_len` when the tail is torn.
    pub good_len: u64,
    /// Length of the data, without the zeros written ahead.
    pub data_len: u64,
}

/// Decodes a journal. With `tail_from` set, damage at or after that offset
/// that no intact line follows is a torn tail and is cut off; any other
/// damage is corruption.
pub fn read(path: &Path, data: &[u8], tail_from: Option<u64>) -> Result<Read, StoreError> {
    // Zeros written ahead by the writer are not data (and a crash on some
    // filesystems leaves zeros where a write had not landed yet).
    let data = &data[..data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)];
    let data_len = data.len() as u64;
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 0usize;
    while pos < data.len() {
        line_no += 1;
        let (line, next, complete) = match data[pos..].iter().position(|b| *b == b'\n') {
            Some(n) => (&data[pos..pos + n], pos + n + 1, true),
            None => (&data[pos..], data.len(), false),
        };
        let parsed = if complete {
            decode(line)
        } else {
            Err("line is not terminated".to_string())
        };
        match parsed {
            Ok((seq, change)) => entries.push(Entry {
                seq,
                change,
                line: line_no,
                offset: pos as u64,
            }),
            Err(reason) => {
                let torn =
                    tail_from.is_some_and(|from| pos as u64 >= from) && !any_intact(&data[next..]);
                if torn {
                    return Ok(Read {
                        entries,
                        good_len: pos as u64,
                        data_len,
                    });
                }
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_no,
                    offset: pos as u64,
                    reason,
                });
            }
        }
        pos = next;
    }
    Ok(Read {
        entries,
        good_len: data_len,
        data_len,
    })
}

/// Whether any complete, intact line follows.
fn any_intact(rest: &[u8]) -> bool {
    rest.split(|b| *b == b'\n')
        .take(rest.iter().filter(|b| **b == b'\n').count())
        .any(|l| decode(l).is_ok())
}

fn decode(line: &[u8]) -> Result<(u64, Change), String> {
    let text = std::str::from_utf8(line).map_err(|_| "line is not UTF-8".to_string())?;
    let (crc, body) = text
        .split_once(' ')
        .ok_or_else(|| "line has no checksum".to_string())?;
    let want = u32::from_str_radix(crc, 16).map_err(|_| "checksum is not hex".to_string())?;
    if crc.len() != 8 || crc32fast::hash(body.as_bytes()) != want {
        return Err("checksum mismatch".into());
    }
    let (seq, json) = body
        .split_once(' ')
        .ok_or_else(|| "line has no sequence number".to_string())?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| "sequence number is not a number".to_string())?;
    let change: Change =
        serde_json::from_str(json).map_err(|e| format!("change does not parse: {e}"))?;
    Ok((seq, change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::PoolId;

    fn change(n: u8) -> Change {
        Change::ReleasePool {
            id: format!("LocalDefault/10.0.{n}.0/24").parse().expect("id"),
        }
    }

    fn journal(n: u8) -> Vec<u8> {
        let mut buf = Vec::new();
        for i in 1..=n {
            encode(&mut buf, i as u64, &change(i));
        }
        buf
    }

    /// The hand-written lines are the ones serde writes, and read back.
    #[test]
    fn address_lines_are_what_serde_writes() {
        use crate::ipam::Mac;
        let pools = [
            "LocalDefault/10.0.0.0/24",
            "GlobalDefault/10.10.0.0/16/10.10.5.0/24",
            "LocalDefault/fd00:6a:7e::/64",
        ];
        let names = [None, Some("web-1"), Some("q\"uote\\ \u{1}\u{e9}")];
        let mut n = 0u64;
        for pool in pools {
            let pool: PoolId = pool.parse().expect("id");
            for address in ["10.0.0.7", "fd00:6a:7e::1:0:0:5", "::ffff:1.2.3.4"] {
                let address: std::net::IpAddr = address.parse().expect("ip");
                let mut changes = vec![Change::ReleaseAddress {
                    pool: pool.clone(),
                    address,
                }];
                for bits in 0..8u8 {
                    for name in names {
                        changes.push(Change::AddAddress {
                            pool: pool.clone(),
                            address,
                            gateway: bits & 1 != 0,
                            dynamic: bits & 2 != 0,
                            mac: (bits & 4 != 0).then_some(Mac([2, 0x42, 0xac, 0x11, 0, 0xfe])),
                            name: name.map(String::from),
                        });
                    }
                }
                for c in changes {
                    n += 1;
                    let mut fast = Vec::new();
                    encode(&mut fast, n, &c);
                    let body = format!("{n} {}", serde_json::to_string(&c).expect("json"));
                    let slow = format!("{:08x} {body}\n", crc32fast::hash(body.as_bytes()));
                    assert_eq!(String::from_utf8_lossy(&fast), slow);
                    let back = read(Path::new("j"), &fast, None).expect("intact");
                    assert_eq!(back.entries[0].change, c);
                }
            }
        }
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let data = journal(3);
        let r = read(Path::new("j"), &data, None).expect("intact");
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.entries[2].seq, 3);
        assert_eq!(r.entries[2].change, change(3));
        assert_eq!(r.good_len, data.len() as u64);
    }

    #[test]
    fn a_torn_tail_is_cut_only_in_the_last_journal() {
        let full = journal(3);
        let cut = full.len() - 5;
        let r = read(Path::new("j"), &full[..cut], Some(0)).expect("torn tail");
        assert_eq!(r.entries.len(), 2);
        let two = journal(2);
        assert_eq!(r.good_len, two.len() as u64);
        assert!(read(Path::new("j"), &full[..cut], None).is_err());
        // Zeros after a crash on some filesystems are a torn tail too.
        let mut zeros = two.clone();
        zeros.extend_from_slice(&[0u8; 40]);
        assert_eq!(
            read(Path::new("j"), &zeros, Some(0))
                .expect("zeros")
                .entries
                .len(),
            2
        );
    }

    #[test]
    fn damage_before_the_acknowledged_end_is_corruption() {
        let full = journal(3);
        let two = journal(2).len() as u64;
        // Cut inside line 3: torn when only two lines were acknowledged,
        // corruption when all three were.
        let cut = &full[..full.len() - 5];
        assert!(read(Path::new("j"), cut, Some(two)).is_ok());
        match read(Path::new("j"), cut, Some(full.len() as u64)) {
            Err(StoreError::Corrupt { line, .. }) => assert_eq!(line, 3),
            other => panic!(
                "expected corruption, got {:?}",
                other.map(|r| r.entries.len())
            ),
        }
    }

    #[test]
    fn snapshots_carry_a_checksum_and_stay_json() {
        let file = SnapshotFile {
            next_gen: 3,
            seq: 9,
            state: Snapshot::default(),
        };
        let data = encode_snapshot(&file).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&data).expect("one JSON document");
        assert_eq!(v["body"]["seq"], 9);
        let (back, legacy) = decode_snapshot(Path::new("s"), &data).expect("decode");
        assert_eq!((back.next_gen, back.seq, legacy), (3, 9, false));
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x04;
            assert!(
                decode_snapshot(Path::new("s"), &bad).is_err(),
                "a flipped byte at {i} went unnoticed"
            );
        }
        let v1 = br#"{"format":1,"next_gen":2,"seq":5,"state":{}}"#;
        let (old, legacy) = decode_snapshot(Path::new("s"), v1).expect("format 1");
        assert_eq!((old.next_gen, old.seq, legacy), (2, 5, true));
    }

    #[test]
    fn damage_before_an_intact_line_is_corruption() {
        let mut data = journal(3);
        data[12] ^= 1;
        match read(Path::new("journal.0.log"), &data, Some(0)) {
            Err(StoreError::Corrupt { line, offset, .. }) => {
                assert_eq!(line, 1);
                assert_eq!(offset, 0);
            }
            other => panic!(
                "expected corruption, got {:?}",
                other.map(|r| r.entries.len())
            ),
        }
    }
}
