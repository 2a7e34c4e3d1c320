//! `cargo run --release -p enspace-bench -- <benchmark>`: every benchmark
//! prints its figure beside a baseline measured in the same run, and the
//! ratio (what survives a noisy machine). One module per benchmark.

use enspace_bench_kit::{cluster as clusters, support, verdict, wrk};

mod audit_state;
mod audit_verify;
mod catch_up;
mod cluster;
mod create;
mod expiry_sweep;
mod fairness;
mod ingest;
mod insight_ingest;
mod insights;
mod leak;
mod lossless;
mod node_load;
mod node_logging;
mod node_memory;
mod propagation;
mod query;
mod record_publish;
mod scale_out;
mod server_limits;
mod signin_flood;
mod stream_reset;
mod verify;

use clap::{Parser, Subcommand};

/// The allocator the `enspace` binary ships with, so that what runs in this
/// process (the indexer, the in-process API node) is measured as deployed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "ENSPACE tokens benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Auditors' point-in-time questions (state at a moment, changes in an hour) over a million events.
    AuditState(audit_state::Args),
    AuditVerify(audit_verify::Args),
    /// A node's fold of a long signed token events stream, with and without its checks.
    CatchUp(catch_up::Args),
    /// The control plane as a cluster: creations through the JetStream commit point (R1, R3) beside one process, follower lag, failover.
    Cluster(cluster::Args),
    /// Token creations over HTTP with durable appends, beside /healthz and raw sled flushes.
    Create(create::Args),
    /// The notification sweep over a due index of 1,000,000 tokens: nothing due (and nothing written), then 1,000 due.
    ExpirySweep(expiry_sweep::Args),
    /// Local token verification over a replica of many tokens, and memory per token.
    Verify(verify::Args),
    /// An API node's read route under wrk, with and without the auth layer.
    NodeLoad(node_load::Args),
    /// A real api-node process catching up on many tokens: time to ready and RSS.
    NodeMemory(node_memory::Args),
    /// Revocation propagation from the token service to a node's replica over JetStream.
    Propagation(propagation::Args),
    /// Request-log indexer rate beside the raw JetStream and sled ceilings.
    Ingest(ingest::Args),
    /// The request-log indexer's rate with the insight counters beside without them.
    InsightIngest(insight_ingest::Args),
    /// GET /v1/tokens/{id}/insights over 1,000,000 records beside the 90-day stats route.
    Insights(insights::Args),
    /// `wrk` on an API node with auth and request logging vs the bare route; record accounting.
    NodeLogging(node_logging::Args),
    /// Paced requests through real processes: zero records dropped, all queryable within 5 s.
    Lossless(lossless::Args),
    /// A lost NATS store under many tokens: until a running node is consistent again.
    StreamReset(stream_reset::Args),
    /// An API node's record publisher alone, on one NATS account and on the two trust zones.
    RecordPublish(record_publish::Args),
    /// Request-log queries over a large index, and its disk bytes per record.
    Query(query::Args),
    /// 600 concurrent wrong sign-ins against enspace serve: RSS, /healthz, another user's sign-ins.
    SigninFlood(signin_flood::Args),
    /// One token under wrk beside a light one at 100/s: the light token's records all indexed.
    Fairness(fairness::Args),
    /// The bare read route under wrk, served by axum::serve and by the limits-keeping server.
    ServerLimits(server_limits::Args),
    /// A GitHub leak report until two API nodes refuse the token, beside DELETE /v1/tokens/{id}.
    Leak(leak::Args),
    /// 1, 2 and 4 control-plane processes indexing the same request records: each one's share and CPU per record.
    ScaleOut(scale_out::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::AuditState(args) => audit_state::run(args),
        Bench::AuditVerify(args) => audit_verify::run(args),
        Bench::CatchUp(args) => catch_up::run(args),
        Bench::Cluster(args) => cluster::run(args),
        Bench::Create(args) => create::run(args),
        Bench::ExpirySweep(args) => expiry_sweep::run(args),
        Bench::Verify(args) => verify::run(args),
        Bench::NodeLoad(args) => node_load::run(args),
        Bench::NodeMemory(args) => node_memory::run(args),
        Bench::Propagation(args) => propagation::run(args),
        Bench::Ingest(args) => ingest::run(args),
        Bench::InsightIngest(args) => insight_ingest::run(args),
        Bench::Insights(args) => insights::run(args),
        Bench::Query(args) => query::run(args),
        Bench::RecordPublish(args) => record_publish::run(args),
        Bench::StreamReset(args) => stream_reset::run(args),
        Bench::NodeLogging(args) => node_logging::run(args),
        Bench::Lossless(args) => lossless::run(args),
        Bench::SigninFlood(args) => signin_flood::run(args),
        Bench::Fairness(args) => fairness::run(args),
        Bench::ServerLimits(args) => server_limits::run(args),
        Bench::Leak(args) => leak::run(args),
        Bench::ScaleOut(args) => scale_out::run(args),
    }
}
