//! Insight counters: per token and hour, what a token's calls used and were
//! refused, for `GET /v1/tokens/{id}/insights`, kept as the indexer ingests
//! so that a read never scans the records of the retention window.
//!
//! A call's scope follows the API node's rule (GET/HEAD/OPTIONS read, DELETE
//! delete, anything else write) and its outcome its status: `403` is
//! **denied** (the node refused the scope or the workspace; no handler of
//! the node answers 403 otherwise), `401` (a known token, but revoked or
//! expired) and `429` (rate limited, decided before the scope is looked at)
//! say nothing about the scope or workspace and are counted apart, and every
//! other status is **allowed** (the call passed both checks, whatever the
//! handler then answered).
//!
//! One token-hour is one [`HourInsight`]: per scope and per workspace the
//! allowed and denied calls and the newest of each, the 401s and 429s, and
//! per client IP its calls, first and last time. It is stored as one value
//! in the tree `request_insights` under token id (16) ‖ `H` ‖ the hour's
//! first ms (u64 BE), in the versioned binary layout of
//! [`HourInsight::encode`]; and the sum of each token-day likewise under
//! token id ‖ `D` ‖ the day's first ms (UTC). A read over 90 days adds up at
//! most 90 days, 23 hours and the records of one hour, not 2,160 hours.
//! Like the hourly counts (`counts.rs`), a batch's insights go into a
//! journal entry in the same atomic sled batch as its records (key: the nil
//! token ‖ seq ‖ `0x01`, beside the counts' entry of the same seq) and are
//! folded into the hour values, together with the counts, in one
//! transaction over both trees: a record is counted exactly when it is
//! indexed.
//!
//! Bounded per token-hour: at most [`MAX_WORKSPACES`] workspaces and
//! [`MAX_IPS`] client IPs are kept apart; calls beyond them (someone
//! spraying workspace names or addresses) are counted in the totals only.

use std::collections::{BTreeMap, HashMap};

use enspace_core::{RequestRecord, Scope};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::IndexError;

mod journal;
pub use journal::{Deltas, add_deltas, days_of, decode_entry, encode_entry};

/// The insight tree's name.
pub const TREE: &str = "request_insights";
/// Workspaces kept apart per token-hour.
pub const MAX_WORKSPACES: usize = 64;
/// Client IPs kept apart per token-hour.
pub const MAX_IPS: usize = 256;
/// Longest workspace name or IP kept (longer ones count in the totals only).
const MAX_NAME: usize = 255;
/// The layout written: 2 adds each client IP's allowed calls (for the
/// suggested address ranges); 1 is still read (its IPs' allowed calls read
/// as none, so an address seen only before the upgrade is never suggested).
const VERSION: u8 = 2;
/// The key of a token-hour's or token-day's insights.
pub const BUCKET_KEY: usize = 25;
pub type BucketKey = [u8; BUCKET_KEY];
/// The span byte of an hour's key.
pub const HOUR: u8 = b'H';
/// The span byte of a day's key.
pub const DAY: u8 = b'D';

/// token ‖ span ([`HOUR`] or [`DAY`]) ‖ the span's first ms.
pub fn bucket_key(token: Ulid, span: u8, start_ms: u64) -> BucketKey {
    let mut key = [0u8; BUCKET_KEY];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16] = span;
    key[17..25].copy_from_slice(&start_ms.to_be_bytes());
    key
}

/// A token-hour in a journal entry: token ‖ the hour's first ms.
const ENTRY_KEY: usize = 24;

/// The journal key of a batch's insights, in the request-log tree: the
/// counts' journal key of the same seq, then `0x01`.
pub fn journal_key(seq: u64) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[16..24].copy_from_slice(&seq.to_be_bytes());
    key[24] = 0x01;
    key
}

/// The key in the insight tree that says it holds every indexed record
/// (written once it has been built from the records already indexed): the
/// nil token, which no token ever is, at hour 0.
pub const BUILT_KEY: BucketKey = [0; BUCKET_KEY];

/// The scope a call needs, as the API node decides it
/// (`enspace_api_node::auth::scope_for`).
pub fn scope_of(method: &str) -> Scope {
    match method {
        "GET" | "HEAD" | "OPTIONS" => Scope::Read,
        "DELETE" => Scope::Delete,
        _ => Scope::Write,
    }
}

/// What the node did with a call, from its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
    InvalidToken,
    RateLimited,
}

impl Outcome {
    pub fn of_status(status: u16) -> Outcome {
        match status {
            403 => Outcome::Denied,
            401 => Outcome::InvalidToken,
            429 => Outcome::RateLimited,
            _ => Outcome::Allowed,
        }
    }
}

fn scope_index(scope: Scope) -> usize {
    match scope {
        Scope::Read => 0,
        Scope::Write => 1,
        Scope::Delete => 2,
    }
}

/// Allowed and denied calls and the newest of each (ms; 0 when none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub allowed: u64,
    pub denied: u64,
    pub last_allowed_ms: u64,
    pub last_denied_ms: u64,
}

impl Tally {
    fn add_call(&mut self, outcome: Outcome, at_ms: u64) {
        match outcome {
            Outcome::Allowed => {
                self.allowed += 1;
                self.last_allowed_ms = self.last_allowed_ms.max(at_ms);
            }
            Outcome::Denied => {
                self.denied += 1;
                self.last_denied_ms = self.last_denied_ms.max(at_ms);
            }
            Outcome::InvalidToken | Outcome::RateLimited => {}
        }
    }

    pub fn add(&mut self, other: &Tally) {
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.last_allowed_ms = self.last_allowed_ms.max(other.last_allowed_ms);
        self.last_denied_ms = self.last_denied_ms.max(other.last_denied_ms);
    }

    fn is_zero(&self) -> bool {
        *self == Tally::default()
    }

    fn write(&self, out: &mut Vec<u8>) {
        for n in [
            self.allowed,
            self.denied,
            self.last_allowed_ms,
            self.last_denied_ms,
        ] {
            varint(out, n);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Tally, IndexError> {
        Ok(Tally {
            allowed: r.varint()?,
            denied: r.varint()?,
            last_allowed_ms: r.varint()?,
            last_denied_ms: r.varint()?,
        })
    }
}

/// A client IP's calls, how many of them were allowed, and the first and
/// last of them (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub count: u64,
    /// Calls allowed (outcome [`Outcome::Allowed`]); 0 for hours stored
    /// before layout version 2.
    pub allowed: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

impl Seen {
    fn once(at_ms: u64, allowed: bool) -> Seen {
        Seen {
            count: 1,
            allowed: u64::from(allowed),
            first_ms: at_ms,
            last_ms: at_ms,
        }
    }

    pub fn add(&mut self, other: &Seen) {
        self.count += other.count;
        self.allowed += other.allowed;
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
    }
}

/// One token-hour's insight counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourInsight {
    /// Read, write, delete.
    pub scopes: [Tally; 3],
    /// Calls that named a workspace, per workspace (at most
    /// [`MAX_WORKSPACES`]).
    pub workspaces: Vec<(String, Tally)>,
    /// Calls to workspaces beyond those kept apart.
    pub other_workspaces: Tally,
    /// Calls answered 401 (the token revoked or expired).
    pub invalid_token: u64,
    /// Calls answered 429.
    pub rate_limited: u64,
    /// Calls per client IP (at most [`MAX_IPS`]).
    pub ips: BTreeMap<String, Seen>,
    /// Calls from IPs beyond those kept apart.
    pub other_ip_calls: u64,
}

impl HourInsight {
    /// Counts one call.
    pub fn add_record(&mut self, r: &RequestRecord, at_ms: u64) {
        self.add_call(
            &r.method,
            r.workspace.as_deref(),
            r.status,
            &r.client_ip,
            at_ms,
        );
    }

    /// Counts one call, given what of it counts.
    pub fn add_call(
        &mut self,
        method: &str,
        workspace: Option<&str>,
        status: u16,
        client_ip: &str,
        at_ms: u64,
    ) {
        let outcome = Outcome::of_status(status);
        match outcome {
            Outcome::InvalidToken => self.invalid_token += 1,
            Outcome::RateLimited => self.rate_limited += 1,
            Outcome::Allowed | Outcome::Denied => {
                self.scopes[scope_index(scope_of(method))].add_call(outcome, at_ms);
                if let Some(ws) = workspace {
                    self.workspace(ws).add_call(outcome, at_ms);
                }
            }
        }
        self.add_ip(client_ip, &Seen::once(at_ms, outcome == Outcome::Allowed));
    }

    fn workspace(&mut self, ws: &str) -> &mut Tally {
        let found = self.workspaces.iter().position(|(name, _)| name == ws);
        match found {
            Some(i) => &mut self.workspaces[i].1,
            None if self.workspaces.len() < MAX_WORKSPACES && ws.len() <= MAX_NAME => {
                self.workspaces.push((ws.to_owned(), Tally::default()));
                let last = self.workspaces.len() - 1;
                &mut self.workspaces[last].1
            }
            None => &mut self.other_workspaces,
        }
    }

    fn add_ip(&mut self, ip: &str, seen: &Seen) {
        if let Some(known) = self.ips.get_mut(ip) {
            known.add(seen);
        } else if self.ips.len() < MAX_IPS && ip.len() <= MAX_NAME {
            self.ips.insert(ip.to_owned(), *seen);
        } else {
            self.other_ip_calls += seen.count;
        }
    }

    /// Adds another token-hour's counters (of the same token and hour).
    pub fn merge(&mut self, other: &HourInsight) {
        for (mine, theirs) in self.scopes.iter_mut().zip(&other.scopes) {
            mine.add(theirs);
        }
        for (ws, tally) in &other.workspaces {
            self.workspace(ws).add(tally);
        }
        self.other_workspaces.add(&other.other_workspaces);
        self.invalid_token += other.invalid_token;
        self.rate_limited += other.rate_limited;
        for (ip, seen) in &other.ips {
            self.add_ip(ip, seen);
        }
        self.other_ip_calls += other.other_ip_calls;
    }

    /// Version 1, compact (a batch journals one of these per token-hour it
    /// touches, most of them holding a call or two): `1`, a byte whose bits
    /// 0–2 say which scope tallies follow, bit 3 the other-workspaces tally,
    /// bits 4–6 the 401s, 429s and other-IP calls; those present; then the
    /// workspaces (count, then `u8` length, name, tally each) and the IPs
    /// (count, then `u8` length, IP, calls, allowed calls (version 2 on),
    /// first ms, last minus first ms).
    /// Integers are LEB128 varints, a tally four of them. A later layout
    /// gets a new version and a second decoder.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.workspaces.len() * 24 + self.ips.len() * 32);
        out.push(VERSION);
        let totals = [self.invalid_token, self.rate_limited, self.other_ip_calls];
        let mut mask = 0u8;
        for (i, tally) in self.scopes.iter().enumerate() {
            mask |= u8::from(!tally.is_zero()) << i;
        }
        mask |= u8::from(!self.other_workspaces.is_zero()) << 3;
        for (i, n) in totals.iter().enumerate() {
            mask |= u8::from(*n != 0) << (4 + i);
        }
        out.push(mask);
        for tally in self.scopes.iter().chain([&self.other_workspaces]) {
            if !tally.is_zero() {
                tally.write(&mut out);
            }
        }
        for n in totals {
            if n != 0 {
                varint(&mut out, n);
            }
        }
        // Names are kept below 256 bytes.
        varint(&mut out, self.workspaces.len() as u64);
        for (ws, tally) in &self.workspaces {
            out.push(ws.len() as u8);
            out.extend_from_slice(ws.as_bytes());
            tally.write(&mut out);
        }
        varint(&mut out, self.ips.len() as u64);
        for (ip, seen) in &self.ips {
            out.push(ip.len() as u8);
            out.extend_from_slice(ip.as_bytes());
            varint(&mut out, seen.count);
            varint(&mut out, seen.allowed);
            varint(&mut out, seen.first_ms);
            varint(&mut out, seen.last_ms.saturating_sub(seen.first_ms));
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<HourInsight, IndexError> {
        let mut hour = HourInsight::default();
        visit(bytes, &mut hour)?;
        Ok(hour)
    }
}

/// What reading a stored token-hour reports, piece by piece, so that a
/// summary over many hours can take it without building each hour first.
trait Visitor {
    fn scope(&mut self, index: usize, tally: Tally);
    fn other_workspaces(&mut self, tally: Tally);
    fn totals(&mut self, invalid_token: u64, rate_limited: u64, other_ip_calls: u64);
    fn workspace(&mut self, ws: &str, tally: Tally);
    fn ip(&mut self, ip: &str, seen: Seen);
}

impl Visitor for HourInsight {
    fn scope(&mut self, index: usize, tally: Tally) {
        self.scopes[index].add(&tally);
    }
    fn other_workspaces(&mut self, tally: Tally) {
        self.other_workspaces.add(&tally);
    }
    fn totals(&mut self, invalid_token: u64, rate_limited: u64, other_ip_calls: u64) {
        self.invalid_token += invalid_token;
        self.rate_limited += rate_limited;
        self.other_ip_calls += other_ip_calls;
    }
    fn workspace(&mut self, ws: &str, tally: Tally) {
        self.workspace(ws).add(&tally);
    }
    fn ip(&mut self, ip: &str, seen: Seen) {
        self.add_ip(ip, &seen);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, IndexError> {
        Ok(self.take(1)?[0])
    }
    fn varint(&mut self) -> Result<u64, IndexError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= u64::from(b & 0x7F)
                .checked_shl(shift)
                .filter(|v| v >> shift == u64::from(b & 0x7F))
                .ok_or_else(corrupt)?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(corrupt())
    }
    fn str(&mut self) -> Result<&'a str, IndexError> {
        let n = usize::from(self.u8()?);
        std::str::from_utf8(self.take(n)?).map_err(|_| corrupt())
    }
}

/// `n` as an LEB128 varint.
fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn corrupt() -> IndexError {
    IndexError::Corrupt("request insights".into())
}

fn visit(bytes: &[u8], to: &mut impl Visitor) -> Result<(), IndexError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != 1 && version != VERSION {
        return Err(IndexError::Corrupt(format!(
            "request insights layout version {version}"
        )));
    }
    let mask = r.u8()?;
    if mask & 0x80 != 0 {
        return Err(corrupt());
    }
    let present = |bit: u8| mask & (1 << bit) != 0;
    for i in 0..3 {
        if present(i as u8) {
            to.scope(i, Tally::read(&mut r)?);
        }
    }
    if present(3) {
        to.other_workspaces(Tally::read(&mut r)?);
    }
    let mut totals = [0u64; 3];
    for (i, n) in totals.iter_mut().enumerate() {
        if present(4 + i as u8) {
            *n = r.varint()?;
        }
    }
    to.totals(totals[0], totals[1], totals[2]);
    for _ in 0..r.varint()? {
        let ws = r.str()?;
        to.workspace(ws, Tally::read(&mut r)?);
    }
    for _ in 0..r.varint()? {
        let ip = r.str()?;
        let count = r.varint()?;
        let allowed = if version >= 2 { r.varint()? } else { 0 };
        let first_ms = r.varint()?;
        let last_ms = first_ms.checked_add(r.varint()?).ok_or_else(corrupt)?;
        to.ip(
            ip,
            Seen {
                count,
                allowed,
                first_ms,
                last_ms,
            },
        );
    }
    if !r.0.is_empty() {
        return Err(corrupt());
    }
    Ok(())
}

/// A token's insights over a window: the sum of its hours, with no bound on
/// the workspaces and IPs it keeps apart (serde: as a forwarded read's
/// answer, see `reads`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub scopes: [Tally; 3],
    pub workspaces: HashMap<String, Tally>,
    pub other_workspaces: Tally,
    pub invalid_token: u64,
    pub rate_limited: u64,
    pub ips: HashMap<String, Seen>,
    pub other_ip_calls: u64,
}

impl Summary {
    pub fn scope(&self, scope: Scope) -> Tally {
        self.scopes[scope_index(scope)]
    }

    /// Adds a stored token-hour.
    pub fn add_encoded(&mut self, bytes: &[u8]) -> Result<(), IndexError> {
        visit(bytes, self)
    }

    pub fn add_hour(&mut self, hour: &HourInsight) {
        for (i, tally) in hour.scopes.iter().enumerate() {
            self.scope(i, *tally);
        }
        self.other_workspaces(hour.other_workspaces);
        self.totals(hour.invalid_token, hour.rate_limited, hour.other_ip_calls);
        for (ws, tally) in &hour.workspaces {
            Visitor::workspace(self, ws, *tally);
        }
        for (ip, seen) in &hour.ips {
            Visitor::ip(self, ip, *seen);
        }
    }
}

impl Visitor for Summary {
    fn scope(&mut self, index: usize, tally: Tally) {
        self.scopes[index].add(&tally);
    }
    fn other_workspaces(&mut self, tally: Tally) {
        self.other_workspaces.add(&tally);
    }
    fn totals(&mut self, invalid_token: u64, rate_limited: u64, other_ip_calls: u64) {
        self.invalid_token += invalid_token;
        self.rate_limited += rate_limited;
        self.other_ip_calls += other_ip_calls;
    }
    fn workspace(&mut self, ws: &str, tally: Tally) {
        match self.workspaces.get_mut(ws) {
            Some(known) => known.add(&tally),
            None => {
                self.workspaces.insert(ws.to_owned(), tally);
            }
        }
    }
    fn ip(&mut self, ip: &str, seen: Seen) {
        match self.ips.get_mut(ip) {
            Some(known) => known.add(&seen),
            None => {
                self.ips.insert(ip.to_owned(), seen);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn record(method: &str, ws: Option<&str>, status: u16, ip: &str) -> RequestRecord {
        RequestRecord {
            id: Ulid::new(),
            token_id: Ulid::nil(),
            user_id: "alice".into(),
            at: Timestamp::UNIX_EPOCH,
            node: "n".into(),
            method: method.into(),
            path: "/".into(),
            path_truncated: false,
            workspace: ws.map(Into::into),
            status,
            duration_ms: 0.0,
            client_ip: ip.into(),
            user_agent: None,
        }
    }

    fn sample() -> HourInsight {
        let mut hour = HourInsight::default();
        hour.add_record(&record("GET", Some("acme"), 200, "10.0.0.1"), 10);
        hour.add_record(&record("GET", Some("acme"), 404, "10.0.0.2"), 20);
        hour.add_record(&record("DELETE", Some("acme"), 403, "10.0.0.1"), 30);
        hour.add_record(&record("GET", Some("globex"), 403, "10.0.0.1"), 5);
        hour.add_record(&record("POST", None, 201, "::1"), 40);
        hour.add_record(&record("GET", Some("acme"), 401, "10.0.0.3"), 50);
        hour.add_record(&record("PUT", Some("acme"), 429, "10.0.0.3"), 60);
        hour
    }

    #[test]
    fn calls_are_counted_by_scope_workspace_outcome_and_ip() {
        let hour = sample();
        let t = |allowed, denied, last_allowed_ms, last_denied_ms| Tally {
            allowed,
            denied,
            last_allowed_ms,
            last_denied_ms,
        };
        assert_eq!(
            hour.scopes,
            [t(2, 1, 20, 5), t(1, 0, 40, 0), t(0, 1, 0, 30)]
        );
        assert_eq!(
            hour.workspaces,
            vec![
                ("acme".into(), t(2, 1, 20, 30)),
                ("globex".into(), t(0, 1, 0, 5))
            ]
        );
        assert_eq!((hour.invalid_token, hour.rate_limited), (1, 1));
        assert_eq!(
            hour.ips["10.0.0.1"],
            Seen {
                count: 3,
                allowed: 1,
                first_ms: 5,
                last_ms: 30
            }
        );
        assert_eq!(hour.ips.len(), 4);
    }

    #[test]
    fn scope_follows_the_api_nodes_rule() {
        for (method, scope) in [
            ("GET", Scope::Read),
            ("HEAD", Scope::Read),
            ("OPTIONS", Scope::Read),
            ("POST", Scope::Write),
            ("PUT", Scope::Write),
            ("PATCH", Scope::Write),
            ("DELETE", Scope::Delete),
        ] {
            assert_eq!(scope_of(method), scope, "{method}");
        }
    }

    #[test]
    fn an_hour_round_trips_and_garbage_is_corrupt() {
        let hour = sample();
        let bytes = hour.encode();
        assert_eq!(HourInsight::decode(&bytes).expect("decode"), hour);
        assert_eq!(
            HourInsight::decode(&HourInsight::default().encode()).expect("empty"),
            HourInsight::default()
        );
        for cut in 0..bytes.len() {
            assert!(HourInsight::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(HourInsight::decode(&longer).is_err());
        let mut other_version = bytes;
        other_version[0] = 3;
        assert!(HourInsight::decode(&other_version).is_err());
    }

    /// The layout is what is on disk: this fixture, written by layout 1,
    /// must keep decoding (its IP's allowed calls unknown, so none).
    #[test]
    fn version_1_fixture_decodes() {
        let mut hour = HourInsight::default();
        hour.add_record(&record("GET", Some("ws"), 200, "1.2.3.4"), 7);
        let v2 = hex::encode(hour.encode());
        if let Some(ip) = hour.ips.get_mut("1.2.3.4") {
            ip.allowed = 0;
        }
        let fixture = concat!(
            "01",
            "01", // version, mask: the read tally only
            "01",
            "00",
            "07",
            "00", // read: 1 allowed, last at 7 ms
            "01",
            "02",
            "7773", // one workspace, "ws"
            "01",
            "00",
            "07",
            "00", // its tally
            "01",
            "07",
            "312e322e332e34", // one IP, "1.2.3.4"
            "01",
            "07",
            "00", // 1 call, first at 7 ms, last 0 ms later
        );
        let bytes = hex::decode(fixture).expect("hex");
        assert_eq!(HourInsight::decode(&bytes).expect("decode"), hour);
        // Layout 2: the same, with version 2 and the IP's 1 allowed call
        // after its count.
        let fixture_2 = fixture
            .replacen("01", "02", 1)
            .replace("312e322e332e340107", "312e322e332e34010107");
        assert_eq!(v2, fixture_2);
        // Big numbers take more varint bytes and still read back.
        let mut big = hour.clone();
        big.scopes[2].denied = u64::MAX;
        big.scopes[2].last_denied_ms = 1_790_000_000_000;
        assert_eq!(HourInsight::decode(&big.encode()).expect("decode"), big);
        // An overlong varint is corrupt.
        assert!(
            HourInsight::decode(&[
                1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F
            ])
            .is_err()
        );
    }

    #[test]
    fn merging_adds_and_keeps_the_newest_and_oldest() {
        let mut a = sample();
        let b = sample();
        a.merge(&b);
        assert_eq!(a.scopes[0].allowed, 4);
        assert_eq!(a.ips["10.0.0.1"].count, 6);
        let mut summary = Summary::default();
        summary.add_encoded(&sample().encode()).expect("add");
        summary.add_hour(&sample());
        assert_eq!(summary.scope(Scope::Read), a.scopes[0]);
        assert_eq!(summary.workspaces["acme"], a.workspaces[0].1);
        assert_eq!(summary.ips["::1"].count, 2);
    }

    #[test]
    fn workspaces_and_ips_beyond_the_bound_count_in_the_totals_only() {
        let mut hour = HourInsight::default();
        for i in 0..(MAX_IPS + 10) {
            hour.add_record(
                &record(
                    "GET",
                    Some(&format!("ws{i}")),
                    403,
                    &format!("10.1.{}.{}", i / 256, i % 256),
                ),
                1,
            );
        }
        assert_eq!(hour.workspaces.len(), MAX_WORKSPACES);
        assert_eq!(
            hour.other_workspaces.denied,
            (MAX_IPS + 10 - MAX_WORKSPACES) as u64
        );
        assert_eq!(hour.ips.len(), MAX_IPS);
        assert_eq!(hour.other_ip_calls, 10);
        assert_eq!(hour.scopes[0].denied, (MAX_IPS + 10) as u64);
        let long = "x".repeat(300);
        hour.add_record(&record("GET", Some(&long), 200, &long), 2);
        assert_eq!(hour.other_ip_calls, 11);
        assert_eq!(HourInsight::decode(&hour.encode()).expect("decode"), hour);
    }

    #[test]
    fn a_journal_entry_round_trips() {
        let (t1, t2) = (Ulid::new(), Ulid::new());
        let mut deltas = Deltas::new();
        deltas.entry(t1).or_default().insert(0, sample());
        deltas
            .entry(t1)
            .or_default()
            .insert(3_600_000, HourInsight::default());
        deltas.entry(t2).or_default().insert(7_200_000, sample());
        assert_eq!(
            decode_entry(&encode_entry(&deltas)).expect("decode"),
            deltas
        );
        assert!(decode_entry(&[1, 2, 3]).is_err());
        let mut sum = Deltas::new();
        add_deltas(&mut sum, deltas.clone());
        add_deltas(&mut sum, deltas);
        assert_eq!(sum[&t1][&0].scopes[0].allowed, 4);
        assert_eq!(journal_key(5)[..24], super::super::counts::journal_key(5));
    }
}
