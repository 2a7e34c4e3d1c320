//! An API node's request records on their way out: the bounded queue every
//! call's record goes into, the publisher that moves them to JetStream, and
//! the window of publishes awaiting their acks.

pub(crate) mod ack_window;
pub mod publisher;
pub mod queue;
