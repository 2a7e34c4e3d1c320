//! One module per resource; every handler is `verb_resource`: validate,
//! authorise, act, respond.

pub mod audit;
pub mod audit_moments;
pub mod audit_timeline;
pub mod cluster;
pub mod decoys;
pub mod event_key;
pub mod health;
pub mod insights;
pub mod introspect;
pub mod me;
pub mod notifications;
pub mod own_token;
pub mod paging;
pub mod query_time;
pub mod report_leak;
pub mod requests;
pub mod rotate;
pub mod secret_scanning;
pub mod self_rotate;
pub mod session;
pub mod tokens;
pub mod workspaces;

/// Largest body of the routes anyone may post to without a session
/// (`POST /v1/session`, `POST /v1/tokens/report-leak`): a user name and a
/// password of at most 1024 bytes each, or a token and a URL of at most
/// 2048 characters, even with every character escaped.
pub const UNAUTHENTICATED_BODY_LIMIT: usize = 16 * 1024;
