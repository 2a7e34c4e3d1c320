//! The streams API nodes use, kept in place by the control plane: nodes
//! never make or change a stream, so whatever of theirs is lost is made
//! again here, within a second.
//!
//! - With one NATS account: the request records stream nodes publish
//!   into (the one the indexers consume).
//! - With two trust zones (`--nats-edge-api`, see `deploy/nats.conf`):
//!   in the nodes' account EDGE, the intake of request records and the
//!   mirror of the token events stream; in the control plane's account,
//!   the indexers' copy of the records, which sources the intake. A
//!   mirror does not follow an origin that was deleted and made again (a
//!   refill from the log, a lost NATS store): the mirror records the
//!   identity of the origin it was made from, and is made again from the
//!   new one when they differ, or when it holds more than the origin.

use std::time::Duration;

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream};
use enspace_nats::edge;
use futures::StreamExt;

/// How often the streams are checked.
const EVERY: Duration = Duration::from_secs(1);
/// How often the mirror's consumers are looked over (every this many
/// checks).
const SWEEP_EVERY: u32 = 10;
/// The longest a node's consumer on the mirror lives idle: an ordered
/// consumer's (30 s), with room to spare.
const NODE_CONSUMER_IDLE: Duration = Duration::from_secs(60);

/// The streams API nodes use, and where they live.
#[derive(Clone)]
pub struct EdgeStreams {
    /// The control plane's own JetStream.
    control: jetstream::Context,
    /// The nodes' account's JetStream, through its imported API; `None`
    /// with one account.
    edge: Option<jetstream::Context>,
    edge_api: Option<String>,
    retention: Duration,
    /// `--request-max-bytes`: the records streams' `max_bytes`, or no bound.
    max_bytes: Option<u64>,
    replicas: usize,
}

impl EdgeStreams {
    /// `edge_api`: the prefix the nodes' JetStream API is imported under
    /// (`--nats-edge-api`), or `None` for one account.
    pub fn new(
        client: &async_nats::Client,
        edge_api: Option<&str>,
        retention: Duration,
        max_bytes: Option<u64>,
        replicas: usize,
    ) -> Self {
        EdgeStreams {
            control: jetstream::new(client.clone()),
            edge: edge_api.map(|prefix| jetstream::with_prefix(client.clone(), prefix)),
            edge_api: edge_api.map(str::to_owned),
            retention,
            max_bytes,
            replicas,
        }
    }

    /// The configuration of the request records stream the indexers
    /// consume, in the control plane's account.
    pub fn records_config(&self) -> stream::Config {
        enspace_nats::with_replicas(
            edge::records_config(self.retention, self.max_bytes, self.edge_api.as_deref()),
            self.replicas,
        )
    }

    fn intake_config(&self) -> stream::Config {
        enspace_nats::with_replicas(
            edge::intake_config(self.retention, self.max_bytes),
            self.replicas,
        )
    }

    /// Makes every stream, or brings its settings up to date (at start).
    pub async fn ensure(&self) -> Result<(), async_nats::Error> {
        if let Some(edge) = &self.edge {
            enspace_nats::ensure_stream(edge, self.intake_config()).await?;
        }
        enspace_nats::ensure_stream(&self.control, self.records_config()).await?;
        self.keep_mirror().await
    }

    /// Checks every second, while `active` says so (the writer of a
    /// cluster), that every stream is there, making again what is not.
    pub async fn keep(self, active: impl Fn() -> bool + Send + 'static) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut ticks: u32 = 0;
        loop {
            tick.tick().await;
            if !active() {
                continue;
            }
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(SWEEP_EVERY)
                && let Err(e) = self.sweep_consumers().await
            {
                tracing::debug!(error = %e, "cannot look over the mirror's consumers");
            }
            match self.check().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot check the API nodes' streams; retrying");
                }
                Err(e) => tracing::debug!(error = %e, "cannot check the API nodes' streams"),
            }
        }
    }

    async fn check(&self) -> Result<(), async_nats::Error> {
        if let Some(edge) = &self.edge {
            make_if_missing(edge, self.intake_config()).await?;
        }
        make_if_missing(&self.control, self.records_config()).await?;
        self.keep_mirror().await
    }

    /// Makes the mirror of the token events stream if it is missing, and
    /// again if it was made from another origin than today's or holds more
    /// than it (a mirror never follows an origin made again).
    async fn keep_mirror(&self) -> Result<(), async_nats::Error> {
        let Some(edge) = &self.edge else {
            return Ok(());
        };
        // The mirror first: it can only be behind the origin read after it.
        let mirror = info(edge, enspace_nats::TOKEN_EVENTS_STREAM).await?;
        let Some(origin) = info(&self.control, enspace_nats::TOKEN_EVENTS_STREAM).await? else {
            // Nothing to mirror until the control plane has made it.
            return Ok(());
        };
        let identity = edge::identity(&origin);
        if let Some(mirror) = mirror {
            let made_from = mirror.config.metadata.get(edge::ORIGIN_KEY);
            if made_from == Some(&identity)
                && mirror.state.last_sequence <= origin.state.last_sequence
            {
                return Ok(());
            }
            tracing::warn!(
                mirror.last = mirror.state.last_sequence,
                origin.last = origin.state.last_sequence,
                "the token events stream was made again (or lost messages): making the API nodes' mirror of it again"
            );
            edge.delete_stream(enspace_nats::TOKEN_EVENTS_STREAM)
                .await?;
        }
        let config =
            enspace_nats::with_replicas(edge::token_events_mirror_config(&identity), self.replicas);
        edge.create_stream(config).await?;
        Ok(())
    }

    /// Deletes the consumers on the mirror that no node makes: a node's is
    /// an ordered pull consumer that lives 30 s idle. A durable one, a push
    /// one or one that outlives that would hold the mirror's consumer limit
    /// (and so every node's feed) for good; a node's credentials can make
    /// them, so they are removed.
    async fn sweep_consumers(&self) -> Result<(), async_nats::Error> {
        let Some(edge) = &self.edge else {
            return Ok(());
        };
        let stream = edge
            .get_stream_no_info(enspace_nats::TOKEN_EVENTS_STREAM)
            .await?;
        let mut consumers = stream.consumers();
        let mut foreign = Vec::new();
        while let Some(info) = consumers.next().await {
            let info = info?;
            let config = &info.config;
            if config.durable_name.is_some()
                || config.deliver_subject.is_some()
                || config.inactive_threshold.is_zero()
                || config.inactive_threshold > NODE_CONSUMER_IDLE
            {
                foreign.push(info.name);
            }
        }
        for name in &foreign {
            stream.delete_consumer(name).await?;
        }
        if !foreign.is_empty() {
            tracing::warn!(
                consumers = foreign.len(),
                "deleted {} consumers on the API nodes' mirror that no node makes",
                foreign.len()
            );
        }
        Ok(())
    }
}

/// A stream's info, `None` if there is no such stream.
async fn info(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Info>, async_nats::Error> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().clone())),
        Err(e) if is_not_found(e.kind()) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(ref j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Makes a stream that is missing; leaves one that is there alone.
async fn make_if_missing(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<(), async_nats::Error> {
    if info(js, &config.name).await?.is_none() {
        tracing::warn!(stream = %config.name, "the stream {} was missing; making it again", config.name);
        js.create_stream(config).await?;
    }
    Ok(())
}
