//! A sign-in flood against a real `enspace serve` process (release build):
//! `--clients` concurrent clients (600), each from its own loopback address
//! so that the per-address limit does not stop them before the password
//! check, send wrong sign-ins with new user names as fast as they are
//! answered, for `--seconds` (30). Meanwhile `/healthz` and a call to the
//! embedded API node (with alice's token) are each timed every 20 ms, the
//! process's RSS and threads are sampled, and two other users sign in
//! correctly every half second, each from an address of their own: bob
//! from the device he signed in on before the flood (its device cookie),
//! audra from a new one.
//!
//! Baseline, same run: `/healthz` and the API call timed the same way for
//! 5 s before the flood. Targets: RSS < 300 MB, `/healthz` p99 < 50 ms
//! during the flood, bob's sign-ins succeed (audra's are reported: a new
//! device competes with the flood's first attempts for a hashing slot).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::support::{Process, percentile, rss_bytes};
use crate::verdict::Verdict;

/// Fewer samples than these say nothing of bob's chances or of a p99.
const MIN_BOB_SIGN_INS: usize = 10;
const MIN_P99_SAMPLES: usize = 100;

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent flooding clients, each with its own source address.
    #[arg(long, default_value_t = 600)]
    clients: usize,
    /// Seconds of flood.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The enspace binary (built with `cargo build --release --bin enspace`).
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
}

const TARGET_RSS: u64 = 300 << 20;
const TARGET_P99: Duration = Duration::from_millis(50);
const BASELINE: Duration = Duration::from_secs(5);

/// 127.1.x.y: all of 127/8 is the loopback on Linux.
fn flood_address(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250) as u8 + 1))
}

fn threads(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Times `GET url` (with `bearer`, if any) every 20 ms until `until`.
async fn sample(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    until: Instant,
) -> Vec<Duration> {
    let mut out = Vec::new();
    while Instant::now() < until {
        let start = Instant::now();
        let mut req = client.get(url);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Ok(res) = req.send().await
            && res.status().is_success()
        {
            let _ = res.bytes().await;
            out.push(start.elapsed());
        } else {
            out.push(Duration::from_secs(60));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.sort();
    out
}

/// Signs in as alice and creates a read token in acme; its secret.
async fn alices_token(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let session = crate::support::sign_in(client, base).await?;
    let res = client
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(&session)
        .header("content-type", "application/json")
        .body(
            r#"{"description":"flood","expiration":"3m","scopes":["read"],"workspaces":["acme"]}"#,
        )
        .send()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    body["secret"]
        .as_str()
        .map(str::to_owned)
        .context("no secret in the creation answer")
}

/// A sign-in with `body` (and `cookie`, a device cookie, if given): its
/// device cookie when it succeeds (`None` if it sets none), an error if not.
async fn sign_in(
    client: &reqwest::Client,
    url: &str,
    body: &'static str,
    cookie: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let res = req.send().await?;
    if !res.status().is_success() {
        bail!("sign-in answered {}", res.status());
    }
    Ok(res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("enspace_device="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.clients == 0 || args.clients > 60_000 || args.seconds == 0 {
        bail!("--clients must be 1 to 60000 and --seconds at least 1");
    }
    let data = tempfile::tempdir()?;
    let dir = data.path().to_string_lossy().into_owned();
    let serve = Process::enspace(&args.binary, &["serve", "--data", &dir])?;
    serve.wait_ready(Duration::from_secs(30))?;
    let pid = serve.child.id().to_string();
    let base = format!("http://{}", serve.base);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let healthz = format!("{base}/healthz");
    let api = format!("{base}/api/v1/workspaces/acme/records");
    let secret = runtime.block_on(alices_token(&client, &base))?;
    let (baseline, baseline_api) = runtime.block_on(async {
        let until = Instant::now() + BASELINE;
        tokio::join!(
            sample(&client, &healthz, None, until),
            sample(&client, &api, Some(&secret), until)
        )
    });
    let idle_rss = rss_bytes(&pid).unwrap_or(0);
    // Bob signed in on this device before (a browser keeps the device
    // cookie; an `enspace` without device cookies sets none).
    let bob_device = runtime.block_on(sign_in(
        &reqwest::Client::new(),
        &format!("{base}/v1/session"),
        r#"{"username":"bob","password":"bob-password"}"#,
        None,
    ))?;

    // The flood, on a runtime (and thread) of its own.
    let stop = Arc::new(AtomicBool::new(false));
    let statuses: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let flood = {
        let (stop, statuses, url, clients) = (
            stop.clone(),
            statuses.clone(),
            format!("{base}/v1/session"),
            args.clients,
        );
        std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for n in 0..clients {
                    let client = reqwest::Client::builder()
                        .local_address(flood_address(n))
                        .build()?;
                    let (stop, statuses, url) = (stop.clone(), statuses.clone(), url.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut attempt = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            attempt += 1;
                            let body = format!(
                                r#"{{"username":"flood-{n}-{attempt}","password":"wrong"}}"#
                            );
                            let slot = match client
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(body)
                                .send()
                                .await
                            {
                                Ok(res) => match res.status().as_u16() {
                                    401 => 0,
                                    503 => 1,
                                    429 => 2,
                                    _ => 3,
                                },
                                Err(_) => 3,
                            };
                            statuses[slot].fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
                anyhow::Ok(())
            })
        })
    };

    let bob = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()?;
    let audra = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)))
        .build()?;
    let session = format!("{base}/v1/session");
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let (during, during_api, (peak_rss, peak_threads), bob_results) = runtime.block_on(async {
        let healthz = sample(&client, &healthz, None, until);
        let api_calls = sample(&client, &api, Some(&secret), until);
        let memory = async {
            let (mut rss, mut threads_peak) = (0u64, 0u64);
            while Instant::now() < until {
                rss = rss.max(rss_bytes(&pid).unwrap_or(0));
                threads_peak = threads_peak.max(threads(&pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (rss, threads_peak)
        };
        let signs_in = |client: reqwest::Client, body: &'static str, cookie: Option<String>| {
            let session = session.clone();
            async move {
                let mut results = Vec::new();
                tokio::time::sleep(Duration::from_secs(3)).await;
                while Instant::now() < until {
                    let t = Instant::now();
                    let ok = sign_in(&client, &session, body, cookie.as_deref())
                        .await
                        .is_ok();
                    results.push((ok, t.elapsed()));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                results
            }
        };
        let bob = signs_in(
            bob,
            r#"{"username":"bob","password":"bob-password"}"#,
            bob_device.clone(),
        );
        let audra = signs_in(
            audra,
            r#"{"username":"audra","password":"audra-password"}"#,
            None,
        );
        let (healthz, api_calls, memory, bob, audra) =
            tokio::join!(healthz, api_calls, memory, bob, audra);
        (healthz, api_calls, memory, (bob, audra))
    });
    let (bob_results, audra_results) = bob_results;
    stop.store(true, Ordering::Relaxed);
    flood
        .join()
        .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?
        .context("the flood")?;
    let answered: Vec<u64> = statuses.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    let tally = |results: &[(bool, Duration)]| {
        let ok = results.iter().filter(|(ok, _)| *ok).count();
        let slowest = results.iter().map(|(_, t)| *t).max().unwrap_or_default();
        (ok, slowest)
    };
    let (bob_ok, bob_slowest) = tally(&bob_results);
    let (audra_ok, audra_slowest) = tally(&audra_results);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{} concurrent wrong sign-ins from {} addresses for {} s against enspace serve:",
        args.clients, args.clients, args.seconds
    );
    println!(
        "  flood answers: {} 401 (password checked), {} 503 (no hashing slot), {} 429 (throttled), {} other",
        answered[0], answered[1], answered[2], answered[3]
    );
    println!(
        "  /healthz before the flood (baseline): p50 {:.2} ms  p99 {:.2} ms",
        ms(percentile(&baseline, 0.50)),
        ms(percentile(&baseline, 0.99))
    );
    let p99 = percentile(&during, 0.99);
    println!(
        "  /healthz during the flood:            p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (target p99 < {} ms)",
        ms(percentile(&during, 0.50)),
        ms(p99),
        ms(during.last().copied().unwrap_or_default()),
        TARGET_P99.as_millis()
    );
    println!(
        "  API call before / during the flood:   p50 {:.2} / {:.2} ms  p99 {:.2} / {:.2} ms",
        ms(percentile(&baseline_api, 0.50)),
        ms(percentile(&during_api, 0.50)),
        ms(percentile(&baseline_api, 0.99)),
        ms(percentile(&during_api, 0.99))
    );
    println!(
        "  RSS: {} MiB idle, peak {} MiB during the flood (target < {} MB); peak threads {peak_threads}",
        idle_rss >> 20,
        peak_rss >> 20,
        TARGET_RSS >> 20
    );
    println!(
        "  bob's valid sign-ins during the flood, from his device ({}): {bob_ok} of {} succeeded, slowest {:.0} ms",
        if bob_device.is_some() {
            "its device cookie"
        } else {
            "no device cookie set"
        },
        bob_results.len(),
        ms(bob_slowest)
    );
    println!(
        "  audra's, from a new device (no cookie): {audra_ok} of {} succeeded, slowest {:.0} ms",
        audra_results.len(),
        ms(audra_slowest)
    );
    // bob's refused sign-ins are the failures; the /healthz p99 needs
    // samples of its own.
    let verdict = Verdict::new(
        bob_results.len(),
        bob_results.len().saturating_sub(bob_ok),
        MIN_BOB_SIGN_INS,
        peak_rss < TARGET_RSS && p99 < TARGET_P99 && during.len() >= MIN_P99_SAMPLES,
    );
    println!("  targets {verdict}");
    Ok(())
}
