//! Limits and abuse (sign-in throttling, connection limits, token caps and
//! paging, per-token rate limits, fair request-record queues, membership
//! changes, what error bodies may echo, bounded metric labels and request
//! records): each finding of the abuse review as
//! a test against the real server.

mod audit_verify;
mod connections;
mod descriptions;
mod echo;
mod fair_queue;
mod github_bodies;
mod membership;
mod metric_labels;
mod printed_secrets;
mod proxies;
mod rate_limit;
mod record_bounds;
mod sessions;
mod sign_in;
mod token_cap;
