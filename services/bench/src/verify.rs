//! Local verification (parse, checksum, SHA-256, lookup, status, expiry,
//! scope, workspace) over a replica of many tokens, on one core; beside it
//! the two costs it cannot avoid, measured in the same run: SHA-256 of the
//! token, and a std `HashMap` (SipHash) lookup over the same keys.
//!
//! And the cost of fences (issue 25): the same verification over a second
//! replica of the same tokens, each with 4 allowed CIDRs (and the caller
//! inside the last of them, so every range is tried), which must keep at
//! least 0.95 of the plain rate.
//!
//! And the honest baseline for the replica's hand-written table: what a
//! plain implementation does, SHA-256 then a lookup in a std (hashbrown)
//! map keyed by the digest with a pass-through hasher (the digest's first
//! eight bytes), in one loop, beside SHA-256 then the replica lookup.

use enspace_core::PatSecret;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::time::Instant;

use enspace_api_node::TokenReplica;
use enspace_api_node::verify::verify;
use enspace_core::{Scope, SecretHash};
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use crate::support::{created_event, rss_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Tokens in the replica.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: usize,
    /// Verifications to time, per round.
    #[arg(long, default_value_t = 2_000_000)]
    verifications: usize,
    /// Rounds of every measurement; each figure is the median.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Walks the headers in memory order.
fn walk(order: &[usize], i: usize) -> usize {
    order[i % order.len()]
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let n = args.tokens;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Headers side by side, visited in order: a request's bytes are in cache
    // when it is verified; the replica lookup is what misses.
    let headers: Vec<String> = (0..n)
        .map(|_| {
            format!(
                "Bearer {}",
                PatSecret::from_rng(&mut rng).expose().to_owned()
            )
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| headers[i].as_ptr() as usize);

    let rss_before = rss_bytes("self").unwrap_or(0);
    let replica = TokenReplica::new();
    let start = Instant::now();
    for (i, header) in headers.iter().enumerate() {
        replica.apply(&created_event(
            i as u64 + 1,
            &header[7..],
            &format!("user{}", i % 1000),
        ));
    }
    let load = start.elapsed();
    let rss_after = rss_bytes("self").unwrap_or(0);
    let fenced = TokenReplica::new();
    for (i, header) in headers.iter().enumerate() {
        fenced.apply(&fenced_event(i as u64 + 1, &header[7..], i % 1000));
    }
    let client = Some(std::net::IpAddr::from([203, 0, 113, 7]));
    let per_token = rss_after.saturating_sub(rss_before) as f64 / n as f64;
    println!(
        "replica: {n} tokens folded in {load:.2?}; {:.0} bytes of RSS per token ({:.0} MiB for the replica)",
        per_token,
        rss_after.saturating_sub(rss_before) as f64 / (1 << 20) as f64
    );

    let now_ms = jiff::Timestamp::now().as_millisecond();
    let v = args.verifications;
    let map: HashMap<[u8; 32], u64> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (SecretHash::of(&h[7..]).0, i as u64))
        .collect();
    let keys: Vec<[u8; 32]> = headers.iter().map(|h| SecretHash::of(&h[7..]).0).collect();
    let plain: HashMap<[u8; 32], PlainEntry, BuildHasherDefault<FirstEight>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let entry = PlainEntry {
                id: [i as u8; 16],
                expires_at_ms: i64::MAX,
                principal: (i % 1000) as u32,
                scopes: 3,
                flags: 1,
            };
            (*k, entry)
        })
        .collect();

    // Each figure is the median of `rounds`, the rounds interleaved so that
    // what the other tenants of the machine do falls on all of them alike.
    let mut verify_ns = Vec::new();
    let mut sha_ns = Vec::new();
    let mut map_ns = Vec::new();
    let mut replica_ns = Vec::new();
    let mut sha_replica_ns = Vec::new();
    let mut format_ns = Vec::new();
    let mut sha_plain_ns = Vec::new();
    let mut hot_ns = Vec::new();
    let mut fenced_ns = Vec::new();
    for _ in 0..args.rounds {
        fenced_ns.push(time_each(v, |i| {
            let header = &headers[walk(&order, i)];
            let verdict = verify(
                &fenced,
                Some(header),
                now_ms,
                Scope::Read,
                Some("acme"),
                || black_box(client),
            );
            assert!(
                verdict.rejection.is_none(),
                "every fenced verification should pass"
            );
        }));
        verify_ns.push(time_each(v, |i| {
            let header = &headers[walk(&order, i)];
            let verdict = verify(
                &replica,
                Some(header),
                now_ms,
                Scope::Read,
                Some("acme"),
                || None,
            );
            assert!(
                verdict.rejection.is_none(),
                "every verification should pass"
            );
        }));
        sha_ns.push(time_each(v, |i| {
            let header = &headers[walk(&order, i)];
            black_box(Sha256::digest(&header.as_bytes()[7..]));
        }));
        map_ns.push(time_each(v, |i| {
            black_box(map.get(&keys[walk(&order, i)]));
        }));
        replica_ns.push(time_each(v, |i| {
            black_box(replica.lookup(&keys[walk(&order, i)]));
        }));
        sha_replica_ns.push(time_each(v, |i| {
            let header = &headers[walk(&order, i)];
            black_box(replica.lookup(SecretHash::of(&header[7..]).as_bytes()));
        }));
        sha_plain_ns.push(time_each(v, |i| {
            let header = &headers[walk(&order, i)];
            let digest: [u8; 32] = Sha256::digest(&header.as_bytes()[7..]).into();
            black_box(plain.get(&digest).map(|e| (e.expires_at_ms, e.scopes)));
        }));
        format_ns.push(time_each(v, |i| {
            let header = &headers[walk(&order, i)];
            black_box(enspace_core::secret::check_pat_format(&header[7..]).is_ok());
        }));
        // One token over and over: everything in cache, so this is what a
        // verification costs the CPU, without the replica's cache miss.
        let hot = &headers[0];
        hot_ns.push(time_each(v / 4, |_| {
            let verdict = verify(
                &replica,
                Some(black_box(hot)),
                now_ms,
                Scope::Read,
                Some("acme"),
                || None,
            );
            assert!(verdict.rejection.is_none());
        }));
    }
    let [
        verify_ns,
        sha_ns,
        map_ns,
        replica_ns,
        sha_replica_ns,
        format_ns,
        hot_ns,
        sha_plain_ns,
        fenced_ns,
    ] = [
        verify_ns,
        sha_ns,
        map_ns,
        replica_ns,
        sha_replica_ns,
        format_ns,
        hot_ns,
        sha_plain_ns,
        fenced_ns,
    ]
    .map(Each::median);
    let both_ns = Each {
        cpu: sha_ns.cpu + map_ns.cpu,
        wall: sha_ns.wall + map_ns.wall,
    };
    let line = |label: &str, each: Each| {
        println!(
            "{label:<46}{:>10.0} /s  ({:.0} ns each on CPU, {:.0} ns wall)",
            1e9 / each.cpu,
            each.cpu,
            each.wall
        );
    };
    line(&format!("verification (one core, {n} tokens):"), verify_ns);
    line("verification, every token fenced (4 CIDRs):", fenced_ns);
    let kept = verify_ns.cpu / fenced_ns.cpu;
    println!(
        "ratio fenced / plain verification rate: {kept:.3} ({}; target >= 0.95)",
        if kept >= 0.95 { "met" } else { "NOT met" }
    );
    line("baseline SHA-256 of the token alone:", sha_ns);
    line("baseline std HashMap lookup alone:", map_ns);
    line("baseline SHA-256 + std HashMap lookup:", both_ns);
    line("part: replica lookup alone:", replica_ns);
    line("part: SHA-256 then replica lookup:", sha_replica_ns);
    line("part: format and checksum check alone:", format_ns);
    line("part: verification, one token (all cached):", hot_ns);
    println!(
        "ratio verification / (SHA-256 + std lookup):  {:>10.2}  ({:.2} by wall time)",
        both_ns.cpu / verify_ns.cpu,
        both_ns.wall / verify_ns.wall
    );
    line(
        "baseline SHA-256 then pass-through map lookup:",
        sha_plain_ns,
    );
    let gain = sha_plain_ns.cpu / sha_replica_ns.cpu;
    println!(
        "ratio (SHA-256 + replica) / (SHA-256 + pass-through map): {gain:.2}: the hand-written table {}",
        if gain >= 1.10 {
            "beats the plain map by >= 10 % (kept)"
        } else {
            "does NOT beat the plain map by 10 %"
        }
    );
    println!(
        "medians of {} interleaved rounds; rates by this thread's time on CPU \
         (/proc/thread-self/schedstat), so that other tenants of the machine count less",
        args.rounds
    );
    println!("target: >= 2,000,000 verifications/s on one core");
    Ok(())
}

/// [`created_event`] for `secret`, of user `u`, usable from 4 ranges (the
/// last one the benchmark's caller's); each user's ranges differ.
fn fenced_event(seq: u64, secret: &str, u: usize) -> enspace_core::EventEnvelope {
    let (hi, lo) = (u / 256, u % 256);
    let cidrs = [
        format!("10.{hi}.{lo}.0/24"),
        format!("172.16.{lo}.0/24"),
        format!("2001:db8:{u:x}::/48"),
        "203.0.113.0/24".to_owned(),
    ];
    let cidrs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
    let mut event = created_event(seq, secret, &format!("user{u}"));
    if let enspace_core::TokenEvent::TokenCreated(created) = &mut event.event {
        created.allowed_cidrs = cidrs.iter().map(|c| (*c).to_owned()).collect();
    }
    event
}

/// What a plain map would hold per token: the replica slot's fields.
struct PlainEntry {
    #[allow(dead_code)]
    id: [u8; 16],
    expires_at_ms: i64,
    #[allow(dead_code)]
    principal: u32,
    scopes: u8,
    #[allow(dead_code)]
    flags: u8,
}

/// SHA-256 digests are uniform already: their first eight bytes are the hash.
#[derive(Default)]
struct FirstEight(u64);

impl Hasher for FirstEight {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if let Some(first) = bytes.get(..8) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(first);
            self.0 = u64::from_le_bytes(eight);
        }
    }
}

/// Time per call, on this thread's CPU and by the wall clock.
#[derive(Clone, Copy)]
struct Each {
    cpu: f64,
    wall: f64,
}

impl Each {
    fn median(xs: Vec<Each>) -> Each {
        let pick = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        Each {
            cpu: pick(xs.iter().map(|e| e.cpu).collect()),
            wall: pick(xs.iter().map(|e| e.wall).collect()),
        }
    }
}

/// Nanoseconds this thread has run on a CPU (the scheduler's own account,
/// current to the last tick).
fn on_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Time per call of `f(0..count)`.
fn time_each(count: usize, mut f: impl FnMut(usize)) -> Each {
    let cpu_start = on_cpu_ns();
    let start = Instant::now();
    for i in 0..count {
        f(i);
    }
    let wall = start.elapsed().as_nanos() as f64;
    let cpu = match (cpu_start, on_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64,
        // No schedstat (not Linux): the wall clock is all there is.
        _ => wall,
    };
    Each {
        cpu: cpu / count as f64,
        wall: wall / count as f64,
    }
}
