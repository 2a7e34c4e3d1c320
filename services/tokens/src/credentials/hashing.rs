//! The bounded pool that checks passwords. argon2id is slow and large on
//! purpose (tens of milliseconds of a core and about 19 MiB each); run for
//! every sign-in of a flood at once, it took every core and gigabytes.
//! Here at most `at_once` run at a time, on blocking threads. A clean
//! sign-in waits for a slot at most `wait`, in order of arrival; a suspect
//! one (recently unsuccessful by its user name or address) takes a slot only
//! if one is free, now or after a short pause, never ahead of a clean one
//! waiting. Either is told the service is busy when it gets none.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::throttle::Standing;
use crate::directory::{Directory, User};

/// How long a suspect sign-in that found no free slot waits before its
/// second and last try.
const SUSPECT_PAUSE: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("every password hashing slot stayed busy")]
    Busy,
    #[error("the password check failed to run: {0}")]
    Failed(#[from] tokio::task::JoinError),
}

#[derive(Clone)]
pub struct PasswordHashing {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl PasswordHashing {
    pub fn new(at_once: usize, wait: Duration) -> Self {
        PasswordHashing {
            slots: Arc::new(Semaphore::new(at_once.max(1))),
            wait,
        }
    }

    /// Checks `password` for `username` (the same cost for unknown users);
    /// `Ok(None)` when they do not match.
    pub async fn authenticate(
        &self,
        directory: Arc<Directory>,
        username: String,
        password: String,
        standing: Standing,
    ) -> Result<Option<User>, HashError> {
        let slot = match standing {
            // The semaphore hands a released slot to the waiters in order,
            // so a suspect's attempt never overtakes a clean one waiting.
            Standing::Suspect => match self.slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    // A short pause before the second and last try: a
                    // flood's clients, answered at once, would only ask
                    // again at once.
                    tokio::time::sleep(self.wait.min(SUSPECT_PAUSE)).await;
                    self.slots
                        .clone()
                        .try_acquire_owned()
                        .map_err(|_| HashError::Busy)?
                }
            },
            Standing::Clean => {
                match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    Ok(Err(_)) | Err(_) => return Err(HashError::Busy),
                }
            }
        };
        let user = tokio::task::spawn_blocking(move || {
            let user = directory.authenticate(&username, &password);
            drop(slot);
            user
        })
        .await?;
        Ok(user)
    }
}
