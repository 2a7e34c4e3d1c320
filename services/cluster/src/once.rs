//! At most once: the writer carries out each forwarded command id once. A
//! copy that arrives while the first is being decided waits for its answer;
//! one that arrives later gets the same answer, as long as it is kept (a
//! minute, well past the time a forwarded command stays valid). Answers
//! that say nothing was done (no writer, the stream refused) are not kept:
//! a retry tries again.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use ulid::Ulid;

/// How long an answer is kept.
const KEEP: Duration = Duration::from_secs(60);
/// Most answers kept at once.
const MOST: usize = 100_000;

struct Inner<T> {
    running: HashMap<Ulid, watch::Receiver<Option<T>>>,
    done: HashMap<Ulid, T>,
    order: VecDeque<(Instant, Ulid)>,
}

impl<T> Inner<T> {
    fn forget_old(&mut self) {
        while let Some((at, id)) = self.order.front().copied() {
            if at.elapsed() < KEEP && self.done.len() <= MOST {
                break;
            }
            self.order.pop_front();
            self.done.remove(&id);
        }
    }
}

/// The answers of the commands carried out here lately, by id.
#[derive(Clone)]
pub struct Once<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

impl<T> Default for Once<T> {
    fn default() -> Self {
        Once {
            inner: Arc::new(Mutex::new(Inner {
                running: HashMap::new(),
                done: HashMap::new(),
                order: VecDeque::new(),
            })),
        }
    }
}

enum Step<T> {
    Answered(T),
    Wait(watch::Receiver<Option<T>>),
    Run(watch::Sender<Option<T>>),
}

/// Takes `id` out of the running ones however its run ends.
struct Running<'a, T> {
    once: &'a Once<T>,
    id: Ulid,
}

impl<T> Drop for Running<'_, T> {
    fn drop(&mut self) {
        self.once.lock().running.remove(&self.id);
    }
}

impl<T> Once<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // Every change under the lock leaves the maps consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T: Clone> Once<T> {
    /// The answer to `id`: the first one's if it was carried out (or is
    /// being carried out), else what `work` answers, kept when `keep` says
    /// it is final. `dropped` answers a copy whose first run ended without
    /// an answer.
    pub async fn run(
        &self,
        id: Ulid,
        work: impl Future<Output = T>,
        keep: impl Fn(&T) -> bool,
        dropped: impl Fn() -> T,
    ) -> T {
        let step = {
            let mut inner = self.lock();
            inner.forget_old();
            if let Some(answer) = inner.done.get(&id) {
                Step::Answered(answer.clone())
            } else if let Some(first) = inner.running.get(&id) {
                Step::Wait(first.clone())
            } else {
                let (tx, rx) = watch::channel(None);
                inner.running.insert(id, rx);
                Step::Run(tx)
            }
        };
        match step {
            Step::Answered(answer) => answer,
            Step::Wait(mut first) => match first.wait_for(Option::is_some).await {
                Ok(answer) => answer.clone().unwrap_or_else(&dropped),
                Err(_) => dropped(),
            },
            Step::Run(tx) => {
                let running = Running { once: self, id };
                let answer = work.await;
                {
                    let mut inner = self.lock();
                    if keep(&answer) {
                        inner.done.insert(id, answer.clone());
                        inner.order.push_back((Instant::now(), id));
                    }
                }
                drop(running);
                tx.send_replace(Some(answer.clone()));
                answer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_command_id_is_carried_out_once_and_every_copy_gets_the_first_answer() {
        let once: Once<usize> = Once::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let id = Ulid::new();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (once, runs) = (once.clone(), runs.clone());
            tokio::spawn(async move {
                once.run(
                    id,
                    async move {
                        let _ = wait.await;
                        runs.fetch_add(1, Ordering::SeqCst) + 7
                    },
                    |_| true,
                    || 0,
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        let during = {
            let (once, runs) = (once.clone(), runs.clone());
            tokio::spawn(async move {
                once.run(
                    id,
                    async move { runs.fetch_add(1, Ordering::SeqCst) + 100 },
                    |_| true,
                    || 0,
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        let _ = release.send(());
        assert_eq!(first.await.expect("first"), 7);
        assert_eq!(during.await.expect("during"), 7);
        let later = once
            .run(
                id,
                async { runs.fetch_add(1, Ordering::SeqCst) + 200 },
                |_| true,
                || 0,
            )
            .await;
        assert_eq!(later, 7);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_that_is_not_final_is_not_kept() {
        let once: Once<Result<u8, ()>> = Once::default();
        let id = Ulid::new();
        let keep = |a: &Result<u8, ()>| a.is_ok();
        assert_eq!(
            once.run(id, async { Err(()) }, keep, || Err(())).await,
            Err(())
        );
        assert_eq!(once.run(id, async { Ok(1) }, keep, || Err(())).await, Ok(1));
        assert_eq!(once.run(id, async { Ok(2) }, keep, || Err(())).await, Ok(1));
    }
}
