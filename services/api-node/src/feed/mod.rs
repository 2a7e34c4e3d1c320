//! The token-state pipeline's last leg: what feeds an API node's
//! [`TokenReplica`](crate::TokenReplica), one module per path.
//!
//! - [`jetstream`]: from the token events stream and the control plane's
//!   signed heartbeats, each event checked against the chain and the pinned
//!   key ([`Feed`]).
//! - [`embedded`]: in the control plane's own process (`enspace serve`
//!   without NATS), from its log at start and then from its writer, so a
//!   change is in force on the node before its request answers
//!   ([`attach`]).

pub mod embedded;
pub mod jetstream;

pub use embedded::attach;
pub use jetstream::Feed;
