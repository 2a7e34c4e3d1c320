//! Where a group's events become durable: appended to the log, folded into
//! the projections and flushed (the writer's own, or a replicated group
//! another process wrote).

use super::*;

impl WriterState {
    /// Appends the stream's events past the head (see [`Writer::replicate`]).
    pub(super) fn replicate(&mut self, events: Vec<Replicated>) -> Result<u64, StoreError> {
        let mut batch = sled::Batch::default();
        let mut appended = Vec::new();
        let mut signatures = Vec::new();
        let mut at = 0;
        let (start_seq, start_hash) = (self.seq, self.hash);
        for event in events {
            let seq = event.envelope.seq;
            if seq <= self.seq {
                let ours = self.store.log.get(seq)?;
                if ours.is_none_or(|e| e.stored.hash != event.stored.hash) {
                    return Err(StoreError::Corrupt(format!(
                        "the token events stream's event {seq} differs from this log's"
                    )));
                }
                continue;
            }
            if seq != self.seq + 1 || event.stored.prev_hash != self.hash {
                return Err(StoreError::Corrupt(format!(
                    "the token events stream's event {seq} does not follow this log's head {}",
                    self.seq
                )));
            }
            batch.insert(&encode_seq(seq)[..], event.stored.to_bytes());
            self.seq = seq;
            self.hash = event.stored.hash;
            signatures.push((seq, event.signature));
            at = event.at;
            appended.push(event.envelope);
        }
        if appended.is_empty() {
            return Ok(self.seq);
        }
        let key_id = self.commit.get().map(|c| c.key_id());
        let kept = key_id.as_deref().map(|k| (k, signatures.as_slice(), at));
        if let Err(e) = self.persist(batch, &appended, kept) {
            (self.seq, self.hash) = self.store.log.head().unwrap_or((start_seq, start_hash));
            if let Err(again) = self.store.projections.catch_up(&self.store.log) {
                tracing::error!(error = %again, "folding the projections again failed");
            }
            return Err(e);
        }
        self.committed(&appended);
        Ok(self.seq)
    }

    /// Appends, folds and flushes the group, then records the new head in
    /// the head file: only then is any of it acknowledged. In a cluster the
    /// events' signatures are kept and the outbox cursor moved to the last
    /// of them, where the stream holds it already.
    pub(super) fn persist(
        &self,
        batch: sled::Batch,
        appended: &[EventEnvelope],
        in_stream: Option<InStream<'_>>,
    ) -> Result<(), StoreError> {
        self.store.log.tree().apply_batch(batch)?;
        self.store.projections.apply(appended)?;
        self.store.db.flush()?;
        // Only after the log is durable: sled does not keep writes to
        // different trees in order across a crash, and a cursor ahead of the
        // log reads as a log that lost events. (Lost with a crash, the cursor
        // is only behind, which the outbox mends.)
        if let Some((key_id, signatures, at)) = in_stream {
            // Each signature by its era's key: a group may hold a rotation.
            let rotations = self.store.projections.key_rotations()?;
            let signed: Vec<(u64, String, [u8; 64])> = match rotations.first() {
                None => signatures
                    .iter()
                    .map(|(seq, sig)| (*seq, key_id.to_owned(), *sig))
                    .collect(),
                Some((_, first)) => {
                    let eras = first
                        .old_key()
                        .map(|k| enspace_core::KeyEras::new(k, &rotations));
                    signatures
                        .iter()
                        .map(|(seq, sig)| {
                            let id = eras.as_ref().map_or(key_id, |e| e.key_for(*seq).key_id());
                            (*seq, id.to_owned(), *sig)
                        })
                        .collect()
                }
            };
            self.store.outbox_state.keep_signatures(&signed)?;
            self.store
                .outbox_state
                .set_position(crate::StreamPosition {
                    seq: self.seq,
                    at: at.max(self.seq),
                })?;
        }
        let mut head = self
            .store
            .head
            .lock()
            .map_err(|_| StoreError::Corrupt("the head file's lock is poisoned".into()))?;
        head.write(crate::Head {
            seq: self.seq,
            hash: self.hash,
        })?;
        Ok(())
    }
}
