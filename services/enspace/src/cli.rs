//! Command-line flags; every flag can also come from its environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod limits;
pub use limits::*;

#[derive(Parser)]
#[command(name = "enspace", version, about = "ENSPACE personal access tokens")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Everything in one process: token service, request-log indexer,
    /// settings UI and an example API node. Embedded (no NATS) unless
    /// --nats-url is given.
    Serve(ServiceArgs),
    /// The control plane: management API, settings UI, introspection, audit
    /// API, event store and request-log indexer. Needs NATS.
    Tokens(ServiceArgs),
    /// One ENSPACE API node. Needs NATS.
    ApiNode(NodeArgs),
    /// Offline checks and exports of a stopped token service's event log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Reads a password on stdin and prints its argon2id PHC string, for
    /// directory files.
    HashPassword,
    /// Prints the public event key of a data directory's signing key as
    /// JSON, as `GET /v1/event-key` serves it (for `api-node --event-key`).
    EventKey(EventKeyArgs),
    /// Fills a stopped control plane's event log from the token events
    /// stream: all of it for an empty data directory, or the events a
    /// damaged log lost. Every hash and signature is checked.
    Restore(RestoreArgs),
}

/// `enspace event-key`.
#[derive(Args, Clone, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EventKeyArgs {
    #[command(subcommand)]
    pub action: Option<EventKeyAction>,
    #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// The signing key file, if not the data directory's.
    #[arg(long, env = "ENSPACE_EVENT_SIGNING_KEY")]
    pub event_signing_key: Option<PathBuf>,
    /// Make the signing key if there is none yet (as `enspace tokens` does
    /// at its first start).
    #[arg(long)]
    pub create: bool,
    /// Also write the JSON to this file (for API nodes'
    /// `--event-key-file`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Subcommand, Clone, Debug)]
pub enum EventKeyAction {
    /// Rotates the event signing key of a stopped control plane (a running
    /// one: `POST /v1/event-key/rotate`): records a `signing_key_rotated`
    /// event signed by the current key naming a new one, which signs every
    /// event after it. API nodes and auditors follow it from the log.
    Rotate(RotateKeyArgs),
}

/// `enspace event-key rotate`.
#[derive(Args, Clone, Debug)]
pub struct RotateKeyArgs {
    #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// The signing key file, if not the data directory's.
    #[arg(long, env = "ENSPACE_EVENT_SIGNING_KEY")]
    pub event_signing_key: Option<PathBuf>,
    /// The current key's private half is lost: the key in the key file
    /// (made when there is none) takes over, and the break is recorded,
    /// signed by the new key. Only nodes and auditors given the new key
    /// explicitly accept it.
    #[arg(long, requires = "previous_key")]
    pub lost_key: bool,
    /// With `--lost-key`: the public key that was lost (base64, or the JSON
    /// `enspace event-key` printed), as API nodes pinned it.
    #[arg(long)]
    pub previous_key: Option<String>,
}

/// How to reach NATS, besides `--nats-url` (which may carry
/// `user:password@`).
#[derive(Args, Clone, Debug, Default)]
pub struct NatsAuthArgs {
    /// A NATS credentials file (JWT and nkey seed).
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[arg(long, env = "NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,
    /// The subject prefix of this process's NATS inboxes (where its replies
    /// come); default `_INBOX.<user>` for the user in --nats-url, else
    /// `_INBOX`. Each node's user may subscribe to its own prefix only.
    #[arg(long, env = "NATS_INBOX_PREFIX")]
    pub nats_inbox_prefix: Option<String>,
}

impl NatsAuthArgs {
    pub fn credentials(&self) -> enspace_nats::Credentials {
        enspace_nats::Credentials {
            creds_file: self.nats_creds.clone(),
            nkey_file: self.nats_nkey.clone(),
            inbox_prefix: self.nats_inbox_prefix.clone(),
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct RestoreArgs {
    #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
    pub data: PathBuf,
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: String,
    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,
    /// The signing key file, if not the data directory's.
    #[arg(long, env = "ENSPACE_EVENT_SIGNING_KEY")]
    pub event_signing_key: Option<PathBuf>,
    /// The public key (base64) the stream's events were signed with, when
    /// the signing key file is not the one that signed them.
    #[arg(long, env = "ENSPACE_EVENT_KEY")]
    pub event_key: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Checks the hash chain of a stopped service's event log (`--data`),
    /// or, with `--export FILE --event-key KEY`, an export file on its own:
    /// the chain, every signature and every field, with no data directory.
    /// Prints the event count and head hash; exit 1 naming the first bad
    /// seq.
    Verify {
        #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
        data: PathBuf,
        /// An export (`enspace audit export`) to check instead of a data
        /// directory; `-` reads it from stdin.
        #[arg(long, requires = "event_key")]
        export: Option<PathBuf>,
        /// The public event key (base64, as `GET /v1/event-key` serves it)
        /// the export must be signed with: the one you trust, not the one
        /// the export names.
        #[arg(long, requires = "export")]
        event_key: Option<String>,
    },
    /// Every token as it stood at a moment, from an export alone: the
    /// export is verified first (as `verify --export`), then folded up to
    /// `--at` by the service's own rules. Prints what `GET /v1/audit/state`
    /// answers, as one JSON document; exit 1 if the export does not verify.
    State {
        /// The export (`enspace audit export`); `-` reads it from stdin.
        #[arg(long)]
        export: PathBuf,
        /// The public event key (base64) the export must be signed with.
        #[arg(long)]
        event_key: String,
        /// The moment (RFC 3339).
        #[arg(long)]
        at: jiff::Timestamp,
        /// Only tokens that could reach this workspace.
        #[arg(long)]
        workspace: Option<String>,
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Writes the event log as NDJSON: a header naming the event key and
    /// the head, then one signed audit event a line, in seq order.
    Export {
        #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
        data: PathBuf,
        /// The event signing key file (default `<data>/event-signing.key`).
        #[arg(long, env = "ENSPACE_EVENT_SIGNING_KEY")]
        event_signing_key: Option<PathBuf>,
    },
}

#[derive(Args, Clone, Debug)]
pub struct ServiceArgs {
    /// Address to listen on.
    #[arg(long, env = "ENSPACE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data directory (sled).
    #[arg(long, env = "ENSPACE_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// Directory file (JSON) of users and workspaces; the demo one if absent.
    #[arg(long, env = "ENSPACE_DIRECTORY")]
    pub directory: Option<PathBuf>,
    /// Key API nodes present to `POST /v1/introspect`.
    #[arg(long, env = "ENSPACE_INTERNAL_KEY", hide_env_values = true)]
    pub internal_key: Option<String>,
    /// How long request records are kept (e.g. 90d, 12h, 30s).
    #[arg(long, env = "ENSPACE_REQUEST_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub request_retention: Duration,
    /// With NATS: the most the request records stream keeps (e.g. 50GiB;
    /// the oldest records go first), or `none`.
    #[arg(long, env = "ENSPACE_REQUEST_MAX_BYTES", default_value = "none", value_parser = parse_bytes)]
    pub request_max_bytes: MaxBytes,
    /// This process's name: in heartbeats, and as the node id of the
    /// example API node that `serve` mounts.
    #[arg(long, env = "ENSPACE_NODE_ID", default_value = "serve")]
    pub node_id: String,
    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,
    /// Two NATS trust zones (`deploy/nats.conf`): the prefix the API nodes'
    /// account's JetStream API is imported under in this account
    /// (`$JS.edge.API` in the shipped configuration). The control plane
    /// then makes and keeps the nodes' streams there: a mirror of the token
    /// events stream and the intake of request records, which its own copy
    /// sources. Unset: one account for everything.
    #[arg(long, env = "ENSPACE_NATS_EDGE_API")]
    pub nats_edge_api: Option<String>,
    /// The event signing key file (made at first start); default
    /// `<data>/event-signing.key`. Keep it outside the data directory in
    /// production, so that losing the disk does not lose the key.
    #[arg(long, env = "ENSPACE_EVENT_SIGNING_KEY")]
    pub event_signing_key: Option<PathBuf>,
    /// The public key (base64) to check the token events stream with when
    /// restoring an empty data directory, if not the signing key's own.
    #[arg(long, env = "ENSPACE_EVENT_KEY")]
    pub event_key: Option<String>,
    /// How often at most the token events stream is repaired: foreign
    /// messages in it (not events signed by the event key) are deleted
    /// together, at most once per this interval.
    #[arg(long, env = "ENSPACE_STREAM_REPAIR_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub stream_repair_interval: Duration,
    /// With NATS: how long `serve`'s API node answers token calls without
    /// word from the control plane (`none`: forever).
    #[arg(long, env = "ENSPACE_MAX_STALENESS", default_value = "60s", value_parser = parse_staleness)]
    pub max_staleness: Staleness,
    /// GitHub's secret-scanning public keys (the JSON document at
    /// https://api.github.com/meta/public_keys/secret_scanning): turns on
    /// `POST /v1/secret-scanning/github`. Re-read when a report names a key
    /// it does not hold.
    #[arg(long, env = "ENSPACE_GITHUB_KEYS")]
    pub github_keys: Option<PathBuf>,
    #[command(flatten)]
    pub limits: ServiceLimits,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub notifications: NotificationArgs,
}

/// Where notifications go besides the API, and how often the due ones are
/// looked for.
#[derive(Args, Clone, Debug)]
pub struct NotificationArgs {
    /// POST every notification here (JSON, signed as Standard Webhooks);
    /// needs --webhook-secret.
    #[arg(long, env = "ENSPACE_WEBHOOK_URL", hide_env_values = true,
        value_parser = Quiet(parse_webhook_url))]
    pub webhook_url: Option<reqwest::Url>,
    /// The Standard Webhooks secret the webhook is signed with: `whsec_`
    /// and the base64 of 24 to 64 random bytes.
    #[arg(long, env = "ENSPACE_WEBHOOK_SECRET", hide_env_values = true,
        value_parser = Quiet(parse_webhook_secret))]
    pub webhook_secret: Option<WebhookSecret>,
    /// The wait after a failed webhook delivery; doubled after each further
    /// failure, up to 10 minutes.
    #[arg(long, env = "ENSPACE_WEBHOOK_RETRY_MIN", default_value = "1s", value_parser = parse_duration)]
    pub webhook_retry_min: Duration,
    /// How often the tokens' expiry stages that fell due are looked for.
    #[arg(long, env = "ENSPACE_NOTIFICATION_SWEEP_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub notification_sweep_interval: Duration,
}

impl Default for NotificationArgs {
    fn default() -> Self {
        NotificationArgs {
            webhook_url: None,
            webhook_secret: None,
            webhook_retry_min: Duration::from_secs(1),
            notification_sweep_interval: Duration::from_secs(10),
        }
    }
}

pub use enspace_notify::webhook::WebhookSecret;

/// A value parser for flags that may hold a secret: its errors name the
/// flag and say what is wrong, but never repeat the value (clap's own
/// errors quote it).
#[derive(Clone)]
pub struct Quiet<T>(pub fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Quiet<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg
            .and_then(clap::Arg::get_long)
            .map_or_else(|| "the value".to_owned(), |long| format!("--{long}"));
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                format!("{name} is not UTF-8\n"),
            )
            .with_cmd(cmd)
        })?;
        (self.0)(text).map_err(|why| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {name} (not shown): {why}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

fn parse_webhook_secret(s: &str) -> Result<WebhookSecret, String> {
    s.parse()
        .map_err(|e: enspace_notify::webhook::SecretError| e.to_string())
}

fn parse_webhook_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("the webhook URL must be http:// or https:// with a host".into());
    }
    Ok(url)
}

/// Running `enspace tokens` as several processes on one NATS.
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Be one of several control-plane processes (each with its own --data
    /// and --node-id, the same NATS and the same event signing key): one
    /// writes at a time, holding a lease in NATS; the others serve reads
    /// and forward writes to it. Needs NATS.
    #[arg(long, env = "ENSPACE_CLUSTER")]
    pub cluster: bool,
    /// How long the writer lease lasts unless renewed: how long writes wait
    /// for a new writer after the old one dies (e.g. 2s).
    #[arg(long, env = "ENSPACE_LEASE_TTL", default_value = "2s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// Replicas of every ENSPACE_ stream and bucket this process creates (3
    /// on a 3-server NATS cluster). Never lowers an existing stream's.
    #[arg(long, env = "ENSPACE_STREAM_REPLICAS", default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,
}

impl Default for ClusterArgs {
    fn default() -> Self {
        ClusterArgs {
            cluster: false,
            lease_ttl: Duration::from_secs(2),
            stream_replicas: 1,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    /// Address to listen on.
    #[arg(long, env = "ENSPACE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: String,
    /// This node's name in request records and metrics.
    #[arg(long, env = "ENSPACE_NODE_ID", default_value = "api-node")]
    pub node_id: String,
    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,
    /// The control plane's public event key (base64, from `enspace
    /// event-key` or `GET /v1/event-key`). Required, or --event-key-file.
    #[arg(long, env = "ENSPACE_EVENT_KEY", conflicts_with = "event_key_file")]
    pub event_key: Option<String>,
    /// A file holding the control plane's public event key: the JSON
    /// `enspace event-key` prints (or writes with --out), or the base64 key.
    #[arg(long, env = "ENSPACE_EVENT_KEY_FILE")]
    pub event_key_file: Option<PathBuf>,
    /// Without a key, pin the key of the first heartbeat heard (trust on
    /// first use: whoever can publish a heartbeat first is trusted). Logs
    /// a warning.
    #[arg(long, env = "ENSPACE_TRUST_FIRST_EVENT_KEY", conflicts_with_all = ["event_key", "event_key_file"])]
    pub trust_first_event_key: bool,
    /// How long the node answers token calls without word from the control
    /// plane before it answers 503 `token_state_stale` (`none`: forever).
    #[arg(long, env = "ENSPACE_MAX_STALENESS", default_value = "60s", value_parser = parse_staleness)]
    pub max_staleness: Staleness,
    #[command(flatten)]
    pub limits: NodeLimits,
}

/// A staleness bound, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staleness(pub Option<Duration>);

pub fn parse_staleness(s: &str) -> Result<Staleness, String> {
    if s.trim() == "none" {
        return Ok(Staleness(None));
    }
    parse_duration(s).map(|d| Staleness(Some(d)))
}

/// `90d`, `12h`, `15m`, `30s` or `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration such as 90d, 12h, 30s or 500ms: {e}"))?;
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn the_record_linger_is_zero_to_one_second() {
        assert_eq!(parse_linger("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_linger("0"), Ok(Duration::ZERO));
        assert_eq!(parse_linger("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_linger("2s").is_err());
        assert!(parse_linger("soon").is_err());
        assert_eq!(parse_batch_max("1"), Ok(1));
        assert_eq!(parse_batch_max("10000"), Ok(10_000));
        assert!(parse_batch_max("0").is_err());
        assert!(parse_batch_max("10001").is_err());
    }

    #[test]
    fn leak_report_limits_parse_as_per_minute_or_none() {
        assert_eq!(
            parse_per_minute("10/min"),
            Ok(PerMinute(NonZeroU32::new(10)))
        );
        assert_eq!(parse_per_minute("none"), Ok(PerMinute(None)));
        assert!(parse_per_minute("0/min").is_err());
        assert!(parse_per_minute("10/s").is_err());
    }

    #[test]
    fn durations_parse_with_their_units() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0ms").is_err());
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_duration("3x").is_err());
    }

    #[test]
    fn sizes_are_bytes_with_a_decimal_or_binary_unit_or_none() {
        assert_eq!(parse_bytes("none"), Ok(MaxBytes(None)));
        assert_eq!(parse_bytes("1048576"), Ok(MaxBytes(Some(1 << 20))));
        assert_eq!(parse_bytes("64KiB"), Ok(MaxBytes(Some(65_536))));
        assert_eq!(parse_bytes("50GiB"), Ok(MaxBytes(Some(50 << 30))));
        assert_eq!(parse_bytes("500 MB"), Ok(MaxBytes(Some(500_000_000))));
        assert_eq!(parse_bytes("2tb"), Ok(MaxBytes(Some(2_000_000_000_000))));
        for bad in [
            "0",
            "0GiB",
            "-1",
            "1.5GiB",
            "GiB",
            "10 parsecs",
            "",
            "99999999999TiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn staleness_is_a_duration_or_none() {
        assert_eq!(parse_staleness("none"), Ok(Staleness(None)));
        assert_eq!(
            parse_staleness("60s"),
            Ok(Staleness(Some(Duration::from_secs(60))))
        );
        assert!(parse_staleness("never").is_err());
    }

    #[test]
    fn every_listener_takes_trusted_proxies_and_refuses_a_bad_block() {
        use clap::Parser;
        let parsed = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let node = parsed(&[
            "enspace",
            "api-node",
            "--nats-url",
            "nats://127.0.0.1:4222",
            "--trusted-proxies",
            "10.0.0.0/8, ::1",
        ]);
        let Ok(Cli {
            command: Command::ApiNode(node),
        }) = node
        else {
            panic!("api-node takes --trusted-proxies");
        };
        assert!(
            node.limits
                .http
                .trusted_proxies
                .contains("10.1.2.3".parse().expect("ip"))
        );
        assert!(
            node.limits
                .http
                .trusted_proxies
                .contains("::1".parse().expect("ip"))
        );
        let Ok(Cli {
            command: Command::Tokens(tokens),
        }) = parsed(&["enspace", "tokens", "--trusted-proxies", "192.0.2.7"])
        else {
            panic!("tokens takes --trusted-proxies");
        };
        assert!(
            tokens
                .limits
                .http
                .trusted_proxies
                .contains("192.0.2.7".parse().expect("ip"))
        );
        assert!(parsed(&["enspace", "serve"]).is_ok_and(|cli| matches!(
            cli.command, Command::Serve(args) if args.limits.http.trusted_proxies.is_empty()
        )));
        assert!(parsed(&["enspace", "serve", "--trusted-proxies", "10.0.0.0/33"]).is_err());
    }

    #[test]
    fn rates_are_none_or_a_positive_number_per_second() {
        assert_eq!(parse_rate("none"), Ok(TokenRateLimit(None)));
        assert_eq!(
            parse_rate("100/s"),
            Ok(TokenRateLimit(NonZeroU32::new(100)))
        );
        for bad in ["0/s", "100", "100/m", "-1/s", "x/s", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
