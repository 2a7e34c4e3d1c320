//! Leaked tokens: reports from GitHub's secret scanning (signed with
//! GitHub's keys) and from anyone who finds a token (rate-limited per client
//! address).

pub mod github_keys;
pub mod report_limit;

pub use github_keys::{GithubKeys, KeyFileError, SignatureError};
pub use report_limit::LeakReportLimit;

