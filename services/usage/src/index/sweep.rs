//! The retention sweep: records, hourly counts and insight counters older
//! than the retention window leave the index.

use super::*;

impl RequestIndex {
    /// Deletes every record with `at` before `cutoff`, and the counts of
    /// hours that ended by then, remembering each token's last use first;
    /// returns how many records went. One seek per token, then its oldest keys.
    pub fn sweep(&self, cutoff: Timestamp) -> Result<u64, IndexError> {
        let mut known_last_used = self.lock();
        // The hours about to go must not come back from the journal.
        self.fold()?;
        let cutoff_ms = key_ms(cutoff);
        let mut removed = 0u64;
        let mut seek: Vec<u8> = JOURNAL_TOKEN.to_vec();
        seek.push(0xFF);
        loop {
            let Some(item) = self.tree.range(seek.as_slice()..).next() else {
                break;
            };
            let (key, _) = item?;
            let token = be_ulid(key.get(0..16).unwrap_or_default())?;
            let (lo, hi) = (time_key(token, 0), time_key(token, cutoff_ms));
            let mut newest_swept: Option<u64> = None;
            loop {
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for item in self.tree.range(lo..hi).take(SWEEP_CHUNK) {
                    let (key, _) = item?;
                    if key.len() == RECORD_KEY {
                        removed += 1;
                        let at_ms = be_u64(&key[16..24])?;
                        newest_swept = Some(newest_swept.map_or(at_ms, |ms| ms.max(at_ms)));
                    }
                    batch.remove(key);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                if let Some(at_ms) = newest_swept
                    && self.stored_last_used(token)?.is_none_or(|ms| ms < at_ms)
                {
                    self.last_used
                        .insert(token.to_bytes(), &at_ms.to_be_bytes()[..])?;
                    known_last_used.insert(token, at_ms);
                }
                self.tree.apply_batch(batch)?;
            }
            // Next token: the smallest key above every key of this one.
            match u128::from(token).checked_add(1) {
                Some(next) => seek = next.to_be_bytes().to_vec(),
                None => break,
            }
        }
        let counts_removed = self.drops.sweep(cutoff_ms)? + self.sweep_insights(cutoff_ms)?;
        if removed > 0 || counts_removed > 0 {
            self.db.flush()?;
        }
        Ok(removed)
    }

    /// Deletes the insights of hours and days that ended by `cutoff_ms`: one
    /// seek per token, then its oldest keys. Callers hold the writer lock,
    /// after a fold.
    fn sweep_insights(&self, cutoff_ms: u64) -> Result<usize, IndexError> {
        let Some(hours) = &self.insights else {
            return Ok(0);
        };
        // Hours and days starting before these ended by the cutoff.
        let before_hour = (cutoff_ms + 1).saturating_sub(HOUR_MS);
        let before_day = (cutoff_ms + 1).saturating_sub(DAY_MS);
        let mut removed = 0usize;
        // The first key after the nil token's (which is only `BUILT_KEY`).
        let mut seek: Vec<u8> = 1u128.to_be_bytes().to_vec();
        loop {
            let Some(item) = hours.range(seek.as_slice()..).next() else {
                break;
            };
            let (key, _) = item?;
            let token = be_ulid(key.get(0..16).unwrap_or_default())?;
            for range in [
                bucket_key(token, DAY, 0)..bucket_key(token, DAY, before_day),
                bucket_key(token, HOUR, 0)..bucket_key(token, HOUR, before_hour),
            ] {
                loop {
                    let mut batch = sled::Batch::default();
                    let mut n = 0;
                    for item in hours.range(range.clone()).take(SWEEP_CHUNK) {
                        let (key, _) = item?;
                        batch.remove(key);
                        n += 1;
                    }
                    if n == 0 {
                        break;
                    }
                    removed += n;
                    hours.apply_batch(batch)?;
                }
            }
            match u128::from(token).checked_add(1) {
                Some(next) => seek = next.to_be_bytes().to_vec(),
                None => break,
            }
        }
        Ok(removed)
    }
}
