//! Auditors' questions about moments, answered from the log: every token's
//! state at a moment, and the events between two moments.
//!
//! State at `at`: a token created after `at` did not exist; one with a
//! single event (its creation) stood as it stands now; any other is its own
//! events up to `at` folded again ([`enspace_core::audit_state::token_at`]).
//! So a query costs a look at each candidate token (those of the user or
//! workspace asked about, or a page of all of them) and a short fold for
//! the few with later events, not a replay of the whole log.

use jiff::Timestamp;
use ulid::Ulid;

use enspace_core::TokenView;
use enspace_core::audit_state::{ChangeGroups, StateFilter, TokenAtMoment, token_at};

use crate::event_log::LogEntry;
use crate::{Store, StoreError};

/// A page of tokens as they stood at a moment, by id, and the id to
/// continue after when more remain.
pub struct StatePage {
    pub tokens: Vec<TokenAtMoment>,
    pub next_after: Option<Ulid>,
}

/// A page of the events between two moments, and the seq to continue
/// after when more remain.
pub struct ChangesPage {
    pub groups: ChangeGroups,
    pub next_after: Option<u64>,
}

impl Store {
    /// Up to `limit` of the tokens `filter` keeps, as they stood at `at`,
    /// with ids after `after`, in id order.
    pub fn state_at(
        &self,
        at: Timestamp,
        filter: &StateFilter,
        after: Option<Ulid>,
        limit: usize,
    ) -> Result<StatePage, StoreError> {
        let mut candidates: Vec<TokenView> = match (&filter.user, &filter.workspace) {
            (Some(user), _) => self.projections.tokens_of_user(user)?,
            (None, Some(workspace)) => self.projections.tokens_in_workspace(workspace)?,
            (None, None) => Vec::new(),
        };
        let everyone = filter.user.is_none() && filter.workspace.is_none();
        candidates.sort_unstable_by_key(|v| v.id);
        let listed: Box<dyn Iterator<Item = Result<TokenView, StoreError>> + '_> = if everyone {
            Box::new(self.projections.tokens_after(after))
        } else {
            Box::new(
                candidates
                    .into_iter()
                    .filter(move |v| after.is_none_or(|a| v.id > a))
                    .map(Ok),
            )
        };
        let mut tokens = Vec::new();
        let mut next_after = None;
        for view in listed {
            let view = view?;
            if view.created_at > at {
                continue;
            }
            let seqs = self.projections.event_seqs_of(view.id)?;
            let then = if seqs.len() <= 1 {
                view
            } else {
                match self.token_at(&seqs, at)? {
                    Some(then) => then,
                    None => continue,
                }
            };
            if !filter.keeps(&then) {
                continue;
            }
            if tokens.len() == limit {
                next_after = tokens.last().map(|t: &TokenAtMoment| t.id);
                break;
            }
            tokens.push(TokenAtMoment::of(&then, at));
        }
        Ok(StatePage { tokens, next_after })
    }

    /// One token's events (`seqs`) up to `at`, folded.
    fn token_at(&self, seqs: &[u64], at: Timestamp) -> Result<Option<TokenView>, StoreError> {
        let events: Vec<_> = self
            .entries(seqs)?
            .into_iter()
            .map(|e| e.envelope)
            .collect();
        Ok(token_at(&events, at))
    }

    /// A token's entries of the log, in seq order.
    pub fn events_of(&self, id: Ulid) -> Result<Vec<LogEntry>, StoreError> {
        self.entries(&self.projections.event_seqs_of(id)?)
    }

    fn entries(&self, seqs: &[u64]) -> Result<Vec<LogEntry>, StoreError> {
        let mut entries = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(entry) = self.log.get(seq)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Up to `limit` events at or after `from` and before `to`, with a seq
    /// after `after`, grouped by what they did and signed by their keys.
    pub fn changes_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        after: u64,
        limit: usize,
        keys: &crate::keyring::Keyring,
    ) -> Result<ChangesPage, StoreError> {
        self.audit.catch_up(&self.log)?;
        let seqs = self.audit.seqs_between(from, to)?;
        let start = seqs.partition_point(|&s| s <= after);
        let mut groups = ChangeGroups::default();
        let mut last = None;
        for &seq in seqs[start..].iter().take(limit) {
            if let Some(entry) = self.log.get(seq)? {
                groups.add(&entry.envelope, entry.audit(keys));
            }
            last = Some(seq);
        }
        let next_after = last.filter(|_| seqs.len() - start > limit);
        Ok(ChangesPage { groups, next_after })
    }
}
