//! How much of a call a request record keeps, whoever makes the call: a
//! record is a few hundred bytes however long the path, workspace or user
//! agent an attacker sends (with a revoked token, say).
//!
//! - `path`: at most [`MAX_PATH_BYTES`], cut at a character boundary; a
//!   record whose path was cut says so (`path_truncated: true`).
//! - `workspace`: a valid workspace id ([`crate::workspace::is_valid_id`])
//!   or `null`.
//! - `user_agent`: at most [`MAX_USER_AGENT_BYTES`], cut.
//!
//! API nodes keep records within them as they make them; the indexer
//! applies them again to whatever it reads, so no node (an older one, or
//! one that misbehaves) can put more in the index.

use crate::RequestRecord;

/// Longest path a record keeps, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest user agent a record keeps, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 256;

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A path as a record keeps it, and whether it was cut.
pub fn path(path: &str) -> (&str, bool) {
    let kept = cut(path, MAX_PATH_BYTES);
    (kept, kept.len() < path.len())
}

/// The workspace a record keeps: the id if it is a valid one.
pub fn workspace(ws: &str) -> Option<&str> {
    crate::workspace::is_valid_id(ws).then_some(ws)
}

/// A user agent as a record keeps it.
pub fn user_agent(ua: &str) -> &str {
    cut(ua, MAX_USER_AGENT_BYTES)
}

impl RequestRecord {
    /// Brings the record within the bounds; allocates nothing when it
    /// already is (the common case).
    pub fn bound(&mut self) {
        if self.path.len() > MAX_PATH_BYTES {
            let n = cut(&self.path, MAX_PATH_BYTES).len();
            self.path.truncate(n);
            self.path_truncated = true;
        }
        if self
            .workspace
            .as_deref()
            .is_some_and(|ws| workspace(ws).is_none())
        {
            self.workspace = None;
        }
        if let Some(ua) = &mut self.user_agent
            && ua.len() > MAX_USER_AGENT_BYTES
        {
            let n = cut(ua, MAX_USER_AGENT_BYTES).len();
            ua.truncate(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_end_on_a_character_boundary() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc");
        // "é" is two bytes: a cut through it keeps neither.
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("€€", 4), "€");
        assert_eq!(cut("", 0), "");
    }

    #[test]
    fn a_long_path_is_cut_to_1_kib_and_flagged() {
        let long = format!("/api/v1/workspaces/{}/records", "é".repeat(30_000));
        let (kept, cut) = path(&long);
        assert!(cut);
        assert!(kept.len() <= MAX_PATH_BYTES && kept.len() >= MAX_PATH_BYTES - 1);
        assert!(long.starts_with(kept));
        assert_eq!(path("/api/v1/x"), ("/api/v1/x", false));
        let exact = "a".repeat(MAX_PATH_BYTES);
        assert_eq!(path(&exact), (exact.as_str(), false));
    }

    #[test]
    fn bound_fixes_an_unbounded_record_and_leaves_a_bounded_one() {
        let mut record = RequestRecord {
            id: ulid::Ulid::nil(),
            token_id: ulid::Ulid::nil(),
            user_id: "alice".into(),
            at: jiff::Timestamp::UNIX_EPOCH,
            node: "n".into(),
            method: "GET".into(),
            path: "/".repeat(60_000),
            path_truncated: false,
            workspace: Some("w".repeat(60_000)),
            status: 401,
            duration_ms: 0.0,
            client_ip: "127.0.0.1".into(),
            user_agent: Some("ü".repeat(1_000)),
        };
        record.bound();
        assert_eq!(record.path.len(), MAX_PATH_BYTES);
        assert!(record.path_truncated);
        assert_eq!(record.workspace, None);
        assert_eq!(record.user_agent.as_deref(), Some("ü".repeat(128).as_str()));
        let bounded = record.clone();
        record.bound();
        assert_eq!(record, bounded);
    }
}
