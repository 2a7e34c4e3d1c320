//! The event signing key's file: the Ed25519 seed in base64 on one line,
//! readable by its owner only. Made at first start; by default in the data
//! directory (`event-signing.key`), or wherever `--event-signing-key` says,
//! which is where it belongs in production (a secret volume), so that losing
//! the data directory does not lose the key every API node has pinned.
//!
//! A rotated key stays beside it, in `event-keys/<key id>.key` of the same
//! directory: the log's earlier events are still served signed by the key
//! that signed them. The new key is written there first, then put in place
//! of the current one (written whole, then renamed), so that a stop between
//! the two is mended at the next start from the log's own record of which
//! key is current.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use enspace_core::EventSigner;

pub const DEFAULT_FILE: &str = "event-signing.key";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the event signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the event signing key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the event signing key {path} is not a base64 Ed25519 seed of 32 bytes")]
    Malformed { path: PathBuf },
}

/// Where the key lives: `explicit`, or the data directory's default file.
pub fn path(data: &Path, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| data.join(DEFAULT_FILE), Path::to_path_buf)
}

/// Where keys live besides the current one: `event-keys/` beside it.
pub fn keys_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("event-keys")
}

/// The key `key_id`: the current file's, or one kept in [`keys_dir`].
pub fn load_by_id(path: &Path, key_id: &str) -> Result<Option<EventSigner>, KeyFileError> {
    if let Some(current) = load(path)?
        && current.public().key_id() == key_id
    {
        return Ok(Some(current));
    }
    if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let kept = keys_dir(path).join(format!("{key_id}.key"));
    Ok(load(&kept)?.filter(|k| k.public().key_id() == key_id))
}

/// Every key kept in [`keys_dir`] (unreadable files skipped).
pub fn kept(path: &Path) -> Vec<EventSigner> {
    let Ok(entries) = std::fs::read_dir(keys_dir(path)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "key"))
        .filter_map(|e| load(&e.path()).ok().flatten())
        .collect()
}

/// Keeps `signer` in [`keys_dir`] (once; mode 0600).
pub fn keep(path: &Path, signer: &EventSigner) -> Result<(), KeyFileError> {
    let kept = keys_dir(path).join(format!("{}.key", signer.public().key_id()));
    if load(&kept)?.is_some() {
        return Ok(());
    }
    write_new(&kept, signer)
}

/// Puts `signer` in place of the current key: written whole beside it,
/// synced, then renamed over it.
pub fn replace(path: &Path, signer: &EventSigner) -> Result<(), KeyFileError> {
    let write = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    let mut staged = path.as_os_str().to_owned();
    staged.push(format!(".{}.new", ulid::Ulid::new()));
    let staged = PathBuf::from(staged);
    write_new(&staged, signer)?;
    std::fs::rename(&staged, path).map_err(write)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write)?;
    }
    Ok(())
}

/// Writes a new key file (never over one), mode 0600, synced.
fn write_new(path: &Path, signer: &EventSigner) -> Result<(), KeyFileError> {
    let write = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write)?;
    file.write_all(format!("{}\n", B64.encode(signer.seed())).as_bytes())
        .map_err(write)?;
    file.sync_all().map_err(write)
}

/// Reads the key, if the file exists.
pub fn load(path: &Path) -> Result<Option<EventSigner>, KeyFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyFileError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let malformed = || KeyFileError::Malformed {
        path: path.to_owned(),
    };
    let seed: [u8; 32] = B64
        .decode(text.trim())
        .map_err(|_| malformed())?
        .try_into()
        .map_err(|_| malformed())?;
    Ok(Some(EventSigner::from_seed(&seed)))
}

/// Reads the key, or makes one and writes it (mode 0600, never over an
/// existing file). The flag says whether it was made now.
pub fn load_or_create(path: &Path) -> Result<(EventSigner, bool), KeyFileError> {
    if let Some(signer) = load(path)? {
        return Ok((signer, false));
    }
    let signer = EventSigner::generate();
    let write = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    // Written whole beside the path, then linked into place: processes of a
    // cluster starting at once each make a key, one link wins, and every
    // process then reads the winner's, never a half-written file.
    let mut staged = path.as_os_str().to_owned();
    staged.push(format!(".{}.new", ulid::Ulid::new()));
    let staged = std::path::PathBuf::from(staged);
    let _ = std::fs::remove_file(&staged);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staged)
        .map_err(write)?;
    file.write_all(format!("{}\n", B64.encode(signer.seed())).as_bytes())
        .map_err(write)?;
    file.sync_all().map_err(write)?;
    let linked = std::fs::hard_link(&staged, path);
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok((signer, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match load(path)? {
            Some(theirs) => Ok((theirs, false)),
            None => Err(write(e)),
        },
        Err(e) => Err(write(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn processes_making_the_key_at_once_all_end_up_with_the_same_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path(dir.path(), None);
        let keys: Vec<_> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path).expect("a key")))
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().expect("thread"))
                .collect()
        });
        assert_eq!(keys.iter().filter(|(_, made)| *made).count(), 1);
        assert!(keys.iter().all(|(k, _)| k.public() == keys[0].0.public()));
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "no staged files left behind");
    }

    #[test]
    fn a_key_made_once_is_read_back_the_same_and_only_its_owner_can_read_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path(dir.path(), None);
        let (made, created) = load_or_create(&path).expect("made");
        assert!(created);
        let (again, created) = load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(made.public(), again.public());
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_malformed_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        std::fs::write(&path, "not a key").expect("write");
        assert!(matches!(
            load_or_create(&path),
            Err(KeyFileError::Malformed { .. })
        ));
    }
}
