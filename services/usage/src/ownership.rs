//! Which partitions of the request records this process answers for.
//!
//! Records are published per partition (`enspace.requests.<p>`, see
//! `enspace_core::record_batch`). A process that is alone (no `--cluster`)
//! indexes every partition: [`Ownership::all`]. A process of a cluster
//! indexes the partitions assigned to it and serves a partition once its
//! index of it has caught up with the stream: [`Ownership::partitioned`]
//! starts with none, and the intake [`set`](Ownership::set)s them as they
//! catch up. A query for a token of a partition this process does not
//! serve is answered by a process that does.

use std::collections::BTreeSet;
use std::sync::Arc;

use enspace_core::record_batch::{PARTITIONS, partition_of};
use tokio::sync::watch;
use ulid::Ulid;

/// The partitions this process serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Every one: a process that indexes the whole stream.
    All,
    /// These, and no other.
    Some(BTreeSet<u32>),
}

impl Served {
    pub fn contains(&self, partition: u32) -> bool {
        match self {
            Served::All => partition < PARTITIONS,
            Served::Some(set) => set.contains(&partition),
        }
    }

    /// The partitions served, in order.
    pub fn partitions(&self) -> Vec<u32> {
        match self {
            Served::All => (0..PARTITIONS).collect(),
            Served::Some(set) => set.iter().copied().collect(),
        }
    }
}

/// Shared by the intake (which sets it) and whatever answers queries (which
/// reads and watches it).
#[derive(Clone)]
pub struct Ownership {
    served: Arc<watch::Sender<Served>>,
}

impl Ownership {
    /// Serves every partition, always.
    pub fn all() -> Self {
        Ownership {
            served: Arc::new(watch::Sender::new(Served::All)),
        }
    }

    /// Serves none until the intake says which.
    pub fn partitioned() -> Self {
        Ownership {
            served: Arc::new(watch::Sender::new(Served::Some(BTreeSet::new()))),
        }
    }

    /// Whether this process answers for `partition`.
    pub fn serves(&self, partition: u32) -> bool {
        self.served.borrow().contains(partition)
    }

    /// Whether this process answers for `token`'s records.
    pub fn serves_token(&self, token: &Ulid) -> bool {
        self.serves(partition_of(token))
    }

    /// What it serves now.
    pub fn served(&self) -> Served {
        self.served.borrow().clone()
    }

    /// From now on serves exactly `partitions` (a process serving all keeps
    /// serving all).
    pub fn set(&self, partitions: BTreeSet<u32>) {
        self.served.send_if_modified(|served| match served {
            Served::All => false,
            Served::Some(now) if *now == partitions => false,
            Served::Some(now) => {
                *now = partitions;
                true
            }
        });
    }

    /// Changes as the intake catches up with, takes over or hands over
    /// partitions.
    pub fn watch(&self) -> watch::Receiver<Served> {
        self.served.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partitioned_process_serves_what_it_was_set_to_and_all_serves_everything() {
        let all = Ownership::all();
        assert!((0..PARTITIONS).all(|p| all.serves(p)));
        assert!(!all.serves(PARTITIONS));
        all.set(BTreeSet::from([1]));
        assert_eq!(all.served(), Served::All);

        let some = Ownership::partitioned();
        assert!(!(0..PARTITIONS).any(|p| some.serves(p)));
        let changes = some.watch();
        some.set(BTreeSet::from([3, 5]));
        assert!(changes.has_changed().unwrap_or(false));
        assert!(some.serves(3) && some.serves(5) && !some.serves(4));
        assert_eq!(some.served().partitions(), vec![3, 5]);
        let token = Ulid::new();
        assert_eq!(some.serves_token(&token), some.serves(partition_of(&token)));
    }
}
