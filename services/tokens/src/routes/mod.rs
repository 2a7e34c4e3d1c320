//! One module per resource; every handler is `verb_resource`: validate,
//! authorise, act, respond.

pub mod audit;
pub mod cluster;
pub mod event_key;
pub mod health;
pub mod insights;
pub mod introspect;
pub mod me;
pub mod notifications;
pub mod own_token;
pub mod paging;
pub mod report_leak;
pub mod requests;
pub mod secret_scanning;
pub mod session;
pub mod tokens;
pub mod ui;
pub mod workspaces;
