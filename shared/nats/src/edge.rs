//! The two trust zones (`deploy/nats.conf`): the control plane's NATS
//! account (CONTROL) and the API nodes' (EDGE). Only the control plane
//! reaches EDGE's JetStream API, imported under a prefix
//! (`--nats-edge-api`); EDGE imports from CONTROL only what a mirror of the
//! token events stream needs, and the heartbeat. The names here must match
//! the configuration's exports and imports.
//!
//! - EDGE's `ENSPACE_TOKEN_EVENTS` mirrors CONTROL's (same name, same
//!   sequence numbers), so a node reads it exactly as it would the origin.
//! - EDGE's `ENSPACE_REQUESTS` is the nodes' intake; CONTROL's copy (which
//!   the indexers consume) sources it.

use std::time::Duration;

use async_nats::jetstream::stream;

use crate::{REQUESTS_STREAM, TOKEN_EVENTS_STREAM};

/// The prefix the shipped configuration imports EDGE's JetStream API under
/// in CONTROL (the value to pass to `--nats-edge-api`).
pub const EDGE_API: &str = "$JS.edge.API";

/// The prefix EDGE imports CONTROL's consumer creation on the token events
/// stream under: the mirror's external API.
pub const CONTROL_API_FOR_EDGE: &str = "$JS.control.API";

/// The subjects (in CONTROL, exported to EDGE) the mirror's consumer
/// delivers on.
pub const MIRROR_DELIVER_PREFIX: &str = "enspace.mirror.token-events";

/// The subjects (in EDGE, exported to CONTROL) the source's consumer
/// delivers on.
pub const SOURCE_DELIVER_PREFIX: &str = "enspace.source.requests";

/// How long EDGE's intake keeps a record: long enough for a control plane
/// that is away for days to take every record when it is back, short
/// enough that the second copy costs a fraction of the first (7 of 90 days
/// by default). Never longer than the retention.
pub const INTAKE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// At most this many consumers on EDGE's mirror (the nodes' ordered
/// consumers), below the account's limit, so that a node creating
/// consumers in a loop never keeps the control plane's source consumer on
/// the intake from being made.
pub const MIRROR_MAX_CONSUMERS: i32 = 4000;

/// The mirror's metadata key holding the identity (creation time, in
/// nanoseconds since the epoch) of the origin stream it was made from: a
/// mirror does not follow an origin that was deleted and made again, so
/// the control plane makes the mirror again when it differs.
pub const ORIGIN_KEY: &str = "enspace.origin-created";

/// EDGE's mirror of the token events stream, made from the origin whose
/// identity is `origin` (see [`ORIGIN_KEY`]).
pub fn token_events_mirror_config(origin: &str) -> stream::Config {
    stream::Config {
        name: TOKEN_EVENTS_STREAM.to_owned(),
        mirror: Some(stream::Source {
            name: TOKEN_EVENTS_STREAM.to_owned(),
            external: Some(stream::External {
                api_prefix: CONTROL_API_FOR_EDGE.to_owned(),
                delivery_prefix: Some(MIRROR_DELIVER_PREFIX.to_owned()),
            }),
            ..Default::default()
        }),
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_consumers: MIRROR_MAX_CONSUMERS,
        metadata: [(ORIGIN_KEY.to_owned(), origin.to_owned())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// EDGE's intake of request records: the subjects and duplicate window of
/// [`crate::requests_config`], kept [`INTAKE_MAX_AGE`] (at most
/// `retention`) and at most `max_bytes`.
pub fn intake_config(retention: Duration, max_bytes: Option<u64>) -> stream::Config {
    let max_age = INTAKE_MAX_AGE.min(retention);
    crate::requests_config(max_age, max_bytes)
}

/// CONTROL's copy of the request records, which the indexers consume:
/// [`crate::requests_config`] (its own subjects stay, for `enspace serve`'s
/// API node in CONTROL), sourcing EDGE's intake through `edge_api`.
pub fn sourced_requests_config(
    retention: Duration,
    max_bytes: Option<u64>,
    edge_api: &str,
) -> stream::Config {
    stream::Config {
        sources: Some(vec![stream::Source {
            name: REQUESTS_STREAM.to_owned(),
            external: Some(stream::External {
                api_prefix: edge_api.to_owned(),
                delivery_prefix: Some(SOURCE_DELIVER_PREFIX.to_owned()),
            }),
            ..Default::default()
        }]),
        ..crate::requests_config(retention, max_bytes)
    }
}

/// The request records stream the indexers consume, in the control
/// plane's account: sourcing EDGE's intake through `edge_api` with two
/// zones, the stream nodes publish into with one account.
pub fn records_config(
    retention: Duration,
    max_bytes: Option<u64>,
    edge_api: Option<&str>,
) -> stream::Config {
    match edge_api {
        Some(api) => sourced_requests_config(retention, max_bytes, api),
        None => crate::requests_config(retention, max_bytes),
    }
}

/// A stream's identity as [`ORIGIN_KEY`] records it.
pub fn identity(info: &stream::Info) -> String {
    info.created.unix_timestamp_nanos().to_string()
}
