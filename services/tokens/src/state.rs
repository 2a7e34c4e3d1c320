//! The service's shared state: a cheap clone with everything a handler needs.

use std::sync::Arc;

use enspace_core::Clock;
use jiff::SignedDuration;

use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::writer::Writer;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub writer: Writer,
    pub directory: Arc<Directory>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub config: Arc<Config>,
    /// The NATS connection, when the service publishes to JetStream.
    pub nats: Option<async_nats::Client>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub session_ttl: SignedDuration,
    /// `Bearer` key API nodes in other languages use for `/v1/introspect`.
    pub internal_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session_ttl: SignedDuration::from_hours(12),
            internal_key: None,
        }
    }
}

impl AppState {
    /// Opens nothing: takes an opened store and starts its writer.
    pub fn new(
        store: Store,
        directory: Directory,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        config: Config,
    ) -> Result<Self, crate::store::StoreError> {
        let writer = Writer::start(store.clone(), clock.clone(), metrics.clone())?;
        Ok(AppState {
            store,
            writer,
            directory: Arc::new(directory),
            clock,
            metrics,
            config: Arc::new(config),
            nats: None,
        })
    }
}
