//! A personal access token's state as every projection and API node holds it.

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::secret::SecretHash;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Delete,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// The expiration presets a token can be created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Expiration {
    #[serde(rename = "1m")]
    OneMonth,
    #[serde(rename = "2m")]
    TwoMonths,
    #[serde(rename = "3m")]
    ThreeMonths,
    #[serde(rename = "6m")]
    SixMonths,
    #[serde(rename = "1y")]
    OneYear,
    #[serde(rename = "2y")]
    TwoYears,
    #[serde(rename = "never")]
    Never,
}

impl Expiration {
    pub const ALL: [Expiration; 7] = [
        Expiration::OneMonth,
        Expiration::TwoMonths,
        Expiration::ThreeMonths,
        Expiration::SixMonths,
        Expiration::OneYear,
        Expiration::TwoYears,
        Expiration::Never,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Expiration::OneMonth => "1m",
            Expiration::TwoMonths => "2m",
            Expiration::ThreeMonths => "3m",
            Expiration::SixMonths => "6m",
            Expiration::OneYear => "1y",
            Expiration::TwoYears => "2y",
            Expiration::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Option<Expiration> {
        Expiration::ALL.into_iter().find(|e| e.as_str() == s)
    }

    pub fn months(self) -> Option<i64> {
        match self {
            Expiration::OneMonth => Some(1),
            Expiration::TwoMonths => Some(2),
            Expiration::ThreeMonths => Some(3),
            Expiration::SixMonths => Some(6),
            Expiration::OneYear => Some(12),
            Expiration::TwoYears => Some(24),
            Expiration::Never => None,
        }
    }

    /// `created_at` plus this many calendar months in UTC, clamped to the end
    /// of a shorter month (31 Jan + 1m = 28/29 Feb); `None` for `never`.
    pub fn expires_at(self, created_at: Timestamp) -> Option<Timestamp> {
        let months = self.months()?;
        let zoned = created_at.to_zoned_datetime(TimeZone::UTC);
        zoned
            .checked_add(Span::new().months(months))
            .ok()
            .map(|z| z.timestamp())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Expired,
    Revoked,
}

/// Why a token was revoked, recorded in its `token_revoked` event. Events
/// written before reasons existed read as `user`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// Its owner revoked it.
    #[default]
    User,
    /// It was reported as leaked.
    Leaked,
    /// A rotation replaced it.
    Rotated,
    /// Its owner left the directory or one of its workspaces.
    MembershipRemoved,
    /// An administrator revoked it.
    Admin,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::User => "user",
            RevokeReason::Leaked => "leaked",
            RevokeReason::Rotated => "rotated",
            RevokeReason::MembershipRemoved => "membership_removed",
            RevokeReason::Admin => "admin",
        }
    }
}

/// A token's state, folded from its events. Carries no secret, only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: Ulid,
    pub user_id: String,
    pub description: String,
    pub expiration: Expiration,
    pub scopes: Vec<Scope>,
    pub workspaces: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub secret_hash: SecretHash,
    /// The token this one replaced (it was made by a rotation).
    #[serde(default)]
    pub replaces: Option<Ulid>,
    /// The token that replaced this one.
    #[serde(default)]
    pub replaced_by: Option<Ulid>,
    /// Why it was revoked, once it is.
    #[serde(default)]
    pub revoked_reason: Option<RevokeReason>,
    /// Where it was found leaked, when it was revoked for a leak report
    /// that said.
    #[serde(default)]
    pub leak_url: Option<String>,
    /// The client address ranges calls may come from; empty for anywhere.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// When it starts working, if not at once.
    #[serde(default)]
    pub not_before: Option<Timestamp>,
    /// Whether it may rotate itself.
    #[serde(default)]
    pub self_rotate: bool,
    /// Whether it is a decoy (never grants anything; its use is an alarm).
    #[serde(default)]
    pub decoy: bool,
}

impl TokenView {
    pub fn status(&self, now: Timestamp) -> TokenStatus {
        if self.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn has_workspace(&self, workspace: &str) -> bool {
        self.workspaces.iter().any(|w| w == workspace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    #[test]
    fn one_month_after_january_31st_is_the_end_of_february() {
        let e = Expiration::OneMonth;
        assert_eq!(
            e.expires_at(ts("2026-01-31T10:00:00Z")),
            Some(ts("2026-02-28T10:00:00Z"))
        );
        assert_eq!(
            e.expires_at(ts("2028-01-31T10:00:00Z")),
            Some(ts("2028-02-29T10:00:00Z"))
        );
    }

    #[test]
    fn one_year_after_a_leap_day_is_february_28th() {
        assert_eq!(
            Expiration::OneYear.expires_at(ts("2024-02-29T00:00:00Z")),
            Some(ts("2025-02-28T00:00:00Z"))
        );
        assert_eq!(
            Expiration::TwoYears.expires_at(ts("2024-02-29T12:30:00Z")),
            Some(ts("2026-02-28T12:30:00Z"))
        );
    }

    #[test]
    fn each_preset_adds_its_calendar_months() {
        let start = ts("2026-08-31T23:59:59.999Z");
        let cases = [
            (Expiration::OneMonth, "2026-09-30T23:59:59.999Z"),
            (Expiration::TwoMonths, "2026-10-31T23:59:59.999Z"),
            (Expiration::ThreeMonths, "2026-11-30T23:59:59.999Z"),
            (Expiration::SixMonths, "2027-02-28T23:59:59.999Z"),
            (Expiration::OneYear, "2027-08-31T23:59:59.999Z"),
            (Expiration::TwoYears, "2028-08-31T23:59:59.999Z"),
        ];
        for (e, want) in cases {
            assert_eq!(e.expires_at(start), Some(ts(want)), "{e:?}");
        }
        assert_eq!(Expiration::Never.expires_at(start), None);
    }

    #[test]
    fn a_revocation_recorded_before_reasons_existed_reads_as_user() {
        #[derive(Serialize)]
        struct Legacy {
            user_id: &'static str,
            secret_hash: &'static str,
        }
        let bytes = rmp_serde::to_vec_named(&Legacy {
            user_id: "alice",
            secret_hash: "00",
        })
        .expect("encode");
        let read: crate::events::TokenRevoked = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(read.reason, RevokeReason::User);
        let json = serde_json::to_value(RevokeReason::MembershipRemoved).expect("json");
        assert_eq!(json, "membership_removed");
        assert_eq!(
            RevokeReason::MembershipRemoved.as_str(),
            "membership_removed"
        );
    }

    #[test]
    fn status_is_expired_from_the_expiry_instant_and_revoked_wins() {
        let mut view = TokenView {
            id: Ulid::nil(),
            user_id: "alice".into(),
            description: "x".into(),
            expiration: Expiration::OneMonth,
            scopes: vec![Scope::Read],
            workspaces: vec!["acme".into()],
            created_at: ts("2026-01-01T00:00:00Z"),
            expires_at: Some(ts("2026-02-01T00:00:00Z")),
            revoked_at: None,
            secret_hash: SecretHash([0; 32]),
            replaces: None,
            replaced_by: None,
            revoked_reason: None,
            leak_url: None,
            allowed_cidrs: Vec::new(),
            not_before: None,
            self_rotate: false,
            decoy: false,
        };
        assert_eq!(
            view.status(ts("2026-01-31T23:59:59.999Z")),
            TokenStatus::Active
        );
        assert_eq!(
            view.status(ts("2026-02-01T00:00:00Z")),
            TokenStatus::Expired
        );
        view.revoked_at = Some(ts("2026-01-15T00:00:00Z"));
        assert_eq!(
            view.status(ts("2026-01-20T00:00:00Z")),
            TokenStatus::Revoked
        );
    }
}
