//! The request index's own sled database, a directory inside the data
//! directory: apart from the event store so that neither's flushes wait on
//! the other's writes, and so that each has the segment size its writes want.

use std::path::Path;

/// Its directory inside the data directory.
pub const REQUESTS_DIR: &str = "requests";

/// sled's log segment size for a new request-log database: 16 MiB, where
/// sled's default is 512 KiB. sled reclaims the space of rewritten pages a
/// whole segment at a time, and the request index rewrites pages all over
/// the tree (each batch lands on the pages of a thousand tokens); with
/// 10,000 active tokens the index took 4.2x its records' MessagePack size on
/// disk with 512 KiB segments and 1.2x with 16 MiB (sled's largest).
pub const REQUESTS_SEGMENT_SIZE: usize = 16 << 20;

/// How to open the request-log database in a data directory.
pub fn requests_sled_config(data_dir: &Path) -> sled::Config {
    enspace_sled::config_keeping_segments(&data_dir.join(REQUESTS_DIR), REQUESTS_SEGMENT_SIZE)
}
