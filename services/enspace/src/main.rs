//! `enspace`: one binary for every ENSPACE tokens process.

mod audit;
mod audit_state;
mod telemetry;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use enspace::cli::{AuditCommand, Cli, Command};
use enspace::run;
use enspace_core::SystemClock;

/// Every request allocates (its record, headers, buffers); under load glibc's
/// malloc took 15–25 % of the API node's and the indexer's CPU, mimalloc a
/// fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let result = match cli.command {
        Command::Audit { command } => match command {
            AuditCommand::Verify {
                export: Some(file),
                event_key: Some(key),
                ..
            } => audit::verify_export(&file, &key),
            AuditCommand::Verify { data, .. } => audit::verify(&data),
            AuditCommand::State {
                export,
                event_key,
                at,
                workspace,
                user,
            } => audit_state::print(
                &export,
                &event_key,
                at,
                enspace_core::audit_state::StateFilter { workspace, user },
            ),
            AuditCommand::Export {
                data,
                event_signing_key,
            } => audit::export(&data, event_signing_key.as_deref()),
        },
        Command::HashPassword => audit::hash_password_from_stdin(),
        Command::EventKey(args) => match args.action.clone() {
            Some(enspace::cli::EventKeyAction::Rotate(rotate)) => {
                block_on_code(async move { enspace::event_key::rotate(rotate).await })
            }
            None => enspace::event_key::print(&args),
        },
        Command::Restore(args) => {
            block_on_code(async move { enspace::restore::restore(args).await })
        }
        Command::Serve(args) => block_on(async move {
            let listener = listen(args.listen).await?;
            println!("data: {}", args.data.display());
            if args.directory.is_none() {
                println!(
                    "demo users: alice / alice-password, bob / bob-password, audra / audra-password (auditor)"
                );
            }
            match &args.nats_url {
                Some(url) => println!("mode: JetStream at {}", enspace_nats::redact_url(url)),
                None => println!("mode: embedded (no NATS)"),
            }
            run::serve(
                args,
                listener,
                Arc::new(SystemClock),
                run::shutdown_signal(),
            )
            .await
        }),
        Command::Tokens(args) => block_on(async move {
            let listener = listen(args.listen).await?;
            run::tokens(
                args,
                listener,
                Arc::new(SystemClock),
                run::shutdown_signal(),
            )
            .await
        }),
        Command::ApiNode(args) => block_on(async move {
            enspace::event_key::pinned(&args)?;
            let listener = listen(args.listen).await?;
            run::api_node(
                args,
                listener,
                Arc::new(SystemClock),
                run::shutdown_signal(),
            )
            .await
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn listen(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (ENSPACE_LISTEN)"))?;
    let bound = listener.local_addr()?;
    println!("enspace listening on http://{bound}");
    tracing::info!(addr = %bound, "listening on {bound}");
    Ok(listener)
}

fn block_on_code<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(f)
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(f)?;
    Ok(ExitCode::SUCCESS)
}
