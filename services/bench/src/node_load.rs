//! An API node's read route under `wrk -t2 -c64`, side by side: the same
//! router and layers with the auth layer, and with it switched off; then
//! with the auth layer, with and without a per-token rate limit far above
//! the offered load (`--token-rate-limit`; every call is one token's, so
//! they all meet on one key). Rounds alternate (off, on, off, on, …) so
//! drift hits both alike.

use enspace_core::PatSecret;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use std::num::NonZeroU32;

use enspace_api_node::example::records;
use enspace_api_node::{NodeOptions, NodeState};
use enspace_core::SystemClock;
use prometheus_client::registry::Registry;
use rand::SeedableRng;

use crate::support::created_event;
use crate::wrk::{alternate, mean};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per wrk round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds per side.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Tokens in the replica.
    #[arg(long, default_value_t = 100_000)]
    tokens: usize,
}

pub const PATH: &str = "/api/v1/workspaces/acme/records";
/// The limit of the limited node: far above what wrk offers.
const RATE_LIMIT: u32 = 10_000_000;

/// The read route with the same layers and no auth (and so no record).
pub fn bare_route(node: NodeState, http: enspace_http::HttpMetrics) -> Router {
    enspace_http::layers::harden(
        Router::new()
            .route(
                "/api/v1/workspaces/{ws}/records",
                get(records::list_records),
            )
            .with_state(node),
        http,
    )
}

pub async fn serve(router: Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok(addr)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let secrets: Vec<String> = (0..args.tokens)
        .map(|_| PatSecret::from_rng(&mut rng).expose().to_owned())
        .collect();
    let (on, off, limited) = runtime.block_on(async {
        let mut registry = Registry::default();
        let node = NodeState::new(
            "bench",
            Arc::new(SystemClock),
            &mut registry,
            None,
            Arc::new(enspace_api_node::Freshness::in_process()),
        );
        for (i, secret) in secrets.iter().enumerate() {
            node.replica()
                .apply(&created_event(i as u64 + 1, secret, "alice"));
        }
        let http = enspace_http::HttpMetrics::register(&mut registry);
        let with_auth =
            enspace_http::layers::harden(enspace_api_node::api_routes(node.clone()), http.clone());
        let without_auth = bare_route(node, http.clone());
        let limited = NodeState::with_options(
            "bench-limited",
            Arc::new(SystemClock),
            enspace_api_node::metrics::NodeMetrics::register(&mut Registry::default()),
            None,
            Arc::new(enspace_api_node::Freshness::in_process()),
            NodeOptions {
                token_rate_limit: NonZeroU32::new(RATE_LIMIT),
            },
        );
        for (i, secret) in secrets.iter().enumerate() {
            limited
                .replica()
                .apply(&created_event(i as u64 + 1, secret, "alice"));
        }
        let with_limit = enspace_http::layers::harden(enspace_api_node::api_routes(limited), http);
        anyhow::Ok((
            serve(with_auth).await?,
            serve(without_auth).await?,
            serve(with_limit).await?,
        ))
    })?;
    let header = format!("Authorization: Bearer {}", secrets[args.tokens / 2]);

    let (off_runs, on_runs) = alternate(
        (off, "auth off"),
        (on, "auth on"),
        PATH,
        args.seconds,
        args.rounds,
        &header,
    )?;
    let (rps_on, rps_off) = (
        mean(&on_runs, |r| r.requests_per_sec),
        mean(&off_runs, |r| r.requests_per_sec),
    );
    let (p99_on, p99_off) = (mean(&on_runs, |r| r.p99_ms), mean(&off_runs, |r| r.p99_ms));
    let (p50_on, p50_off) = (mean(&on_runs, |r| r.p50_ms), mean(&off_runs, |r| r.p50_ms));
    println!(
        "wrk -t2 -c64 GET {PATH}, {} tokens in the replica, mean of {} rounds:",
        args.tokens, args.rounds
    );
    println!(
        "  auth off (baseline): {rps_off:>9.0} req/s   p50 {p50_off:.3} ms   p99 {p99_off:.3} ms"
    );
    println!(
        "  auth on:             {rps_on:>9.0} req/s   p50 {p50_on:.3} ms   p99 {p99_on:.3} ms"
    );
    println!(
        "  throughput ratio on/off: {:.3} (target >= 0.85); p99 added by auth: {:.3} ms (target < 1 ms)",
        rps_on / rps_off,
        p99_on - p99_off
    );

    let (free_runs, limited_runs) = alternate(
        (on, "limiter off"),
        (limited, "limiter on"),
        PATH,
        args.seconds,
        args.rounds,
        &header,
    )?;
    let (rps_free, rps_limited) = (
        mean(&free_runs, |r| r.requests_per_sec),
        mean(&limited_runs, |r| r.requests_per_sec),
    );
    let (p99_free, p99_limited) = (
        mean(&free_runs, |r| r.p99_ms),
        mean(&limited_runs, |r| r.p99_ms),
    );
    println!(
        "auth on, per-token rate limit {RATE_LIMIT}/s (far above the load) vs none, one token:"
    );
    println!("  limiter off (baseline): {rps_free:>9.0} req/s   p99 {p99_free:.3} ms");
    println!("  limiter on:             {rps_limited:>9.0} req/s   p99 {p99_limited:.3} ms");
    println!(
        "  throughput ratio on/off: {:.3} (target >= 0.97)",
        rps_limited / rps_free
    );
    Ok(())
}
