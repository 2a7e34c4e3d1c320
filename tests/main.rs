//! The integration suite: one test binary that drives the real thing (HTTP
//! on ephemeral loopback ports, sled in temp dirs, the `enspace` binary as a
//! process where a test kills or restarts it, a real nats-server per test
//! that needs JetStream).

mod support;

mod abuse;
mod api_node;
mod audit;
mod audit_export;
mod audit_state;
mod audit_timeline;
mod cluster;
mod cluster_notices;
mod cluster_reads;
mod cluster_sessions;
mod cluster_writes;
mod decoys;
mod distributed;
mod durability;
mod event_key;
mod expiry;
mod fences;
mod foreign_messages;
mod heartbeats;
mod insights;
mod introspection;
mod isolation;
mod key_rotation;
mod layout;
mod leaks;
mod notices;
mod notifications;
mod ops;
mod partitioned_indexing;
mod projection_faults;
mod record_batches;
mod request_logs;
mod rotation;
mod schemas;
mod secrets;
mod self_rotation;
mod sessions;
mod token_state;
mod tokens_api;
mod ui;
mod ui_audit;
mod ui_decoys;
mod ui_fences;
mod ui_insights;
mod ui_rotation;
mod ui_self_rotation;
mod validation;
mod workspace_admins;
mod zones;
