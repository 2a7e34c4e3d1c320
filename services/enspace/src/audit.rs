//! `enspace audit verify|export`: offline, on a stopped token service's data.

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use enspace_core::events::verify_chain;
use enspace_tokens::signing_key;
use enspace_tokens::store::{EventLog, HeadFile};

fn open_log(data: &Path) -> anyhow::Result<EventLog> {
    if !data.join("conf").exists() {
        bail!(
            "{} holds no ENSPACE data (no sled database)",
            data.display()
        );
    }
    let db = enspace_tokens::store::sled_config(data)
        .open()
        .with_context(|| {
            format!(
                "cannot open {} (is the token service still running?)",
                data.display()
            )
        })?;
    Ok(EventLog::open(&db)?)
}

pub fn verify(data: &Path) -> anyhow::Result<ExitCode> {
    let log = open_log(data)?;
    let committed = match HeadFile::read(data) {
        Ok(head) => head,
        Err(e) => {
            println!("broken: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut entries = Vec::new();
    for item in log.tree().iter() {
        let (key, value) = item?;
        let seq = <[u8; 8]>::try_from(key.as_ref())
            .map(u64::from_be_bytes)
            .unwrap_or(u64::MAX);
        entries.push((seq, value.to_vec()));
    }
    match verify_chain(entries) {
        Ok((count, _)) if committed.is_some_and(|c| c.seq > count) => {
            let committed = committed.map_or(0, |c| c.seq);
            println!(
                "broken: seq {}: the log ends at seq {count}, but seq {committed} was committed \
                 (head file): events {}..={committed} are missing",
                count + 1,
                count + 1
            );
            Ok(ExitCode::from(1))
        }
        Ok((count, head)) => {
            println!("ok: {count} events, head {}", hex::encode(head));
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("broken: seq {}: {}", broken.seq, broken.reason);
            Ok(ExitCode::from(1))
        }
    }
}

pub fn export(data: &Path) -> anyhow::Result<ExitCode> {
    let log = open_log(data)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut after = 0;
    loop {
        let entries = log.read_after(after, 1000)?;
        let Some(last) = entries.last() else { break };
        after = last.envelope.seq;
        for entry in &entries {
            serde_json::to_writer(&mut out, &entry.audit())?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `enspace event-key`: the public half of the signing key, as JSON.
pub fn event_key(data: &Path, explicit: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = signing_key::path(data, explicit);
    match signing_key::load(&path)? {
        Some(signer) => {
            println!("{}", serde_json::to_string(&signer.public().to_json())?);
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("no event signing key at {}", path.display()),
    }
}

pub fn hash_password_from_stdin() -> anyhow::Result<ExitCode> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let hash = enspace_tokens::directory::hash_password(password)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}
