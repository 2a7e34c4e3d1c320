//! Failover as clients see it: three clients keep creating tokens, and
//! what counts is the first creation acknowledged (`201`) among the
//! requests sent after the failure.
//!
//! - SIGKILL of the writer (R3, `--lease-ttl 2s`): beside it, when the
//!   lease moved (the survivor holds it), over many kills;
//! - SIGKILL of the NATS server leading the token events stream: beside
//!   it, when JetStream itself had elected new leaders for the stream and
//!   the lease bucket (each answers `STREAM.INFO` again, from a live
//!   server) and had a meta leader (it answers `STREAM.NAMES`): what the
//!   processes add to JetStream's own election.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{create_request, ms};
use crate::clusters::{Member, NatsCluster, wait_writer};
use crate::support::{percentile, sign_in};
use crate::verdict::Verdict;

/// Fewer kills than these say nothing of a worst case or a p99.
const MIN_KILLS: usize = 5;
const MIN_NATS_KILLS: usize = 3;

/// The target of the client-seen failover after a writer's SIGKILL (p99).
const TARGET_WRITER_KILL_P99: Duration = Duration::from_millis(2500);
/// The most the processes may add to JetStream's own election.
const TARGET_NATS_LOSS_EXTRA: Duration = Duration::from_secs(1);

/// When a request was sent, when it was answered, and its status (0: no
/// answer).
type Outcome = (Instant, Instant, u16);

/// Clients creating tokens in a loop, round the bases they are given.
struct Clients {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    async fn start(
        client: &reqwest::Client,
        bases: &[String],
        session: &str,
        n: usize,
    ) -> anyhow::Result<Self> {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(n);
        for c in 0..n {
            let creates = bases
                .iter()
                .map(|base| create_request(client, base, session))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (outcomes, stop) = (outcomes.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let sent = Instant::now();
                    let status = creates[i % creates.len()](i)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    if let Ok(mut o) = outcomes.lock() {
                        o.push((sent, Instant::now(), status));
                    }
                    if status != 201 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        let clients = Clients {
            outcomes,
            stop,
            tasks,
        };
        clients
            .first_ack_after(Instant::now(), Duration::from_secs(30))
            .await?;
        Ok(clients)
    }

    /// When the first request sent at or after `t` was acknowledged.
    async fn first_ack_after(&self, t: Instant, within: Duration) -> anyhow::Result<Instant> {
        loop {
            let first = self.outcomes.lock().ok().and_then(|o| {
                o.iter()
                    .filter(|(sent, _, status)| *sent >= t && *status == 201)
                    .map(|(_, answered, _)| *answered)
                    .min()
            });
            if let Some(first) = first {
                return Ok(first);
            }
            if t.elapsed() > within {
                bail!("no creation acknowledged within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops; answers how many requests sent at or after `t` were not
    /// acknowledged.
    async fn stop(self, t: Instant) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        self.outcomes.lock().map_or(0, |o| {
            o.iter()
                .filter(|(sent, _, status)| *sent >= t && *status != 201)
                .count()
        })
    }
}

/// Resolves when `kv`'s lease entry names `node_id` (after `watch` started).
async fn lease_taken_by(
    watch: &mut async_nats::jetstream::kv::Watch,
    node_id: &str,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    while let Some(entry) = watch.next().await {
        let entry = entry?;
        let holder: serde_json::Value = serde_json::from_slice(&entry.value).unwrap_or_default();
        if holder["node_id"] == node_id {
            return Ok(());
        }
    }
    bail!("the lease watch ended")
}

/// SIGKILLs of the writer under three clients' load on the survivor: when
/// the lease moved, and when the clients saw the first acknowledged write.
pub async fn writer_kills(
    client: &reqwest::Client,
    nats_url: &str,
    a: &mut Member,
    b: &mut Member,
    kills: usize,
) -> anyhow::Result<()> {
    let probe = enspace_nats::connect(nats_url, "bench-lease-watch").await?;
    let lease_kv = async_nats::jetstream::new(probe)
        .get_key_value(enspace_cluster::LEASE_BUCKET)
        .await?;
    println!(
        "== failover (R3, --lease-ttl 2s): SIGKILL of the writer under 3 clients' load until the first acknowledged write"
    );
    let (mut leases, mut seen, mut failed) = (Vec::new(), Vec::new(), 0);
    for _ in 0..kills {
        let writer = wait_writer(client, &[a.base(), b.base()]).await?;
        let (victim, survivor, survivor_id) = if writer == "cp-a" {
            (&mut *a, &mut *b, "cp-b")
        } else {
            (&mut *b, &mut *a, "cp-a")
        };
        let session = sign_in(client, &survivor.base()).await?;
        let clients = Clients::start(client, &[survivor.base()], &session, 3).await?;
        let mut watch = lease_kv.watch(enspace_cluster::lease::LEASE_KEY).await?;
        victim.kill();
        let killed = Instant::now();
        let lease = async {
            tokio::time::timeout(
                Duration::from_secs(30),
                lease_taken_by(&mut watch, survivor_id),
            )
            .await
            .context("the lease did not move within 30 s")??;
            anyhow::Ok(killed.elapsed())
        };
        let (lease, first) = tokio::join!(
            lease,
            clients.first_ack_after(killed, Duration::from_secs(30))
        );
        leases.push(lease?);
        seen.push(first? - killed);
        failed += clients.stop(killed).await;
        victim.restart()?;
    }
    leases.sort_unstable();
    seen.sort_unstable();
    println!(
        "  {kills} kills: first acknowledged write p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms;  beside: the lease moved p50 {:.0} ms  p99 {:.0} ms;  {failed} requests sent after a kill not acknowledged   target p99 < {} ms: {}",
        ms(percentile(&seen, 0.50)),
        ms(percentile(&seen, 0.99)),
        ms(seen.last().copied().unwrap_or_default()),
        ms(percentile(&leases, 0.50)),
        ms(percentile(&leases, 0.99)),
        TARGET_WRITER_KILL_P99.as_millis(),
        // Requests in flight at a kill are expected to go unanswered (they
        // are reported above), not failures of the failover.
        Verdict::new(
            seen.len(),
            0,
            MIN_KILLS,
            percentile(&seen, 0.99) < TARGET_WRITER_KILL_P99
        )
    );
    Ok(())
}

/// The server leading `stream`, if one answers for it within half a second.
async fn leader_of(js: &async_nats::jetstream::Context, stream: &str) -> Option<String> {
    let info = tokio::time::timeout(Duration::from_millis(500), async {
        js.get_stream(stream).await.ok()?.info().await.ok().cloned()
    })
    .await
    .ok()??;
    info.cluster?.leader
}

/// Whether JetStream's meta leader (which alone answers `STREAM.NAMES` in
/// a cluster) answers within half a second.
async fn meta_leader_answers(js: &async_nats::jetstream::Context) -> bool {
    use futures::StreamExt;
    let mut names = js.stream_names();
    matches!(
        tokio::time::timeout(Duration::from_millis(500), names.next()).await,
        Ok(Some(Ok(_)))
    )
}

/// SIGKILLs of the NATS server leading the token events stream, under
/// three clients' load through both processes: when JetStream had leaders
/// again, and when the clients saw the first acknowledged write.
pub async fn nats_server_loss(
    client: &reqwest::Client,
    nats: &mut NatsCluster,
    a: &Member,
    b: &Member,
    runs: usize,
) -> anyhow::Result<()> {
    println!(
        "== NATS server loss (R3): SIGKILL of the NATS server leading the token events stream under 3 clients' load"
    );
    let probe = enspace_nats::connect(&nats.url(), "bench-probe").await?;
    let js = async_nats::jetstream::new(probe);
    let streams = [
        enspace_nats::TOKEN_EVENTS_STREAM.to_owned(),
        format!("KV_{}", enspace_cluster::LEASE_BUCKET),
    ];
    let mut rows = Vec::new();
    for run in 0..runs {
        wait_writer(client, &[a.base(), b.base()]).await?;
        let leader = leader_of(&js, &streams[0])
            .await
            .context("the token events stream has no leader")?;
        let lease_leader = leader_of(&js, &streams[1]).await;
        let victim: usize = leader
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .context("a server name nN")?;
        let session = sign_in(client, &a.base()).await?;
        let clients = Clients::start(client, &[a.base(), b.base()], &session, 3).await?;
        nats.kill(victim);
        let killed = Instant::now();
        let streams_led = async {
            for stream in &streams {
                loop {
                    match leader_of(&js, stream).await {
                        Some(now) if now != leader => break,
                        _ if killed.elapsed() > Duration::from_secs(60) => {
                            bail!("{stream} had no leader within 60 s")
                        }
                        _ => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
            Ok(killed.elapsed())
        };
        let meta_led = async {
            while !meta_leader_answers(&js).await {
                if killed.elapsed() > Duration::from_secs(60) {
                    bail!("JetStream had no meta leader within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(killed.elapsed())
        };
        let (streams_led, meta_led, first) = tokio::join!(
            streams_led,
            meta_led,
            clients.first_ack_after(killed, Duration::from_secs(60))
        );
        let (streams_led, meta_led, seen) = (streams_led?, meta_led?, first? - killed);
        let elected = streams_led.max(meta_led);
        let failed = clients.stop(killed).await;
        println!(
            "  run {}: killed {leader} (lease bucket led by {}): JetStream's leaders back after {:.0} ms (streams {:.0} ms, meta {:.0} ms), first acknowledged write after {:.0} ms ({:+.0} ms), {failed} requests not acknowledged",
            run + 1,
            lease_leader.as_deref().unwrap_or("?"),
            ms(elected),
            ms(streams_led),
            ms(meta_led),
            ms(seen),
            ms(seen) - ms(elected),
        );
        rows.push((elected, seen));
        nats.restart(victim)?;
        nats.wait_for_jetstream().await?;
        wait_current(&js, &streams).await?;
    }
    let worst = rows
        .iter()
        .map(|(elected, seen)| seen.saturating_sub(*elected))
        .max()
        .unwrap_or_default();
    println!(
        "  added by the processes to JetStream's own election, worst of {runs}: {:.0} ms   target < {} ms: {}",
        ms(worst),
        TARGET_NATS_LOSS_EXTRA.as_millis(),
        Verdict::new(
            rows.len(),
            0,
            MIN_NATS_KILLS,
            worst < TARGET_NATS_LOSS_EXTRA
        )
    );
    Ok(())
}

/// Waits until every replica of `streams` is current again.
async fn wait_current(
    js: &async_nats::jetstream::Context,
    streams: &[String],
) -> anyhow::Result<()> {
    let start = Instant::now();
    for stream in streams {
        loop {
            let current = async {
                let info = js.get_stream(stream).await.ok()?.info().await.ok()?.clone();
                let cluster = info.cluster?;
                Some(cluster.replicas.len() >= 2 && cluster.replicas.iter().all(|r| r.current))
            };
            if tokio::time::timeout(Duration::from_secs(1), current).await == Ok(Some(true)) {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("{stream}'s replicas were not current again within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
