//! Command-line flags; every flag can also come from its environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "enspace", version, about = "ENSPACE personal access tokens")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Everything in one process: token service, request-log indexer,
    /// settings UI and an example API node (no NATS needed).
    Serve(ServeArgs),
    /// Offline checks and exports of a stopped token service's event log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Reads a password on stdin and prints its argon2id PHC string, for
    /// directory files.
    HashPassword,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Replays the event log, checks the hash chain, prints the event count
    /// and head hash; exit 1 naming the first bad seq.
    Verify {
        #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
        data: PathBuf,
    },
    /// Writes the event log as NDJSON, one audit event a line, in seq order.
    Export {
        #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
        data: PathBuf,
    },
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ENSPACE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data directory (sled).
    #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// NATS server; without it `serve` runs embedded.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Directory file (JSON) of users and workspaces; the demo one if absent.
    #[arg(long, env = "ENSPACE_DIRECTORY")]
    pub directory: Option<PathBuf>,
    /// Key API nodes present to `POST /v1/introspect`.
    #[arg(long, env = "ENSPACE_INTERNAL_KEY", hide_env_values = true)]
    pub internal_key: Option<String>,
}
