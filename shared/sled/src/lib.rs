//! How ENSPACE opens its sled databases (the event store and the request
//! index alike).

use std::path::Path;

/// A new database gets `segment_size`; an existing one keeps the size it
/// was created with (sled refuses to open a database with another).
pub fn config_keeping_segments(dir: &Path, segment_size: usize) -> sled::Config {
    // The file is text lines followed by a binary checksum.
    let existing = std::fs::read(dir.join("conf")).ok().and_then(|conf| {
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size:")?.trim().parse().ok())
    });
    sled::Config::new()
        .path(dir)
        .segment_size(existing.unwrap_or(segment_size))
}
