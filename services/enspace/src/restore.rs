//! `enspace restore`: fills a stopped control plane's event log from the
//! token events stream, checking every hash and signature.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use enspace_cluster::event_stream::classify::Keys;
use enspace_core::EventKey;
use enspace_store::Store;
use enspace_tokens::signing_key;

use crate::cli::RestoreArgs;

pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create the data directory {}", args.data.display()))?;
    let trust = trust_key(&args.data, &args)?;
    let store = Store::open_unchecked(&args.data).with_context(|| {
        format!(
            "cannot open the store in {} (is the token service still running?)",
            args.data.display()
        )
    })?;
    let client = enspace_nats::connect_with(
        &args.nats_url,
        "enspace-restore",
        &args.nats_auth.credentials(),
        |_| {},
    )
    .await
    .with_context(|| enspace_nats::cannot_connect(&args.nats_url))?;
    let js = async_nats::jetstream::new(client);
    let progress = crate::progress::shown("events restored");
    let restored =
        enspace_cluster::log_recovery::restore(&js, &store, trust, progress.as_ref()).await?;
    progress.finish();
    store.check_committed()?;
    let (seq, hash) = store.log.head()?;
    println!(
        "restored {restored} events; the log now ends at seq {seq}, head {}",
        hex::encode(hash)
    );
    Ok(ExitCode::SUCCESS)
}

/// The keys the stream is checked with (rotations followed from event 1's):
/// `--event-key` (a key, or the JSON `GET /v1/event-key` serves with the
/// earlier keys), else the signing key file's own and the earlier keys kept
/// beside it.
fn trust_key(data: &Path, args: &RestoreArgs) -> anyhow::Result<Keys> {
    let path = signing_key::path(data, args.event_signing_key.as_deref());
    let held: Vec<EventKey> = signing_key::load(&path)?
        .map(|s| s.public().clone())
        .into_iter()
        .collect();
    if let Some(text) = &args.event_key {
        let given = enspace_core::signing::keys_from_text(text)
            .map_err(|e| anyhow::anyhow!("--event-key (ENSPACE_EVENT_KEY): {e}"))?;
        let mut trusted = given.clone();
        trusted.extend(held);
        return Ok(Keys::starting_with(given, trusted));
    }
    let mut candidates = held.clone();
    candidates.extend(signing_key::kept(&path).iter().map(|s| s.public().clone()));
    match held.is_empty() {
        false => Ok(Keys::starting_with(candidates, held)),
        true => anyhow::bail!(
            "no event signing key at {}: pass the public key the stream was signed with \
             (--event-key), or the signing key file (--event-signing-key)",
            path.display()
        ),
    }
}
