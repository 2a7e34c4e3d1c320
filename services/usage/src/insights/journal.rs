//! The insight counters' journal entries: a batch's insights per token and
//! hour, as written beside the hourly counts and folded with them.

use super::*;

/// A batch's insights per token and hour.
pub type Deltas = HashMap<Ulid, BTreeMap<u64, HourInsight>>;

/// A batch's insights as a journal entry: (token, hour ms, `u32` length,
/// encoded [`HourInsight`]) after one another.
pub fn encode_entry(deltas: &Deltas) -> Vec<u8> {
    let mut out = Vec::new();
    for (token, hours) in deltas {
        for (hour_ms, insight) in hours {
            let value = insight.encode();
            out.extend_from_slice(&token.to_bytes());
            out.extend_from_slice(&hour_ms.to_be_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(&value);
        }
    }
    out
}

pub fn decode_entry(bytes: &[u8]) -> Result<Deltas, IndexError> {
    let mut deltas = Deltas::new();
    let mut r = Reader(bytes);
    while !r.0.is_empty() {
        let key = r.take(ENTRY_KEY)?;
        let token: [u8; 16] = key[0..16].try_into().map_err(|_| corrupt())?;
        let hour: [u8; 8] = key[16..24].try_into().map_err(|_| corrupt())?;
        let len: [u8; 4] = r.take(4)?.try_into().map_err(|_| corrupt())?;
        let value = r.take(u32::from_be_bytes(len) as usize)?;
        deltas
            .entry(Ulid::from_bytes(token))
            .or_default()
            .entry(u64::from_be_bytes(hour))
            .or_default()
            .merge(&HourInsight::decode(value)?);
    }
    Ok(deltas)
}

/// The days of token-hours, each the sum of its hours.
pub fn days_of(deltas: &Deltas) -> HashMap<BucketKey, HourInsight> {
    let mut days: HashMap<BucketKey, HourInsight> = HashMap::new();
    for (token, hours) in deltas {
        for (hour_ms, insight) in hours {
            let day = hour_ms - hour_ms % crate::layout::DAY_MS;
            days.entry(bucket_key(*token, DAY, day))
                .or_default()
                .merge(insight);
        }
    }
    days
}

/// Adds a batch's insights to the pending sum.
pub fn add_deltas(into: &mut Deltas, from: Deltas) {
    for (token, hours) in from {
        let mine = into.entry(token).or_default();
        for (hour, insight) in hours {
            match mine.get_mut(&hour) {
                Some(known) => known.merge(&insight),
                None => {
                    mine.insert(hour, insight);
                }
            }
        }
    }
}
