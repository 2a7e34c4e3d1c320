//! The event key outside the control plane: `enspace event-key` prints the
//! public half of a signing key (making the key first with `--create`,
//! writing the JSON to a file too with `--out`), and an API node reads the
//! key it pins from `--event-key`, `--event-key-file`, or, only with
//! `--trust-first-event-key`, from the first heartbeat it hears.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use enspace_core::EventKey;
use enspace_core::signing::keys_from_text;
use enspace_tokens::signing_key;

use std::sync::Arc;

use enspace_core::SystemClock;
use enspace_store::keyring::Keyring;
use enspace_store::writer::Writer;
use enspace_store::{EventCounters, Store};

use crate::cli::{EventKeyArgs, NodeArgs, RotateKeyArgs};

/// `enspace event-key`.
pub fn print(args: &EventKeyArgs) -> anyhow::Result<ExitCode> {
    let path = signing_key::path(&args.data, args.event_signing_key.as_deref());
    let signer = if args.create {
        let (signer, made) = signing_key::load_or_create(&path)?;
        if made {
            eprintln!(
                "made the event signing key {} at {}",
                signer.public().key_id(),
                path.display()
            );
        }
        signer
    } else {
        match signing_key::load(&path)? {
            Some(signer) => signer,
            None => bail!(
                "no event signing key at {} (--create makes one)",
                path.display()
            ),
        }
    };
    // The keys rotated away, kept beside the key file: a node pinning this
    // JSON follows the log from its first event (their seqs are the log's
    // to say: `GET /v1/event-key`).
    let mut public = signer.public().to_json();
    public.previous = signing_key::kept(&path)
        .into_iter()
        .filter(|kept| kept.public() != signer.public())
        .map(|kept| {
            let json = kept.public().to_json();
            enspace_core::signing::EarlierKeyJson {
                alg: json.alg,
                key: json.key,
                key_id: json.key_id,
                first_seq: 0,
                last_seq: 0,
                lost_after: false,
            }
        })
        .collect();
    let json = serde_json::to_string(&public)?;
    if let Some(out) = &args.out {
        write_public(out, &json)
            .with_context(|| format!("cannot write the event key to {}", out.display()))?;
    }
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// Writes the public key's JSON whole, then moves it into place: a node
/// starting meanwhile reads the old file or the new one, never half.
fn write_public(out: &Path, json: &str) -> std::io::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut staged = out.as_os_str().to_owned();
    staged.push(".new");
    std::fs::write(&staged, format!("{json}\n"))?;
    std::fs::rename(&staged, out)
}

/// A key file: the JSON `enspace event-key` prints or `GET /v1/event-key`
/// serves (the current key and the earlier ones), or the base64 key.
fn read_key_file(path: &Path) -> anyhow::Result<Vec<EventKey>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --event-key-file {}", path.display()))?;
    keys_from_text(&text).map_err(|e| {
        anyhow::anyhow!(
            "--event-key-file {} holds neither `enspace event-key` JSON nor a base64 key: {e}",
            path.display()
        )
    })
}

/// The keys an API node pins from its flags, oldest first (the log is
/// followed from the first, through its rotations); empty only with
/// `--trust-first-event-key`. Checked before the node listens.
pub fn pinned(args: &NodeArgs) -> anyhow::Result<Vec<EventKey>> {
    let key = match (&args.event_key, &args.event_key_file) {
        (Some(text), _) => keys_from_text(text)
            .map_err(|e| anyhow::anyhow!("--event-key (ENSPACE_EVENT_KEY): {e}"))?,
        (None, Some(path)) => read_key_file(path)?,
        (None, None) if args.trust_first_event_key => return Ok(Vec::new()),
        (None, None) => bail!(
            "an API node needs the control plane's event key: pass --event-key KEY \
             (ENSPACE_EVENT_KEY) or --event-key-file FILE (ENSPACE_EVENT_KEY_FILE), as \
             `enspace event-key --data DIR` prints it or GET /v1/event-key serves it \
             (--trust-first-event-key pins the first key heard instead, which trusts \
             whoever publishes first)"
        ),
    };
    Ok(key)
}

/// [`pinned`], saying in the log what was pinned, or warning that nothing
/// was.
pub fn pin(args: &NodeArgs) -> anyhow::Result<Vec<EventKey>> {
    let keys = pinned(args)?;
    match keys.last() {
        Some(key) => tracing::info!(
            key.id = key.key_id(),
            keys = keys.len(),
            "event key {} pinned by --event-key",
            key.key_id()
        ),
        None => tracing::warn!(
            "--trust-first-event-key: this node will pin the event key of the first heartbeat \
             it hears; whoever can publish one first decides which tokens it accepts. Pass \
             --event-key or --event-key-file instead"
        ),
    }
    Ok(keys)
}

/// `enspace event-key rotate`: rotates the key of a stopped control plane
/// through its own writer (the same rule as `POST /v1/event-key/rotate`);
/// with `--lost-key`, records that the key in force was lost.
pub async fn rotate(args: RotateKeyArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&args.data).with_context(|| {
        format!(
            "cannot open the store in {} (is the token service still running?)",
            args.data.display()
        )
    })?;
    let path = signing_key::path(&args.data, args.event_signing_key.as_deref());
    let writer = Writer::start(
        store.clone(),
        Arc::new(SystemClock),
        EventCounters::default(),
    )?;
    let (keys, rotated) = if args.lost_key {
        let text = args.previous_key.as_deref().unwrap_or_default();
        let lost = keys_from_text(text)
            .map_err(|e| anyhow::anyhow!("--previous-key: {e}"))?
            .pop()
            .context("--previous-key names no key")?;
        let keys = Keyring::open_after_loss(&store, &path, &lost)?;
        let rotated = keys.replace_lost(&writer).await?;
        (keys, rotated)
    } else {
        let (keys, _) = Keyring::open(&store, &path)?;
        let rotated = keys.rotate(&writer).await?;
        (keys, rotated)
    };
    let (new, seq) = rotated;
    drop(writer);
    store.db.flush()?;
    eprintln!(
        "the event key is now {} from event {} on{}",
        new.key_id(),
        seq + u64::from(!args.lost_key),
        if args.lost_key {
            " (the loss of the previous key is recorded: give API nodes and auditors the new key)"
        } else {
            ""
        }
    );
    println!("{}", serde_json::to_string(&keys.public_json()?)?);
    Ok(ExitCode::SUCCESS)
}
