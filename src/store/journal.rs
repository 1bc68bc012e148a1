//! The on-disk formats of the local store.
//!
//! `snapshot.json` is `{"format":1,"next_gen":G,"seq":S,"state":{…}}`: the
//! state after change `S`, covering every journal older than generation `G`.
//! `journal.<G>.log` holds one change a line: `<crc32 hex> <seq> <json>`,
//! the CRC taken over `<seq> <json>`. A line is only ever appended whole
//! and fsync'd before its change is acknowledged, so damage in the last
//! lines of the newest journal is a torn write that was never acknowledged;
//! damage anywhere else is corruption and stops the start.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::ipam::{Change, Snapshot};

/// Snapshot file name.
pub const SNAPSHOT: &str = "snapshot.json";

/// The snapshot file's content.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub format: u32,
    pub next_gen: u64,
    pub seq: u64,
    pub state: Snapshot,
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

/// Appends the line for one change to `buf`.
pub fn encode(buf: &mut Vec<u8>, seq: u64, change: &Change) {
    let start = buf.len();
    buf.extend_from_slice(b"00000000 ");
    let body = buf.len();
    // Writing into a Vec cannot fail, and a Change always serialises.
    let _ = write!(buf, "{seq} ");
    let _ = serde_json::to_writer(&mut *buf, change);
    let crc = crc32fast::hash(&buf[body..]);
    let _ = write!(&mut buf[start..start + 8], "{crc:08x}");
    buf.push(b'\n');
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

/// Decodes a journal. With `last` set, damage that no intact line follows
/// is a torn tail and is cut off; otherwise any damage is corruption.
pub fn read(path: &Path, data: &[u8], last: bool) -> Result<Read, StoreError> {
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
                let torn = last && !any_intact(&data[next..]);
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

    #[test]
    fn reads_back_what_it_wrote() {
        let data = journal(3);
        let r = read(Path::new("j"), &data, false).expect("intact");
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.entries[2].seq, 3);
        assert_eq!(r.entries[2].change, change(3));
        assert_eq!(r.good_len, data.len() as u64);
    }

    #[test]
    fn a_torn_tail_is_cut_only_in_the_last_journal() {
        let full = journal(3);
        let cut = full.len() - 5;
        let r = read(Path::new("j"), &full[..cut], true).expect("torn tail");
        assert_eq!(r.entries.len(), 2);
        let two = journal(2);
        assert_eq!(r.good_len, two.len() as u64);
        assert!(read(Path::new("j"), &full[..cut], false).is_err());
        // Zeros after a crash on some filesystems are a torn tail too.
        let mut zeros = two.clone();
        zeros.extend_from_slice(&[0u8; 40]);
        assert_eq!(
            read(Path::new("j"), &zeros, true)
                .expect("zeros")
                .entries
                .len(),
            2
        );
    }

    #[test]
    fn damage_before_an_intact_line_is_corruption() {
        let mut data = journal(3);
        data[12] ^= 1;
        match read(Path::new("journal.0.log"), &data, true) {
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
