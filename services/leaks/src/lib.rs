//! Leaked tokens: reports from GitHub's secret scanning (signed with
//! GitHub's keys) and from anyone who finds a token (rate-limited per client
//! address). Either way, a reported token that is active is revoked at once
//! with reason `leaked`, the place it was found recorded in the event.

pub mod github_keys;
pub mod leak_metrics;
pub mod report_limit;
pub mod revoke;

use std::num::NonZeroU32;
use std::sync::Arc;

use enspace_core::Clock;
use tokio::sync::Semaphore;

pub use enspace_core::leak_url::{
    MAX_LEAK_URL_LEN, escapes_a_disguise, usable_leak_url, visible_leak_url,
};
pub use github_keys::{Claim, GithubKeys, KeyFileError, SignatureError};
pub use leak_metrics::{LeakMetrics, Outcome, Via};
pub use report_limit::LeakReportLimit;
pub use revoke::{Finding, revoke_leaked};

/// Reports from anyone revoked at once in the background; one more is
/// answered like the others and dropped (and logged).
pub const REPORTS_IN_FLIGHT: usize = 256;

/// GitHub report bodies read at once: each may be up to 1 MiB, and its
/// sender is not known to be GitHub until all of it is read.
pub const GITHUB_BODIES_AT_ONCE: usize = 4;

/// What the leak routes need beyond the store: the public route's limit per
/// client address and room for revocations in the background, and the slots
/// GitHub report bodies are read in.
pub struct LeakReports {
    pub limit: Option<LeakReportLimit>,
    pub in_flight: Arc<Semaphore>,
    pub github_bodies: Arc<Semaphore>,
}

impl LeakReports {
    pub fn new(per_minute: Option<NonZeroU32>, clock: Arc<dyn Clock>) -> Self {
        LeakReports {
            limit: per_minute.map(|n| LeakReportLimit::new(n, clock)),
            in_flight: Arc::new(Semaphore::new(REPORTS_IN_FLIGHT)),
            github_bodies: Arc::new(Semaphore::new(GITHUB_BODIES_AT_ONCE)),
        }
    }
}
