//! The acknowledgement record `acked`: how far the journals were durable
//! and acknowledged when the writer last had a moment to say so.
//!
//! A journal alone cannot tell a torn, never-acknowledged last write (which
//! a crash leaves, and which is safe to drop) from damage to acknowledged
//! lines at its end (a flipped byte, a truncation, zeros): both look like a
//! bad tail. This record is the outside witness. The writer rewrites it
//! once it has been idle for [`ACK_IDLE`], at least every [`ACK_EVERY`]
//! under load, and on a clean stop; a start refuses a state whose journals
//! end before it.
//!
//! The file holds two fixed slots, written in turn, each one line
//! `gipam-ack <n> <gen> <len> <seq> <crc32>`: a write torn by a crash spoils
//! at most the slot being written, and the other still holds the previous
//! record. The one with the highest `n` and a good checksum counts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StoreError;

/// File name of the record.
pub const ACKED: &str = "acked";

/// Longest a busy writer goes without rewriting the record.
pub const ACK_EVERY: Duration = Duration::from_millis(50);

/// How long the writer must have been idle before it rewrites the record.
pub const ACK_IDLE: Duration = Duration::from_millis(5);

/// Bytes a slot takes (one disk sector each, so a torn write of one slot
/// cannot reach the other).
const SLOT: u64 = 512;

/// Acknowledged: every change up to `seq` is durable, and journal `gen`
/// holds at least `len` bytes of acknowledged lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Acked {
    pub gen_: u64,
    pub len: u64,
    pub seq: u64,
}

/// The open record, written by the journal writer.
pub struct AckFile {
    path: PathBuf,
    file: File,
    /// Number of the next record (its slot is `n % 2`).
    n: u64,
    pub last: Acked,
}

fn line(n: u64, a: &Acked) -> String {
    let body = format!("gipam-ack {n} {} {} {}", a.gen_, a.len, a.seq);
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

fn parse(slot: &[u8]) -> Option<(u64, Acked)> {
    let end = slot.iter().position(|b| *b == b'\n')?;
    let text = std::str::from_utf8(&slot[..end]).ok()?;
    let (body, crc) = text.rsplit_once(' ')?;
    if crc.len() != 8 || u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
        return None;
    }
    let mut f = body.strip_prefix("gipam-ack ")?.split(' ');
    let mut num = || f.next()?.parse::<u64>().ok();
    let (n, gen_, len, seq) = (num()?, num()?, num()?, num()?);
    Some((n, Acked { gen_, len, seq }))
}

/// Reads the record of `dir`: `Ok(None)` when there is none (a new state,
/// or one written by a gipam from before the record).
pub fn read(dir: &Path) -> Result<Option<(u64, Acked)>, StoreError> {
    let path = dir.join(ACKED);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&path, "read", e)),
    };
    let slots = [0u64, SLOT].map(|at| {
        let at = at as usize;
        data.get(at..data.len().min(at + SLOT as usize))
            .and_then(parse)
    });
    match slots.into_iter().flatten().max_by_key(|(n, _)| *n) {
        Some(best) => Ok(Some(best)),
        None => Err(StoreError::Corrupt {
            path,
            line: 1,
            offset: 0,
            reason: "neither slot of the acknowledgement record is intact".into(),
        }),
    }
}

impl AckFile {
    /// Opens (creating when missing) the record and writes `now` into it.
    pub fn open(dir: &Path, n: u64, now: Acked) -> Result<AckFile, StoreError> {
        let path = dir.join(ACKED);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::io(&path, "open", e))?;
        let mut ack = AckFile {
            path,
            file,
            n,
            last: now,
        };
        // Both slots, so that a torn next write still leaves a good one.
        ack.write(now)?;
        ack.write(now)?;
        Ok(ack)
    }

    /// Records `now` durably in the next slot.
    pub fn write(&mut self, now: Acked) -> Result<(), StoreError> {
        let text = line(self.n, &now);
        self.file
            .write_all_at(text.as_bytes(), (self.n % 2) * SLOT)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| StoreError::io(&self.path, "write", e))?;
        self.n += 1;
        self.last = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_intact_slot_counts() {
        let dir = tempfile::tempdir().expect("dir");
        let a = |seq| Acked {
            gen_: 0,
            len: seq * 10,
            seq,
        };
        let mut f = AckFile::open(dir.path(), 0, a(1)).expect("open");
        f.write(a(2)).expect("write");
        assert_eq!(read(dir.path()).expect("read").map(|r| r.1), Some(a(2)));
        // Spoil the newest slot (n = 2 went to slot 0): the other one counts.
        let path = dir.path().join(ACKED);
        let mut data = std::fs::read(&path).expect("data");
        data[12] ^= 0x20;
        std::fs::write(&path, &data).expect("spoil");
        assert_eq!(read(dir.path()).expect("read").map(|r| r.1), Some(a(1)));
        // Both spoiled: refused, naming the file.
        data[SLOT as usize + 12] ^= 0x20;
        std::fs::write(&path, &data).expect("spoil");
        assert!(matches!(read(dir.path()), Err(StoreError::Corrupt { .. })));
    }
}
