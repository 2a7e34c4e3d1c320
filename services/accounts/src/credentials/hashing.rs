//! The bounded pool that checks passwords. argon2id is slow and large on
//! purpose (tens of milliseconds of a core and about 19 MiB each); run for
//! every sign-in of a flood at once, it took every core and gigabytes.
//! Here at most `at_once` run at a time, on blocking threads. A clean
//! sign-in waits for a slot at most `wait`, in order of arrival; a suspect
//! one (recently unsuccessful by its user name or address) takes a slot only
//! if one is free, now or after a short pause, never ahead of a clean one
//! waiting. Either is told the service is busy when it gets none.
//!
//! A known device (a valid device cookie for the user it signs in as) that
//! finds no free slot waits for one more slot of its own instead, in order
//! among known devices only: the first attempts of a flood's fresh
//! addresses, as clean as a new device, do not queue ahead of it.

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
    /// The one more slot known devices wait for.
    device_slot: Arc<Semaphore>,
    wait: Duration,
}

impl PasswordHashing {
    pub fn new(at_once: usize, wait: Duration) -> Self {
        PasswordHashing {
            slots: Arc::new(Semaphore::new(at_once.max(1))),
            device_slot: Arc::new(Semaphore::new(1)),
            wait,
        }
    }

    /// Checks `password` for `username` (the same cost for unknown users);
    /// `Ok(None)` when they do not match. `known_device`: the attempt came
    /// with a valid device cookie that is not locked.
    pub async fn authenticate(
        &self,
        directory: Arc<Directory>,
        username: String,
        password: String,
        standing: Standing,
        known_device: bool,
    ) -> Result<Option<User>, HashError> {
        let slot = match standing {
            Standing::Clean if known_device => match self.slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    match tokio::time::timeout(self.wait, self.device_slot.clone().acquire_owned())
                        .await
                    {
                        Ok(Ok(slot)) => slot,
                        Ok(Err(_)) | Err(_) => return Err(HashError::Busy),
                    }
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_known_device_gets_its_own_slot_when_the_others_are_taken() {
        let hashing = PasswordHashing::new(1, Duration::from_millis(200));
        let _flood = hashing
            .slots
            .clone()
            .try_acquire_owned()
            .expect("the one slot");
        let directory = Arc::new(Directory::demo());
        let sign_in = |known_device| {
            hashing.authenticate(
                directory.clone(),
                "bob".into(),
                "bob-password".into(),
                Standing::Clean,
                known_device,
            )
        };
        assert!(matches!(sign_in(false).await, Err(HashError::Busy)));
        let user = sign_in(true).await.expect("a slot").expect("bob");
        assert_eq!(user.id, "bob");
    }
}
