//! Counts of request records that API nodes dropped (their queue was full),
//! per token and hour, in tree `request_drops` of the request index's
//! database: token id (16) ‖ start of the hour in ms (u64 BE) ‖ count id (16)
//! → count (u64 BE). A count delivered twice lands on its own key again, so
//! it is kept once; a window's total is one range scan of the token's hours.

use enspace_core::record::DroppedRecords;
use ulid::Ulid;

use super::layout::{HOUR_MS, key_ms};
use crate::IndexError;

pub const TREE: &str = "request_drops";
const KEY: usize = 40;

fn key(token: Ulid, hour_ms: u64, id: Ulid) -> [u8; KEY] {
    let mut key = [0u8; KEY];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16..24].copy_from_slice(&hour_ms.to_be_bytes());
    key[24..40].copy_from_slice(&id.to_bytes());
    key
}

fn bound(token: Ulid, hour_ms: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16..24].copy_from_slice(&hour_ms.to_be_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> Result<u64, IndexError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| IndexError::Corrupt("request drop count".into()))?;
    Ok(u64::from_be_bytes(array))
}

#[derive(Clone)]
pub struct DropCounts {
    tree: sled::Tree,
}

impl DropCounts {
    pub fn open(db: &sled::Db) -> Result<Self, IndexError> {
        Ok(DropCounts {
            tree: db.open_tree(TREE)?,
        })
    }

    /// Records drop counts (not flushed: the caller flushes the database).
    pub fn record(&self, drops: &[DroppedRecords]) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for d in drops {
            let hour = key_ms(d.hour);
            let hour = hour - hour % HOUR_MS;
            batch.insert(&key(d.token_id, hour, d.id)[..], &d.count.to_be_bytes()[..]);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Records of `token` dropped in the hours that `[from_ms, to_ms)` touches.
    pub fn dropped(&self, token: Ulid, from_ms: u64, to_ms: u64) -> Result<u64, IndexError> {
        if from_ms >= to_ms {
            return Ok(0);
        }
        let first_hour = from_ms - from_ms % HOUR_MS;
        let mut total = 0u64;
        for item in self
            .tree
            .range(bound(token, first_hour)..bound(token, to_ms))
        {
            let (_, value) = item?;
            total = total.saturating_add(be_u64(&value)?);
        }
        Ok(total)
    }

    /// Deletes the counts of hours that ended by `cutoff_ms`; how many.
    pub fn sweep(&self, cutoff_ms: u64) -> Result<usize, IndexError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.tree.iter() {
            let (key, _) = item?;
            let hour = be_u64(key.get(16..24).unwrap_or_default())?;
            if hour.saturating_add(HOUR_MS) <= cutoff_ms {
                batch.remove(key);
                n += 1;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> DropCounts {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("temp sled");
        DropCounts::open(&db).expect("drops")
    }

    fn drop_count(token: Ulid, hour_ms: u64, count: u64) -> DroppedRecords {
        DroppedRecords {
            id: Ulid::new(),
            token_id: token,
            hour: jiff::Timestamp::from_millisecond(hour_ms as i64).expect("ts"),
            count,
            node: "n".into(),
        }
    }

    const H: u64 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS;

    #[test]
    fn counts_add_up_per_window_once_each_and_per_token() {
        let drops = counts();
        let (token, other) = (Ulid::new(), Ulid::new());
        let first = drop_count(token, H, 94);
        drops
            .record(&[first.clone(), first, drop_count(token, H + HOUR_MS, 6)])
            .expect("record");
        drops.record(&[drop_count(other, H, 1000)]).expect("record");
        assert_eq!(drops.dropped(token, H, H + 2 * HOUR_MS).expect("sum"), 100);
        assert_eq!(
            drops.dropped(token, H + 10, H + 20).expect("sum"),
            94,
            "the hour it touches"
        );
        assert_eq!(
            drops
                .dropped(token, H + HOUR_MS, H + 2 * HOUR_MS)
                .expect("sum"),
            6
        );
        assert_eq!(
            drops
                .dropped(token, H + 2 * HOUR_MS, H + 3 * HOUR_MS)
                .expect("sum"),
            0
        );
        assert_eq!(drops.sweep(H + HOUR_MS).expect("sweep"), 2);
        assert_eq!(drops.dropped(token, H, H + 2 * HOUR_MS).expect("sum"), 6);
    }
}
