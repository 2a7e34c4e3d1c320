//! When each token last used each client IP, to tell its owner about a new
//! one: tree `request_client_ips` in the request-log database, token id ‖
//! the IP as text → the last call's time (ms, big-endian), written when a
//! pair is new or its last call moved on by an hour or more (so a busy
//! token costs one read per pair and batch, and a write an hour).
//!
//! A pair is **new** when the token had no call from that IP within the
//! retention window before this one. A token's very first IP is not: every
//! token has one, and being told of it says nothing. At most
//! [`MAX_NEW_PER_TOKEN_BATCH`] new pairs per token and batch are reported,
//! so a token used from a whole botnet at once floods no one (the rest are
//! still remembered).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use enspace_core::RequestRecord;
use ulid::Ulid;

use crate::IndexError;

pub const TREE: &str = "request_client_ips";
/// How far a pair's last call moves before it is written again.
const STEP_MS: u64 = 60 * 60 * 1000;
/// New pairs reported per token and batch, at most.
pub const MAX_NEW_PER_TOKEN_BATCH: usize = 5;
/// Longest IP text kept.
const MAX_IP: usize = 64;

/// A token's first call from an IP it had not used in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClientIp {
    pub token_id: Ulid,
    pub ip: String,
    /// The call's time (ms).
    pub at_ms: u64,
}

/// A token and a client IP.
type Pair<'a> = (Ulid, &'a str);

/// Tokens remembered as having used some IP, at most (then forgotten and
/// read again from the tree).
const KNOWN_TOKENS: usize = 100_000;

#[derive(Clone)]
pub struct ClientIps {
    tree: sled::Tree,
    /// Tokens known to have a pair in the tree: their next batch needs no
    /// scan to tell that a new IP is not their first.
    known: Arc<Mutex<HashSet<Ulid>>>,
}

fn key(token: Ulid, ip: &str) -> Vec<u8> {
    let mut key = token.to_bytes().to_vec();
    key.extend_from_slice(ip.as_bytes());
    key
}

impl ClientIps {
    pub fn open(db: &sled::Db) -> Result<Self, IndexError> {
        Ok(ClientIps {
            tree: db.open_tree(TREE)?,
            known: Arc::default(),
        })
    }

    /// Remembers the records' (token, IP) pairs, those at or after
    /// `cutoff_ms` only; answers the new ones (see the module's
    /// documentation), oldest call first per token. Nothing is flushed:
    /// the caller flushes the database before it tells anyone (a new pair
    /// is remembered durably before it is told, so that a crash does not
    /// make it new again).
    pub fn observe(
        &self,
        records: &[RequestRecord],
        cutoff_ms: u64,
        retention_ms: u64,
    ) -> Result<Vec<NewClientIp>, IndexError> {
        // (first, last) call of each pair in the batch.
        let mut pairs: HashMap<Pair<'_>, (u64, u64)> = HashMap::new();
        for r in records {
            let at_ms = u64::try_from(r.at.as_millisecond()).unwrap_or(0);
            if at_ms < cutoff_ms || r.client_ip.is_empty() || r.client_ip.len() > MAX_IP {
                continue;
            }
            let span = pairs
                .entry((r.token_id, r.client_ip.as_str()))
                .or_insert((at_ms, at_ms));
            span.0 = span.0.min(at_ms);
            span.1 = span.1.max(at_ms);
        }
        let mut sorted: Vec<(Pair<'_>, (u64, u64))> = pairs.into_iter().collect();
        sorted.sort_by_key(|((token, _), (first, _))| (*token, *first));
        let mut batch = sled::Batch::default();
        // Tokens with a pair in this batch: a second new IP of a token seen
        // for the first time here is news.
        let mut batched: HashSet<Ulid> = HashSet::new();
        let mut found = Vec::new();
        let mut per_token: HashMap<Ulid, usize> = HashMap::new();
        let mut known_tokens = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known_tokens.len() > KNOWN_TOKENS {
            known_tokens.clear();
        }
        for ((token, ip), (first, last)) in sorted {
            let k = key(token, ip);
            let stored = match self.tree.get(&k)? {
                Some(v) => {
                    Some(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                        IndexError::Corrupt("client ip last call".into())
                    })?))
                }
                None => None,
            };
            let used_before = known_tokens.contains(&token)
                || batched.contains(&token)
                || self.tree.scan_prefix(token.to_bytes()).next().is_some();
            let fresh = stored.is_none_or(|ms| ms.saturating_add(retention_ms) < first);
            if fresh && used_before {
                let n = per_token.entry(token).or_default();
                if *n < MAX_NEW_PER_TOKEN_BATCH {
                    *n += 1;
                    found.push(NewClientIp {
                        token_id: token,
                        ip: ip.to_owned(),
                        at_ms: first,
                    });
                }
            }
            if stored.is_none_or(|ms| last >= ms.saturating_add(STEP_MS) || fresh) {
                batch.insert(k, &last.max(stored.unwrap_or(0)).to_be_bytes()[..]);
            }
            batched.insert(token);
        }
        self.tree.apply_batch(batch)?;
        // Known only once in the tree: a failed batch leaves them unknown.
        known_tokens.extend(batched);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use enspace_core::RequestRecord;
    use jiff::Timestamp;

    use super::*;

    const DAY: u64 = 24 * 60 * 60 * 1000;

    fn call(token: Ulid, ip: &str, at_ms: u64) -> RequestRecord {
        RequestRecord {
            id: Ulid::new(),
            token_id: token,
            user_id: "alice".into(),
            at: Timestamp::from_millisecond(at_ms as i64).expect("ms"),
            node: "node".into(),
            method: "GET".into(),
            path: "/api/v1/workspaces/acme/records".into(),
            path_truncated: false,
            workspace: Some("acme".into()),
            status: 200,
            duration_ms: 1.0,
            client_ip: ip.into(),
            user_agent: None,
        }
    }

    #[test]
    fn a_new_ip_is_told_once_and_again_only_after_a_window_without_it() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let ips = ClientIps::open(&db).expect("open");
        let t = Ulid::new();
        let window = 90 * DAY;
        let start = 1_800_000_000_000;
        // The first IP ever is not news.
        assert!(
            ips.observe(&[call(t, "10.0.0.1", start)], 0, window)
                .expect("observe")
                .is_empty()
        );
        let new = ips
            .observe(
                &[
                    call(t, "10.0.0.2", start + 10),
                    call(t, "10.0.0.2", start + 20),
                ],
                0,
                window,
            )
            .expect("observe");
        assert_eq!(
            new,
            [NewClientIp {
                token_id: t,
                ip: "10.0.0.2".into(),
                at_ms: start + 10
            }]
        );
        assert!(
            ips.observe(&[call(t, "10.0.0.2", start + DAY)], 0, window)
                .expect("observe")
                .is_empty()
        );
        // 91 days without it: new again.
        let later = start + DAY + 91 * DAY;
        assert_eq!(
            ips.observe(&[call(t, "10.0.0.2", later)], 0, window)
                .expect("observe")
                .len(),
            1
        );
    }

    #[test]
    fn a_second_ip_in_a_token_s_first_batch_is_news_and_a_reopened_tree_remembers_the_first() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let t = Ulid::new();
        let new = ClientIps::open(&db)
            .expect("open")
            .observe(
                &[call(t, "10.0.0.1", 100), call(t, "10.0.0.2", 200)],
                0,
                DAY,
            )
            .expect("observe");
        assert_eq!(new.len(), 1, "{new:?}");
        assert_eq!(new[0].ip, "10.0.0.2");
        // Another instance (a restart) knows nothing in memory: the tree
        // says the token has used an IP before.
        let again = ClientIps::open(&db)
            .expect("open")
            .observe(&[call(t, "10.0.0.3", 300)], 0, DAY)
            .expect("observe");
        assert_eq!(again.len(), 1, "{again:?}");
    }

    #[test]
    fn a_flood_of_new_ips_reports_a_few() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let ips = ClientIps::open(&db).expect("open");
        let t = Ulid::new();
        ips.observe(&[call(t, "10.0.0.1", 1)], 0, DAY)
            .expect("observe");
        let flood: Vec<RequestRecord> = (0..1000)
            .map(|i| call(t, &format!("10.1.{}.{}", i / 256, i % 256), 2 + i))
            .collect();
        let new = ips.observe(&flood, 0, DAY).expect("observe");
        assert_eq!(new.len(), MAX_NEW_PER_TOKEN_BATCH);
        assert!(
            ips.observe(&flood, 0, DAY).expect("observe").is_empty(),
            "remembered"
        );
    }
}
