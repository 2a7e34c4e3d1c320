//! Partitioned indexing scaling out (issue 26): 1, 2 and 4 control-plane
//! processes (`enspace tokens --cluster` on one NATS) indexing the same
//! load. For each process: the records it indexed, its share of the load
//! (two owners per partition: 2/N with N ≥ 2, all of it alone), and its CPU
//! per record it indexed and per record of the load. The baseline is the
//! one process of the same run: with N processes each should spend about
//! 2/N of its CPU per record of the load.
//!
//! The processes start first and settle (every partition served by its
//! owners alone, as `GET /v1/cluster` shows); then the records are
//! published through the API node's own publisher and the run waits until
//! every owner has indexed its partitions' records.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use enspace_core::record_batch::{PARTITIONS, partition_of};

use crate::clusters::Member;
use crate::ingest::{publish_through, records};
use crate::support::{Nats, cpu_seconds};

#[derive(clap::Args)]
pub struct Args {
    /// The `enspace` binary.
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
    /// Records of the load.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Distinct tokens the records belong to.
    #[arg(long, default_value_t = 1_000)]
    tokens: usize,
    /// The numbers of processes to run, in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    processes: Vec<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::support::require_binary(&args.binary)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(args))
}

/// What one process did in a run.
struct Share {
    node: String,
    indexed: u64,
    cpu: f64,
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let load = records(args.records, args.tokens, 26);
    let mut per_partition = [0u64; PARTITIONS as usize];
    for r in &load {
        per_partition[partition_of(&r.token_id) as usize] += 1;
    }
    println!(
        "== scale-out: {} records of {} tokens indexed by N control-plane processes (two owners per partition)",
        load.len(),
        args.tokens
    );
    let mut baseline: Option<f64> = None;
    for &n in &args.processes {
        let (shares, took) = one_run(&args.binary, n, &load, &per_partition).await?;
        let total = load.len() as f64;
        let cpu_per_load: Vec<f64> = shares.iter().map(|s| s.cpu / total * 1e6).collect();
        let mean = cpu_per_load.iter().sum::<f64>() / cpu_per_load.len().max(1) as f64;
        let base = *baseline.get_or_insert(mean);
        println!(
            "  {n} process{}: every record indexed by its owners in {:.1} s ({:.0} records/s of the load)",
            if n == 1 { "" } else { "es" },
            took.as_secs_f64(),
            total / took.as_secs_f64()
        );
        for (s, per_load) in shares.iter().zip(&cpu_per_load) {
            let per_indexed = if s.indexed > 0 {
                s.cpu / s.indexed as f64 * 1e6
            } else {
                0.0
            };
            println!(
                "    {:<6} indexed {:>7} ({:.2} of the load)  CPU {:>5.2} s: {:>5.1} µs per record it indexed, {:>5.1} µs per record of the load",
                s.node,
                s.indexed,
                s.indexed as f64 / total,
                s.cpu,
                per_indexed,
                per_load
            );
        }
        let expected = if n == 1 { 1.0 } else { 2.0 / n as f64 };
        println!(
            "    each process's CPU per record of the load: {:.2} of one process's (2/N = {:.2})",
            mean / base,
            expected
        );
    }
    Ok(())
}

/// Starts `n` processes, waits until they settle, publishes `load`, and
/// waits until each has indexed its partitions' records.
async fn one_run(
    binary: &str,
    n: usize,
    load: &[enspace_core::RequestRecord],
    per_partition: &[u64; PARTITIONS as usize],
) -> anyhow::Result<(Vec<Share>, Duration)> {
    let nats = Nats::start()?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("event-signing.key");
    let http = reqwest::Client::new();
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        let node = format!("cp-{i}");
        let data = dir.path().join(&node);
        let member = Member::start(binary, &data, &key, &nats.url(), &node, &["--cluster"])?;
        members.push((node, member.process));
    }
    let bases: Vec<String> = members
        .iter()
        .map(|(_, p)| format!("http://{}", p.base))
        .collect();
    let owners = settled(&http, &bases[0], n).await?;
    let expected: Vec<u64> = members
        .iter()
        .map(|(node, _)| {
            owners
                .iter()
                .filter(|(_, o)| o.contains(node))
                .map(|(p, _)| per_partition[*p])
                .sum()
        })
        .collect();
    let pids: Vec<String> = members
        .iter()
        .map(|(_, p)| p.child.id().to_string())
        .collect();
    let cpu_before: Vec<f64> = pids.iter().map(|p| cpu_seconds(p).unwrap_or(0.0)).collect();
    let client = async_nats::connect(nats.url()).await?;
    let start = Instant::now();
    publish_through(&client, load, Default::default()).await?;
    loop {
        let mut done = true;
        for (base, want) in bases.iter().zip(&expected) {
            if indexed(&http, base).await < *want {
                done = false;
            }
        }
        if done {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("the records were not all indexed within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    let mut shares = Vec::with_capacity(n);
    for (((node, _), base), (pid, before)) in
        members.iter().zip(&bases).zip(pids.iter().zip(&cpu_before))
    {
        shares.push(Share {
            node: node.clone(),
            indexed: indexed(&http, base).await,
            cpu: cpu_seconds(pid).unwrap_or(0.0) - before,
        });
    }
    Ok((shares, took))
}

/// `enspace_request_records_indexed_total` of the process at `base`.
async fn indexed(http: &reqwest::Client, base: &str) -> u64 {
    let Ok(res) = http.get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("enspace_request_records_indexed_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until every partition is served by its owners alone (two each,
/// or the one process), among `n` processes; answers each partition's owners.
async fn settled(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> anyhow::Result<BTreeMap<usize, Vec<String>>> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(owners) = settled_now(http, base, n).await {
            return Ok(owners);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the partitions were not assigned and served within 60 s")
}

async fn settled_now(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> Option<BTreeMap<usize, Vec<String>>> {
    let view = crate::clusters::view(http, base).await?;
    let members = view["members"].as_array()?;
    if members.len() != n {
        return None;
    }
    let owners: BTreeMap<usize, Vec<String>> = view["assignment"]["owners"]
        .as_array()?
        .iter()
        .enumerate()
        .map(|(p, o)| {
            let ids = o
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (p, ids)
        })
        .collect();
    let all_own = members
        .iter()
        .filter_map(|m| m["node_id"].as_str())
        .all(|id| owners.values().any(|o| o.iter().any(|x| x == id)));
    let served_by_owners = owners.iter().all(|(p, o)| {
        o.len() == n.min(2)
            && members.iter().all(|m| {
                let id = m["node_id"].as_str().unwrap_or_default();
                let serves = m["serving"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x.as_u64() == Some(*p as u64)));
                serves == o.iter().any(|x| x == id)
            })
    });
    (owners.len() == PARTITIONS as usize && all_own && served_by_owners).then_some(owners)
}
