//! Types shared by every ENSPACE tokens service: the personal access token
//! format, the event log's events and hash chain, token and request-record
//! wire shapes, and the injectable clock.

pub mod audit_export;
pub mod audit_state;
pub mod backoff;
pub mod base62;
pub mod clock;
pub mod events;
pub mod fence;
#[cfg(any(test, feature = "test-util"))]
pub mod fixtures;
pub mod fold;
pub mod key_chain;
pub mod leak_url;
pub mod policy;
pub mod progress;
pub mod projection;
pub mod record;
pub mod record_batch;
pub mod record_bounds;
pub mod secret;
pub mod signing;
pub mod text;
pub mod token;
pub mod workspace;

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, SystemClock};
pub use events::{Aggregate, AuditEvent, EventEnvelope, SYSTEM_ACTOR, StoredEvent, TokenEvent};
pub use key_chain::{KeyChain, KeyEras};
pub use policy::WorkspacePolicy;
pub use projection::CommittedEvents;
pub use record::{RecordSink, RecordSource, RequestRecord};
pub use secret::{PatSecret, SecretHash, SecretParseError, SessionSecret};
pub use signing::{EventKey, EventSigner, Heartbeat};
pub use token::{Expiration, Scope, TokenStatus, TokenView};
