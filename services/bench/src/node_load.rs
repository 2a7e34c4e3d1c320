//! An API node's read route under `wrk -t2 -c64`, side by side: the same
//! router and layers with the auth layer, and with it switched off.
//! Rounds alternate (off, on, off, on, …) so drift hits both alike.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use enspace_api_node::{NodeState, records};
use enspace_core::SystemClock;
use prometheus_client::registry::Registry;
use rand::SeedableRng;

use crate::support::{created_event, fake_secret};
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
    let secrets: Vec<String> = (0..args.tokens).map(|_| fake_secret(&mut rng)).collect();
    let (on, off) = runtime.block_on(async {
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
        let without_auth = bare_route(node, http);
        anyhow::Ok((serve(with_auth).await?, serve(without_auth).await?))
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
    Ok(())
}
