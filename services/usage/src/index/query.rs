//! Reading the request index: a token's records newest first, its hourly
//! counts over a window, its insight summary and its last use.

use super::*;

impl RequestIndex {
    /// When `token` was last used: its newest record, or what was
    /// remembered of records already swept.
    pub fn last_used(&self, token: Ulid) -> Result<Option<Timestamp>, IndexError> {
        let mut newest = self.stored_last_used(token)?;
        let lo = time_key(token, 0);
        let hi = time_key(token, u64::MAX);
        for item in self.tree.range(lo..=hi).rev() {
            let (key, _) = item?;
            if key.len() == RECORD_KEY {
                let at_ms = be_u64(&key[16..24])?;
                newest = Some(newest.map_or(at_ms, |ms| ms.max(at_ms)));
                break;
            }
        }
        Ok(newest.and_then(|ms| Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()))
    }

    /// Up to `limit` records of `token` with `from_ms <= at`, strictly
    /// before `upper` (a position) or before `to_ms`, newest first; and the
    /// position to continue from when more remain.
    pub fn query(
        &self,
        token: Ulid,
        from_ms: u64,
        upper: Upper,
        limit: usize,
    ) -> Result<(Vec<RequestRecord>, Option<Position>), IndexError> {
        let lo = record_key(token, from_ms, Ulid::nil());
        let hi = match upper {
            Upper::Before(p) => record_key(token, p.at_ms, p.id),
            Upper::To(to_ms) => record_key(token, to_ms, Ulid::nil()),
        };
        if lo >= hi {
            return Ok((Vec::new(), None));
        }
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for item in self.tree.range(lo..hi).rev() {
            let (key, value) = item?;
            if key.len() != RECORD_KEY {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(decode_record(&key, &value)?);
        }
        let next = match (more, out.last()) {
            (true, Some(last)) => Some(Position {
                at_ms: key_ms(last.at),
                id: last.id,
            }),
            _ => None,
        };
        Ok((out, next))
    }

    /// Counts per bucket of `bucket_ms` (an hour or a day, aligned to UTC),
    /// covering `[from_ms, to_ms)`; each bucket counts only the records of
    /// the window. Whole hours come from the hourly counts (one lookup
    /// each); the partial hours at either edge are counted from the records.
    pub fn stats(
        &self,
        token: Ulid,
        from_ms: u64,
        to_ms: u64,
        bucket_ms: u64,
    ) -> Result<Vec<Bucket>, IndexError> {
        if from_ms >= to_ms || bucket_ms == 0 || !bucket_ms.is_multiple_of(HOUR_MS) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // Held throughout, so that no fold moves counts under the reader.
        let pending = self.pending();
        let mut start = from_ms - from_ms % bucket_ms;
        while start < to_ms {
            let (a, e) = (start.max(from_ms), (start + bucket_ms).min(to_ms));
            let mut counts = Counts::default();
            let mut hour = a - a % HOUR_MS;
            while hour < e {
                let (ha, he) = (hour.max(a), (hour + HOUR_MS).min(e));
                if ha == hour && he == hour + HOUR_MS {
                    let key = hour_key(token, hour);
                    if let Some(bytes) = self.tree.get(key)? {
                        counts.add(Counts::decode(&bytes)?);
                    }
                    counts.add(pending.get(&key));
                } else {
                    counts.add(self.count_records(token, ha, he)?);
                }
                hour += HOUR_MS;
            }
            out.push(Bucket {
                start_ms: start,
                counts,
            });
            start += bucket_ms;
        }
        Ok(out)
    }

    fn count_records(&self, token: Ulid, from_ms: u64, to_ms: u64) -> Result<Counts, IndexError> {
        let mut counts = Counts::default();
        for item in self
            .tree
            .range(time_key(token, from_ms)..time_key(token, to_ms))
        {
            let (key, value) = item?;
            if key.len() == RECORD_KEY {
                counts.add_status(stored_status(&value)?);
            }
        }
        Ok(counts)
    }

    /// What `token`'s calls at or after `cutoff_ms` used and were refused
    /// (see `insights.rs`): the stored days after the cutoff's day, the
    /// stored hours between the cutoff's hour and that day, what is
    /// journaled and not yet folded of any hour after the cutoff's, and the
    /// records of the cutoff's own hour from the cutoff on, counted one by
    /// one. Empty when the index keeps no insights.
    pub fn insights(&self, token: Ulid, cutoff_ms: u64) -> Result<Summary, IndexError> {
        let mut summary = Summary::default();
        let Some(hours) = &self.insights else {
            return Ok(summary);
        };
        // Held throughout, so that no fold moves counters under the reader.
        let pending = self.pending();
        let partial = !cutoff_ms.is_multiple_of(HOUR_MS);
        let first_whole = if partial {
            cutoff_ms - cutoff_ms % HOUR_MS + HOUR_MS
        } else {
            cutoff_ms
        };
        if partial {
            let mut edge = HourInsight::default();
            for item in self
                .tree
                .range(time_key(token, cutoff_ms)..time_key(token, first_whole))
            {
                let (key, value) = item?;
                if key.len() == RECORD_KEY {
                    let call = stored_call(&value)?;
                    let at_ms = be_u64(&key[16..24])?;
                    edge.add_call(
                        call.method,
                        call.workspace,
                        call.status,
                        call.client_ip,
                        at_ms,
                    );
                }
            }
            summary.add_hour(&edge);
        }
        let first_day = first_whole.div_ceil(DAY_MS) * DAY_MS;
        for item in hours
            .range(bucket_key(token, HOUR, first_whole)..bucket_key(token, HOUR, first_day))
            .chain(
                hours.range(bucket_key(token, DAY, first_day)..=bucket_key(token, DAY, u64::MAX)),
            )
        {
            let (_, value) = item?;
            summary.add_encoded(&value)?;
        }
        if let Some(journaled) = pending.insights.get(&token) {
            for (_, hour) in journaled.range(first_whole..) {
                summary.add_hour(hour);
            }
        }
        Ok(summary)
    }

    /// Records in the index for `token` (all of them; for tests and tools).
    pub fn count(&self, token: Ulid) -> Result<usize, IndexError> {
        let mut n = 0;
        for item in self.tree.scan_prefix(token.to_bytes()) {
            let (key, _) = item?;
            n += usize::from(key.len() == RECORD_KEY);
        }
        Ok(n)
    }

    pub fn len(&self) -> Result<usize, IndexError> {
        let mut n = 0;
        for item in self.tree.iter() {
            let (key, _) = item?;
            n += usize::from(key.len() == RECORD_KEY);
        }
        Ok(n)
    }

    pub fn is_empty(&self) -> Result<bool, IndexError> {
        for item in self.tree.iter() {
            let (key, _) = item?;
            if key.len() == RECORD_KEY {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
