//! ENSPACE's JetStream names and stream settings (contract §7), in one place
//! so that every process creates or updates the same streams at start-up.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Token events, replicated to every API node: one message per committed
/// event, subject `enspace.token-events.<token_id>`, payload = the event's
/// exact stored MessagePack, `Nats-Msg-Id` = the event id.
pub const TOKEN_EVENTS_STREAM: &str = "ENSPACE_TOKEN_EVENTS";
pub const TOKEN_EVENTS_SUBJECTS: &str = "enspace.token-events.>";

/// Request records, one per API call made with a known token.
pub const REQUESTS_STREAM: &str = "ENSPACE_REQUESTS";
pub const REQUESTS_SUBJECTS: &str = "enspace.requests.>";
pub const REQUEST_INDEXER: &str = "request-indexer";

pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
pub const DEFAULT_REQUEST_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

pub fn token_event_subject(token_id: &str) -> String {
    format!("enspace.token-events.{token_id}")
}

pub fn request_subject(token_id: &str) -> String {
    format!("enspace.requests.{token_id}")
}

pub fn token_events_config() -> stream::Config {
    stream::Config {
        name: TOKEN_EVENTS_STREAM.to_owned(),
        subjects: vec![TOKEN_EVENTS_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

pub fn requests_config(max_age: Duration) -> stream::Config {
    stream::Config {
        name: REQUESTS_STREAM.to_owned(),
        subjects: vec![REQUESTS_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age,
        // The window may not exceed max_age (short retentions in tests).
        duplicate_window: DUPLICATE_WINDOW.min(max_age),
        ..Default::default()
    }
}

/// Connects, retrying the first connection and reconnecting forever after.
pub async fn connect(
    url: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            tracing::info!(nats.event = %event, "nats {event}");
        })
        .connect(url)
        .await?;
    Ok(client)
}

/// Creates the stream or brings its settings up to date.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, async_nats::Error> {
    let name = config.name.clone();
    js.create_or_update_stream(config).await?;
    Ok(js.get_stream(name).await?)
}
