//! Offline verification of an audit export (`enspace audit verify
//! --export`) on one core: chain, signatures and fields, in events per
//! second; beside it, in the same run, what any verifier pays first —
//! reading the file and parsing each line into an audit event.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

use enspace_core::audit_export::{self, EXPORT_KIND, ExportHead, ExportHeader};
use enspace_core::events::{GENESIS_HASH, StoredEvent};
use enspace_core::{AuditEvent, EventSigner};

use crate::support::created_event;
use crate::verdict::Verdict;

#[derive(clap::Args)]
pub struct Args {
    /// Events in the export.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Rounds of each measurement; each figure is the best.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

/// Events per second the target asks for.
const TARGET: f64 = 50_000.0;

pub fn run(args: Args) -> anyhow::Result<()> {
    let signer = EventSigner::generate();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("export.ndjson");
    let made = Instant::now();
    let mut events = Vec::with_capacity(args.events as usize);
    let mut prev = GENESIS_HASH;
    for seq in 1..=args.events {
        let envelope = created_event(seq, &format!("secret-{seq}"), "alice");
        let stored = StoredEvent::new(prev, &envelope);
        prev = stored.hash;
        events.push(serde_json::to_string(&AuditEvent::new(
            &envelope, &stored, &signer,
        ))?);
    }
    let mut out = BufWriter::new(std::fs::File::create(&path)?);
    serde_json::to_writer(
        &mut out,
        &ExportHeader {
            export: EXPORT_KIND.into(),
            version: 1,
            event_keys: vec![signer.public().to_json()],
            head: ExportHead {
                seq: args.events,
                hash: hex::encode(prev),
            },
        },
    )?;
    out.write_all(b"\n")?;
    for line in &events {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(events);
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "enspace-bench audit-verify: an export of {} events ({:.0} MB) made in {:.1} s; one core",
        args.events,
        bytes as f64 / 1e6,
        made.elapsed().as_secs_f64()
    );

    let mut parse_rate: f64 = 0.0;
    let mut verify_rate: f64 = 0.0;
    for _ in 0..args.rounds {
        let start = Instant::now();
        let mut parsed = 0u64;
        for line in BufReader::new(std::fs::File::open(&path)?).lines().skip(1) {
            let event: AuditEvent = serde_json::from_str(&line?)?;
            parsed += std::hint::black_box(event.seq).min(1);
        }
        parse_rate = parse_rate.max(parsed as f64 / start.elapsed().as_secs_f64());

        let start = Instant::now();
        let verified = audit_export::verify(
            BufReader::new(std::fs::File::open(&path)?),
            std::slice::from_ref(signer.public()),
        )
        .map_err(|b| anyhow::anyhow!("the export does not verify: {b}"))?;
        verify_rate = verify_rate.max(verified.count as f64 / start.elapsed().as_secs_f64());
    }
    println!("  read and parse each line (baseline)   {parse_rate:>10.0} events/s");
    println!(
        "  verify: chain, signatures, fields      {verify_rate:>10.0} events/s   {:.2} of the baseline",
        verify_rate / parse_rate
    );
    let verdict = Verdict::new(args.events as usize, 0, 100_000, verify_rate >= TARGET);
    println!("  target ≥ {TARGET:.0} events/s on one core: {verdict}");
    Ok(())
}
