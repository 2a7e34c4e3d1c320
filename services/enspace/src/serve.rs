//! `enspace serve`: the whole product in one process.

use std::sync::Arc;

use anyhow::Context;
use enspace_core::SystemClock;
use enspace_tokens::directory::Directory;
use enspace_tokens::metrics::Metrics;
use enspace_tokens::store::Store;
use enspace_tokens::{AppState, Config};
use prometheus_client::registry::Registry;

use crate::cli::ServeArgs;

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let directory = match &args.directory {
        Some(path) => Directory::load(path)?,
        None => Directory::demo(),
    };
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create the data directory {}", args.data.display()))?;
    let store = Store::open(&args.data)
        .with_context(|| format!("cannot open the store in {}", args.data.display()))?;
    let metrics = Metrics::new(Registry::default());
    let config = Config {
        internal_key: args.internal_key.clone(),
        ..Config::default()
    };
    let state = AppState::new(
        store.clone(),
        directory,
        Arc::new(SystemClock),
        metrics,
        config,
    )?;
    let app = enspace_tokens::router(state);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (ENSPACE_LISTEN)", args.listen))?;
    let addr = listener.local_addr()?;
    println!("enspace serve listening on http://{addr}");
    println!("data: {}", args.data.display());
    if args.directory.is_none() {
        println!(
            "demo users: alice / alice-password, bob / bob-password, audra / audra-password (auditor)"
        );
    }
    tracing::info!(%addr, "listening on {addr}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    store.db.flush_async().await?;
    tracing::info!("stopped");
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
