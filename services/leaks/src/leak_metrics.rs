//! `enspace_leak_reports{via, outcome}`: what leak reports came to.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Where a report came from.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// GitHub's secret scanning (one count per match).
    Github,
    /// `POST /v1/tokens/report-leak`.
    Public,
}

/// What a report came to.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// An active token, now revoked.
    Revoked,
    /// Not a well-formed token, unknown, or not active any more.
    NotActive,
    /// The store or the writer failed; nothing was recorded.
    Failed,
    /// GitHub's post had no valid signature (one count per post).
    Refused,
    /// Over the limit of its client address.
    Limited,
    /// Every slot for background revocations was taken.
    Dropped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    via: &'static str,
    outcome: &'static str,
}

#[derive(Clone)]
pub struct LeakMetrics {
    reports: Family<Labels, Counter>,
}

impl LeakMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let reports = Family::<Labels, Counter>::default();
        registry.register(
            "enspace_leak_reports",
            "Leak reports by where they came from (github, public) and outcome: revoked, not_active, failed, refused (bad GitHub signature), limited (over the per-address limit), dropped (no room to revoke)",
            reports.clone(),
        );
        LeakMetrics { reports }
    }

    pub fn count(&self, via: Via, outcome: Outcome) {
        let via = match via {
            Via::Github => "github",
            Via::Public => "public",
        };
        let outcome = match outcome {
            Outcome::Revoked => "revoked",
            Outcome::NotActive => "not_active",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Limited => "limited",
            Outcome::Dropped => "dropped",
        };
        self.reports.get_or_create(&Labels { via, outcome }).inc();
    }
}
