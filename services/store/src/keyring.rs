//! The control plane's event keys: the one in force, and the ones that
//! signed the log before it, as the log's `signing_key_rotated` events say
//! (`proj_signing_keys`). Every event is signed by the key of its era,
//! whenever it is signed (published, refilled, exported): an auditor or an
//! API node walking the log from its first key follows the same eras.
//!
//! Rotating appends the rotation (signed by the old key) through the writer
//! like any command, after the new key is kept beside the current one
//! ([`key_file`](crate::key_file)); once the rotation is durable the new key
//! replaces the current file. The other processes of a cluster share the key
//! file: when the rotation reaches their log they read the new key from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use enspace_core::events::SigningKeyRotated;
use enspace_core::signing::{EarlierKeyJson, EventKeyJson};
use enspace_core::{AuditEvent, EventKey, EventSigner, KeyChain, KeyEras};

use crate::commands::Command;
use crate::event_log::LogEntry;
use crate::key_file::{self, KeyFileError};
use crate::projections::Projections;
use crate::writer::Writer;
use crate::{OutboxState, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    File(#[from] KeyFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the log says the event key in force is {in_force}, but the key file {path} holds {held} \
         and no kept key has that id: put the key {in_force} back, or, if it is lost, \
         record the loss (`enspace event-key rotate --lost-key`)"
    )]
    Missing {
        in_force: String,
        held: String,
        path: PathBuf,
    },
    #[error("the rotation was not recorded: {0}")]
    NotRecorded(String),
    #[error(
        "the event key file {path} is missing, but the log holds events signed by its key: put \
         it back (a new key would start another chain nobody trusts), or, if it is lost, record \
         the loss: `enspace event-key rotate --lost-key --previous-key KEY`"
    )]
    FileMissing { path: PathBuf },
    #[error("{0}")]
    NotLost(String),
}

/// Tree `event_key`: the public key the log started with (`first`),
/// recorded when a key is first used on the data directory: the log's
/// rotations name every later key, but nothing in the log names the first.
const KEY_TREE: &str = "event_key";
const FIRST: &[u8] = b"first";

fn first_key(store: &Store) -> Result<Option<EventKey>, StoreError> {
    let tree = store.db.open_tree(KEY_TREE)?;
    tree.get(FIRST)?
        .map(|bytes| {
            EventKey::from_bytes(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("the first event key: {e}")))
        })
        .transpose()
}

fn record_first_key(store: &Store, key: &EventKey) -> Result<(), StoreError> {
    let tree = store.db.open_tree(KEY_TREE)?;
    tree.insert(FIRST, &key.as_bytes()[..])?;
    tree.flush()?;
    Ok(())
}

/// The keys, over the store's record of rotations; cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    path: PathBuf,
    projections: Projections,
    outbox: OutboxState,
    /// The key the log started with, when it holds no rotation.
    initial: EventKey,
    signers: Arc<Mutex<HashMap<String, Arc<EventSigner>>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({})", self.path.display())
    }
}

impl Keyring {
    /// The keys of `store`, the current one at `path` (made when there is
    /// none and the log was never rotated). A rotation cut short before the
    /// new key replaced the file is finished here.
    pub fn open(store: &Store, path: &Path) -> Result<(Keyring, bool), KeyringError> {
        let rotations = store.projections.key_rotations()?;
        let (held, made) = key_file::load_or_create(path)?;
        if made && (store.log.head()?.0 > 0) {
            let _ = std::fs::remove_file(path);
            return Err(KeyringError::FileMissing {
                path: path.to_owned(),
            });
        }
        let initial = match first_key(store)? {
            Some(first) => first,
            None => {
                record_first_key(store, held.public())?;
                held.public().clone()
            }
        };
        let keyring = Keyring {
            path: path.to_owned(),
            projections: store.projections.clone(),
            outbox: store.outbox_state.clone(),
            initial: initial.clone(),
            signers: Arc::new(Mutex::new(HashMap::from([(
                held.public().key_id().to_owned(),
                Arc::new(held.clone()),
            )]))),
        };
        let eras = KeyEras::new(initial, &rotations);
        let in_force = eras.current().key_id();
        if in_force != held.public().key_id() {
            let Some(signer) = key_file::load_by_id(path, in_force)? else {
                return Err(KeyringError::Missing {
                    in_force: in_force.to_owned(),
                    held: held.public().key_id().to_owned(),
                    path: path.to_owned(),
                });
            };
            tracing::warn!(
                key.id = in_force,
                "finishing a key rotation cut short: the key file now holds {in_force}"
            );
            key_file::keep(path, &held)?;
            key_file::replace(path, &signer)?;
        }
        Ok((keyring, made))
    }

    /// The keys of `store` whose key in force, `lost`, is gone: the key
    /// file holds the key that takes over (made here when there is none).
    /// [`Keyring::replace_lost`] then records the break.
    pub fn open_after_loss(
        store: &Store,
        path: &Path,
        lost: &EventKey,
    ) -> Result<Keyring, KeyringError> {
        let rotations = store.projections.key_rotations()?;
        let (held, _) = key_file::load_or_create(path)?;
        if held.public() == lost {
            return Err(KeyringError::NotLost(format!(
                "the key file {} holds the key {} said to be lost: rotate it instead",
                path.display(),
                lost.key_id()
            )));
        }
        let first = first_key(store)?.unwrap_or_else(|| lost.clone());
        let eras = KeyEras::new(first, &rotations);
        if eras.current() != lost {
            return Err(KeyringError::NotLost(format!(
                "the event key in force is {}, not {}",
                eras.current().key_id(),
                lost.key_id()
            )));
        }
        Ok(Keyring {
            path: path.to_owned(),
            projections: store.projections.clone(),
            outbox: store.outbox_state.clone(),
            initial: lost.clone(),
            signers: Arc::new(Mutex::new(HashMap::from([(
                held.public().key_id().to_owned(),
                Arc::new(held),
            )]))),
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which key signs which events, as the log says now.
    pub fn eras(&self) -> Result<KeyEras, StoreError> {
        Ok(KeyEras::new(
            self.initial.clone(),
            &self.projections.key_rotations()?,
        ))
    }

    /// A chain of keys standing right before event `seq`, trusting this
    /// process's current key too (a break after a lost key is accepted
    /// when it names the key this process was given).
    pub fn chain_at(&self, seq: u64) -> Result<KeyChain, StoreError> {
        let eras = self.eras()?;
        let own = self.held().map(|s| s.public().clone());
        Ok(eras.chain_at(seq, own))
    }

    /// The private key `key_id`, if this process has it.
    pub fn signer(&self, key_id: &str) -> Option<Arc<EventSigner>> {
        if let Some(signer) = self.signers.lock().ok()?.get(key_id) {
            return Some(signer.clone());
        }
        let loaded = match key_file::load_by_id(&self.path, key_id) {
            Ok(loaded) => Arc::new(loaded?),
            Err(e) => {
                tracing::warn!(error = %e, key.id = key_id, "cannot read an event key");
                return None;
            }
        };
        self.signers
            .lock()
            .ok()?
            .insert(key_id.to_owned(), loaded.clone());
        Some(loaded)
    }

    /// The key in the file now (what a lost-key break names).
    fn held(&self) -> Option<EventSigner> {
        key_file::load(&self.path).ok().flatten()
    }

    /// The public half of the key in the file now.
    pub fn held_key(&self) -> Option<EventKey> {
        self.held().map(|s| s.public().clone())
    }

    /// Every key kept beside the current one (earlier keys, and a new one
    /// being handed over to).
    pub fn kept_keys(&self) -> Vec<EventKey> {
        key_file::kept(&self.path)
            .into_iter()
            .map(|s| s.public().clone())
            .collect()
    }

    /// The key in force: it signs new events, heartbeats, and what the
    /// processes of a cluster tell each other. Falls back to the key
    /// this process started with while a rotation's new key cannot be read.
    pub fn current(&self) -> Arc<EventSigner> {
        let in_force = self
            .eras()
            .ok()
            .and_then(|eras| self.signer(eras.current().key_id()));
        in_force
            .or_else(|| self.signer(self.initial.key_id()))
            .unwrap_or_else(|| Arc::new(EventSigner::generate()))
    }

    /// The keys that may have signed what another process of the cluster
    /// says now: the one in force and the one before it (a process that has
    /// not yet seen a rotation still signs with the old key).
    pub fn recent_keys(&self) -> Vec<EventKey> {
        let Ok(eras) = self.eras() else {
            return vec![self.initial.clone()];
        };
        eras.eras()
            .iter()
            .rev()
            .take(2)
            .map(|era| era.key.clone())
            .collect()
    }

    /// The signer of event `seq`, if this process holds its key.
    pub fn signer_for(&self, seq: u64) -> Option<Arc<EventSigner>> {
        let eras = self.eras().ok()?;
        self.signer(eras.key_for(seq).key_id())
    }

    /// Signs a run of events (`(envelope seq, rotation if it is one, chain
    /// hash)`, in order, possibly not yet in the log), each with its era's
    /// key: a rotation in the run hands the events after it to its new key.
    pub fn sign_run(
        &self,
        run: &[(u64, Option<&SigningKeyRotated>, [u8; 32])],
    ) -> Result<Vec<(String, [u8; 64])>, StoreError> {
        let mut eras = self.eras()?;
        let mut out = Vec::with_capacity(run.len());
        for (seq, rotation, hash) in run {
            if let Some(rotated) = rotation.filter(|r| r.previous_lost) {
                eras.rotated(*seq, rotated);
            }
            let key_id = eras.key_for(*seq).key_id().to_owned();
            let signer = self.signer(&key_id).ok_or_else(|| {
                StoreError::Corrupt(format!("this process lacks the event key {key_id}"))
            })?;
            out.push((key_id, signer.sign_event(hash)));
            if let Some(rotated) = rotation.filter(|r| !r.previous_lost) {
                eras.rotated(*seq, rotated);
            }
        }
        Ok(out)
    }

    /// A log entry as auditors see it, signed by its era's key; with that
    /// key lost, the signature kept when it was published, if any.
    pub fn audit(&self, entry: &LogEntry) -> AuditEvent {
        let seq = entry.envelope.seq;
        if let Some(signer) = self.signer_for(seq) {
            return AuditEvent::new(&entry.envelope, &entry.stored, &signer);
        }
        let mut event = AuditEvent::unsigned(&entry.envelope, &entry.stored);
        if let Ok(eras) = self.eras() {
            let key_id = eras.key_for(seq).key_id().to_owned();
            if let Ok(Some(kept)) = self.outbox.signature(seq, &key_id) {
                use base64::Engine;
                event.signature = base64::engine::general_purpose::STANDARD.encode(kept);
            }
            event.key_id = key_id;
        }
        event
    }

    /// The key in force and the earlier ones (`GET /v1/event-key`).
    pub fn public_json(&self) -> Result<EventKeyJson, StoreError> {
        let eras = self.eras()?;
        let all = eras.eras();
        let mut json = eras.current().to_json();
        json.previous = all
            .windows(2)
            .map(|pair| {
                let (era, next) = (&pair[0], &pair[1]);
                let own = era.key.to_json();
                EarlierKeyJson {
                    alg: own.alg,
                    key: own.key,
                    key_id: own.key_id,
                    first_seq: era.first_seq,
                    last_seq: next.first_seq.saturating_sub(1),
                    lost_after: next.after_loss,
                }
            })
            .collect();
        Ok(json)
    }

    /// Rotates to a new key: keeps it beside the current one, has the writer
    /// record the rotation (signed by the current key), then puts the new
    /// key in the file. Answers the new key and the rotation's seq.
    pub async fn rotate(&self, writer: &Writer) -> Result<(EventKey, u64), KeyringError> {
        self.hand_over(writer, EventSigner::generate(), false).await
    }

    /// Records that the key in force was lost and the key in the file
    /// ([`Keyring::open_after_loss`]) signs from now on: a break, signed by the new key,
    /// that only whoever is given the new key explicitly accepts.
    pub async fn replace_lost(&self, writer: &Writer) -> Result<(EventKey, u64), KeyringError> {
        let held = self.held().ok_or_else(|| KeyringError::FileMissing {
            path: self.path.clone(),
        })?;
        self.hand_over(writer, held, true).await
    }

    async fn hand_over(
        &self,
        writer: &Writer,
        new: EventSigner,
        lost: bool,
    ) -> Result<(EventKey, u64), KeyringError> {
        let eras = self.eras()?;
        let old = eras.current().clone();
        key_file::keep(&self.path, &new)?;
        if !lost && let Some(held) = self.signer(old.key_id()) {
            key_file::keep(&self.path, &held)?;
        }
        self.signers
            .lock()
            .map_err(|_| StoreError::Corrupt("the keyring's lock is poisoned".into()))?
            .insert(new.public().key_id().to_owned(), Arc::new(new.clone()));
        let rotation = enspace_core::key_chain::rotation(&old, new.public(), lost);
        writer
            .record(Command::RotateEventKey(rotation))
            .await
            .map_err(|e| KeyringError::NotRecorded(e.to_string()))?;
        // Answered once this process's log holds it.
        let seq = self
            .projections
            .key_rotations()?
            .into_iter()
            .rev()
            .find(|(_, r)| r.key_id == new.public().key_id())
            .map(|(seq, _)| seq)
            .ok_or_else(|| KeyringError::NotRecorded("not in the log after its answer".into()))?;
        key_file::replace(&self.path, &new)?;
        tracing::warn!(
            key.id = new.public().key_id(),
            previous = old.key_id(),
            lost,
            seq,
            "the event key is now {} (was {})",
            new.public().key_id(),
            old.key_id()
        );
        Ok((new.public().clone(), seq))
    }
}
