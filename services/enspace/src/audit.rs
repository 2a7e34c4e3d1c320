//! `enspace audit verify|export`: offline, on a stopped token service's data.

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use enspace_core::EventKey;
use enspace_core::audit_export::{self, ExportHead, ExportHeader};
use enspace_core::events::verify_chain;
use enspace_store::{EventLog, HeadFile};

/// Why the event log cannot be read at all.
#[derive(Debug)]
enum OpenError {
    NoStore(String),
    InUse(String),
    Corrupt { dir: String, cause: String },
    Other { dir: String, cause: String },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NoStore(dir) => write!(f, "{dir} holds no ENSPACE data (no sled database)"),
            OpenError::InUse(dir) => write!(
                f,
                "{dir} is in use: a token service (or another tool) has its database open; stop it first"
            ),
            OpenError::Corrupt { dir, cause } => write!(
                f,
                "the store in {dir} is corrupt and cannot be opened, so no event can be read: {cause}"
            ),
            OpenError::Other { dir, cause } => write!(f, "cannot open the store in {dir}: {cause}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Whether another process holds the database's lock (sled takes an
/// exclusive `flock` on its `db` file while open).
fn locked_elsewhere(data: &Path) -> bool {
    match std::fs::File::open(data.join("db")) {
        Ok(file) => matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

fn open_log(data: &Path) -> Result<EventLog, OpenError> {
    let dir = data.display().to_string();
    if !data.join("conf").exists() {
        return Err(OpenError::NoStore(dir));
    }
    if locked_elsewhere(data) {
        return Err(OpenError::InUse(dir));
    }
    let db = enspace_store::sled_config(data)
        .open()
        .map_err(|e| match e {
            sled::Error::Corruption { .. } => OpenError::Corrupt {
                dir: dir.clone(),
                cause: e.to_string().trim_end_matches(" backtrace ()").to_owned(),
            },
            other => OpenError::Other {
                dir: dir.clone(),
                cause: other.to_string(),
            },
        })?;
    EventLog::open(&db).map_err(|e| OpenError::Corrupt {
        dir,
        cause: e.to_string(),
    })
}

pub fn verify(data: &Path) -> anyhow::Result<ExitCode> {
    let log = match open_log(data) {
        Ok(log) => log,
        Err(e @ OpenError::Corrupt { .. }) => {
            println!("broken: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let committed = match HeadFile::read(data) {
        Ok(head) => head,
        Err(e) => {
            println!("broken: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    // Read in key order until sled itself fails; the chain is checked on
    // what was read, and an unreadable entry is the break if nothing before
    // it is.
    let progress = enspace::progress::shown("events read");
    let total = committed.map_or(0, |c| c.seq);
    let mut entries = Vec::new();
    let mut unreadable = None;
    for item in log.tree().iter() {
        if entries.len().is_multiple_of(1024) {
            progress.advance(entries.len() as u64, total);
        }
        let next = entries.len() as u64 + 1;
        match item {
            Ok((key, value)) => match <[u8; 8]>::try_from(key.as_ref()) {
                Ok(seq) => entries.push((u64::from_be_bytes(seq), value.to_vec())),
                Err(_) => {
                    unreadable = Some((next, "a key that is not a sequence number".to_owned()));
                    break;
                }
            },
            Err(e) => {
                unreadable = Some((next, format!("the store cannot read it: {e}")));
                break;
            }
        }
    }
    progress.advance(entries.len() as u64, total);
    progress.finish();
    match (verify_chain(entries), unreadable) {
        (Err(broken), _) => {
            println!("broken: seq {}: {}", broken.seq, broken.reason);
            Ok(ExitCode::from(1))
        }
        (Ok(_), Some((seq, reason))) => {
            println!("broken: seq {seq}: {reason}");
            Ok(ExitCode::from(1))
        }
        (Ok((count, _)), None) if committed.is_some_and(|c| c.seq > count) => {
            let committed = committed.map_or(0, |c| c.seq);
            println!(
                "broken: seq {}: the log ends at seq {count}, but seq {committed} was committed \
                 (head file): events {}..={committed} are missing",
                count + 1,
                count + 1
            );
            Ok(ExitCode::from(1))
        }
        (Ok((count, head)), None) => {
            println!("ok: {count} events, head {}", hex::encode(head));
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn export(data: &Path, signing_key: Option<&Path>) -> anyhow::Result<ExitCode> {
    drop(open_log(data)?);
    let store = enspace_store::Store::open_unchecked(data)?;
    let log = store.log.clone();
    let key_file = enspace_tokens::signing_key::path(data, signing_key);
    if enspace_tokens::signing_key::load(&key_file)?.is_none() {
        anyhow::bail!(
            "no event signing key in {}: pass the one the service signs with \
             (--event-signing-key)",
            key_file.display()
        );
    }
    let (keys, _) = enspace_store::keyring::Keyring::open(&store, &key_file)?;
    let (seq, hash) = log.head()?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let header = ExportHeader {
        export: audit_export::EXPORT_KIND.into(),
        version: 1,
        event_keys: keys
            .eras()?
            .eras()
            .iter()
            .map(|era| era.key.to_json())
            .collect(),
        head: ExportHead {
            seq,
            hash: hex::encode(hash),
        },
    };
    serde_json::to_writer(&mut out, &header)?;
    out.write_all(b"\n")?;
    let progress = enspace::progress::shown("events exported");
    let mut after = 0;
    while after < seq {
        let entries = log.read_after(after, 1000)?;
        let Some(last) = entries.last() else { break };
        after = last.envelope.seq;
        for entry in entries.iter().filter(|e| e.envelope.seq <= seq) {
            serde_json::to_writer(&mut out, &entry.audit(&keys))?;
            out.write_all(b"\n")?;
        }
        progress.advance(after.min(seq), seq);
    }
    out.flush()?;
    progress.finish();
    Ok(ExitCode::SUCCESS)
}

/// The keys `--event-key` names: one base64 key, or the JSON of
/// `GET /v1/event-key` (the current key and the earlier ones).
pub fn trusted_keys(text: &str) -> anyhow::Result<Vec<EventKey>> {
    enspace_core::signing::keys_from_text(text).map_err(|e| {
        anyhow::anyhow!(
            "--event-key is neither an Ed25519 public key in base64 nor the JSON of \
             GET /v1/event-key: {e}"
        )
    })
}

/// `enspace audit verify --export FILE --event-key KEY`.
pub fn verify_export(file: &Path, key: &str) -> anyhow::Result<ExitCode> {
    let key = trusted_keys(key)?;
    let progress = enspace::progress::shown("events verified");
    let verified = if file == Path::new("-") {
        audit_export::verify_with(std::io::stdin().lock(), &key, progress.as_ref())
    } else {
        let opened = std::fs::File::open(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        audit_export::verify_with(std::io::BufReader::new(opened), &key, progress.as_ref())
    };
    match verified {
        Ok(v) => {
            println!("ok: {} events, head {}", v.count, hex::encode(v.head));
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("broken: {broken}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn hash_password_from_stdin() -> anyhow::Result<ExitCode> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let hash = enspace_accounts::directory::hash_password(password)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}
