//! Leaked tokens: reports from GitHub's secret scanning (signed with
//! GitHub's keys) and from anyone who finds a token (rate-limited per client
//! address). Either way, a reported token that is active is revoked at once
//! with reason `leaked`, the place it was found recorded in the event.

pub mod github_keys;
pub mod metrics;
pub mod report_limit;
pub mod revoke;

use std::num::NonZeroU32;
use std::sync::Arc;

use enspace_core::Clock;
use tokio::sync::Semaphore;

pub use github_keys::{GithubKeys, KeyFileError, SignatureError};
pub use metrics::{LeakMetrics, Outcome, Via};
pub use report_limit::LeakReportLimit;
pub use revoke::{Finding, revoke_leaked, usable_leak_url};

/// Reports from anyone revoked at once in the background; one more is
/// answered like the others and dropped (and logged).
pub const REPORTS_IN_FLIGHT: usize = 256;

/// What `POST /v1/tokens/report-leak` needs beyond the store: its limit per
/// client address and the room for revocations in the background.
pub struct LeakReports {
    pub limit: Option<LeakReportLimit>,
    pub in_flight: Arc<Semaphore>,
}

impl LeakReports {
    pub fn new(per_minute: Option<NonZeroU32>, clock: Arc<dyn Clock>) -> Self {
        LeakReports {
            limit: per_minute.map(|n| LeakReportLimit::new(n, clock)),
            in_flight: Arc::new(Semaphore::new(REPORTS_IN_FLIGHT)),
        }
    }
}
