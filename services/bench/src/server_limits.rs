//! What keeping the HTTP limits costs (hyper's header read timer, the
//! connection registry and request-body timeouts): the same bare read route
//! under `wrk -t2 -c64`, served by `axum::serve` (no limits; the baseline)
//! and by `enspace_http::server::serve` as every ENSPACE listener is.
//! Rounds alternate so that drift hits both alike.

use std::sync::Arc;

use enspace_api_node::NodeState;
use enspace_core::SystemClock;
use prometheus_client::registry::Registry;

use crate::node_load::{PATH, bare_route, serve};
use crate::wrk::{alternate, mean};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per wrk round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds per side.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (plain, limited) = runtime.block_on(async {
        let mut registry = Registry::default();
        let node = NodeState::new(
            "bench",
            Arc::new(SystemClock),
            &mut registry,
            None,
            Arc::new(enspace_api_node::Freshness::in_process()),
        );
        let http = enspace_http::HttpMetrics::register(&mut registry);
        let router = bare_route(node, http);
        let plain = serve(router.clone()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let limited = listener.local_addr()?;
        tokio::spawn(enspace_http::server::serve(
            listener,
            router,
            enspace_http::server::ServerLimits::default(),
            std::future::pending(),
        ));
        anyhow::Ok((plain, limited))
    })?;
    let (plain_runs, limited_runs) = alternate(
        (plain, "axum::serve"),
        (limited, "with limits"),
        PATH,
        args.seconds,
        args.rounds,
        "X-Bench: 1",
    )?;
    let (rps_plain, rps_limited) = (
        mean(&plain_runs, |r| r.requests_per_sec),
        mean(&limited_runs, |r| r.requests_per_sec),
    );
    println!(
        "wrk -t2 -c64 GET {PATH} (no auth), mean of {} rounds:",
        args.rounds
    );
    println!(
        "  axum::serve, no limits (baseline): {rps_plain:>9.0} req/s   p99 {:.3} ms",
        mean(&plain_runs, |r| r.p99_ms)
    );
    println!(
        "  enspace_http::server with limits:  {rps_limited:>9.0} req/s   p99 {:.3} ms",
        mean(&limited_runs, |r| r.p99_ms)
    );
    println!("  throughput ratio: {:.3}", rps_limited / rps_plain);
    Ok(())
}
