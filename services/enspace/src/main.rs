//! `enspace`: one binary for every ENSPACE tokens process.

mod audit;
mod cli;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use cli::{AuditCommand, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let result = match cli.command {
        Command::Audit { command } => match command {
            AuditCommand::Verify { data } => audit::verify(&data),
            AuditCommand::Export { data } => audit::export(&data),
        },
        Command::HashPassword => audit::hash_password_from_stdin(),
        Command::Serve(args) => run(serve::serve(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(f)?;
    Ok(ExitCode::SUCCESS)
}
