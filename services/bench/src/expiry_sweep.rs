//! The notification sweep over a due index of `--tokens` tokens (three
//! expiry stages each), filled the way the service fills it: the tokens'
//! creations appended to the event log, the store opened (projections caught
//! up), and the notification fold caught up with the log.
//!
//! Measured in the same run:
//!
//! - a sweep with nothing due, repeated, CPU time per sweep, and proof that
//!   it writes nothing: the database's checksum (every tree's keys and
//!   values), its size on disk and the notifications kept are unchanged;
//! - beside it, the baseline a sweep without the index would pay: one pass
//!   over the index's entries (every token's stages, nothing decoded);
//! - a sweep with `--due` tokens' 7-day stages due: CPU time and wall time,
//!   notifications made.
//!
//! Target: the nothing-due sweep well under 2 s of CPU (it reads one empty
//! range).

use std::time::Instant;

use anyhow::{Context, bail};
use enspace_core::events::StoredEvent;
use enspace_core::{SecretHash, events::GENESIS_HASH};
use enspace_notify::Notifications;
use enspace_store::Store;
use enspace_store::event_log::encode_seq;
use jiff::{SignedDuration, Timestamp};

use crate::support::cpu_seconds;

#[derive(clap::Args)]
pub struct Args {
    /// Tokens in the due index (each with three stages).
    #[arg(long, default_value_t = 1_000_000)]
    tokens: usize,
    /// Tokens whose 7-day stage is due in the second sweep.
    #[arg(long, default_value_t = 1_000)]
    due: usize,
    /// Nothing-due sweeps timed together (one is too quick for the clock).
    #[arg(long, default_value_t = 10_000)]
    empty_sweeps: usize,
}

fn cpu() -> f64 {
    cpu_seconds("self").unwrap_or(0.0)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.due > args.tokens {
        bail!("--due cannot be more than --tokens");
    }
    let dir = tempfile::tempdir()?;
    // Token i expires at base + 8 days + i seconds: its 7-day stage falls
    // due at base + 1 day + i seconds, before any token's 1-day stage.
    let base: Timestamp = "2026-01-01T00:00:00Z".parse()?;
    let expiry =
        |i: usize| base + SignedDuration::from_hours(8 * 24) + SignedDuration::from_secs(i as i64);

    let start = Instant::now();
    {
        let store = Store::open(dir.path())?;
        let mut prev = GENESIS_HASH;
        let mut batch = sled::Batch::default();
        for i in 0..args.tokens {
            let seq = i as u64 + 1;
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&seq.to_be_bytes());
            let envelope = enspace_core::fixtures::created(seq, &SecretHash(hash))
                .user(&format!("user{}", i % 10_000))
                .expires_at(expiry(i))
                .at(base)
                .build();
            let stored = StoredEvent::new(prev, &envelope);
            prev = stored.hash;
            batch.insert(&encode_seq(seq)[..], stored.to_bytes());
            if seq.is_multiple_of(10_000) {
                store.log.tree().apply_batch(std::mem::take(&mut batch))?;
            }
        }
        store.log.tree().apply_batch(batch)?;
        store.db.flush()?;
    }
    let appended = start.elapsed();
    let start = Instant::now();
    let store = Store::open(dir.path())?;
    let folded = start.elapsed();
    let notifications = Notifications::open(&store.db, false)?;
    let start = Instant::now();
    let fold = enspace_notify::NotificationFold {
        notifications: notifications.clone(),
        tokens: store.projections.clone(),
    };
    enspace_core::projection::catch_up(&store.log, &fold)?;
    let indexed = start.elapsed();
    let entries = notifications.due.len();
    if entries != 3 * args.tokens {
        bail!(
            "the due index holds {entries} entries, not {}",
            3 * args.tokens
        );
    }
    store.db.flush()?;
    println!(
        "set-up: {} creations appended in {appended:.2?}, projections folded in {folded:.2?}, \
         notification fold (due index of {entries} entries) in {indexed:.2?}",
        args.tokens
    );

    // Nothing due: the instant before the first stage.
    let quiet = base + SignedDuration::from_hours(24) - SignedDuration::from_millis(1);
    let checksum = store.db.checksum().context("checksum")?;
    let size = store.db.size_on_disk()?;
    let (cpu0, wall0) = (cpu(), Instant::now());
    for _ in 0..args.empty_sweeps {
        let swept = notifications.sweep(quiet, false)?;
        if swept.told + swept.dropped != 0 {
            bail!("a sweep with nothing due did something: {swept:?}");
        }
    }
    let (cpu_empty, wall_empty) = (cpu() - cpu0, wall0.elapsed());
    store.db.flush()?;
    let unchanged = store.db.checksum()? == checksum
        && store.db.size_on_disk()? == size
        && notifications.store.is_empty()
        && notifications.due.len() == entries;
    println!(
        "nothing due, {} sweeps over {entries} entries: {:.3} µs CPU per sweep ({:.3} s CPU in all), \
         {:.3} µs wall per sweep; writes: {}",
        args.empty_sweeps,
        cpu_empty * 1e6 / args.empty_sweeps as f64,
        cpu_empty,
        wall_empty.as_secs_f64() * 1e6 / args.empty_sweeps as f64,
        if unchanged {
            "none (checksum of every tree, size on disk, notifications and index unchanged)"
        } else {
            "SOME: the database changed"
        },
    );
    if !unchanged {
        bail!("a sweep with nothing due wrote to the database");
    }

    // Baseline: reading every entry, as a sweep that scans every token would.
    let (cpu0, wall0) = (cpu(), Instant::now());
    let mut seen = 0usize;
    for item in store.db.open_tree("notifications_due")?.iter() {
        item?;
        seen += 1;
    }
    let (cpu_scan, wall_scan) = (cpu() - cpu0, wall0.elapsed());
    println!(
        "baseline, one pass over the {seen} entries: {cpu_scan:.3} s CPU, {wall_scan:.2?} wall \
         ({:.0}x one nothing-due sweep)",
        wall_scan.as_secs_f64() / (wall_empty.as_secs_f64() / args.empty_sweeps as f64).max(1e-9)
    );

    // `--due` tokens' 7-day stages due.
    let now =
        base + SignedDuration::from_hours(24) + SignedDuration::from_secs(args.due as i64 - 1);
    let (cpu0, wall0) = (cpu(), Instant::now());
    let swept = notifications.sweep(now, false)?;
    let (cpu_due, wall_due) = (cpu() - cpu0, wall0.elapsed());
    store.db.flush()?;
    println!(
        "{} due: {} told, {} dropped, {:.3} s CPU, {wall_due:.2?} wall ({:.1} µs per notification); \
         notifications kept {}, due index {} entries",
        args.due,
        swept.told,
        swept.dropped,
        cpu_due,
        wall_due.as_secs_f64() * 1e6 / swept.told.max(1) as f64,
        notifications.store.len(),
        notifications.due.len(),
    );
    if swept.told != args.due || notifications.due.len() != entries - args.due {
        bail!("the sweep told {} of {} due", swept.told, args.due);
    }
    // The same instant again: nothing more.
    let again = notifications.sweep(now, false)?;
    println!("the same sweep again: {} told", again.told);
    Ok(())
}
