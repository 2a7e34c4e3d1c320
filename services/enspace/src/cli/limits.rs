//! The limits flags: of every HTTP listener, of the token service, of an
//! API node, and the values they take.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;

use super::parse_duration;

/// Limits of every HTTP listener.
#[derive(Args, Clone, Debug)]
pub struct HttpLimits {
    /// Most connections open at once (fewer if the open-file limit is lower).
    #[arg(long, env = "ENSPACE_MAX_CONNECTIONS", default_value_t = enspace_http::server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// A request's headers must arrive within this time of the connection
    /// opening or of its previous response.
    #[arg(long, env = "ENSPACE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// A request body may send nothing for at most this long.
    #[arg(long, env = "ENSPACE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Proxies in front (`CIDR,…`, e.g. `10.0.0.0/8,192.0.2.7`): from these
    /// peers the client address is the right-most hop of `X-Forwarded-For`
    /// or `Forwarded` that is not one of them. Default: none, the peer is
    /// the client.
    #[arg(long, env = "ENSPACE_TRUSTED_PROXIES", default_value = "none",
        value_parser = parse_trusted_proxies)]
    pub trusted_proxies: TrustedProxies,
}

pub use enspace_http::TrustedProxies;

fn parse_trusted_proxies(s: &str) -> Result<TrustedProxies, String> {
    s.parse()
}

impl Default for HttpLimits {
    fn default() -> Self {
        let server = enspace_http::server::ServerLimits::default();
        HttpLimits {
            max_connections: server.max_connections,
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

impl HttpLimits {
    pub fn server(&self) -> enspace_http::server::ServerLimits {
        enspace_http::server::ServerLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            ..enspace_http::server::ServerLimits::default()
        }
    }
}

/// Limits of `serve` and `tokens`: their HTTP listener's, sign-ins',
/// sessions' and tokens'; and the example API node's in `serve`.
#[derive(Args, Clone, Debug)]
pub struct ServiceLimits {
    #[command(flatten)]
    pub http: HttpLimits,
    /// Active tokens one user may hold; one more is refused (422).
    #[arg(long, env = "ENSPACE_MAX_TOKENS_PER_USER", default_value_t = enspace_accounts::limits::Limits::default().max_tokens_per_user)]
    pub max_tokens_per_user: usize,
    /// Sessions one user may hold; signing in once more ends the oldest.
    #[arg(long, env = "ENSPACE_MAX_SESSIONS_PER_USER", default_value_t = enspace_accounts::limits::Limits::default().max_sessions_per_user)]
    pub max_sessions_per_user: usize,
    /// How long a session lasts after sign-in (at least 1s). Every process
    /// of a cluster needs the same.
    #[arg(long, env = "ENSPACE_SESSION_TTL", default_value = "12h", value_parser = parse_session_ttl)]
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` always (a TLS proxy is in front);
    /// without it, only when the proxy says the request came over TLS.
    #[arg(long, env = "ENSPACE_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Leak reports (`POST /v1/tokens/report-leak`) one client address may
    /// send a minute (`N/min`, in bursts of N), or `none`.
    #[arg(long, env = "ENSPACE_LEAK_REPORT_LIMIT", default_value = "10/min", value_parser = parse_per_minute)]
    pub leak_report_limit: PerMinute,
    /// Calls per second one token may make on the API node that `serve`
    /// mounts (`N/s`, bursts of 2N), or `none`.
    #[arg(long, env = "ENSPACE_TOKEN_RATE_LIMIT", default_value = "none", value_parser = parse_rate)]
    pub token_rate_limit: TokenRateLimit,
    /// Request records the API node that `serve` mounts holds while they
    /// wait to be indexed; when full, the heaviest token's go first.
    #[arg(long, env = "ENSPACE_RECORD_QUEUE_CAPACITY", default_value_t = enspace_api_node::request_records::queue::DEFAULT_CAPACITY)]
    pub record_queue_capacity: usize,
    /// How long an API node lets request records gather into one JetStream
    /// message after the first arrives (`0` to `1s`; `0`: whatever is
    /// waiting goes at once).
    #[arg(long, env = "ENSPACE_RECORD_LINGER", default_value = "5ms", value_parser = parse_linger)]
    pub record_linger: Duration,
    /// Most request records in one JetStream message (1 to 10000; `1`
    /// publishes every record on its own, as nodes did before batches).
    #[arg(long, env = "ENSPACE_RECORD_BATCH_MAX", default_value_t = enspace_api_node::request_records::publisher::DEFAULT_BATCH_RECORDS, value_parser = parse_batch_max)]
    pub record_batch_max: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        let limits = enspace_accounts::limits::Limits::default();
        ServiceLimits {
            http: HttpLimits::default(),
            max_tokens_per_user: limits.max_tokens_per_user,
            max_sessions_per_user: limits.max_sessions_per_user,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            leak_report_limit: PerMinute(limits.leak_reports_per_minute),
            token_rate_limit: TokenRateLimit(None),
            record_queue_capacity: enspace_api_node::request_records::queue::DEFAULT_CAPACITY,
            record_linger: enspace_api_node::request_records::publisher::DEFAULT_LINGER,
            record_batch_max: enspace_api_node::request_records::publisher::DEFAULT_BATCH_RECORDS,
        }
    }
}

/// Limits of an API node: its HTTP listener's, each token's call rate, and
/// the request records it holds.
#[derive(Args, Clone, Debug)]
pub struct NodeLimits {
    #[command(flatten)]
    pub http: HttpLimits,
    /// Calls per second one token may make on this node (`N/s`, bursts of
    /// 2N), or `none`.
    #[arg(long, env = "ENSPACE_TOKEN_RATE_LIMIT", default_value = "none", value_parser = parse_rate)]
    pub token_rate_limit: TokenRateLimit,
    /// Request records held while they wait for JetStream (e.g. while NATS
    /// is away); when full, the heaviest token's go first.
    #[arg(long, env = "ENSPACE_RECORD_QUEUE_CAPACITY", default_value_t = enspace_api_node::request_records::queue::DEFAULT_CAPACITY)]
    pub record_queue_capacity: usize,
    /// How long an API node lets request records gather into one JetStream
    /// message after the first arrives (`0` to `1s`; `0`: whatever is
    /// waiting goes at once).
    #[arg(long, env = "ENSPACE_RECORD_LINGER", default_value = "5ms", value_parser = parse_linger)]
    pub record_linger: Duration,
    /// Most request records in one JetStream message (1 to 10000; `1`
    /// publishes every record on its own, as nodes did before batches).
    #[arg(long, env = "ENSPACE_RECORD_BATCH_MAX", default_value_t = enspace_api_node::request_records::publisher::DEFAULT_BATCH_RECORDS, value_parser = parse_batch_max)]
    pub record_batch_max: usize,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            http: HttpLimits::default(),
            token_rate_limit: TokenRateLimit(None),
            record_queue_capacity: enspace_api_node::request_records::queue::DEFAULT_CAPACITY,
            record_linger: enspace_api_node::request_records::publisher::DEFAULT_LINGER,
            record_batch_max: enspace_api_node::request_records::publisher::DEFAULT_BATCH_RECORDS,
        }
    }
}

/// `--token-rate-limit`: calls per second per token, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenRateLimit(pub Option<NonZeroU32>);

/// `none`, or `N/s` with N at least 1.
pub fn parse_rate(s: &str) -> Result<TokenRateLimit, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(TokenRateLimit(None));
    }
    let n = s
        .strip_suffix("/s")
        .ok_or_else(|| format!("`{s}`: give calls per second as N/s (e.g. 100/s), or none"))?;
    n.trim()
        .parse::<NonZeroU32>()
        .map(|n| TokenRateLimit(Some(n)))
        .map_err(|_| format!("`{s}`: N in N/s must be a whole number from 1"))
}

/// `--leak-report-limit`: reports per minute per client address, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerMinute(pub Option<NonZeroU32>);

/// `none`, or `N/min` with N at least 1.
pub fn parse_per_minute(s: &str) -> Result<PerMinute, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(PerMinute(None));
    }
    let n = s
        .strip_suffix("/min")
        .ok_or_else(|| format!("`{s}`: give reports per minute as N/min (e.g. 10/min), or none"))?;
    n.trim()
        .parse::<NonZeroU32>()
        .map(|n| PerMinute(Some(n)))
        .map_err(|_| format!("`{s}`: N in N/min must be a whole number from 1"))
}

/// `--request-max-bytes`: a size in bytes, or no bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaxBytes(pub Option<u64>);

/// `none`, or a whole number of bytes with an optional unit: `KB`, `MB`,
/// `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (of 1024).
pub fn parse_bytes(s: &str) -> Result<MaxBytes, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(MaxBytes(None));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "`{s}`: give a size such as 50GiB, 500MB or 1048576, or none"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}`: the size must start with a whole number"))?;
    match n.checked_mul(unit_bytes) {
        Some(0) => Err("the size must be more than zero (or none)".into()),
        Some(bytes) if bytes <= i64::MAX as u64 => Ok(MaxBytes(Some(bytes))),
        _ => Err(format!("`{s}` is too large")),
    }
}

/// `--session-ttl`: a duration of at least a second.
fn parse_session_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err("a session must last at least 1s".into());
    }
    Ok(d)
}

/// `--record-batch-max`: 1 to 10000 records.
pub fn parse_batch_max(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=enspace_core::record_batch::MAX_RECORDS).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a number of records from 1 to 10000")),
    }
}

/// `--record-linger`: a duration from 0 to 1 s.
pub fn parse_linger(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = if s == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("`{s}` is not a duration such as 5ms or 0: {e}"))?
    };
    if d > Duration::from_secs(1) {
        return Err("the linger must be at most 1s".into());
    }
    Ok(d)
}
