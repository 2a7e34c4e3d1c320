//! What handlers need of the cluster, once this process has joined it.

/// What handlers need of the cluster.
#[derive(Clone)]
pub struct ClusterHandle {
    pub role: super::Role,
    pub js: async_nats::jetstream::Context,
    pub lease: async_nats::jetstream::kv::Store,
    pub members: async_nats::jetstream::kv::Store,
    /// The bucket holding which process indexes which request partition.
    pub assignment: async_nats::jetstream::kv::Store,
    pub sessions: super::session_mirror::SessionMirror,
    /// How far this process has read the token events stream.
    pub followed: tokio::sync::watch::Receiver<crate::event_stream::Followed>,
}
