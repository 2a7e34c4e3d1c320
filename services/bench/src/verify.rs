//! Local verification (parse, checksum, SHA-256, lookup, status, expiry,
//! scope, workspace) over a replica of many tokens, on one core; beside it
//! the two costs it cannot avoid, measured in the same run: SHA-256 of the
//! token, and a std `HashMap` (SipHash) lookup over the same keys.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use enspace_api_node::TokenReplica;
use enspace_api_node::verify::verify;
use enspace_core::{Scope, SecretHash};
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use crate::support::{created_event, fake_secret, rss_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Tokens in the replica.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: usize,
    /// Verifications to time.
    #[arg(long, default_value_t = 4_000_000)]
    verifications: usize,
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
        .map(|_| format!("Bearer {}", fake_secret(&mut rng)))
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
    let per_token = rss_after.saturating_sub(rss_before) as f64 / n as f64;
    println!(
        "replica: {n} tokens folded in {load:.2?}; {:.0} bytes of RSS per token ({:.0} MiB for the replica)",
        per_token,
        rss_after.saturating_sub(rss_before) as f64 / (1 << 20) as f64
    );

    let now_ms = jiff::Timestamp::now().as_millisecond();
    let v = args.verifications;

    let start = Instant::now();
    let mut ok = 0usize;
    for i in 0..v {
        let header = &headers[walk(&order, i)];
        let verdict = verify(&replica, Some(header), now_ms, Scope::Read, Some("acme"));
        ok += usize::from(verdict.rejection.is_none());
    }
    let verify_time = start.elapsed();
    assert_eq!(ok, v, "every verification should pass");
    let verify_rate = v as f64 / verify_time.as_secs_f64();

    let start = Instant::now();
    for i in 0..v {
        let header = &headers[walk(&order, i)];
        black_box(Sha256::digest(&header.as_bytes()[7..]));
    }
    let sha_rate = v as f64 / start.elapsed().as_secs_f64();

    let map: HashMap<[u8; 32], u64> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (SecretHash::of(&h[7..]).0, i as u64))
        .collect();
    let keys: Vec<[u8; 32]> = headers.iter().map(|h| SecretHash::of(&h[7..]).0).collect();
    let start = Instant::now();
    for i in 0..v {
        black_box(map.get(&keys[walk(&order, i)]));
    }
    let map_rate = v as f64 / start.elapsed().as_secs_f64();
    let both = 1.0 / (1.0 / sha_rate + 1.0 / map_rate);

    let start = Instant::now();
    for i in 0..v {
        black_box(replica.lookup(&keys[walk(&order, i)]));
    }
    let replica_rate = v as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for i in 0..v {
        let header = &headers[walk(&order, i)];
        black_box(enspace_core::secret::check_pat_format(&header[7..]).is_ok());
    }
    let format_rate = v as f64 / start.elapsed().as_secs_f64();

    println!(
        "verification (one core, {n} tokens)        : {:>12.0} /s  ({:.0} ns each)",
        verify_rate,
        1e9 / verify_rate
    );
    println!(
        "baseline SHA-256 of the token alone:            {:>12.0} /s  ({:.0} ns each)",
        sha_rate,
        1e9 / sha_rate
    );
    println!(
        "baseline std HashMap lookup alone:              {:>12.0} /s  ({:.0} ns each)",
        map_rate,
        1e9 / map_rate
    );
    println!(
        "baseline SHA-256 + std HashMap lookup:          {:>12.0} /s",
        both
    );
    println!(
        "part: replica lookup alone:                     {:>12.0} /s  ({:.0} ns each)",
        replica_rate,
        1e9 / replica_rate
    );
    println!(
        "part: format and checksum check alone:          {:>12.0} /s  ({:.0} ns each)",
        format_rate,
        1e9 / format_rate
    );
    println!(
        "ratio verification / (SHA-256 + std lookup):    {:>12.2}",
        verify_rate / both
    );
    println!("target: >= 2,000,000 verifications/s on one core");
    Ok(())
}
