//! The committed head of the event log, `(seq, hash)`, kept outside sled in
//! a small file of its own (`<data>/event-log.head`) and synced after every
//! commit, before any of it is acknowledged.
//!
//! sled recovers a damaged log by cutting it at the first bad entry: a
//! flipped byte or a lost write makes it shorter without a word. The head
//! file does not share that recovery, so a log shorter than what was
//! committed is seen at start-up (and by `enspace audit verify`) instead of
//! resurrecting the tokens whose revocations were cut off.
//!
//! The file holds two 64-byte slots written in turn, each
//! `magic ‖ seq (u64 BE) ‖ hash ‖ CRC-32 of the rest`; the valid slot with
//! the higher `seq` counts, so a write torn by a crash leaves the other.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const HEAD_FILE: &str = "event-log.head";
const MAGIC: &[u8; 8] = b"ENSHEAD1";
const SLOT: usize = 64;

/// A committed head: the last `seq` and its chain hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
}

pub struct HeadFile {
    file: File,
    path: PathBuf,
    /// The slot the next write goes to.
    next_slot: u64,
    current: Option<Head>,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("cannot use the head file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the head file {path} is damaged: neither of its records is intact")]
    Damaged { path: PathBuf },
}

fn encode(head: &Head) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..16].copy_from_slice(&head.seq.to_be_bytes());
    slot[16..48].copy_from_slice(&head.hash);
    let crc = crc32fast::hash(&slot[..48]);
    slot[48..52].copy_from_slice(&crc.to_be_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<Head> {
    if slot.len() < 52 || &slot[..8] != MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes(slot[48..52].try_into().ok()?);
    if crc32fast::hash(&slot[..48]) != crc {
        return None;
    }
    Some(Head {
        seq: u64::from_be_bytes(slot[8..16].try_into().ok()?),
        hash: slot[16..48].try_into().ok()?,
    })
}

impl HeadFile {
    /// Opens (or creates) the head file in `dir`. `current()` is `None` for
    /// a new file.
    pub fn open(dir: &Path) -> Result<Self, HeadError> {
        let path = dir.join(HEAD_FILE);
        let io = |source| HeadError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let slots: Vec<Option<Head>> = bytes.chunks(SLOT).take(2).map(decode).collect();
        let best = slots
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|h| (i, h)))
            .max_by_key(|(_, h)| h.seq);
        if best.is_none() && !bytes.is_empty() {
            return Err(HeadError::Damaged { path });
        }
        Ok(HeadFile {
            file,
            path,
            next_slot: best.map_or(0, |(i, _)| 1 - i as u64),
            current: best.map(|(_, h)| h),
        })
    }

    /// Reads the head in `dir` without creating anything.
    pub fn read(dir: &Path) -> Result<Option<Head>, HeadError> {
        if !dir.join(HEAD_FILE).exists() {
            return Ok(None);
        }
        Ok(Self::open(dir)?.current)
    }

    pub fn current(&self) -> Option<Head> {
        self.current
    }

    /// Records `head` and waits until it is on disk.
    pub fn write(&mut self, head: Head) -> Result<(), HeadError> {
        let io = |source| HeadError::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all_at(&encode(&head), self.next_slot * SLOT as u64)
            .map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.next_slot = 1 - self.next_slot;
        self.current = Some(head);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> Head {
        Head {
            seq,
            hash: [seq as u8; 32],
        }
    }

    #[test]
    fn the_head_survives_reopening_and_the_newest_write_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = HeadFile::open(dir.path()).expect("open");
        assert_eq!(file.current(), None);
        for seq in 1..=5 {
            file.write(head(seq)).expect("write");
        }
        drop(file);
        assert_eq!(HeadFile::read(dir.path()).expect("read"), Some(head(5)));
    }

    #[test]
    fn a_torn_write_leaves_the_previous_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = HeadFile::open(dir.path()).expect("open");
        file.write(head(1)).expect("write");
        file.write(head(2)).expect("write");
        drop(file);
        // Damage the newer slot (slot 1 holds seq 2).
        let path = dir.path().join(HEAD_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[SLOT + 12] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let mut file = HeadFile::open(dir.path()).expect("open");
        assert_eq!(file.current(), Some(head(1)));
        // The next write goes over the damaged slot, not the good one.
        file.write(head(3)).expect("write");
        assert_eq!(HeadFile::read(dir.path()).expect("read"), Some(head(3)));
    }

    #[test]
    fn a_file_with_no_intact_record_is_damaged() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(HEAD_FILE), [0xab; 128]).expect("write");
        assert!(matches!(
            HeadFile::open(dir.path()),
            Err(HeadError::Damaged { .. })
        ));
    }
}
