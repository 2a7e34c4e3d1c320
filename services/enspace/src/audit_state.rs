//! `enspace audit state --export FILE --event-key KEY --at T`: every token
//! as it stood at a moment, from a verified export alone.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use enspace_core::audit_export;
use enspace_core::audit_state::{Replay, StateFilter};
use jiff::Timestamp;

/// Verifies the export while folding it; prints the state only if the whole
/// export verified.
pub fn print(
    file: &Path,
    key: &str,
    at: Timestamp,
    filter: StateFilter,
) -> anyhow::Result<ExitCode> {
    let key = crate::audit::trusted_keys(key)?;
    let progress = enspace::progress::shown("events folded");
    let mut replay = Replay::default();
    let lines: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let opened = std::fs::File::open(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        Box::new(std::io::BufReader::new(opened))
    };
    let verified = audit_export::verify_visiting(lines, &key, progress.as_ref(), &mut |envelope| {
        replay.apply_until(&envelope, at)
    });
    if let Err(broken) = verified {
        eprintln!("broken: {broken}");
        return Ok(ExitCode::from(1));
    }
    let state = serde_json::json!({
        "at": at,
        "tokens": replay.tokens(&filter, at),
    });
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(ExitCode::SUCCESS)
}
