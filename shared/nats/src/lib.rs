//! ENSPACE's JetStream names and stream settings, in one place
//! so that every process creates or updates the same streams at start-up.

pub mod edge;
mod redact;

use std::time::Duration;

pub use redact::{cannot_connect, redact_url};

use async_nats::jetstream::{self, stream};

/// Token events, replicated to every API node: one message per committed
/// event, subject `enspace.token-events.<token_id>`, payload = the event's
/// exact stored MessagePack, `Nats-Msg-Id` = the event id.
pub const TOKEN_EVENTS_STREAM: &str = "ENSPACE_TOKEN_EVENTS";
pub const TOKEN_EVENTS_SUBJECTS: &str = "enspace.token-events.>";

/// Signed heartbeats of the control plane, once a second, on core NATS
/// (not stored): the head of its committed log, so API nodes know how fresh
/// their copy is.
pub const HEARTBEAT_SUBJECT: &str = "enspace.token-heartbeat";

/// Headers of every token event message besides `Nats-Msg-Id`: the event's
/// Ed25519 signature (base64) over its chain hash, the signing key's id, and
/// the previous event's chain hash (hex).
pub const SIGNATURE_HEADER: &str = "Enspace-Signature";
pub const KEY_ID_HEADER: &str = "Enspace-Key-Id";
pub const PREV_HASH_HEADER: &str = "Enspace-Prev-Hash";

/// A token event message's `Enspace-Signature`, decoded (empty if absent
/// or not base64).
pub fn signature_of(headers: Option<&async_nats::HeaderMap>) -> Vec<u8> {
    use base64::Engine;
    headers
        .and_then(|h| h.get(SIGNATURE_HEADER))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str())
                .ok()
        })
        .unwrap_or_default()
}

/// A token event message's `Enspace-Prev-Hash`, decoded.
pub fn prev_hash_of(headers: Option<&async_nats::HeaderMap>) -> Option<[u8; 32]> {
    let value = headers?.get(PREV_HASH_HEADER)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(value.as_str(), &mut out).ok()?;
    Some(out)
}

/// Request records, one per API call made with a known token.
pub const REQUESTS_STREAM: &str = "ENSPACE_REQUESTS";
pub const REQUESTS_SUBJECTS: &str = "enspace.requests.>";
pub const REQUEST_INDEXER: &str = "request-indexer";

/// Notifications one control-plane process of a cluster made from what
/// only it saw (the request-log indexer's `new_client_ip` and `decoy_used`,
/// a decoy presented to it), for every other process to keep the same one
/// (`enspace_notify::notices`): one signed message per notification,
/// `Nats-Msg-Id` = the notification's id. Under `enspace.control.>`, which
/// only the control plane's account may use.
pub const NOTICES_STREAM: &str = "ENSPACE_NOTICES";
pub const NOTICES_SUBJECT: &str = "enspace.control.notices";
/// Each process's durable consumer of [`NOTICES_STREAM`] is
/// `notices-<node id>`.
pub const NOTICES_CONSUMER_PREFIX: &str = "notices-";
/// How long a notice is kept: how long a process may be down, or join
/// late, and still be told what the others made meanwhile.
pub const NOTICES_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Notices of the same notification made by two processes within this
/// window are stored once (a receiver keeps it once whatever the stream
/// holds).
pub const NOTICES_DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// Reads of the request index for a token, forwarded to a control-plane
/// process that serves the token's partition (`enspace_usage::reads`):
/// `enspace.control.usage.<partition>`, answered by one of the processes in
/// queue group [`USAGE_QUERIES_QUEUE`]. Under `enspace.control.>`, which
/// only the control plane's account reaches (`deploy/nats.conf`).
pub const USAGE_QUERIES_PREFIX: &str = "enspace.control.usage.";
pub const USAGE_QUERIES_QUEUE: &str = "usage";

/// Where reads of `partition`'s request records are asked.
pub fn usage_query_subject(partition: u32) -> String {
    format!("{USAGE_QUERIES_PREFIX}{partition}")
}

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

/// The request records stream: kept `max_age`, and at most `max_bytes`
/// (`--request-max-bytes`; `None`: no bound but the age) with the oldest
/// records discarded first to make room.
pub fn requests_config(max_age: Duration, max_bytes: Option<u64>) -> stream::Config {
    stream::Config {
        name: REQUESTS_STREAM.to_owned(),
        subjects: vec![REQUESTS_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age,
        max_bytes: max_bytes.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        discard: stream::DiscardPolicy::Old,
        // The window may not exceed max_age (short retentions in tests).
        duplicate_window: DUPLICATE_WINDOW.min(max_age),
        ..Default::default()
    }
}

/// The notices stream (see [`NOTICES_STREAM`]).
pub fn notices_config() -> stream::Config {
    stream::Config {
        name: NOTICES_STREAM.to_owned(),
        subjects: vec![NOTICES_SUBJECT.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: NOTICES_MAX_AGE,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: NOTICES_DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// How a process proves who it is to NATS, besides a user and password in
/// the URL (`nats://user:password@host:4222`, percent-encoded), and where
/// its replies come.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// A `.creds` file (JWT and nkey seed), as `nsc` makes them.
    pub creds_file: Option<std::path::PathBuf>,
    /// A file holding an nkey seed (`SU…`).
    pub nkey_file: Option<std::path::PathBuf>,
    /// The subject prefix of the process's inboxes (every reply it asks
    /// for, JetStream's included); see [`inbox_prefix`] for the default.
    pub inbox_prefix: Option<String>,
}

/// The inbox prefix a process uses: `explicit` if given, else
/// `_INBOX.<user>` for the user named in the first URL (when that is one
/// subject token), else NATS' `_INBOX`. With one NATS user per node, each
/// node's replies then come on subjects only it may subscribe to
/// (`deploy/nats.conf` allows `_INBOX.<user>.>`).
pub fn inbox_prefix(explicit: Option<&str>, user: Option<&str>) -> String {
    if let Some(prefix) = explicit {
        return prefix.to_owned();
    }
    match user {
        Some(user) if is_token(user) => format!("_INBOX.{user}"),
        _ => "_INBOX".to_owned(),
    }
}

/// Whether `s` is one subject token: not empty, no `.`, wildcard or space.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read the NATS credentials {path}: {source}")]
    Credentials {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Connect(#[from] async_nats::ConnectError),
}

/// How long to wait before reconnecting: at once, then at most 250 ms, so
/// that a NATS server back from a restart is used again within a second
/// (the client's default backs off to 4 s).
fn reconnect_delay(attempts: usize) -> Duration {
    Duration::from_millis((attempts.saturating_sub(1) as u64 * 50).min(250))
}

/// Connects, retrying the first connection and reconnecting forever after.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    connect_with(url, name, &Credentials::default(), |_| {}).await
}

/// [`connect`] with credentials, calling `on_event` with every connection
/// event (after logging it).
pub async fn connect_with(
    url: &str,
    name: &str,
    credentials: &Credentials,
    on_event: impl Fn(&async_nats::Event) + Send + Sync + 'static,
) -> Result<async_nats::Client, ConnectError> {
    let mut options = async_nats::ConnectOptions::new();
    // Several servers of a cluster may be listed, comma-separated.
    let addrs = url
        .split(',')
        .map(|one| one.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConnectError::Connect(async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::ServerParse,
                e,
            ))
        })?;
    // The client connects to the URL's host but does not send the user and
    // password it carries; they are taken from the first URL here (a user
    // alone is a token), and the addresses go to the client without them,
    // so that none of its log lines can show them.
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    // The user names the inbox prefix; a token (a user without a password)
    // is a secret and never does.
    let mut user = None;
    match addrs.first().map(|a| (a.username(), a.password())) {
        Some((Some(name), Some(password))) => {
            let name = decode(name);
            options = options.user_and_password(name.clone(), decode(password));
            user = Some(name);
        }
        Some((Some(token), None)) => options = options.token(decode(token)),
        _ => {}
    }
    options = options.custom_inbox_prefix(inbox_prefix(
        credentials.inbox_prefix.as_deref(),
        user.as_deref(),
    ));
    let addrs = addrs
        .into_iter()
        .map(|addr| {
            let mut url = addr.into_inner();
            let _ = url.set_password(None);
            let _ = url.set_username("");
            async_nats::ServerAddr::from_url(url)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConnectError::Connect(async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::ServerParse,
                e,
            ))
        })?;
    if let Some(path) = &credentials.creds_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Credentials {
                    path: path.clone(),
                    source,
                })?;
    }
    if let Some(path) = &credentials.nkey_file {
        let seed = std::fs::read_to_string(path).map_err(|source| ConnectError::Credentials {
            path: path.clone(),
            source,
        })?;
        options = options.nkey(seed.trim().to_owned());
    }
    let on_event = std::sync::Arc::new(on_event);
    let client = options
        .name(name)
        .retry_on_initial_connect()
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let on_event = on_event.clone();
            async move {
                tracing::info!(nats.event = %event, "nats {event}");
                on_event(&event);
            }
        })
        .connect(addrs)
        .await?;
    Ok(client)
}

/// `config` with `replicas` copies of every message (a NATS cluster's
/// servers each hold one; at most 5).
pub fn with_replicas(config: stream::Config, replicas: usize) -> stream::Config {
    stream::Config {
        num_replicas: replicas.clamp(1, 5),
        ..config
    }
}

/// Creates the stream or brings its settings up to date. Never lowers an
/// existing stream's replicas: a process started without
/// `--stream-replicas` leaves the count another process set.
pub async fn ensure_stream(
    js: &jetstream::Context,
    mut config: stream::Config,
) -> Result<stream::Stream, async_nats::Error> {
    let name = config.name.clone();
    if let Ok(mut existing) = js.get_stream(&name).await
        && let Ok(info) = existing.info().await
    {
        config.num_replicas = config.num_replicas.max(info.config.num_replicas);
        // 0 and -1 both say "no bound" (a config's default, the server's).
        let bound = |n: i64| if n <= 0 { -1 } else { n };
        if bound(info.config.max_bytes) != bound(config.max_bytes) {
            tracing::warn!(stream = %name, from = info.config.max_bytes, to = config.max_bytes,
                "changing the max_bytes of stream {name} from {} to {} (-1: no bound); \
                 give every process that creates it the same setting",
                info.config.max_bytes, config.max_bytes);
        }
    }
    js.create_or_update_stream(config).await?;
    Ok(js.get_stream(name).await?)
}

#[cfg(test)]
mod tests {
    use super::inbox_prefix;

    #[test]
    fn the_inbox_prefix_is_the_flag_else_the_users_own_else_nats_default() {
        assert_eq!(
            inbox_prefix(Some("_INBOX.custom"), Some("api-node-2")),
            "_INBOX.custom"
        );
        assert_eq!(
            inbox_prefix(None, Some("enspace-node")),
            "_INBOX.enspace-node"
        );
        assert_eq!(inbox_prefix(None, None), "_INBOX");
        for not_a_token in ["", "a.b", "a*", "a>", "a b"] {
            assert_eq!(inbox_prefix(None, Some(not_a_token)), "_INBOX");
        }
    }
}
