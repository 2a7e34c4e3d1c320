//! Which process indexes which partition of the request records.
//!
//! Request records are published per partition (`enspace.requests.<p>`).
//! The writer keeps an [`Assignment`] in the KV bucket
//! [`ASSIGNMENT_BUCKET`]: each partition has [`OWNERS`] owners among the
//! live processes (every one when there are fewer), chosen by rendezvous
//! hashing, so that a process joining or leaving moves only the partitions
//! it gains or had. Every process follows it ([`follow`]): it indexes the
//! partitions it owns, and keeps indexing one it no longer owns until every
//! owner of it says (in its report to the members bucket) that it serves
//! it, so that a partition handed over always has a process answering for
//! it. A process that stops reporting is forgotten after
//! [`FORGET_AFTER`](super::members::FORGET_AFTER), and its partitions go to
//! the others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Role, members};

/// The KV bucket holding the assignment, under the key [`KEY`].
pub const ASSIGNMENT_BUCKET: &str = "ENSPACE_INDEX_ASSIGNMENT";
/// The assignment's key.
pub const KEY: &str = "partitions";
/// Owners of each partition, when there are that many processes.
pub const OWNERS: usize = 2;
/// How often the writer checks the assignment against the members, and
/// each process what it should index.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a process may go without reporting before the writer gives
/// its partitions to the others.
pub const SILENT_AFTER: Duration = Duration::from_secs(4);

/// The partitions a process serves (answers queries for), as it reports.
pub type Serving = Arc<dyn Fn() -> Vec<u32> + Send + Sync>;

/// Each partition's owners: `owners[p]` for partition `p`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    /// The node ids owning each partition, by partition number.
    pub owners: Vec<Vec<String>>,
}

impl Assignment {
    /// Whether `node_id` owns `partition`.
    pub fn owns(&self, node_id: &str, partition: u32) -> bool {
        self.owners_of(partition).iter().any(|o| o == node_id)
    }

    pub fn owners_of(&self, partition: u32) -> &[String] {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.owners.get(p))
            .map_or(&[], Vec::as_slice)
    }

    /// The partitions `node_id` owns.
    pub fn of(&self, node_id: &str) -> BTreeSet<u32> {
        (0..self.owners.len())
            .filter_map(|p| u32::try_from(p).ok())
            .filter(|p| self.owns(node_id, *p))
            .collect()
    }
}

/// `partitions` partitions among `members`: each to the [`OWNERS`] members
/// ranking highest for it (rendezvous hashing), in rank order, skipping a
/// member that already owns its share (the ownerships divided among the
/// members, rounded up), so that shares stay even: with 16 partitions and
/// 4 processes, pure rendezvous hashing gave one process 11 of the 32
/// ownerships and another 6.
pub fn assign(members: &[String], partitions: u32) -> Assignment {
    let mut members: Vec<&String> = members.iter().collect();
    members.sort();
    members.dedup();
    let per_partition = OWNERS.min(members.len());
    let share = (per_partition * partitions as usize).div_ceil(members.len().max(1));
    let mut owned: BTreeMap<&String, usize> = BTreeMap::new();
    let owners = (0..partitions)
        .map(|p| {
            let mut ranked: Vec<(u64, &String)> =
                members.iter().map(|m| (rank(p, m), *m)).collect();
            ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            let mut chosen: Vec<&String> = ranked
                .iter()
                .map(|(_, m)| *m)
                .filter(|m| owned.get(m).copied().unwrap_or(0) < share)
                .take(per_partition)
                .collect();
            // The last partitions may find too few members with room left.
            for (_, m) in &ranked {
                if chosen.len() >= per_partition {
                    break;
                }
                if !chosen.contains(m) {
                    chosen.push(m);
                }
            }
            for m in &chosen {
                *owned.entry(m).or_insert(0) += 1;
            }
            chosen.into_iter().cloned().collect()
        })
        .collect();
    Assignment { owners }
}

/// FNV-1a (64 bits) of `<partition>/<node id>`, mixed: stable across
/// processes and builds.
fn rank(partition: u32, node_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{partition}/{node_id}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's last bytes barely reach the high bits: finish like splitmix64.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The assignment in the bucket, if there is one and it reads.
pub async fn read(kv: &kv::Store) -> Result<Option<Assignment>, async_nats::Error> {
    Ok(kv
        .get(KEY)
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// On the writer, forever: puts the assignment of `partitions` among the
/// live members whenever it differs from the bucket's.
pub async fn keep_assigned(kv: kv::Store, members_kv: kv::Store, role: Role, partitions: u32) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Each member's last report revision, and when it was first seen here.
    let mut heard: BTreeMap<String, (u64, Instant)> = BTreeMap::new();
    loop {
        tick.tick().await;
        if !role.is_writer() {
            heard.clear();
            continue;
        }
        let reports = match members::reports(&members_kv).await {
            Ok(reports) => reports,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the members to assign partitions");
                continue;
            }
        };
        let now = Instant::now();
        heard.retain(|id, _| reports.iter().any(|(m, _)| &m.node_id == id));
        for (member, revision) in reports {
            let last = heard.entry(member.node_id).or_insert((revision, now));
            if last.0 != revision {
                *last = (revision, now);
            }
        }
        let ids: Vec<String> = heard
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) < SILENT_AFTER)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let wanted = assign(&ids, partitions);
        match read(&kv).await {
            Ok(Some(now)) if now == wanted => {}
            Ok(_) => match serde_json::to_vec(&wanted) {
                Ok(bytes) => match kv.put(KEY, bytes.into()).await {
                    Ok(_) => tracing::info!(
                        members = ?ids,
                        "assigned the request-record partitions among {} processes",
                        ids.len()
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot store the partition assignment"),
                },
                Err(e) => tracing::error!(error = %e, "cannot encode the partition assignment"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot read the partition assignment"),
        }
    }
}

/// Every process, forever: sends the partitions `node_id` should index —
/// those it owns, and those it serves whose owners do not all serve yet.
pub async fn follow(
    kv: kv::Store,
    members_kv: kv::Store,
    node_id: String,
    serving: Serving,
    to_index: watch::Sender<BTreeSet<u32>>,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let assignment = match read(&kv).await {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the partition assignment");
                continue;
            }
        };
        let live = match members::live(&members_kv).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the members' reports");
                continue;
            }
        };
        let served_by: BTreeMap<String, BTreeSet<u32>> = live
            .into_iter()
            .map(|m| {
                (
                    m.node_id,
                    m.serving.unwrap_or_default().into_iter().collect(),
                )
            })
            .collect();
        let wanted = to_index_now(&assignment, &node_id, &serving(), &served_by);
        to_index.send_if_modified(|now| {
            if *now == wanted {
                false
            } else {
                tracing::debug!(partitions = ?wanted, "to index: {wanted:?}");
                *now = wanted;
                true
            }
        });
    }
}

/// What `node_id` should index: what it owns, and what it serves that an
/// owner does not serve yet (as the owners last reported).
pub fn to_index_now(
    assignment: &Assignment,
    node_id: &str,
    serving: &[u32],
    served_by: &BTreeMap<String, BTreeSet<u32>>,
) -> BTreeSet<u32> {
    let mut wanted = assignment.of(node_id);
    for &p in serving {
        let handed_over = assignment
            .owners_of(p)
            .iter()
            .all(|o| served_by.get(o).is_some_and(|s| s.contains(&p)));
        if !handed_over {
            wanted.insert(p);
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cp-{i}")).collect()
    }

    #[test]
    fn each_partition_has_two_owners_spread_evenly_and_one_process_owns_all() {
        let one = assign(&ids(1), 16);
        assert!(one.owners.iter().all(|o| o == &vec!["cp-0".to_owned()]));
        let two = assign(&ids(2), 16);
        assert!(two.owners.iter().all(|o| o.len() == 2));
        for n in [3, 4, 8] {
            let a = assign(&ids(n), 16);
            assert!(a.owners.iter().all(|o| o.len() == 2 && o[0] != o[1]));
            for id in ids(n) {
                let share = a.of(&id).len();
                // 32 ownerships among n processes: none idle, none with
                // more than twice its share.
                assert!(
                    share >= 1 && share <= 2 * 32 / n + 1,
                    "{id}: {share} of 16 with {n}"
                );
            }
        }
    }

    #[test]
    fn a_process_leaving_moves_little_besides_its_own_partitions() {
        for n in [3, 4, 6] {
            let before = assign(&ids(n), 16);
            let after = assign(&ids(n - 1), 16);
            let gone = format!("cp-{}", n - 1);
            // Of the ownerships the others had, how many they kept.
            let kept: usize = (0..16)
                .map(|p| {
                    before
                        .owners_of(p)
                        .iter()
                        .filter(|o| **o != gone && after.owners_of(p).contains(o))
                        .count()
                })
                .sum();
            let had = 32 - before.of(&gone).len();
            assert!(
                kept * 10 >= had * 8,
                "{n} → {}: kept {kept} of {had}",
                n - 1
            );
        }
        let four = assign(&ids(4), 16);
        // The order of the members does not matter.
        let mut shuffled = ids(4);
        shuffled.reverse();
        assert_eq!(assign(&shuffled, 16), four);
    }

    #[test]
    fn a_partition_is_kept_until_its_owners_serve_it() {
        let assignment = Assignment {
            owners: vec![vec!["a".into(), "b".into()], vec!["b".into(), "c".into()]],
        };
        let mut served_by = BTreeMap::from([
            ("a".to_owned(), BTreeSet::from([0])),
            ("b".to_owned(), BTreeSet::from([0])),
            ("c".to_owned(), BTreeSet::new()),
        ]);
        // `a` serves 1 too, which went to b and c: c has not caught up.
        assert_eq!(
            to_index_now(&assignment, "a", &[0, 1], &served_by),
            BTreeSet::from([0, 1])
        );
        served_by.insert("b".into(), BTreeSet::from([0, 1]));
        served_by.insert("c".into(), BTreeSet::from([1]));
        assert_eq!(
            to_index_now(&assignment, "a", &[0, 1], &served_by),
            BTreeSet::from([0])
        );
        // An owner that is gone does not serve: kept until reassigned.
        served_by.remove("c");
        assert_eq!(
            to_index_now(&assignment, "a", &[0, 1], &served_by),
            BTreeSet::from([0, 1])
        );
        assert_eq!(
            to_index_now(&assignment, "c", &[], &served_by),
            BTreeSet::from([1])
        );
    }
}
